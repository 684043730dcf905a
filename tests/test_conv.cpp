// Conv3d (nn/conv.*) on every backend: forward, backward-data and backward-weights against
// the double reference (tests/ref/conv.*) within the tolerance of nn/conv.h; integer inputs
// (exact in fp32) against the reference exactly, which pins every border of the "same"
// padding; single taps as shifts (the orientation of the kernel); the backward passes as the
// derivatives of forward by finite differences; repeat calls bit for bit; on CUDA, the CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/nn/elementwise.h"
#include "nn/conv.h"
#include "nn/conv_backends.h"
#include "nn/ops.h"
#include "tests/backends.h"
#include "tests/ref/conv.h"
#include "tests/ref/nn.h"

namespace iss {
namespace {

using test::all_near;

// The contract of nn/conv.h: |error| <= 1e-4 * max |output| per tensor.
//
// Error model (docs/KERNELS.md, "Conv3d"): each output is a sum of K products of floats
// (K = k^3*Ci forward, k^3*Co backward-data, N*D*H*W backward-weights). Products of two floats
// are exact in double; fp32 accumulation, in whatever order the library blocks it, adds about
// sqrt(K) * u * sum|terms| (u = 2^-24; K * u at worst). For zero-mean random terms
// sum|terms| ~ sqrt(K) * |typical output|, so the error is ~ K * u * |output|: 648 * 6e-8 =
// 4e-5 for 24 -> 48 channels, k = 3, inside the contract. The contract is norm-wise (relative
// to the largest output, not to each element) because cuDNN's FFT algorithms spread their
// error over the whole tensor.
constexpr double kRelTolerance = 1e-4;

double max_abs(const std::vector<double>& v) {
    double m = 0;
    for (double e : v) m = std::max(m, std::fabs(e));
    return m;
}

double tolerance(const std::vector<double>& ref) { return kRelTolerance * max_abs(ref); }

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// Uniform in [-1, 1], or small integers in [-4, 4] (sums of their products stay far below 2^24,
// so fp32 computes them exactly in any order).
std::vector<float> random_values(size_t count, uint32_t seed, bool integers = false) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> real(-1.0f, 1.0f);
    std::uniform_int_distribution<int> integer(-4, 4);
    std::vector<float> v(count);
    for (float& e : v) e = integers ? float(integer(rng)) : real(rng);
    return v;
}

struct Inputs {
    std::vector<float> x, w, b, dy;
};

Inputs random_inputs(const ConvShape& s, uint32_t seed, bool integers = false) {
    return Inputs{random_values(size_t(s.in.size()), seed, integers),
                  random_values(size_t(s.weight_count()), seed + 1, integers),
                  random_values(size_t(s.out_c), seed + 2, integers),
                  random_values(size_t(s.out().size()), seed + 3, integers)};
}

struct Outputs {
    std::vector<float> y, dx, dw, db;
};

// The three passes of one Conv3d on a context; `repeats` > 1 runs each pass again and checks
// the bits do not change (the determinism the training loop relies on).
Outputs run_conv(DeviceContext& ctx, const ConvShape& s, const Inputs& in, int repeats = 1) {
    Conv3d conv(ctx, s);
    Buffer<float> x(ctx, in.x), w(ctx, in.w), b(ctx, in.b), dy(ctx, in.dy);
    Buffer<float> y(ctx, size_t(s.out().size())), dx(ctx, size_t(s.in.size()));
    Buffer<float> dw(ctx, size_t(s.weight_count())), db(ctx, size_t(s.out_c));
    Outputs first;
    for (int r = 0; r < repeats; ++r) {
        conv.forward(x.data(), w.data(), b.data(), y.data());
        conv.backward_data(dy.data(), w.data(), dx.data());
        conv.backward_weights(x.data(), dy.data(), dw.data(), db.data());
        Outputs out{y.download(), dx.download(), dw.download(), db.download()};
        if (r == 0) {
            first = std::move(out);
            continue;
        }
        EXPECT_EQ(out.y, first.y) << "forward changed on repeat " << r;
        EXPECT_EQ(out.dx, first.dx) << "backward_data changed on repeat " << r;
        EXPECT_EQ(out.dw, first.dw) << "backward_weights (dw) changed on repeat " << r;
        EXPECT_EQ(out.db, first.db) << "backward_weights (db) changed on repeat " << r;
    }
    return first;
}

struct Case {
    const char* name;
    ConvShape shape;
};

ConvShape unpadded_d(ConvShape s) {
    s.pad_d = false;
    return s;
}

// Odd, unequal sizes so a swapped axis cannot pass; channel counts of the U-Net (24 -> 48,
// the 34-class head, 48 and more) and small ones; a volume thinner than the kernel on every axis; kernel 2
// (one more output row per axis), with channel counts the CUDA tensor cores take.
const std::vector<Case>& cases() {
    static const std::vector<Case> all{
        {"k3 2x5x6x7 3->5", ConvShape{Shape5{2, 5, 6, 7, 3}, 5, 3}},
        {"k1 2x5x6x7 3->5", ConvShape{Shape5{2, 5, 6, 7, 3}, 5, 1}},
        {"k3 2x5x6x7 24->48", ConvShape{Shape5{2, 5, 6, 7, 24}, 48, 3}},
        {"k1 2x6x5x7 24->34", ConvShape{Shape5{2, 6, 5, 7, 24}, 34, 1}},
        {"k3 1x1x2x3 2->3", ConvShape{Shape5{1, 1, 2, 3, 2}, 3, 3}},
        {"k2 2x5x6x7 3->5", ConvShape{Shape5{2, 5, 6, 7, 3}, 5, 2}},
        {"k2 1x3x4x5 16->24", ConvShape{Shape5{1, 3, 4, 5, 16}, 24, 2}},
        // From 48 input channels an inference engine's fp32 forward on an AVX2 CPU reorders into
        // oneDNN's blocked layout and back (nn/conv_dnnl.cpp): a batch of 2, a channel count
        // that is not a power of 2, 7 blocks of 8 channels over 45 voxels (a blocked copy that
        // is not a whole number of 64 bytes), and a decoder fold's kernel 2.
        {"k3 2x3x5x4 48->40", ConvShape{Shape5{2, 3, 5, 4, 48}, 40, 3}},
        {"k3 1x3x5x3 56->48", ConvShape{Shape5{1, 3, 5, 3, 56}, 48, 3}},
        {"k2 1x3x4x5 48->96", ConvShape{Shape5{1, 3, 4, 5, 48}, 96, 2}},
        // Without zero padding along D (a predict slab's inner convolutions, nn/unet.cpp): the
        // output is kernel - 1 rows shorter; a blocked forward's channel count too.
        {"k3 2x5x6x7 3->5 unpadded D", unpadded_d(ConvShape{Shape5{2, 5, 6, 7, 3}, 5, 3})},
        {"k3 1x4x5x3 48->40 unpadded D", unpadded_d(ConvShape{Shape5{1, 4, 5, 3, 48}, 40, 3})},
        {"k3 1x3x2x3 2->3 unpadded D", unpadded_d(ConvShape{Shape5{1, 3, 2, 3, 2}, 3, 3})},
        {"k2 2x5x6x7 3->5 unpadded D", unpadded_d(ConvShape{Shape5{2, 5, 6, 7, 3}, 5, 2})},
    };
    return all;
}

class ConvReference : public test::BackendTest {};

TEST_P(ConvReference, ThreePassesMatchTheReference) {
    for (const Case& c : cases()) {
        SCOPED_TRACE(c.name);
        const ConvShape& s = c.shape;
        const Inputs in = random_inputs(s, 17);
        const Outputs got = run_conv(ctx(), s, in);

        const std::vector<double> y = ref::conv3d_forward(s, in.x, in.w, in.b);
        const std::vector<double> dx = ref::conv3d_backward_data(s, in.dy, in.w);
        std::vector<double> dw, db;
        ref::conv3d_backward_weights(s, in.x, in.dy, dw, db);
        EXPECT_TRUE(all_near(got.y, y, tolerance(y))) << "forward";
        EXPECT_TRUE(all_near(got.dx, dx, tolerance(dx))) << "backward_data";
        EXPECT_TRUE(all_near(got.dw, dw, tolerance(dw))) << "backward_weights (dw)";
        EXPECT_TRUE(all_near(got.db, db, tolerance(db))) << "backward_weights (db)";

        if (on_cuda()) {
            // Each side is within the contract of the reference, so they are within twice it of
            // each other.
            DeviceContext cpu;
            const Outputs want = run_conv(cpu, s, in);
            EXPECT_TRUE(all_near(got.y, want.y, 2 * tolerance(y))) << "forward, CUDA vs CPU";
            EXPECT_TRUE(all_near(got.dx, want.dx, 2 * tolerance(dx))) << "backward_data, CUDA vs CPU";
            EXPECT_TRUE(all_near(got.dw, want.dw, 2 * tolerance(dw))) << "dw, CUDA vs CPU";
            EXPECT_TRUE(all_near(got.db, want.db, 2 * tolerance(db))) << "db, CUDA vs CPU";
        }
    }
}

// The fused ELU (ConvShape::elu_alpha): the forward is ELU of the reference convolution. ELU is
// 1-Lipschitz, so the convolution's contract carries over; oneDNN's exp adds a few ulp of 1
// (times alpha) on the negative branch. The backward passes do not change (they take the
// gradient before the ELU). On CUDA the ELU is our kernel: the CUDA side is exact against
// the convolution followed by elu_forward.
TEST_P(ConvReference, FusedEluIsTheEluOfTheConvolution) {
    for (const float alpha : {1.0f, 0.3f}) {
        for (const Case& c : cases()) {
            SCOPED_TRACE(testing::Message() << c.name << ", alpha " << alpha);
            ConvShape s = c.shape;
            s.elu_alpha = alpha;
            const Inputs in = random_inputs(s, 19);
            const Outputs got = run_conv(ctx(), s, in);
            const std::vector<double> y = ref::conv3d_forward(s, in.x, in.w, in.b);
            EXPECT_TRUE(all_near(got.y, ref::elu(y, alpha), tolerance(y) + alpha * 1e-6)) << "forward";
            EXPECT_TRUE(all_near(got.dx, ref::conv3d_backward_data(s, in.dy, in.w),
                                 tolerance(ref::conv3d_backward_data(s, in.dy, in.w))))
                << "backward_data";
            bool negative = false;
            for (float v : got.y) negative |= v < 0;
            EXPECT_TRUE(negative) << "no output took the ELU's negative branch: the case tests nothing";
            if (on_cuda()) {
                std::vector<float> want = run_conv(ctx(), c.shape, in).y;
                Buffer<float> b(ctx(), want);
                elu_forward(ctx(), b.data(), b.data(), int64_t(want.size()), alpha);
                EXPECT_EQ(got.y, b.download()) << "CUDA: the convolution, then our ELU";
            }
        }
    }
}

// An inference engine (ConvShape::forward_only) runs the forward alone, with or without the
// fused ELU: against the reference as above, exactly on small integers on the CPU without the
// ELU; its backward passes refuse. On an AVX2 CPU without AVX-512 its fp32 forward from 48
// input channels goes through oneDNN's blocked layout, and nowhere else.
TEST_P(ConvReference, InferenceEnginesRunTheForwardAlone) {
    for (const Case& c : cases()) {
        EXPECT_FALSE(Conv3d(ctx(), c.shape).forward_reorders_activations()) << c.name << ": a training engine";
        for (const float alpha : {0.0f, 1.0f}) {
            SCOPED_TRACE(testing::Message() << c.name << ", alpha " << alpha);
            ConvShape s = c.shape;
            s.elu_alpha = alpha;
            s.forward_only = true;
            Conv3d conv(ctx(), s);
            for (const bool integers : {false, true}) {
                const Inputs in = random_inputs(s, 23, integers);
                Buffer<float> x(ctx(), in.x), w(ctx(), in.w), b(ctx(), in.b), y(ctx(), size_t(s.out().size()));
                conv.forward(x.data(), w.data(), b.data(), y.data());
                std::vector<double> want = ref::conv3d_forward(s, in.x, in.w, in.b);
                const bool exact = integers && alpha == 0 && !on_cuda();  // the ELU's exp is not exact
                const double tol = exact ? 0.0 : tolerance(want) + alpha * 1e-6;
                if (alpha > 0) want = ref::elu(want, alpha);
                EXPECT_TRUE(all_near(y.download(), want, tol)) << (integers ? "integers" : "real values");
            }
            Buffer<float> w(ctx(), size_t(s.weight_count())), db(ctx(), size_t(s.out_c));
            Buffer<float> x(ctx(), size_t(s.in.size())), dy(ctx(), size_t(s.out().size()));
            EXPECT_THROW(conv.backward_data(dy.data(), w.data(), x.data()), Error);
            EXPECT_THROW(conv.backward_weights(x.data(), dy.data(), w.data(), db.data()), Error);
            // oneDNN's view of the CPU, which ONEDNN_MAX_CPU_ISA can cap (tests/CMakeLists.txt runs
            // these tests once more with its AVX2 kernels).
            EXPECT_EQ(conv.forward_reorders_activations(), !on_cuda() && dnnl_avx2_without_avx512() && s.in.c >= 48);
        }
    }
}

// Small integers make every partial sum an exact float, so the CPU must equal the reference
// exactly, including every border voxel where the zero padding cuts taps off. On CUDA the
// algorithm may transform (FFT), which is not exact: the contract's tolerance applies there.
TEST_P(ConvReference, IntegerInputsAreExactAtEveryBorder) {
    for (const Case& c : cases()) {
        SCOPED_TRACE(c.name);
        const ConvShape& s = c.shape;
        const Inputs in = random_inputs(s, 5, /*integers=*/true);
        const Outputs got = run_conv(ctx(), s, in);
        const std::vector<double> y = ref::conv3d_forward(s, in.x, in.w, in.b);
        const std::vector<double> dx = ref::conv3d_backward_data(s, in.dy, in.w);
        std::vector<double> dw, db;
        ref::conv3d_backward_weights(s, in.x, in.dy, dw, db);
        const double scale = on_cuda() ? 1.0 : 0.0;
        EXPECT_TRUE(all_near(got.y, y, scale * tolerance(y))) << "forward";
        EXPECT_TRUE(all_near(got.dx, dx, scale * tolerance(dx))) << "backward_data";
        EXPECT_TRUE(all_near(got.dw, dw, scale * tolerance(dw))) << "dw";
        EXPECT_TRUE(all_near(got.db, db, scale * tolerance(db))) << "db";
    }
}

// Orientation, written from SPEC-level meaning rather than through the reference: a kernel
// that is 1 at tap (a, b, c) and 0 elsewhere copies the input shifted by (a-p, b-p, c-p)
// (p = k/2), with zeros where that reads outside the volume; backward-data shifts the other
// way. Kernel 2 has an output one larger on every axis (nn/conv.h).
class ConvBorders : public test::BackendTest {};

TEST_P(ConvBorders, SingleTapIsAShift) {
    for (const int64_t k : {3, 2}) {
        const ConvShape s{Shape5{1, 4, 5, 6, 1}, 1, k};
        const Shape5 g = s.in, o = s.out();
        const int64_t p = k / 2;
        std::vector<float> x(size_t(g.size())), dy(size_t(o.size()));
        for (size_t i = 0; i < x.size(); ++i) x[i] = float(i + 1);  // every voxel distinct and nonzero
        for (size_t i = 0; i < dy.size(); ++i) dy[i] = float(1000 + i);
        const double tol = on_cuda() ? kRelTolerance * double(dy.size() + 1000) : 0.0;
        for (int64_t tap = 0; tap < k * k * k; ++tap) {
            const int64_t a = tap / (k * k), b = (tap / k) % k, c = tap % k;
            SCOPED_TRACE(::testing::Message() << "kernel " << k << ", tap (" << a << ", " << b << ", " << c << ")");
            std::vector<float> w(size_t(k * k * k), 0.0f);
            w[size_t(tap)] = 1.0f;
            Inputs in{x, w, {0.0f}, dy};
            const Outputs got = run_conv(ctx(), s, in);
            const auto inside = [](int64_t z, int64_t r, int64_t q, const Shape5& e) {
                return z >= 0 && z < e.d && r >= 0 && r < e.h && q >= 0 && q < e.w;
            };
            std::vector<double> want_y(dy.size(), 0.0), want_dx(x.size(), 0.0);
            for (int64_t z = 0; z < o.d; ++z)
                for (int64_t r = 0; r < o.h; ++r)
                    for (int64_t q = 0; q < o.w; ++q) {
                        const int64_t zf = z + a - p, rf = r + b - p, qf = q + c - p;  // read by forward
                        if (inside(zf, rf, qf, g))
                            want_y[size_t((z * o.h + r) * o.w + q)] = x[size_t((zf * g.h + rf) * g.w + qf)];
                    }
            for (int64_t z = 0; z < g.d; ++z)
                for (int64_t r = 0; r < g.h; ++r)
                    for (int64_t q = 0; q < g.w; ++q) {
                        const int64_t zb = z - a + p, rb = r - b + p, qb = q - c + p;  // the output that read here
                        if (inside(zb, rb, qb, o))
                            want_dx[size_t((z * g.h + r) * g.w + q)] = dy[size_t((zb * o.h + rb) * o.w + qb)];
                    }
            EXPECT_TRUE(all_near(got.y, want_y, tol)) << "forward";
            EXPECT_TRUE(all_near(got.dx, want_dx, tol)) << "backward_data";
        }
    }
}

// Backward passes are the derivatives of L(x, w, b) = sum(dy * forward(x, w, b)): the central
// difference of L along a random direction v equals <gradient, v>. L is linear in each
// argument, so the difference has no truncation error at any step; only rounding remains,
// bounded with the contract: a forward error of at most tol(y) per output moves L by at most
// sum|dy| * tol(y), and a gradient error of tol(g) per element moves <g, v> by sum|v| * tol(g).
class ConvGradient : public test::BackendTest {};

TEST_P(ConvGradient, BackwardIsTheDerivativeOfForward) {
    const ConvShape s{Shape5{2, 4, 5, 3, 4}, 6, 3};
    const Inputs in = random_inputs(s, 99);
    const Outputs grad = run_conv(ctx(), s, in);
    const double step = 0.5;

    auto loss = [&](const Inputs& at, double& y_tol) {
        const Outputs out = run_conv(ctx(), s, at);
        double sum = 0;
        for (size_t i = 0; i < out.y.size(); ++i) sum += double(in.dy[i]) * double(out.y[i]);
        y_tol = tolerance(to_double(out.y));
        return sum;
    };
    auto sum_abs = [](const std::vector<float>& v) {
        double s = 0;
        for (float e : v) s += std::fabs(double(e));
        return s;
    };
    auto check = [&](const char* name, std::vector<float> Inputs::*field, const std::vector<float>& gradient) {
        const std::vector<float> v = random_values((in.*field).size(), 1234);
        Inputs plus = in, minus = in;
        for (size_t i = 0; i < v.size(); ++i) {
            (plus.*field)[i] += float(step) * v[i];
            (minus.*field)[i] -= float(step) * v[i];
        }
        // The perturbed inputs are rounded to float: use the exact step they took.
        std::vector<double> dir(v.size());
        for (size_t i = 0; i < v.size(); ++i) dir[i] = (double((plus.*field)[i]) - double((minus.*field)[i])) / 2;
        double tol_plus = 0, tol_minus = 0;
        const double difference = (loss(plus, tol_plus) - loss(minus, tol_minus)) / 2;
        double predicted = 0;
        for (size_t i = 0; i < v.size(); ++i) predicted += double(gradient[i]) * dir[i];
        const double tol = sum_abs(in.dy) * (tol_plus + tol_minus) / 2 +
                           step * sum_abs(v) * tolerance(to_double(gradient));
        EXPECT_NEAR(difference, predicted, tol) << name;
    };
    check("x (backward_data)", &Inputs::x, grad.dx);
    check("w (backward_weights, dw)", &Inputs::w, grad.dw);
    check("b (backward_weights, db)", &Inputs::b, grad.db);
}

// Same inputs, same bits: repeated calls on one object and a fresh object for the same shape
// (a resumed training run builds new ones); with 24 and 48 input channels.
class ConvDeterminism : public test::BackendTest {};

TEST_P(ConvDeterminism, RepeatCallsAndNewObjectsGiveTheSameBits) {
    for (const int64_t in_c : {24, 48}) {
        SCOPED_TRACE(::testing::Message() << in_c << " input channels");
        const ConvShape s{Shape5{2, 5, 6, 7, in_c}, 48, 3};
        const Inputs in = random_inputs(s, 7);
        const Outputs once = run_conv(ctx(), s, in, /*repeats=*/3);
        const Outputs again = run_conv(ctx(), s, in);
        EXPECT_EQ(once.y, again.y);
        EXPECT_EQ(once.dx, again.dx);
        EXPECT_EQ(once.dw, again.dw);
        EXPECT_EQ(once.db, again.db);
    }
}

// bf16 (nn/precision.h): each pass rounds its two inputs to bfloat16 (to nearest, ties to even)
// and sums the products in fp32. So the result equals the double reference on the rounded
// inputs within the fp32 contract above, and differs from the unrounded reference by the
// rounding (docs/KERNELS.md, "Conv3d in bf16"). Only where bf16 runs natively (the CPU with
// AVX512-BF16 or AMX); elsewhere Conv3d refuses it.
class ConvBf16 : public test::BackendTest {
protected:
    void SetUp() override {
        test::BackendTest::SetUp();
        if (IsSkipped()) return;
        if (!bf16_is_native(ctx())) GTEST_SKIP() << "bf16 is not native on this device: bf16 convolutions not run";
    }
};

// The values oneDNN reads: each rounded to bf16 (kernels/common/bf16.h, itself tested against
// a reference in test_nn_bf16.cpp), so this test also checks that the two round alike.
std::vector<float> rounded(std::vector<float> v) {
    for (float& e : v) e = widen(round_to_bf16(e));
    return v;
}

TEST_P(ConvBf16, EachPassIsTheReferenceOnItsInputsRoundedToBf16) {
    for (const Case& c : cases()) {
        SCOPED_TRACE(c.name);
        ConvShape s = c.shape;
        s.precision = Precision::bf16;
        const Inputs in = random_inputs(s, 23);
        const Outputs got = run_conv(ctx(), s, in, /*repeats=*/2);

        const std::vector<float> x = rounded(in.x), w = rounded(in.w), dy = rounded(in.dy);
        const std::vector<double> y = ref::conv3d_forward(s, x, w, in.b);
        const std::vector<double> dx = ref::conv3d_backward_data(s, dy, w);
        std::vector<double> dw, db;
        ref::conv3d_backward_weights(s, x, dy, dw, db);
        EXPECT_TRUE(all_near(got.y, y, tolerance(y))) << "forward";
        EXPECT_TRUE(all_near(got.dx, dx, tolerance(dx))) << "backward_data";
        EXPECT_TRUE(all_near(got.dw, dw, tolerance(dw))) << "backward_weights (dw)";
        EXPECT_TRUE(all_near(got.db, db, tolerance(db))) << "backward_weights (db)";

        // And it is not fp32 in disguise: the unrounded reference is further away than the
        // fp32 contract allows (bf16 keeps 8 significant bits: a relative rounding of up to 2^-8).
        if (s.in.c * s.kernel * s.kernel * s.kernel >= 24) {
            const std::vector<double> y_fp32 = ref::conv3d_forward(c.shape, in.x, in.w, in.b);
            double worst = 0;
            for (size_t i = 0; i < y_fp32.size(); ++i) worst = std::max(worst, std::fabs(got.y[i] - y_fp32[i]));
            EXPECT_GT(worst, tolerance(y_fp32)) << "forward matches fp32: the inputs were not rounded";
        }
    }
}

// Activations stored in bf16 (x, dx, y, dy; the network's layers between the first and the
// head): the same sums as with fp32 storage of the same values, each output rounded once, the
// fused ELU included. On CUDA a forward on bf16 tensor cores (cuDNN's bf16 configuration, used
// where both channel counts are multiples of 8: nn/conv_cudnn.cpp) rounds the sum before adding
// the bias: one more rounding, of the sum without bias (ELU is 1-Lipschitz for alpha <= 1, so
// it carries that rounding over unchanged).
TEST_P(ConvBf16, Bf16TensorsHoldTheOutputsRoundedOnce) {
    for (const Case& c : cases()) {
        for (const float alpha : {0.0f, 1.0f}) {
            SCOPED_TRACE(testing::Message() << c.name << ", ELU alpha " << alpha);
            ConvShape s = c.shape;
            s.precision = Precision::bf16;
            s.elu_alpha = alpha;
            Inputs in = random_inputs(s, 29);
            in.x = rounded(in.x);
            in.dy = rounded(in.dy);
            const Outputs want = run_conv(ctx(), s, in);
            // Where the forward rounds twice, its bound needs the sum without bias: the fp32-stored
            // forward without the ELU, less the bias.
            const bool rounds_twice = on_cuda() && s.in.c % 8 == 0 && s.out_c % 8 == 0;
            ConvShape without_elu = s;
            without_elu.elu_alpha = 0.0f;
            const std::vector<float> sum_and_bias = rounds_twice ? run_conv(ctx(), without_elu, in).y : want.y;

            s.x_type = s.y_type = DType::bf16;
            auto to_bf16 = [](const std::vector<float>& v) {
                std::vector<Bf16> out;
                for (float e : v) out.push_back(round_to_bf16(e));
                return out;
            };
            auto widened = [](const std::vector<Bf16>& v) {
                std::vector<float> out;
                for (Bf16 e : v) out.push_back(widen(e));
                return out;
            };
            Conv3d conv(ctx(), s);
            Buffer<Bf16> x(ctx(), to_bf16(in.x)), dy(ctx(), to_bf16(in.dy));
            Buffer<Bf16> y(ctx(), size_t(s.out().size())), dx(ctx(), size_t(s.in.size()));
            Buffer<float> w(ctx(), in.w), b(ctx(), in.b), dw(ctx(), size_t(s.weight_count()));
            Buffer<float> db(ctx(), size_t(s.out_c));
            conv.forward(x.data(), w.data(), b.data(), y.data());
            conv.backward_data(dy.data(), w.data(), dx.data());
            conv.backward_weights(x.data(), dy.data(), dw.data(), db.data());

            // One rounding (2^-8 relative) on top of the fp32 contract (sums in another order);
            // `extra` adds a bound per element.
            auto near_rounded = [&](const std::vector<float>& got, const std::vector<float>& fp32, const char* what,
                                    const std::function<double(size_t)>& extra) {
                const double tol = tolerance(to_double(fp32));
                for (size_t i = 0; i < got.size(); ++i)
                    ASSERT_LE(std::fabs(double(got[i]) - fp32[i]), std::ldexp(std::fabs(fp32[i]), -8) + tol + extra(i))
                        << what << " element " << i << ": bf16 " << got[i] << ", fp32 " << fp32[i];
            };
            const auto none = [](size_t) { return 0.0; };
            const auto sum_rounded_first = [&](size_t i) {
                if (!rounds_twice) return 0.0;
                const double sum = double(sum_and_bias[i]) - in.b[i % size_t(s.out_c)];
                return std::ldexp(std::fabs(sum), -8);
            };
            near_rounded(widened(y.download()), want.y, "forward", sum_rounded_first);
            near_rounded(widened(dx.download()), want.dx, "backward_data", none);
            EXPECT_TRUE(all_near(dw.download(), to_double(want.dw), tolerance(to_double(want.dw)))) << "dw";
            EXPECT_TRUE(all_near(db.download(), to_double(want.db), tolerance(to_double(want.db)))) << "db";
        }
    }
}

TEST_P(ConvBf16, ALayersEnginesAreKeptPerPrecision) {
    // Same input, other precision: another engine (ConvEngines keys on the precision), so a
    // graph switching precision never runs the other's primitives; asking again reuses it.
    ConvEngines engines(8, 3);
    const Shape5 in{1, 3, 4, 5, 8};
    Conv3d& fp32 = engines.get(ctx(), ConvShape{in, 8, 3, Precision::fp32});
    Conv3d& bf16 = engines.get(ctx(), ConvShape{in, 8, 3, Precision::bf16});
    EXPECT_NE(&fp32, &bf16);
    EXPECT_EQ(fp32.shape().precision, Precision::fp32);
    EXPECT_EQ(bf16.shape().precision, Precision::bf16);
    EXPECT_EQ(&engines.get(ctx(), ConvShape{in, 8, 3, Precision::bf16}), &bf16);
    // Another storage type or a fused ELU is another engine too; a shape not the layer's is refused.
    EXPECT_NE(&engines.get(ctx(), ConvShape{in, 8, 3, Precision::bf16, DType::bf16, DType::bf16}), &bf16);
    EXPECT_NE(&engines.get(ctx(), ConvShape{in, 8, 3, Precision::bf16, DType::f32, DType::f32, 1.0f}), &bf16);
    EXPECT_THROW(engines.get(ctx(), ConvShape{in, 4, 3, Precision::fp32}), Error);
}

// Bad shapes and null tensors throw iss::Error naming the field.
class ConvPreconditions : public test::BackendTest {
protected:
    void expect_refused(const ConvShape& s, const std::string& field) {
        try {
            Conv3d conv(ctx(), s);
            ADD_FAILURE() << "shape " << s.in.str() << " -> " << s.out_c << " k" << s.kernel << " was accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
        }
    }
};

TEST_P(ConvPreconditions, BadShapesNameTheField) {
    const Shape5 in{1, 4, 4, 4, 2};
    expect_refused(ConvShape{in, 3, 4}, "kernel");
    expect_refused(ConvShape{in, 3, 5}, "kernel");
    expect_refused(ConvShape{in, 3, 0}, "kernel");
    expect_refused(ConvShape{in, 0, 3}, "out_c");
    expect_refused(ConvShape{Shape5{1, 4, 4, 4, 0}, 3, 3}, "in.c");
    expect_refused(ConvShape{Shape5{0, 4, 4, 4, 2}, 3, 3}, "in.n");
    expect_refused(ConvShape{Shape5{1, 4, 0, 4, 2}, 3, 3}, "in.d, in.h, in.w");
    expect_refused(unpadded_d(ConvShape{Shape5{1, 2, 4, 4, 2}, 3, 3}), "without padding along D");
    // bf16 tensors with fp32 arithmetic: there is no such pass.
    expect_refused(ConvShape{in, 3, 3, Precision::fp32, DType::bf16, DType::f32}, "bf16 tensors need bf16 precision");
    expect_refused(ConvShape{in, 3, 3, Precision::fp32, DType::f32, DType::bf16}, "bf16 tensors need bf16 precision");
}

// Where bf16 is native the convolution is built (no skip on a GPU of sm_80 or later, which the
// GPU check counts as a failure); elsewhere it is refused, naming bf16.
TEST_P(ConvPreconditions, Bf16IsBuiltExactlyWhereItIsNative) {
    const ConvShape s{Shape5{1, 4, 4, 4, 2}, 3, 3, Precision::bf16};
    if (bf16_is_native(ctx()))
        EXPECT_NO_THROW(Conv3d(ctx(), s));
    else
        expect_refused(s, "bf16");
}

TEST_P(ConvPreconditions, NullTensorsAreNamed) {
    const ConvShape s{Shape5{1, 3, 3, 3, 2}, 2, 3};
    Conv3d conv(ctx(), s);
    Buffer<float> x(ctx(), size_t(s.in.size())), w(ctx(), size_t(s.weight_count())), b(ctx(), 2);
    Buffer<float> y(ctx(), size_t(s.out().size()));
    EXPECT_THROW(
        {
            try {
                conv.forward(x.data(), nullptr, b.data(), y.data());
            } catch (const Error& e) {
                EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
                throw;
            }
        },
        Error);
    EXPECT_THROW(conv.backward_data(nullptr, w.data(), x.data()), Error);
    EXPECT_THROW(conv.backward_weights(x.data(), y.data(), w.data(), nullptr), Error);
}

// On the CPU, backward_weights runs in slabs of output rows along D where the whole volume's
// oneDNN scratchpad would be large (nn/conv_dnnl.cpp), each slab's gradients added to the
// first's: forced here on small shapes, against the reference as every pass, in fp32 and (where
// native) bf16, with the slabs' borders on every kind of padding: "same" kernel 3, kernel 1,
// kernel 2 (one more output row), and none along D. Repeat calls keep their bits.
TEST(ConvWeightsSlabs, SlabsAlongDGiveTheReferenceGradients) {
    DeviceContext ctx;
    struct SlabCase {
        const char* name;
        ConvShape shape;
        int64_t rows;
    };
    const std::vector<SlabCase> slab_cases{
        {"k3 1x9x6x7 3->5, rows of 2", ConvShape{Shape5{1, 9, 6, 7, 3}, 5, 3}, 2},
        {"k3 1x9x6x7 24->24, rows of 4", ConvShape{Shape5{1, 9, 6, 7, 24}, 24, 3}, 4},
        {"k1 1x8x5x7 24->34, rows of 3", ConvShape{Shape5{1, 8, 5, 7, 24}, 34, 1}, 3},
        {"k2 1x5x6x7 3->5, rows of 2", ConvShape{Shape5{1, 5, 6, 7, 3}, 5, 2}, 2},
        {"k3 1x9x6x7 3->5 unpadded D, rows of 3", unpadded_d(ConvShape{Shape5{1, 9, 6, 7, 3}, 5, 3}), 3},
    };
    const int64_t automatic = set_dnnl_weights_slab_rows(0);
    for (const Precision precision : {Precision::fp32, Precision::bf16}) {
        if (precision == Precision::bf16 && !bf16_is_native(ctx)) {
            std::printf("bf16 is not native on this CPU: slabs checked in fp32 only\n");
            continue;
        }
        for (const SlabCase& c : slab_cases) {
            SCOPED_TRACE(testing::Message() << c.name << ", " << precision_name(precision));
            ConvShape s = c.shape;
            s.precision = precision;
            const Inputs in = random_inputs(s, 31);
            set_dnnl_weights_slab_rows(c.rows);
            const Outputs got = run_conv(ctx, s, in, /*repeats=*/2);
            EXPECT_EQ(Conv3d(ctx, s).backward_weights_slabs(), (s.out().d + c.rows - 1) / c.rows);
            set_dnnl_weights_slab_rows(0);
            EXPECT_EQ(Conv3d(ctx, s).backward_weights_slabs(), 1) << "small shapes need no slabs";
            const bool bf16 = precision == Precision::bf16;
            const std::vector<float> x = bf16 ? rounded(in.x) : in.x, dy = bf16 ? rounded(in.dy) : in.dy;
            std::vector<double> dw, db;
            ref::conv3d_backward_weights(s, x, dy, dw, db);
            EXPECT_TRUE(all_near(got.dw, dw, tolerance(dw))) << "dw";
            EXPECT_TRUE(all_near(got.db, db, tolerance(db))) << "db";
        }
    }
    set_dnnl_weights_slab_rows(automatic);
}

ISS_INSTANTIATE_BACKENDS(ConvReference);
ISS_INSTANTIATE_BACKENDS(ConvBorders);
ISS_INSTANTIATE_BACKENDS(ConvGradient);
ISS_INSTANTIATE_BACKENDS(ConvDeterminism);
ISS_INSTANTIATE_BACKENDS(ConvPreconditions);
ISS_INSTANTIATE_BACKENDS(ConvBf16);

}  // namespace
}  // namespace iss
