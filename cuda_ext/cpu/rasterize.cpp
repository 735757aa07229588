// CPU rasteriser: OpenMP over tiles; inside a tile, one front-to-back walk of its Gaussians serves all D channels.
//
// Layout: a tile's pixels are kept row by row, each row padded to whole SIMD vectors ("chunks" of simd.h's native
// width: 16 floats with AVX-512, 8 with AVX2, 4 with SSE). Everything per pixel that does not depend on D (alpha,
// transmittance, the stop rule, the whole reverse rule and the splat gradients) is evaluated a chunk at a time with
// blend.h's formulas on vectors, and only for the chunks a Gaussian's rectangle (tiles.h) overlaps, so small splats
// cost one vector per row whatever the vector width. The D-wide work is done in registers, a block of up to 8
// vectors of channels at a time (channel blocking: at D = 512 a block is 64 or 128 channels):
//   forward:  weights of a batch of up to 32 Gaussians go to a [32, pixels] table with a per-pixel bit mask of the
//             Gaussians that took it; then each pair of neighbouring pixels sums w * colour over its bits into
//             register accumulators (one colour load serves both), so an accumulator row is loaded and stored once
//             per batch instead of once per Gaussian.
//   reverse:  per Gaussian, one pass over the pixels that took it reads each pixel's gradient row once for both the
//             colour gradient sum_p w_p G_p (register accumulators) and the dot product G_p . colour that dL/dw
//             needs (fused; for few geometry channels, k <= 8, the dot product is cheaper channel-major, a chunk of
//             pixels at a time). A Gaussian's gradients summed over the tile are added to the global arrays under a
//             striped lock (parallel.h).
#include <algorithm>
#include <new>
#include <type_traits>
#include <vector>

#include "ff/api.h"
#include "ff/blend.h"
#include "ff/tiles.h"
#include "parallel.h"

namespace ff {
namespace {

using simd::bcast;
using simd::load;
using simd::movemask;
using simd::store;

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

// Scratch memory of one worker: 64-byte aligned, zeroed once (padding lanes stay zero, so the D-wide loops have no
// scalar remainder whatever D is; only scratch memory is padded, never the inputs or outputs).
template <typename T> class Scratch {
  public:
    explicit Scratch(size_t n = 0) { resize(n); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    ~Scratch() { release(); }
    void resize(size_t n) {
        release();
        n_ = n;
        p_ = static_cast<T*>(::operator new(std::max<size_t>(n, 1) * sizeof(T), std::align_val_t(64)));
        std::fill(p_, p_ + n, T{});
    }
    T* data() const { return p_; }

  private:
    void release() {
        if (p_) ::operator delete(p_, std::align_val_t(64));
        p_ = nullptr;
    }
    T* p_ = nullptr;
    size_t n_ = 0;
};

constexpr int kBlock = 8;      // vectors of channels held in registers at a time
constexpr int kPairBlock = 4;  // the same for two pixels at once (forward sums: 2 x 4 accumulators)
constexpr int kMaxChunks = 16;  // chunks per tile row at most (32 pixels, 2 lanes)
constexpr int kSmallK = 8;     // reverse: up to this many geometry channels, dot products are done channel-major

// Pixel layout of a tile (see the top of the file) and the pixel centres' x of each chunk.
template <typename T> struct TileLayout {
    static constexpr int L = simd::lanes<T>;
    int ts, rs, nc, P, dp;  // tile size, row stride, chunks per row, pixels incl. padding, D padded to vectors
    TileLayout(int tile_size, int D)
        : ts(tile_size), rs((tile_size + L - 1) / L * L), nc(rs / L), P(ts * rs), dp((D + L - 1) / L * L) {}
    int blocks() const { return (dp / L + kBlock - 1) / kBlock; }
};

template <typename T> inline void chunk_x(const TileBox& b, int nc, simd::vec<T>* xc) {
    using V = simd::vec<T>;
    for (int c = 0; c < nc; ++c) xc[c] = bcast<V>(T(b.x0 + c * simd::lanes<T>)) + simd::iota<V>();
}

// Calls f(nv, block_start) for the channel blocks of dp channels, nv vectors each.
template <typename T, int B = kBlock, typename F> inline void for_blocks(int dp, F&& f) {
    const int nvec = dp / simd::lanes<T>;
    for (int v0 = 0; v0 < nvec; v0 += B) f(std::min(B, nvec - v0), v0 * simd::lanes<T>);
}

// Turns a run-time vector count 1..kBlock into the template argument of K<NV>::run.
template <template <int> class K, typename... A> inline void dispatch_nv(int nv, A&&... args) {
    switch (nv) {
        case 1: K<1>::run(args...); break;
        case 2: K<2>::run(args...); break;
        case 3: K<3>::run(args...); break;
        case 4: K<4>::run(args...); break;
        case 5: K<5>::run(args...); break;
        case 6: K<6>::run(args...); break;
        case 7: K<7>::run(args...); break;
        default: K<8>::run(args...);
    }
}

// ---- forward ------------------------------------------------------------------------------------------------------

template <typename T> struct FwdScratch {
    using Ie = std::remove_reference_t<decltype(simd::vmask<T>{}[0])>;  // int32 / int64: lanes as wide as T's
    static constexpr int kWordBits = 8 * int(sizeof(Ie));
    TileLayout<T> lay;
    int batch, words;  // Gaussians gathered before the D-wide sums (their colours fill ~64 KB); bit words per pixel
    Scratch<T> trans, alpha_sum, w, colb, accum;  // w [batch, P]; colb [batch, dp]; accum [P, dp]
    Scratch<Ie> last, bits;                       // per pixel; bits [words, P]: which of the batch's Gaussians took it
    Scratch<simd::vec<T>> xc;
    std::vector<const T*> wrow, crow;             // per batch slot: its row of w, its colour (padded to dp)
    std::vector<uint8_t> started;                 // per pixel: accum holds a sum
    std::vector<int> row_alive;                   // per tile row: pixels still taking Gaussians
    FwdScratch(int ts, int D)
        : lay(ts, D), batch(std::clamp(16384 / lay.dp / kWordBits * kWordBits, kWordBits, 256)),
          words(batch / kWordBits), trans(lay.P), alpha_sum(lay.P), w(size_t(batch) * lay.P),
          colb(size_t(batch) * lay.dp), accum(size_t(lay.P) * lay.dp), last(lay.P), bits(size_t(words) * lay.P),
          xc(lay.nc), wrow(batch), crow(batch), started(lay.P), row_alive(ts) {
        for (int jl = 0; jl < batch; ++jl) wrow[jl] = w.data() + size_t(jl) * lay.P;
    }
};

// For two neighbouring pixels p, p + 1 of a row (accumulator rows acc and acc + dp): acc (+)= sum over the
// Gaussians jl set in either pixel's bit words of wrow[jl][p] * crow[jl], NV vectors of channels in registers. Both
// pixels lie in one chunk, so a Gaussian that took either wrote both weights (0 where it was not taken: that pixel
// adds nothing), and each colour vector loaded serves two pixels: at large D the sums are bound by reading the
// batch's colour rows (from L2), and this halves those reads; 2 NV independent FMA chains hide their latency.
template <int NV> struct FwdPair {
    template <typename T, typename Ie>
    static void run(T* acc, const bool* add, const Ie* words, int nwords, const T* const* wrow, int p,
                    const T* const* crow, int c0, int dp) {
        using V = simd::vec<T>;
        using Ue = std::make_unsigned_t<Ie>;
        constexpr int L = simd::lanes<T>, kBits = 8 * int(sizeof(Ie));
        T* acc1 = acc + dp;
        V r0[NV], r1[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
            r0[v] = add[0] ? load<V>(acc + v * L) : bcast<V>(T(0));
            r1[v] = add[1] ? load<V>(acc1 + v * L) : bcast<V>(T(0));
        }
        for (int wd = 0; wd < nwords; ++wd) {
            for (Ue m = Ue(words[wd]); m; m &= m - 1) {
                const int jl = wd * kBits + __builtin_ctzll(m);
                const T* w = wrow[jl] + p;
                const T w0 = w[0], w1 = w[1];
                const T* c = crow[jl] + c0;
#pragma GCC unroll 8
                for (int v = 0; v < NV; ++v) {
                    const V cv = load<V>(c + v * L);
                    r0[v] += w0 * cv;
                    r1[v] += w1 * cv;
                }
            }
        }
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
            store(acc + v * L, r0[v]);
            store(acc1 + v * L, r1[v]);
        }
    }
};

template <typename T> void fwd_flush(const TileBox& b, FwdScratch<T>& ws) {
    using Ie = typename FwdScratch<T>::Ie;
    static_assert(simd::lanes<T> % 2 == 0, "pixel pairs need chunks of an even number of lanes");
    const TileLayout<T>& lay = ws.lay;
    Ie words[8];
    // pixel pairs (i, i + 1): a row's stride is whole chunks of an even lane count, so i + 1 is in the row (past
    // the tile's edge it is padding: no bits, weights 0)
    for (int r = 0; r < b.y1 - b.y0; ++r) {
        for (int i = 0; i < b.x1 - b.x0; i += 2) {
            const int p = r * lay.rs + i;
            Ie any = 0;
            for (int wd = 0; wd < ws.words; ++wd) {
                Ie* src = ws.bits.data() + size_t(wd) * lay.P + p;
                words[wd] = src[0] | src[1];
                any |= words[wd];
                src[0] = src[1] = 0;
            }
            if (!any) continue;
            const bool add[2] = {bool(ws.started[p]), bool(ws.started[p + 1])};
            ws.started[p] = ws.started[p + 1] = 1;
            T* acc = ws.accum.data() + size_t(p) * lay.dp;
            for_blocks<T, kPairBlock>(lay.dp, [&](int nv, int c0) {
                dispatch_nv<FwdPair>(nv, acc + c0, add, words, ws.words, ws.wrow.data(), p, ws.crow.data(), c0,
                                     lay.dp);
            });
        }
    }
}

template <typename T>
void fwd_tile(const RasterArgs<T>& a, const Rec<T>* recs, const RasterOut<T>& out, int64_t t, FwdScratch<T>& ws) {
    using V = simd::vec<T>;
    using I = simd::vmask<T>;
    using U = typename simd::Vec<T>::bits;
    using Ie = typename FwdScratch<T>::Ie;
    constexpr int L = simd::lanes<T>, kBits = FwdScratch<T>::kWordBits;
    const TileLayout<T>& lay = ws.lay;
    const int ts = lay.ts, rs = lay.rs, D = a.channels;
    const TileBox b = tile_box(t, tiles_along(a.width, ts), ts, a.width, a.height);
    const int32_t begin = a.tile_offsets[t], len = a.tile_offsets[t + 1] - begin;
    T* __restrict trans = ws.trans.data();
    T* __restrict alpha_sum = ws.alpha_sum.data();
    Ie* __restrict last = ws.last.data();
    V* xc = ws.xc.data();
    chunk_x<T>(b, lay.nc, xc);
    for (int r = 0; r < ts; ++r) {
        ws.row_alive[r] = b.y0 + r < b.y1 ? b.x1 - b.x0 : 0;
        for (int i = 0; i < rs; ++i) {  // pixels beyond the image edge (and row padding) start "stopped"
            const int p = r * rs + i;
            trans[p] = (b.x0 + i < b.x1 && b.y0 + r < b.y1) ? T(1) : T(0);
            alpha_sum[p] = 0;
            last[p] = len;
            ws.started[p] = 0;
        }
    }
    int alive = (b.x1 - b.x0) * (b.y1 - b.y0);
    int nb = 0;  // Gaussians in the current batch
    SplatCol<V> cols[kMaxChunks];
    I inr[kMaxChunks];
    for (int32_t j = 0; j < len && alive > 0; ++j) {
        if (j + kPrefetch < len) prefetch_gaussian(a, recs, a.flat_ids[begin + j + kPrefetch]);
        const int32_t g = a.flat_ids[begin + j];
        const Span sp = clip(recs[g].rect, b);
        if (sp.xa > sp.xb || sp.ya > sp.yb) continue;
        const Splat<T> s = recs[g].s;
        const int c0 = (sp.xa - b.x0) / L, c1 = (sp.xb - b.x0) / L;
        for (int c = c0; c <= c1; ++c) {  // what the rows share: the columns' terms, the lanes inside the rectangle
            cols[c] = splat_col(s, (xc[c] + T(0.5)) - s.mx);
            inr[c] = (xc[c] >= T(sp.xa)) & (xc[c] <= T(sp.xb));
        }
        const U bit = bcast<U>(std::make_unsigned_t<Ie>(1) << (nb % kBits));
        Ie* __restrict bw = ws.bits.data() + size_t(nb / kBits) * lay.P;
        T* __restrict wb = ws.w.data() + size_t(nb) * lay.P;
        I took = bcast<I>(0);
        // the weights of every chunk of the rectangle; rows and chunks are independent, so the processor overlaps
        // them (nothing data-dependent in between)
        for (int y = sp.ya; y <= sp.yb; ++y) {
            const int rr = y - b.y0;
            if (ws.row_alive[rr] == 0) continue;  // every pixel of this row has stopped
            const SplatRow<T> row = splat_row(s, y);
            for (int c = c0; c <= c1; ++c) {
                const int p = rr * rs + c * L;
                const V t0 = load<V>(trans + p);
                const I open = t0 > T(0);  // not stopped (transmittance of a running pixel stays >= t_min)
                if (!movemask(open)) continue;
                const V alpha = inr[c] ? splat_alpha_at(s, row, cols[c]).alpha : T(0);
                // Stopped pixels have t0 = 0 and get w = 0; alpha = 0 leaves t0 as it is: no other case to mask.
                const V next = t0 * (T(1) - alpha);
                const I st = (next < Blend<T>::t_min) & open;  // would make the pixel (nearly) opaque: stop
                const V wi = st ? T(0) : alpha * t0;
                store(trans + p, st ? T(0) : next);
                store(alpha_sum + p, load<V>(alpha_sum + p) + wi);
                store(wb + p, wi);
                const I take = wi != T(0);
                store(bw + p, load<U>(bw + p) | (U(take) & bit));
                took |= take;
                if (const uint32_t sm = movemask(st)) {  // (rare) pixels that stop at this Gaussian
                    const int n = __builtin_popcount(sm);
                    ws.row_alive[rr] -= n;
                    alive -= n;
                    store(last + p, st ? bcast<I>(Ie(j)) : load<I>(last + p));
                }
            }
        }
        if (!movemask(took)) continue;
        // Colour rows are read in place, a whole number of vectors each (the lanes past D land in accumulator padding);
        // only a row whose padded read would run past the end of the array is copied, zero-padded, first.
        const T* colour = a.colors + int64_t(g) * D;
        if (int64_t(g) * D + lay.dp > int64_t(a.n) * D) {
            T* dst = ws.colb.data() + size_t(nb) * lay.dp;
            for (int c = 0; c < D; ++c) dst[c] = colour[c];
            colour = dst;
        }
        ws.crow[nb] = colour;
        if (++nb == ws.batch) {
            fwd_flush(b, ws);
            nb = 0;
        }
    }
    if (nb > 0) fwd_flush(b, ws);
    for (int y = b.y0; y < b.y1; ++y) {
        for (int x = b.x0; x < b.x1; ++x) {
            const int p = (y - b.y0) * rs + (x - b.x0);
            const int64_t pix = int64_t(y) * a.width + x;
            T* o = out.image + pix * D;
            const T behind = T(1) - alpha_sum[p];
            if (ws.started[p]) {
                const T* in = ws.accum.data() + size_t(p) * lay.dp;
                for (int c = 0; c < D; ++c) o[c] = in[c] + behind * a.background[c];
            } else {
                for (int c = 0; c < D; ++c) o[c] = behind * a.background[c];
            }
            out.alpha[pix] = alpha_sum[p];
            out.last[pix] = int32_t(last[p]);
        }
    }
}

// ---- reverse ------------------------------------------------------------------------------------------------------

template <typename T> struct BwdScratch {
    using Ie = typename FwdScratch<T>::Ie;
    TileLayout<T> lay;
    int k;  // geometry channels
    Scratch<T> trans, rest, base, grad;  // per pixel; grad [P, dp]: tile-local copy of dL/dimage
    Scratch<T> grad_cm;                  // [k, P] the geometry channels of grad, channel-major (k <= kSmallK)
    Scratch<T> alpha, e, w;              // per pixel, for the current Gaussian
    Scratch<simd::vec<T>> dpart, xc;     // dpart [P]: per-pixel partial dot products across channel blocks
    Scratch<T> colk, v_col, v_bg;        // [dp] colour zeroed from channel k on; the colour gradient; this worker's
                                         // share of the background gradient
    Scratch<Ie> last;
    std::vector<uint32_t> rowmask;       // per tile row: chunks' lanes with alpha > 0 (bit c * L + lane)
    BwdScratch(int ts, int D, int k_)
        : lay(ts, D), k(k_), trans(lay.P), rest(lay.P), base(lay.P), grad(size_t(lay.P) * lay.dp),
          grad_cm(k_ <= kSmallK ? size_t(k_) * lay.P : 0), alpha(lay.P), e(lay.P), w(lay.P),
          dpart(lay.P), xc(lay.nc), colk(lay.dp), v_col(lay.dp), v_bg(lay.dp), last(lay.P), rowmask(ts) {}
};

// One channel block of the reverse's per-pixel pass over the pixels that took a Gaussian: COL adds w_p G_p into
// the colour gradient, DOT accumulates G_p . colk into each pixel's partial dot product (first block: stores).
template <int NV> struct BwdPixels {
    template <typename T>
    static void run(const BwdScratch<T>& ws, int ya, int yb, bool col, bool dot, bool first_dot, int c0) {
        if (col && dot) go<true, true>(ws, ya, yb, first_dot, c0);
        else if (col) go<true, false>(ws, ya, yb, first_dot, c0);
        else go<false, true>(ws, ya, yb, first_dot, c0);
    }
    template <bool COL, bool DOT, typename T>
    static void go(const BwdScratch<T>& ws, int ya, int yb, bool first_dot, int c0) {
        using V = simd::vec<T>;
        constexpr int L = simd::lanes<T>;
        const int rs = ws.lay.rs, dp = ws.lay.dp;
        const T* __restrict grad = ws.grad.data() + c0;
        const T* __restrict w = ws.w.data();
        const uint32_t* rowmask = ws.rowmask.data();
        V* __restrict dpart = ws.dpart.data();
        V acc[NV], ck[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
            acc[v] = bcast<V>(T(0));
            ck[v] = DOT ? load<V>(ws.colk.data() + c0 + v * L) : bcast<V>(T(0));
        }
        for (int rr = ya; rr <= yb; ++rr) {
            for (uint32_t m = rowmask[rr]; m; m &= m - 1) {
                const int p = rr * rs + __builtin_ctz(m);
                const T* G = grad + size_t(p) * dp;
                const T wp = w[p];
                V d0 = bcast<V>(T(0)), d1 = bcast<V>(T(0));  // (two chains: the FMAs' latency overlaps)
#pragma GCC unroll 8
                for (int v = 0; v < NV; ++v) {
                    const V gv = load<V>(G + v * L);
                    if (COL) acc[v] += wp * gv;
                    if (DOT) {
                        if (v & 1) d1 += gv * ck[v];
                        else d0 += gv * ck[v];
                    }
                }
                if (DOT) dpart[p] = first_dot ? d0 + d1 : dpart[p] + (d0 + d1);
            }
        }
        if (COL) {
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) store(ws.v_col.data() + c0 + v * L, acc[v]);
        }
    }
};

template <typename T>
void bwd_tile(const RasterArgs<T>& a, const Rec<T>* recs, const RasterGrads<T>& g, int64_t t, BwdScratch<T>& ws,
              StripedLocks* locks) {
    using V = simd::vec<T>;
    using I = typename simd::Vec<T>::mask;
    using Ie = typename BwdScratch<T>::Ie;
    constexpr int L = simd::lanes<T>;
    const TileLayout<T>& lay = ws.lay;
    const int ts = lay.ts, rs = lay.rs, D = a.channels, P = lay.P, k = ws.k;
    const bool need_geo = g.v_means2d != nullptr, need_col = g.v_colors != nullptr;
    const bool small_k = k <= kSmallK, fused_dot = need_geo && !small_k;
    const int kp = (k + L - 1) / L * L;  // channels the fused dot product covers (colk is zero from k on)
    const TileBox b = tile_box(t, tiles_along(a.width, ts), ts, a.width, a.height);
    const int32_t begin = a.tile_offsets[t];
    T* __restrict trans = ws.trans.data();
    T* __restrict rest = ws.rest.data();
    T* __restrict base = ws.base.data();
    T* __restrict grad = ws.grad.data();
    T* __restrict al = ws.alpha.data();
    T* __restrict ee = ws.e.data();
    T* __restrict wt = ws.w.data();
    T* __restrict grad_cm = ws.grad_cm.data();
    Ie* __restrict last = ws.last.data();
    const V* __restrict dpart = ws.dpart.data();
    V* xc = ws.xc.data();
    chunk_x<T>(b, lay.nc, xc);
    int32_t walk = 0;  // how much of the list some pixel of the tile went through
    for (int r = 0; r < ts; ++r) {
        for (int i = 0; i < rs; ++i) {
            const int p = r * rs + i;
            const int x = b.x0 + i, y = b.y0 + r;
            T* G = grad + size_t(p) * lay.dp;  // (its padding stays zero)
            if (x >= b.x1 || y >= b.y1) {      // beyond the image edge: takes nothing
                trans[p] = rest[p] = base[p] = 0;
                last[p] = 0;
                continue;
            }
            const int64_t pix = int64_t(y) * a.width + x;
            const T* vi = g.v_image + pix * D;
            for (int c = 0; c < D; ++c) G[c] = vi[c];
            if (g.v_background) {  // the background shows through by 1 - alpha (while the row is at hand)
                T* __restrict vb = ws.v_bg.data();
                const T behind = T(1) - g.alpha[pix];
                for (int c = 0; c < D; ++c) vb[c] += behind * vi[c];
            }
            const T* img = g.image + pix * D;
            const T ga = g.v_alpha ? g.v_alpha[pix] : T(0);
            T rsum = ga * g.alpha[pix], gbg = 0;
            for (int c = 0; c < k; ++c) {
                rsum += G[c] * (img[c] - a.background[c]);
                gbg += G[c] * a.background[c];
            }
            trans[p] = 1;
            rest[p] = rsum;
            base[p] = ga - gbg;
            last[p] = g.last[pix];
            walk = std::max(walk, g.last[pix]);
        }
    }
    if (!need_geo && !need_col) return;  // the background gradient alone
    if (need_geo && small_k)
        for (int p = 0; p < P; ++p)
            for (int c = 0; c < k; ++c) grad_cm[size_t(c) * P + p] = grad[size_t(p) * lay.dp + c];
    const int nch = std::max(need_col ? lay.dp : 0, fused_dot ? kp : 0);  // channels of the per-pixel pass
    SplatCol<V> cols[kMaxChunks];
    I inr[kMaxChunks];
    for (int32_t j = 0; j < walk; ++j) {
        if (j + kPrefetch < walk) prefetch_gaussian(a, recs, a.flat_ids[begin + j + kPrefetch]);
        const int32_t gi = a.flat_ids[begin + j];
        const Span sp = clip(recs[gi].rect, b);
        if (sp.xa > sp.xb || sp.ya > sp.yb) continue;
        const Splat<T> s = recs[gi].s;
        const T* col = a.colors + int64_t(gi) * D;
        const int c0 = (sp.xa - b.x0) / L, c1 = (sp.xb - b.x0) / L;
        const int ya = sp.ya - b.y0, yb = sp.yb - b.y0;
        for (int c = c0; c <= c1; ++c) {
            cols[c] = splat_col(s, (xc[c] + T(0.5)) - s.mx);
            inr[c] = (xc[c] >= T(sp.xa)) & (xc[c] <= T(sp.xb));
        }
        // 1. alpha exactly as the forward, for the pixels that took this Gaussian, and their weights
        uint32_t any = 0;
        for (int rr = ya; rr <= yb; ++rr) {
            const SplatRow<T> row = splat_row(s, rr + b.y0);
            uint32_t rm = 0;
            for (int c = c0; c <= c1; ++c) {
                const int p = rr * rs + c * L;
                const I ok = inr[c] & (load<I>(last + p) > Ie(j));
                if (!movemask(ok)) continue;  // (its bits in rm stay 0: nothing below reads the chunk)
                const Alpha<V> v = splat_alpha_at(s, row, cols[c]);
                const V alpha = ok ? v.alpha : T(0);
                store(al + p, alpha);
                store(ee + p, ok ? v.e : T(0));
                store(wt + p, alpha * load<V>(trans + p));
                rm |= movemask(alpha != T(0)) << (c * L);
            }
            ws.rowmask[rr] = rm;
            any |= rm;
        }
        if (!any) continue;
        // 2. one pass over the pixels that took it, a channel block at a time: colour gradient, fused dot products
        if (fused_dot) {
            T* ck = ws.colk.data();
            for (int c = 0; c < k; ++c) ck[c] = col[c];
            for (int c = k; c < kp; ++c) ck[c] = T(0);
        }
        bool first_dot = true;
        for_blocks<T>(nch, [&](int nv, int c0b) {
            const bool dot = fused_dot && c0b < kp;
            dispatch_nv<BwdPixels>(nv, ws, ya, yb, need_col, dot, first_dot, c0b);
            first_dot &= !dot;
        });
        // 3. the sequential rule (transmittance, suffix sum, dL/dalpha) and the splat gradients, a chunk at a time
        V gm[6];
        for (int q = 0; q < 6; ++q) gm[q] = bcast<V>(T(0));
        for (int rr = ya; rr <= yb; ++rr) {
            const uint32_t rm = ws.rowmask[rr];
            if (!rm) continue;
            const SplatRow<T> row = splat_row(s, rr + b.y0);
            for (int c = c0; c <= c1; ++c) {
                if (!((rm >> (c * L)) & ((1u << L) - 1u))) continue;  // (L < 32) no pixel of the chunk took it
                const int p = rr * rs + c * L;
                const V alpha = load<V>(al + p);
                V tr = load<V>(trans + p);
                if (!need_geo) {
                    store(trans + p, tr * (T(1) - alpha));
                    continue;
                }
                V dot;
                if (small_k) {
                    dot = bcast<V>(T(0));
                    for (int q = 0; q < k; ++q) dot += load<V>(grad_cm + size_t(q) * P + p) * col[q];
                } else {  // the chunk's lanes' partial dot products, summed (lanes that did not take it: masked below)
                    dot = simd::transpose_sum(dpart + p);
                }
                const V gw = (alpha != T(0)) ? load<V>(base + p) + dot : T(0);
                V rs_ = load<V>(rest + p);
                const V g_alpha = blend_bwd_step<V, T>(tr, rs_, alpha, gw);
                store(trans + p, tr);
                store(rest + p, rs_);
                const SplatGrad<V> d = splat_alpha_grad_dx(s, row, cols[c].dx, alpha, load<V>(ee + p), g_alpha);
                gm[0] += d.mx;
                gm[1] += d.my;
                gm[2] += d.a;
                gm[3] += d.b;
                gm[4] += d.c;
                gm[5] += d.o;
            }
        }
        // 4. this tile's share of the Gaussian's gradients
        if (locks) locks->lock(gi);
        if (need_col) {
            T* vc = g.v_colors + int64_t(gi) * D;
            const T* src = ws.v_col.data();
            for (int c = 0; c < D; ++c) vc[c] += src[c];
        }
        if (need_geo) {
            g.v_means2d[2 * int64_t(gi)] += simd::hsum(gm[0]);
            g.v_means2d[2 * int64_t(gi) + 1] += simd::hsum(gm[1]);
            for (int c = 0; c < 3; ++c) g.v_conics[3 * int64_t(gi) + c] += simd::hsum(gm[2 + c]);
            g.v_opacities[gi] += simd::hsum(gm[5]);
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
        for (int64_t t = 0; t < n_tiles; ++t) fwd_tile<T>(a, recs.data(), out, t, ws);
    }
}

template <typename T> void rasterize_bwd_cpu(const RasterArgs<T>& a, const RasterGrads<T>& g, int threads) {
    if (!g.v_means2d && !g.v_colors && !g.v_background) return;
    const int64_t n_tiles = num_tiles(a);
    const std::vector<Rec<T>> recs = pack(a, threads);
    StripedLocks* locks = threads > 1 ? new StripedLocks() : nullptr;
    const int k = g.v_means2d ? std::min(g.geometry_channels, a.channels) : 0;
#pragma omp parallel num_threads(threads)
    {
        BwdScratch<T> ws(a.tile_size, a.channels, k);
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t t = 0; t < n_tiles; ++t) bwd_tile<T>(a, recs.data(), g, t, ws, locks);
        if (g.v_background) {
#pragma omp critical(ff_v_background)
            for (int c = 0; c < a.channels; ++c) g.v_background[c] += ws.v_bg.data()[c];
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
