// A Gaussian mixture evaluated at points (featurefields/fields/splats.py::gaussian_mixture_at is the reference):
// the weight of one (point, Gaussian) pair, shared by every backend.
#pragma once

#include "common.h"
#include "projection.h"

namespace ff {

FF_HD float ff_exp(float x) { return expf(x); }
FF_HD double ff_exp(double x) { return exp(x); }
FF_HD float ff_log1p(float x) { return log1pf(x); }
FF_HD double ff_log1p(double x) { return log1p(x); }

// One Gaussian as the per-pair maths needs it: its centre, rotation (row-major R, columns = its axes), the
// reciprocal variance along each axis (blur already added), amplitude (opacity, mass-preserving under blur) and
// its reach squared (cutoff standard deviations along its longest axis: no pair beyond it can pass the cut-off).
template <typename T> struct MixtureGaussian {
    T mean[3];
    T rot[9];
    T inv_var[3];
    T amp;
    T reach2;
};

// A Gaussian (quats wxyz of any norm, scales its standard deviations) convolved with an isotropic blur: each
// variance grows by blur^2 and the amplitude shrinks to keep the mass (the reference's rules exactly).
template <typename T>
FF_HD void make_mixture_gaussian(const T* mean, const T* quat, const T* scale, T opacity, T blur, T cutoff,
                                 MixtureGaussian<T>& g) {
    T q[4];
    quat_to_rotmat(quat, q, g.rot);
    T amp = opacity, vmax = T(0);
    for (int k = 0; k < 3; ++k) {
        const T s2 = scale[k] * scale[k];
        const T var = s2 + blur * blur;
        g.mean[k] = mean[k];
        g.inv_var[k] = T(1) / ff_max(var, T(1e-18));
        vmax = ff_max(vmax, var);
        if (blur > T(0)) amp *= ff_sqrt(s2 / var);
    }
    g.amp = amp;
    const T reach = cutoff * ff_sqrt(vmax);
    g.reach2 = reach * reach;
}

// amp * exp(-m2 / 2) with m2 the Mahalanobis distance squared from R^T (p - mean) (stable for the thinnest
// splats); 0 beyond the Gaussian's reach or the cut-off (cutoff2 = cutoff^2).
template <typename T> FF_HD T mixture_weight(const T* p, const MixtureGaussian<T>& g, T cutoff2) {
    const T dx = p[0] - g.mean[0], dy = p[1] - g.mean[1], dz = p[2] - g.mean[2];
    if (dx * dx + dy * dy + dz * dz > g.reach2) return T(0);
    const T* r = g.rot;
    const T l0 = r[0] * dx + r[3] * dy + r[6] * dz;
    const T l1 = r[1] * dx + r[4] * dy + r[7] * dz;
    const T l2 = r[2] * dx + r[5] * dy + r[8] * dz;
    const T m2 = l0 * l0 * g.inv_var[0] + l1 * l1 * g.inv_var[1] + l2 * l2 * g.inv_var[2];
    if (!(m2 <= cutoff2)) return T(0);
    return g.amp * ff_exp(T(-0.5) * m2);
}

// The weight's share of the log-transmittance, as the reference clamps it (an opaque pair stays finite).
template <typename T> FF_HD T mixture_log_transmit(T w) { return ff_log1p(-ff_min(w, T(0.9999))); }

}  // namespace ff
