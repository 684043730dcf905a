// Philox-4x32-10 counter-based random numbers (Salmon et al., SC'11), host and device.
//
// Every random draw in the project is a pure function of (seed, sample, purpose, index), so
// the CPU and the GPU produce the same numbers and any sample can be regenerated alone.
// Contract: uniform draws are bit-identical on host and device (integer math plus one exact
// scaling). Normal draws use Box-Muller with our own log and sin/cos polynomials written with
// explicit fmaf and correctly rounded sqrtf/division, so they are bit-identical too (no libm
// call whose last bit differs between glibc and CUDA). Accuracy of the normals: about 2 ulp
// against a double-precision Box-Muller (see tests/test_philox.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/common/hd.h"

namespace iss {

struct Philox4 {
    uint32_t v[4];
};

// One Philox-4x32 block with 10 rounds: the published algorithm, checked against the
// Random123 known-answer vectors.
ISS_HD_INLINE Philox4 philox4x32_10(Philox4 ctr, uint32_t key0, uint32_t key1) {
    const uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
    const uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = uint64_t(m0) * ctr.v[0];
        const uint64_t p1 = uint64_t(m1) * ctr.v[2];
        const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
        const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
        ctr = Philox4{{hi1 ^ ctr.v[1] ^ key0, lo1, hi0 ^ ctr.v[3] ^ key1, lo0}};
        key0 += w0;
        key1 += w1;
    }
    return ctr;
}

// Who is drawing: the run's seed, the sample number and the purpose (one constant per stage,
// e.g. the GMM noise or the velocity field), so streams of different stages never overlap.
struct RandomKey {
    uint64_t seed = 0;
    uint32_t sample = 0;
    uint32_t purpose = 0;
};

// Four independent 32-bit words for element `index` (one Philox block per index).
ISS_HD_INLINE Philox4 random_bits(const RandomKey& key, uint64_t index) {
    return philox4x32_10(Philox4{{uint32_t(index), uint32_t(index >> 32), key.sample, key.purpose}},
                         uint32_t(key.seed), uint32_t(key.seed >> 32));
}

// Uniform in the open interval (0, 1): the top 23 bits, centred in their cell (with 24 bits
// the top cell's centre, 1 - 2^-25, would round to 1).
ISS_HD_INLINE float uniform_open(uint32_t bits) {
    return float(bits >> 9) * (1.0f / 8388608.0f) + (0.5f / 8388608.0f);
}

namespace detail {

ISS_HD_INLINE uint32_t float_to_bits(float x) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
#endif
}

ISS_HD_INLINE float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
#endif
}

// Natural log of x in (0, 1] (positive normal floats): x = m * 2^e with m in [sqrt(1/2), sqrt(2)),
// log(m) = 2 atanh(s) with s = (m - 1) / (m + 1), odd series in s to s^9 (|s| < 0.172,
// truncation < 1e-9 relative).
ISS_HD_INLINE float log_unit(float x) {
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

// sin and cos of 2*pi*t for t in [0, 1): quarter-turn reduction (exact), then Taylor
// polynomials on [-pi/4, pi/4] (truncation < 2e-9).
ISS_HD_INLINE void sincos_turns(float t, float* s_out, float* c_out) {
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
    switch (int(q) & 3) {
        case 0: *s_out = s; *c_out = c; break;
        case 1: *s_out = c; *c_out = -s; break;
        case 2: *s_out = -s; *c_out = -c; break;
        default: *s_out = -c; *c_out = s; break;
    }
}

}  // namespace detail

// Two standard normal draws from two uniform words (Box-Muller).
ISS_HD_INLINE void box_muller(uint32_t bits_radius, uint32_t bits_angle, float* z0, float* z1) {
    const float radius = sqrtf(-2.0f * detail::log_unit(uniform_open(bits_radius)));
    float s, c;
    detail::sincos_turns(float(bits_angle >> 8) * (1.0f / 16777216.0f), &s, &c);  // [0, 1)
    *z0 = radius * c;
    *z1 = radius * s;
}

// Four uniform (0, 1) draws for element `index`.
ISS_HD_INLINE void random_uniform4(const RandomKey& key, uint64_t index, float out[4]) {
    const Philox4 r = random_bits(key, index);
    for (int i = 0; i < 4; ++i) out[i] = uniform_open(r.v[i]);
}

// Four standard normal draws for element `index`.
ISS_HD_INLINE void random_normal4(const RandomKey& key, uint64_t index, float out[4]) {
    const Philox4 r = random_bits(key, index);
    box_muller(r.v[0], r.v[1], &out[0], &out[1]);
    box_muller(r.v[2], r.v[3], &out[2], &out[3]);
}

}  // namespace iss
