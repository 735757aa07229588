// CUDA kernels for projection and spherical harmonics: one thread per Gaussian, maths from include/ff/*.h.
#include "cuda_common.cuh"
#include "ff/api.h"
#include "ff/projection.h"
#include "ff/sh.h"

namespace ff {
namespace {

constexpr int kThreads = 256;

// Every thread reads the camera (25 numbers, cached) from device memory: no host round trip.
template <typename T> __device__ Camera<T> device_camera(const ProjectArgs<T>& a) {
    return make_camera(a.viewmat, a.K, a.width, a.height, a.eps2d, a.near_plane, a.far_plane);
}

template <typename T> __global__ void project_fwd_kernel(ProjectArgs<T> a, ProjectOut<T> out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= a.n) return;
    const Camera<T> cam = device_camera(a);
    out.radii[i] = project_one(cam, a.means + 3 * i, a.quats + 4 * i, a.scales + 3 * i, out.means2d + 2 * i,
                               out.conics + 3 * i, out.depths + i);
}

template <typename T> __global__ void project_bwd_kernel(ProjectArgs<T> a, ProjectGrads<T> g) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    T vRt[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    if (i < a.n && g.radii[i] > 0) {
        const Camera<T> cam = device_camera(a);
        T v_depth = g.v_depths ? g.v_depths[i] : T(0);
        project_one_bwd(cam, a.means + 3 * i, a.quats + 4 * i, a.scales + 3 * i, g.v_means2d + 2 * i,
                        g.v_conics + 3 * i, v_depth, g.v_means + 3 * i, g.v_quats + 4 * i, g.v_scales + 3 * i, vRt,
                        vRt + 9);
    }
    if (!g.v_viewmat) return;  // (uniform across the grid)
    // The camera's gradient is a sum over Gaussians: reduce within the warp, one atomic per warp and entry.
    const bool lane0 = (threadIdx.x & 31) == 0;
    for (int k = 0; k < 12; ++k) {
        T s = warp_sum(vRt[k]);
        if (lane0 && s != T(0)) atomicAdd(g.v_viewmat + (k < 9 ? 4 * (k / 3) + k % 3 : 4 * (k - 9) + 3), s);
    }
}

template <typename T> __global__ void sh_fwd_kernel(SHArgs<T> a, T* out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < a.n) sh_eval_one(a, i, out + i * a.channels);
}

template <typename T> __global__ void sh_bwd_kernel(SHArgs<T> a, SHGrads<T> g) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < a.n)
        sh_eval_one_bwd(a, i, g.v_out + i * a.channels, g.v_dc, g.v_rest, g.v_dirs ? g.v_dirs + 3 * i : nullptr);
}

}  // namespace

template <typename T> void project_fwd_cuda(const ProjectArgs<T>& a, const ProjectOut<T>& out, void* stream) {
    if (a.n == 0) return;
    project_fwd_kernel<T><<<blocks_for(a.n, kThreads), kThreads, 0, as_stream(stream)>>>(a, out);
    FF_LAUNCH_CHECK("project_fwd_kernel");
}

template <typename T>
void project_bwd_cuda(const ProjectArgs<T>& a, const ProjectGrads<T>& g, void* stream) {
    if (a.n == 0) return;
    project_bwd_kernel<T><<<blocks_for(a.n, kThreads), kThreads, 0, as_stream(stream)>>>(a, g);
    FF_LAUNCH_CHECK("project_bwd_kernel");
}

template <typename T> void sh_fwd_cuda(const SHArgs<T>& a, T* out, void* stream) {
    if (a.n == 0) return;
    sh_fwd_kernel<T><<<blocks_for(a.n, kThreads), kThreads, 0, as_stream(stream)>>>(a, out);
    FF_LAUNCH_CHECK("sh_fwd_kernel");
}

template <typename T> void sh_bwd_cuda(const SHArgs<T>& a, const SHGrads<T>& g, void* stream) {
    if (a.n == 0) return;
    sh_bwd_kernel<T><<<blocks_for(a.n, kThreads), kThreads, 0, as_stream(stream)>>>(a, g);
    FF_LAUNCH_CHECK("sh_bwd_kernel");
}

#define FF_INSTANTIATE(T)                                                                        \
    template void project_fwd_cuda<T>(const ProjectArgs<T>&, const ProjectOut<T>&, void*);       \
    template void project_bwd_cuda<T>(const ProjectArgs<T>&, const ProjectGrads<T>&, void*);      \
    template void sh_fwd_cuda<T>(const SHArgs<T>&, T*, void*);                                   \
    template void sh_bwd_cuda<T>(const SHArgs<T>&, const SHGrads<T>&, void*);
FF_INSTANTIATE(float)
FF_INSTANTIATE(double)
#undef FF_INSTANTIATE

}  // namespace ff
