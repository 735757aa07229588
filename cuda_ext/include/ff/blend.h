// Front-to-back alpha blending of one Gaussian at one pixel, and the exact reverse of it.
//
// sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with (dx, dy) = pixel centre - mean; alpha = min(0.99, o exp(-sigma));
// skipped where sigma < 0 or alpha < 1/255; a pixel stops at the first Gaussian that would take its transmittance
// below 1e-4 (that one is not applied). Same rules, same order of operations as featurefields/render/rasterize.py.
//
// Reverse pass, front to back like the forward (no division to undo transmittance): with G the image gradient of
// the pixel and w_i = alpha_i T_i, dL/dw_i = sum_{c<k} G_c (c_ic - bg_c) + G_alpha, where k is the number of
// "geometry channels" (later channels train their colours only); the suffix sum S_i = sum_{j>i} w_j dL/dw_j starts
// from its total sum_{c<k} G_c (image_c - bg_c) + G_alpha alpha_out and shrinks Gaussian by Gaussian; then
// dL/dalpha_i = T_i dL/dw_i - S_i / (1 - alpha_i).
#pragma once

#include "common.h"

namespace ff {

// One projected Gaussian, with its conic pre-scaled by log2(e) so that exp2 gives exp(-sigma).
template <typename T> struct Splat {
    T mx, my;     // mean (pixels)
    T a, b, c;    // conic
    T ha, hc, lb; // 0.5 log2(e) a, 0.5 log2(e) c, log2(e) b
    T o;          // opacity
};

template <typename T> FF_HD Splat<T> load_splat(const T* means2d, const T* conics, const T* opacities, int64_t g) {
    Splat<T> s;
    s.mx = means2d[2 * g]; s.my = means2d[2 * g + 1];
    s.a = conics[3 * g]; s.b = conics[3 * g + 1]; s.c = conics[3 * g + 2];
    s.ha = T(kHalfLog2e) * s.a; s.hc = T(kHalfLog2e) * s.c; s.lb = T(kLog2e) * s.b;
    s.o = opacities[g];
    return s;
}

// The part of sigma (log2 units) shared by a row of pixels.
template <typename T> struct SplatRow {
    T dy;  // pixel centre y - mean y
    T sy;  // 0.5 log2(e) c dy^2
};

template <typename T> FF_HD SplatRow<T> splat_row(const Splat<T>& s, int y) {
    SplatRow<T> r;
    r.dy = (T(y) + T(0.5)) - s.my;
    r.sy = (s.hc * r.dy) * r.dy;
    return r;
}

// Below, V is the value type: T itself (CUDA: a thread per pixel), or a SIMD vector of T holding a run of pixels of
// one row (CPU, simd.h); comparisons then give lane masks and `mask ? a : b` selects lane by lane. dx = pixel centre
// x - mean x.

// alpha of the splat at the pixels dx of row r (0 where skipped), and e = exp(-sigma) (0 where skipped) for the
// opacity gradient. Branch-free.
template <typename V> struct Alpha {
    V alpha, e;
};

// The part of sigma a column of pixels shares (CPU: a chunk of a row, reused by every row of the rectangle).
template <typename V> struct SplatCol {
    V dx;  // pixel centre x - mean x
    V qx;  // 0.5 log2(e) a dx^2
    V bx;  // log2(e) b dx
};

template <typename T, typename V> FF_HD SplatCol<V> splat_col(const Splat<T>& s, V dx) {
    return SplatCol<V>{dx, (s.ha * dx) * dx, s.lb * dx};
}

template <typename T, typename V>
FF_HD Alpha<V> splat_alpha_at(const Splat<T>& s, const SplatRow<T>& r, const SplatCol<V>& col) {
    const V sigma = (r.sy + col.qx) + col.bx * r.dy;
    const V ex = exp2_neg(-ff_min(sigma, T(64)));  // beyond 2^-64 everything is skipped anyway (no denormals)
    const V raw = s.o * ex;
    const auto keep = (sigma >= T(0)) & (raw >= Blend<T>::alpha_min);
    const V alpha = keep ? ff_min(raw, Blend<T>::alpha_max) : T(0);
    const V e = keep ? ex : T(0);
    return Alpha<V>{alpha, e};
}

template <typename T, typename V> FF_HD Alpha<V> splat_alpha_dx(const Splat<T>& s, const SplatRow<T>& r, V dx) {
    return splat_alpha_at(s, r, splat_col(s, dx));
}

template <typename T> FF_HD T pixel_dx(const Splat<T>& s, int x) { return (T(x) + T(0.5)) - s.mx; }

template <typename T> FF_HD Alpha<T> splat_alpha(const Splat<T>& s, const SplatRow<T>& r, int x) {
    return splat_alpha_dx(s, r, pixel_dx(s, x));
}

// Gradients of one (Gaussian, pixel) pair w.r.t. the splat, given dL/dalpha. Branch-free: pairs that were skipped
// have alpha = e = 0 and contribute nothing; clamped pairs (o e >= alpha_max) neither.
template <typename V> struct SplatGrad {
    V mx, my, a, b, c, o;
};

template <typename T, typename V>
FF_HD SplatGrad<V> splat_alpha_grad_dx(const Splat<T>& s, const SplatRow<T>& r, V dx, V alpha, V e, V g_alpha) {
    const auto free = s.o * e < Blend<T>::alpha_max;
    const T dy = r.dy;
    const V g_sigma = free ? -g_alpha * alpha : T(0);  // alpha = o exp(-sigma)
    SplatGrad<V> d;
    d.mx = -g_sigma * (s.a * dx + s.b * dy);  // d sigma / d mean = -(a dx + b dy, b dx + c dy)
    d.my = -g_sigma * (s.b * dx + s.c * dy);
    d.a = g_sigma * T(0.5) * dx * dx;
    d.b = g_sigma * dx * dy;
    d.c = g_sigma * T(0.5) * dy * dy;
    d.o = free ? g_alpha * e : T(0);
    return d;
}

template <typename T>
FF_HD SplatGrad<T> splat_alpha_grad(const Splat<T>& s, const SplatRow<T>& r, int x, T alpha, T e, T g_alpha) {
    return splat_alpha_grad_dx(s, r, pixel_dx(s, x), alpha, e, g_alpha);
}

// One step of the reverse pass at a pixel: dL/dalpha of this Gaussian, given gw = dL/dw of the pair; advances the
// pixel's transmittance `trans` (in front of the Gaussian) and suffix sum `rest` (S above). T: the scalar type.
template <typename V, typename T = V> FF_HD V blend_bwd_step(V& trans, V& rest, V alpha, V gw) {
    const V t = trans;
    rest -= alpha * t * gw;
    const V g_alpha = gw * t - rest / (T(1) - alpha);
    trans = t * (T(1) - alpha);
    return g_alpha;
}

}  // namespace ff
