// The network's element-wise, pooling/upsampling/concat and batch norm kernels on every
// backend: forward and backward against the double references (tests/ref/nn), backward also
// against central finite differences of the reference forward, the NaN and tie rules,
// determinism, and on CUDA against the CPU (bit for bit except batch norm: 1e-5 relative).
// Tolerances follow the error models of docs/KERNELS.md; u = 2^-24.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/nn/batchnorm.h"
#include "kernels/nn/elementwise.h"
#include "kernels/nn/pool.h"
#include "tests/backends.h"
#include "tests/ref/nn.h"

namespace iss {
namespace {

using test::all_near;
using Vec = ref::Vec;

constexpr double kU = 1.0 / 16777216.0;  // 2^-24
const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> uniform(size_t n, float lo, float hi, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

double max_abs(const Vec& v) {
    double m = 0;
    for (double x : v) m = std::max(m, std::fabs(x));
    return m;
}

// Bit-for-bit equality (NaN payloads included), reporting the first difference.
template <class T>
::testing::AssertionResult same_bits(const std::vector<T>& got, const std::vector<T>& want) {
    if (got.size() != want.size()) return ::testing::AssertionFailure() << "sizes " << got.size() << " vs " << want.size();
    for (size_t i = 0; i < got.size(); ++i)
        if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0)
            return ::testing::AssertionFailure() << "first difference at " << i << ": " << double(got[i]) << " vs "
                                                 << double(want[i]);
    return ::testing::AssertionSuccess();
}

// Central differences of a scalar function f at x, step h per coordinate.
Vec fd_gradient(const std::function<double(const Vec&)>& f, Vec x, double h) {
    Vec g(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double keep = x[i];
        x[i] = keep + h;
        const double up = f(x);
        x[i] = keep - h;
        const double down = f(x);
        x[i] = keep;
        g[i] = (up - down) / (2 * h);
    }
    return g;
}

double dot(const Vec& a, const Vec& b) { return std::inner_product(a.begin(), a.end(), b.begin(), 0.0); }

// Distinct values (a shuffled ramp, steps of 1/64: exact in float, gaps far above any FD step).
std::vector<float> distinct(size_t n, uint32_t seed) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = float(i) / 64.0f - float(n) / 128.0f;
    std::shuffle(v.begin(), v.end(), std::mt19937(seed));
    return v;
}

// ---------------------------------------------------------------------------------------------

class NnElementwise : public test::BackendTest {};

struct EluResult {
    std::vector<float> y, dx;
};

EluResult run_elu(DeviceContext& ctx, const std::vector<float>& x, const std::vector<float>& dy, float alpha) {
    const int64_t n = int64_t(x.size());
    Buffer<float> xb(ctx, x), yb(ctx, x.size()), dyb(ctx, dy), dxb(ctx, x.size());
    elu_forward(ctx, xb.data(), yb.data(), n, alpha);
    elu_backward(ctx, yb.data(), dyb.data(), dxb.data(), n, alpha);
    return {yb.download(), dxb.download()};
}

TEST_P(NnElementwise, EluAgainstReferenceAndFiniteDifferences) {
    for (const float alpha : {1.0f, 0.3f}) {
        std::vector<float> x = uniform(1923, -12.0f, 6.0f, 11);
        const std::vector<float> specials = {0.0f, -0.0f, 1e-6f, -1e-6f, -30.0f, -87.5f, -100.0f, 50.0f, 1e-30f};
        std::copy(specials.begin(), specials.end(), x.begin());
        const std::vector<float> dy = uniform(x.size(), -1.0f, 1.0f, 12);
        const EluResult r = run_elu(ctx(), x, dy, alpha);

        // Forward: exp within 2e-7 (of a value <= 1), then (e - 1) and alpha * . rounded once each.
        EXPECT_TRUE(all_near(r.y, ref::elu(to_double(x), alpha), alpha * (2e-7 + 2 * kU)));
        // Backward: y + alpha carries y's error plus one rounding, the product one more (|dy| <= 1).
        const double tol_dx = alpha * (2e-7 + 4 * kU);
        EXPECT_TRUE(all_near(r.dx, ref::elu_backward(to_double(x), to_double(dy), alpha), tol_dx));

        // Finite differences of loss = sum dy * elu(x) (the Jacobian is diagonal, so all
        // coordinates move at once); skip |x| < 2h, where alpha != 1 has a kink.
        const double h = 1e-4;
        Vec up = to_double(x), down = to_double(x);
        for (size_t i = 0; i < x.size(); ++i) up[i] += h, down[i] -= h;
        const Vec yu = ref::elu(up, alpha), yd = ref::elu(down, alpha);
        std::vector<float> got;
        Vec fd;
        for (size_t i = 0; i < x.size(); ++i) {
            if (std::fabs(x[i]) < 2 * h) continue;
            got.push_back(r.dx[i]);
            fd.push_back(double(dy[i]) * (yu[i] - yd[i]) / (2 * h));
        }
        // Truncation h^2/6 |f'''| <= h^2 alpha; rounding of x +- h and of the difference,
        // about 2^-52 |y| / h <= 1.1e-10 for |y| <= 50.
        EXPECT_TRUE(all_near(got, fd, tol_dx + h * h * alpha + 1.1e-10));

        if (on_cuda()) {
            DeviceContext cpu;
            const EluResult c = run_elu(cpu, x, dy, alpha);
            EXPECT_TRUE(same_bits(r.y, c.y));
            EXPECT_TRUE(same_bits(r.dx, c.dx));
        }
    }
}

TEST_P(NnElementwise, EluNanPropagatesAndInPlaceWorks) {
    const std::vector<float> x = {kNaN, -1.0f, 2.0f, -0.5f};
    Buffer<float> b(ctx(), x);
    elu_forward(ctx(), b.data(), b.data(), 4, 1.0f);  // in place
    const std::vector<float> y = b.download();
    EXPECT_TRUE(std::isnan(y[0]));
    const EluResult r = run_elu(ctx(), x, {1, 1, 1, 1}, 1.0f);
    EXPECT_TRUE(same_bits(y, r.y));
    EXPECT_TRUE(std::isnan(r.dx[0]));
    EXPECT_EQ(r.dx[2], 1.0f);
}

TEST_P(NnElementwise, AddFillScaleAreExact) {
    const size_t n = 1027;
    const std::vector<float> a = uniform(n, -5, 5, 21), b = uniform(n, -1e-3f, 1e3f, 22);
    Buffer<float> ab(ctx(), a), bb(ctx(), b), fb(ctx(), n);
    add_inplace(ctx(), ab.data(), bb.data(), int64_t(n));
    const std::vector<float> sum = ab.download();
    scale_inplace(ctx(), ab.data(), int64_t(n), 0.37f);
    const std::vector<float> scaled = ab.download();
    fill(ctx(), fb.data(), int64_t(n), -2.5f);
    const std::vector<float> filled = fb.download();
    // One correctly rounded operation each: the double result rounded to float, exactly.
    for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(sum[i], float(double(a[i]) + double(b[i]))) << i;
        ASSERT_EQ(scaled[i], float(double(sum[i]) * double(0.37f))) << i;
        ASSERT_EQ(filled[i], -2.5f) << i;
    }
}

TEST_P(NnElementwise, Preconditions) {
    Buffer<float> b(ctx(), 4);
    EXPECT_THROW(elu_forward<float>(ctx(), nullptr, b.data(), 4, 1.0f), Error);
    EXPECT_THROW(elu_backward<float>(ctx(), b.data(), b.data(), nullptr, 4, 1.0f), Error);
    EXPECT_THROW(add_inplace<float>(ctx(), b.data(), nullptr, 4), Error);
    EXPECT_THROW(fill(ctx(), b.data(), -1, 0.0f), Error);
    EXPECT_THROW(scale_inplace(ctx(), nullptr, 4, 2.0f), Error);
    EXPECT_NO_THROW(fill(ctx(), nullptr, 0, 1.0f));  // an empty array has no storage
}

ISS_INSTANTIATE_BACKENDS(NnElementwise);

// ---------------------------------------------------------------------------------------------

// The stored bits of a tensor: bf16's as integers (same_bits prints the first difference).
std::vector<uint32_t> stored_bits(const std::vector<float>& v) {
    std::vector<uint32_t> bits;
    for (const float f : v) bits.push_back(float_to_bits(f));
    return bits;
}
std::vector<uint32_t> stored_bits(const std::vector<Bf16>& v) {
    std::vector<uint32_t> bits;
    for (const Bf16 b : v) bits.push_back(b.bits);
    return bits;
}

class NnPool : public test::BackendTest {};

const Shape5 kPoolShapes[] = {{2, 6, 4, 8, 5}, {1, 2, 2, 2, 1}, {1, 4, 6, 2, 3}, {1, 2, 4, 2, 24}};

Shape5 halved(const Shape5& s) { return {s.n, s.d / 2, s.h / 2, s.w / 2, s.c}; }

struct PoolResult {
    std::vector<float> y, dx;
    std::vector<uint8_t> argmax;
};

PoolResult run_maxpool(DeviceContext& ctx, const std::vector<float>& x, const std::vector<float>& dy, const Shape5& s) {
    const size_t out = size_t(halved(s).size());
    Buffer<float> xb(ctx, x), yb(ctx, out), dyb(ctx, dy), dxb(ctx, x.size());
    Buffer<uint8_t> ab(ctx, out);
    maxpool2_forward(ctx, xb.data(), s, yb.data(), ab.data());
    maxpool2_backward(ctx, dyb.data(), ab.data(), s, dxb.data());
    return {yb.download(), dxb.download(), ab.download()};
}

TEST_P(NnPool, MaxPoolAgainstReferenceAndFiniteDifferences) {
    uint32_t seed = 100;
    for (const Shape5& s : kPoolShapes) {
        SCOPED_TRACE(s.str());
        const std::vector<float> x = distinct(size_t(s.size()), ++seed);
        const std::vector<float> dy = uniform(size_t(halved(s).size()), -1, 1, ++seed);
        const PoolResult r = run_maxpool(ctx(), x, dy, s);
        std::vector<int> argmax;
        const Vec want = ref::maxpool2(to_double(x), s, &argmax);
        EXPECT_TRUE(all_near(r.y, want, 0.0));  // a selection: exact
        EXPECT_TRUE(std::equal(argmax.begin(), argmax.end(), r.argmax.begin()));
        EXPECT_TRUE(all_near(r.dx, ref::maxpool2_backward(to_double(x), to_double(dy), s), 0.0));
        // loss = sum dy * maxpool(x) is linear near x (gaps 1/64 >> h): FD exact up to rounding.
        const Vec w = to_double(dy);
        const Vec fd = fd_gradient([&](const Vec& v) { return dot(w, ref::maxpool2(v, s, nullptr)); }, to_double(x), 1e-3);
        EXPECT_TRUE(all_near(r.dx, fd, 1e-9));
        if (on_cuda()) {
            DeviceContext cpu;
            const PoolResult c = run_maxpool(cpu, x, dy, s);
            EXPECT_TRUE(same_bits(r.y, c.y));
            EXPECT_TRUE(same_bits(r.argmax, c.argmax));
            EXPECT_TRUE(same_bits(r.dx, c.dx));
        }
    }
}

TEST_P(NnPool, MaxPoolTiesAndNan) {
    // One 2x2x2 block per channel, member q at element q * C + c (N = 1, C = 5).
    const Shape5 s{1, 2, 2, 2, 5};
    std::vector<float> x(40, 0.0f);
    auto set = [&](int q, int c, float v) { x[size_t(q * 5 + c)] = v; };
    for (int q = 0; q < 8; ++q) {
        set(q, 0, 1.0f);                        // all equal: member 0 wins
        set(q, 1, q == 3 || q == 5 ? 2.0f : 1.0f);  // tie between 3 and 5: 3 wins
        set(q, 2, q == 2 ? kNaN : 9.0f);        // NaN at 2 beats the larger numbers
        set(q, 3, q == 4 || q == 6 ? kNaN : -1.0f);  // two NaNs: the first stays
        set(q, 4, q == 0 ? kNaN : 5.0f);        // NaN first: stays
    }
    const std::vector<float> dy = {1, 2, 3, 4, 5};
    const PoolResult r = run_maxpool(ctx(), x, dy, s);
    const std::vector<uint8_t> want_argmax = {0, 3, 2, 4, 0};
    EXPECT_TRUE(same_bits(r.argmax, want_argmax));
    EXPECT_EQ(r.y[0], 1.0f);
    EXPECT_EQ(r.y[1], 2.0f);
    EXPECT_TRUE(std::isnan(r.y[2]) && std::isnan(r.y[3]) && std::isnan(r.y[4]));
    for (int q = 0; q < 8; ++q)
        for (int c = 0; c < 5; ++c)
            EXPECT_EQ(r.dx[size_t(q * 5 + c)], q == want_argmax[size_t(c)] ? dy[size_t(c)] : 0.0f) << q << " " << c;
    std::vector<int> ref_argmax;
    ref::maxpool2(to_double(x), s, &ref_argmax);
    EXPECT_TRUE(std::equal(ref_argmax.begin(), ref_argmax.end(), want_argmax.begin()));
}

TEST_P(NnPool, Preconditions) {
    Buffer<float> x(ctx(), 64), y(ctx(), 64);
    Buffer<uint8_t> a(ctx(), 64);
    EXPECT_THROW(maxpool2_forward(ctx(), x.data(), Shape5{1, 3, 2, 2, 1}, y.data(), a.data()), Error);  // odd D
    EXPECT_THROW(maxpool2_forward(ctx(), x.data(), Shape5{1, 2, 2, 2, 1}, y.data(), nullptr), Error);
    EXPECT_THROW(maxpool2_backward(ctx(), y.data(), a.data(), Shape5{1, 2, 2, 3, 1}, x.data()), Error);  // odd W
    EXPECT_THROW(upsample2_forward(ctx(), x.data(), Shape5{1, 0, 2, 2, 1}, y.data()), Error);
    EXPECT_THROW(concat_channels_forward(ctx(), x.data(), 0, x.data(), 2, 4, y.data()), Error);
    EXPECT_THROW(concat_channels_backward<float>(ctx(), nullptr, 1, 2, 4, x.data(), y.data()), Error);
}

TEST_P(NnPool, UpsampleAgainstReferenceAndFiniteDifferences) {
    uint32_t seed = 200;
    for (const Shape5& fine : kPoolShapes) {
        const Shape5 s = halved(fine);  // the upsampling input
        SCOPED_TRACE(s.str());
        const std::vector<float> x = uniform(size_t(s.size()), -3, 3, ++seed);
        const std::vector<float> dy = uniform(size_t(fine.size()), -1, 1, ++seed);
        Buffer<float> xb(ctx(), x), yb(ctx(), dy.size()), dyb(ctx(), dy), dxb(ctx(), x.size());
        upsample2_forward(ctx(), xb.data(), s, yb.data());
        upsample2_backward(ctx(), dyb.data(), s, dxb.data());
        const std::vector<float> y = yb.download(), dx = dxb.download();
        EXPECT_TRUE(all_near(y, ref::upsample2(to_double(x), s), 0.0));  // copies: exact
        // Eight float additions in order: at most 7u * sum |dy| <= 56u for |dy| <= 1.
        EXPECT_TRUE(all_near(dx, ref::upsample2_backward(to_double(dy), s), 56 * kU));
        // Linear: FD with step 1 is exact up to double rounding.
        const Vec w = to_double(dy);
        const Vec fd = fd_gradient([&](const Vec& v) { return dot(w, ref::upsample2(v, s)); }, to_double(x), 1.0);
        EXPECT_TRUE(all_near(dx, fd, 56 * kU + 1e-12));
        if (on_cuda()) {
            DeviceContext cpu;
            Buffer<float> cx(cpu, x), cy(cpu, dy.size()), cdy(cpu, dy), cdx(cpu, x.size());
            upsample2_forward(cpu, cx.data(), s, cy.data());
            upsample2_backward(cpu, cdy.data(), s, cdx.data());
            EXPECT_TRUE(same_bits(y, cy.download()));
            EXPECT_TRUE(same_bits(dx, cdx.download()));  // same fixed order of the 8 additions
        }
    }
}

TEST_P(NnPool, ConcatAgainstReferenceAndFiniteDifferences) {
    const int64_t voxels = 2 * 3 * 5 * 7;
    for (const auto& [ca, cb] : {std::pair<int64_t, int64_t>{1, 1}, {3, 5}, {24, 48}}) {
        SCOPED_TRACE(testing::Message() << ca << "+" << cb);
        const std::vector<float> a = uniform(size_t(voxels * ca), -1, 1, 31), b = uniform(size_t(voxels * cb), -1, 1, 32);
        const std::vector<float> dy = uniform(size_t(voxels * (ca + cb)), -1, 1, 33);
        Buffer<float> ab(ctx(), a), bb(ctx(), b), yb(ctx(), dy.size()), dyb(ctx(), dy);
        Buffer<float> dab(ctx(), a.size()), dbb(ctx(), std::vector<float>(b.size(), 7.0f));
        concat_channels_forward(ctx(), ab.data(), ca, bb.data(), cb, voxels, yb.data());
        const std::vector<float> y = yb.download();
        EXPECT_TRUE(all_near(y, ref::concat(to_double(a), ca, to_double(b), cb, voxels), 0.0));
        Vec want_da, want_db;
        ref::concat_backward(to_double(dy), ca, cb, voxels, &want_da, &want_db);
        // Only da wanted: db keeps its sentinel.
        concat_channels_backward<float>(ctx(), dyb.data(), ca, cb, voxels, dab.data(), nullptr);
        EXPECT_TRUE(all_near(dab.download(), want_da, 0.0));
        EXPECT_TRUE(all_near(dbb.download(), Vec(b.size(), 7.0), 0.0));
        concat_channels_backward<float>(ctx(), dyb.data(), ca, cb, voxels, nullptr, dbb.data());
        EXPECT_TRUE(all_near(dbb.download(), want_db, 0.0));
        // FD of loss = sum dy * concat(a, b) with respect to a and to b (linear: step 1).
        const Vec w = to_double(dy), ad = to_double(a), bd = to_double(b);
        const Vec fd_a = fd_gradient([&](const Vec& v) { return dot(w, ref::concat(v, ca, bd, cb, voxels)); }, ad, 1.0);
        const Vec fd_b = fd_gradient([&](const Vec& v) { return dot(w, ref::concat(ad, ca, v, cb, voxels)); }, bd, 1.0);
        EXPECT_TRUE(all_near(dab.download(), fd_a, 1e-12));
        EXPECT_TRUE(all_near(dbb.download(), fd_b, 1e-12));
        if (on_cuda()) {
            DeviceContext cpu;
            Buffer<float> ca_b(cpu, a), cb_b(cpu, b), cy(cpu, dy.size());
            concat_channels_forward(cpu, ca_b.data(), ca, cb_b.data(), cb, voxels, cy.data());
            EXPECT_TRUE(same_bits(y, cy.download()));
        }
    }
}

// upsample_concat is concat(a, upsample2(b)) and its backward the concat split plus the
// upsample's sum, bit for bit (the same selections, the same order of the sum), in fp32 and bf16.
template <class T>
void expect_upsample_concat_is_the_composition(DeviceContext& ctx) {
    const Shape5 fine{2, 4, 6, 8, 3}, coarse{2, 2, 3, 4, 5};
    const int64_t ca = fine.c, cb = coarse.c, voxels = fine.voxels();
    auto stored = [](const std::vector<float>& v) {
        std::vector<T> out;
        for (float e : v) out.push_back(narrow<T>(e));
        return out;
    };
    const std::vector<T> a = stored(uniform(size_t(fine.size()), -1, 1, 41));
    const std::vector<T> b = stored(uniform(size_t(coarse.size()), -1, 1, 42));
    const std::vector<T> dy = stored(uniform(size_t(voxels * (ca + cb)), -1, 1, 43));
    Buffer<T> ab(ctx, a), bb(ctx, b), dyb(ctx, dy), up(ctx, size_t(voxels * cb)), y_want(ctx, dy.size()),
        y_got(ctx, dy.size());
    upsample2_forward(ctx, bb.data(), coarse, up.data());
    concat_channels_forward(ctx, ab.data(), ca, up.data(), cb, voxels, y_want.data());
    upsample_concat_forward(ctx, ab.data(), fine, bb.data(), cb, y_got.data());
    const std::vector<T> got_y = y_got.download(), want_y = y_want.download();
    EXPECT_EQ(0, std::memcmp(got_y.data(), want_y.data(), got_y.size() * sizeof(T))) << "forward";

    Buffer<T> da_want(ctx, a.size()), dup(ctx, size_t(voxels * cb)), db_want(ctx, b.size());
    concat_channels_backward(ctx, dyb.data(), ca, cb, voxels, da_want.data(), dup.data());
    upsample2_backward(ctx, dup.data(), coarse, db_want.data());
    Buffer<T> da(ctx, a.size()), db(ctx, b.size());
    upsample_concat_backward(ctx, dyb.data(), fine, cb, da.data(), db.data());
    const std::vector<T> got_da = da.download(), want_da = da_want.download();
    const std::vector<T> got_db = db.download(), want_db = db_want.download();
    EXPECT_EQ(0, std::memcmp(got_da.data(), want_da.data(), got_da.size() * sizeof(T))) << "backward (a)";
    EXPECT_EQ(0, std::memcmp(got_db.data(), want_db.data(), got_db.size() * sizeof(T))) << "backward (b)";
    // Either gradient alone.
    Buffer<T> db_only(ctx, b.size());
    upsample_concat_backward<T>(ctx, dyb.data(), fine, cb, nullptr, db_only.data());
    const std::vector<T> got_db_only = db_only.download();
    EXPECT_EQ(0, std::memcmp(got_db_only.data(), want_db.data(), got_db.size() * sizeof(T))) << "backward (b only)";
}

TEST_P(NnPool, UpsampleConcatIsTheTwoKernelsInOne) {
    expect_upsample_concat_is_the_composition<float>(ctx());
    expect_upsample_concat_is_the_composition<Bf16>(ctx());
    Buffer<float> x(ctx(), size_t(2 * 4 * 6 * 8 * 3));
    EXPECT_THROW(upsample_concat_forward<float>(ctx(), x.data(), Shape5{2, 3, 6, 8, 3}, x.data(), 5, x.data()), Error)
        << "odd D";
}

// The kernels of the decoder's folded upsampling (pool.h), from their meaning. A fine row
// 2x + p read through tap t (offset t - 1) lands on coarse row x + floor((p + t - 1) / 2); the
// 2^3 convolution's output row x + p reads coarse rows x + p - 1 + s, so tap t belongs to its
// coarse tap s = floor((p + t - 1) / 2) - p + 1. Each folded weight is the sum of the fine
// weights whose taps belong to it; a's part is its channels as they are. The parities' sum is
// then read back at each fine voxel's own parity and coarse row. CPU and CUDA: the same bits
// (the same fp32 additions in the same order; ELU through portable_exp).
TEST_P(NnPool, FoldedUpsamplingKernelsFollowTheirDefinition) {
    const int64_t co = 3, ca = 2, cb = 5;
    const std::vector<float> w = uniform(size_t(co * 27 * (ca + cb)), -1, 1, 51);
    Buffer<float> wb(ctx(), w), w_a(ctx(), size_t(co * 27 * ca)), w_b(ctx(), size_t(co * 64 * cb));
    upsample_fold_weights(ctx(), wb.data(), co, ca, cb, w_a.data(), w_b.data());
    const std::vector<float> got_a = w_a.download(), got_b = w_b.download();
    const auto coarse_tap = [](int p, int t) { return int(std::floor((p + t - 1) / 2.0)) - p + 1; };
    Vec want_b(got_b.size(), 0.0);
    std::vector<float> want_a(got_a.size());
    for (int64_t o = 0; o < co; ++o)
        for (int t = 0; t < 27; ++t) {
            const int td = t / 9, th = t / 3 % 3, tw = t % 3;
            for (int64_t k = 0; k < ca; ++k)
                want_a[size_t((o * 27 + t) * ca + k)] = w[size_t((o * 27 + t) * (ca + cb) + k)];
            for (int q = 0; q < 8; ++q) {
                const int s = coarse_tap(q >> 2, td) * 4 + coarse_tap((q >> 1) & 1, th) * 2 + coarse_tap(q & 1, tw);
                for (int64_t k = 0; k < cb; ++k)
                    want_b[size_t(((q * co + o) * 8 + s) * cb + k)] += w[size_t((o * 27 + t) * (ca + cb) + ca + k)];
            }
        }
    EXPECT_EQ(got_a, want_a) << "a's part";
    EXPECT_TRUE(all_near(got_b, want_b, 8 * kU * 8)) << "b's part: sums of up to 8 weights in [-1, 1]";

    const Shape5 fine{2, 4, 6, 10, co};
    const Shape5 coarse{2, fine.d / 2 + 1, fine.h / 2 + 1, fine.w / 2 + 1, 8 * co};
    // A CUDA launch picks its index width from the largest tensor read: here the parities.
    const AddUpsampledParitiesBody<float> shape_only{fine.n, fine.d,  fine.h,  fine.w, fine.c,
                                                     nullptr, nullptr, nullptr, false,  0.0f};
    EXPECT_EQ(shape_only.index_extent(), coarse.size());
    const std::vector<float> a_part = uniform(size_t(fine.size()), -2, 2, 52);
    const std::vector<float> parities = uniform(size_t(coarse.size()), -2, 2, 53);
    Buffer<float> ab(ctx(), a_part), pb(ctx(), parities), yb(ctx(), a_part.size());
    Buffer<Bf16> yb16(ctx(), a_part.size());
    for (const float alpha : {0.0f, 1.0f}) {
        SCOPED_TRACE(testing::Message() << "ELU alpha " << alpha);
        add_upsampled_parities(ctx(), ab.data(), pb.data(), fine, yb.data(), alpha);
        add_upsampled_parities(ctx(), ab.data(), pb.data(), fine, yb16.data(), alpha);
        Vec want(a_part.size());
        for (int64_t n = 0; n < fine.n; ++n)
            for (int64_t z = 0; z < fine.d; ++z)
                for (int64_t r = 0; r < fine.h; ++r)
                    for (int64_t x = 0; x < fine.w; ++x)
                        for (int64_t c = 0; c < co; ++c) {
                            const int64_t f = (((n * fine.d + z) * fine.h + r) * fine.w + x) * co + c;
                            const int q = int((z % 2) * 4 + (r % 2) * 2 + x % 2);
                            const int64_t at = (((n * coarse.d + z / 2 + z % 2) * coarse.h + r / 2 + r % 2) * coarse.w +
                                                x / 2 + x % 2) *
                                                   coarse.c +
                                               q * co + c;
                            want[size_t(f)] = double(a_part[size_t(f)]) + double(parities[size_t(at)]);
                        }
        if (alpha > 0) want = ref::elu(want, alpha);
        const std::vector<float> y = yb.download();
        const std::vector<Bf16> y16 = yb16.download();
        // One rounded sum (u * 4), then ELU within alpha * (2e-7 + 2u) (elementwise.h).
        EXPECT_TRUE(all_near(y, want, 4 * kU + alpha * (2e-7 + 2 * kU)));
        std::vector<Bf16> rounded;
        for (const float v : y) rounded.push_back(round_to_bf16(v));
        EXPECT_TRUE(same_bits(stored_bits(y16), stored_bits(rounded))) << "bf16: the fp32 result rounded once";
        if (on_cuda()) {
            DeviceContext cpu;
            Buffer<float> ca_b(cpu, a_part), cp(cpu, parities), cy(cpu, a_part.size());
            add_upsampled_parities(cpu, ca_b.data(), cp.data(), fine, cy.data(), alpha);
            EXPECT_TRUE(same_bits(y, cy.download())) << "CUDA vs CPU";
        }
    }
    if (on_cuda()) {
        DeviceContext cpu;
        Buffer<float> cw(cpu, w), cwa(cpu, got_a.size()), cwb(cpu, got_b.size());
        upsample_fold_weights(cpu, cw.data(), co, ca, cb, cwa.data(), cwb.data());
        EXPECT_TRUE(same_bits(got_b, cwb.download())) << "folded weights, CUDA vs CPU";
    }
    // In place (a_part is y) in fp32, and an odd fine size refused.
    add_upsampled_parities(ctx(), ab.data(), pb.data(), fine, ab.data(), 1.0f);
    EXPECT_TRUE(same_bits(ab.download(), yb.download()));
    EXPECT_THROW(add_upsampled_parities(ctx(), ab.data(), pb.data(), Shape5{2, 3, 6, 10, co}, yb.data(), 1.0f), Error);
}

// The parities' sum on either backend gives its body's bits, element by element on the host: the
// CPU runs it row by row (pool.cpp) with one vector loop over a row's W x Co elements, so rows
// shorter and longer than a vector, and a remainder, are all here.
TEST_P(NnPool, AddUpsampledParitiesMatchesItsBodyBitForBit) {
    for (const Shape5 fine : {Shape5{2, 4, 6, 10, 3}, Shape5{1, 6, 4, 22, 5}, Shape5{1, 2, 4, 34, 24}}) {
        const Shape5 coarse{fine.n, fine.d / 2 + 1, fine.h / 2 + 1, fine.w / 2 + 1, 8 * fine.c};
        const std::vector<float> a_part = uniform(size_t(fine.size()), -2, 2, 61);
        const std::vector<float> parities = uniform(size_t(coarse.size()), -2, 2, 62);
        Buffer<float> ab(ctx(), a_part), pb(ctx(), parities), yb(ctx(), a_part.size());
        Buffer<Bf16> yb16(ctx(), a_part.size());
        for (const float alpha : {0.0f, 1.0f}) {
            SCOPED_TRACE(testing::Message() << fine.str() << ", ELU alpha " << alpha);
            add_upsampled_parities(ctx(), ab.data(), pb.data(), fine, yb.data(), alpha);
            add_upsampled_parities(ctx(), ab.data(), pb.data(), fine, yb16.data(), alpha);
            std::vector<float> want(a_part.size());
            std::vector<Bf16> want16(a_part.size());
            const bool elu = alpha > 0;
            const AddUpsampledParitiesBody<float> body{
                fine.n, fine.d, fine.h, fine.w, fine.c, a_part.data(), parities.data(), want.data(), elu, alpha};
            const AddUpsampledParitiesBody<Bf16> body16{
                fine.n, fine.d, fine.h, fine.w, fine.c, a_part.data(), parities.data(), want16.data(), elu, alpha};
            for (int64_t v = 0; v < fine.voxels(); ++v)
                for (int64_t c = 0; c < fine.c; ++c) {
                    body.at(v, c);
                    body16.at(v, c);
                }
            EXPECT_TRUE(same_bits(yb.download(), want)) << "fp32";
            EXPECT_TRUE(same_bits(stored_bits(yb16.download()), stored_bits(want16))) << "bf16";
            Buffer<float> in_place(ctx(), a_part);  // y = a_part, fp32
            add_upsampled_parities(ctx(), in_place.data(), pb.data(), fine, in_place.data(), alpha);
            EXPECT_TRUE(same_bits(in_place.download(), want)) << "fp32 in place";
        }
    }
}

ISS_INSTANTIATE_BACKENDS(NnPool);

// ---------------------------------------------------------------------------------------------

class NnBatchNorm : public test::BackendTest {};

// Odd shapes, channel counts 1, 3, 5 and 24, and one (9600 positions) that spans three chunks,
// the last one partial.
const Shape5 kBnShapes[] = {{2, 6, 4, 8, 5}, {1, 3, 5, 7, 1}, {1, 4, 4, 4, 24}, {1, 20, 20, 24, 3}, {2, 1, 1, 1, 3}};

constexpr float kEps = 1e-3f;
constexpr float kMomentum = 0.99f;

struct BnInputs {
    Shape5 shape;
    std::vector<float> x, dy, gamma, beta, running_mean, running_var;
};

BnInputs bn_inputs(const Shape5& s, uint32_t seed) {
    BnInputs in{s, {}, {}, {}, {}, {}, {}};
    const size_t n = size_t(s.size()), c = size_t(s.c);
    // Per-channel offsets (up to 4 standard deviations) and scales, so the two-pass variance
    // and the mean's rounding matter.
    const std::vector<float> offset = uniform(c, -4, 4, seed), spread = uniform(c, 0.2f, 3.0f, seed + 1);
    in.x = uniform(n, -1, 1, seed + 2);
    for (size_t e = 0; e < n; ++e) in.x[e] = offset[e % c] + spread[e % c] * in.x[e];
    in.dy = uniform(n, -1, 1, seed + 3);
    in.gamma = uniform(c, 0.5f, 1.5f, seed + 4);
    in.beta = uniform(c, -1, 1, seed + 5);
    in.running_mean = uniform(c, -1, 1, seed + 6);
    in.running_var = uniform(c, 0.5f, 2, seed + 7);
    return in;
}

struct BnResult {
    std::vector<float> y, save_mean, save_invstd, running_mean, running_var, dx, dgamma, dbeta, y_infer;
};

// Forward (training), backward, then inference with the updated running statistics.
BnResult run_bn(DeviceContext& ctx, const BnInputs& in) {
    const Shape5& s = in.shape;
    const size_t n = size_t(s.size()), c = size_t(s.c);
    Buffer<float> x(ctx, in.x), dy(ctx, in.dy), gamma(ctx, in.gamma), beta(ctx, in.beta);
    Buffer<float> rm(ctx, in.running_mean), rv(ctx, in.running_var);
    Buffer<float> y(ctx, n), mean(ctx, c), invstd(ctx, c), dx(ctx, n), dgamma(ctx, c), dbeta(ctx, c), yi(ctx, n);
    Buffer<double> ws(ctx, batchnorm_workspace_bytes(s) / sizeof(double));
    batchnorm_forward_train(ctx, x.data(), s, gamma.data(), beta.data(), kEps, kMomentum, y.data(), mean.data(),
                            invstd.data(), rm.data(), rv.data(), ws.data());
    batchnorm_backward(ctx, x.data(), dy.data(), s, gamma.data(), mean.data(), invstd.data(), dx.data(), dgamma.data(),
                       dbeta.data(), ws.data());
    batchnorm_forward_infer(ctx, x.data(), s, gamma.data(), beta.data(), rm.data(), rv.data(), kEps, yi.data());
    return {y.download(),  mean.download(), invstd.download(), rm.download(), rv.download(),
            dx.download(), dgamma.download(), dbeta.download(), yi.download()};
}

// Per-tensor relative closeness for CUDA against the CPU: |got - want| <= 1e-5 * max |want|.
::testing::AssertionResult relative_close(const std::vector<float>& got, const std::vector<float>& want) {
    return all_near(got, to_double(want), 1e-5 * max_abs(to_double(want)));
}

TEST_P(NnBatchNorm, ForwardTrainAgainstReference) {
    uint32_t seed = 300;
    for (const Shape5& s : kBnShapes) {
        SCOPED_TRACE(s.str());
        const BnInputs in = bn_inputs(s, seed += 10);
        const BnResult r = run_bn(ctx(), in);
        const Vec x = to_double(in.x), gamma = to_double(in.gamma), beta = to_double(in.beta);
        ref::BnStats st;
        const Vec want = ref::bn_train(x, s, gamma, beta, kEps, &st);
        const int64_t P = s.voxels(), C = s.c;

        // y = fmaf(x - mean_f, scale_f, beta): mean and scale rounded to float (u each), the
        // subtraction and the fmaf once each: |scale| u (|mean| + 2|x - mean|) + u |y|.
        double tol_y = 0;
        for (int64_t p = 0; p < P; ++p)
            for (int64_t c = 0; c < C; ++c) {
                const size_t e = size_t(p * C + c), k = size_t(c);
                const double scale = gamma[k] / std::sqrt(st.var[k] + kEps);
                const double dev = std::fabs(x[e] - st.mean[k]);
                tol_y = std::max(tol_y, std::fabs(scale) * kU * (std::fabs(st.mean[k]) + 2 * dev) + kU * std::fabs(want[e]));
            }
        EXPECT_TRUE(all_near(r.y, want, 1.5 * tol_y));

        // Saved statistics: double sums (error ~P 2^-53), rounded to float once.
        for (int64_t c = 0; c < C; ++c) {
            const size_t k = size_t(c);
            const double invstd = 1 / std::sqrt(st.var[k] + kEps);
            EXPECT_NEAR(r.save_mean[k], st.mean[k], kU * std::fabs(st.mean[k]) + 1e-12);
            EXPECT_NEAR(r.save_invstd[k], invstd, 1.5 * kU * invstd);
            // Running statistics with the momentum as given (0.99f) and the unbiased variance.
            const double m = double(kMomentum);
            const double rm = m * in.running_mean[k] + (1 - m) * st.mean[k];
            const double rv = m * in.running_var[k] + (1 - m) * st.var[k] * double(P) / double(P - 1);
            EXPECT_NEAR(r.running_mean[k], rm, 2 * kU * (std::fabs(in.running_mean[k]) + std::fabs(st.mean[k])));
            EXPECT_NEAR(r.running_var[k], rv, 2 * kU * std::fabs(rv));
        }
        if (on_cuda()) {
            DeviceContext cpu;
            const BnResult c = run_bn(cpu, in);
            EXPECT_TRUE(relative_close(r.y, c.y));
            EXPECT_TRUE(relative_close(r.save_mean, c.save_mean));
            EXPECT_TRUE(relative_close(r.save_invstd, c.save_invstd));
            EXPECT_TRUE(relative_close(r.running_mean, c.running_mean));
            EXPECT_TRUE(relative_close(r.running_var, c.running_var));
        }
    }
}

// The float error of the backward (see docs/KERNELS.md, batch norm). The reductions run in
// double but from the saved float mean and invstd, so x-hat there is off by at most
// dxhat = 2u (invstd |mean| + 2 |xhat|); dgamma inherits sum |dy| dxhat plus its rounding to
// float, dbeta only that rounding. a = dbeta/P and b = dgamma/P round once (b also carries
// dgamma's error / P); the element pass recomputes x-hat in float (again dxhat), forms
// t = dy - a - xhat b with two roundings, and dx = k t with k = gamma invstd_f (2u) plus the
// product's rounding.
struct BnBackwardTolerance {
    double dx = 0, dgamma = 0, dbeta = 0;
};

BnBackwardTolerance bn_backward_tolerance(const BnInputs& in, const ref::BnStats& st, const Vec& dgamma,
                                          const Vec& dbeta) {
    const Shape5& s = in.shape;
    const int64_t P = s.voxels(), C = s.c;
    BnBackwardTolerance t;
    for (int64_t c = 0; c < C; ++c) {
        const size_t k = size_t(c);
        const double invstd = 1 / std::sqrt(st.var[k] + kEps), mean = std::fabs(st.mean[k]);
        const double kk = std::fabs(in.gamma[k] * invstd), a = std::fabs(dbeta[k] / double(P)),
                     b = std::fabs(dgamma[k] / double(P));
        double sum_dy = 0, err_dgamma = 0, max_dxhat = 0;
        for (int64_t p = 0; p < P; ++p) {
            const size_t e = size_t(p * C + c);
            const double xhat = std::fabs((in.x[e] - st.mean[k]) * invstd);
            const double dxhat = 2 * kU * (invstd * mean + 2 * xhat);
            max_dxhat = std::max(max_dxhat, dxhat);
            sum_dy += std::fabs(in.dy[e]);
            err_dgamma += std::fabs(in.dy[e]) * dxhat;
        }
        err_dgamma += kU * std::fabs(dgamma[k]);
        t.dgamma = std::max(t.dgamma, err_dgamma);
        t.dbeta = std::max(t.dbeta, kU * std::fabs(dbeta[k]) + 1e-12 * sum_dy);
        const double db = kU * b + err_dgamma / double(P), da = kU * a;
        for (int64_t p = 0; p < P; ++p) {
            const size_t e = size_t(p * C + c);
            const double xhat = std::fabs((in.x[e] - st.mean[k]) * invstd);
            const double dxhat = 2 * kU * (invstd * mean + 2 * xhat);
            const double tt = std::fabs(in.dy[e]) + a + xhat * b;
            const double dt = 2 * kU * tt + b * dxhat + xhat * db + da;
            t.dx = std::max(t.dx, kk * dt + 3 * kU * kk * tt);
        }
    }
    return t;
}

TEST_P(NnBatchNorm, BackwardAgainstReference) {
    uint32_t seed = 400;
    for (const Shape5& s : kBnShapes) {
        SCOPED_TRACE(s.str());
        const BnInputs in = bn_inputs(s, seed += 10);
        const BnResult r = run_bn(ctx(), in);
        Vec dx, dgamma, dbeta;
        ref::bn_backward(to_double(in.x), to_double(in.dy), s, to_double(in.gamma), kEps, &dx, &dgamma, &dbeta);
        const BnBackwardTolerance tol = bn_backward_tolerance(in, ref::bn_stats(to_double(in.x), s), dgamma, dbeta);
        EXPECT_TRUE(all_near(r.dx, dx, 1.5 * tol.dx));
        EXPECT_TRUE(all_near(r.dgamma, dgamma, 1.5 * tol.dgamma));
        EXPECT_TRUE(all_near(r.dbeta, dbeta, 1.5 * tol.dbeta));
        if (on_cuda()) {
            DeviceContext cpu;
            const BnResult c = run_bn(cpu, in);
            EXPECT_TRUE(relative_close(r.dx, c.dx));
            EXPECT_TRUE(relative_close(r.dgamma, c.dgamma));
            EXPECT_TRUE(relative_close(r.dbeta, c.dbeta));
        }
    }
}

TEST_P(NnBatchNorm, BackwardAgainstFiniteDifferences) {
    // Small shapes: each FD coordinate is a whole forward. loss = sum w * bn_train(x) with w = dy.
    uint32_t seed = 500;
    for (const Shape5& s : {Shape5{2, 2, 3, 2, 3}, Shape5{1, 2, 2, 2, 1}, Shape5{1, 3, 1, 2, 24}}) {
        SCOPED_TRACE(s.str());
        const BnInputs in = bn_inputs(s, seed += 10);
        const BnResult r = run_bn(ctx(), in);
        const Vec x = to_double(in.x), w = to_double(in.dy), gamma = to_double(in.gamma), beta = to_double(in.beta);
        const double h = 1e-4;
        const Vec fd_x = fd_gradient([&](const Vec& v) { return dot(w, ref::bn_train(v, s, gamma, beta, kEps)); }, x, h);
        const Vec fd_g = fd_gradient([&](const Vec& v) { return dot(w, ref::bn_train(x, s, v, beta, kEps)); }, gamma, h);
        const Vec fd_b = fd_gradient([&](const Vec& v) { return dot(w, ref::bn_train(x, s, gamma, v, kEps)); }, beta, h);
        Vec dx, dgamma, dbeta;
        ref::bn_backward(x, w, s, gamma, kEps, &dx, &dgamma, &dbeta);
        // The reference's formulas against FD: truncation h^2/6 |f'''| (|f'''| of order
        // invstd^3 sum|w| <~ 1e3 here) plus rounding 2^-53 |loss| / h: 1e-5 covers both.
        const double fd_tol = 1e-5;
        EXPECT_TRUE(all_near(dx, fd_x, fd_tol));
        EXPECT_TRUE(all_near(dgamma, fd_g, fd_tol));
        EXPECT_TRUE(all_near(dbeta, fd_b, fd_tol));
        // The kernel against FD: its own error model plus the FD tolerance.
        const BnBackwardTolerance tol = bn_backward_tolerance(in, ref::bn_stats(x, s), dgamma, dbeta);
        EXPECT_TRUE(all_near(r.dx, fd_x, 1.5 * tol.dx + fd_tol));
        EXPECT_TRUE(all_near(r.dgamma, fd_g, 1.5 * tol.dgamma + fd_tol));
        EXPECT_TRUE(all_near(r.dbeta, fd_b, 1.5 * tol.dbeta + fd_tol));
    }
}

TEST_P(NnBatchNorm, InferenceUsesRunningStatistics) {
    uint32_t seed = 600;
    for (const Shape5& s : kBnShapes) {
        SCOPED_TRACE(s.str());
        const BnInputs in = bn_inputs(s, seed += 10);
        const BnResult r = run_bn(ctx(), in);  // y_infer uses the running stats after one update
        const Vec x = to_double(in.x), rm = to_double(r.running_mean), rv = to_double(r.running_var);
        const Vec want = ref::bn_infer(x, s, to_double(in.gamma), to_double(in.beta), rm, rv, kEps);
        // scale = gamma / sqrtf(rv + eps): 3 roundings (2.5u); x - rm and the fmaf once each.
        double tol = 0;
        for (size_t e = 0; e < x.size(); ++e) {
            const size_t k = e % size_t(s.c);
            const double scale = std::fabs(in.gamma[k] / std::sqrt(rv[k] + kEps));
            tol = std::max(tol, scale * kU * 3.5 * std::fabs(x[e] - rm[k]) + kU * std::fabs(want[e]));
        }
        EXPECT_TRUE(all_near(r.y_infer, want, 1.5 * tol));
        // ... and they are not the batch's: the training output differs.
        EXPECT_FALSE(all_near(r.y_infer, to_double(r.y), 1e-2));
        if (on_cuda()) {
            DeviceContext cpu;
            const BnResult c = run_bn(cpu, in);
            EXPECT_TRUE(relative_close(r.y_infer, c.y_infer));
        }
    }
}

// Either backend's element passes give their bodies' bits, element by element on the host (the
// CPU runs them in channel blocks, channels_last.h): training's normalisation from the mean it
// saved and the scale it left in the workspace, the backward's dx from the coefficients it left
// there, inference's from the running statistics.
template <class T>
void expect_bn_passes_give_their_bodies_bits(DeviceContext& ctx, const BnInputs& in) {
    const Shape5& s = in.shape;
    const size_t n = size_t(s.size()), c = size_t(s.c);
    std::vector<T> x(n), dy(n), want(n);
    for (size_t e = 0; e < n; ++e) {
        x[e] = narrow<T>(in.x[e]);
        dy[e] = narrow<T>(in.dy[e]);
    }
    Buffer<T> xb(ctx, x), dyb(ctx, dy), y(ctx, n), dx(ctx, n), yi(ctx, n);
    Buffer<float> gamma(ctx, in.gamma), beta(ctx, in.beta), rm(ctx, in.running_mean), rv(ctx, in.running_var);
    Buffer<float> mean(ctx, c), invstd(ctx, c), dgamma(ctx, c), dbeta(ctx, c);
    Buffer<double> ws(ctx, batchnorm_workspace_bytes(s) / sizeof(double));
    const auto coefficients = [&](int64_t count) {  // the scale after the forward; k, a, b after the backward
        std::vector<double> host = ws.download();
        const BnWorkspace view(host.data(), bn_chunks(s), s.c);
        return std::vector<float>(view.coef, view.coef + count * s.c);
    };
    batchnorm_forward_train(ctx, xb.data(), s, gamma.data(), beta.data(), kEps, kMomentum, y.data(), mean.data(),
                            invstd.data(), rm.data(), rv.data(), ws.data());
    const std::vector<float> scale = coefficients(1), m = mean.download(), is = invstd.download();
    for (size_t e = 0; e < n; ++e) want[e] = BnNormaliseBody<T>::value(x[e], m[e % c], scale[e % c], in.beta[e % c]);
    EXPECT_TRUE(same_bits(stored_bits(y.download()), stored_bits(want))) << "training's normalisation";

    batchnorm_backward(ctx, xb.data(), dyb.data(), s, gamma.data(), mean.data(), invstd.data(), dx.data(),
                       dgamma.data(), dbeta.data(), ws.data());
    const std::vector<float> kab = coefficients(3);
    for (size_t e = 0; e < n; ++e) {
        const size_t k = e % c;
        want[e] = BnBackwardDxBody<T>::value(x[e], dy[e], m[k], is[k], kab[k], kab[c + k], kab[2 * c + k]);
    }
    EXPECT_TRUE(same_bits(stored_bits(dx.download()), stored_bits(want))) << "the backward's dx";

    const std::vector<float> rmh = rm.download(), rvh = rv.download();
    batchnorm_forward_infer(ctx, xb.data(), s, gamma.data(), beta.data(), rm.data(), rv.data(), kEps, yi.data());
    for (size_t e = 0; e < n; ++e) {
        const size_t k = e % c;
        want[e] = BnNormaliseBody<T>::value(x[e], rmh[k], BnInferBody<T>::scale_of(in.gamma[k], rvh[k], kEps),
                                            in.beta[k]);
    }
    EXPECT_TRUE(same_bits(stored_bits(yi.download()), stored_bits(want))) << "inference";
}

TEST_P(NnBatchNorm, ElementPassesGiveTheirBodiesBits) {
    uint32_t seed = 650;
    // kBnShapes, and shapes whose last channel block (channels_last.h: whole periods of
    // lcm(C, 32), about 1024 elements) is cut short after full ones: C = 24 (blocks of 40
    // voxels), 34 (one period, 16 voxels), 48 (20), 5 (odd: 192) and 33 (one period longer
    // than 1024 elements, 32 voxels).
    std::vector<Shape5> shapes(std::begin(kBnShapes), std::end(kBnShapes));
    for (const Shape5 s : {Shape5{1, 3, 5, 9, 24}, Shape5{1, 2, 3, 7, 34}, Shape5{2, 3, 3, 5, 48},
                           Shape5{1, 7, 9, 11, 5}, Shape5{1, 3, 5, 11, 33}})
        shapes.push_back(s);
    for (const Shape5& s : shapes) {
        SCOPED_TRACE(s.str());
        const BnInputs in = bn_inputs(s, seed += 10);
        {
            SCOPED_TRACE("fp32");
            expect_bn_passes_give_their_bodies_bits<float>(ctx(), in);
        }
        {
            SCOPED_TRACE("bf16");
            expect_bn_passes_give_their_bodies_bits<Bf16>(ctx(), in);
        }
    }
}

TEST_P(NnBatchNorm, DeterministicAcrossRunsAndThreadCounts) {
    const BnInputs in = bn_inputs(Shape5{1, 20, 20, 24, 3}, 700);
    const BnResult a = run_bn(ctx(), in);
    const BnResult b = run_bn(ctx(), in);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);  // on the CPU the partition must not depend on the thread count
    const BnResult c = run_bn(ctx(), in);
    omp_set_num_threads(threads);
    for (const BnResult* other : {&b, &c}) {
        EXPECT_TRUE(same_bits(a.y, other->y));
        EXPECT_TRUE(same_bits(a.save_mean, other->save_mean));
        EXPECT_TRUE(same_bits(a.save_invstd, other->save_invstd));
        EXPECT_TRUE(same_bits(a.running_mean, other->running_mean));
        EXPECT_TRUE(same_bits(a.running_var, other->running_var));
        EXPECT_TRUE(same_bits(a.dx, other->dx));
        EXPECT_TRUE(same_bits(a.dgamma, other->dgamma));
        EXPECT_TRUE(same_bits(a.dbeta, other->dbeta));
    }
}

TEST_P(NnBatchNorm, Preconditions) {
    const Shape5 one{1, 1, 1, 1, 3};
    Buffer<float> t(ctx(), 16);
    Buffer<double> ws(ctx(), 64);
    float* p = t.data();
    EXPECT_THROW(batchnorm_forward_train(ctx(), p, one, p, p, kEps, kMomentum, p, p, p, p, p, ws.data()), Error);  // P = 1
    const Shape5 s{1, 1, 1, 2, 3};
    EXPECT_THROW(batchnorm_forward_train(ctx(), p, s, p, p, kEps, kMomentum, p, p, p, p, p, nullptr), Error);
    EXPECT_THROW(batchnorm_forward_train(ctx(), p, s, p, p, 0.0f, kMomentum, p, p, p, p, p, ws.data()), Error);
    EXPECT_THROW(batchnorm_forward_infer(ctx(), p, s, p, nullptr, p, p, kEps, p), Error);
    EXPECT_THROW(batchnorm_backward(ctx(), p, p, Shape5{1, 1, 0, 2, 3}, p, p, p, p, p, p, ws.data()), Error);
    EXPECT_THROW(batchnorm_backward(ctx(), p, p, s, p, p, p, p, nullptr, p, ws.data()), Error);
}

ISS_INSTANTIATE_BACKENDS(NnBatchNorm);

}  // namespace
}  // namespace iss
