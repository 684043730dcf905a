// x86 intrinsics, for the few CPU loops written in them (each beside its portable twin, with
// the same results): AVX-512 where the build targets x86-64-v4, AVX2 + FMA where it targets
// x86-64-v3. Include this, not <immintrin.h>: GCC 12's AVX-512 header trips its own
// -Wmaybe-uninitialized and -Wuninitialized (_mm512_undefined_*, GCC bug 105593, fixed in GCC 13).
#pragma once

#if defined(__AVX512F__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#elif defined(__AVX2__)
#include <immintrin.h>
#endif

// The AVX2 paths, beside the AVX-512 ones: builds for x86-64-v3 (AVX2 and FMA, no AVX-512),
// where they replace vectorised loops whose gathers some CPUs run slowly (AMD's Zen 2).
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#define ISS_X86_AVX2 1
#endif

namespace iss {

// detail::lerp on several lanes: a + w * (b - a) with one rounding for the multiply-add.
#if defined(__AVX512F__)
inline __m512 lerp16(__m512 a, __m512 b, __m512 w) {
    return _mm512_fmadd_ps(w, _mm512_sub_ps(b, a), a);
}
#endif
#if defined(__AVX2__) && defined(__FMA__)
inline __m128 lerp4(__m128 a, __m128 b, __m128 w) {
    return _mm_fmadd_ps(w, _mm_sub_ps(b, a), a);
}
inline __m256 lerp8(__m256 a, __m256 b, __m256 w) {
    return _mm256_fmadd_ps(w, _mm256_sub_ps(b, a), a);
}
// clampf on 8 lanes: a max then a min with x first, which return their second operand for NaN
// as clampf's comparisons do (NaN gives lo; lo <= hi).
inline __m256 clamp8(__m256 x, float lo, float hi) {
    return _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
}
#endif

}  // namespace iss
