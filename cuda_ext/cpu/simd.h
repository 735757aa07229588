// The one thing the compiler does not vectorise for us: turning a row of values into a bit mask of the non-zero
// ones (which pixels of a tile row take a Gaussian). AVX-512 / AVX versions where the build targets them, a plain
// loop elsewhere.
#pragma once

#include <cstdint>

#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

namespace ff {

// Bit i set where v[i] != 0, for i < n <= 32.
inline uint32_t nonzero_mask(const float* v, int n) {
    uint32_t m = 0;
    int i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        m |= uint32_t(_mm512_cmp_ps_mask(_mm512_loadu_ps(v + i), _mm512_setzero_ps(), _CMP_NEQ_OQ)) << i;
#elif defined(__AVX__)
    for (; i + 8 <= n; i += 8)
        m |= uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(v + i), _mm256_setzero_ps(), _CMP_NEQ_OQ)))
             << i;
#endif
    for (; i < n; ++i) m |= uint32_t(v[i] != 0.0f) << i;
    return m;
}

inline uint32_t nonzero_mask(const double* v, int n) {
    uint32_t m = 0;
    int i = 0;
#if defined(__AVX512F__)
    for (; i + 8 <= n; i += 8)
        m |= uint32_t(_mm512_cmp_pd_mask(_mm512_loadu_pd(v + i), _mm512_setzero_pd(), _CMP_NEQ_OQ)) << i;
#elif defined(__AVX__)
    for (; i + 4 <= n; i += 4)
        m |= uint32_t(_mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(v + i), _mm256_setzero_pd(), _CMP_NEQ_OQ)))
             << i;
#endif
    for (; i < n; ++i) m |= uint32_t(v[i] != 0.0) << i;
    return m;
}

}  // namespace ff
