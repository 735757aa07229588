// Helpers shared by the CUDA kernels: launch checks, warp reductions, sizes.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace ff {

inline void cuda_check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) throw std::runtime_error(std::string("featurefields CUDA: ") + what + ": " +
                                                     cudaGetErrorString(err));
}

#define FF_CUDA_CHECK(expr) ::ff::cuda_check((expr), #expr)
#define FF_LAUNCH_CHECK(name) ::ff::cuda_check(cudaGetLastError(), name)

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

inline unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

// Sum over the 32 lanes of a warp (every lane must be active); the result is valid in lane 0.
template <typename T> __device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

}  // namespace ff
