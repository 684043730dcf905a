// portable_math.h's log, exp and pow_unit on 8 lanes (AVX2 + FMA builds), operation for
// operation: the same bits per lane. Written out because g++'s vectorisation of the scalar
// versions if-converts their branches and clamps into compares and blends, which lengthens the
// chain of dependent operations that bounds such a loop (the normalisation's, the bias's).
#pragma once

#include "kernels/common/x86_simd.h"

#if defined(ISS_X86_AVX2)

namespace iss::avx2 {

// portable_log for lanes >= 2^-126 (other lanes: a value to be discarded).
inline __m256 portable_log(__m256 x) {
    const __m256i bits = _mm256_castps_si256(x);
    __m256i e = _mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(0xff)),
                                 _mm256_set1_epi32(127));
    __m256 m = _mm256_castsi256_ps(
        _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f800000)));
    const __m256 above = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), above);
    e = _mm256_sub_epi32(e, _mm256_castps_si256(above));  // e + 1 where above (all ones: -1)
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 s = _mm256_div_ps(_mm256_sub_ps(m, one), _mm256_add_ps(m, one));
    const __m256 s2 = _mm256_mul_ps(s, s);
    __m256 poly = _mm256_fmadd_ps(s2, _mm256_set1_ps(1.0f / 9.0f), _mm256_set1_ps(1.0f / 7.0f));
    poly = _mm256_fmadd_ps(s2, poly, _mm256_set1_ps(1.0f / 5.0f));
    poly = _mm256_fmadd_ps(s2, poly, _mm256_set1_ps(1.0f / 3.0f));
    const __m256 two_s = _mm256_mul_ps(_mm256_set1_ps(2.0f), s);
    const __m256 log_m = _mm256_fmadd_ps(_mm256_mul_ps(two_s, s2), poly, two_s);
    const __m256 fe = _mm256_cvtepi32_ps(e);
    return _mm256_fmadd_ps(fe, _mm256_set1_ps(0.693145751953125f),
                           _mm256_fmadd_ps(fe, _mm256_set1_ps(1.428606765330187e-06f), log_m));
}

// portable_exp. int(n) / 2 rounds towards zero, as C++'s division.
inline __m256 portable_exp(__m256 x) {
    x = clamp8(x, -87.0f, 88.0f);
    const __m256 n = _mm256_round_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504f), _mm256_set1_ps(0.5f)),
                                     _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693145751953125f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-1.428606765330187e-06f), r);
    __m256 p = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0f / 5040.0f), _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(r, p, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(r, p, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(r, p, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(r, p, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(r, p, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(r, p, _mm256_set1_ps(1.0f));
    const __m256i whole = _mm256_cvttps_epi32(n);
    const __m256i half = _mm256_srai_epi32(_mm256_sub_epi32(whole, _mm256_srai_epi32(whole, 31)), 1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 scale0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
    const __m256 scale1 =
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(whole, half), bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, scale0), scale1);
}

// portable_pow_unit: 0 where x is below the normal range, else exp(y log x).
inline __m256 portable_pow_unit(__m256 x, __m256 y) {
    const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
    return _mm256_andnot_ps(tiny, portable_exp(_mm256_mul_ps(y, portable_log(x))));
}

}  // namespace iss::avx2

#endif
