// AVX-512 intrinsics, for the few CPU loops written in them where the build targets x86-64-v4
// (each beside its portable twin, with the same results). Include this, not <immintrin.h>:
// GCC 12's AVX-512 header trips its own -Wmaybe-uninitialized and -Wuninitialized
// (_mm512_undefined_*, GCC bug 105593, fixed in GCC 13).
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
#endif

#if defined(__AVX512F__)
namespace iss {

// detail::lerp, 16 lanes: a + w * (b - a) with one rounding for the multiply-add.
inline __m512 lerp16(__m512 a, __m512 b, __m512 w) { return _mm512_fmadd_ps(w, _mm512_sub_ps(b, a), a); }

}  // namespace iss
#endif
