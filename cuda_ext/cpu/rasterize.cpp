// CPU rasteriser: OpenMP over tiles; inside a tile, one front-to-back walk of its Gaussians serves all D channels.
//
// For each Gaussian of the tile's list, the rows of its pixel rectangle (tiles.h) inside the tile are visited. A row
// of the tile is one vector: alpha, transmittance, the stop rule (and in the reverse pass the whole alpha gradient)
// are computed for all its pixels at once, masked to the rectangle; tile sizes 8 and 16 are compiled with the row
// length known, so a row is exactly one or two SIMD registers. Only the D-wide parts loop over pixels: each pixel
// that takes the Gaussian adds w * colour into its tile-local accumulator (reverse: w * dL/dimage into the
// Gaussian's colour gradient, and the dot product dL/dw). Gradients of a Gaussian summed over the tile are added
// to the global arrays under a striped lock.
#include <algorithm>
#include <vector>

#include "ff/api.h"
#include "ff/blend.h"
#include "ff/tiles.h"
#include "parallel.h"
#include "simd.h"

namespace ff {
namespace {

struct TileBox {
    int x0, x1, y0, y1;  // pixel range of the tile, half-open, clipped to the image
};

inline TileBox tile_box(int64_t t, int tiles_x, int ts, int width, int height) {
    TileBox b;
    b.x0 = int(t % tiles_x) * ts;
    b.y0 = int(t / tiles_x) * ts;
    b.x1 = std::min(b.x0 + ts, width);
    b.y1 = std::min(b.y0 + ts, height);
    return b;
}

// The part of the tile a Gaussian's rectangle covers (absolute pixel indices, inclusive); empty if xa > xb.
struct Span {
    int xa, xb, ya, yb;
};

inline Span clip(const int32_t* rect, const TileBox& b) {
    return Span{std::max<int>(rect[0], b.x0), std::min<int>(rect[1], b.x1 - 1), std::max<int>(rect[2], b.y0),
                std::min<int>(rect[3], b.y1 - 1)};
}

// Everything a tile needs of one Gaussian, packed: a tile's list visits Gaussians in depth order, i.e. at random
// places in the per-Gaussian arrays, so one record (plus a prefetch a few entries ahead) instead of four arrays.
template <typename T> struct alignas(64) Rec {  // (one cache line for float)
    Splat<T> s;
    int32_t rect[4];
};

template <typename T> std::vector<Rec<T>> pack(const RasterArgs<T>& a, int threads) {
    std::vector<Rec<T>> recs(size_t(a.n));
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < a.n; ++i) {
        recs[i].s = load_splat(a.means2d, a.conics, a.opacities, i);
        for (int q = 0; q < 4; ++q) recs[i].rect[q] = a.rects[4 * i + q];
    }
    return recs;
}

constexpr int kPrefetch = 8;  // list entries ahead

// A prefetch the optimiser keeps (GCC 12's dead-code elimination drops __builtin_prefetch in these loops).
inline void prefetch_line(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
    asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
    __builtin_prefetch(p);
#endif
}

template <typename T> inline void prefetch_gaussian(const RasterArgs<T>& a, const Rec<T>* recs, int32_t g) {
    prefetch_line(recs + g);
    const char* c = reinterpret_cast<const char*>(a.colors + int64_t(g) * a.channels);
    const int lines = std::min<int>((a.channels * int(sizeof(T)) + 63) / 64, 4);  // the hardware follows the rest
    for (int l = 0; l < lines; ++l) prefetch_line(c + 64 * l);
}

// Tile-local rows are padded to whole 256-bit registers (zeros in the padding), so the D-wide loops have no scalar
// remainder whatever D is; only scratch memory is padded, never the inputs or outputs.
template <typename T> inline int padded(int D) {
    constexpr int lanes = 32 / int(sizeof(T));
    return (D + lanes - 1) / lanes * lanes;
}

template <typename T> inline void axpy(T* __restrict y, const T* __restrict x, T w, int n) {
#pragma omp simd
    for (int c = 0; c < n; ++c) y[c] += w * x[c];
}

// ---- forward ------------------------------------------------------------------------------------------------------

template <typename T> struct FwdScratch {
    std::vector<T> trans, alpha_sum, accum, w;  // per tile pixel; accum [P, Dp]: tile-local colour sums
    std::vector<int32_t> last, stop;  // (stop: int32 like the floats, so a row is one vector width throughout)
    std::vector<int32_t> row_alive;   // per tile row: pixels still taking Gaussians
    std::vector<T> col;               // [Dp] the current Gaussian's colour, zero-padded
    FwdScratch(int ts, int D)
        : trans(ts * ts), alpha_sum(ts * ts), accum(size_t(ts) * ts * padded<T>(D)), w(ts * ts), last(ts * ts),
          stop(ts * ts), row_alive(ts), col(padded<T>(D), T(0)) {}
};

// TS > 0: the tile size, known when compiling (rows are whole vectors); TS = 0: any tile size.
template <typename T, int TS>
void fwd_tile(const RasterArgs<T>& a, const Rec<T>* recs, const RasterOut<T>& out, int64_t t, FwdScratch<T>& ws) {
    const int ts = TS > 0 ? TS : a.tile_size, D = a.channels, Dp = padded<T>(D);
    const TileBox b = tile_box(t, tiles_along(a.width, ts), ts, a.width, a.height);
    const int32_t begin = a.tile_offsets[t], len = a.tile_offsets[t + 1] - begin;
    T* __restrict trans = ws.trans.data();
    T* __restrict alpha_sum = ws.alpha_sum.data();
    T* __restrict accum = ws.accum.data();
    T* __restrict w = ws.w.data();
    int32_t* __restrict last = ws.last.data();
    int32_t* __restrict stop = ws.stop.data();
    int32_t* __restrict row_alive = ws.row_alive.data();
    for (int r = 0; r < ts; ++r) row_alive[r] = b.y0 + r < b.y1 ? b.x1 - b.x0 : 0;
    for (int p = 0; p < ts * ts; ++p) {  // pixels beyond the image edge start "stopped"
        trans[p] = (b.x0 + p % ts < b.x1 && b.y0 + p / ts < b.y1) ? T(1) : T(0);
        alpha_sum[p] = 0;
        last[p] = len;
    }
    std::fill(ws.accum.begin(), ws.accum.end(), T(0));
    int alive = (b.x1 - b.x0) * (b.y1 - b.y0);
    for (int32_t j = 0; j < len && alive > 0; ++j) {
        if (j + kPrefetch < len) prefetch_gaussian(a, recs, a.flat_ids[begin + j + kPrefetch]);
        const int32_t g = a.flat_ids[begin + j];
        const Span sp = clip(recs[g].rect, b);
        if (sp.xa > sp.xb || sp.ya > sp.yb) continue;
        const Splat<T> s = recs[g].s;
        T* __restrict col = ws.col.data();
        std::copy(a.colors + int64_t(g) * D, a.colors + int64_t(g + 1) * D, col);
        // 1. weights of every pixel of the rectangle, a tile row per vector; rows are independent, so the
        //    processor overlaps them (nothing data-dependent in between)
        const int nrows = sp.yb - sp.ya + 1;
        int stops = 0;
        for (int r = 0; r < nrows; ++r) {
            T* __restrict wr = w + r * ts;
            if (row_alive[sp.ya + r - b.y0] == 0) {  // every pixel of this row has stopped
                std::fill(wr, wr + ts, T(0));
                continue;
            }
            const SplatRow<T> row = splat_row(s, sp.ya + r);
            const int r0 = (sp.ya + r - b.y0) * ts;
            T* __restrict tr = trans + r0;
            T* __restrict as = alpha_sum + r0;
            int32_t* __restrict sr = stop + r * ts;
#pragma omp simd reduction(+ : stops)
            for (int i = 0; i < ts; ++i) {  // the whole tile row at once, masked to the rectangle
                const int x = b.x0 + i;
                const T a0 = splat_alpha(s, row, x).alpha;
                const T alpha = ((x >= sp.xa) & (x <= sp.xb)) ? a0 : T(0);  // (no short-circuit: vectorises)
                const T t0 = tr[i], next = t0 * (T(1) - alpha);
                const bool live = alpha > T(0) && t0 > T(0);
                const bool st = live && next < Blend<T>::t_min;  // would make the pixel (nearly) opaque: stop
                const T wi = (live && !st) ? alpha * t0 : T(0);
                tr[i] = st ? T(0) : (wi > T(0) ? next : t0);
                as[i] += wi;
                wr[i] = wi;
                sr[i] = st;
                stops += st;
            }
        }
        // 2. the D channels of the pixels that take the Gaussian
        for (int r = 0; r < nrows; ++r) {
            const int r0 = (sp.ya + r - b.y0) * ts;
            for (uint32_t m = nonzero_mask(w + r * ts, ts); m; m &= m - 1) {
                const int i = __builtin_ctz(m);
                axpy(accum + int64_t(r0 + i) * Dp, col, w[r * ts + i], Dp);
            }
        }
        for (int q = 0; stops > 0 && q < nrows * ts; ++q) {  // (rare) pixels that stop at this Gaussian
            if (!stop[q] || row_alive[sp.ya + q / ts - b.y0] == 0 || w[q] != T(0)) continue;
            last[(sp.ya + q / ts - b.y0) * ts + q % ts] = j;
            --row_alive[sp.ya + q / ts - b.y0];
            --alive;
            --stops;
        }
    }
    for (int y = b.y0; y < b.y1; ++y) {
        for (int x = b.x0; x < b.x1; ++x) {
            const int p = (y - b.y0) * ts + (x - b.x0);
            const int64_t pix = int64_t(y) * a.width + x;
            T* o = out.image + pix * D;
            const T* in = accum + int64_t(p) * Dp;
            const T behind = T(1) - alpha_sum[p];
            for (int c = 0; c < D; ++c) o[c] = in[c] + behind * a.background[c];
            out.alpha[pix] = alpha_sum[p];
            out.last[pix] = last[p];
        }
    }
}

// ---- reverse ------------------------------------------------------------------------------------------------------

template <typename T> struct BwdScratch {
    std::vector<T> trans, rest, base, grad;  // per tile pixel; grad [P, Dp]: tile-local copy of dL/dimage
    std::vector<T> grad_cm;  // [k, P]: the geometry channels of grad, channel-major (dot products a row at a time)
    std::vector<int32_t> last;
    std::vector<T> alpha, e, dots, geo, v_col;  // per pixel of a Gaussian's rectangle rows; geo [6, ts]; v_col [D]
    BwdScratch(int ts, int D)
        : trans(ts * ts), rest(ts * ts), base(ts * ts), grad(size_t(ts) * ts * padded<T>(D), T(0)), last(ts * ts),
          alpha(ts * ts), e(ts * ts), dots(ts * ts), geo(6 * ts), v_col(padded<T>(D)) {}
    void reserve_geometry(int k, int ts) { grad_cm.resize(size_t(k) * ts * ts); }
};

template <typename T, int TS>
void bwd_tile(const RasterArgs<T>& a, const Rec<T>* recs, const RasterGrads<T>& g, int64_t t, BwdScratch<T>& ws,
              StripedLocks* locks) {
    const int ts = TS > 0 ? TS : a.tile_size, D = a.channels, Dp = padded<T>(D);
    const int k = std::min(g.geometry_channels, a.channels);
    const bool need_geo = g.v_means2d != nullptr, need_col = g.v_colors != nullptr;
    const TileBox b = tile_box(t, tiles_along(a.width, ts), ts, a.width, a.height);
    const int32_t begin = a.tile_offsets[t];
    T* __restrict trans = ws.trans.data();
    T* __restrict rest = ws.rest.data();
    T* __restrict base = ws.base.data();
    T* __restrict grad = ws.grad.data();
    int32_t* __restrict last = ws.last.data();
    T* __restrict al = ws.alpha.data();
    T* __restrict ee = ws.e.data();
    T* __restrict dots = ws.dots.data();
    T* __restrict geo = ws.geo.data();
    T* __restrict v_col = ws.v_col.data();
    T* __restrict grad_cm = ws.grad_cm.data();
    const int P = ts * ts;
    int32_t walk = 0;  // how much of the list some pixel of the tile went through
    for (int p = 0; p < ts * ts; ++p) {
        const int x = b.x0 + p % ts, y = b.y0 + p / ts;
        T* G = grad + int64_t(p) * Dp;  // (its padding stays zero)
        if (x >= b.x1 || y >= b.y1) {  // beyond the image edge: takes nothing
            trans[p] = rest[p] = base[p] = 0;
            last[p] = 0;
            std::fill(G, G + D, T(0));
            continue;
        }
        const int64_t pix = int64_t(y) * a.width + x;
        std::copy(g.v_image + pix * D, g.v_image + (pix + 1) * D, G);
        const T* img = g.image + pix * D;
        const T ga = g.v_alpha ? g.v_alpha[pix] : T(0);
        T r = ga * g.alpha[pix], gbg = 0;
        for (int c = 0; c < k; ++c) {
            r += G[c] * (img[c] - a.background[c]);
            gbg += G[c] * a.background[c];
        }
        trans[p] = 1;
        rest[p] = r;
        base[p] = ga - gbg;
        last[p] = g.last[pix];
        walk = std::max(walk, last[p]);
    }
    if (need_geo)
        for (int p = 0; p < P; ++p)
            for (int c = 0; c < k; ++c) grad_cm[int64_t(c) * P + p] = grad[int64_t(p) * Dp + c];
    for (int32_t j = 0; j < walk; ++j) {
        if (j + kPrefetch < walk) prefetch_gaussian(a, recs, a.flat_ids[begin + j + kPrefetch]);
        const int32_t gi = a.flat_ids[begin + j];
        const Span sp = clip(recs[gi].rect, b);
        if (sp.xa > sp.xb || sp.ya > sp.yb) continue;
        const Splat<T> s = recs[gi].s;
        const T* col = a.colors + int64_t(gi) * D;
        const int nrows = sp.yb - sp.ya + 1;
        // 1. alpha exactly as the forward, for the pixels that took this Gaussian (rows are independent)
        for (int r = 0; r < nrows; ++r) {
            const SplatRow<T> row = splat_row(s, sp.ya + r);
            const int32_t* lr = last + (sp.ya + r - b.y0) * ts;
            T* __restrict ar = al + r * ts;
            T* __restrict er = ee + r * ts;
#pragma omp simd
            for (int i = 0; i < ts; ++i) {
                const int x = b.x0 + i;
                const Alpha<T> v = splat_alpha(s, row, x);
                const bool ok = (x >= sp.xa) & (x <= sp.xb) & (j < lr[i]);  // (no short-circuit: vectorises)
                ar[i] = ok ? v.alpha : T(0);
                er[i] = ok ? v.e : T(0);
            }
        }
        // 2. the colour gradient sum_p w_p G_p, pixel by pixel (D wide)
        bool touched = false;
        for (int r = 0; r < nrows; ++r) {
            const int r0 = (sp.ya + r - b.y0) * ts;
            for (uint32_t m = nonzero_mask(al + r * ts, ts); m; m &= m - 1) {
                const int i = __builtin_ctz(m);
                if (need_col) {
                    if (!touched) std::fill(v_col, v_col + Dp, T(0));
                    axpy(v_col, grad + int64_t(r0 + i) * Dp, al[r * ts + i] * trans[r0 + i], Dp);
                }
                touched = true;
            }
        }
        if (!touched) continue;
        // ... and dL/dw's dot product sum_{c<k} G_c colour_c, a row of pixels per vector
        for (int r = 0; need_geo && r < nrows; ++r) {
            const int r0 = (sp.ya + r - b.y0) * ts;
            T* __restrict dr = dots + r * ts;
            std::fill(dr, dr + ts, T(0));
            int c = 0;
            for (; c + 4 <= k; c += 4) {  // four channels per pass over the row
                const T c0 = col[c], c1 = col[c + 1], c2 = col[c + 2], c3 = col[c + 3];
                const T* __restrict g0 = grad_cm + int64_t(c) * P + r0;
#pragma omp simd
                for (int i = 0; i < ts; ++i)
                    dr[i] += (g0[i] * c0 + g0[P + i] * c1) + (g0[2 * P + i] * c2 + g0[3 * P + i] * c3);
            }
            for (; c < k; ++c) {
                const T cc = col[c];
                const T* __restrict gc = grad_cm + int64_t(c) * P + r0;
#pragma omp simd
                for (int i = 0; i < ts; ++i) dr[i] += gc[i] * cc;
            }
        }
        // 3. the sequential rule (transmittance, suffix sum, dL/dalpha) and the geometry, a row per vector
        if (need_geo) std::fill(geo, geo + 6 * ts, T(0));
        for (int r = 0; r < nrows; ++r) {
            const int r0 = (sp.ya + r - b.y0) * ts;
            T* __restrict tr = trans + r0;
            const T* __restrict ar = al + r * ts;
            if (!need_geo) {
#pragma omp simd
                for (int i = 0; i < ts; ++i) tr[i] *= T(1) - ar[i];
                continue;
            }
            const SplatRow<T> row = splat_row(s, sp.ya + r);
            T* __restrict rs = rest + r0;
            const T* __restrict bs = base + r0;
            const T* __restrict er = ee + r * ts;
            const T* __restrict dr = dots + r * ts;
#pragma omp simd
            for (int i = 0; i < ts; ++i) {
                const T g_alpha = blend_bwd_step(tr[i], rs[i], ar[i], bs[i] + dr[i]);
                const SplatGrad<T> d = splat_alpha_grad(s, row, b.x0 + i, ar[i], er[i], g_alpha);
                geo[i] += d.mx;
                geo[ts + i] += d.my;
                geo[2 * ts + i] += d.a;
                geo[3 * ts + i] += d.b;
                geo[4 * ts + i] += d.c;
                geo[5 * ts + i] += d.o;
            }
        }
        T sums[6] = {0, 0, 0, 0, 0, 0};
        if (need_geo)
            for (int q = 0; q < 6; ++q)
                for (int i = 0; i < ts; ++i) sums[q] += geo[q * ts + i];
        if (locks) locks->lock(gi);
        if (need_col) axpy(g.v_colors + int64_t(gi) * D, v_col, T(1), D);
        if (need_geo) {
            g.v_means2d[2 * int64_t(gi)] += sums[0];
            g.v_means2d[2 * int64_t(gi) + 1] += sums[1];
            for (int c = 0; c < 3; ++c) g.v_conics[3 * int64_t(gi) + c] += sums[2 + c];
            g.v_opacities[gi] += sums[5];
        }
        if (locks) locks->unlock(gi);
    }
}

template <typename T> int64_t num_tiles(const RasterArgs<T>& a) {
    return int64_t(tiles_along(a.width, a.tile_size)) * tiles_along(a.height, a.tile_size);
}

}  // namespace

template <typename T> void rasterize_fwd_cpu(const RasterArgs<T>& a, const RasterOut<T>& out, int threads) {
    const int64_t n_tiles = num_tiles(a);
    const std::vector<Rec<T>> recs = pack(a, threads);
#pragma omp parallel num_threads(threads)
    {
        FwdScratch<T> ws(a.tile_size, a.channels);
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tiles; ++t) {
            switch (a.tile_size) {
                case 8: fwd_tile<T, 8>(a, recs.data(), out, t, ws); break;
                case 16: fwd_tile<T, 16>(a, recs.data(), out, t, ws); break;
                default: fwd_tile<T, 0>(a, recs.data(), out, t, ws);
            }
        }
    }
}

template <typename T> void rasterize_bwd_cpu(const RasterArgs<T>& a, const RasterGrads<T>& g, int threads) {
    if (!g.v_means2d && !g.v_colors) return;
    const int64_t n_tiles = num_tiles(a);
    const std::vector<Rec<T>> recs = pack(a, threads);
    StripedLocks* locks = threads > 1 ? new StripedLocks() : nullptr;
#pragma omp parallel num_threads(threads)
    {
        BwdScratch<T> ws(a.tile_size, a.channels);
        if (g.v_means2d) ws.reserve_geometry(std::min(g.geometry_channels, a.channels), a.tile_size);
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tiles; ++t) {
            switch (a.tile_size) {
                case 8: bwd_tile<T, 8>(a, recs.data(), g, t, ws, locks); break;
                case 16: bwd_tile<T, 16>(a, recs.data(), g, t, ws, locks); break;
                default: bwd_tile<T, 0>(a, recs.data(), g, t, ws, locks);
            }
        }
    }
    delete locks;
}

#define FF_INSTANTIATE(T)                                                                   \
    template void rasterize_fwd_cpu<T>(const RasterArgs<T>&, const RasterOut<T>&, int);     \
    template void rasterize_bwd_cpu<T>(const RasterArgs<T>&, const RasterGrads<T>&, int);
FF_INSTANTIATE(float)
FF_INSTANTIATE(double)
#undef FF_INSTANTIATE

}  // namespace ff
