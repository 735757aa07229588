// Shared by the CPU (C++17) and CUDA kernels: qualifiers, constants and small numeric helpers.
// Nothing here includes PyTorch: nvcc compiles the .cu files in seconds and the CPU build needs only a C++ compiler.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define FF_HD __host__ __device__ __forceinline__
#else
#define FF_HD inline
#endif

namespace ff {

// Compositing rules (identical to featurefields/render/rasterize.py, the reference).
template <typename T> struct Blend {
    static constexpr T alpha_min = T(1.0 / 255.0);  // a Gaussian fainter than this at a pixel is skipped
    static constexpr T alpha_max = T(0.99);         // clamp: keeps 1 / (1 - alpha) finite
    static constexpr T t_min = T(1e-4);             // a pixel stops before its transmittance drops below this
};

constexpr double kLog2e = 1.4426950408889634;
constexpr double kHalfLog2e = 0.5 * kLog2e;

// (A may be a SIMD vector and B a scalar: the CPU kernels evaluate the same formulas on vectors, see simd.h)
template <typename A, typename B> FF_HD A ff_min(A a, B b) { return a < b ? a : b; }
template <typename A, typename B> FF_HD A ff_max(A a, B b) { return a > b ? a : b; }

// Overloads that keep float maths in float on the host and the device alike.
FF_HD float ff_sqrt(float x) { return sqrtf(x); }
FF_HD double ff_sqrt(double x) { return sqrt(x); }
FF_HD float ff_ceil(float x) { return ceilf(x); }
FF_HD double ff_ceil(double x) { return ceil(x); }
FF_HD float ff_floor(float x) { return floorf(x); }
FF_HD double ff_floor(double x) { return floor(x); }

FF_HD int tiles_along(int pixels, int tile_size) { return (pixels + tile_size - 1) / tile_size; }

// 2^x for x in [-64, 0] (the only range the rasteriser asks for), vectorisable on the CPU: round to the nearest
// integer n, a degree-6 polynomial for 2^f on [-0.5, 0.5] (relative error 1e-7 in float), and n added to the
// exponent bits. Doubles (gradient checks) and the GPU use the library function.
FF_HD float exp2_neg(float x) {
#if defined(__CUDA_ARCH__)
    return exp2f(x);
#else
    const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer kept in the low mantissa bits
    float t = x + magic;
    float n = t - magic;
    float f = x - n;
    float p = 1.5337577497120947e-4f;
    p = p * f + 1.3399859890341759e-3f;
    p = p * f + 9.618519805371761e-3f;
    p = p * f + 5.550329014658928e-2f;
    p = p * f + 2.4022646248340607e-1f;
    p = p * f + 6.931471824645996e-1f;
    p = p * f + 1.0f;
    uint32_t pi, ti;
    std::memcpy(&pi, &p, 4);
    std::memcpy(&ti, &t, 4);
    pi += (ti - 0x4B400000u) << 23;  // ti - bits(magic) = n (two's complement), added to the exponent
    std::memcpy(&p, &pi, 4);
    return p;
#endif
}

FF_HD double exp2_neg(double x) { return exp2(x); }

}  // namespace ff

#if !defined(__CUDACC__)
#include "simd.h"  // vector overloads (exp2_neg), visible to the templates that follow
#endif
