// The C-style interface between the binding (binding.cpp, the only file that sees PyTorch) and the kernels.
//
// Raw pointers to contiguous arrays, sizes, and an allocator callback for outputs whose size the kernels discover.
// Every function exists for float and double, as *_cpu (OpenMP, `threads` workers) and *_cuda (on `stream`, a
// cudaStream_t passed as void* so this header needs no CUDA). Gradient outputs are accumulated (+=) into zeroed
// arrays; a null gradient pointer means "not needed".
#pragma once

#include <cstddef>
#include <cstdint>

#include "common.h"

namespace ff {

// Memory for outputs of data-dependent size (and CUDA scratch): the binding hands out tensors it keeps alive.
struct Allocator {
    void* (*fn)(void* ctx, size_t bytes);
    void* ctx;
    void* operator()(size_t bytes) const { return fn(ctx, bytes); }
};

// ---- projection: N Gaussians into one camera ------------------------------------------------------------------
template <typename T> struct ProjectArgs {
    int64_t n;
    int width, height;
    T eps2d, near_plane, far_plane;
    const T* means;    // [N, 3]
    const T* quats;    // [N, 4] wxyz, any length
    const T* scales;   // [N, 3]
    const T* viewmat;  // [4, 4] world-to-camera
    const T* K;        // [3, 3]
};

template <typename T> struct ProjectOut {
    T* means2d;       // [N, 2]
    T* conics;        // [N, 3]
    T* depths;        // [N]
    int32_t* radii;   // [N], 0 = culled
};

template <typename T> struct ProjectGrads {
    const int32_t* radii;   // from the forward
    const T* v_means2d;     // [N, 2]
    const T* v_conics;      // [N, 3]
    const T* v_depths;      // [N] or null
    T* v_means;             // [N, 3]
    T* v_quats;             // [N, 4]
    T* v_scales;            // [N, 3]
    T* v_viewmat;           // [4, 4] or null
};

template <typename T> void project_fwd_cpu(const ProjectArgs<T>& a, const ProjectOut<T>& out, int threads);
template <typename T> void project_bwd_cpu(const ProjectArgs<T>& a, const ProjectGrads<T>& g, int threads);
template <typename T> void project_fwd_cuda(const ProjectArgs<T>& a, const ProjectOut<T>& out, void* stream);
template <typename T> void project_bwd_cuda(const ProjectArgs<T>& a, const ProjectGrads<T>& g, void* stream);

// ---- spherical harmonics: any number of channels ----------------------------------------------------------------
// Coefficients may come in two blocks, as 3DGS stores them (DC apart from the rest, with their own learning rates):
// basis k of Gaussian i is dc[i, k] for k < Kd, else rest[i, k - Kd]; a single [N, K, C] block is dc alone (Kr = 0).
template <typename T> struct SHArgs {
    int64_t n;
    int degree;      // 0..3; Kd + Kr >= (degree + 1)^2
    int channels;    // C
    const T* dirs;   // [N, 3], any length
    const T* dc;     // [N, Kd, C]
    int kd;
    const T* rest;   // [N, Kr, C] or null
    int kr;
    FF_HD const T* row(int64_t i, int k) const {
        return k < kd ? dc + (i * kd + k) * channels : rest + (i * kr + (k - kd)) * channels;
    }
};

// out [N, C]. Reverse: v_dc / v_rest (null: not needed) are written whole (not accumulated), v_dirs [N, 3] added to.
template <typename T> struct SHGrads {
    const T* v_out;  // [N, C]
    T* v_dc;
    T* v_rest;
    T* v_dirs;
};

template <typename T> void sh_fwd_cpu(const SHArgs<T>& a, T* out, int threads);
template <typename T> void sh_bwd_cpu(const SHArgs<T>& a, const SHGrads<T>& g, int threads);
template <typename T> void sh_fwd_cuda(const SHArgs<T>& a, T* out, void* stream);
template <typename T> void sh_bwd_cuda(const SHArgs<T>& a, const SHGrads<T>& g, void* stream);

// ---- tile binning ---------------------------------------------------------------------------------------------
template <typename T> struct BinArgs {
    int64_t n;
    int width, height, tile_size;
    const T* means2d;       // [N, 2]
    const int32_t* radii;   // [N]
    const T* conics;        // [N, 3]
    const T* opacities;     // [N]
    const T* depths;        // [N]
};

template <typename T> struct BinOut {
    int32_t* rects;         // [N, 4] pixel rectangle each Gaussian may touch (x0, x1, y0, y1 inclusive)
    int32_t* tile_offsets;  // [tiles + 1] tile t's Gaussians are flat_ids[tile_offsets[t] .. tile_offsets[t+1])
    int32_t* flat_ids;      // [M] set by the call (allocated with alloc): Gaussian ids, front to back per tile
    int64_t num_pairs;      // M
};

// Returns false (and sets num_pairs) when M would not fit in int32.
template <typename T> bool bin_cpu(const BinArgs<T>& a, BinOut<T>& out, Allocator alloc, int threads);
template <typename T> bool bin_cuda(const BinArgs<T>& a, BinOut<T>& out, Allocator alloc, void* stream);

// ---- rasterisation: any number of channels, one traversal per tile -------------------------------------------
template <typename T> struct RasterArgs {
    int64_t n;
    int channels;            // D
    int width, height, tile_size;
    const T* means2d;        // [N, 2]
    const T* conics;         // [N, 3]
    const T* opacities;      // [N]
    const T* colors;         // [N, D]
    const T* background;     // [D]
    const int32_t* rects;    // [N, 4]
    const int32_t* tile_offsets;
    const int32_t* flat_ids;
};

template <typename T> struct RasterOut {
    T* image;       // [H, W, D] (CPU: every pixel written; CUDA: [D, H, W], zeroed by the caller)
    T* alpha;       // [H, W]
    int32_t* last;  // [H, W] how many of its tile's Gaussians the pixel went through before it stopped
};

template <typename T> struct RasterGrads {
    const T* image;           // forward outputs
    const T* alpha;
    const int32_t* last;
    const T* v_image;         // [H, W, D]
    const T* v_alpha;         // [H, W] or null
    int geometry_channels;    // k: only channels [0, k) (and alpha) move the geometry
    T* v_means2d;             // [N, 2] or null (then v_conics and v_opacities are null too)
    T* v_conics;              // [N, 3]
    T* v_opacities;           // [N]
    T* v_colors;              // [N, D] or null
    T* v_background;          // [D] or null: sum over pixels of (1 - alpha) dL/dimage (CPU; the CUDA path sums it
                              // with a matrix-vector product in the binding)
};

template <typename T> void rasterize_fwd_cpu(const RasterArgs<T>& a, const RasterOut<T>& out, int threads);
template <typename T> void rasterize_bwd_cpu(const RasterArgs<T>& a, const RasterGrads<T>& g, int threads);
// Benchmark diagnostics (cpu/diagnostics.cpp): the (Gaussian, pixel) pairs a render evaluates, given the forward's
// `last`, and the FLOP rate of independent FMA chains on this build's vectors (the practical peak).
struct PairCounts {
    int64_t live;     // pixel in the Gaussian's rectangle, not stopped before it: alpha is evaluated
    int64_t taken;    // ... and alpha >= 1/255: the pixel takes the Gaussian (the D-wide work)
    int64_t entries;  // tile-list entries walked
};
template <typename T> PairCounts rasterize_pairs_cpu(const RasterArgs<T>& a, const int32_t* last, int threads);
double fma_peak_flops(int threads, double seconds);

// ---- a Gaussian mixture at points (mixture.h; reference: fields/splats.py::gaussian_mixture_at) -----------------
// Per point: density = sum w, log_transmit = sum log(1 - min(w, 0.9999)), acc[C] = sum w values[g] over the
// Gaussians whose cut-off ellipsoid holds it (w = amp exp(-m2 / 2)). The neighbour search is the kernel's own.
template <typename T> struct MixtureArgs {
    int64_t p, n;
    int channels;        // C (0: density and transmittance only)
    T blur, cutoff;      // metres; standard deviations
    const T* points;     // [P, 3]
    const T* means;      // [N, 3]
    const T* quats;      // [N, 4] wxyz, any norm
    const T* scales;     // [N, 3]
    const T* opacities;  // [N]
    const T* values;     // [N, C]
};

template <typename T> struct MixtureOut {
    T* density;       // [P]
    T* log_transmit;  // [P]
    T* acc;           // [P, C] value-weighted sums (not yet divided by the density)
};

template <typename T> void mixture_at_cpu(const MixtureArgs<T>& a, const MixtureOut<T>& out, int threads);

// ---- which Gaussians a small render may need (fields/rendering.py::_visible) ------------------------------------
// Indices (ascending, written to out [N]; returns how many) of the Gaussians whose footprint bound meets the image:
// radius <= 3 sqrt(|J|_F^2 s_max^2 + eps2d) + 2 pixels (J with K's skew), in front of half the near plane. A superset of what
// project_one keeps: the projection then decides. log_scales as the field stores them. One thread: a pass this
// light costs less than waking workers.
template <typename T>
int64_t footprint_candidates_cpu(int64_t n, const T* means, const T* log_scales, const T* viewmat, const T* K,
                                 int width, int height, T eps2d, T near_plane, int64_t* out);

template <typename T> void rasterize_fwd_cuda(const RasterArgs<T>& a, const RasterOut<T>& out, void* stream);
template <typename T> void rasterize_bwd_cuda(const RasterArgs<T>& a, const RasterGrads<T>& g, void* stream);

}  // namespace ff
