// Resampling (kernels/geometry/resample, io/resample) on every backend: exact cases checked
// exactly, general cases against the double reference (tests/ref/resample) within the error
// model of docs/KERNELS.md, and on CUDA also bit-for-bit against the CPU launcher.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>

#include "io/resample.h"
#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/geometry/resample.h"
#include "tests/backends.h"
#include "tests/ref/resample.h"

namespace iss {
namespace {

using test::all_near;

constexpr double kUnit = 1.0 / 16777216.0;  // u = 2^-24, the unit roundoff of float

Mat4 translation(double x, double y, double z) {
    Mat4 t;
    t.m[0][3] = x;
    t.m[1][3] = y;
    t.m[2][3] = z;
    return t;
}

// Rotation by angles (radians) about x, then y, then z.
Mat4 rotation(double ax, double ay, double az) {
    Mat4 rx, ry, rz;
    rx.m[1][1] = std::cos(ax), rx.m[1][2] = -std::sin(ax), rx.m[2][1] = std::sin(ax), rx.m[2][2] = std::cos(ax);
    ry.m[0][0] = std::cos(ay), ry.m[0][2] = std::sin(ay), ry.m[2][0] = -std::sin(ay), ry.m[2][2] = std::cos(ay);
    rz.m[0][0] = std::cos(az), rz.m[0][1] = -std::sin(az), rz.m[1][0] = std::sin(az), rz.m[1][1] = std::cos(az);
    return rz * ry * rx;
}

// An oblique, anisotropic scanner affine, so the tests exercise inv(src.affine) * dst.affine.
Mat4 scanner_affine() { return translation(-80, -100, -60) * rotation(0.2, -0.1, 0.3) * Mat4::scaling(1.1, 0.9, 1.3); }

Grid make_grid(int64_t nx, int64_t ny, int64_t nz, const Mat4& affine = scanner_affine()) {
    Grid g;
    g.dim = {nx, ny, nz};
    g.affine = affine;
    return g;
}

// The grid whose voxel (i, j, k) sits at source voxel t * (i, j, k).
Grid target_grid(const Grid& src, const Mat4& t, std::array<int64_t, 3> dim) {
    Grid g;
    g.dim = dim;
    g.affine = src.affine * t;
    return g;
}

Image random_image(const Grid& g, int64_t frames, uint32_t seed, bool integers = false) {
    Image img(g, frames);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-50.0f, 250.0f);
    for (float& v : img.data) v = integers ? std::round(dist(rng)) : dist(rng);
    return img;
}

// The error model of docs/KERNELS.md: the position error per axis r is at most
// 4u * S_r + u (S_r = sum_c |T_rc| * max index_c + |T_r3|: the float rounding of T and three
// fmaf roundings, plus the rounding of the cell weight for p in (-0.5, 0)); trilinear values
// move by at most R (the value range, fill included) per voxel of position error; the three
// levels of lerps add at most 3u(R + M) (M the largest magnitude). 1.25 covers second-order terms.
double linear_tolerance(const Mat4& t, const std::array<int64_t, 3>& dst_dim, const Image& src, OutOfBounds oob,
                        float fill) {
    float lo = *std::min_element(src.data.begin(), src.data.end());
    float hi = *std::max_element(src.data.begin(), src.data.end());
    if (oob == OutOfBounds::fill) lo = std::min(lo, fill), hi = std::max(hi, fill);
    const double range = double(hi) - lo, magnitude = std::max(std::fabs(double(lo)), std::fabs(double(hi)));
    double position = 0;
    for (int r = 0; r < 3; ++r) {
        double s = std::fabs(t.m[r][3]);
        for (int c = 0; c < 3; ++c) s += std::fabs(t.m[r][c]) * double(dst_dim[c] - 1);
        position += 4 * kUnit * s + kUnit;
    }
    return 1.25 * (range * position + 3 * kUnit * (range + magnitude));
}

// Nearest may differ from the double reference only where some axis of the exact position is
// within the position error of a rounding tie (frac = 0.5).
bool near_a_tie(const Mat4& t, const std::array<int64_t, 3>& dst_dim, int64_t index) {
    const int64_t i = index % dst_dim[0], j = (index / dst_dim[0]) % dst_dim[1],
                  k = (index / (dst_dim[0] * dst_dim[1])) % dst_dim[2];
    const std::array<double, 3> p = t.apply(double(i), double(j), double(k));
    for (int r = 0; r < 3; ++r) {
        double s = std::fabs(t.m[r][3]);
        for (int c = 0; c < 3; ++c) s += std::fabs(t.m[r][c]) * double(dst_dim[c] - 1);
        if (std::fabs(p[r] - std::floor(p[r]) - 0.5) <= 4 * kUnit * s + kUnit) return true;
    }
    return false;
}

template <class T>
::testing::AssertionResult nearest_matches(const std::vector<T>& got, const std::vector<T>& want, const Mat4& t,
                                           const std::array<int64_t, 3>& dst_dim) {
    if (got.size() != want.size()) return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
    int64_t ties = 0;
    for (size_t n = 0; n < got.size(); ++n) {
        if (got[n] == want[n]) continue;
        if (!near_a_tie(t, dst_dim, int64_t(n)))
            return ::testing::AssertionFailure() << "index " << n << ": got " << got[n] << ", expected " << want[n]
                                                 << " and the position is not near a rounding tie";
        ++ties;
    }
    return ::testing::AssertionSuccess() << ties << " differences, all at rounding ties";
}

class ResampleLinear : public test::BackendTest {
protected:
    // On CUDA the result must also equal the CPU launcher's bit for bit (the contract).
    void expect_same_as_cpu(const Image& got, const Image& src, const Grid& target, Interp interp, OutOfBounds oob,
                            float fill) {
        if (!on_cuda()) return;
        DeviceContext cpu;
        EXPECT_TRUE(all_near(got.data, resample_image(cpu, src, target, interp, oob, fill).data, 0.0));
    }
};
class ResampleNearest : public ResampleLinear {};
class ResampleLabels : public test::BackendTest {};
class ResampleChecks : public test::BackendTest {};

TEST_P(ResampleLinear, IdentityReproducesInputExactly) {
    const Grid g = make_grid(9, 7, 5);
    const Image src = random_image(g, 1, 1);
    for (OutOfBounds oob : {OutOfBounds::fill, OutOfBounds::clamp})
        for (Interp interp : {Interp::linear, Interp::nearest}) {
            const Image out = resample_image(ctx(), src, g, interp, oob);
            EXPECT_TRUE(out.grid.same_as(g));
            EXPECT_TRUE(all_near(out.data, src.data, 0.0));
        }
    // A NaN fill marks "outside"; on the identity nothing is outside, the last voxel included.
    const Image out = resample_image(ctx(), src, g, Interp::linear, OutOfBounds::fill,
                                     std::numeric_limits<float>::quiet_NaN());
    EXPECT_TRUE(all_near(out.data, src.data, 0.0));
}

TEST_P(ResampleLinear, IntegerShiftsFlipsAndPermutationsAreExact) {
    const Grid g = make_grid(6, 5, 4);
    const Image src = random_image(g, 1, 2);
    // Output voxel -> source voxel: permute axes, flip, shift by whole voxels (partly outside).
    Mat4 permute_flip;
    permute_flip.m[0][0] = 0, permute_flip.m[0][1] = 1;                            // x <- y
    permute_flip.m[1][1] = 0, permute_flip.m[1][2] = -1, permute_flip.m[1][3] = 3;  // y <- 3 - z
    permute_flip.m[2][2] = 0, permute_flip.m[2][0] = 1, permute_flip.m[2][3] = -2;  // z <- x - 2
    const Mat4 cases[] = {translation(2, -1, 1), translation(-3, 0, 0), Mat4::scaling(-1, 1, 1) * translation(-5, 0, 0),
                          permute_flip};
    const std::array<int64_t, 3> dim{5, 4, 6};
    for (const Mat4& t : cases)
        for (OutOfBounds oob : {OutOfBounds::fill, OutOfBounds::clamp}) {
            const bool clamp = oob == OutOfBounds::clamp;
            const Grid target = target_grid(g, t, dim);
            const Image lin = resample_image(ctx(), src, target, Interp::linear, oob, -7.0f);
            EXPECT_TRUE(all_near(lin.data, ref::resample_linear(src, t, dim, clamp, -7.0), 0.0));
            const Image near = resample_image(ctx(), src, target, Interp::nearest, oob, -7.0f);
            EXPECT_TRUE(all_near(near.data, ref::resample_nearest(src, t, dim, clamp, -7.0f), 0.0));
        }
}

TEST_P(ResampleLinear, HalfVoxelShiftAveragesNeighbours) {
    const Grid g = make_grid(6, 3, 2);
    const Image src = random_image(g, 1, 3, /*integers=*/true);  // (a + b) / 2 is exact in float
    const Grid target = target_grid(g, translation(0.5, 0, 0), g.dim);
    const Image fill = resample_image(ctx(), src, target, Interp::linear, OutOfBounds::fill, 0.0f);
    const Image clamp = resample_image(ctx(), src, target, Interp::linear, OutOfBounds::clamp);
    for (int64_t k = 0; k < 2; ++k)
        for (int64_t j = 0; j < 3; ++j) {
            for (int64_t i = 0; i + 1 < 6; ++i) {
                const float mean = (src.at(i, j, k) + src.at(i + 1, j, k)) / 2;
                EXPECT_EQ(fill.at(i, j, k), mean) << i << "," << j << "," << k;
                EXPECT_EQ(clamp.at(i, j, k), mean) << i << "," << j << "," << k;
            }
            EXPECT_EQ(fill.at(5, j, k), src.at(5, j, k) / 2);  // half of the edge, half the fill 0
            EXPECT_EQ(clamp.at(5, j, k), src.at(5, j, k));     // the edge repeated
        }
}

TEST_P(ResampleLinear, ScalingMatchesReference) {
    struct Case {
        Mat4 t;
        std::array<int64_t, 3> src_dim, dst_dim;
    };
    // Downsampling by 2 (output voxel centre between two source voxels) and upsampling by 2.
    const Case cases[] = {{translation(0.5, 0.5, 0.5) * Mat4::scaling(2, 2, 2), {12, 10, 8}, {6, 5, 4}},
                          {translation(-0.25, -0.25, -0.25) * Mat4::scaling(0.5, 0.5, 0.5), {6, 5, 4}, {12, 10, 8}},
                          {Mat4::scaling(1.7, 0.6, 1.0), {11, 7, 5}, {8, 13, 5}}};
    for (const Case& c : cases) {
        const Grid g = make_grid(c.src_dim[0], c.src_dim[1], c.src_dim[2]);
        const Image src = random_image(g, 1, 4);
        const Grid target = target_grid(g, c.t, c.dst_dim);
        for (OutOfBounds oob : {OutOfBounds::fill, OutOfBounds::clamp}) {
            const Image out = resample_image(ctx(), src, target, Interp::linear, oob, 0.0f);
            const double tol = linear_tolerance(c.t, c.dst_dim, src, oob, 0.0f);
            EXPECT_TRUE(all_near(out.data, ref::resample_linear(src, c.t, c.dst_dim, oob == OutOfBounds::clamp, 0.0), tol));
            expect_same_as_cpu(out, src, target, Interp::linear, oob, 0.0f);
        }
    }
}

TEST_P(ResampleLinear, ObliqueRotationMatchesReference) {
    const Grid g = make_grid(20, 18, 16);
    const Image src = random_image(g, 1, 5);
    // Rotation about the volume centre, with a slight zoom, onto a larger grid (so the edges
    // and the outside are exercised).
    const std::array<int64_t, 3> dim{24, 20, 18};
    const Mat4 t = translation(9.5, 8.5, 7.5) * rotation(0.35, -0.2, 0.6) * Mat4::scaling(0.9, 0.9, 0.9) *
                   translation(-11.5, -9.5, -8.5);
    const Grid target = target_grid(g, t, dim);
    for (OutOfBounds oob : {OutOfBounds::fill, OutOfBounds::clamp}) {
        const bool clamp = oob == OutOfBounds::clamp;
        const Image out = resample_image(ctx(), src, target, Interp::linear, oob, -1.0f);
        EXPECT_TRUE(all_near(out.data, ref::resample_linear(src, t, dim, clamp, -1.0), linear_tolerance(t, dim, src, oob, -1.0f)));
        expect_same_as_cpu(out, src, target, Interp::linear, oob, -1.0f);
    }
}

TEST_P(ResampleLinear, ClampAndFillDifferAtBorders) {
    const Grid g = make_grid(4, 4, 4);
    const Image src = random_image(g, 1, 6, /*integers=*/true);
    // Quarter voxel left of the volume along x: fill blends the edge with the fill value,
    // clamp repeats the edge.
    const Grid left = target_grid(g, translation(-0.25, 0, 0), g.dim);
    const Image fill = resample_image(ctx(), src, left, Interp::linear, OutOfBounds::fill, 8.0f);
    const Image clamp = resample_image(ctx(), src, left, Interp::linear, OutOfBounds::clamp);
    for (int64_t k = 0; k < 4; ++k)
        for (int64_t j = 0; j < 4; ++j) {
            EXPECT_FLOAT_EQ(fill.at(0, j, k), 0.25f * 8.0f + 0.75f * src.at(0, j, k));
            EXPECT_EQ(clamp.at(0, j, k), src.at(0, j, k));
        }
    // Entirely outside: all fill, or under clamp the nearest edge (corner voxel here).
    const Grid far = target_grid(g, translation(-10, -10, 10), g.dim);
    const Image far_fill = resample_image(ctx(), src, far, Interp::linear, OutOfBounds::fill, 8.0f);
    const Image far_clamp = resample_image(ctx(), src, far, Interp::linear, OutOfBounds::clamp);
    const Image far_near = resample_image(ctx(), src, far, Interp::nearest, OutOfBounds::clamp);
    for (size_t n = 0; n < far_fill.data.size(); ++n) {
        EXPECT_EQ(far_fill.data[n], 8.0f);
        EXPECT_EQ(far_clamp.data[n], src.at(0, 0, 3));
        EXPECT_EQ(far_near.data[n], src.at(0, 0, 3));
    }
}

TEST_P(ResampleLinear, EveryFrameUsesTheSameTransform) {
    const Grid g = make_grid(8, 7, 6);
    const Image src = random_image(g, 3, 7);
    const std::array<int64_t, 3> dim{7, 7, 5};
    const Mat4 t = translation(0.3, -0.4, 0.8) * rotation(0.1, 0.2, -0.15);
    const Grid target = target_grid(g, t, dim);
    for (Interp interp : {Interp::linear, Interp::nearest}) {
        const Image all = resample_image(ctx(), src, target, interp, OutOfBounds::clamp);
        ASSERT_EQ(all.frames, 3);
        for (int64_t f = 0; f < 3; ++f) {
            Image one(g, 1);
            std::copy(src.data.begin() + f * g.voxels(), src.data.begin() + (f + 1) * g.voxels(), one.data.begin());
            const Image alone = resample_image(ctx(), one, target, interp, OutOfBounds::clamp);
            const std::vector<float> frame(all.data.begin() + f * target.voxels(),
                                           all.data.begin() + (f + 1) * target.voxels());
            EXPECT_TRUE(all_near(frame, alone.data, 0.0)) << "frame " << f;
        }
        if (interp == Interp::linear) {
            EXPECT_TRUE(all_near(all.data, ref::resample_linear(src, t, dim, true, 0.0),
                                 linear_tolerance(t, dim, src, OutOfBounds::clamp, 0.0f)));
        }
    }
}

TEST_P(ResampleNearest, ObliqueMatchesReferenceExceptAtTies) {
    const Grid g = make_grid(16, 14, 12);
    const Image src = random_image(g, 1, 8);
    const std::array<int64_t, 3> dim{18, 15, 13};
    const Mat4 t = translation(7.5, 6.5, 5.5) * rotation(-0.4, 0.25, 0.5) * Mat4::scaling(1.2, 0.8, 1.0) *
                   translation(-8.5, -7, -6);
    const Grid target = target_grid(g, t, dim);
    for (OutOfBounds oob : {OutOfBounds::fill, OutOfBounds::clamp}) {
        const Image out = resample_image(ctx(), src, target, Interp::nearest, oob, 3.0f);
        EXPECT_TRUE(nearest_matches(out.data, ref::resample_nearest(src, t, dim, oob == OutOfBounds::clamp, 3.0f), t, dim));
        expect_same_as_cpu(out, src, target, Interp::nearest, oob, 3.0f);
    }
}

TEST_P(ResampleNearest, TiesRoundHalfUp) {
    const Grid g = make_grid(5, 1, 1);
    Image src(g);
    for (int64_t i = 0; i < 5; ++i) src.at(i, 0, 0) = float(10 * i);
    // Positions 0.5, 1.5, ...: half up picks the upper voxel; -0.5 rounds to voxel 0.
    const Image up = resample_image(ctx(), src, target_grid(g, translation(0.5, 0, 0), g.dim), Interp::nearest,
                                    OutOfBounds::fill, -1.0f);
    EXPECT_EQ(up.data, (std::vector<float>{10, 20, 30, 40, -1}));
    const Image down = resample_image(ctx(), src, target_grid(g, translation(-0.5, 0, 0), g.dim), Interp::nearest,
                                      OutOfBounds::fill, -1.0f);
    EXPECT_EQ(down.data, (std::vector<float>{0, 10, 20, 30, 40}));
}

TEST_P(ResampleLabels, ExactAndSubsetOfInputLabels) {
    const Grid g = make_grid(17, 15, 13);
    LabelMap src(g);
    const int32_t values[] = {0, 2, 3, 17, 41, 1000};
    std::mt19937 rng(9);
    for (int32_t& v : src.data) v = values[rng() % 6];
    const std::array<int64_t, 3> dim{19, 16, 14};
    const Mat4 t = translation(8, 7, 6) * rotation(0.3, 0.4, -0.2) * Mat4::scaling(0.8, 1.1, 0.9) * translation(-9, -8, -7);
    const Grid target = target_grid(g, t, dim);
    const LabelMap out = resample_labels(ctx(), src, target);
    EXPECT_TRUE(out.grid.same_as(target));
    EXPECT_TRUE(nearest_matches(out.data, ref::resample_nearest(src, t, dim, false, int32_t(0)), t, dim));
    const std::set<int32_t> allowed(std::begin(values), std::end(values));
    for (int32_t v : out.data) EXPECT_TRUE(allowed.count(v)) << "label " << v << " is not in the input";
    // The identity keeps every label where it was.
    EXPECT_EQ(resample_labels(ctx(), src, g).data, src.data);
    if (on_cuda()) {
        DeviceContext cpu;
        EXPECT_EQ(out.data, resample_labels(cpu, src, target).data);
    }
}

TEST_P(ResampleChecks, PreconditionsThrowNamingTheTensor) {
    std::vector<float> buffer_src(8, 1.0f);
    Buffer<float> src(ctx(), buffer_src), dst(ctx(), 8);
    ResampleArgs ok;
    ok.src = src.data();
    ok.dst = dst.data();
    for (int d = 0; d < 3; ++d) ok.src_dim[d] = ok.dst_dim[d] = 2;
    EXPECT_NO_THROW(resample(ctx(), ok));

    auto expect_throw = [&](ResampleArgs a, const std::string& words) {
        try {
            resample(ctx(), a);
            ADD_FAILURE() << "no exception; expected one mentioning " << words;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
        }
    };
    ResampleArgs a = ok;
    a.src = nullptr;
    expect_throw(a, "'src' is null");
    a = ok, a.dst = nullptr;
    expect_throw(a, "'dst' is null");
    a = ok, a.src_dim[1] = 0;
    expect_throw(a, "'src' dim 1");
    a = ok, a.dst_dim[2] = -3;
    expect_throw(a, "'dst' dim 2");
    a = ok, a.frames = 0;
    expect_throw(a, "frames");
    a = ok, a.xform[1][3] = std::numeric_limits<float>::infinity();
    expect_throw(a, "'xform'");
    a = ok, a.fill = std::numeric_limits<float>::infinity();
    expect_throw(a, "fill");

    Buffer<int32_t> lsrc(ctx(), std::vector<int32_t>(8, 1)), ldst(ctx(), 8);
    ResampleLabelArgs labels;
    labels.src = lsrc.data();
    labels.dst = ldst.data();
    for (int d = 0; d < 3; ++d) labels.src_dim[d] = labels.dst_dim[d] = 2;
    labels.interp = Interp::linear;
    EXPECT_THROW(resample(ctx(), labels), Error);

    // The host helper checks that the data fits the grid.
    Image bad(make_grid(3, 3, 3));
    bad.data.pop_back();
    EXPECT_THROW(resample_image(ctx(), bad, bad.grid, Interp::linear, OutOfBounds::fill), Error);
}

// Every output voxel through the per-voxel body, one after another.
template <class T>
void run_body(const ResampleArgsT<T>& a) {
    for (int64_t k = 0; k < a.dst_dim[2]; ++k)
        for (int64_t j = 0; j < a.dst_dim[1]; ++j)
            for (int64_t i = 0; i < a.dst_dim[0]; ++i) resample_voxel(a, i, j, k);
}

// The CPU launcher's path for axis-aligned transforms (taps once per index, a row at a time)
// gives the per-voxel body's bits: up- and downsampling, flips, fractional shifts, a zero scale,
// off-diagonal entries of -0, positions far outside, both policies with a NaN and a plain fill,
// two frames, labels. Every case takes that path (is_axis_aligned); an oblique one does not.
TEST(ResampleCpu, AxisAlignedTransformsGiveTheBodysBits) {
    struct Case {
        std::array<float, 3> scale, shift;
        std::array<int64_t, 3> dst;
        float off_diagonal = 0.0f;
    };
    const Case cases[] = {
        {{0.375f, 0.2f, 1.0f}, {0.0f, 0.0f, 0.0f}, {35, 41, 9}},          // up, as the resolution pass
        {{2.666f, 1.0f, 4.1f}, {0.0f, 0.0f, 0.0f}, {6, 12, 3}},           // down
        {{-1.0f, 0.5f, 0.7f}, {12.0f, -0.25f, 0.6f}, {13, 27, 14}, -0.0f},  // a flip, halves, shifts
        {{1.3f, -0.45f, 2.0f}, {-3.5f, 14.2f, -5.0f}, {16, 29, 8}},       // partly outside the source
        {{0.0f, 1.0f, -0.0f}, {3.3f, 0.0f, -0.0f}, {5, 6, 7}, -0.0f},     // zero scales
        {{1.0f, 1.0f, 1.0f}, {1e7f, -1e7f, 0.5f}, {5, 4, 3}},             // far outside
    };
    const Grid src_grid = make_grid(13, 12, 9, Mat4::identity());
    const Image src = random_image(src_grid, 2, 17);
    LabelMap labels(src_grid, 2);
    for (size_t n = 0; n < labels.data.size(); ++n) labels.data[n] = int32_t((n * 7919) % 23);
    int tested = 0;
    for (const Case& c : cases)
        for (const OutOfBounds oob : {OutOfBounds::clamp, OutOfBounds::fill})
            for (const float fill : {-7.0f, std::numeric_limits<float>::quiet_NaN()})
                for (const Interp interp : {Interp::linear, Interp::nearest}) {
                    ResampleArgs a;
                    a.src = src.data.data();
                    for (int d = 0; d < 3; ++d) {
                        a.src_dim[d] = src_grid.dim[size_t(d)];
                        a.dst_dim[d] = c.dst[size_t(d)];
                        for (int e = 0; e < 3; ++e) a.xform[d][e] = d == e ? c.scale[size_t(d)] : c.off_diagonal;
                        a.xform[d][3] = c.shift[size_t(d)];
                    }
                    a.frames = 2, a.interp = interp, a.oob = oob, a.fill = fill;
                    ASSERT_TRUE(is_axis_aligned(a));
                    const size_t n = size_t(2 * c.dst[0] * c.dst[1] * c.dst[2]);
                    std::vector<float> fast(n), body(n);
                    a.dst = fast.data();
                    resample_cpu(a);
                    a.dst = body.data();
                    run_body(a);
                    ASSERT_EQ(std::memcmp(fast.data(), body.data(), n * sizeof(float)), 0)
                        << "scale " << c.scale[0] << ", oob " << int(oob) << ", fill " << fill << ", interp "
                        << int(interp);
                    if (interp == Interp::nearest && fill == -7.0f) {
                        ResampleLabelArgs l;
                        l.src = labels.data.data();
                        for (int d = 0; d < 3; ++d) l.src_dim[d] = a.src_dim[d], l.dst_dim[d] = a.dst_dim[d];
                        std::copy(&a.xform[0][0], &a.xform[0][0] + 12, &l.xform[0][0]);
                        l.frames = 2, l.interp = Interp::nearest, l.oob = oob, l.fill = -1;
                        std::vector<int32_t> fast_labels(n), body_labels(n);
                        l.dst = fast_labels.data();
                        resample_cpu(l);
                        l.dst = body_labels.data();
                        run_body(l);
                        ASSERT_EQ(fast_labels, body_labels);
                    }
                    ++tested;
                }
    EXPECT_EQ(tested, 48);
    ResampleArgs oblique;
    oblique.xform[0][1] = 1e-30f;
    EXPECT_FALSE(is_axis_aligned(oblique));
}

ISS_INSTANTIATE_BACKENDS(ResampleLinear);
ISS_INSTANTIATE_BACKENDS(ResampleNearest);
ISS_INSTANTIATE_BACKENDS(ResampleLabels);
ISS_INSTANTIATE_BACKENDS(ResampleChecks);

}  // namespace
}  // namespace iss
