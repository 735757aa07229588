// What the benchmarks need to say how close the CPU kernels come to the machine's limit: how many (Gaussian, pixel)
// pairs a render evaluates, and the FMA rate this build's vector width reaches on this machine.
#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#include <chrono>

#include "ff/api.h"
#include "ff/blend.h"
#include "ff/tiles.h"

namespace ff {

// A pair is "live" when the pixel lies in the Gaussian's rectangle and had not stopped before the Gaussian (both
// passes evaluate alpha for exactly these), "taken" when its alpha also reaches 1/255 (the D-wide work).
template <typename T> PairCounts rasterize_pairs_cpu(const RasterArgs<T>& a, const int32_t* last, int threads) {
    const int ts = a.tile_size, tx = tiles_along(a.width, ts);
    const int64_t n_tiles = int64_t(tx) * tiles_along(a.height, ts);
    int64_t live = 0, taken = 0, entries = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) reduction(+ : live, taken, entries)
    for (int64_t t = 0; t < n_tiles; ++t) {
        const int x0 = int(t % tx) * ts, y0 = int(t / tx) * ts;
        const int x1 = std::min(x0 + ts, a.width), y1 = std::min(y0 + ts, a.height);
        const int32_t begin = a.tile_offsets[t];
        int32_t walk = 0;
        for (int y = y0; y < y1; ++y)
            for (int x = x0; x < x1; ++x) walk = std::max(walk, last[int64_t(y) * a.width + x]);
        entries += walk;
        for (int32_t j = 0; j < walk; ++j) {
            const int32_t g = a.flat_ids[begin + j];
            const int32_t* r = a.rects + 4 * int64_t(g);
            const Splat<T> s = load_splat(a.means2d, a.conics, a.opacities, g);
            for (int y = std::max<int>(r[2], y0); y <= std::min<int>(r[3], y1 - 1); ++y) {
                const SplatRow<T> row = splat_row(s, y);
                for (int x = std::max<int>(r[0], x0); x <= std::min<int>(r[1], x1 - 1); ++x) {
                    if (j >= last[int64_t(y) * a.width + x]) continue;
                    ++live;
                    taken += splat_alpha(s, row, x).alpha > T(0);
                }
            }
        }
    }
    return PairCounts{live, taken, entries};
}

template PairCounts rasterize_pairs_cpu<float>(const RasterArgs<float>&, const int32_t*, int);
template PairCounts rasterize_pairs_cpu<double>(const RasterArgs<double>&, const int32_t*, int);

// Independent multiply-add chains on this build's float vectors, enough of them to fill both FMA pipes despite
// their latency: the practical peak the kernels' vector width can reach (FLOPs per second, an FMA counted as 2).
double fma_peak_flops(int threads, double seconds) {
    using V = simd::vec<float>;
    constexpr int kChains = 12, kInner = 1 << 14;
    double total = 0, elapsed = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        V acc[kChains];
        for (int c = 0; c < kChains; ++c) acc[c] = simd::bcast<V>(1.0f + 0.01f * c);
        const V m = simd::bcast<V>(0.999999f), k = simd::bcast<V>(1e-7f);
        double flops = 0;
        const auto start = std::chrono::steady_clock::now();
        while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
            for (int i = 0; i < kInner; ++i)
#pragma GCC unroll 12
                for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * m + k;
            flops += 2.0 * kChains * simd::lanes<float> * kInner;
        }
        float sink = 0;
        for (int c = 0; c < kChains; ++c) sink += simd::hsum(acc[c]);
        total += flops + (sink == 12345.0f ? 1.0 : 0.0);  // (keeps the chains alive)
    }
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return total / elapsed;
}

}  // namespace ff
