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

#include <cstdint>

#include "kernels/common/hd.h"
#include "kernels/common/portable_math.h"

namespace iss {

struct Philox4 {
    uint32_t v[4];
};

// Philox-4x32's round multipliers and key increments (the published constants).
constexpr uint32_t philox_m0 = 0xD2511F53u, philox_m1 = 0xCD9E8D57u;
constexpr uint32_t philox_w0 = 0x9E3779B9u, philox_w1 = 0xBB67AE85u;

// One Philox-4x32 block with 10 rounds: the published algorithm, checked against the
// Random123 known-answer vectors.
ISS_HD_INLINE Philox4 philox4x32_10(Philox4 ctr, uint32_t key0, uint32_t key1) {
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = uint64_t(philox_m0) * ctr.v[0];
        const uint64_t p1 = uint64_t(philox_m1) * ctr.v[2];
        const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
        const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
        ctr = Philox4{{hi1 ^ ctr.v[1] ^ key0, lo1, hi0 ^ ctr.v[3] ^ key1, lo0}};
        key0 += philox_w0;
        key1 += philox_w1;
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


// Two standard normal draws from two uniform words (Box-Muller). Returned by value: a CPU loop
// of them then vectorises (out-pointers to locals would not).
struct NormalPair {
    float z0, z1;
};

ISS_HD_INLINE NormalPair box_muller(uint32_t bits_radius, uint32_t bits_angle) {
    const float radius = sqrtf(-2.0f * portable_log(uniform_open(bits_radius)));
    const SinCos sc = portable_sincos_turns(float(bits_angle >> 8) * (1.0f / 16777216.0f));  // [0, 1)
    return NormalPair{radius * sc.c, radius * sc.s};
}

// Four uniform (0, 1) draws for element `index`.
ISS_HD_INLINE void random_uniform4(const RandomKey& key, uint64_t index, float out[4]) {
    const Philox4 r = random_bits(key, index);
    for (int i = 0; i < 4; ++i) out[i] = uniform_open(r.v[i]);
}

// Four standard normal draws for element `index`.
ISS_HD_INLINE void random_normal4(const RandomKey& key, uint64_t index, float out[4]) {
    const Philox4 r = random_bits(key, index);
    const NormalPair first = box_muller(r.v[0], r.v[1]), second = box_muller(r.v[2], r.v[3]);
    out[0] = first.z0;
    out[1] = first.z1;
    out[2] = second.z0;
    out[3] = second.z1;
}

}  // namespace iss
