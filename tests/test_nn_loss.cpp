// The losses (soft Dice with softmax, weighted L2) and Adam on every backend: against the
// double references of tests/ref/loss, the Dice and L2 gradients also against central finite
// differences of the reference loss; special cases with known values; determinism; CUDA
// bit for bit against the CPU. Tolerances follow the error models of docs/KERNELS.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "kernels/common/error.h"
#include "kernels/nn/adam.h"
#include "kernels/nn/loss.h"
#include "tests/backends.h"
#include "tests/ref/loss.h"

namespace iss {
namespace {

using test::all_near;

constexpr double u = 5.9604644775390625e-08;  // 2^-24

struct Case {
    Shape5 shape;
    std::vector<float> logits;
    std::vector<uint8_t> target;

    std::vector<double> logits_d() const { return std::vector<double>(logits.begin(), logits.end()); }
};

// Logits uniform in [-spread, spread], targets uniform over the first `used` classes.
Case random_case(const Shape5& shape, float spread, uint32_t seed, int64_t used = 0) {
    Case c{shape, std::vector<float>(size_t(shape.size())), std::vector<uint8_t>(size_t(shape.voxels()))};
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> x(-spread, spread);
    std::uniform_int_distribution<int> t(0, int(used > 0 ? used : shape.c) - 1);
    for (float& l : c.logits) l = x(rng);
    for (uint8_t& l : c.target) l = uint8_t(t(rng));
    return c;
}

struct DiceRun {
    DiceResult result;
    std::vector<float> probs, dlogits;
};

DiceRun run_dice(DeviceContext& ctx, const Case& c, float grad_scale = 1) {
    Buffer<float> logits(ctx, c.logits), probs(ctx, size_t(c.shape.size())), dlogits(ctx, size_t(c.shape.size()));
    Buffer<uint8_t> target(ctx, c.target);
    Buffer<uint8_t> workspace(ctx, loss_workspace_bytes(c.shape));
    DiceRun run;
    run.result = softmax_dice_forward(ctx, logits.data(), target.data(), c.shape, probs.data(), workspace.data());
    softmax_dice_backward(ctx, probs.data(), target.data(), c.shape, grad_scale, dlogits.data(), workspace.data());
    run.probs = probs.download();
    run.dlogits = dlogits.download();
    return run;
}

// Error model of the float softmax (docs/KERNELS.md): relative error of every q at most
// eps_q = 4 eps_exp + (3C + 1) u, eps_exp = 2e-7 (portable_exp) + u R (rounding of x - max,
// R the largest logit spread at a position).
double eps_q(const Case& c) {
    double spread = 0;
    const size_t k = size_t(c.shape.c);
    for (size_t at = 0; at < c.logits.size(); at += k) {
        const auto [lo, hi] = std::minmax_element(c.logits.begin() + long(at), c.logits.begin() + long(at + k));
        spread = std::max(spread, double(*hi) - double(*lo));
    }
    return 4 * (2e-7 + u * spread) + (3 * double(c.shape.c) + 1) * u;
}

// The largest |dL/dp'_k| = |a_k| + |b_k| (times grad_scale) of any sample, from the reference sums.
double gradient_scale(const ref::Dice& d, double grad_scale) {
    double g = 0;
    const double nc = double(d.denominator.size());  // samples x classes
    for (size_t at = 0; at < d.denominator.size(); ++at) {
        const double uk = d.denominator[at], uh = std::max(uk, 1e-3);
        const double a = 2 / (nc * uh);
        const double b = uk > 1e-3 ? 4 * d.intersection[at] / (nc * uh * uh) : 0.0;
        g = std::max(g, std::fabs(grad_scale) * (a + b));
    }
    return g;
}

// Checks a run against the reference: probabilities within eps_q (relative, q <= 1), Dice and
// loss within 3 eps_q (I has the relative error of p', U twice that), gradients within
// G (15 eps_q + (C + 10) u) (docs/KERNELS.md derives it).
void expect_matches_reference(const Case& c, const DiceRun& run, float grad_scale) {
    const std::vector<double> x = c.logits_d();
    const ref::Dice want = ref::soft_dice(x, c.target, c.shape.c, c.shape.n);
    const double eq = eps_q(c);
    EXPECT_TRUE(all_near(run.probs, ref::softmax(x, c.shape.c), eq));
    EXPECT_TRUE(all_near(run.result.dice, want.dice, 3 * eq));
    EXPECT_NEAR(run.result.loss, want.loss, 3 * eq);
    const double g = gradient_scale(want, grad_scale);
    EXPECT_TRUE(all_near(run.dlogits, ref::soft_dice_grad(x, c.target, c.shape.c, grad_scale, c.shape.n),
                         g * (15 * eq + double(c.shape.c + 10) * u)));
}

// Central differences of a double loss w.r.t. every logit.
template <class Loss>
std::vector<double> finite_differences(const std::vector<double>& x, const Loss& loss, double h) {
    std::vector<double> grad(x.size());
    std::vector<double> y = x;
    for (size_t e = 0; e < x.size(); ++e) {
        y[e] = x[e] + h;
        const double up = loss(y);
        y[e] = x[e] - h;
        const double down = loss(y);
        y[e] = x[e];
        grad[e] = (up - down) / (2 * h);
    }
    return grad;
}

class NnLoss : public test::BackendTest {};

TEST_P(NnLoss, ForwardAndBackwardMatchReference) {
    // 2688 positions: two reduction chunks, the second one partial.
    const Case c = random_case({1, 12, 14, 16, 7}, 5.0f, 11);
    const DiceRun run = run_dice(ctx(), c, 1.0f);
    expect_matches_reference(c, run, 1.0f);
    // Two images in the batch, C = 34 as the network's head, a grad_scale other than 1.
    const Case big = random_case({2, 9, 10, 11, 34}, 8.0f, 12);
    expect_matches_reference(big, run_dice(ctx(), big, 0.25f), 0.25f);
}

TEST_P(NnLoss, ABatchAveragesEachSamplesDice) {
    // lab2im's DiceLoss: each sample's Dice per class, then the mean over samples and classes
    // (not one Dice of the batch's pooled sums). 1320 positions a sample: each sample's chunks
    // start at its first position, so its sums are a lone sample's bits.
    const Case batch = random_case({2, 10, 11, 12, 6}, 5.0f, 15, 4);  // classes 4 and 5 absent
    const DiceRun both = run_dice(ctx(), batch, 0.5f);
    expect_matches_reference(batch, both, 0.5f);
    const size_t positions = size_t(batch.shape.voxels() / 2), row = positions * 6;
    double mean_dice = 0;
    std::vector<double> class_dice(6, 0.0);
    for (size_t n = 0; n < 2; ++n) {
        Case one{{1, 10, 11, 12, 6},
                 std::vector<float>(batch.logits.begin() + long(n * row), batch.logits.begin() + long((n + 1) * row)),
                 std::vector<uint8_t>(batch.target.begin() + long(n * positions),
                                      batch.target.begin() + long((n + 1) * positions))};
        const DiceRun alone = run_dice(ctx(), one, 0.5f);
        mean_dice += (1 - alone.result.loss) / 2;
        for (size_t k = 0; k < 6; ++k) class_dice[k] += alone.result.dice[k] / 2;
        // Each sample's gradient is its lone gradient over the batch's 2: halved, exactly.
        for (size_t e = 0; e < row; ++e)
            ASSERT_EQ(both.dlogits[n * row + e], alone.dlogits[e] / 2) << "sample " << n << " element " << e;
    }
    EXPECT_NEAR(both.result.loss, 1 - mean_dice, 1e-15);
    EXPECT_TRUE(all_near(both.result.dice, class_dice, 1e-15));
}

TEST_P(NnLoss, GradientMatchesFiniteDifferences) {
    // Small enough that U_k is below 1e-3 for no class; some positions have a large margin so
    // that their other classes are clipped (their gradient through p' is zero).
    Case c = random_case({1, 3, 4, 5, 4}, 3.0f, 21);
    // Margin >= 25 - 6: the other classes' q <= e^-19 ~ 6e-9, far below the clip at 1e-7, so
    // neither the float q nor the difference steps cross the kink.
    for (int64_t v = 0; v < c.shape.voxels(); v += 3) c.logits[size_t(v * 4 + c.target[size_t(v)])] += 25.0f;
    const float grad_scale = 0.5f;
    const DiceRun run = run_dice(ctx(), c, grad_scale);
    const std::vector<double> x = c.logits_d();
    const auto loss = [&](const std::vector<double>& y) { return grad_scale * ref::soft_dice(y, c.target, 4).loss; };
    // Error of a central difference: h^2 |L'''| / 6 (|L'''| <= ~10 G here: softmax derivatives
    // up to third order are below 1) plus the double rounding of L, 2^-52 / h.
    const double h = 1e-4;
    const std::vector<double> fd = finite_differences(x, loss, h);
    const ref::Dice d = ref::soft_dice(x, c.target, 4);
    const double g = gradient_scale(d, grad_scale);
    const double fd_tol = h * h * 10 * g / 6 + 2.3e-16 / h;
    const std::vector<double> analytic = ref::soft_dice_grad(x, c.target, 4, grad_scale);
    EXPECT_TRUE(all_near(analytic, fd, fd_tol));
    EXPECT_TRUE(all_near(run.dlogits, fd, fd_tol + g * (15 * eps_q(c) + 14 * u)));
    // A clipped class: its gradient is only through the softmax coupling, q_k (0 - dot): tiny.
    for (int64_t v = 0; v < c.shape.voxels(); v += 3)
        EXPECT_LT(std::fabs(fd[size_t(v * 4 + (c.target[size_t(v)] + 1) % 4)]), 1e-6 * g + fd_tol);
}

TEST_P(NnLoss, PerfectPredictionGivesZeroLoss) {
    // Every class present; the true logit 30 above the others: the other classes' p is
    // e^-30 ~ 1e-13, clipped to 1e-7. Dice_k = 1 - O(1e-7): loss near 0, gradient near 0.
    Case c = random_case({1, 4, 5, 6, 5}, 0.0f, 31);
    for (int64_t v = 0; v < c.shape.voxels(); ++v) {
        c.target[size_t(v)] = uint8_t(v % 5);
        c.logits[size_t(v * 5 + v % 5)] = 30.0f;
    }
    const DiceRun run = run_dice(ctx(), c);
    EXPECT_GE(run.result.loss, 0.0);
    EXPECT_LT(run.result.loss, 1e-6);
    for (double dice : run.result.dice) EXPECT_NEAR(dice, 1.0, 1e-6);
    const ref::Dice d = ref::soft_dice(c.logits_d(), c.target, 5);
    EXPECT_NEAR(run.result.loss, d.loss, 3 * eps_q(c));
    const double g = gradient_scale(d, 1);
    for (float dx : run.dlogits) EXPECT_LE(std::fabs(dx), 1e-6 * g);
}

TEST_P(NnLoss, UniformLogitsGiveTheClosedForm) {
    // p = 1/C everywhere: I_k = N_k / C + 1e-7 (V - N_k) / C, U_k = N_k + 1e-14 (V - N_k) + V / C^2.
    Case c = random_case({1, 5, 6, 7, 6}, 0.0f, 41, 4);  // classes 4 and 5 absent
    std::fill(c.logits.begin(), c.logits.end(), 0.37f);
    const DiceRun run = run_dice(ctx(), c);
    const double classes = 6, voxels = double(c.shape.voxels());
    double mean = 0;
    for (int k = 0; k < 6; ++k) {
        const double n = double(std::count(c.target.begin(), c.target.end(), uint8_t(k)));
        const double i = n / classes + 1e-7 * (voxels - n) / classes;
        const double den = n + 1e-14 * (voxels - n) + voxels / (classes * classes);
        const double dice = 2 * i / std::max(den, 1e-3);
        EXPECT_NEAR(run.result.dice[size_t(k)], dice, 3 * eps_q(c)) << "class " << k;
        mean += dice / classes;
    }
    EXPECT_NEAR(run.result.loss, 1 - mean, 3 * eps_q(c));
    std::vector<float> expected(run.probs.size(), 1.0f / 6);
    EXPECT_TRUE(all_near(run.probs, expected, eps_q(c)));
}

TEST_P(NnLoss, ClassesAbsentFromTargetAndPrediction) {
    // Classes 3..5 appear neither in the target nor in the prediction: U_k ~ 2 V 1e-14 is below
    // 1e-3, so Dice_k = 2 I_k / 1e-3 ~ 0 and the loss is about 3/6; nothing is NaN.
    Case c = random_case({1, 4, 6, 5, 6}, 2.0f, 51, 3);
    for (int64_t v = 0; v < c.shape.voxels(); ++v) {
        c.logits[size_t(v * 6 + c.target[size_t(v)])] += 6.0f;
        for (int k = 3; k < 6; ++k) c.logits[size_t(v * 6 + k)] = -30.0f;
    }
    const DiceRun run = run_dice(ctx(), c);
    const ref::Dice d = ref::soft_dice(c.logits_d(), c.target, 6);
    for (int k = 3; k < 6; ++k) {
        EXPECT_LT(d.denominator[size_t(k)], 1e-3);
        EXPECT_LT(run.result.dice[size_t(k)], 1e-8);
    }
    EXPECT_NEAR(run.result.loss, 0.5, 0.02);
    expect_matches_reference(c, run, 1.0f);
}

TEST_P(NnLoss, RepeatsBitForBit) {
    const Case c = random_case({1, 16, 16, 17, 9}, 6.0f, 61);  // 4352 positions: 3 chunks
    const DiceRun a = run_dice(ctx(), c), b = run_dice(ctx(), c);
    EXPECT_EQ(std::memcmp(&a.result.loss, &b.result.loss, sizeof(double)), 0);
    EXPECT_EQ(a.result.dice, b.result.dice);
    EXPECT_EQ(std::memcmp(a.probs.data(), b.probs.data(), a.probs.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(a.dlogits.data(), b.dlogits.data(), a.dlogits.size() * sizeof(float)), 0);
}

// CUDA stages each block's rows through shared memory (loss.cu): 128 rows a block up to 48
// classes, fewer above (24 at 256, not a warp multiple), a last block cut short, and a grid
// that strides once positions pass 65536 blocks. Each case covers some of these.
TEST_P(NnLoss, CudaMatchesCpuBitForBit) {
    if (!on_cuda()) GTEST_SKIP() << "compares CUDA with the CPU; nothing to compare on the CPU";
    DeviceContext cpu;
    for (const Case& c : {random_case({1, 16, 16, 17, 9}, 6.0f, 71), random_case({1, 20, 20, 20, 34}, 8.0f, 72),
                          random_case({1, 5, 7, 11, 256}, 12.0f, 73), random_case({1, 3, 5, 9, 100}, 10.0f, 74)}) {
        SCOPED_TRACE(c.shape.str());
        const DiceRun gpu = run_dice(ctx(), c, 0.5f), host = run_dice(cpu, c, 0.5f);
        EXPECT_EQ(std::memcmp(&gpu.result.loss, &host.result.loss, sizeof(double)), 0);
        EXPECT_EQ(gpu.result.dice, host.result.dice);
        EXPECT_TRUE(all_near(gpu.probs, host.probs, 0.0));
        EXPECT_TRUE(all_near(gpu.dlogits, host.dlogits, 0.0));

        auto wl2_gradient = [&](DeviceContext& on) {
            Buffer<float> logits(on, c.logits), dlogits(on, c.logits.size());
            Buffer<uint8_t> target(on, c.target), workspace(on, loss_workspace_bytes(c.shape));
            wl2_backward(on, logits.data(), target.data(), c.shape, 2.0f, dlogits.data(), workspace.data());
            return dlogits.download();
        };
        EXPECT_TRUE(all_near(wl2_gradient(ctx()), wl2_gradient(cpu), 0.0)) << "weighted L2 backward";
    }
    // Two classes over 9 M positions: 70,313 blocks of 128 rows, past the 65,536 a launch has,
    // with NaN logits (their positions' probabilities NaN) in the first and the second stride.
    const int64_t positions = 9'000'017, classes = 2;
    std::vector<float> logits(size_t(positions * classes));
    std::mt19937 rng(75);
    std::uniform_real_distribution<float> x(-5.0f, 5.0f);
    for (float& l : logits) l = x(rng);
    const std::vector<int64_t> nan_at{3, 65536 * 128 + 5, positions - 1};
    for (int64_t v : nan_at) logits[size_t(v * classes + 1)] = std::numeric_limits<float>::quiet_NaN();
    auto probabilities = [&](DeviceContext& on) {
        Buffer<float> in(on, logits), out(on, logits.size());
        softmax_forward(on, in.data(), positions, classes, out.data());
        return out.download();
    };
    const std::vector<float> gpu = probabilities(ctx()), host = probabilities(cpu);
    EXPECT_EQ(std::memcmp(gpu.data(), host.data(), gpu.size() * sizeof(float)), 0) << "softmax over 9 M positions";
    for (int64_t v : nan_at) EXPECT_TRUE(std::isnan(gpu[size_t(v * classes)])) << "position " << v;
}

TEST_P(NnLoss, NonFiniteLogitGivesNanLoss) {
    Case c = random_case({1, 3, 3, 3, 4}, 2.0f, 81);
    c.logits[17] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_TRUE(std::isnan(run_dice(ctx(), c).result.loss));
    c.logits[17] = std::numeric_limits<float>::infinity();
    EXPECT_TRUE(std::isnan(run_dice(ctx(), c).result.loss));
}

TEST_P(NnLoss, RejectsBadArguments) {
    const Case c = random_case({1, 2, 2, 2, 3}, 1.0f, 91);
    Buffer<float> logits(ctx(), c.logits), probs(ctx(), c.logits.size());
    Buffer<uint8_t> target(ctx(), c.target), workspace(ctx(), loss_workspace_bytes(c.shape));
    EXPECT_THROW(softmax_dice_forward(ctx(), logits.data(), target.data(), c.shape, probs.data(), nullptr), Error);
    EXPECT_THROW(softmax_dice_forward(ctx(), logits.data(), nullptr, c.shape, probs.data(), workspace.data()), Error);
    Shape5 too_many = c.shape;
    too_many.c = 300;
    EXPECT_THROW(softmax_dice_forward(ctx(), logits.data(), target.data(), too_many, probs.data(), workspace.data()),
                 Error);
    Shape5 empty = c.shape;
    empty.d = 0;
    EXPECT_THROW(wl2_forward(ctx(), logits.data(), target.data(), empty, workspace.data()), Error);
}

// The CPU's softmax runs 16 positions at a time across the vector lanes: bit for bit the
// shared per-position body (which CUDA runs), for class counts below, at and above the lanes,
// position ranges that end inside a block, and positions with an infinite or NaN logit.
TEST(NnSoftmaxLanes, GiveTheBodysBits) {
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> logit(-30.0f, 30.0f);
    for (const int64_t classes : {1, 2, 5, 16, 34, 256}) {
        for (const int64_t positions : {1, 15, 16, 37}) {
            std::vector<float> logits(size_t(positions * classes));
            for (float& x : logits) x = logit(rng);
            if (positions > 2) {
                logits[size_t(classes)] = std::numeric_limits<float>::infinity();  // position 1
                logits[size_t(3 * classes - 1)] = std::numeric_limits<float>::quiet_NaN();  // position 2
            }
            std::vector<float> body_probs(logits.size()), lane_probs(logits.size(), -1.0f);
            const SoftmaxBody body{logits.data(), body_probs.data(), classes};
            for (int64_t v = 0; v < positions; ++v) body(v);
            softmax_positions_cpu(SoftmaxBody{logits.data(), lane_probs.data(), classes}, 0, positions);
            ASSERT_EQ(std::memcmp(lane_probs.data(), body_probs.data(), lane_probs.size() * sizeof(float)), 0)
                << classes << " classes, " << positions << " positions";
        }
    }
}

// Weighted L2: the sums are double over exact float inputs (relative error ~ V C 2^-53, we
// allow 1e-12); the gradient is 4 float roundings on top of the float coefficient (5 u relative).
TEST_P(NnLoss, WeightedL2MatchesReference) {
    const Case c = random_case({1, 12, 14, 16, 7}, 9.0f, 101);
    Buffer<float> logits(ctx(), c.logits), dlogits(ctx(), c.logits.size());
    Buffer<uint8_t> target(ctx(), c.target), workspace(ctx(), loss_workspace_bytes(c.shape));
    const std::vector<double> x = c.logits_d();
    const double want = ref::wl2(x, c.target, 7);
    const double got = wl2_forward(ctx(), logits.data(), target.data(), c.shape, workspace.data());
    EXPECT_NEAR(got, want, 1e-12 * want);
    wl2_backward(ctx(), logits.data(), target.data(), c.shape, 2.0f, dlogits.data(), workspace.data());
    const std::vector<double> grad = ref::wl2_grad(x, c.target, 7, 2.0);
    double largest = 0;
    for (double g : grad) largest = std::max(largest, std::fabs(g));
    EXPECT_TRUE(all_near(dlogits.download(), grad, 6 * u * largest));

    // The reference gradient against central differences (the loss is quadratic: the
    // truncation term vanishes, only the rounding of L, ~ 2^-52 L / h, remains).
    const Case small = random_case({1, 2, 3, 4, 3}, 9.0f, 102);
    const auto loss = [&](const std::vector<double>& y) { return ref::wl2(y, small.target, 3); };
    const double h = 1e-3;
    EXPECT_TRUE(all_near(ref::wl2_grad(small.logits_d(), small.target, 3),
                         finite_differences(small.logits_d(), loss, h), 4.5e-16 * loss(small.logits_d()) / h));
}

ISS_INSTANTIATE_BACKENDS(NnLoss);

// ---------------------------------------------------------------------------------------------

class NnAdam : public test::BackendTest {};

struct AdamRun {
    std::vector<float> params, m, v;
};

AdamRun run_adam(DeviceContext& ctx, const AdamConfig& config, const std::vector<float>& params,
                 const std::vector<std::vector<float>>& grads) {
    Buffer<float> p(ctx, params), m(ctx, std::vector<float>(params.size(), 0.0f)),
        v(ctx, std::vector<float>(params.size(), 0.0f)), g(ctx, params.size());
    for (size_t t = 0; t < grads.size(); ++t) {
        g.upload(grads[t]);
        adam_step(ctx, config, int64_t(t + 1), p.data(), g.data(), m.data(), v.data(), int64_t(params.size()));
    }
    return {p.download(), m.download(), v.download()};
}

// Gradients with |g| in [0.1, 1] and random sign, parameters in [-1, 1].
std::pair<std::vector<float>, std::vector<std::vector<float>>> adam_case(size_t count, int steps, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> mag(0.1f, 1.0f), p(-1.0f, 1.0f);
    std::bernoulli_distribution sign(0.5);
    std::vector<float> params(count);
    for (float& x : params) x = p(rng);
    std::vector<std::vector<float>> grads(static_cast<size_t>(steps), std::vector<float>(count));
    for (auto& step : grads)
        for (float& g : step) g = sign(rng) ? mag(rng) : -mag(rng);
    return {params, grads};
}

TEST_P(NnAdam, MatchesReferenceOverSteps) {
    AdamConfig config;
    config.lr = 1e-3f;
    const int steps = 12;
    const auto [params, grads] = adam_case(3000, steps, 7);
    const AdamRun got = run_adam(ctx(), config, params, grads);

    // Reference trajectory in double, and beside it the float error bound per element:
    //   dm_t = b1 dm_{t-1} + 2u |m_t|              ((1 - b1) g and the fmaf round)
    //   dv_t = b2 dv_{t-1} + 3u v_t                ((1 - b2) g, * g, fmaf)
    //   dr_t = dm_t / (sqrt v_t + e) + |r_t| (dv_t / 2v_t + 3u)   (r = m / (sqrt v + e))
    //   dp_t = dp_{t-1} + lr_t dr_t + 2u |lr_t r_t| + u |p_t|     (lr_t rounding, the fmaf)
    // and the tolerance is twice the bound (second-order terms).
    const double b1 = config.beta1, b2 = config.beta2, lr = config.lr, eps = config.epsilon;
    ref::AdamState s{std::vector<double>(params.begin(), params.end()), std::vector<double>(params.size(), 0.0),
                     std::vector<double>(params.size(), 0.0)};
    std::vector<double> dm(params.size(), 0.0), dv(params.size(), 0.0), dp(params.size(), 0.0);
    for (int t = 1; t <= steps; ++t) {
        ref::adam_step(s, std::vector<double>(grads[size_t(t - 1)].begin(), grads[size_t(t - 1)].end()), lr, b1, b2,
                       eps, t);
        const double lr_t = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
        for (size_t e = 0; e < params.size(); ++e) {
            dm[e] = b1 * dm[e] + 2 * u * std::fabs(s.m[e]);
            dv[e] = b2 * dv[e] + 3 * u * s.v[e];
            const double root = std::sqrt(s.v[e]) + eps;
            const double r = s.m[e] / root;
            const double dr = dm[e] / root + std::fabs(r) * (dv[e] / (2 * s.v[e]) + 3 * u);
            dp[e] += lr_t * dr + 2 * u * std::fabs(lr_t * r) + u * std::fabs(s.params[e]);
        }
    }
    size_t bad = 0;
    for (size_t e = 0; e < params.size(); ++e) {
        bad += !(std::fabs(got.params[e] - s.params[e]) <= 2 * dp[e]);
        bad += !(std::fabs(got.m[e] - s.m[e]) <= 2 * dm[e]);
        bad += !(std::fabs(got.v[e] - s.v[e]) <= 2 * dv[e]);
    }
    EXPECT_EQ(bad, 0u) << "elements outside the error bound (NaN counts as outside)";
    // The parameters did move (12 steps of ~lr each), so the comparison is not vacuous.
    EXPECT_GT(std::fabs(got.params[0] - params[0]), 1e-3);
}

TEST_P(NnAdam, FirstStepMovesEachParameterByLr) {
    // Step 1: m = (1 - b1) g, v = (1 - b2) g^2, lr_t = lr sqrt(1 - b2) / (1 - b1), so the update
    // is lr |g| / (|g| + eps / sqrt(1 - b2)) sign(g), Keras' epsilon on the uncorrected v: lr to
    // within 32 eps / |g| for any gradient well above eps. A gradient of 1e-6 moves by 0.24 lr
    // (by 0.91 lr with the paper's epsilon on the corrected v, PyTorch's).
    AdamConfig config;
    const std::vector<float> g = {1e-6f, 1e-4f, -3e-3f, 0.5f, -7.0f, 1e3f, -2e5f, 0.0f};
    const std::vector<float> zero(g.size(), 0.0f);
    const AdamRun got = run_adam(ctx(), config, zero, {g});
    const double eps_on_g = 1e-7 / std::sqrt(1 - 0.999);
    // In double from the float constants the step uses (0.999f is not 0.999: near eps the
    // difference shows).
    const double b1 = config.beta1, b2 = config.beta2;
    const double lr_t = double(config.lr) * std::sqrt(1 - b2) / (1 - b1);
    for (size_t e = 0; e < g.size(); ++e) {
        const double m = double(1.0f - config.beta1) * g[e], v = double(1.0f - config.beta2) * g[e] * g[e];
        const double want = -lr_t * m / (std::sqrt(v) + double(config.epsilon));
        // lr_t, m, v, the sqrt, + eps, / and the fmaf: 8 roundings of a value ~ lr.
        EXPECT_NEAR(got.params[e], want, 8 * u * 1e-4) << "gradient " << g[e];
        if (std::fabs(g[e]) >= 1e-4f) {
            EXPECT_NEAR(std::fabs(got.params[e]), 1e-4, 1e-4 * (eps_on_g / std::fabs(g[e]) + 8 * u));
        }
    }
    EXPECT_NEAR(std::fabs(got.params[0]), 0.24e-4, 0.01e-4) << "Keras' epsilon";
}

TEST_P(NnAdam, RepeatsBitForBit) {
    const auto [params, grads] = adam_case(5000, 5, 9);
    const AdamRun a = run_adam(ctx(), AdamConfig{}, params, grads), b = run_adam(ctx(), AdamConfig{}, params, grads);
    EXPECT_EQ(std::memcmp(a.params.data(), b.params.data(), a.params.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(a.m.data(), b.m.data(), a.m.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(a.v.data(), b.v.data(), a.v.size() * sizeof(float)), 0);
}

TEST_P(NnAdam, CudaMatchesCpuBitForBit) {
    if (!on_cuda()) GTEST_SKIP() << "compares CUDA with the CPU; nothing to compare on the CPU";
    DeviceContext cpu;
    const auto [params, grads] = adam_case(100003, 4, 13);
    const AdamRun gpu = run_adam(ctx(), AdamConfig{}, params, grads), host = run_adam(cpu, AdamConfig{}, params, grads);
    EXPECT_TRUE(all_near(gpu.params, host.params, 0.0));
    EXPECT_TRUE(all_near(gpu.m, host.m, 0.0));
    EXPECT_TRUE(all_near(gpu.v, host.v, 0.0));
}

TEST_P(NnAdam, RejectsBadArguments) {
    Buffer<float> p(ctx(), 4), g(ctx(), 4), m(ctx(), 4), v(ctx(), 4);
    EXPECT_THROW(adam_step(ctx(), AdamConfig{}, 0, p.data(), g.data(), m.data(), v.data(), 4), Error);
    EXPECT_THROW(adam_step(ctx(), AdamConfig{}, 1, nullptr, g.data(), m.data(), v.data(), 4), Error);
    AdamConfig bad;
    bad.beta2 = 1.0f;
    EXPECT_THROW(adam_step(ctx(), bad, 1, p.data(), g.data(), m.data(), v.data(), 4), Error);
}

ISS_INSTANTIATE_BACKENDS(NnAdam);

}  // namespace
}  // namespace iss
