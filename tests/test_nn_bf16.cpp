// bf16 storage (kernels/common/bf16.h) and the network kernels on bf16 tensors, on every
// backend. The rounding is checked against a reference that picks the nearer of the two bf16
// neighbours in double; each kernel's bf16 path against its fp32 path: on the same values (bf16
// inputs widened) the bf16 output must be the fp32 output rounded once, bit for bit, since the
// two share one body and compute in fp32 between the widening load and the rounding store
// (docs/KERNELS.md, "In bf16"). The fp32 paths themselves are checked against double references
// in test_nn_kernels.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/nn/batchnorm.h"
#include "kernels/nn/elementwise.h"
#include "kernels/nn/pool.h"
#include "tests/backends.h"

namespace iss {
namespace {

// The bf16 nearest to v, ties to the even neighbour, by distances in double; values beyond the
// largest finite bf16 by half a step or more become infinity (IEEE overflow).
uint16_t reference_bf16(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    if (std::isnan(v)) return uint16_t((u >> 16) | 0x40);
    const uint16_t down = uint16_t(u >> 16);  // toward zero
    if ((u & 0xffff) == 0) return down;
    const uint16_t up = uint16_t(down + 1);  // away from zero (may be infinity)
    auto magnitude = [](uint16_t b) {
        if ((b & 0x7fff) == 0x7f80) return std::ldexp(1.0, 128);  // infinity's place in the grid
        uint32_t w = uint32_t(b & 0x7fff) << 16;
        float f;
        std::memcpy(&f, &w, 4);
        return double(f);
    };
    const double a = std::fabs(double(v)), d_down = a - magnitude(down), d_up = magnitude(up) - a;
    if (d_down < d_up) return down;
    if (d_up < d_down) return up;
    return (down & 1) ? up : down;
}

TEST(Bf16Storage, RoundsToNearestEvenLikeTheReference) {
    std::vector<float> values = {0.0f, -0.0f, 1.0f, -1.0f, 1.00390625f /* tie, even below */,
                                 1.01171875f /* tie, odd below */, 3.4028235e38f, -3.4028235e38f,
                                 3.3961776e38f /* just under the overflow threshold */,
                                 std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                                 std::numeric_limits<float>::denorm_min(), 1e-40f, -1e-40f,
                                 std::numeric_limits<float>::quiet_NaN(), bits_to_float(0x7f800001u) /* sNaN */,
                                 bits_to_float(0xffffffffu)};
    std::mt19937 rng(5);
    for (int i = 0; i < 200000; ++i) values.push_back(bits_to_float(uint32_t(rng())));
    for (float v : values) {
        const Bf16 got = round_to_bf16(v);
        ASSERT_EQ(got.bits, reference_bf16(v)) << "value " << v;
        if (std::isnan(v)) {
            EXPECT_TRUE(std::isnan(widen(got))) << "NaN must stay NaN";
        }
    }
}

TEST(Bf16Storage, WideningIsExactAndRoundTrips) {
    for (uint32_t b = 0; b < 65536; ++b) {
        const float f = widen(Bf16{uint16_t(b)});
        uint32_t u;
        std::memcpy(&u, &f, 4);
        ASSERT_EQ(u, b << 16);
        if (!std::isnan(f)) {
            ASSERT_EQ(round_to_bf16(f).bits, b) << "a bf16 value must round to itself";
        }
    }
}

// ---------------------------------------------------------------------------------------------

class NnBf16 : public test::BackendTest {
protected:
    // Random values representable in bf16 (so both paths read the same numbers), and their bf16
    // storage.
    struct Values {
        std::vector<float> f32;
        std::vector<Bf16> bf16;
    };
    static Values values(size_t n, float lo, float hi, uint32_t seed) {
        std::mt19937 rng(seed);
        std::uniform_real_distribution<float> dist(lo, hi);
        Values v;
        for (size_t i = 0; i < n; ++i) {
            const Bf16 b = round_to_bf16(dist(rng));
            v.bf16.push_back(b);
            v.f32.push_back(widen(b));
        }
        return v;
    }
    // The bf16 result is the fp32 result rounded once, element for element.
    static ::testing::AssertionResult rounded_once(const std::vector<Bf16>& got, const std::vector<float>& fp32) {
        if (got.size() != fp32.size()) return ::testing::AssertionFailure() << "sizes differ";
        for (size_t i = 0; i < got.size(); ++i)
            if (got[i].bits != round_to_bf16(fp32[i]).bits)
                return ::testing::AssertionFailure() << "element " << i << ": bf16 " << widen(got[i])
                                                     << ", fp32 path " << fp32[i];
        return ::testing::AssertionSuccess();
    }
};

// The conversions a convolution library needs (nn/conv_cudnn.cpp): every pair of storage types,
// bit for bit against the scalar rounding (itself checked against the reference above),
// special values included.
TEST_P(NnBf16, RoundingToBf16ValuesIsTheScalarRounding) {
    std::vector<float> v = {0.0f, -0.0f, 1.00390625f, 1.01171875f, 3.3961776e38f, 3.4028235e38f,
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::denorm_min(), -1e-40f,
                            std::numeric_limits<float>::quiet_NaN(), bits_to_float(0x7f800001u)};
    std::mt19937 rng(9);
    while (v.size() < 4099) v.push_back(bits_to_float(uint32_t(rng())));
    const int64_t n = int64_t(v.size());
    std::vector<Bf16> want;
    for (float e : v) want.push_back(round_to_bf16(e));

    Buffer<float> f32(ctx(), v), values(ctx(), v.size());
    Buffer<Bf16> bf16(ctx(), v.size()), copy(ctx(), v.size());
    round_to_bf16_values(ctx(), f32.data(), bf16.data(), n);
    round_to_bf16_values(ctx(), f32.data(), values.data(), n);
    const std::vector<Bf16> got = bf16.download();
    const std::vector<float> got_values = values.download();
    for (size_t i = 0; i < v.size(); ++i) {
        ASSERT_EQ(got[i].bits, want[i].bits) << "float -> bf16, element " << i << " (" << v[i] << ")";
        ASSERT_EQ(float_to_bits(got_values[i]), uint32_t(want[i].bits) << 16)
            << "float -> bf16 values, element " << i << " (" << v[i] << ")";
    }
    // From bf16: the same values back (the rounding keeps a bf16's bits; a NaN is already quiet).
    round_to_bf16_values(ctx(), bf16.data(), values.data(), n);
    round_to_bf16_values(ctx(), bf16.data(), copy.data(), n);
    const std::vector<float> widened = values.download();
    const std::vector<Bf16> copied_back = copy.download();
    for (size_t i = 0; i < v.size(); ++i) {
        ASSERT_EQ(float_to_bits(widened[i]), uint32_t(want[i].bits) << 16) << "bf16 -> float, element " << i;
        ASSERT_EQ(copied_back[i].bits, want[i].bits) << "bf16 -> bf16, element " << i;
    }
}

// The convolution epilogue: bias per channel (channels-last), the optional ELU of elu_forward,
// one rounding to the output type; in place too. The reference sums are the host's: a NaN sum's
// bits are the GPU's canonical NaN there, so NaNs are compared as NaNs.
TEST_P(NnBf16, BiasEluIsTheElementwiseEpilogueRoundedOnce) {
    const int64_t voxels = 203, channels = 7;  // an odd channel count: the index must not assume a vector width
    const size_t n = size_t(voxels * channels);
    std::vector<float> x = values(n, -6.0f, 4.0f, 31).f32;
    x[5] = std::numeric_limits<float>::quiet_NaN();
    x[n - 1] = std::numeric_limits<float>::infinity();
    std::vector<float> bias(static_cast<size_t>(channels));
    for (int64_t c = 0; c < channels; ++c) bias[size_t(c)] = 0.37f * float(c) - 1.1f;
    Buffer<float> xf(ctx(), x), b(ctx(), bias), yf(ctx(), n);
    Buffer<Bf16> yb(ctx(), n);
    for (const bool elu : {false, true}) {
        SCOPED_TRACE(elu ? "with ELU" : "bias only");
        const float alpha = 0.7f;
        // The reference: elu_forward over the host-computed sums (one correctly rounded add).
        std::vector<float> sums(n);
        for (size_t e = 0; e < n; ++e) sums[e] = x[e] + bias[e % size_t(channels)];
        Buffer<float> want_f(ctx(), sums);
        if (elu) elu_forward(ctx(), want_f.data(), want_f.data(), int64_t(n), alpha);
        const std::vector<float> want = want_f.download();

        bias_elu(ctx(), xf.data(), yf.data(), b.data(), voxels, channels, elu, alpha);
        bias_elu(ctx(), xf.data(), yb.data(), b.data(), voxels, channels, elu, alpha);
        const std::vector<float> got = yf.download();
        const std::vector<Bf16> got_bf16 = yb.download();
        for (size_t e = 0; e < n; ++e) {
            if (std::isnan(want[e])) {
                ASSERT_TRUE(std::isnan(got[e]) && std::isnan(widen(got_bf16[e]))) << "NaN propagates, element " << e;
                continue;
            }
            ASSERT_EQ(float_to_bits(got[e]), float_to_bits(want[e])) << "fp32, element " << e;
            ASSERT_EQ(got_bf16[e].bits, round_to_bf16(want[e]).bits) << "fp32 -> bf16, element " << e;
        }
        // In place on bf16 storage: the sums of the stored values, one rounding.
        const Values stored = values(n, -6.0f, 4.0f, 32);
        Buffer<Bf16> in_place(ctx(), stored.bf16);
        bias_elu(ctx(), in_place.data(), in_place.data(), b.data(), voxels, channels, elu, alpha);
        std::vector<float> bf16_sums(n);
        for (size_t e = 0; e < n; ++e) bf16_sums[e] = stored.f32[e] + bias[e % size_t(channels)];
        Buffer<float> want_b(ctx(), bf16_sums);
        if (elu) elu_forward(ctx(), want_b.data(), want_b.data(), int64_t(n), alpha);
        EXPECT_TRUE(rounded_once(in_place.download(), want_b.download())) << "bf16 in place";
    }
    EXPECT_TRUE(std::isnan(yf.download()[5])) << "NaN propagates";
    EXPECT_THROW(bias_elu(ctx(), xf.data(), yf.data(), b.data(), voxels, 0, false, 1.0f), Error);
}

TEST_P(NnBf16, EluAndAccumulationAreTheFp32PathRoundedOnce) {
    const size_t n = 1537;
    Values x = values(n, -9.0f, 5.0f, 1), dy = values(n, -1.0f, 1.0f, 2);
    x.bf16[0] = round_to_bf16(std::numeric_limits<float>::quiet_NaN());
    x.f32[0] = widen(x.bf16[0]);
    Buffer<float> xf(ctx(), x.f32), yf(ctx(), n), dyf(ctx(), dy.f32), dxf(ctx(), n);
    Buffer<Bf16> xb(ctx(), x.bf16), yb(ctx(), n), dyb(ctx(), dy.bf16), dxb(ctx(), n);
    for (const float alpha : {1.0f, 0.3f}) {
        elu_forward(ctx(), xf.data(), yf.data(), int64_t(n), alpha);
        elu_forward(ctx(), xb.data(), yb.data(), int64_t(n), alpha);
        EXPECT_TRUE(rounded_once(yb.download(), yf.download())) << "ELU forward";
        // The backward reads the stored output: give the fp32 path the bf16 output's values.
        std::vector<float> y_values;
        for (Bf16 b : yb.download()) y_values.push_back(widen(b));
        yf.upload(y_values);
        elu_backward(ctx(), yf.data(), dyf.data(), dxf.data(), int64_t(n), alpha);
        elu_backward(ctx(), yb.data(), dyb.data(), dxb.data(), int64_t(n), alpha);
        EXPECT_TRUE(rounded_once(dxb.download(), dxf.download())) << "ELU backward";
    }
    EXPECT_TRUE(std::isnan(widen(yb.download()[0]))) << "NaN propagates through bf16 ELU";
    add_inplace(ctx(), xf.data(), dyf.data(), int64_t(n));
    add_inplace(ctx(), xb.data(), dyb.data(), int64_t(n));
    EXPECT_TRUE(rounded_once(xb.download(), xf.download())) << "accumulation";
}

TEST_P(NnBf16, PoolingUpsamplingAndConcatAreTheFp32PathRoundedOnce) {
    const Shape5 fine{2, 4, 6, 8, 5}, coarse{2, 2, 3, 4, 5};
    const size_t nf = size_t(fine.size()), nc = size_t(coarse.size());
    Values x = values(nf, -2.0f, 2.0f, 3);
    const Values dy = values(nc, -1.0f, 1.0f, 4), dfine = values(nf, -1.0f, 1.0f, 5);
    // A NaN in the first block's last member (fine voxel (0, 1, 1, 1), channel 2): it wins.
    const size_t nan_at = size_t(((1 * fine.h + 1) * fine.w + 1) * fine.c + 2);
    x.bf16[nan_at] = round_to_bf16(std::numeric_limits<float>::quiet_NaN());
    x.f32[nan_at] = widen(x.bf16[nan_at]);

    // Max-pooling: the same winners, the same values (nothing is rounded).
    Buffer<float> xf(ctx(), x.f32), yf(ctx(), nc), dyf(ctx(), dy.f32), dxf(ctx(), nf);
    Buffer<Bf16> xb(ctx(), x.bf16), yb(ctx(), nc), dyb(ctx(), dy.bf16), dxb(ctx(), nf);
    Buffer<uint8_t> argf(ctx(), nc), argb(ctx(), nc);
    maxpool2_forward(ctx(), xf.data(), fine, yf.data(), argf.data());
    maxpool2_forward(ctx(), xb.data(), fine, yb.data(), argb.data());
    EXPECT_TRUE(rounded_once(yb.download(), yf.download())) << "max-pool forward";
    EXPECT_EQ(argb.download(), argf.download()) << "max-pool winners";
    // A signalling NaN there wins too and keeps its bits: the winner is stored, not rounded
    // (rounding would quieten it to 0x7fc1).
    std::vector<Bf16> signalling = x.bf16;
    signalling[nan_at] = Bf16{uint16_t(0x7f81)};
    Buffer<Bf16> xsb(ctx(), signalling), ysb(ctx(), nc);
    Buffer<uint8_t> args(ctx(), nc);
    maxpool2_forward(ctx(), xsb.data(), fine, ysb.data(), args.data());
    EXPECT_EQ(ysb.download()[2].bits, 0x7f81) << "the NaN's bits";
    EXPECT_EQ(args.download()[2], 7) << "the NaN's block member";
    maxpool2_backward(ctx(), dyf.data(), argf.data(), fine, dxf.data());
    maxpool2_backward(ctx(), dyb.data(), argb.data(), fine, dxb.data());
    EXPECT_TRUE(rounded_once(dxb.download(), dxf.download())) << "max-pool backward";

    // Upsampling: a copy forward, a sum of 8 in fp32 rounded once backward.
    Buffer<float> uf(ctx(), nf), dff(ctx(), dfine.f32), duf(ctx(), nc);
    Buffer<Bf16> ub(ctx(), nf), dfb(ctx(), dfine.bf16), dub(ctx(), nc);
    upsample2_forward(ctx(), dyf.data(), coarse, uf.data());
    upsample2_forward(ctx(), dyb.data(), coarse, ub.data());
    EXPECT_TRUE(rounded_once(ub.download(), uf.download())) << "upsample forward";
    upsample2_backward(ctx(), dff.data(), coarse, duf.data());
    upsample2_backward(ctx(), dfb.data(), coarse, dub.data());
    EXPECT_TRUE(rounded_once(dub.download(), duf.download())) << "upsample backward";

    // Concatenation of 5 + 3 channels over the fine voxels, and its split.
    const int64_t voxels = fine.voxels(), cb = 3;
    const Values b = values(size_t(voxels * cb), -1.0f, 1.0f, 6);
    Buffer<float> bf(ctx(), b.f32), cf(ctx(), size_t(voxels * (5 + cb))), daf(ctx(), nf), dbf(ctx(), b.f32.size());
    Buffer<Bf16> bb(ctx(), b.bf16), cbuf(ctx(), size_t(voxels * (5 + cb))), dab(ctx(), nf), dbb(ctx(), b.f32.size());
    concat_channels_forward(ctx(), xf.data(), 5, bf.data(), cb, voxels, cf.data());
    concat_channels_forward(ctx(), xb.data(), 5, bb.data(), cb, voxels, cbuf.data());
    EXPECT_TRUE(rounded_once(cbuf.download(), cf.download())) << "concat forward";
    concat_channels_backward(ctx(), cf.data(), 5, cb, voxels, daf.data(), dbf.data());
    concat_channels_backward(ctx(), cbuf.data(), 5, cb, voxels, dab.data(), dbb.data());
    EXPECT_TRUE(rounded_once(dab.download(), daf.download())) << "concat backward (a)";
    EXPECT_TRUE(rounded_once(dbb.download(), dbf.download())) << "concat backward (b)";
}

TEST_P(NnBf16, BatchNormIsTheFp32PathRoundedOnce) {
    const Shape5 shape{1, 9, 10, 11, 6};  // 990 positions: a partial last chunk of the sums
    const size_t n = size_t(shape.size()), c = size_t(shape.c);
    const Values x = values(n, -3.0f, 5.0f, 7), dy = values(n, -1.0f, 1.0f, 8);
    const std::vector<float> gamma{1.0f, 0.5f, 2.0f, -1.0f, 0.25f, 1.5f}, beta{0.0f, 0.1f, -0.2f, 0.3f, 1.0f, -1.0f};
    Buffer<float> g(ctx(), gamma), bt(ctx(), beta), ws(ctx(), batchnorm_workspace_bytes(shape) / sizeof(float) + 1);
    struct Run {
        std::vector<float> mean, invstd, running_mean, running_var, dgamma, dbeta;
    };
    auto train = [&](auto* xd, auto* yd, auto* dyd, auto* dxd, Run& r) {
        Buffer<float> mean(ctx(), c), invstd(ctx(), c), dgamma(ctx(), c), dbeta(ctx(), c);
        Buffer<float> rm(ctx(), std::vector<float>(c, 0.5f)), rv(ctx(), std::vector<float>(c, 2.0f));
        batchnorm_forward_train(ctx(), xd, shape, g.data(), bt.data(), 1e-3f, 0.99f, yd, mean.data(), invstd.data(),
                                rm.data(), rv.data(), ws.data());
        batchnorm_backward(ctx(), xd, dyd, shape, g.data(), mean.data(), invstd.data(), dxd, dgamma.data(),
                           dbeta.data(), ws.data());
        r = {mean.download(), invstd.download(), rm.download(), rv.download(), dgamma.download(), dbeta.download()};
    };
    Buffer<float> xf(ctx(), x.f32), yf(ctx(), n), dyf(ctx(), dy.f32), dxf(ctx(), n);
    Buffer<Bf16> xb(ctx(), x.bf16), yb(ctx(), n), dyb(ctx(), dy.bf16), dxb(ctx(), n);
    Run rf, rb;
    train(xf.data(), yf.data(), dyf.data(), dxf.data(), rf);
    train(xb.data(), yb.data(), dyb.data(), dxb.data(), rb);
    EXPECT_TRUE(rounded_once(yb.download(), yf.download())) << "training forward";
    EXPECT_TRUE(rounded_once(dxb.download(), dxf.download())) << "backward";
    // Statistics and parameter gradients are fp32 in both, from the same values: identical.
    EXPECT_EQ(rb.mean, rf.mean);
    EXPECT_EQ(rb.invstd, rf.invstd);
    EXPECT_EQ(rb.running_mean, rf.running_mean);
    EXPECT_EQ(rb.running_var, rf.running_var);
    EXPECT_EQ(rb.dgamma, rf.dgamma);
    EXPECT_EQ(rb.dbeta, rf.dbeta);

    Buffer<float> rm(ctx(), std::vector<float>(c, 0.5f)), rv(ctx(), std::vector<float>(c, 2.0f));
    batchnorm_forward_infer(ctx(), xf.data(), shape, g.data(), bt.data(), rm.data(), rv.data(), 1e-3f, yf.data());
    batchnorm_forward_infer(ctx(), xb.data(), shape, g.data(), bt.data(), rm.data(), rv.data(), 1e-3f, yb.data());
    EXPECT_TRUE(rounded_once(yb.download(), yf.download())) << "inference";
}

ISS_INSTANTIATE_BACKENDS(NnBf16);

}  // namespace
}  // namespace iss
