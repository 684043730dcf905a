// Philox-4x32-10: the published Random123 known-answer vectors, and the quality of the
// uniform and normal draws built on it.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/common/philox.h"
#include "kernels/common/portable_math.h"

namespace iss {
namespace {

struct Kat {
    uint32_t ctr[4], key[2], expected[4];
};

TEST(Philox, RandomKnownAnswerVectors) {
    const Kat kats[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (const Kat& kat : kats) {
        const Philox4 out = philox4x32_10(Philox4{{kat.ctr[0], kat.ctr[1], kat.ctr[2], kat.ctr[3]}}, kat.key[0], kat.key[1]);
        for (int i = 0; i < 4; ++i) EXPECT_EQ(out.v[i], kat.expected[i]) << "word " << i;
    }
}

TEST(Philox, UniformIsOpenAndUnbiased) {
    EXPECT_GT(uniform_open(0u), 0.0f);
    EXPECT_LT(uniform_open(0xffffffffu), 1.0f);
    const RandomKey key{1234, 7, 3};
    double sum = 0, sum_sq = 0;
    const int n = 1 << 18;
    for (int i = 0; i < n / 4; ++i) {
        float u[4];
        random_uniform4(key, uint64_t(i), u);
        for (float x : u) {
            ASSERT_GT(x, 0.0f);
            ASSERT_LT(x, 1.0f);
            sum += x;
            sum_sq += double(x) * x;
        }
    }
    const double mean = sum / n, var = sum_sq / n - mean * mean;
    // Standard error of the mean is sqrt(1/12/n) = 5.6e-4: allow 5 of them.
    EXPECT_NEAR(mean, 0.5, 5 * 5.6e-4);
    EXPECT_NEAR(var, 1.0 / 12.0, 2e-3);
}

TEST(PortableMath, LogSinCosMatchDouble) {
    // The polynomials behind the normals, against libm in double: a few ulp at most.
    for (int i = 1; i <= 100000; ++i) {
        const float x = float(i) / 100000.0f;
        const double exact = std::log(double(x));
        EXPECT_NEAR(portable_log(x), exact, 4e-7 * std::fabs(exact) + 1e-7) << "x = " << x;
    }
    for (int i = 0; i < 100000; ++i) {
        const float t = float(i) / 100000.0f;
        const SinCos sc = portable_sincos_turns(t);
        EXPECT_NEAR(sc.s, std::sin(2 * M_PI * double(t)), 3e-7) << "t = " << t;
        EXPECT_NEAR(sc.c, std::cos(2 * M_PI * double(t)), 3e-7) << "t = " << t;
    }
}

TEST(PortableMath, ExpAndPowMatchDouble) {
    for (int i = -87000; i <= 88000; i += 7) {
        const float x = float(i) / 1000.0f;
        const double exact = std::exp(double(x));
        EXPECT_NEAR(portable_exp(x), exact, 2e-7 * exact) << "x = " << x;
    }
    EXPECT_EQ(portable_exp(0.0f), 1.0f);
    EXPECT_TRUE(std::isfinite(portable_exp(1000.0f)));
    EXPECT_GT(portable_exp(-1000.0f), 0.0f);
    for (float y : {0.2f, 0.5f, 1.0f, 2.3f, 5.0f})
        for (int i = 0; i <= 1000; ++i) {
            const float x = float(i) / 1000.0f;
            const double exact = std::pow(double(x), double(y));
            // Error model: the rounding of y * log(x) (relative 2^-24 of |y log x|) becomes a
            // relative error of the result, as does log's own error (each under 2^-23 of
            // |y log x|), plus a few ulp from exp.
            const double exponent = x > 0 ? std::fabs(double(y) * std::log(double(x))) : 0.0;
            EXPECT_NEAR(portable_pow_unit(x, y), exact, (exponent * 2.4e-7 + 5e-7) * exact) << x << "^" << y;
        }
}

TEST(Philox, NormalMomentsAndTails) {
    const RandomKey key{99, 0, 1};
    const int n = 1 << 20;
    double sum = 0, sum_sq = 0, sum_4 = 0;
    int beyond_3 = 0;
    for (int i = 0; i < n / 4; ++i) {
        float z[4];
        random_normal4(key, uint64_t(i), z);
        for (float x : z) {
            ASSERT_TRUE(std::isfinite(x));
            sum += x;
            sum_sq += double(x) * x;
            sum_4 += double(x) * x * x * x;
            beyond_3 += std::fabs(x) > 3.0f;
        }
    }
    const double mean = sum / n, var = sum_sq / n - mean * mean, kurt = sum_4 / n;
    EXPECT_NEAR(mean, 0.0, 5 * std::sqrt(1.0 / n));
    EXPECT_NEAR(var, 1.0, 5 * std::sqrt(2.0 / n));
    EXPECT_NEAR(kurt, 3.0, 5 * std::sqrt(96.0 / n));
    // P(|z| > 3) = 0.0026998: expected 2831 of 2^20, standard deviation about 53.
    EXPECT_NEAR(beyond_3, 0.0026998 * n, 5 * 53);
}

TEST(Philox, StreamsDifferBySampleAndPurpose) {
    const Philox4 a = random_bits(RandomKey{5, 0, 0}, 0);
    const Philox4 b = random_bits(RandomKey{5, 1, 0}, 0);
    const Philox4 c = random_bits(RandomKey{5, 0, 1}, 0);
    const Philox4 d = random_bits(RandomKey{6, 0, 0}, 0);
    EXPECT_NE(a.v[0], b.v[0]);
    EXPECT_NE(a.v[0], c.v[0]);
    EXPECT_NE(a.v[0], d.v[0]);
}

}  // namespace
}  // namespace iss
