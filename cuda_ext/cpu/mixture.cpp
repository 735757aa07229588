// CPU kernel for a Gaussian mixture at points: a uniform grid over the points' bounding box, each Gaussian listed
// in the occupied cells its reach touches (in index order, so every sum runs in a fixed order whatever the thread
// count), then OpenMP over points, each walking its cell's list with the pair maths of mixture.h.
//
// Why our own search rather than scipy's k-d trees (the reference): the trees answer with (point, Gaussian) pairs
// that then cost a gather, a sort and several passes in PyTorch per pair; here a pair is found and evaluated in one
// walk, and only the Gaussians that reach the points' box are touched at all.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ff/api.h"
#include "ff/mixture.h"
#include "parallel.h"

namespace ff {

namespace {

constexpr int64_t kMaxCells = int64_t(1) << 21;  // grid cells at most (8 MB of cell indices)

struct Grid {
    double lo[3], h;
    int64_t dim[3];
    int64_t cells() const { return dim[0] * dim[1] * dim[2]; }
    int64_t axis(double x, int k) const {
        const int64_t i = int64_t(std::floor((x - lo[k]) / h));
        return std::min(std::max(i, int64_t(0)), dim[k] - 1);
    }
};

template <typename T> bool finite3(const T* p) {
    return std::isfinite(p[0]) && std::isfinite(p[1]) && std::isfinite(p[2]);
}

}  // namespace

template <typename T> void mixture_at_cpu(const MixtureArgs<T>& a, const MixtureOut<T>& out, int threads) {
    const int C = a.channels;
    std::fill(out.density, out.density + a.p, T(0));
    std::fill(out.log_transmit, out.log_transmit + a.p, T(0));
    std::fill(out.acc, out.acc + a.p * C, T(0));
    // the points' box (non-finite points touch nothing and stay zero)
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (int64_t i = 0; i < a.p; ++i) {
        const T* q = a.points + 3 * i;
        if (!finite3(q)) continue;
        for (int k = 0; k < 3; ++k) lo[k] = std::min(lo[k], double(q[k])), hi[k] = std::max(hi[k], double(q[k]));
    }
    if (!(lo[0] <= hi[0]) || a.n == 0) return;
    // the Gaussians that reach the box, in index order, packed for the walk
    std::vector<MixtureGaussian<T>> gs;
    std::vector<double> reaches;
    std::vector<T> vals;
    for (int64_t g = 0; g < a.n; ++g) {
        const T* m = a.means + 3 * g;
        if (!finite3(m)) continue;
        MixtureGaussian<T> G;
        make_mixture_gaussian(m, a.quats + 4 * g, a.scales + 3 * g, a.opacities[g], a.blur, a.cutoff, G);
        const double r = std::sqrt(double(G.reach2));
        if (!(r > 0) || !std::isfinite(r)) continue;
        double d2 = 0;
        for (int k = 0; k < 3; ++k) {
            const double out_k = std::max({lo[k] - double(m[k]), double(m[k]) - hi[k], 0.0});
            d2 += out_k * out_k;
        }
        if (d2 > r * r) continue;
        gs.push_back(G);
        reaches.push_back(r);
        vals.insert(vals.end(), a.values + g * C, a.values + (g + 1) * C);
    }
    if (gs.empty()) return;
    const int64_t L = int64_t(gs.size());
    // cells about as big as a typical reach (a Gaussian lands in a few cells, a cell holds few that miss its
    // points), coarsened until the grid fits
    Grid grid;
    std::vector<double> sorted = reaches;
    std::nth_element(sorted.begin(), sorted.begin() + L / 2, sorted.end());
    grid.h = std::max(sorted[L / 2], 1e-9);
    for (;;) {
        for (int k = 0; k < 3; ++k) grid.dim[k] = int64_t((hi[k] - lo[k]) / grid.h) + 1;
        if (grid.cells() <= kMaxCells) break;
        grid.h *= 1.25;
    }
    for (int k = 0; k < 3; ++k) grid.lo[k] = lo[k];
    // occupied cells, numbered compactly
    std::vector<int32_t> slot(size_t(grid.cells()), -1);
    std::vector<int64_t> cell_of(a.p, -1);
    int32_t occupied = 0;
    for (int64_t i = 0; i < a.p; ++i) {
        const T* q = a.points + 3 * i;
        if (!finite3(q)) continue;
        const int64_t c = grid.axis(q[0], 0) + grid.dim[0] * (grid.axis(q[1], 1) + grid.dim[1] * grid.axis(q[2], 2));
        if (slot[c] < 0) slot[c] = occupied++;
        cell_of[i] = slot[c];
    }
    // each Gaussian into the occupied cells its reach (a sphere) touches: counted, then written, in index order
    std::vector<int64_t> start(size_t(occupied) + 1, 0);
    std::vector<int32_t> entries;
    std::vector<double> ex[3];
    auto visit = [&](auto&& emit) {
        for (int64_t j = 0; j < L; ++j) {
            const double r = reaches[j], r2 = r * r;
            int64_t i0[3], i1[3];
            for (int k = 0; k < 3; ++k) {
                const double m = double(gs[j].mean[k]);
                i0[k] = grid.axis(m - r, k), i1[k] = grid.axis(m + r, k);
                ex[k].resize(size_t(i1[k] - i0[k] + 1));
                for (int64_t i = i0[k]; i <= i1[k]; ++i) {  // distance from the centre to the cell's slab, squared
                    const double c0 = grid.lo[k] + double(i) * grid.h, c1 = c0 + grid.h;
                    const double d = std::max({c0 - m, m - c1, 0.0});
                    ex[k][size_t(i - i0[k])] = d * d;
                }
            }
            for (int64_t z = i0[2]; z <= i1[2]; ++z) {
                const double dz = ex[2][size_t(z - i0[2])];
                for (int64_t y = i0[1]; y <= i1[1]; ++y) {
                    const double dyz = dz + ex[1][size_t(y - i0[1])];
                    if (dyz > r2) continue;
                    const int32_t* row = slot.data() + grid.dim[0] * (y + grid.dim[1] * z);
                    for (int64_t x = i0[0]; x <= i1[0]; ++x) {
                        const int32_t s = row[x];
                        if (s >= 0 && dyz + ex[0][size_t(x - i0[0])] <= r2) emit(s, int32_t(j));
                    }
                }
            }
        }
    };
    visit([&](int32_t s, int32_t) { ++start[size_t(s) + 1]; });
    for (int32_t s = 0; s < occupied; ++s) start[size_t(s) + 1] += start[size_t(s)];
    entries.resize(size_t(start[size_t(occupied)]));
    {
        std::vector<int64_t> fill(start.begin(), start.end() - 1);
        visit([&](int32_t s, int32_t j) { entries[size_t(fill[size_t(s)]++)] = j; });
    }
    // every point walks its cell's list
    const T cutoff2 = a.cutoff * a.cutoff;
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads)
    for (int64_t i = 0; i < a.p; ++i) {
        const int64_t s = cell_of[i];
        if (s < 0) continue;
        const T* q = a.points + 3 * i;
        T dens = 0, logt = 0;
        T* acc = out.acc + i * C;
        for (int64_t e = start[size_t(s)]; e < start[size_t(s) + 1]; ++e) {
            const int32_t j = entries[size_t(e)];
            const T w = mixture_weight(q, gs[size_t(j)], cutoff2);
            if (w == T(0)) continue;
            dens += w;
            logt += mixture_log_transmit(w);
            const T* v = vals.data() + size_t(j) * C;
#pragma omp simd
            for (int c = 0; c < C; ++c) acc[c] += w * v[c];
        }
        out.density[i] = dens;
        out.log_transmit[i] = logt;
    }
}

template void mixture_at_cpu<float>(const MixtureArgs<float>&, const MixtureOut<float>&, int);
template void mixture_at_cpu<double>(const MixtureArgs<double>&, const MixtureOut<double>&, int);

}  // namespace ff
