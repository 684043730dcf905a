// exp, log and sin/cos that give the same bits on the host and on CUDA.
//
// libm (glibc) and CUDA's math library differ in the last bit of expf/logf/sinf, which would
// make the CPU and GPU generators drift apart. These versions use only correctly rounded
// operations (fmaf, +, -, *, /, sqrtf) in a fixed order, every multiply-add spelled as fmaf, so
// nvcc's FMA contraction has nothing to change and the host is built with -ffp-contract=off.
// Accuracy (tests/test_philox.cpp, against double): log and exp within 2e-7 relative,
// sin/cos within 3e-7 absolute.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/common/hd.h"

namespace iss {

ISS_HD_INLINE uint32_t float_to_bits(float x) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    return u;
#endif
}

ISS_HD_INLINE float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
#endif
}

// x clamped to [lo, hi] (lo <= hi); NaN gives lo. Written as comparisons rather than
// fminf/fmaxf, which g++ keeps as libm calls (their NaN rules differ from the min/max
// instructions): the same result on host and device. Two steps, not nested, so that a
// vectorised loop makes them a max and a min (x first: NaN gives the second operand).
ISS_HD_INLINE float clampf(float x, float lo, float hi) {
    const float above_lo = x > lo ? x : lo;
    return above_lo < hi ? above_lo : hi;
}

// Natural log for positive normal floats (>= 2^-126). x = m * 2^e with m in [sqrt(1/2),
// sqrt(2)); log(m) = 2 atanh(s), s = (m - 1) / (m + 1), odd series to s^9 (|s| < 0.172,
// truncation < 1e-9 relative).
ISS_HD_INLINE float portable_log(float x) {
    const uint32_t bits = float_to_bits(x);
    int e = int((bits >> 23) & 0xffu) - 127;
    float m = bits_to_float((bits & 0x007fffffu) | 0x3f800000u);  // m in [1, 2)
    if (m > 1.41421356f) {  // move m to [sqrt(1/2), sqrt(2)) so s stays small
        m = m * 0.5f;
        e += 1;
    }
    const float s = (m - 1.0f) / (m + 1.0f);
    const float s2 = s * s;
    float poly = fmaf(s2, 1.0f / 9.0f, 1.0f / 7.0f);
    poly = fmaf(s2, poly, 1.0f / 5.0f);
    poly = fmaf(s2, poly, 1.0f / 3.0f);
    const float log_m = fmaf(2.0f * s * s2, poly, 2.0f * s);
    // e * ln2 split in two parts so the product stays exact for |e| < 2^8.
    return fmaf(float(e), 0.693145751953125f, fmaf(float(e), 1.428606765330187e-06f, log_m));
}

// e^x for x in [-87, 88] (outside: clamped, giving ~1.6e-38 or ~1.7e38). x = n ln2 + r with
// |r| <= ln2 / 2 (Cody-Waite, two-part ln2), Taylor series of e^r to r^7 (truncation < 2e-8
// relative), times 2^n built from the exponent bits.
ISS_HD_INLINE float portable_exp(float x) {
    x = clampf(x, -87.0f, 88.0f);
    const float n = floorf(fmaf(x, 1.44269504f, 0.5f));
    float r = fmaf(n, -0.693145751953125f, x);
    r = fmaf(n, -1.428606765330187e-06f, r);
    float p = fmaf(r, 1.0f / 5040.0f, 1.0f / 720.0f);
    p = fmaf(r, p, 1.0f / 120.0f);
    p = fmaf(r, p, 1.0f / 24.0f);
    p = fmaf(r, p, 1.0f / 6.0f);
    p = fmaf(r, p, 0.5f);
    p = fmaf(r, p, 1.0f);
    p = fmaf(r, p, 1.0f);
    // 2^n as two factors so that n = 128 (x near 88.7) does not overflow the exponent field.
    const int half = int(n) / 2;
    const float scale0 = bits_to_float(uint32_t(half + 127) << 23);
    const float scale1 = bits_to_float(uint32_t(int(n) - half + 127) << 23);
    return p * scale0 * scale1;
}

// x^y for x in [0, 1] and y > 0 (the generator's gamma): 0 for x below the normal range.
ISS_HD_INLINE float portable_pow_unit(float x, float y) {
    return x < 1.17549435e-38f ? 0.0f : portable_exp(y * portable_log(x));
}

// sin and cos of 2*pi*t for t in [0, 1): quarter-turn reduction (exact), then Taylor
// polynomials on [-pi/4, pi/4] (truncation < 2e-9); the quadrant picks and negates them by
// selects, not branches, so that a CPU loop of them vectorises.
struct SinCos {
    float s, c;
};

ISS_HD_INLINE SinCos portable_sincos_turns(float t) {
    const float x = 4.0f * t;  // quarter turns, exact
    const float q = floorf(x + 0.5f);
    const float r = x - q;  // in [-0.5, 0.5], exact
    const float a = r * 1.57079632679489662f;
    const float a2 = a * a;
    float sp = fmaf(a2, 2.7557319e-06f, -1.9841270e-04f);
    sp = fmaf(a2, sp, 8.3333333e-03f);
    sp = fmaf(a2, sp, -1.6666667e-01f);
    const float s = fmaf(a * a2, sp, a);
    float cp = fmaf(a2, -2.7557319e-07f, 2.4801587e-05f);
    cp = fmaf(a2, cp, -1.3888889e-03f);
    cp = fmaf(a2, cp, 4.1666667e-02f);
    cp = fmaf(a2, cp, -0.5f);
    const float c = fmaf(a2, cp, 1.0f);
    // Quadrants 0..3: (sin, cos) = (s, c), (c, -s), (-s, -c), (-c, s).
    const int quadrant = int(q) & 3;
    const float sin_base = (quadrant & 1) ? c : s, cos_base = (quadrant & 1) ? s : c;
    return SinCos{(quadrant & 2) ? -sin_base : sin_base, ((quadrant + 1) & 2) ? -cos_base : cos_base};
}

}  // namespace iss
