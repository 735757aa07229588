// The SIMD vector the CPU kernels evaluate the shared formulas on (host builds only; common.h includes it).
//
// GCC/Clang vector extensions of the build target's native width: 64 bytes with AVX-512, 32 with AVX/AVX2, 16
// otherwise (SSE2, NEON, or plain code the compiler lowers lane by lane). Arithmetic, comparisons (lane masks of
// -1 / 0) and `mask ? a : b` are the language's own, and mix with scalars, so blend.h's formulas compile unchanged
// for a scalar (CUDA, reference) and for a vector of pixels (CPU). Written by hand rather than left to the
// auto-vectoriser: GCC 12 if-converts the blend loops for AVX-512 (mask registers) but leaves them scalar for AVX2,
// which made the same code 3x slower on an AVX2 machine. Only the few operations the language lacks live here:
// loads and stores, a lane mask as bits, a horizontal sum, and exp2 on a vector.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#endif

namespace ff {
namespace simd {

#if defined(__AVX512F__)
inline constexpr int kBytes = 64;
inline constexpr const char* kName = "avx512f";
#elif defined(__AVX2__) && defined(__FMA__)
inline constexpr int kBytes = 32;
inline constexpr const char* kName = "avx2+fma";
#elif defined(__AVX__)
inline constexpr int kBytes = 32;
inline constexpr const char* kName = "avx";
#elif defined(__SSE2__)
inline constexpr int kBytes = 16;
inline constexpr const char* kName = "sse2";
#elif defined(__ARM_NEON)
inline constexpr int kBytes = 16;
inline constexpr const char* kName = "neon";
#else
inline constexpr int kBytes = 16;
inline constexpr const char* kName = "generic";
#endif

template <typename T> struct Vec;
template <> struct Vec<float> {
    typedef float type __attribute__((vector_size(kBytes)));
    typedef int32_t mask __attribute__((vector_size(kBytes)));  // what a comparison gives
    typedef uint32_t bits __attribute__((vector_size(kBytes)));
    static constexpr int lanes = kBytes / 4;
};
template <> struct Vec<double> {
    typedef double type __attribute__((vector_size(kBytes)));
    typedef int64_t mask __attribute__((vector_size(kBytes)));
    typedef uint64_t bits __attribute__((vector_size(kBytes)));
    static constexpr int lanes = kBytes / 8;
};

template <typename T> using vec = typename Vec<T>::type;
template <typename T> using vmask = typename Vec<T>::mask;  // also the integer lane type (pixel indices, bits)
template <typename T> inline constexpr int lanes = Vec<T>::lanes;

template <typename V> inline V load(const void* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
}
template <typename V> inline void store(void* p, V v) { std::memcpy(p, &v, sizeof(V)); }

template <typename V, typename S> inline V bcast(S s) {
    V v;
    for (int i = 0; i < int(sizeof(V) / sizeof(v[0])); ++i) v[i] = s;  // (one broadcast instruction)
    return v;
}

// lane i as 0, 1, 2, ...
template <typename V> inline V iota() {
    V v;
    for (int i = 0; i < int(sizeof(V) / sizeof(v[0])); ++i) v[i] = i;
    return v;
}

// Bit i set where lane i of the comparison result m is true.
inline uint32_t movemask(Vec<float>::mask m) {
#if defined(__AVX512F__)
    return _mm512_cmpneq_epi32_mask(__m512i(m), _mm512_setzero_si512());
#elif defined(__AVX__)
    return uint32_t(_mm256_movemask_ps(__m256(m)));
#elif defined(__SSE2__)
    return uint32_t(_mm_movemask_ps(__m128(m)));
#else
    uint32_t b = 0;
    for (int i = 0; i < Vec<float>::lanes; ++i) b |= uint32_t(m[i] != 0) << i;
    return b;
#endif
}
inline uint32_t movemask(Vec<double>::mask m) {
#if defined(__AVX512F__)
    return _mm512_cmpneq_epi64_mask(__m512i(m), _mm512_setzero_si512());
#elif defined(__AVX__)
    return uint32_t(_mm256_movemask_pd(__m256d(m)));
#elif defined(__SSE2__)
    return uint32_t(_mm_movemask_pd(__m128d(m)));
#else
    uint32_t b = 0;
    for (int i = 0; i < Vec<double>::lanes; ++i) b |= uint32_t(m[i] != 0) << i;
    return b;
#endif
}

template <typename V> inline auto hsum(V v) {
    auto s = v[0];
    for (int i = 1; i < int(sizeof(V) / sizeof(v[0])); ++i) s += v[i];
    return s;
}

// Lane i of the result = the sum of the lanes of v[i], for the lanes(V) vectors v[0..L): a transposed
// horizontal sum, log2(L) rounds that each halve the number of vectors with two shuffles and an add per pair.
namespace detail {
// Round with group size g: x and y hold groups of 2g partial sums (one group per source vector); the output holds
// groups of g, x's groups first, each the sum of the two halves of an input group.
constexpr int tsum_lane(int L, int g, int o, int half) {
    const int q = o / g, r = o % g, ng = L / (2 * g);
    return (q < ng ? q * 2 * g : L + (q - ng) * 2 * g) + r + half * g;
}
template <typename V, int L, int G, std::size_t... O> inline V tsum_pair(V x, V y, std::index_sequence<O...>) {
    return __builtin_shufflevector(x, y, tsum_lane(L, G, int(O), 0)...) +
           __builtin_shufflevector(x, y, tsum_lane(L, G, int(O), 1)...);
}
template <typename V, int L, int G> inline V tsum_rounds(const V* in, int n) {
    V out[L / 2 > 0 ? L / 2 : 1];
    for (int i = 0; i < n / 2; ++i) out[i] = tsum_pair<V, L, G>(in[2 * i], in[2 * i + 1], std::make_index_sequence<L>{});
    if constexpr (G > 1) {
        return tsum_rounds<V, L, G / 2>(out, n / 2);
    } else {
        return out[0];
    }
}
}  // namespace detail

template <typename V> inline V transpose_sum(const V* v) {
    constexpr int L = int(sizeof(V) / sizeof(v[0][0]));
    return detail::tsum_rounds<V, L, L / 2>(v, L);
}

}  // namespace simd

// min(a, b) of a vector and a scalar in one instruction (the generic `a < b ? a : b` costs a compare and a blend).
inline simd::vec<float> ff_min(simd::vec<float> a, float b) {
#if defined(__AVX512F__)
    return _mm512_min_ps(a, _mm512_set1_ps(b));
#elif defined(__AVX__)
    return _mm256_min_ps(a, _mm256_set1_ps(b));
#elif defined(__SSE2__)
    return _mm_min_ps(a, _mm_set1_ps(b));
#else
    return a < b ? a : b;
#endif
}

// exp2 for x in [-64, 0] on a vector: the polynomial of common.h's scalar exp2_neg, lane for lane the same result.
inline simd::vec<float> exp2_neg(simd::vec<float> x) {
    using V = simd::vec<float>;
    using U = simd::Vec<float>::bits;
    const float magic = 12582912.0f;
    V t = x + magic;
    V n = t - magic;
    V f = x - n;
    V p = 1.5337577497120947e-4f * f + 1.3399859890341759e-3f;
    p = p * f + 9.618519805371761e-3f;
    p = p * f + 5.550329014658928e-2f;
    p = p * f + 2.4022646248340607e-1f;
    p = p * f + 6.931471824645996e-1f;
    p = p * f + 1.0f;
    U pi = (U)p + (((U)t - 0x4B400000u) << 23);
    return (V)pi;
}

inline simd::vec<double> exp2_neg(simd::vec<double> x) {  // (double: gradient checks; the library function)
    for (int i = 0; i < simd::lanes<double>; ++i) x[i] = std::exp2(x[i]);
    return x;
}

}  // namespace ff
