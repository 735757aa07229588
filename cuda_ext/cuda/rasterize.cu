// CUDA rasteriser: a block per tile, a thread per pixel, any number of channels in one walk of the tile's list.
//
// The tile's depth-sorted Gaussians are taken B at a time into shared memory. Phase 1: every pixel computes its
// weights w_j = alpha_j T_j for the batch (the sequential part, blend.h). Phase 2: all D channels are accumulated
// from those weights, channels staged kChunk at a time in shared memory, so the list is walked once whatever D is
// (no pass per channel block, no padding, no compile-time channel count). Images are channel-major [D, H, W] here so
// that pixel threads read and write coalesced; the binding transposes.
//
// The reverse pass walks the list front to back in the same batches (blend.h): phase A recomputes alpha and T,
// phase B goes through the channels once for the colour gradients (summed over the warp, one atomic per warp) and
// the per-pixel dL/dw dot products, phase C applies the sequential suffix-sum rule and the geometry gradients.
#include "cuda_common.cuh"
#include "ff/api.h"
#include "ff/blend.h"
#include "ff/tiles.h"

namespace ff {
namespace {

constexpr int kChunk = 32;  // channels staged in shared memory at a time
template <typename T> struct Batch { static constexpr int size = sizeof(T) == 4 ? 16 : 8; };

// Shared memory of one block: per-pixel arrays [B][P] first, then the batch's colours and splats.
template <typename T> struct Smem {
    T* per_pixel;      // [planes][B][P]
    T* colors;         // [B][kChunk]
    Splat<T>* splats;  // [B]
    PixelRect* rects;  // [B]
    int32_t* ids;      // [B]
    static size_t bytes(int planes, int P) {
        constexpr int B = Batch<T>::size;
        return sizeof(T) * (size_t(planes) * B * P + B * kChunk) + B * (sizeof(Splat<T>) + sizeof(PixelRect) + 4);
    }
    __device__ static Smem carve(unsigned char* raw, int planes, int P) {
        constexpr int B = Batch<T>::size;
        Smem s;
        s.per_pixel = reinterpret_cast<T*>(raw);
        s.colors = s.per_pixel + size_t(planes) * B * P;
        s.splats = reinterpret_cast<Splat<T>*>(s.colors + B * kChunk);
        s.rects = reinterpret_cast<PixelRect*>(s.splats + B);
        s.ids = reinterpret_cast<int32_t*>(s.rects + B);
        return s;
    }
};

struct PixelCoord {
    int x, y;
    bool inside;
    int64_t pix;
};

__device__ __forceinline__ PixelCoord pixel_of(int64_t tile, int tid, int ts, int width, int height) {
    const int tx = tiles_along(width, ts);
    PixelCoord p;
    p.x = int(tile % tx) * ts + tid % ts;
    p.y = int(tile / tx) * ts + tid / ts;
    p.inside = p.x < width && p.y < height;
    p.pix = int64_t(p.y) * width + p.x;
    return p;
}

__device__ __forceinline__ bool covers(const PixelRect& r, int x, int y) {
    return x >= r.x0 && x <= r.x1 && y >= r.y0 && y <= r.y1;
}

template <typename T>
__device__ void load_batch(const RasterArgs<T>& a, const Smem<T>& s, int32_t first, int nb, int tid) {
    if (tid < nb) {
        const int32_t g = a.flat_ids[first + tid];
        s.ids[tid] = g;
        s.splats[tid] = load_splat(a.means2d, a.conics, a.opacities, g);
        const int32_t* r = a.rects + 4 * int64_t(g);
        s.rects[tid] = PixelRect{r[0], r[1], r[2], r[3]};
    }
}

// Colours [nb][kChunk] of channels c0.. of the batch, coalesced along channels.
template <typename T>
__device__ void load_colors(const RasterArgs<T>& a, const Smem<T>& s, int nb, int c0, int nc, int tid, int P) {
    for (int e = tid; e < nb * kChunk; e += P) {
        const int j = e / kChunk, c = e % kChunk;
        s.colors[e] = c < nc ? a.colors[int64_t(s.ids[j]) * a.channels + c0 + c] : T(0);
    }
}

template <typename T> __global__ void rasterize_fwd_kernel(RasterArgs<T> a, RasterOut<T> out) {
    constexpr int B = Batch<T>::size;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int ts = a.tile_size, P = ts * ts, D = a.channels, tid = threadIdx.x;
    const int64_t tile = blockIdx.x, HW = int64_t(a.width) * a.height;
    const Smem<T> s = Smem<T>::carve(smem_raw, 1, P);
    T* s_w = s.per_pixel;  // [B][P] weights
    const PixelCoord px = pixel_of(tile, tid, ts, a.width, a.height);
    const int32_t begin = a.tile_offsets[tile], len = a.tile_offsets[tile + 1] - begin;

    T trans = 1, acc_alpha = 0;
    int32_t last = len;
    bool done = !px.inside;
    for (int32_t b0 = 0; b0 < len; b0 += B) {
        if (__syncthreads_count(!done) == 0) break;  // every pixel of the tile has stopped
        const int nb = min(B, len - b0);
        load_batch(a, s, begin + b0, nb, tid);
        __syncthreads();
        bool any = false;
        for (int j = 0; j < nb; ++j) {  // phase 1: this pixel's weights, front to back
            T w = 0;
            if (!done && covers(s.rects[j], px.x, px.y)) {
                const T alpha = splat_alpha(s.splats[j], splat_row(s.splats[j], px.y), px.x).alpha;
                if (alpha > T(0)) {
                    const T next = trans * (T(1) - alpha);
                    if (next < Blend<T>::t_min) {
                        done = true;
                        last = b0 + j;
                    } else {
                        w = alpha * trans;
                        acc_alpha += w;
                        trans = next;
                        any = true;
                    }
                }
            }
            s_w[j * P + tid] = w;
        }
        for (int c0 = 0; c0 < D; c0 += kChunk) {  // phase 2: every channel from the same weights
            const int nc = min(kChunk, D - c0);
            __syncthreads();
            load_colors(a, s, nb, c0, nc, tid, P);
            __syncthreads();
            if (any) {
                for (int c = 0; c < nc; ++c) {
                    T acc = 0;
                    for (int j = 0; j < nb; ++j) acc += s_w[j * P + tid] * s.colors[j * kChunk + c];
                    out.image[(c0 + c) * HW + px.pix] += acc;
                }
            }
        }
        __syncthreads();
    }
    if (px.inside) {
        for (int c = 0; c < D; ++c) out.image[c * HW + px.pix] += (T(1) - acc_alpha) * a.background[c];
        out.alpha[px.pix] = acc_alpha;
        out.last[px.pix] = last;
    }
}

template <typename T> __global__ void rasterize_bwd_kernel(RasterArgs<T> a, RasterGrads<T> g) {
    constexpr int B = Batch<T>::size;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    __shared__ int32_t s_walk;
    const int ts = a.tile_size, P = ts * ts, D = a.channels, tid = threadIdx.x;
    const int k = min(g.geometry_channels, D);
    const int64_t tile = blockIdx.x, HW = int64_t(a.width) * a.height;
    const Smem<T> s = Smem<T>::carve(smem_raw, 2, P);
    T* s_alpha = s.per_pixel;     // [B][P]
    T* s_trans = s_alpha + B * P;  // [B][P] transmittance in front of each Gaussian
    const PixelCoord px = pixel_of(tile, tid, ts, a.width, a.height);
    const int32_t begin = a.tile_offsets[tile];
    const bool need_geo = g.v_means2d != nullptr, need_col = g.v_colors != nullptr;
    const bool lane0 = (tid & 31) == 0;

    // Per-pixel state (blend.h): transmittance, the suffix sum S, and the Gaussian-independent part of dL/dw.
    T trans = 1, rest = 0, base = 0;
    int32_t last = 0;
    if (px.inside) {
        last = g.last[px.pix];
        const T ga = g.v_alpha ? g.v_alpha[px.pix] : T(0);
        T gbg = 0;
        rest = ga * g.alpha[px.pix];
        for (int c = 0; c < k; ++c) {
            const T G = g.v_image[c * HW + px.pix];
            rest += G * (g.image[c * HW + px.pix] - a.background[c]);
            gbg += G * a.background[c];
        }
        base = ga - gbg;
    }
    if (tid == 0) s_walk = 0;
    __syncthreads();
    atomicMax(&s_walk, last);
    __syncthreads();
    const int32_t walk = s_walk;  // Gaussians of the list that some pixel of the tile went through

    for (int32_t b0 = 0; b0 < walk; b0 += B) {
        const int nb = min(B, walk - b0);
        load_batch(a, s, begin + b0, nb, tid);
        __syncthreads();
        uint32_t used = 0;  // bit j: some pixel of this warp takes Gaussian j (the same in every lane)
        for (int j = 0; j < nb; ++j) {  // phase A: alpha and transmittance, exactly as the forward
            T alpha = 0;
            if (px.inside && b0 + j < last && covers(s.rects[j], px.x, px.y)) {
                alpha = splat_alpha(s.splats[j], splat_row(s.splats[j], px.y), px.x).alpha;
            }
            s_alpha[j * P + tid] = alpha;
            s_trans[j * P + tid] = trans;
            trans *= T(1) - alpha;
            if (__ballot_sync(0xffffffffu, alpha > T(0))) used |= 1u << j;
        }
        T dots[B];  // phase B: sum_{c<k} G_c c_jc, and the colour gradients, in one pass over the channels
#pragma unroll
        for (int j = 0; j < B; ++j) dots[j] = 0;
        for (int c0 = 0; c0 < D && (need_col || c0 < k); c0 += kChunk) {
            const int nc = min(kChunk, D - c0);
            __syncthreads();
            load_colors(a, s, nb, c0, nc, tid, P);
            __syncthreads();
            for (int c = 0; c < nc; ++c) {
                const T G = px.inside ? g.v_image[(c0 + c) * HW + px.pix] : T(0);
#pragma unroll
                for (int j = 0; j < B; ++j) {
                    if (j >= nb || !((used >> j) & 1u)) continue;
                    if (need_col) {
                        const T v = warp_sum(s_alpha[j * P + tid] * s_trans[j * P + tid] * G);
                        if (lane0 && v != T(0)) atomicAdd(g.v_colors + int64_t(s.ids[j]) * D + c0 + c, v);
                    }
                    if (c0 + c < k) dots[j] += G * s.colors[j * kChunk + c];
                }
            }
        }
        if (need_geo) {  // phase C: the sequential rule for dL/dalpha, then the geometry
#pragma unroll
            for (int j = 0; j < B; ++j) {
                if (j >= nb || !((used >> j) & 1u)) continue;
                SplatGrad<T> d{0, 0, 0, 0, 0, 0};
                const T alpha = s_alpha[j * P + tid];
                if (alpha > T(0)) {
                    T tr = s_trans[j * P + tid];
                    const T g_alpha = blend_bwd_step(tr, rest, alpha, base + dots[j]);
                    const SplatRow<T> row = splat_row(s.splats[j], px.y);
                    const T e = splat_alpha(s.splats[j], row, px.x).e;
                    d = splat_alpha_grad(s.splats[j], row, px.x, alpha, e, g_alpha);
                }
                const T v_geo[6] = {d.mx, d.my, d.a, d.b, d.c, d.o};
                const int64_t gi = s.ids[j];
#pragma unroll
                for (int q = 0; q < 6; ++q) {
                    const T v = warp_sum(v_geo[q]);
                    if (lane0 && v != T(0)) {
                        T* dst = q < 2 ? g.v_means2d + 2 * gi + q : q < 5 ? g.v_conics + 3 * gi + (q - 2)
                                                                           : g.v_opacities + gi;
                        atomicAdd(dst, v);
                    }
                }
            }
        }
        __syncthreads();
    }
}

template <typename T> void check_tile(const RasterArgs<T>& a) {
    if (a.tile_size != 8 && a.tile_size != 16)
        throw std::invalid_argument("featurefields CUDA rasteriser: tile_size must be 8 or 16 (a warp-multiple "
                                    "block of pixels), got " + std::to_string(a.tile_size));
}

}  // namespace

template <typename T> void rasterize_fwd_cuda(const RasterArgs<T>& a, const RasterOut<T>& out, void* stream) {
    check_tile(a);
    const int P = a.tile_size * a.tile_size;
    const int64_t n_tiles = int64_t(tiles_along(a.width, a.tile_size)) * tiles_along(a.height, a.tile_size);
    rasterize_fwd_kernel<T><<<unsigned(n_tiles), P, Smem<T>::bytes(1, P), as_stream(stream)>>>(a, out);
    FF_LAUNCH_CHECK("rasterize_fwd_kernel");
}

template <typename T> void rasterize_bwd_cuda(const RasterArgs<T>& a, const RasterGrads<T>& g, void* stream) {
    check_tile(a);
    if (!g.v_means2d && !g.v_colors) return;
    const int P = a.tile_size * a.tile_size;
    const int64_t n_tiles = int64_t(tiles_along(a.width, a.tile_size)) * tiles_along(a.height, a.tile_size);
    rasterize_bwd_kernel<T><<<unsigned(n_tiles), P, Smem<T>::bytes(2, P), as_stream(stream)>>>(a, g);
    FF_LAUNCH_CHECK("rasterize_bwd_kernel");
}

#define FF_INSTANTIATE(T)                                                                   \
    template void rasterize_fwd_cuda<T>(const RasterArgs<T>&, const RasterOut<T>&, void*);  \
    template void rasterize_bwd_cuda<T>(const RasterArgs<T>&, const RasterGrads<T>&, void*);
FF_INSTANTIATE(float)
FF_INSTANTIATE(double)
#undef FF_INSTANTIATE

}  // namespace ff
