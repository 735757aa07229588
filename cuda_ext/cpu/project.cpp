// CPU kernels for projection and spherical harmonics: one Gaussian per iteration, OpenMP over Gaussians.
#include <vector>

#include "ff/api.h"
#include "ff/projection.h"
#include "ff/sh.h"
#include "parallel.h"

namespace ff {

template <typename T> void project_fwd_cpu(const ProjectArgs<T>& a, const ProjectOut<T>& out, int threads) {
    const Camera<T> cam = make_camera(a.viewmat, a.K, a.width, a.height, a.eps2d, a.near_plane, a.far_plane);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < a.n; ++i) {
        out.radii[i] = project_one(cam, a.means + 3 * i, a.quats + 4 * i, a.scales + 3 * i, out.means2d + 2 * i,
                                   out.conics + 3 * i, out.depths + i);
    }
}

template <typename T>
int64_t footprint_candidates_cpu(int64_t n, const T* means, const T* log_scales, const T* viewmat, const T* K,
                                 int width, int height, T eps2d, T near_plane, int64_t* out) {
    const T fx = K[0], skew = K[1], fy = K[4], cx = K[2], cy = K[5];
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i) {
        const T* m = means + 3 * i;
        const T* v = viewmat;
        const T x = v[0] * m[0] + v[1] * m[1] + v[2] * m[2] + v[3];
        const T y = v[4] * m[0] + v[5] * m[1] + v[6] * m[2] + v[7];
        const T z = v[8] * m[0] + v[9] * m[1] + v[10] * m[2] + v[11];
        if (!(z > T(0.5) * near_plane)) continue;  // (also drops NaN)
        const T ls = ff_max(ff_max(log_scales[3 * i], log_scales[3 * i + 1]), log_scales[3 * i + 2]);
        const T s = std::exp(ls);
        const T du = (fx * x + skew * y) / z, dv = fy * y / z;
        const T jac2 = (fx * fx + skew * skew + fy * fy + du * du + dv * dv) / (z * z);
        const T r = T(3) * ff_sqrt(jac2 * s * s + eps2d) + T(2);
        const T u = du + cx, w = dv + cy;
        if (u + r > 0 && u - r < T(width) && w + r > 0 && w - r < T(height)) out[count++] = i;
        else if (!(r < T(1e30))) out[count++] = i;  // a bound that overflowed: keep it, the projection decides
    }
    return count;
}

template int64_t footprint_candidates_cpu<float>(int64_t, const float*, const float*, const float*, const float*,
                                                 int, int, float, float, int64_t*);
template int64_t footprint_candidates_cpu<double>(int64_t, const double*, const double*, const double*,
                                                  const double*, int, int, double, double, int64_t*);

template <typename T> void project_bwd_cpu(const ProjectArgs<T>& a, const ProjectGrads<T>& g, int threads) {
    const Camera<T> cam = make_camera(a.viewmat, a.K, a.width, a.height, a.eps2d, a.near_plane, a.far_plane);
    // The camera's gradient is a sum over Gaussians: one partial sum per worker, each on cache lines of its own
    // (packed side by side, two workers' sums shared a line, which then moved between the cores at every Gaussian:
    // 17 ms instead of 5 for 100k Gaussians on 2 cores), added up in worker order at the end (deterministic).
    struct alignas(64) Partial {
        T v[12] = {};
    };
    std::vector<Partial> partial(static_cast<size_t>(threads));
#pragma omp parallel num_threads(threads)
    {
        T vRt[12] = {};
#pragma omp for schedule(static) nowait
        for (int64_t i = 0; i < a.n; ++i) {
            T v_depth = g.v_depths ? g.v_depths[i] : T(0);
            if (g.radii[i] <= 0) continue;  // culled: not drawn, no gradient (its depth is not differentiable either)
            project_one_bwd(cam, a.means + 3 * i, a.quats + 4 * i, a.scales + 3 * i, g.v_means2d + 2 * i,
                            g.v_conics + 3 * i, v_depth, g.v_means + 3 * i, g.v_quats + 4 * i, g.v_scales + 3 * i,
                            vRt, vRt + 9);
        }
        for (int q = 0; q < 12; ++q) partial[size_t(worker_id())].v[q] = vRt[q];
    }
    if (g.v_viewmat) {
        for (const Partial& p : partial) {
            for (int i = 0; i < 3; ++i) {
                for (int j = 0; j < 3; ++j) g.v_viewmat[4 * i + j] += p.v[3 * i + j];
                g.v_viewmat[4 * i + 3] += p.v[9 + i];
            }
        }
    }
}

// Colours (3 channels) get their own instance of the per-Gaussian maths, with the channel loops unrolled.
template <int CC, typename T> void sh_fwd_loop(const SHArgs<T>& a, T* out, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < a.n; ++i) sh_eval_one<CC>(a, i, out + i * a.channels);
}

template <typename T> void sh_fwd_cpu(const SHArgs<T>& a, T* out, int threads) {
    if (a.channels == 3) sh_fwd_loop<3>(a, out, threads);
    else sh_fwd_loop<0>(a, out, threads);
}

template <int CC, typename T> void sh_bwd_loop(const SHArgs<T>& a, const SHGrads<T>& g, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < a.n; ++i)
        sh_eval_one_bwd<CC>(a, i, g.v_out + i * a.channels, g.v_dc, g.v_rest, g.v_dirs ? g.v_dirs + 3 * i : nullptr);
}

template <typename T> void sh_bwd_cpu(const SHArgs<T>& a, const SHGrads<T>& g, int threads) {
    if (a.channels == 3) sh_bwd_loop<3>(a, g, threads);
    else sh_bwd_loop<0>(a, g, threads);
}

#define FF_INSTANTIATE(T)                                                                         \
    template void project_fwd_cpu<T>(const ProjectArgs<T>&, const ProjectOut<T>&, int);           \
    template void project_bwd_cpu<T>(const ProjectArgs<T>&, const ProjectGrads<T>&, int);         \
    template void sh_fwd_cpu<T>(const SHArgs<T>&, T*, int);                                       \
    template void sh_bwd_cpu<T>(const SHArgs<T>&, const SHGrads<T>&, int);
FF_INSTANTIATE(float)
FF_INSTANTIATE(double)
#undef FF_INSTANTIATE

}  // namespace ff
