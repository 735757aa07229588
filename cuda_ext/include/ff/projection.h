// EWA projection of one 3D Gaussian into a pinhole camera, and its exact reverse pass.
//
// Same rules as featurefields/render/projection.py (original 3DGS / gsplat "classic"): the 2D covariance is
// J W Sigma W^T J^T + eps2d I (the 0.3 px low-pass), the Jacobian is taken at the mean with x/z and y/z clamped to
// 1.3x the field of view, radius = ceil(3 sqrt(largest eigenvalue)). Culled Gaussians get radius 0 and no gradient.
#pragma once

#include "common.h"

namespace ff {

template <typename T> struct Camera {
    T R[9];  // world-to-camera rotation, row-major (OpenCV axes)
    T t[3];
    T fx, fy, cx, cy, skew;  // K = [[fx, skew, cx], [0, fy, cy], [0, 0, 1]]
    int width, height;
    T eps2d, near_plane, far_plane;
};

template <typename T> FF_HD Camera<T> make_camera(const T* viewmat, const T* K, int width, int height, T eps2d,
                                                  T near_plane, T far_plane) {
    Camera<T> c;
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) c.R[3 * i + j] = viewmat[4 * i + j];
        c.t[i] = viewmat[4 * i + 3];
    }
    c.fx = K[0]; c.skew = K[1]; c.cx = K[2]; c.fy = K[4]; c.cy = K[5];
    c.width = width; c.height = height;
    c.eps2d = eps2d; c.near_plane = near_plane; c.far_plane = far_plane;
    return c;
}

// quats are wxyz and need not be normalised (as F.normalize: divided by max(|q|, 1e-12)).
template <typename T> FF_HD void quat_to_rotmat(const T* q_raw, T* q, T* R) {
    T n = ff_sqrt(q_raw[0] * q_raw[0] + q_raw[1] * q_raw[1] + q_raw[2] * q_raw[2] + q_raw[3] * q_raw[3]);
    n = ff_max(n, T(1e-12));
    for (int i = 0; i < 4; ++i) q[i] = q_raw[i] / n;
    T w = q[0], x = q[1], y = q[2], z = q[3];
    R[0] = 1 - 2 * (y * y + z * z); R[1] = 2 * (x * y - w * z); R[2] = 2 * (x * z + w * y);
    R[3] = 2 * (x * y + w * z); R[4] = 1 - 2 * (x * x + z * z); R[5] = 2 * (y * z - w * x);
    R[6] = 2 * (x * z - w * y); R[7] = 2 * (y * z + w * x); R[8] = 1 - 2 * (x * x + y * y);
}

template <typename T> FF_HD void quat_to_rotmat_bwd(const T* q_raw, const T* q, const T* vR, T* v_q_raw) {
    T w = q[0], x = q[1], y = q[2], z = q[3];
    T v[4];
    v[0] = 2 * (-z * vR[1] + y * vR[2] + z * vR[3] - x * vR[5] - y * vR[6] + x * vR[7]);
    v[1] = 2 * (y * vR[1] + z * vR[2] + y * vR[3] - 2 * x * vR[4] - w * vR[5] + z * vR[6] + w * vR[7] - 2 * x * vR[8]);
    v[2] = 2 * (-2 * y * vR[0] + x * vR[1] + w * vR[2] + x * vR[3] + z * vR[5] - w * vR[6] + z * vR[7] - 2 * y * vR[8]);
    v[3] = 2 * (-2 * z * vR[0] - w * vR[1] + x * vR[2] + w * vR[3] - 2 * z * vR[4] + y * vR[5] + x * vR[6] + y * vR[7]);
    T n = ff_sqrt(q_raw[0] * q_raw[0] + q_raw[1] * q_raw[1] + q_raw[2] * q_raw[2] + q_raw[3] * q_raw[3]);
    if (n > T(1e-12)) {  // d(q / |q|) = (I - q q^T) / |q|
        T dot = v[0] * q[0] + v[1] * q[1] + v[2] * q[2] + v[3] * q[3];
        for (int i = 0; i < 4; ++i) v_q_raw[i] = (v[i] - q[i] * dot) / n;
    } else {
        for (int i = 0; i < 4; ++i) v_q_raw[i] = v[i] / T(1e-12);
    }
}

// Everything the forward computes for one Gaussian, kept so the backward can reuse it.
template <typename T> struct ProjState {
    T mc[3];      // camera-space mean
    T zs;         // depth used for division (1 where culled by depth)
    bool depth_ok;
    T u, v;       // clamped x/z, y/z
    T du, dv;     // d u / d(x/z), d v / d(y/z): 1 inside the clamp, 1/2 at its edge, 0 beyond
    T J[6];       // 2x3
    T P[6];       // J R (2x3)
    T q[4];       // normalised quaternion
    T Rq[9];
    T A[6];       // P Rq diag(s) (2x3)
    T ca, cb, cc, det;
};

template <typename T> FF_HD T clamp_grad(T r, T lo, T hi) {
    T m = ff_max(r, lo);
    T g1 = r > lo ? T(1) : (r == lo ? T(0.5) : T(0));
    T g2 = m < hi ? T(1) : (m == hi ? T(0.5) : T(0));
    return g1 * g2;
}

template <typename T>
FF_HD void project_state(const Camera<T>& c, const T* mean, const T* quat, const T* scale, ProjState<T>& s) {
    for (int i = 0; i < 3; ++i)
        s.mc[i] = c.R[3 * i] * mean[0] + c.R[3 * i + 1] * mean[1] + c.R[3 * i + 2] * mean[2] + c.t[i];
    T x = s.mc[0], y = s.mc[1], z = s.mc[2];
    s.depth_ok = z > c.near_plane && z < c.far_plane;
    s.zs = s.depth_ok ? z : T(1);
    T tan_x = T(0.5) * T(c.width) / c.fx, tan_y = T(0.5) * T(c.height) / c.fy;
    T lo_x = -(c.cx / c.fx + T(0.3) * tan_x), hi_x = (T(c.width) - c.cx) / c.fx + T(0.3) * tan_x;
    T lo_y = -(c.cy / c.fy + T(0.3) * tan_y), hi_y = (T(c.height) - c.cy) / c.fy + T(0.3) * tan_y;
    T rx = x / s.zs, ry = y / s.zs;
    s.u = ff_min(ff_max(rx, lo_x), hi_x);
    s.v = ff_min(ff_max(ry, lo_y), hi_y);
    s.du = clamp_grad(rx, lo_x, hi_x);
    s.dv = clamp_grad(ry, lo_y, hi_y);
    s.J[0] = c.fx / s.zs; s.J[1] = 0; s.J[2] = -c.fx * s.u / s.zs;
    s.J[3] = 0; s.J[4] = c.fy / s.zs; s.J[5] = -c.fy * s.v / s.zs;
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            s.P[3 * i + j] = s.J[3 * i] * c.R[j] + s.J[3 * i + 1] * c.R[3 + j] + s.J[3 * i + 2] * c.R[6 + j];
    quat_to_rotmat(quat, s.q, s.Rq);
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            s.A[3 * i + j] = (s.P[3 * i] * s.Rq[j] + s.P[3 * i + 1] * s.Rq[3 + j] + s.P[3 * i + 2] * s.Rq[6 + j]) * scale[j];
    const T* a0 = s.A;
    const T* a1 = s.A + 3;
    s.ca = a0[0] * a0[0] + a0[1] * a0[1] + a0[2] * a0[2] + c.eps2d;
    s.cb = a0[0] * a1[0] + a0[1] * a1[1] + a0[2] * a1[2];
    s.cc = a1[0] * a1[0] + a1[1] * a1[1] + a1[2] * a1[2] + c.eps2d;
    s.det = s.ca * s.cc - s.cb * s.cb;
}

template <typename T> FF_HD bool ff_isfinite(T x) { return x - x == T(0); }  // false for inf and nan

// Returns the pixel radius (0 = culled) and writes means2d [2], conic [3] (a, b, c of the inverse covariance) and
// depth. Outputs of culled Gaussians are finite but meaningless, as in the reference.
template <typename T>
FF_HD int32_t project_one(const Camera<T>& c, const T* mean, const T* quat, const T* scale, T* means2d, T* conic,
                          T* depth) {
    ProjState<T> s;
    project_state(c, mean, quat, scale, s);
    T x = s.mc[0], y = s.mc[1];
    T mx = (c.fx * x + c.skew * y) / s.zs + c.cx;
    T my = (c.fy * y) / s.zs + c.cy;
    means2d[0] = mx;
    means2d[1] = my;
    bool det_ok = s.det > 0;
    T ds = det_ok ? s.det : T(1);
    conic[0] = s.cc / ds;
    conic[1] = -s.cb / ds;
    conic[2] = s.ca / ds;
    *depth = s.mc[2];
    T mid = T(0.5) * (s.ca + s.cc);
    T lam = mid + ff_sqrt(ff_max(mid * mid - s.det, T(0)));
    T radius = ff_min(ff_ceil(T(3) * ff_sqrt(ff_max(lam, T(0)))), T(1 << 30));
    bool on_screen = mx + radius > 0 && mx - radius < T(c.width) && my + radius > 0 && my - radius < T(c.height);
    bool finite = ff_isfinite(mx) && ff_isfinite(my) && ff_isfinite(conic[0]) && ff_isfinite(conic[1]) &&
                  ff_isfinite(conic[2]) && ff_isfinite(radius);
    bool keep = s.depth_ok && det_ok && on_screen && finite && radius > 0;
    return keep ? int32_t(radius) : 0;
}

// Reverse of project_one for a Gaussian that was drawn (radius > 0). v_R [9] and v_t [3] are accumulated (+=):
// the camera's gradient is a sum over Gaussians.
template <typename T>
FF_HD void project_one_bwd(const Camera<T>& c, const T* mean, const T* quat, const T* scale, const T* v_m2d,
                           const T* v_conic, T v_depth, T* v_mean, T* v_quat, T* v_scale, T* v_R, T* v_t) {
    ProjState<T> s;
    project_state(c, mean, quat, scale, s);
    T x = s.mc[0], y = s.mc[1], zs = s.zs;
    T d = s.det, d2 = d * d;
    // conic = (cc, -cb, ca) / det
    T va = v_conic[0], vb = v_conic[1], vc = v_conic[2];
    T v_ca = va * (-s.cc * s.cc / d2) + vb * (s.cb * s.cc / d2) + vc * (T(1) / d - s.ca * s.cc / d2);
    T v_cc = va * (T(1) / d - s.cc * s.ca / d2) + vb * (s.cb * s.ca / d2) + vc * (-s.ca * s.ca / d2);
    T v_cb = va * (T(2) * s.cc * s.cb / d2) + vb * (-T(1) / d - T(2) * s.cb * s.cb / d2) + vc * (T(2) * s.ca * s.cb / d2);
    // cov = A A^T: xx = a0.a0, xy = a0.a1, yy = a1.a1
    T vA[6];
    for (int j = 0; j < 3; ++j) {
        vA[j] = T(2) * v_ca * s.A[j] + v_cb * s.A[3 + j];
        vA[3 + j] = v_cb * s.A[j] + T(2) * v_cc * s.A[3 + j];
    }
    // A = P M with M = Rq diag(s)
    T M[9];
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) M[3 * i + j] = s.Rq[3 * i + j] * scale[j];
    T vP[6], vM[9];
    for (int i = 0; i < 2; ++i)
        for (int k = 0; k < 3; ++k)
            vP[3 * i + k] = vA[3 * i] * M[3 * k] + vA[3 * i + 1] * M[3 * k + 1] + vA[3 * i + 2] * M[3 * k + 2];
    for (int k = 0; k < 3; ++k)
        for (int j = 0; j < 3; ++j) vM[3 * k + j] = s.P[k] * vA[j] + s.P[3 + k] * vA[3 + j];
    T vRq[9];
    for (int j = 0; j < 3; ++j) {
        v_scale[j] = vM[j] * s.Rq[j] + vM[3 + j] * s.Rq[3 + j] + vM[6 + j] * s.Rq[6 + j];
        for (int i = 0; i < 3; ++i) vRq[3 * i + j] = vM[3 * i + j] * scale[j];
    }
    quat_to_rotmat_bwd(quat, s.q, vRq, v_quat);
    // P = J R
    T vJ[6];
    for (int i = 0; i < 2; ++i)
        for (int k = 0; k < 3; ++k)
            vJ[3 * i + k] = vP[3 * i] * c.R[3 * k] + vP[3 * i + 1] * c.R[3 * k + 1] + vP[3 * i + 2] * c.R[3 * k + 2];
    for (int k = 0; k < 3; ++k)
        for (int j = 0; j < 3; ++j) v_R[3 * k + j] += s.J[k] * vP[j] + s.J[3 + k] * vP[3 + j];
    // J = [[fx/zs, 0, -fx u/zs], [0, fy/zs, -fy v/zs]]
    T zs2 = zs * zs;
    T v_zs = vJ[0] * (-c.fx / zs2) + vJ[2] * (c.fx * s.u / zs2) + vJ[4] * (-c.fy / zs2) + vJ[5] * (c.fy * s.v / zs2);
    T v_u = vJ[2] * (-c.fx / zs) * s.du;
    T v_v = vJ[5] * (-c.fy / zs) * s.dv;
    T v_x = v_u / zs, v_y = v_v / zs;
    v_zs += -v_u * x / zs2 - v_v * y / zs2;
    // means2d = ((fx x + skew y) / zs + cx, fy y / zs + cy)
    v_x += v_m2d[0] * c.fx / zs;
    v_y += v_m2d[0] * c.skew / zs + v_m2d[1] * c.fy / zs;
    v_zs += -v_m2d[0] * (c.fx * x + c.skew * y) / zs2 - v_m2d[1] * c.fy * y / zs2;
    T v_mc[3] = {v_x, v_y, (s.depth_ok ? v_zs : T(0)) + v_depth};
    // mc = R mean + t
    for (int j = 0; j < 3; ++j) v_mean[j] = c.R[j] * v_mc[0] + c.R[3 + j] * v_mc[1] + c.R[6 + j] * v_mc[2];
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) v_R[3 * i + j] += v_mc[i] * mean[j];
        v_t[i] += v_mc[i];
    }
}

}  // namespace ff
