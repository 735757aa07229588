// Real spherical harmonics up to degree 3 (3DGS / gsplat constants and signs) for any number of channels, and the
// reverse pass to the coefficients and to the (unnormalised) viewing direction. Same rules as
// featurefields/render/sh.py: the raw SH sum; the caller adds 0.5 and clamps.
#pragma once

#include "common.h"

namespace ff {

constexpr double kC0 = 0.28209479177387814;
constexpr double kC1 = 0.4886025119029199;
// (scalars, not arrays: device code may read namespace-scope constexpr scalars only)
constexpr double kC2_0 = 1.0925484305920792, kC2_1 = -1.0925484305920792, kC2_2 = 0.31539156525252005,
                 kC2_3 = -1.0925484305920792, kC2_4 = 0.5462742152960396;
constexpr double kC3_0 = -0.5900435899266435, kC3_1 = 2.890611442640554, kC3_2 = -0.4570457994644658,
                 kC3_3 = 0.3731763325901154, kC3_4 = -0.4570457994644658, kC3_5 = 1.445305721320277,
                 kC3_6 = -0.5900435899266435;

// dir [3] (any length) -> unit direction n [3] and its length (as F.normalize: max(|d|, 1e-12)).
template <typename T> FF_HD T normalize3(const T* d, T* n) {
    T len = ff_sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    T l = ff_max(len, T(1e-12));
    for (int i = 0; i < 3; ++i) n[i] = d[i] / l;
    return len;
}

// Basis values b [(degree+1)^2] at a unit direction.
template <typename T> FF_HD void sh_bases(int degree, const T* n, T* b) {
    T x = n[0], y = n[1], z = n[2];
    b[0] = T(kC0);
    if (degree < 1) return;
    b[1] = -T(kC1) * y; b[2] = T(kC1) * z; b[3] = -T(kC1) * x;
    if (degree < 2) return;
    T xx = x * x, yy = y * y, zz = z * z;
    b[4] = T(kC2_0) * x * y;
    b[5] = T(kC2_1) * y * z;
    b[6] = T(kC2_2) * (2 * zz - xx - yy);
    b[7] = T(kC2_3) * x * z;
    b[8] = T(kC2_4) * (xx - yy);
    if (degree < 3) return;
    b[9] = T(kC3_0) * y * (3 * xx - yy);
    b[10] = T(kC3_1) * x * y * z;
    b[11] = T(kC3_2) * y * (4 * zz - xx - yy);
    b[12] = T(kC3_3) * z * (2 * zz - 3 * xx - 3 * yy);
    b[13] = T(kC3_4) * x * (4 * zz - xx - yy);
    b[14] = T(kC3_5) * z * (xx - yy);
    b[15] = T(kC3_6) * x * (xx - 3 * yy);
}

// d(sum_k vb[k] b[k]) / d n: the basis' gradient at unit direction n, contracted with vb.
template <typename T> FF_HD void sh_bases_bwd(int degree, const T* n, const T* vb, T* vn) {
    T x = n[0], y = n[1], z = n[2];
    vn[0] = vn[1] = vn[2] = 0;
    if (degree < 1) return;
    vn[1] += -T(kC1) * vb[1];
    vn[2] += T(kC1) * vb[2];
    vn[0] += -T(kC1) * vb[3];
    if (degree < 2) return;
    T xx = x * x, yy = y * y, zz = z * z;
    T c;
    c = T(kC2_0) * vb[4]; vn[0] += c * y; vn[1] += c * x;
    c = T(kC2_1) * vb[5]; vn[1] += c * z; vn[2] += c * y;
    c = T(kC2_2) * vb[6]; vn[0] += -2 * c * x; vn[1] += -2 * c * y; vn[2] += 4 * c * z;
    c = T(kC2_3) * vb[7]; vn[0] += c * z; vn[2] += c * x;
    c = T(kC2_4) * vb[8]; vn[0] += 2 * c * x; vn[1] += -2 * c * y;
    if (degree < 3) return;
    c = T(kC3_0) * vb[9]; vn[0] += c * 6 * x * y; vn[1] += c * (3 * xx - 3 * yy);
    c = T(kC3_1) * vb[10]; vn[0] += c * y * z; vn[1] += c * x * z; vn[2] += c * x * y;
    c = T(kC3_2) * vb[11]; vn[0] += c * (-2 * x * y); vn[1] += c * (4 * zz - xx - 3 * yy); vn[2] += c * 8 * y * z;
    c = T(kC3_3) * vb[12]; vn[0] += c * (-6 * x * z); vn[1] += c * (-6 * y * z); vn[2] += c * (6 * zz - 3 * xx - 3 * yy);
    c = T(kC3_4) * vb[13]; vn[0] += c * (4 * zz - 3 * xx - yy); vn[1] += c * (-2 * x * y); vn[2] += c * 8 * x * z;
    c = T(kC3_5) * vb[14]; vn[0] += c * 2 * x * z; vn[1] += c * (-2 * y * z); vn[2] += c * (xx - yy);
    c = T(kC3_6) * vb[15]; vn[0] += c * (3 * xx - 3 * yy); vn[1] += c * (-6 * x * y);
}

// v_dir of n = d / max(|d|, 1e-12), given v_n.
template <typename T> FF_HD void normalize3_bwd(const T* n, T len, const T* vn, T* vd) {
    if (len > T(1e-12)) {
        T dot = n[0] * vn[0] + n[1] * vn[1] + n[2] * vn[2];
        for (int i = 0; i < 3; ++i) vd[i] = (vn[i] - n[i] * dot) / len;
    } else {
        for (int i = 0; i < 3; ++i) vd[i] = vn[i] / T(1e-12);
    }
}

// SH value of Gaussian i for C channels: out[c] = sum_k basis_k(dir_i) coeff_k[c]. A is the api.h SHArgs.
// CC > 0: the channel count as a compile-time constant (CC == a.channels), so that the per-coefficient loops over
// channels unroll; the CPU kernels use CC = 3 for colours (the case every training step runs), 0 otherwise.
template <int CC = 0, typename A, typename T> FF_HD void sh_eval_one(const A& a, int64_t i, T* out) {
    T n[3], b[16];
    normalize3(a.dirs + 3 * i, n);
    sh_bases(a.degree, n, b);
    const int nb = (a.degree + 1) * (a.degree + 1), C = CC > 0 ? CC : a.channels;
    for (int c = 0; c < C; ++c) out[c] = T(0);
    for (int k = 0; k < nb; ++k) {
        const T* row = a.row(i, k);
        for (int c = 0; c < C; ++c) out[c] += b[k] * row[c];
    }
}

// Reverse of sh_eval_one given v_out [C]: coefficient gradients written whole (bases beyond the degree get 0),
// direction gradient added to v_dir [3] (through the normalisation).
template <int CC = 0, typename A, typename T>
FF_HD void sh_eval_one_bwd(const A& a, int64_t i, const T* v_out, T* v_dc, T* v_rest, T* v_dir) {
    T n[3], b[16], vb[16];
    const T len = normalize3(a.dirs + 3 * i, n);
    sh_bases(a.degree, n, b);
    const int nb = (a.degree + 1) * (a.degree + 1), C = CC > 0 ? CC : a.channels;
    if (v_dir && a.degree > 0) {  // dL/dbasis: only the direction needs it (a pass over every coefficient)
        for (int k = 0; k < nb; ++k) {
            const T* row = a.row(i, k);
            T s = 0;
            for (int c = 0; c < C; ++c) s += row[c] * v_out[c];
            vb[k] = s;
        }
    }
    if (v_dc) {
        T* v = v_dc + i * a.kd * C;
        for (int k = 0; k < a.kd; ++k)
            for (int c = 0; c < C; ++c) v[k * C + c] = k < nb ? b[k] * v_out[c] : T(0);
    }
    if (v_rest) {
        T* v = v_rest + i * a.kr * C;
        for (int k = 0; k < a.kr; ++k)
            for (int c = 0; c < C; ++c) v[k * C + c] = a.kd + k < nb ? b[a.kd + k] * v_out[c] : T(0);
    }
    if (v_dir && a.degree > 0) {
        T vn[3], vd[3];
        sh_bases_bwd(a.degree, n, vb, vn);
        normalize3_bwd(n, len, vn, vd);
        for (int j = 0; j < 3; ++j) v_dir[j] += vd[j];
    }
}

}  // namespace ff
