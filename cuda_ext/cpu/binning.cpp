// CPU tile binning: every tile gets the list of Gaussians whose pixel rectangle overlaps it, front to back.
//
// Gaussians are ordered by depth once (a stable LSD radix sort on the depth's bits, ties keep index order as the
// reference's stable sort does), then distributed to tiles by a stable counting sort, so each tile's list stays in
// depth order. Both passes are parallel; nothing here is O(N log N).
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "ff/api.h"
#include "ff/tiles.h"
#include "parallel.h"

namespace ff {
namespace {

// Order-preserving map of a float / double to an unsigned integer (negatives flipped, positives get the sign bit).
inline uint32_t sortable_bits(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
inline uint64_t sortable_bits(double v) {
    uint64_t u;
    std::memcpy(&u, &v, 8);
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

// Stable LSD radix sort of (key, id) pairs by key, 8 bits a pass; passes where every key has the same digit are
// skipped (common for depths: their exponents agree).
template <typename K> void radix_sort(std::vector<K>& keys, std::vector<int32_t>& ids) {
    const size_t n = keys.size();
    std::vector<K> k2(n);
    std::vector<int32_t> i2(n);
    for (int shift = 0; shift < int(8 * sizeof(K)); shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; ++i) ++count[((keys[i] >> shift) & 0xFF) + 1];
        bool trivial = false;
        for (int d = 1; d <= 256; ++d) trivial |= count[d] == n;
        if (trivial) continue;
        for (int d = 0; d < 256; ++d) count[d + 1] += count[d];
        for (size_t i = 0; i < n; ++i) {
            size_t dst = count[(keys[i] >> shift) & 0xFF]++;
            k2[dst] = keys[i];
            i2[dst] = ids[i];
        }
        keys.swap(k2);
        ids.swap(i2);
    }
}

}  // namespace

// The tiles a Gaussian's pixel rectangle covers (inclusive), as the pair passes read them.
struct TileSpan {
    int32_t x0, x1, y0, y1;
};

template <typename T> bool bin_cpu(const BinArgs<T>& a, BinOut<T>& out, Allocator alloc, int threads) {
    const int ts = a.tile_size, tx = tiles_along(a.width, ts), ty = tiles_along(a.height, ts);
    const int64_t n_tiles = int64_t(tx) * ty;
    // 1. pixel rectangles
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < a.n; ++i) {
        PixelRect r = pixel_rect(a.means2d + 2 * i, a.radii[i], a.conics + 3 * i, a.opacities[i], a.width, a.height);
        int32_t* o = out.rects + 4 * i;
        o[0] = r.x0; o[1] = r.x1; o[2] = r.y0; o[3] = r.y1;
    }
    // 2. visible Gaussians, front to back
    using Key = decltype(sortable_bits(T(0)));
    std::vector<Key> keys;
    std::vector<int32_t> order;
    keys.reserve(size_t(a.n));
    order.reserve(size_t(a.n));
    for (int64_t i = 0; i < a.n; ++i) {
        const int32_t* r = out.rects + 4 * i;
        if (r[0] <= r[1] && r[2] <= r[3]) {
            keys.push_back(sortable_bits(a.depths[i]));
            order.push_back(int32_t(i));
        }
    }
    radix_sort(keys, order);
    const int64_t V = int64_t(order.size());
    // Their tile spans in depth order: one gather, so that both pair passes below read memory in sequence (they
    // used to look every rectangle up through `order`, two random reads per Gaussian that missed the caches: most
    // of the binning's time at 100k Gaussians).
    std::vector<TileSpan> spans(static_cast<size_t>(V));
    const bool pow2 = (ts & (ts - 1)) == 0;  // (the usual 16: a shift, not four integer divisions per Gaussian)
    const int shift = __builtin_ctz(unsigned(ts));
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t k = 0; k < V; ++k) {
        const int32_t* r = out.rects + 4 * int64_t(order[k]);  // (clipped to the image: never negative)
        spans[k] = pow2 ? TileSpan{r[0] >> shift, r[1] >> shift, r[2] >> shift, r[3] >> shift}
                        : TileSpan{r[0] / ts, r[1] / ts, r[2] / ts, r[3] / ts};
    }
    // 3. stable counting sort by tile: `order` is cut into `chunks` runs; each run is counted, then written, on its
    //    own, so the result does not depend on how many workers OpenMP actually gives us.
    const int chunks = std::max(1, threads);
    std::vector<int64_t> counts(size_t(chunks) * n_tiles + 1, 0);
    // Calls visit(run w, position k in order, tile) for every (Gaussian, tile) pair of run w, in order.
    auto for_each_pair = [&](auto&& visit) {
#pragma omp parallel for schedule(static, 1) num_threads(threads)
        for (int w = 0; w < chunks; ++w) {
            for (int64_t k = V * w / chunks, hi = V * (w + 1) / chunks; k < hi; ++k) {
                const TileSpan sp = spans[k];
                for (int y = sp.y0; y <= sp.y1; ++y)
                    for (int x = sp.x0; x <= sp.x1; ++x) visit(w, k, int64_t(y) * tx + x);
            }
        }
    };
    for_each_pair([&](int w, int64_t, int64_t tile) { ++counts[size_t(w) * n_tiles + tile]; });
    // Offsets: tile-major, run-minor, so that run w's entries for a tile follow those of runs < w.
    int64_t total = 0;
    for (int64_t t = 0; t < n_tiles; ++t) {
        out.tile_offsets[t] = int32_t(std::min<int64_t>(total, std::numeric_limits<int32_t>::max()));
        for (int w = 0; w < chunks; ++w) {
            int64_t& c = counts[size_t(w) * n_tiles + t];
            int64_t n = c;
            c = total;
            total += n;
        }
    }
    out.num_pairs = total;
    if (total > std::numeric_limits<int32_t>::max()) return false;
    out.tile_offsets[n_tiles] = int32_t(total);
    out.flat_ids = static_cast<int32_t*>(alloc(sizeof(int32_t) * size_t(std::max<int64_t>(total, 1))));
    for_each_pair([&](int w, int64_t k, int64_t tile) {
        out.flat_ids[counts[size_t(w) * n_tiles + tile]++] = order[k];
    });
    return true;
}

template bool bin_cpu<float>(const BinArgs<float>&, BinOut<float>&, Allocator, int);
template bool bin_cpu<double>(const BinArgs<double>&, BinOut<double>&, Allocator, int);

}  // namespace ff
