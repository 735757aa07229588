// CUDA tile binning: one (tile << 32 | depth) key per (Gaussian, tile) pair, a stable radix sort, tile ranges.
//
// Pairs are emitted in Gaussian index order and the sort is stable, so equal depths keep index order (as the
// reference's stable sort). Depths are keyed as float32 bits (float64 scenes: ties below float32 precision fall
// back to index order).
#include <cub/cub.cuh>

#include "cuda_common.cuh"
#include "ff/api.h"
#include "ff/tiles.h"

namespace ff {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ uint32_t depth_key(float v) {
    uint32_t u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

template <typename T> __global__ void rects_kernel(BinArgs<T> a, int32_t* rects, int64_t* counts) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= a.n) return;
    PixelRect r = pixel_rect(a.means2d + 2 * i, a.radii[i], a.conics + 3 * i, a.opacities[i], a.width, a.height);
    rects[4 * i] = r.x0; rects[4 * i + 1] = r.x1; rects[4 * i + 2] = r.y0; rects[4 * i + 3] = r.y1;
    const int ts = a.tile_size;
    counts[i] = r.empty() ? 0 : int64_t(r.x1 / ts - r.x0 / ts + 1) * (r.y1 / ts - r.y0 / ts + 1);
}

template <typename T>
__global__ void emit_kernel(BinArgs<T> a, const int32_t* rects, const int64_t* ends, uint64_t* keys, int32_t* ids) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= a.n) return;
    const int32_t* r = rects + 4 * i;
    if (r[0] > r[1] || r[2] > r[3]) return;
    const int ts = a.tile_size, tx = tiles_along(a.width, ts);
    int64_t k = i == 0 ? 0 : ends[i - 1];
    const uint64_t dk = depth_key(float(a.depths[i]));
    for (int y = r[2] / ts; y <= r[3] / ts; ++y) {
        for (int x = r[0] / ts; x <= r[1] / ts; ++x, ++k) {
            keys[k] = (uint64_t(uint32_t(y * tx + x)) << 32) | dk;
            ids[k] = int32_t(i);
        }
    }
}

__global__ void tile_offsets_kernel(const uint64_t* keys, int64_t m, int64_t n_tiles, int32_t* offsets) {
    const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (k >= m) return;
    const int64_t t = int64_t(keys[k] >> 32);
    const int64_t prev = k == 0 ? -1 : int64_t(keys[k - 1] >> 32);
    for (int64_t u = prev + 1; u <= t; ++u) offsets[u] = int32_t(k);  // tiles prev+1..t start here
    if (k == m - 1)
        for (int64_t u = t + 1; u <= n_tiles; ++u) offsets[u] = int32_t(m);
}

int bits_for(int64_t n) {
    int b = 0;
    while ((int64_t(1) << b) < n) ++b;
    return b;
}

}  // namespace

template <typename T> bool bin_cuda(const BinArgs<T>& a, BinOut<T>& out, Allocator alloc, void* stream_) {
    cudaStream_t stream = as_stream(stream_);
    const int ts = a.tile_size;
    const int64_t n_tiles = int64_t(tiles_along(a.width, ts)) * tiles_along(a.height, ts);
    out.num_pairs = 0;
    out.flat_ids = nullptr;
    if (a.n == 0) {
        FF_CUDA_CHECK(cudaMemsetAsync(out.tile_offsets, 0, sizeof(int32_t) * (n_tiles + 1), stream));
        return true;
    }
    auto* counts = static_cast<int64_t*>(alloc(sizeof(int64_t) * a.n));
    auto* ends = static_cast<int64_t*>(alloc(sizeof(int64_t) * a.n));
    rects_kernel<T><<<blocks_for(a.n, kThreads), kThreads, 0, stream>>>(a, out.rects, counts);
    FF_LAUNCH_CHECK("rects_kernel");
    size_t temp = 0;
    FF_CUDA_CHECK(cub::DeviceScan::InclusiveSum(nullptr, temp, counts, ends, a.n, stream));
    FF_CUDA_CHECK(cub::DeviceScan::InclusiveSum(alloc(temp), temp, counts, ends, a.n, stream));
    int64_t m = 0;
    FF_CUDA_CHECK(cudaMemcpyAsync(&m, ends + a.n - 1, sizeof(m), cudaMemcpyDeviceToHost, stream));
    FF_CUDA_CHECK(cudaStreamSynchronize(stream));  // the number of pairs sizes everything below
    out.num_pairs = m;
    if (m > int64_t(INT32_MAX)) return false;
    if (m == 0) {
        FF_CUDA_CHECK(cudaMemsetAsync(out.tile_offsets, 0, sizeof(int32_t) * (n_tiles + 1), stream));
        return true;
    }
    auto* keys = static_cast<uint64_t*>(alloc(sizeof(uint64_t) * m));
    auto* keys_sorted = static_cast<uint64_t*>(alloc(sizeof(uint64_t) * m));
    auto* ids = static_cast<int32_t*>(alloc(sizeof(int32_t) * m));
    out.flat_ids = static_cast<int32_t*>(alloc(sizeof(int32_t) * m));
    emit_kernel<T><<<blocks_for(a.n, kThreads), kThreads, 0, stream>>>(a, out.rects, ends, keys, ids);
    FF_LAUNCH_CHECK("emit_kernel");
    const int end_bit = 32 + bits_for(n_tiles);
    temp = 0;
    FF_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp, keys, keys_sorted, ids, out.flat_ids, m, 0,
                                                  end_bit, stream));
    FF_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(alloc(temp), temp, keys, keys_sorted, ids, out.flat_ids, m, 0,
                                                  end_bit, stream));
    tile_offsets_kernel<<<blocks_for(m, kThreads), kThreads, 0, stream>>>(keys_sorted, m, n_tiles,
                                                                          out.tile_offsets);
    FF_LAUNCH_CHECK("tile_offsets_kernel");
    return true;
}

template bool bin_cuda<float>(const BinArgs<float>&, BinOut<float>&, Allocator, void*);
template bool bin_cuda<double>(const BinArgs<double>&, BinOut<double>&, Allocator, void*);

}  // namespace ff
