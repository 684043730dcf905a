// The generator: every stage against its double-precision reference (tests/ref/synth) on every
// backend, CUDA bit for bit against the CPU, the statistics of the random draws, and the
// whole sample's invariants.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <set>
#include <string>
#include <tuple>
#include <utility>

#include "io/orientation.h"
#include "kernels/common/error.h"
#include "kernels/common/philox.h"
#include "kernels/synth/blur.h"
#include "kernels/synth/deform.h"
#include "kernels/synth/gmm.h"
#include "kernels/synth/intensity.h"
#include "kernels/synth/sample_kernels.h"
#include "kernels/synth/svf.h"
#include "synth/config.h"
#include "synth/generator.h"
#include "synth/labels.h"
#include "synth/sample_params.h"
#include "synth/stage_profile.h"
#include "tests/backends.h"
#include "tests/ref/synth.h"
#include "tests/test_util.h"

namespace iss {
namespace {

using test::all_near;

// A small brain-like label map: nested ellipsoids, left labels at low x, right twins at high x.
LabelMap toy_label_map(int64_t nx = 40, int64_t ny = 44, int64_t nz = 36) {
    Grid grid;
    grid.dim = {nx, ny, nz};
    grid.affine = Mat4::scaling(1, 1, 1);
    LabelMap map(grid);
    const double cx = (nx - 1) / 2.0, cy = (ny - 1) / 2.0, cz = (nz - 1) / 2.0;
    for (int64_t k = 0; k < nz; ++k)
        for (int64_t j = 0; j < ny; ++j)
            for (int64_t i = 0; i < nx; ++i) {
                const double x = (i - cx) / (0.42 * nx), y = (j - cy) / (0.42 * ny), z = (k - cz) / (0.42 * nz);
                const double r = std::sqrt(x * x + y * y + z * z);
                const bool left = i < nx / 2;
                int32_t label = 0;
                if (r < 1.0) label = 24;
                if (r < 0.9) label = left ? 3 : 42;
                if (r < 0.75) label = left ? 2 : 41;
                if (r < 0.3) label = left ? 4 : 43;
                if (r < 0.5 && std::fabs(y) < 0.2 && z < -0.1) label = 16;
                if (r < 0.6 && r > 0.45 && y > 0.3) label = left ? 21 : 61;
                map.at(i, j, k) = label;
            }
    return map;
}

GeneratorConfig toy_config(const std::string& preset = "infant-t1") {
    GeneratorConfig config = preset_config(preset);
    config.output_shape = {32, 32, 32};
    config.shape_multiple = 16;
    return config;
}

std::vector<uint8_t> twins(const GeneratorConfig& config) {
    std::vector<uint8_t> twin(config.generation_labels.size());
    for (size_t g = 0; g < twin.size(); ++g)
        twin[g] = uint8_t(std::max(0, labels::index_of(config.generation_labels, labels::lr_twin(config.generation_labels[g]))));
    return twin;
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
    return std::vector<double>(v.begin(), v.end());
}

int64_t count(const std::array<int64_t, 3>& d) { return d[0] * d[1] * d[2]; }

// ---------------------------------------------------------------------------------------------

class SynthField : public test::BackendTest {};

// Resizes a coarse velocity to `half` (with the 1/2^steps scale folded in) and integrates it on
// `ctx`; returns the resized field (before squaring) and the integrated one.
std::pair<std::vector<float>, std::vector<float>> integrate_on(DeviceContext& ctx, const std::vector<float>& velocity,
                                                               const ref::Dim3& small, const ref::Dim3& half, int steps) {
    Buffer<float> src(ctx, velocity), a(ctx, size_t(count(half) * 3)), b(ctx, size_t(count(half) * 3));
    ResizeFieldArgs resize;
    resize.src = src.data();
    resize.dst = a.data();
    for (int d = 0; d < 3; ++d) {
        resize.src_dim[d] = small[size_t(d)];
        resize.dst_dim[d] = half[size_t(d)];
        resize.ratio[d] = float(double(small[size_t(d)]) / double(half[size_t(d)]));
        resize.scale[d] = std::ldexp(1.0f, -steps);
    }
    resize_field(ctx, resize);
    const std::vector<float> resized = a.download();
    float* current = a.data();
    float* other = b.data();
    for (int s = 0; s < steps; ++s) {
        square_field(ctx, SquareFieldArgs{current, other, {half[0], half[1], half[2]}});
        std::swap(current, other);
    }
    std::vector<float> integrated(resized.size());
    ctx.copy_to_host(integrated.data(), current, integrated.size() * sizeof(float));
    return {resized, integrated};
}

TEST_P(SynthField, ResizeAndIntegrationMatchReference) {
    const ref::Dim3 small{5, 6, 4}, half{20, 22, 18};
    std::vector<float> velocity(size_t(count(small) * 3));
    for (size_t n = 0; n < velocity.size(); ++n) velocity[n] = float(2.5 * std::sin(0.7 * double(n)));
    const auto [resized, integrated] = integrate_on(ctx(), velocity, small, half, 7);
    // Positions carry the float rounding of the ratio (2^-24 relative, times a slope of at
    // most 5 / 128 per voxel): far below 1e-6.
    EXPECT_TRUE(all_near(resized, ref::resize_field(to_double(velocity), small, half, 3, {1. / 128, 1. / 128, 1. / 128}), 1e-6));
    // Each squaring adds rounding of a few ulp of the displacement (at most ~6 voxels here),
    // and doubles what came before through the composition: 2^7 * 4 ulp(8) ~ 3e-4.
    const std::vector<double> want = ref::integrate(ref::resize_field(to_double(velocity), small, half, 3, {1, 1, 1}), half, 7);
    EXPECT_TRUE(all_near(integrated, want, 3e-4));
    if (on_cuda()) {
        DeviceContext cpu;
        const auto on_cpu = integrate_on(cpu, velocity, small, half, 7);
        EXPECT_EQ(resized, on_cpu.first) << "CUDA resize differs from the CPU bit pattern";
        EXPECT_EQ(integrated, on_cpu.second) << "CUDA integration differs from the CPU bit pattern";
    }
}

TEST_P(SynthField, DeformationIsInvertibleAtDefaultStrength) {
    // Infant map size, the strongest default velocity (sigma = nonlin_std = 3): the Jacobian
    // determinant of x -> A (c + phi(x)) must be positive everywhere.
    GeneratorConfig config = preset_config("infant-t1");
    const std::array<int64_t, 3> map_shape{155, 175, 149};
    for (uint32_t sample = 0; sample < 3; ++sample) {
        SampleParams p = draw_sample_params(config, 11, sample, {{map_shape}});
        ASSERT_EQ(p.velocity_shape, (std::array<int64_t, 3>{7, 7, 6}));
        ASSERT_EQ(p.integration_shape, (std::array<int64_t, 3>{77, 87, 74}));
        const float boost = p.velocity_std > 0 ? 3.0f / p.velocity_std : 0.0f;
        for (float& v : p.velocity) v *= boost;
        const auto& h = p.integration_shape;
        const std::vector<float> phi = integrate_on(ctx(), p.velocity, p.velocity_shape, h, 7).second;
        double min_det = 1e9;
        // d phi / d x on the full grid = (d field / d p) * (half / full) per column.
        for (int64_t k = 1; k + 1 < h[2]; ++k)
            for (int64_t j = 1; j + 1 < h[1]; ++j)
                for (int64_t i = 1; i + 1 < h[0]; ++i) {
                    double jac[3][3];
                    const int64_t stride[3] = {1, h[0], h[0] * h[1]};
                    const int64_t at = (k * h[1] + j) * h[0] + i;
                    for (int c = 0; c < 3; ++c)
                        for (int d = 0; d < 3; ++d) {
                            const double diff = (phi[size_t((at + stride[d]) * 3 + c)] - phi[size_t((at - stride[d]) * 3 + c)]) / 2;
                            jac[c][d] = (c == d ? 1.0 : 0.0) + diff * double(h[size_t(d)]) / double(map_shape[size_t(d)]);
                        }
                    const double det = jac[0][0] * (jac[1][1] * jac[2][2] - jac[1][2] * jac[2][1]) -
                                       jac[0][1] * (jac[1][0] * jac[2][2] - jac[1][2] * jac[2][0]) +
                                       jac[0][2] * (jac[1][0] * jac[2][1] - jac[1][1] * jac[2][0]);
                    min_det = std::min(min_det, det);
                }
        double affine_det = 0;
        for (int c = 0; c < 3; ++c)
            affine_det += p.affine[0][c] * (p.affine[1][(c + 1) % 3] * p.affine[2][(c + 2) % 3] -
                                            p.affine[1][(c + 2) % 3] * p.affine[2][(c + 1) % 3]);
        EXPECT_GT(affine_det, 0.5) << "sample " << sample;
        EXPECT_GT(min_det, 0.0) << "sample " << sample << ": the deformation folds";
    }
}

ISS_INSTANTIATE_BACKENDS(SynthField);

// ---------------------------------------------------------------------------------------------

class SynthDeform : public test::BackendTest {
protected:
    GeneratorConfig config = toy_config();
    TrainingMap map = make_training_map(toy_label_map(), config, "toy.nii.gz");

    DeformArgs base_args(Buffer<uint8_t>& map_buffer, Buffer<uint8_t>& out, const std::array<int64_t, 3>& out_dim) {
        DeformArgs a;
        a.map = map_buffer.data();
        for (int d = 0; d < 3; ++d) {
            a.map_dim[d] = map.grid.dim[size_t(d)];
            a.centre[d] = a.source_centre[d] = float(double(map.grid.dim[size_t(d)] - 1) / 2);
            a.out_dim[d] = out_dim[size_t(d)];
        }
        const std::vector<uint8_t> twin = twins(config);
        std::copy(twin.begin(), twin.end(), a.twin);
        a.out = out.data();
        return a;
    }
};

TEST_P(SynthDeform, IdentityIsTheCropAndFlipMirrorsWithTwins) {
    const std::array<int64_t, 3> out_dim{32, 32, 32};
    Buffer<uint8_t> map_buffer(ctx(), map.generation), out(ctx(), size_t(count(out_dim)));
    DeformArgs a = base_args(map_buffer, out, out_dim);
    a.offset[0] = 3, a.offset[1] = 5, a.offset[2] = 2;
    deform_labels(ctx(), a);
    const std::vector<uint8_t> got = out.download();
    const std::vector<uint8_t> twin = twins(config);
    for (int64_t k = 0; k < 32; ++k)
        for (int64_t j = 0; j < 32; ++j)
            for (int64_t i = 0; i < 32; ++i)
                ASSERT_EQ(got[size_t((k * 32 + j) * 32 + i)],
                          map.generation[size_t(((k + 2) * map.grid.dim[1] + j + 5) * map.grid.dim[0] + i + 3)]);
    a.flip_axis = 0;
    deform_labels(ctx(), a);
    const std::vector<uint8_t> flipped = out.download();
    for (int64_t k = 0; k < 32; ++k)
        for (int64_t j = 0; j < 32; ++j)
            for (int64_t i = 0; i < 32; ++i)
                ASSERT_EQ(flipped[size_t((k * 32 + j) * 32 + i)], twin[got[size_t((k * 32 + j) * 32 + 31 - i)]]);
    // Every left label became its right twin and vice versa: label 2 (idx 9) <-> 41 (idx 26).
    const int left_wm = labels::index_of(config.generation_labels, 2), right_wm = labels::index_of(config.generation_labels, 41);
    EXPECT_EQ(std::count(got.begin(), got.end(), uint8_t(left_wm)),
              std::count(flipped.begin(), flipped.end(), uint8_t(right_wm)));
}

TEST_P(SynthDeform, AffineAndFieldMatchReference) {
    config.nonlin_std = 3;
    config.translation_bounds = 4;
    const SampleParams p = draw_sample_params(config, 5, 2, {{map.grid.dim}});
    // A smooth displacement on the integration grid (values in voxels).
    const auto& h = p.integration_shape;
    std::vector<float> field(size_t(count(h) * 3));
    for (size_t n = 0; n < field.size(); ++n) field[n] = float(1.5 * std::sin(0.05 * double(n)));
    Buffer<float> field_buffer(ctx(), field);
    Buffer<uint8_t> map_buffer(ctx(), map.generation), out(ctx(), size_t(count(p.out_shape)));
    DeformArgs a = base_args(map_buffer, out, p.out_shape);
    a.field = field_buffer.data();
    ref::DeformSpec spec;
    spec.map_dim = map.grid.dim;
    spec.field_dim = h;
    spec.out_dim = p.out_shape;
    for (int d = 0; d < 3; ++d) {
        a.field_dim[d] = h[size_t(d)];
        a.field_ratio[d] = float(double(h[size_t(d)]) / double(map.grid.dim[size_t(d)]));
        a.offset[d] = spec.offset[size_t(d)] = p.crop_offset[size_t(d)];
        spec.translation[size_t(d)] = p.translation[d];
        a.source_centre[d] = float(double(map.grid.dim[size_t(d)] - 1) / 2 + p.translation[d]);
        for (int c = 0; c < 3; ++c) a.affine[d][c] = float(spec.affine[d][c] = p.affine[d][c]);
    }
    a.flip_axis = spec.flip_axis = 1;
    deform_labels(ctx(), a);
    const std::vector<uint8_t> got = out.download();
    const std::vector<double> field_d = to_double(field);
    const std::vector<uint8_t> want = ref::deform(map.generation, &field_d, spec, twins(config));
    // Float positions differ from double ones by ~1e-5 voxel, which flips a nearest-neighbour
    // choice only for positions that close to a half-voxel tie: a handful of voxels at most.
    size_t differ = 0;
    for (size_t n = 0; n < got.size(); ++n) differ += got[n] != want[n];
    EXPECT_LE(differ, got.size() / 1000) << differ << " of " << got.size() << " voxels differ from the reference";
    EXPECT_LT(differ, got.size());
}

// pad_when_smaller: along an axis where the crop is larger than the map, positions outside the
// map read background instead of the clamped edge (which painted stripes of the edge's tissue
// over the padding); the other axes still clamp.
TEST_P(SynthDeform, PaddedAxesReadBackgroundOutsideTheMap) {
    const int64_t nx = map.grid.dim[0];
    const std::array<int64_t, 3> out_dim{nx + 9, 8, 6};
    std::vector<uint8_t> edge_tissue = map.generation;  // every voxel labelled: the map fills its box
    std::replace(edge_tissue.begin(), edge_tissue.end(), uint8_t(0), uint8_t(17));
    Buffer<uint8_t> map_buffer(ctx(), edge_tissue), out(ctx(), size_t(count(out_dim)));
    DeformArgs a = base_args(map_buffer, out, out_dim);
    a.offset[0] = -4, a.offset[1] = map.grid.dim[1] - 5, a.offset[2] = 3;  // y reaches 3 past the map
    a.fill_outside[0] = true;
    a.outside = 0;
    deform_labels(ctx(), a);
    const std::vector<uint8_t> got = out.download();
    for (int64_t k = 0; k < out_dim[2]; ++k)
        for (int64_t j = 0; j < out_dim[1]; ++j)
            for (int64_t i = 0; i < out_dim[0]; ++i) {
                const int64_t x = i - 4, y = std::min(j + a.offset[1], map.grid.dim[1] - 1), z = k + 3;
                const uint8_t want =
                    x < 0 || x >= nx ? 0 : edge_tissue[size_t((z * map.grid.dim[1] + y) * nx + x)];
                ASSERT_EQ(got[size_t((k * out_dim[1] + j) * out_dim[0] + i)], want) << i << "," << j << "," << k;
            }
}

// On CUDA the deformation runs four voxels of a row a thread: crops whose rows are whole quads
// (a 32-bit store) and not (voxel by voxel: 37 and 5 wide), each flip axis, against the CPU.
TEST_P(SynthDeform, CropsOfAnyWidthGiveTheCpusBits) {
    if (!on_cuda()) GTEST_SKIP() << "compares CUDA with the CPU";
    DeviceContext cpu;
    const std::array<int64_t, 3> h{9, 8, 7};
    std::vector<float> field(size_t(count(h) * 3));
    for (size_t n = 0; n < field.size(); ++n) field[n] = float(1.5 * std::sin(0.05 * double(n)));
    auto run = [&](DeviceContext& on, const std::array<int64_t, 3>& out_dim, int flip, int fill) {
        Buffer<float> field_buffer(on, field);
        Buffer<uint8_t> map_buffer(on, map.generation), out(on, size_t(count(out_dim)));
        DeformArgs a = base_args(map_buffer, out, out_dim);
        a.field = field_buffer.data();
        const float affine[3][3] = {{0.97f, 0.12f, -0.05f}, {-0.1f, 1.08f, 0.07f}, {0.04f, -0.09f, 0.93f}};
        for (int d = 0; d < 3; ++d) {
            a.field_dim[d] = h[size_t(d)];
            a.field_ratio[d] = float(double(h[size_t(d)]) / double(map.grid.dim[size_t(d)]));
            a.offset[d] = fill == d ? -3 : d + 1;  // a padded axis starts outside the map
            a.fill_outside[d] = fill == d;
            for (int c = 0; c < 3; ++c) a.affine[d][c] = affine[d][c];
        }
        a.flip_axis = flip;
        deform_labels(on, a);
        return out.download();
    };
    for (const std::array<int64_t, 3>& out_dim : {std::array<int64_t, 3>{32, 9, 5}, {37, 13, 9}, {5, 7, 3}})
        for (const int flip : {-1, 0, 1, 2})
            for (const int fill : {-1, 0, 2}) {
                SCOPED_TRACE("crop " + std::to_string(out_dim[0]) + " wide, flip axis " + std::to_string(flip) +
                             ", fill axis " + std::to_string(fill));
                EXPECT_EQ(run(ctx(), out_dim, flip, fill), run(cpu, out_dim, flip, fill));
            }
}

ISS_INSTANTIATE_BACKENDS(SynthDeform);

// ---------------------------------------------------------------------------------------------

class SynthPaint : public test::BackendTest {};

TEST_P(SynthPaint, EachLabelHasItsDrawnMeanAndStd) {
    const int64_t n = 1 << 18;
    std::vector<uint8_t> generation(static_cast<size_t>(n));
    for (int64_t v = 0; v < n; ++v) generation[size_t(v)] = uint8_t((v * 7 / 3) % 5);
    Buffer<uint8_t> gen(ctx(), generation), target(ctx(), size_t(n));
    Buffer<float> image(ctx(), size_t(n));
    GmmArgs a;
    a.generation = gen.data();
    const float means[5] = {0, 50, 120, 200, 33};
    const float stds[5] = {0, 5, 20, 12.5f, 1};
    for (int g = 0; g < 5; ++g) {
        a.mean[g] = means[g];
        a.std[g] = stds[g];
        a.target_of[g] = uint8_t(4 - g);
    }
    a.key = RandomKey{77, 3, purpose_gmm_noise};
    a.count = n;
    a.image = image.data();
    a.target = target.data();
    paint_gmm(ctx(), a);
    const std::vector<float> got = image.download();
    const std::vector<uint8_t> targets = target.download();
    double sum[5] = {}, sum_sq[5] = {};
    int64_t num[5] = {};
    for (int64_t v = 0; v < n; ++v) {
        const int g = generation[size_t(v)];
        ASSERT_EQ(targets[size_t(v)], 4 - g);
        sum[g] += got[size_t(v)];
        sum_sq[g] += double(got[size_t(v)]) * got[size_t(v)];
        ++num[g];
    }
    for (int g = 0; g < 5; ++g) {
        const double mean = sum[g] / double(num[g]);
        const double sd = std::sqrt(std::max(0.0, sum_sq[g] / double(num[g]) - mean * mean));
        const double se = stds[g] / std::sqrt(double(num[g]));
        EXPECT_NEAR(mean, means[g], 5 * se + 1e-4) << "label " << g;
        EXPECT_NEAR(sd, stds[g], 5 * stds[g] / std::sqrt(2.0 * double(num[g])) + 1e-3) << "label " << g;
    }
    if (on_cuda()) {
        DeviceContext cpu;
        Buffer<uint8_t> gen_c(cpu, generation);
        Buffer<float> image_c(cpu, size_t(n));
        GmmArgs c = a;
        c.generation = gen_c.data();
        c.image = image_c.data();
        c.target = nullptr;
        paint_gmm(cpu, c);
        EXPECT_EQ(image_c.download(), got) << "CUDA GMM differs from the CPU bit pattern";
    }
}

TEST_P(SynthPaint, BlurMatchesReference) {
    const ref::Dim3 dim{21, 17, 13};
    std::vector<float> input(size_t(count(dim)));
    for (size_t v = 0; v < input.size(); ++v) input[v] = float((v * 37) % 101);
    Buffer<float> a(ctx(), input), b(ctx(), input.size());
    const std::array<double, 3> sigma{0.5, 0.52, 0.49};
    const int h = 1;
    const float* src = blur_separable(ctx(), a.data(), b.data(), dim, 1, sigma, {h, h, h});
    std::vector<float> got(input.size());
    ctx().copy_to_host(got.data(), src, got.size() * sizeof(float));
    // Three passes of three taps, values < 101: a few ulp of 100 (plus float taps).
    EXPECT_TRUE(all_near(got, ref::blur(to_double(input), dim, sigma, h), 1e-4));
    EXPECT_EQ(blur_taps(0.5, 1).size(), 3u);  // the infant preset's 3-tap kernel
}

// A channels-last volume blurred in one pass per axis: each channel gets exactly (bit for bit)
// the values it gets blurred alone (predict smooths its posteriors so).
TEST_P(SynthPaint, ChannelsLastBlurIsEachChannelAlone) {
    const int64_t dim[3] = {9, 7, 5}, channels = 3, voxels = 9 * 7 * 5;
    std::vector<float> interleaved(size_t(voxels * channels));
    for (size_t v = 0; v < interleaved.size(); ++v) interleaved[v] = float((v * 7919) % 97) * 0.25f;
    auto blur3 = [&](const std::vector<float>& input, int64_t c) {
        Buffer<float> a(ctx(), input), b(ctx(), input.size());
        const float* src = blur_separable(ctx(), a.data(), b.data(), {dim[0], dim[1], dim[2]}, c, {0.5, 0.5, 0.5}, {1, 1, 1});
        std::vector<float> out(input.size());
        ctx().copy_to_host(out.data(), src, out.size() * sizeof(float));
        return out;
    };
    const std::vector<float> together = blur3(interleaved, channels);
    for (int64_t c = 0; c < channels; ++c) {
        std::vector<float> alone(static_cast<size_t>(voxels));
        for (int64_t v = 0; v < voxels; ++v) alone[size_t(v)] = interleaved[size_t(v * channels + c)];
        const std::vector<float> blurred = blur3(alone, 1);
        for (int64_t v = 0; v < voxels; ++v) ASSERT_EQ(together[size_t(v * channels + c)], blurred[size_t(v)]) << c;
    }
}

ISS_INSTANTIATE_BACKENDS(SynthPaint);

// ---------------------------------------------------------------------------------------------

class SynthIntensity : public test::BackendTest {};

// The bias pass over `image` (dim) with a bias grid of bias_dim, the grid spread over the image.
BiasClipArgs bias_clip_args(float* image, uint32_t* range, const uint8_t* generation, const float* bias,
                            const ref::Dim3& dim, const ref::Dim3& bias_dim) {
    BiasClipArgs a;
    a.image = image;
    a.range = range;
    a.generation = generation;
    a.bias = bias;
    for (int d = 0; d < 3; ++d) {
        a.dim[d] = dim[size_t(d)];
        a.bias_dim[d] = bias_dim[size_t(d)];
        a.bias_ratio[d] = float(double(bias_dim[size_t(d)]) / double(dim[size_t(d)]));
    }
    return a;
}

TEST_P(SynthIntensity, BiasFieldIsTheSmoothResizedGridAndNormalisationHitsTheRange) {
    const ref::Dim3 dim{32, 40, 24}, bias_dim{4, 4, 3};
    std::vector<float> ones(size_t(count(dim)), 1.0f), grid(size_t(count(bias_dim)));
    for (size_t n = 0; n < grid.size(); ++n) grid[n] = float(0.4 * std::cos(1.3 * double(n)));
    std::vector<uint8_t> generation(ones.size(), 1);
    Buffer<float> image(ctx(), ones), bias(ctx(), grid);
    Buffer<uint8_t> gen(ctx(), generation);
    Buffer<uint32_t> range(ctx(), 2);
    BiasClipArgs a = bias_clip_args(image.data(), range.data(), gen.data(), bias.data(), dim, bias_dim);
    a.clip_max = 1e6f;
    bias_clip(ctx(), a);
    const std::vector<float> field = image.download();
    const std::vector<double> want_log = ref::resize_field(to_double(grid), bias_dim, dim, 1, {1, 1, 1});
    std::vector<double> got_log(field.size());
    for (size_t v = 0; v < field.size(); ++v) got_log[v] = std::log(double(field[v]));
    EXPECT_TRUE(all_near(got_log, want_log, 1e-6));
    // Smoothness: the trilinear field's step between neighbours is bounded by the largest grid
    // step times the grid-per-voxel ratio.
    double max_grid_step = 0, max_step = 0;
    for (int64_t k = 0; k < bias_dim[2]; ++k)
        for (int64_t j = 0; j < bias_dim[1]; ++j)
            for (int64_t i = 0; i + 1 < bias_dim[0]; ++i) {
                const size_t at = size_t((k * bias_dim[1] + j) * bias_dim[0] + i);
                max_grid_step = std::max(max_grid_step, double(std::fabs(grid[at + 1] - grid[at])));
            }
    for (int64_t v = 0; v + 1 < count(dim); ++v)
        if ((v + 1) % dim[0] != 0) max_step = std::max(max_step, std::fabs(got_log[size_t(v + 1)] - got_log[size_t(v)]));
    EXPECT_LE(max_step, max_grid_step * double(bias_dim[0]) / double(dim[0]) + 1e-6);

    // Background reset, clip, range and gamma.
    std::vector<float> values(ones.size());
    for (size_t v = 0; v < values.size(); ++v) values[v] = float(v % 400);
    std::fill(generation.begin(), generation.end(), uint8_t(1));  // same size as values
    generation[5] = 0;  // value 5 -> reset to 0
    image.upload(values);
    gen.upload(generation);
    a.bias = nullptr;
    a.reset_background = true;
    a.clip_max = 300;
    bias_clip(ctx(), a);
    const std::vector<uint32_t> bits = range.download();
    EXPECT_EQ(bits_to_float(bits[0]), 0.0f);
    EXPECT_EQ(bits_to_float(bits[1]), 300.0f);
    NormaliseGammaArgs n{image.data(), int64_t(values.size()), range.data(), 2.0f};
    normalise_gamma(ctx(), n);
    const std::vector<float> out = image.download();
    EXPECT_EQ(out[5], 0.0f);
    for (size_t v = 0; v < out.size(); ++v) {
        const double x = std::min(double(values[v]), 300.0) / 300.0;
        ASSERT_NEAR(out[v], v == 5 ? 0.0 : x * x, 1e-6) << v;
    }

    // A constant image (the range is one value) normalises to 0, not to a division by zero;
    // the range of a second image replaces the first's.
    image.upload(std::vector<float>(values.size(), 42.0f));
    a.reset_background = false;
    bias_clip(ctx(), a);
    EXPECT_EQ(range.download(), std::vector<uint32_t>(2, float_to_bits(42.0f)));
    normalise_gamma(ctx(), n);
    EXPECT_EQ(image.download(), std::vector<float>(values.size(), 0.0f));
}

// A grid larger than one CUDA voxel launch (2048 blocks of 256 threads, launch.cuh): each
// thread walks several voxels (VoxelWalk) in the blur, the bias pass and its range, which must
// give the CPU's bits; then the normalisation. Twice: odd sizes, so that the walk's steps carry
// across rows and slices and the quads of a row (kernels/common/quad.h) end short, the
// normalisation from one voxel on (misaligned: CUDA's quads take their per-value path, and a
// short last quad); and rows of whole 16-byte-aligned quads, the normalisation from voxel 0, so
// that the 128-bit loads and stores run in all three stages.
TEST_P(SynthIntensity, GridsLargerThanOneLaunchGiveTheCpusBits) {
    if (!on_cuda()) GTEST_SKIP() << "compares CUDA with the CPU";
    struct Case {
        ref::Dim3 dim;
        size_t normalise_from;
    };
    for (const Case& c : {Case{{131, 97, 61}, 1}, Case{{128, 97, 61}, 0}}) {
        const ref::Dim3 dim = c.dim;
        SCOPED_TRACE(testing::Message() << dim[0] << "x" << dim[1] << "x" << dim[2]);
        const ref::Dim3 bias_dim{5, 4, 3};
        const size_t n = size_t(dim[0] * dim[1] * dim[2]);
        std::vector<float> values(n), grid(size_t(count(bias_dim)));
        for (size_t v = 0; v < n; ++v) values[v] = float((v * 7919) % 1009) * 0.125f;
        for (size_t e = 0; e < grid.size(); ++e) grid[e] = float(0.3 * std::sin(0.7 * double(e)));
        const std::vector<uint8_t> generation(n, 1);
        DeviceContext cpu;
        auto run = [&](DeviceContext& on) {
            Buffer<float> a(on, values), b(on, n), bias(on, grid);
            Buffer<uint8_t> gen(on, generation);
            Buffer<uint32_t> range(on, 2);
            float* blurred = blur_separable(on, a.data(), b.data(), dim, 1, {0.5, 0.52, 0.49}, {1, 1, 1});
            BiasClipArgs args = bias_clip_args(blurred, range.data(), gen.data(), bias.data(), dim, bias_dim);
            args.clip_max = 100.0f;
            bias_clip(on, args);
            const std::vector<uint32_t> bias_range = range.download();
            normalise_gamma(on, NormaliseGammaArgs{blurred + c.normalise_from, int64_t(n - c.normalise_from),
                                                   range.data(), 0.7f});
            std::vector<float> image(n);
            on.copy_to_host(image.data(), blurred, n * sizeof(float));
            return std::make_pair(image, bias_range);
        };
        const auto [cuda_image, cuda_range] = run(ctx());
        const auto [cpu_image, cpu_range] = run(cpu);
        EXPECT_EQ(cuda_range, cpu_range);
        for (size_t v = 0; v < n; ++v)
            ASSERT_EQ(float_to_bits(cuda_image[v]), float_to_bits(cpu_image[v])) << "voxel " << v;
    }
}

ISS_INSTANTIATE_BACKENDS(SynthIntensity);

// ---------------------------------------------------------------------------------------------

class SynthGenerator : public test::BackendTest {};

TEST_P(SynthGenerator, SampleInvariantsAndReproducibility) {
    GeneratorConfig config = toy_config();
    std::vector<TrainingMap> maps{make_training_map(toy_label_map(), config, "toy.nii.gz")};
    Generator gen(ctx(), config, maps, 1234);
    const std::set<int32_t> allowed(config.segmentation_labels.begin(), config.segmentation_labels.end());
    std::vector<float> first_image;
    for (uint32_t sample = 0; sample < 4; ++sample) {
        gen.generate(sample);
        const Image image = gen.image_host();
        const LabelMap labels = gen.labels_host();
        ASSERT_EQ(image.grid.dim, (std::array<int64_t, 3>{32, 32, 32}));
        float lo = 1, hi = 0;
        for (float v : image.data) {
            ASSERT_TRUE(std::isfinite(v));
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        EXPECT_GE(lo, 0.0f);
        EXPECT_LE(hi, 1.0f);
        EXPECT_GT(hi, 0.5f) << "normalised image should reach near 1";
        for (int32_t l : labels.data) ASSERT_TRUE(allowed.count(l)) << "label " << l << " is not a segmentation label";
        // 24 (CSF) is painted but not segmented: it must not appear in the target.
        EXPECT_EQ(std::count(labels.data.begin(), labels.data.end(), 24), 0);
        if (sample == 0) first_image = image.data;
    }
    // Same seed and sample: the same bits; another sample: different.
    gen.generate(0);
    EXPECT_EQ(gen.image_host().data, first_image);
    Generator again(ctx(), config, maps, 1234);
    again.generate(0);
    EXPECT_EQ(again.image_host().data, first_image);
    again.generate(1);
    EXPECT_NE(again.image_host().data, first_image);

    if (on_cuda()) {
        DeviceContext cpu;
        Generator on_cpu(cpu, config, maps, 1234);
        for (uint32_t sample = 0; sample < 3; ++sample) {
            on_cpu.generate(sample);
            gen.generate(sample);
            EXPECT_EQ(gen.labels_host().data, on_cpu.labels_host().data) << "sample " << sample;
            EXPECT_EQ(gen.image_host().data, on_cpu.image_host().data) << "sample " << sample << ": CUDA and CPU differ";
        }
    }
}

// synth --profile's stage by stage run gives generate()'s bits; every stage gets a row and the
// least traffic its sample moves (the resolution step none where the sample draws none), and the
// table sums the generator's rows before the steps outside it.
TEST_P(SynthGenerator, StageProfileGivesTheSampleItTimes) {
    GeneratorConfig config = toy_config();
    std::vector<TrainingMap> maps{make_training_map(toy_label_map(), config, "toy.nii.gz")};
    Generator whole(ctx(), config, maps, 99), staged(ctx(), config, maps, 99);
    StageProfile profile;
    const uint32_t samples = 6;
    for (uint32_t sample = 0; sample < samples; ++sample) {
        whole.generate(sample);
        profile.generate(staged, sample);
        EXPECT_EQ(staged.image_host().data, whole.image_host().data) << "sample " << sample;
        EXPECT_EQ(staged.labels_host().data, whole.labels_host().data) << "sample " << sample;
    }
    profile.add("write", 0.5);
    EXPECT_EQ(profile.samples(), samples);
    const std::vector<StageProfile::Row>& rows = profile.rows();
    ASSERT_EQ(rows.size(), 1 + std::size(Generator::all_stages) + 1);
    EXPECT_EQ(rows.front().name, "draw");
    EXPECT_EQ(rows.back().name, "write");
    EXPECT_DOUBLE_EQ(profile.mean_seconds(rows.back()), 0.5 / samples);
    const double voxels = 32.0 * 32 * 32 * samples;
    for (size_t s = 0; s < std::size(Generator::all_stages); ++s) {
        const Generator::Stage stage = Generator::all_stages[s];
        const StageProfile::Row& row = rows[1 + s];
        EXPECT_EQ(row.name, Generator::stage_name(stage));
        if (stage == Generator::Stage::resolution) {
            EXPECT_EQ(row.traffic_bytes, 0) << "no random resolution, no resolution step";
        } else if (stage != Generator::Stage::velocity) {
            EXPECT_GE(row.traffic_bytes, 2 * voxels) << row.name << ": a byte in and out per voxel at least";
        }
    }
    SampleParams thick;
    thick.out_shape = {4, 5, 6};
    thick.resolution = {1, 2.5f, 1};
    EXPECT_EQ(stage_traffic_bytes(Generator::Stage::resolution, thick, 7), 4 * 5 * 6 * 8) << "a float in and out";
    thick.integration_shape = {2, 3, 4};
    EXPECT_EQ(stage_traffic_bytes(Generator::Stage::velocity, thick, 5), 0) << "no velocity field, no integration";
    thick.velocity_std = 0.5f;
    EXPECT_EQ(stage_traffic_bytes(Generator::Stage::velocity, thick, 5), 2 * 3 * 4 * 12 * (1 + 2 * 5))
        << "the resized field written once, then read and written at each of the 5 steps";
    const std::string table = profile.table("here");
    EXPECT_NE(table.find("mean of 6 (here;"), std::string::npos) << table;
    const size_t generator_line = table.find("\n  generator "), write_line = table.find("\n  write ");
    EXPECT_NE(generator_line, std::string::npos) << table;
    EXPECT_LT(generator_line, write_line) << table;
    EXPECT_NE(table.find("\n  total "), std::string::npos) << table;
}

// The map is stored LAS with 0.859 mm voxels and an offset: the sample comes out in the training
// frame (RAS), and its affine is true for the voxels written: every output voxel's world position
// falls on a map voxel (in the stored order) holding the same label.
TEST_P(SynthGenerator, OutputAffineIsTrueForTheVoxelsWritten) {
    GeneratorConfig config = toy_config();
    config.nonlin_std = 0;
    config.scaling_bounds = config.rotation_bounds = config.shearing_bounds = 0;
    LabelMap labels = toy_label_map();
    labels.grid.affine = Mat4::scaling(-0.859, 0.859, 0.859);
    labels.grid.affine.m[0][3] = 30;
    std::vector<TrainingMap> maps{make_training_map(labels, config, "toy.nii.gz")};
    EXPECT_EQ(maps[0].stored_orientation, "LAS");
    Generator gen(ctx(), config, maps, 9);
    gen.generate(0);
    const Grid grid = gen.output_grid();
    EXPECT_EQ(orientation_code(grid.affine), training_frame);
    EXPECT_NEAR(grid.voxel_size()[0], 0.859, 1e-12);
    // With no deformation the target is the map's labels, folded to the target list.
    const LabelMap target = gen.labels_host();
    const Mat4 world_to_stored = labels.grid.affine.inverse();
    const Mat4 out_to_stored = world_to_stored * grid.affine;
    for (int64_t k = 0; k < 32; ++k)
        for (int64_t j = 0; j < 32; ++j)
            for (int64_t i = 0; i < 32; ++i) {
                const auto p = out_to_stored.apply(double(i), double(j), double(k));
                const int64_t si = std::llround(p[0]), sj = std::llround(p[1]), sk = std::llround(p[2]);
                for (int d = 0; d < 3; ++d) ASSERT_NEAR(p[size_t(d)], std::round(p[size_t(d)]), 1e-6) << "off the map grid";
                ASSERT_TRUE(si >= 0 && si < labels.nx() && sj >= 0 && sj < labels.ny() && sk >= 0 && sk < labels.nz());
                const int32_t source = labels.at(si, sj, sk);
                const int32_t want = labels::index_of(config.segmentation_labels, source) >= 0 ? source : 0;
                ASSERT_EQ(target.at(i, j, k), want) << "output voxel " << i << "," << j << "," << k;
            }
}

// What each generation label is learned as: itself where it is a segmentation label, background
// elsewhere, wherever 0 stands in the list (it became the first listed label: 24 learned as 2
// with 0 last); or, given output_labels (SynthSeg's per-label list), what that says: cortex as
// white matter, CSF as background.
TEST_P(SynthGenerator, EachGenerationLabelIsLearnedAsItsTarget) {
    GeneratorConfig config = toy_config("synthseg");
    config.nonlin_std = 0;
    config.scaling_bounds = config.rotation_bounds = config.shearing_bounds = 0;
    config.flip_probability = 0;
    const LabelMap labels = toy_label_map();
    auto check = [&](const std::map<int32_t, int32_t>& learned_as) {
        std::vector<TrainingMap> maps{make_training_map(labels, config, "toy.nii.gz")};
        Generator gen(ctx(), config, maps, 3);
        gen.generate(0);
        const LabelMap target = gen.labels_host();
        const Mat4 out_to_map = labels.grid.affine.inverse() * gen.output_grid().affine;
        int64_t checked = 0;
        for (int64_t k = 0; k < 32; ++k)
            for (int64_t j = 0; j < 32; ++j)
                for (int64_t i = 0; i < 32; ++i) {
                    const auto p = out_to_map.apply(double(i), double(j), double(k));
                    const int32_t source = labels.at(std::llround(p[0]), std::llround(p[1]), std::llround(p[2]));
                    const auto it = learned_as.find(source);
                    const int32_t want = it == learned_as.end() ? 0 : it->second;
                    ASSERT_EQ(target.at(i, j, k), want) << "label " << source << " at " << i << "," << j << "," << k;
                    checked += source == 24;
                }
        EXPECT_GT(checked, 0) << "the crop holds CSF";
    };
    config.segmentation_labels = {2, 3, 41, 42, 0};
    check({{2, 2}, {3, 3}, {41, 41}, {42, 42}});
    config.segmentation_labels = {0, 2, 41};
    config.output_labels.clear();
    for (const int32_t g : config.generation_labels) {
        const int32_t as = g == 3 ? 2 : g == 42 ? 41 : g == 2 || g == 41 ? g : 0;
        config.output_labels.push_back(as);
    }
    validate_config(config, "output_labels");
    check({{2, 2}, {3, 2}, {41, 41}, {42, 41}});
}

// One anatomy stored in four voxel orders (and anisotropic voxels, so a permutation shows) gives
// the same samples bit for bit, with the flip off and on: every map is brought to the training
// frame before the generator sees it. The flip mirrors the world's left-right axis: left labels
// stay on the world's left.
TEST_P(SynthGenerator, SamplesDoNotDependOnTheStoredVoxelOrder) {
    LabelMap ras = toy_label_map();
    ras.grid.affine = Mat4::scaling(1.0, 1.2, 0.8);
    ras.grid.affine.m[1][3] = -7;
    for (const double flip : {0.0, 1.0}) {
        GeneratorConfig config = toy_config();
        config.flip_probability = flip;
        std::vector<std::vector<float>> want_images;
        std::vector<std::vector<int32_t>> want_labels;
        for (const char* code : {"RAS", "LAS", "LIA", "PSR"}) {
            const LabelMap stored = reorient(ras, code);
            ASSERT_EQ(orientation_code(stored.grid.affine), code);
            std::vector<TrainingMap> maps{make_training_map(stored, config, code)};
            EXPECT_EQ(maps[0].lr_axis, 0);
            Generator gen(ctx(), config, maps, 77);
            for (uint32_t sample = 0; sample < 2; ++sample) {
                gen.generate(sample);
                const Image image = gen.image_host();
                const LabelMap labels = gen.labels_host();
                if (std::string(code) == "RAS") {
                    want_images.push_back(image.data);
                    want_labels.push_back(labels.data);
                    // Left white matter (2) lies at lower world x than right white matter (41).
                    double left_x = 0, right_x = 0, left_n = 0, right_n = 0;
                    for (int64_t k = 0; k < labels.nz(); ++k)
                        for (int64_t j = 0; j < labels.ny(); ++j)
                            for (int64_t i = 0; i < labels.nx(); ++i) {
                                const double x = labels.grid.affine.apply(double(i), double(j), double(k))[0];
                                if (labels.at(i, j, k) == 2) left_x += x, ++left_n;
                                if (labels.at(i, j, k) == 41) right_x += x, ++right_n;
                            }
                    ASSERT_GT(left_n * right_n, 0);
                    EXPECT_LT(left_x / left_n, right_x / right_n) << "flip " << flip << ": left/right swapped";
                    continue;
                }
                EXPECT_EQ(image.data, want_images[sample]) << code << ", flip " << flip << ", sample " << sample;
                EXPECT_EQ(labels.data, want_labels[sample]) << code << ", flip " << flip << ", sample " << sample;
            }
        }
    }
}

// One thick axis per sample, every label noisy (background included), no bias or gamma: what
// the resampling leaves along that axis shows.
GeneratorConfig thick_axis_config() {
    GeneratorConfig config = toy_config("synthseg");
    config.background_reset_probability = 0;
    config.randomise_resolution = true;
    config.anisotropic_probability = 1;
    config.full_resolution_probability = 0;
    config.bias_field_std = 0;
    config.gamma_std = 0;
    return config;
}

// The generator counts a map's own voxel sizes: on 0.5 mm voxels an 8 mm slice is up to 16 of
// them, blurred with the window of a sigma of 12 (15 taps each side). A 1 mm map whose rotated
// affine was stored in float32 (column norms of 0.99999999) draws as an exact 1 mm one.
TEST_P(SynthGenerator, TheRandomResolutionCountsTheMapsVoxelSizes) {
    GeneratorConfig config = thick_axis_config();
    LabelMap half = toy_label_map();
    half.grid.affine = Mat4::scaling(0.5, 0.5, 0.5);
    Generator fine(ctx(), config, {make_training_map(half, config, "half.nii.gz")}, 21);
    float largest = 0;
    for (uint32_t sample = 0; sample < 200; ++sample) {
        const SampleParams& p = fine.draw(sample);
        for (size_t d = 0; d < 3; ++d) {
            largest = std::max(largest, p.resolution[d]);
            if (p.resolution[d] > 1) {
                EXPECT_EQ(p.blur_half_width[d], 15) << sample;
            }
        }
    }
    EXPECT_GT(largest, 14.0f);
    EXPECT_LE(largest, 16.0f);

    LabelMap rotated = toy_label_map();
    const double angle = 0.5236, c = std::cos(angle), s = std::sin(angle);
    const double rotation[3][3] = {{c, -s, 0}, {s, c, 0}, {0, 0, 1}};
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) rotated.grid.affine.m[r][k] = double(float(rotation[r][k]));
    ASSERT_NE(rotated.grid.voxel_size()[0], 1.0) << "the float affine's norm is not exactly 1";
    config.blur_range = 1.0;  // 2.5 * 0.75 * 8 = 15: a whole window, where noise in the size adds a tap
    GeneratorConfig voxels = config;
    voxels.resolution_unit = "voxel";
    Generator in_mm(ctx(), config, {make_training_map(rotated, config, "rotated.nii.gz")}, 21);
    Generator in_voxels(ctx(), voxels, {make_training_map(rotated, voxels, "rotated.nii.gz")}, 21);
    for (uint32_t sample = 0; sample < 20; ++sample) {
        const SampleParams& a = in_mm.draw(sample);
        const SampleParams& b = in_voxels.draw(sample);
        EXPECT_EQ(a.resolution, b.resolution) << sample;
        EXPECT_EQ(a.blur_half_width, b.blur_half_width) << sample;
    }
}

TEST_P(SynthGenerator, RandomAcquisitionResolutionSmoothsTheLowResolutionAxis) {
    const GeneratorConfig config = thick_axis_config();
    std::vector<TrainingMap> maps{make_training_map(toy_label_map(), config, "toy.nii.gz")};
    Generator gen(ctx(), config, maps, 21);
    int checked = 0;
    for (uint32_t sample = 0; sample < 40 && checked < 2; ++sample) {
        const SampleParams& p = gen.draw(sample);
        int low_axis = -1;
        for (int d = 0; d < 3; ++d)
            if (p.resolution[size_t(d)] > 1) {
                ASSERT_EQ(low_axis, -1) << "anisotropic: only one axis is low-resolution";
                low_axis = d;
                EXPECT_GE(p.blur_sigma[size_t(d)], 0.75f / 1.03f - 1e-6f);
                // The window of the largest sigma any sample draws (SynthSeg 2.0's), not the
                // drawn one's: 2.5 * 1.03 * 0.75 * max_anisotropic wide.
                EXPECT_EQ(p.blur_half_width[size_t(d)],
                          int(std::ceil(2.5 * config.blur_range * 0.75 * config.max_anisotropic - 1e-9)) / 2);
            } else {
                EXPECT_EQ(p.blur_half_width[size_t(d)], 1) << "a full-resolution axis keeps its 3 taps";
            }
        ASSERT_GE(low_axis, 0);
        if (p.resolution[size_t(low_axis)] < 4) continue;
        gen.generate(sample);
        const Image image = gen.image_host();
        // Resampled back up trilinearly, the image is linear between the low-resolution knots
        // (every r voxels) along the low-resolution axis: most second differences vanish there,
        // and almost none along the other axes (where the GMM noise remains).
        double flat[3] = {0, 0, 0};
        for (int d = 0; d < 3; ++d) {
            const int64_t stride = d == 0 ? 1 : (d == 1 ? image.nx() : image.nx() * image.ny());
            int64_t count = 0, zero = 0;
            for (int64_t k = 1; k + 1 < image.nz(); ++k)
                for (int64_t j = 1; j + 1 < image.ny(); ++j)
                    for (int64_t i = 1; i + 1 < image.nx(); ++i) {
                        const int64_t at = image.index(i, j, k);
                        const double d2 = image.data[size_t(at + stride)] - 2.0 * image.data[size_t(at)] +
                                          image.data[size_t(at - stride)];
                        zero += std::fabs(d2) < 1e-5;
                        ++count;
                    }
            flat[d] = double(zero) / double(count);
        }
        EXPECT_GT(flat[low_axis], 0.4) << "resolution " << p.resolution[size_t(low_axis)];
        for (int d = 0; d < 3; ++d)
            if (d != low_axis) {
                EXPECT_LT(flat[d], 0.2) << "axis " << d;
            }
        ++checked;
    }
    EXPECT_EQ(checked, 2) << "no sample with a resolution of 4+ voxels among the first 40";
}

// The low-resolution grid has int(n / r) voxels along the thick axis, as SynthSeg 2.0's
// MimicAcquisition (it had lround(n / r)): brought back up trilinearly, a line along that axis
// bends exactly where a low-resolution voxel sits, at k * n / m for k = 1 .. m - 1.
TEST_P(SynthGenerator, RandomResolutionDownsamplesToTheWholeNumberOfVoxels) {
    const GeneratorConfig config = thick_axis_config();  // every label noisy: every knot bends
    std::vector<TrainingMap> maps{make_training_map(toy_label_map(), config, "toy.nii.gz")};
    Generator gen(ctx(), config, maps, 5);
    // Where a line of n voxels bends for m knots: x with a knot in (x - 1, x + 1).
    auto bends = [](int64_t n, int64_t m) {
        std::vector<bool> at(size_t(n), false);
        for (int64_t k = 1; k < m; ++k) {
            const double b = double(k) * double(n) / double(m);
            for (int64_t x = 1; x + 1 < n; ++x)
                if (b > double(x - 1) && b < double(x + 1)) at[size_t(x)] = true;
        }
        return at;
    };
    int checked = 0;
    for (uint32_t sample = 0; sample < 200 && checked < 1; ++sample) {
        const SampleParams& p = gen.draw(sample);
        int axis = 0;
        while (p.resolution[size_t(axis)] <= 1) ++axis;
        const int64_t n = p.out_shape[size_t(axis)];
        const double r = p.resolution[size_t(axis)];
        const int64_t whole = int64_t(double(n) / r), rounded = std::lround(double(n) / r);
        if (whole == rounded || whole < 3) continue;
        gen.generate(sample);
        const Image image = gen.image_host();
        const std::vector<bool> want = bends(n, whole), old = bends(n, rounded);
        const int64_t stride = axis == 0 ? 1 : (axis == 1 ? image.nx() : image.nx() * image.ny());
        int lines = 0, as_whole = 0, as_rounded = 0;
        for (int64_t start = 0; start < image.grid.voxels(); start += 97) {  // lines through scattered voxels
            const int64_t i = start % image.nx(), j = (start / image.nx()) % image.ny();
            const int64_t k = start / (image.nx() * image.ny());
            const int64_t origin = image.index(axis == 0 ? 0 : i, axis == 1 ? 0 : j, axis == 2 ? 0 : k);
            std::vector<bool> seen(size_t(n), false);
            for (int64_t x = 1; x + 1 < n; ++x) {
                const int64_t at = origin + x * stride;
                const double d2 =
                    image.data[size_t(at + stride)] - 2.0 * image.data[size_t(at)] + image.data[size_t(at - stride)];
                seen[size_t(x)] = std::fabs(d2) >= 1e-5;
            }
            ++lines;
            as_whole += seen == want;
            as_rounded += seen == old;
        }
        EXPECT_GT(as_whole, lines / 2) << "r " << r << ", n " << n << ": " << as_whole << " of " << lines;
        EXPECT_LT(as_rounded, lines / 10) << "r " << r;
        ++checked;
    }
    EXPECT_EQ(checked, 1) << "no sample whose n / r rounds up among the first 200";
}

// What the CUDA launches from the sample block do (kernels/synth/sample_kernels.h), on the host:
// each body over its own grid or count (an empty one: the stage is skipped), in the block's
// order, and after the bias pass the image's range. The voxel bodies run with 64-bit indices,
// which CUDA uses past 2^31 elements (SynthRows runs them in 32 bits, as CUDA does below).
int64_t grid_voxels(const int64_t* grid) { return grid[0] * grid[1] * grid[2]; }

struct RunFromBlockOnHost {
    template <class Body>
    void operator()(const Body& body) const {
        const LaunchGrid g = body.grid();
        for (int64_t k = 0; k < g[2]; ++k)
            for (int64_t j = 0; j < g[1]; ++j)
                for (int64_t i = 0; i < g[0]; ++i) body(i, j, k);
    }
    void operator()(const GmmBody& body) const {
        for (int64_t e = 0; e < body.count(); ++e) body(e);
    }
    void operator()(const NormaliseGammaBody& body) const {
        for (int64_t e = 0; e < body.count(); ++e) body(e);
    }
    void operator()(const BiasClipBody& body) const {
        operator()<BiasClipBody>(body);
        uint32_t low = 0xffffffffu, high = 0;
        for (int64_t v = 0; v < grid_voxels(body.a.dim); ++v) {
            low = std::min(low, float_to_bits(body.a.image[v]));
            high = std::max(high, float_to_bits(body.a.image[v]));
        }
        body.a.range[0] = low;
        body.a.range[1] = high;
    }
};

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// A sample run from its uploaded kernel block gives the stages' bits: on the CPU the block's
// bodies run per voxel on the host (what the CUDA launches from the block do); on CUDA the
// sample is replayed as a captured graph, the samples queued back to back with their outputs
// copied aside, and one wait at the end. Two maps whose crops differ (32x32x32 and 16x32x32),
// so that the smaller one's grids are smaller than the launches' capacity; a configuration with
// a velocity field and a random acquisition resolution, and one with neither (those stages'
// grids empty). Replayed twice over, in another order the second time, so that each replay reads
// the block of its own sample.
TEST_P(SynthGenerator, SampleKernelsFromTheBlockGiveTheStagesBits) {
    for (const bool deformed_and_resampled : {true, false}) {
        SCOPED_TRACE(deformed_and_resampled ? "velocity field and resolution step" : "neither");
        GeneratorConfig config = toy_config();
        config.nonlin_std = deformed_and_resampled ? 4.0 : 0.0;
        config.randomise_resolution = deformed_and_resampled;
        LabelMap small = toy_label_map(24, 44, 36);
        small.grid.affine = Mat4::scaling(-1, 1, 1);  // stored LAS
        std::vector<TrainingMap> maps{make_training_map(toy_label_map(), config, "toy.nii.gz"),
                                      make_training_map(small, config, "small.nii.gz")};
        Generator stages(ctx(), config, maps, 31);
        stages.set_cuda_graph(false);  // whatever INFANT_CUDA_GRAPH says
        Generator from_block(ctx(), config, maps, 31);
        from_block.set_cuda_graph(true);
        std::vector<std::vector<float>> want_images;
        std::vector<std::vector<uint8_t>> want_targets;
        std::set<int64_t> voxels_seen;
        for (uint32_t sample = 0; sample < 8; ++sample) {
            const SampleParams& p = stages.generate(sample);
            const SampleKernels& k = stages.sample_kernels();
            voxels_seen.insert(grid_voxels(k.deform.a.out_dim));
            EXPECT_EQ(k.resize.grid().count() > 0, deformed_and_resampled);
            EXPECT_EQ(k.resolution[0].grid().count() > 0, deformed_and_resampled);
            const size_t voxels = size_t(p.out_shape[0] * p.out_shape[1] * p.out_shape[2]);
            want_images.push_back(std::vector<float>(voxels));
            want_targets.push_back(std::vector<uint8_t>(voxels));
            ctx().copy_to_host(want_images.back().data(), stages.image(), voxels * sizeof(float));
            ctx().copy_to_host(want_targets.back().data(), stages.target(), voxels);
        }
        EXPECT_EQ(voxels_seen, (std::set<int64_t>{16 * 32 * 32, 32 * 32 * 32})) << "both maps drawn";

        const std::vector<uint32_t> order{0, 1, 2, 3, 4, 5, 6, 7, 6, 1, 3, 0};
        std::vector<Buffer<float>> images;
        std::vector<Buffer<uint8_t>> targets;
        for (const uint32_t sample : order) {
            images.emplace_back(ctx(), want_images[sample].size());
            targets.emplace_back(ctx(), want_images[sample].size());
        }
        for (size_t n = 0; n < order.size(); ++n) {
            const uint32_t sample = order[n];
            const size_t voxels = want_images[sample].size();
            if (on_cuda()) {
                from_block.generate(sample);
            } else {
                from_block.draw(sample);
                for_each_sample_kernel(*from_block.sample_block(), from_block.sample_capacity().steps,
                                       RunFromBlockOnHost{});
            }
            ctx().copy_on_device(images[n].data(), from_block.image(), voxels * sizeof(float));
            ctx().copy_on_device(targets[n].data(), from_block.target(), voxels);
        }
        ctx().synchronize();
        for (size_t n = 0; n < order.size(); ++n) {
            EXPECT_TRUE(same_bits(images[n].download(), want_images[order[n]])) << "sample " << order[n] << ": image";
            EXPECT_TRUE(same_bits(targets[n].download(), want_targets[order[n]])) << "sample " << order[n] << ": target";
        }
    }
}

ISS_INSTANTIATE_BACKENDS(SynthGenerator);

// ---------------------------------------------------------------------------------------------

TEST(SynthParams, CropShapeFollowsTheSpec) {
    const GeneratorConfig config = preset_config("infant-t1");
    EXPECT_EQ(crop_shape(config, {155, 175, 149}), (std::array<int64_t, 3>{128, 160, 128}));
    GeneratorConfig padded = config;
    padded.pad_when_smaller = true;
    EXPECT_EQ(crop_shape(padded, {155, 175, 149}), (std::array<int64_t, 3>{160, 160, 160}));
}

// The infant label maps' shape, 1 mm voxels.
const MapGeometry infant_map{{155, 175, 149}};

TEST(SynthParams, ClassDrawsFollowPriorsRandomMixAndFusion) {
    const GeneratorConfig config = preset_config("infant-t1");
    const int n = 2000;
    int random = 0, fused = 0, prior_count = 0;
    double sum = 0, sum_sq = 0;
    const int brainstem = labels::index_of(config.generation_labels, 16);
    const int wm = labels::index_of(config.generation_labels, 2), wm_r = labels::index_of(config.generation_labels, 41);
    const int sub = labels::index_of(config.generation_labels, 170);
    for (int s = 0; s < n; ++s) {
        const SampleParams p = draw_sample_params(config, 3, uint32_t(s), {infant_map});
        random += p.random_contrast;
        fused += p.use_classes;
        if (p.use_classes) {
            ASSERT_EQ(p.mean[size_t(wm)], p.mean[size_t(wm_r)]);
            ASSERT_EQ(p.mean[size_t(brainstem)], p.mean[size_t(sub)]);
        }
        for (size_t g = 0; g < p.mean.size(); ++g) {
            ASSERT_GE(p.mean[g], 0.0f);
            ASSERT_GE(p.std[g], 0.0f);
            if (p.random_contrast && g != size_t(wm_r) && !p.use_classes) {
                ASSERT_GE(p.mean[g], 25.0f);
                ASSERT_LE(p.mean[g], 225.0f);
                ASSERT_GE(p.std[g], 5.0f);
                ASSERT_LE(p.std[g], 25.0f);
            }
        }
        if (!p.random_contrast) {
            sum += p.mean[size_t(brainstem)];
            sum_sq += double(p.mean[size_t(brainstem)]) * p.mean[size_t(brainstem)];
            ++prior_count;
        }
        // Scaling within bounds: the affine's determinant stays within [0.85^3, 1.15^3] (shears
        // move it by well under 1%).
        double det = 0;
        for (int c = 0; c < 3; ++c)
            det += p.affine[0][c] * (p.affine[1][(c + 1) % 3] * p.affine[2][(c + 2) % 3] -
                                     p.affine[1][(c + 2) % 3] * p.affine[2][(c + 1) % 3]);
        ASSERT_GT(det, 0.85 * 0.85 * 0.85 * 0.99);
        ASSERT_LT(det, 1.15 * 1.15 * 1.15 * 1.01);
        ASSERT_LE(p.velocity_std, 3.0f);
        ASSERT_EQ(p.blur_half_width, (std::array<int, 3>{1, 1, 1}));
        for (float sigma : p.blur_sigma) {
            ASSERT_GE(sigma, 0.5f / 1.03f - 1e-6f);
            ASSERT_LE(sigma, 0.5f * 1.03f + 1e-6f);
        }
        ASSERT_FALSE(p.flip);
    }
    // Binomial(2000, 0.5): standard deviation 22.4.
    EXPECT_NEAR(random, n / 2, 5 * 22.4);
    EXPECT_NEAR(fused, n / 2, 5 * 22.4);
    // Brainstem class mean ~ N(204.9, 17.7) from the published T1 priors (clipped at 0: no effect).
    const double mean = sum / prior_count, sd = std::sqrt(sum_sq / prior_count - mean * mean);
    EXPECT_NEAR(mean, config.prior_means[size_t(brainstem)], 5 * config.prior_means[43 + size_t(brainstem)] / std::sqrt(prior_count));
    EXPECT_NEAR(sd, config.prior_means[43 + size_t(brainstem)], 0.15 * config.prior_means[43 + size_t(brainstem)]);
}

// The background reset comes after a random resolution's resampling (fused into the bias
// pass), where it would show full-resolution edges through a low-resolution image: off then, as
// SynthSeg 2.0 has none.
TEST(SynthParams, NoBackgroundResetWithARandomResolution) {
    GeneratorConfig config = preset_config("infant-t1");
    config.background_reset_probability = 1;
    const SampleParams plain = draw_sample_params(config, 4, 9, {infant_map});
    EXPECT_TRUE(plain.reset_background);
    config.randomise_resolution = true;
    const SampleParams random = draw_sample_params(config, 4, 9, {infant_map});
    EXPECT_FALSE(random.reset_background);

    // A resolution stored as float rounds up past a bound that is no float (4.49999999 -> 4.5):
    // the window still is the one the configuration's check accepted (sample 2838437 of seed 1
    // drew such a resolution and asked for 17 taps each side of the kernels' 16).
    config.anisotropic_probability = 0;
    config.full_resolution_probability = 0;
    config.max_isotropic = 4.49999999;
    config.randomise_thickness = false;
    config.blur_range = 3.9111111118933333;
    validate_config(config, "edge.json");
    const SampleParams edge = draw_sample_params(config, 1, 2838437, {infant_map});
    for (int d = 0; d < 3; ++d) EXPECT_LE(edge.blur_half_width[size_t(d)], max_blur_half_width) << d;
}

// The random resolution is drawn as SynthSeg 2.0's SampleResolution draws it (prob_min 0.05,
// prob_iso 0.1): 5% of the samples keep the full resolution; of the others 90% have one thick
// axis, 10% every axis thick, each with a resolution of its own.
TEST(SynthParams, RandomResolutionIsDrawnAsSynthSeg2DrawsIt) {
    GeneratorConfig config = preset_config("infant-t1");
    config.randomise_resolution = true;
    const int samples = 4000;
    int full = 0, one_axis = 0, every_axis = 0, every_axis_its_own = 0;
    for (uint32_t sample = 0; sample < uint32_t(samples); ++sample) {
        const SampleParams p = draw_sample_params(config, 3, sample, {infant_map});
        int thick = 0;
        for (const float r : p.resolution) {
            ASSERT_GE(r, 1.0f);
            thick += r > 1;
        }
        if (thick == 0) {
            ++full;
        } else if (thick == 1) {
            ++one_axis;
            for (const float r : p.resolution) ASSERT_LE(r, config.max_anisotropic);
        } else {
            ASSERT_EQ(thick, 3) << "sample " << sample << ": two thick axes";
            ++every_axis;
            for (const float r : p.resolution) ASSERT_LE(r, config.max_isotropic);
            every_axis_its_own += p.resolution[0] != p.resolution[1] && p.resolution[1] != p.resolution[2];
        }
    }
    // Expected 200, 3420 and 380; the bounds are about 4 standard deviations wide.
    EXPECT_NEAR(full, 200, 55);
    EXPECT_NEAR(one_axis, 3420, 90);
    EXPECT_NEAR(every_axis, 380, 75);
    EXPECT_EQ(every_axis_its_own, every_axis);
}

// The random resolution's bounds are in mm, as SynthSeg 2.0's (SPEC.md 3.6: sigma 0.75 r / a):
// on a map of 0.5 x 1 x 2 mm voxels an 8 mm slice is 16, 8 or 4 of its voxels, and its window
// that of the largest sigma on that axis. A bound under the voxel size keeps the axis whole. In
// "voxel" units (records from before mm) every axis counts the map's voxels. On 1 mm voxels the
// two draw the same bits.
TEST(SynthParams, RandomResolutionBoundsAreMillimetresOfTheMapsVoxels) {
    GeneratorConfig config = preset_config("infant-t1");
    config.randomise_resolution = true;
    config.full_resolution_probability = 0;
    config.randomise_thickness = false;
    const MapGeometry map{{64, 96, 80}, 0, {0.5, 1, 2}};
    GeneratorConfig voxels = config;
    voxels.resolution_unit = "voxel";
    std::array<float, 3> largest{}, largest_in_voxels{};
    for (uint32_t sample = 0; sample < 2000; ++sample) {
        const SampleParams p = draw_sample_params(config, 8, sample, {map});
        const SampleParams v = draw_sample_params(voxels, 8, sample, {map});
        for (size_t d = 0; d < 3; ++d) {
            largest[d] = std::max(largest[d], p.resolution[d]);
            largest_in_voxels[d] = std::max(largest_in_voxels[d], v.resolution[d]);
            // The same draw u of U(1, b / a) and of U(1, b): 1 + (b / a - 1) u against 1 + (b - 1) u.
            const bool one_axis = std::count(v.resolution.begin(), v.resolution.end(), 1.0f) == 2;
            const double bound = one_axis ? config.max_anisotropic : config.max_isotropic;
            const double in_mm = bound / map.voxel_mm[d];
            if (v.resolution[d] > 1 && in_mm > 1) {
                EXPECT_NEAR((p.resolution[d] - 1) / (in_mm - 1), (v.resolution[d] - 1) / (bound - 1), 1e-5)
                    << sample << " " << d;
            }
            if (p.resolution[d] > 1) {
                const double sigma = 0.75 * 8 / map.voxel_mm[d];
                EXPECT_EQ(p.blur_half_width[d], int(blur_window(sigma, config.blur_range)) / 2) << sample << " " << d;
                EXPECT_NEAR(p.blur_sigma[d], 0.75 * p.resolution[d], 0.75 * p.resolution[d] * 0.031);
            }
        }
        const SampleParams one_mm = draw_sample_params(config, 8, sample, {{map.shape}});
        EXPECT_EQ(one_mm.resolution, v.resolution) << sample;
        EXPECT_EQ(one_mm.blur_sigma, v.blur_sigma) << sample;
        EXPECT_EQ(one_mm.blur_half_width, v.blur_half_width) << sample;
    }
    EXPECT_GT(largest[0], 15.0f);  // 8 mm of 0.5 mm voxels
    EXPECT_LE(largest[0], 16.0f);
    EXPECT_GT(largest[1], 7.5f);
    EXPECT_LE(largest[1], 8.0f);
    EXPECT_GT(largest[2], 3.7f);
    EXPECT_LE(largest[2], 4.0f);
    for (size_t d = 0; d < 3; ++d) EXPECT_GT(largest_in_voxels[d], 7.5f) << d;

    config.max_isotropic = 0.4;  // under every voxel: those samples keep the full resolution
    config.anisotropic_probability = 0;
    for (uint32_t sample = 0; sample < 50; ++sample)
        EXPECT_EQ(draw_sample_params(config, 8, sample, {map}).resolution, (std::array<float, 3>{1, 1, 1}));
}

// The affine acts in mm: on a map of 2 x 0.5 x 0.5 mm voxels a drawn rotation, applied to voxel
// offsets, is a rotation of the world (S A' S^-1 orthogonal); applied to the voxels as drawn it
// sheared and stretched a 14 mm sphere to 8 x 14 x 23 mm.
TEST(SynthParams, TheAffineActsInMillimetresOnAnisotropicVoxels) {
    GeneratorConfig config = preset_config("infant-t1");
    config.scaling_bounds = config.shearing_bounds = 0;
    const MapGeometry map{{64, 128, 128}, 0, {2, 0.5, 0.5}};
    for (uint32_t sample = 0; sample < 20; ++sample) {
        const SampleParams p = draw_sample_params(config, 6, sample, {map});
        double world[3][3];
        for (size_t r = 0; r < 3; ++r)
            for (size_t c = 0; c < 3; ++c) world[r][c] = map.voxel_mm[r] * p.affine[r][c] / map.voxel_mm[c];
        for (size_t r = 0; r < 3; ++r)
            for (size_t c = 0; c < 3; ++c) {
                double dot = 0;
                for (size_t k = 0; k < 3; ++k) dot += world[r][k] * world[c][k];
                EXPECT_NEAR(dot, r == c ? 1.0 : 0.0, 1e-12) << sample;
            }
        EXPECT_GT(std::fabs(p.affine[0][1]), 0.0) << "a rotation was drawn";
        // On isotropic voxels the drawn matrix itself, bit for bit.
        const SampleParams iso = draw_sample_params(config, 6, sample, {{map.shape, 0, {0.7, 0.7, 0.7}}});
        const SampleParams one = draw_sample_params(config, 6, sample, {{map.shape}});
        for (size_t r = 0; r < 3; ++r)
            for (size_t c = 0; c < 3; ++c) EXPECT_EQ(iso.affine[r][c], one.affine[r][c]);
    }
}

// A map of voxels finer than the mm bounds' blur reaches (8 mm of 0.25 mm voxels: 32, a sigma of
// 24) is drawn up to what the kernels' taps hold (17.1 voxels at blur_range 1.03), not refused:
// 0.4 mm maps were, at the default bounds.
TEST(SynthParams, AMapTooFineForTheRandomResolutionsBlurIsDrawnUpToItsReach) {
    GeneratorConfig config = preset_config("infant-t1");
    config.randomise_resolution = true;
    config.full_resolution_probability = 0;
    const MapGeometry fine{{155, 175, 149}, 0, {1, 1, 0.25}};
    const double reach = largest_blurred_resolution(config);
    EXPECT_NEAR(reach, 33 / (2.5 * 1.03 * 0.75), 1e-12);
    float largest = 0;
    for (uint32_t sample = 0; sample < 500; ++sample) {
        const SampleParams p = draw_sample_params(config, 2, sample, {fine});
        for (size_t d = 0; d < 3; ++d) EXPECT_LE(p.blur_half_width[d], max_blur_half_width) << sample;
        EXPECT_LE(p.resolution[0], 8.0f);
        largest = std::max(largest, p.resolution[2]);
    }
    EXPECT_GT(largest, 16.0f);
    EXPECT_LE(largest, float(reach));
    EXPECT_EQ(resolution_in_voxels(config, 8, 0.25), reach);
    EXPECT_EQ(resolution_in_voxels(config, 8, 0.5), 16.0);
}

// A flip swaps every one-sided label with its twin: SynthSeg's adult lateral labels too (25/57,
// 136/163, 137/164, the cortical parcels), which an infant-only table left on the wrong side.
TEST(SynthParams, FlipsSwapEveryOneSidedLabelWithItsTwin) {
    for (const auto& [left, right] : std::vector<std::pair<int32_t, int32_t>>{
             {2, 41}, {21, 61}, {26, 58}, {25, 57}, {136, 163}, {137, 164}, {1005, 2005}}) {
        EXPECT_EQ(labels::lr_twin(left), right);
        EXPECT_EQ(labels::lr_twin(right), left);
        EXPECT_TRUE(labels::lateral(left) && labels::lateral(right)) << left;
    }
    EXPECT_EQ(labels::lr_twin(16), 16);
    EXPECT_FALSE(labels::lateral(16));
    GeneratorConfig config = preset_config("synthseg");
    config.generation_labels.push_back(25);
    try {
        validate_config(config, "flip.json");
        FAIL() << "a one-sided label without its twin was accepted with flips on";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("flip.json: generation label 25 has its twin 57 missing"),
                  std::string::npos)
            << e.what();
    }
    config.generation_labels.push_back(57);
    EXPECT_NO_THROW(validate_config(config, "flip.json"));
    config.generation_labels.push_back(138);  // one-sided, but no twin is known
    EXPECT_THROW(validate_config(config, "flip.json"), InputError);
    config.flip_probability = 0;  // nothing is flipped: nothing to swap
    EXPECT_NO_THROW(validate_config(config, "flip.json"));
}

// An atlas's own numbers (dHCP's, M-CRIB's) declare their sides: a flip then swaps declared
// twins, and predict's mirror averaging pairs their outputs. Undeclared, a flip kept a left
// structure numbered 101 as it was (drawn on the right) and the model averaged it with the mirror
// image's same label, without a word: a label of no known side is refused with flips on, and
// a model of one records no flip averaging.
TEST(SynthParams, DeclaredTwinsAreSwappedAsFreeSurfersAre) {
    const labels::DeclaredTwins declared = {{101, 102}, {300, 300}};
    EXPECT_EQ(labels::lr_twin(101, declared), 102);
    EXPECT_EQ(labels::lr_twin(102, declared), 101);
    EXPECT_TRUE(labels::lateral(101, declared) && labels::lateral(102, declared));
    EXPECT_FALSE(labels::lateral(101)) << "FreeSurfer's 101 is unsided";
    EXPECT_FALSE(labels::lateral(300, declared));
    EXPECT_TRUE(labels::side_known(300, declared));
    EXPECT_FALSE(labels::side_known(300));
    EXPECT_EQ(labels::lr_twin(2, declared), 41) << "undeclared labels keep FreeSurfer's twins";
    const std::vector<int32_t> list = {0, 101, 2, 102, 41, 300};
    EXPECT_EQ(labels::twin_positions(list, declared), (std::vector<int>{0, 3, 4, 1, 2, 5}));
    EXPECT_EQ(labels::first_unmirrored(list, list, list, declared), -1);
    EXPECT_EQ(labels::first_unmirrored(list, list, list), 5) << "300's side is not known";

    GeneratorConfig config = preset_config("synthseg");  // flips on
    config.generation_labels.push_back(300);
    config.segmentation_labels.push_back(300);
    EXPECT_EQ(test::refusal_of("t.json", [&] { validate_config(config, "t.json"); }),
              "t.json: generation label 300 is in none of FreeSurfer's classes (unsided, left, right), so a flip "
              "(flip_probability 0.5) cannot know its side: declare it in lr_twins ([left, right] pairs, [label, "
              "label] for one on neither side)");
    // Every such label at once (an atlas's parcellation took a run per label).
    GeneratorConfig two = config;
    two.generation_labels.push_back(301);
    two.segmentation_labels.push_back(301);
    EXPECT_EQ(test::refusal_of("t.json", [&] { validate_config(two, "t.json"); })
                  .rfind("t.json: generation labels 300, 301 are in none of FreeSurfer's classes (unsided, left, "
                         "right), so a flip (flip_probability 0.5) cannot know their sides: declare them in lr_twins",
                         0),
              0u);
    config.lr_twins = {{300, 300}};
    EXPECT_NO_THROW(validate_config(config, "t.json"));
    config.lr_twins = {{300, 300, 2}};
    EXPECT_EQ(test::refusal_of("t.json", [&] { validate_config(config, "t.json"); }),
              "t.json: lr_twins holds pairs [left, right] ([label, label] for a structure on neither side), not a "
              "list of 3");
    config.lr_twins = {{300, 300}, {2, 300}};
    EXPECT_EQ(test::refusal_of("t.json", [&] { validate_config(config, "t.json"); }),
              "t.json: lr_twins names label 300 twice");
    // A pair over one label of FreeSurfer's pair and not the other: 41's twin stayed 2, whose
    // twin was 2, so a flip left no 41 in a sample (and [[2, 42]] lost 3 and 41).
    config.lr_twins = {{2, 42}, {300, 300}};
    EXPECT_EQ(
        test::refusal_of("t.json", [&] { validate_config(config, "t.json"); })
            .rfind("t.json: lr_twins: label 3's twin is 42, whose twin is 2, so a flip would not swap them back", 0),
        0u);
    config.lr_twins = {{2, 2}, {300, 300}};
    EXPECT_EQ(test::refusal_of("t.json", [&] { validate_config(config, "t.json"); }),
              "t.json: lr_twins: label 41's twin is 2, whose twin is 2, so a flip would not swap them back: declare "
              "label 41 too (e.g. [[41, 41]] for a label of no side)");
    config.lr_twins = {{2, 2}, {41, 41}, {300, 300}};
    EXPECT_NO_THROW(validate_config(config, "t.json"));
    // Whose twin is declared already (as another's pair): declaring it again is refused, so the
    // advice names the label alone (it offered [[3, 3], [42, 42]], which failed).
    config.lr_twins = {{2, 2}, {41, 41}, {300, 300}, {3, 3}};
    EXPECT_EQ(test::refusal_of("t.json", [&] { validate_config(config, "t.json"); }),
              "t.json: lr_twins: label 42's twin is 3, whose twin is 3, so a flip would not swap them back: declare "
              "label 42 too (e.g. [[42, 42]] for a label of no side)");
    config.lr_twins.pop_back();
    config.lr_twins.push_back({9000, 9001});  // a typo in an atlas's number declared nothing
    EXPECT_EQ(test::refusal_of("t.json", [&] { validate_config(config, "t.json"); }),
              "t.json: lr_twins names label 9000, which is neither a generation nor a segmentation label");
}

// predict averages a scan's prediction with its mirror image's, swapping the outputs by their
// twins: right where the generation labels' flip carries each target to the target's twin (an
// output without its twin among the outputs staying itself).
TEST(SynthParams, OutputsMirrorWhereAFlipCarriesEachTargetToItsTwin) {
    const std::vector<int32_t> generation{0, 2, 24, 41};
    auto first = [&](const std::vector<int32_t>& targets, const std::vector<int32_t>& outputs) {
        return labels::first_unmirrored(generation, targets, outputs);
    };
    EXPECT_EQ(first({0, 2, 24, 41}, {0, 2, 24, 41}), -1);  // twins learned as twins
    EXPECT_EQ(first({0, 2, 0, 2}, {0, 2}), -1);            // the hemispheres merged: 2 stays 2
    EXPECT_EQ(first({0, 2, 0, 0}, {0, 2}), 1);             // the left one alone: its mirror is background
    EXPECT_EQ(first({0, 2, 2, 41}, {0, 2, 41}), 2);        // CSF learned as one side's
    EXPECT_EQ(first({0, 41, 24, 2}, {0, 2, 24, 41}), -1);  // sides exchanged, consistently
    // Maps of one hemisphere: the left labels without their twins have no mirror image.
    EXPECT_EQ(labels::first_unmirrored({0, 24, 2, 3}, {0, 24, 2, 3}, {0, 2, 3, 24}), 2);
}

TEST(SynthParams, BadInputIsNamed) {
    const GeneratorConfig config = toy_config();
    LabelMap labels = toy_label_map();
    labels.at(3, 4, 5) = 999;
    try {
        make_training_map(labels, config, "bad_map.nii.gz");
        FAIL() << "label 999 accepted";
    } catch (const InputError& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("bad_map.nii.gz"), std::string::npos) << message;
        EXPECT_NE(message.find("999"), std::string::npos) << message;
        EXPECT_NE(message.find("3,4,5"), std::string::npos) << message;
    }
    EXPECT_THROW(make_training_map(LabelMap(), config, "empty.nii.gz"), InputError);
    GeneratorConfig broken = config;
    broken.prior_means.resize(43);
    EXPECT_THROW(validate_config(broken, "cfg.json"), InputError);
    EXPECT_THROW(preset_config("adult"), InputError);
    // gamma_std: at most 10, where the largest draw Box-Muller gives (uniform 0 bits: its radius)
    // still makes gamma = exp(N(0, gamma_std)) a positive finite float either way.
    GeneratorConfig steep = config;
    steep.gamma_std = 10;
    EXPECT_NO_THROW(validate_config(steep, "cfg.json"));
    const float widest = box_muller(0, 0).z0;
    EXPECT_GT(float(std::exp(-steep.gamma_std * widest)), 0.0f);
    EXPECT_TRUE(std::isfinite(float(std::exp(steep.gamma_std * widest))));
    steep.gamma_std = 10.5;
    EXPECT_THROW(validate_config(steep, "cfg.json"), InputError);
    // The spatial bounds and the contrast's exponents (a bias_field_std of 1e6 gave images of a
    // few hundred values): the largest each allows passes, past it is refused, naming it.
    const std::vector<std::tuple<double GeneratorConfig::*, std::string, double>> bounds{
        {&GeneratorConfig::rotation_bounds, "rotation_bounds", 180},
        {&GeneratorConfig::shearing_bounds, "shearing_bounds", 1},
        {&GeneratorConfig::translation_bounds, "translation_bounds", 1000},
        {&GeneratorConfig::nonlin_std, "nonlin_std", 100},
        {&GeneratorConfig::gamma_std, "gamma_std", 10},
        {&GeneratorConfig::bias_field_std, "bias_field_std", 10}};
    for (const auto& [field, name, high] : bounds) {
        GeneratorConfig bounded = config;
        bounded.*field = high;
        EXPECT_NO_THROW(validate_config(bounded, "cfg.json")) << name;
        bounded.*field = high * 1.01;
        const std::string refusal = test::refusal_of("cfg.json", [&] { validate_config(bounded, "cfg.json"); });
        EXPECT_NE(refusal.find(cat("cfg.json: ", name, " must be in [0, ", high, "]")), std::string::npos) << refusal;
        bounded.*field = -1;
        EXPECT_THROW(validate_config(bounded, "cfg.json"), InputError) << name;
    }
    // A refusal names the one parameter out of bounds and its value (one message named two, or
    // a pair of shape factors, whichever was wrong).
    const std::vector<std::tuple<double GeneratorConfig::*, double, std::string>> named{
        {&GeneratorConfig::clip_max, -3, "clip_max must be > 0, is -3"},
        {&GeneratorConfig::blur_sigma, -1, "blur_sigma must be >= 0, is -1"},
        {&GeneratorConfig::blur_range, 0.5, "blur_range must be >= 1, is 0.5"},
        {&GeneratorConfig::nonlin_shape_factor, 2, "nonlin_shape_factor must be in (0, 1], is 2"},
        {&GeneratorConfig::bias_shape_factor, 0, "bias_shape_factor must be in (0, 1], is 0"}};
    for (const auto& [field, value, message] : named) {
        GeneratorConfig wrong = config;
        wrong.*field = value;
        EXPECT_EQ(test::refusal_of("cfg.json", [&] { validate_config(wrong, "cfg.json"); }), "cfg.json: " + message);
    }
    // A label shares one class's intensity: in two classes it would have two.
    GeneratorConfig twice = preset_config("infant-t1");
    twice.fused_classes = {{2, 41}, {41, 3}};
    EXPECT_EQ(test::refusal_of("cfg.json", [&] { validate_config(twice, "cfg.json"); }),
              "cfg.json: label 41 is in two fused classes (which of their intensities would it share?)");

    // A padded crop far larger than memory: refused before any allocation, naming the size.
    GeneratorConfig huge = config;
    huge.pad_when_smaller = true;
    huge.output_shape = {4096, 4096, 4096};
    DeviceContext cpu;
    try {
        Generator gen(cpu, huge, {make_training_map(toy_label_map(), huge, "toy.nii.gz")}, 1);
        FAIL() << "a 4096^3 crop was accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("smaller shape"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace iss
