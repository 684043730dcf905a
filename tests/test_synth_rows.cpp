// The generator's CPU paths run a row at a time (separable field sampling, int32 indices,
// vectorised loops); CUDA runs the bodies, per voxel or per quad of a row's voxels
// (kernels/common/quad.h). The contract is bit-identity, so each CPU path is compared here, bit
// for bit, with its body run on the host over its grid in the index type its CUDA launch gives
// it (32 bits at these sizes): what a GPU computes, checked without one. Inputs are awkward on purpose: odd sizes, fields smaller and larger than the output, flips
// along each axis, an oblique affine, negative zeros.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/index_type.h"
#include "kernels/common/philox.h"
#include "kernels/synth/blur.h"
#include "kernels/synth/deform.h"
#include "kernels/synth/gmm.h"
#include "kernels/synth/intensity.h"
#include "kernels/synth/svf.h"

namespace iss {
namespace {

template <class T>
void expect_same_bits(const std::vector<T>& got, const std::vector<T>& want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t v = 0; v < got.size(); ++v)
        ASSERT_EQ(std::memcmp(&got[v], &want[v], sizeof(T)), 0) << "element " << v << ": " << +got[v] << " vs " << +want[v];
}

// The body over its grid on the host, one voxel at a time, with the index type its CUDA launch
// gives it (kernels/common/index_type.h): what a GPU computes.
template <class Body>
void run_voxels_as_cuda_does(const Body& body) {
    const LaunchGrid dim = body.grid();
    const int64_t count = dim.count();
    auto run = [&](auto index) {
        using I = decltype(index);
        for (I k = 0; k < I(dim[2]); ++k)
            for (I j = 0; j < I(dim[1]); ++j)
                for (I i = 0; i < I(dim[0]); ++i) body(i, j, k);
    };
    if (fits_32_bit_index(index_extent_of(body, count)))
        run(int32_t{});
    else
        run(int64_t{});
}

// `dim`: the grid the test means the body to have (checked against the body's own).
template <class Body>
void run_per_voxel(const int64_t dim[3], const Body& body) {
    const LaunchGrid grid = body.grid();
    ASSERT_TRUE(grid[0] == dim[0] && grid[1] == dim[1] && grid[2] == dim[2]);
    run_voxels_as_cuda_does(body);
}

// The same for a body that runs four voxels of a row per call over `dim` (kernels/common/quad.h).
template <class Body>
void run_per_quad(const int64_t dim[3], const Body& body) {
    const LaunchGrid grid = body.grid();
    ASSERT_TRUE(grid[0] == (dim[0] + 3) / 4 && grid[1] == dim[1] && grid[2] == dim[2]);
    run_voxels_as_cuda_does(body);
}

// A voxel body that records the width of the indices it is run with.
struct IndexWidthProbe {
    int64_t dim[3] = {2, 1, 1};
    int64_t extent = 0;
    int* bits = nullptr;
    LaunchGrid grid() const { return voxel_grid(dim); }
    int64_t index_extent() const { return extent; }
    template <class I>
    void operator()(I, I, I) const {
        static_assert(std::is_signed_v<I>, "signed indices");
        *bits = int(8 * sizeof(I));
    }
};

// 32-bit indices exactly where every element a body indexes lies below 2^31: its grid, and the
// extent it declares (the generator's bodies: channels, other arrays, the crop's offset).
TEST(SynthRows, BodiesTakeThirtyTwoBitIndicesOnlyWhereEveryOffsetFits) {
    int bits = 0;
    const int64_t limit = int64_t(1) << 31;
    for (const auto& [extent, want] : {std::pair<int64_t, int>{limit - 1, 32}, {limit, 64}, {0, 32}}) {
        run_voxels_as_cuda_does(IndexWidthProbe{{2, 1, 1}, extent, &bits});
        EXPECT_EQ(bits, want) << "extent " << extent;
    }
    BlurArgs blur;
    blur.dim[0] = blur.dim[1] = blur.dim[2] = 1024;  // 2^30 voxels
    EXPECT_TRUE(fits_32_bit_index(index_extent_of(BlurBody{blur}, 1 << 30)));
    blur.channels = 2;
    EXPECT_FALSE(fits_32_bit_index(index_extent_of(BlurBody{blur}, 1 << 30)));
    DeformArgs deform;
    for (int d = 0; d < 3; ++d) deform.map_dim[d] = deform.out_dim[d] = 8;
    EXPECT_EQ(index_extent_of(DeformBody{deform}, 512), 512);
    // A crop far outside its map: its positions still fit in 32 bits, but the bound the body
    // declares (|offset| + the crop's size per axis) does not, and errs on the safe side.
    deform.offset[1] = -(limit - 4);
    EXPECT_FALSE(fits_32_bit_index(index_extent_of(DeformBody{deform}, 512)));
    deform.offset[1] = 0;
    for (int d = 0; d < 3; ++d) deform.field_dim[d] = 1024;  // 3 x 2^30 floats, when there is a field
    EXPECT_TRUE(fits_32_bit_index(index_extent_of(DeformBody{deform}, 512)));
    const float never_read = 0;
    deform.field = &never_read;
    EXPECT_FALSE(fits_32_bit_index(index_extent_of(DeformBody{deform}, 512)));
    SquareFieldArgs square;
    square.dim[0] = square.dim[1] = 1024;
    square.dim[2] = 700;  // 3 x 734 M floats
    EXPECT_FALSE(fits_32_bit_index(index_extent_of(SquareFieldBody{square}, 1024 * 1024 * 700)));
}

// A CUDA voxel launch hands each thread the voxels v, v + step, ... (VoxelWalk): each must be
// the split of its flat index, in both index types, whatever the step against the grid (a step
// below a row, one row, a slice and past it; one voxel, a single row or column).
TEST(SynthRows, VoxelWalkStepsToTheSplitOfEachFlatIndex) {
    auto check = [](auto index, int64_t nx, int64_t ny, int64_t nz) {
        using I = decltype(index);
        const int64_t count = nx * ny * nz;
        for (const int64_t step : {int64_t(1), int64_t(2), nx - 1, nx, nx + 1, nx * ny - 1, nx * ny, nx * ny + 1,
                                   int64_t(37), count - 1, count}) {
            if (step < 1) continue;
            for (int64_t first = 0; first < std::min(step, count); ++first) {
                VoxelWalk<I> at{I(first), I(nx), I(ny)};
                at.set_step(I(step));
                for (int64_t v = first; v < count; v += step) {
                    if (v != first) at.next();
                    const int64_t row = v / nx;
                    const std::string where = std::to_string(nx) + "x" + std::to_string(ny) + "x" +
                                              std::to_string(nz) + " step " + std::to_string(step) +
                                              " voxel " + std::to_string(v);
                    ASSERT_EQ(int64_t(at.i), v % nx) << where;
                    ASSERT_EQ(int64_t(at.j), row % ny) << where;
                    ASSERT_EQ(int64_t(at.k), row / ny) << where;
                }
            }
        }
    };
    for (const int64_t nx : {1, 2, 7})
        for (const int64_t ny : {1, 3, 5})
            for (const int64_t nz : {1, 4}) {
                check(uint32_t{}, nx, ny, nz);
                check(int64_t{}, nx, ny, nz);
            }
}

// Values in [-amplitude, amplitude] from keyed uniform draws.
std::vector<float> wavy(size_t n, float amplitude, uint32_t purpose) {
    std::vector<float> v(n);
    for (size_t e = 0; e < n; e += 4) {
        float u[4];
        random_uniform4(RandomKey{7, 0, purpose}, uint64_t(e / 4), u);
        for (size_t c = 0; c < 4 && e + c < n; ++c) v[e + c] = amplitude * (2.0f * u[c] - 1.0f);
    }
    return v;
}

// One blur pass by BlurBody (four voxels a call) and by the CPU's rows, bit for bit; the floats
// around the output stay NaN: nothing is written past its ends.
void expect_rows_give_the_bodys_bits(const int64_t (&dim)[3], int64_t channels, int in_offset, int out_offset, int h,
                                     int axis) {
    SCOPED_TRACE("dim " + std::to_string(dim[0]) + "x" + std::to_string(dim[1]) + "x" + std::to_string(dim[2]) +
                 " channels " + std::to_string(channels) + " offsets " + std::to_string(in_offset) + "," +
                 std::to_string(out_offset) + " h " + std::to_string(h) + " axis " + std::to_string(axis));
    const size_t n = size_t(dim[0] * dim[1] * dim[2] * channels);
    // 16-byte-aligned storage (std::vector<float>'s), used from its start or one float on, with
    // 4 floats to spare after the volume.
    std::vector<float> storage(n + 4), by_body(n + 4, std::nanf("")), by_rows(n + 4, std::nanf(""));
    ASSERT_EQ(reinterpret_cast<uintptr_t>(storage.data()) % 16, 0u);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(by_body.data()) % 16, 0u);
    float* input = storage.data() + in_offset;
    for (size_t v = 0; v < n; ++v) input[v] = (v % 3 == 0 ? -0.0f : 1.0f) * float((v * 7919) % 97) / 7.0f;
    BlurArgs args;
    args.src = input;
    for (int d = 0; d < 3; ++d) args.dim[d] = dim[d];
    args.channels = channels;
    args.axis = axis;
    args.half_width = h;
    const std::vector<float> taps = blur_taps(1.3 + 0.4 * h, h);
    std::copy(taps.begin(), taps.end(), args.taps);
    args.dst = by_body.data() + out_offset;
    run_per_quad(dim, BlurBody{args});
    args.dst = by_rows.data() + out_offset;
    DeviceContext cpu;
    blur_axis(cpu, args);
    expect_same_bits(by_rows, by_body);
}

// BlurBody runs four voxels of a row a thread: images of whole 16-byte-aligned quads with the
// taps unrolled (half-widths 0-4), anything else voxel by voxel. Both against the CPU's rows:
// rows one quad long (no neighbours along x) and several, odd widths, the input or the output
// or both misaligned, every unrolled width and two beyond, channels-last volumes.
TEST(SynthRows, BlurGivesThePerVoxelBodysBits) {
    const int64_t dims[][3] = {{6, 3, 2}, {4, 3, 5}, {12, 5, 3}, {9, 2, 6}};
    const std::pair<int, int> misalignments[] = {{0, 0}, {1, 1}, {0, 1}, {1, 0}};  // floats: input, output
    for (const auto& dim : dims)
        for (const int64_t channels : {int64_t(1), int64_t(5)})
            for (const auto& [in_offset, out_offset] : misalignments)
                for (const int h : {0, 1, 2, 3, 4, 5, 7})
                    for (int axis = 0; axis < 3; ++axis)
                        expect_rows_give_the_bodys_bits(dim, channels, in_offset, out_offset, h, axis);
}

// The wide windows of a random resolution's thick axes (beyond the 9 taps compiled per count:
// the CPU's rows sum them 16 elements at a time), on volumes wide enough along every axis for
// all the taps, with odd sizes for the rows' tails.
TEST(SynthRows, WideBlurWindowsGiveTheBodysBits) {
    const int64_t dim[3] = {45, 37, 35};
    for (const int h : {5, 8, 16})
        for (int axis = 0; axis < 3; ++axis) expect_rows_give_the_bodys_bits(dim, 1, 1, 0, h, axis);
}

// The CPU's one sweep of the three passes (blur_passes) against the passes one at a time, on 1,
// 2 and 3 threads: volumes deep enough to sweep (threads' ranges of slices that do not divide
// evenly) and too shallow (the passes then), each axis's half-width from 0 to more than the
// volume is wide, channels-last volumes, different widths per axis.
TEST(SynthRows, BlurSweepGivesThePassesBits) {
    DeviceContext cpu;
    const int threads_before = omp_get_max_threads();
    const int64_t dims[][3] = {{7, 5, 1}, {6, 9, 25}, {13, 4, 61}};
    const int widths[][3] = {{1, 1, 1}, {0, 2, 3}, {3, 0, 1}, {2, 5, 0}, {1, 1, 4}};
    int swept = 0;
    for (const int threads : {1, 2, 3})
        for (const auto& dim : dims)
            for (const auto& h : widths)
                for (const int64_t channels : {int64_t(1), int64_t(3)}) {
                    SCOPED_TRACE(std::to_string(threads) + " threads, dim " + std::to_string(dim[0]) + "x" +
                                 std::to_string(dim[1]) + "x" + std::to_string(dim[2]) + " h " + std::to_string(h[0]) +
                                 "," + std::to_string(h[1]) + "," + std::to_string(h[2]) + " channels " +
                                 std::to_string(channels));
                    omp_set_num_threads(threads);
                    const size_t n = size_t(dim[0] * dim[1] * dim[2] * channels);
                    std::vector<float> input(n);
                    for (size_t v = 0; v < n; ++v) input[v] = (v % 3 == 0 ? -0.0f : 1.0f) * float((v * 7919) % 97) / 7.0f;
                    const std::array<int64_t, 3> size{dim[0], dim[1], dim[2]};
                    const std::array<double, 3> sigma{0.7, 1.3, 2.1};
                    const std::array<int, 3> width{h[0], h[1], h[2]};
                    std::vector<float> a = input, b(n, std::nanf(""));
                    for (const BlurArgs& pass : separable_blur_passes(a.data(), b.data(), size, channels, sigma, width))
                        blur_axis(cpu, pass);
                    const std::vector<float> by_passes = b;
                    a = input;
                    std::fill(b.begin(), b.end(), std::nanf(""));
                    const std::array<BlurArgs, 3> passes = separable_blur_passes(a.data(), b.data(), size, channels, sigma, width);
                    blur_passes(cpu, passes);
                    expect_same_bits(b, by_passes);
                    if (blur_sweeps(cpu, passes)) {
                        expect_same_bits(a, input);  // the sweep leaves its input as it was
                        ++swept;
                    }
                }
    omp_set_num_threads(threads_before);
    EXPECT_GE(swept, 20) << "too few volumes swept";
}

TEST(SynthRows, FieldResizeAndSquaringGiveThePerVoxelBodysBits) {
    DeviceContext cpu;
    const int64_t coarse[3] = {4, 3, 5}, fine[3] = {13, 9, 7};
    // Up (the generator's case) and down (a field larger than the output: taps more than a
    // voxel apart).
    auto check_resize = [&](const int64_t from[3], const int64_t to[3], uint32_t purpose) {
        const std::vector<float> velocity = wavy(size_t(from[0] * from[1] * from[2] * 3), 3.0f, purpose);
        ResizeFieldArgs resize;
        resize.src = velocity.data();
        for (int d = 0; d < 3; ++d) {
            resize.src_dim[d] = from[d];
            resize.dst_dim[d] = to[d];
            resize.ratio[d] = float(double(from[d]) / double(to[d]));
            resize.scale[d] = 0.25f * float(d + 1);
        }
        const size_t count = size_t(to[0] * to[1] * to[2] * 3);
        std::vector<float> by_body(count), by_rows(count, std::nanf(""));
        resize.dst = by_body.data();
        run_per_voxel(to, ResizeFieldBody{resize});
        resize.dst = by_rows.data();
        resize_field(cpu, resize);
        expect_same_bits(by_rows, by_body);
    };
    check_resize(coarse, fine, 1);
    check_resize(fine, coarse, 3);
    // A source 2 voxels wide: a row's taps read 6 floats, one vector (AVX2's permutes).
    const int64_t narrow[3] = {2, 3, 4};
    check_resize(narrow, fine, 5);

    // Squaring: rows shorter than a vector and longer than two (the CPU runs 16 voxels at a
    // time), and one voxel wide; displacements of several voxels, so that samples fall outside
    // and clamp, and integer ones (a tap of weight 0), including negative zeros.
    // (And rows of 8 to 15 voxels: AVX2's 8 at a time end in a whole vector or in 3 to 7.)
    const int64_t grids[][3] = {{13, 9, 7}, {37, 5, 4}, {1, 6, 5},  {2, 3, 3}, {8, 3, 2},
                                {11, 3, 2}, {12, 2, 3}, {14, 2, 2}, {15, 3, 2}};
    for (const auto& grid : grids) {
        SCOPED_TRACE("grid " + std::to_string(grid[0]) + "x" + std::to_string(grid[1]) + "x" + std::to_string(grid[2]));
        const size_t n = size_t(grid[0] * grid[1] * grid[2] * 3);
        std::vector<float> field = wavy(n, 6.0f, 2);
        for (size_t v = 0; v < n; v += 5) field[v] = std::round(field[v]);
        for (size_t v = 1; v < n; v += 11) field[v] = -0.0f;
        std::vector<float> by_body(n), by_rows(n, std::nanf(""));
        SquareFieldArgs square;
        square.src = field.data();
        for (int d = 0; d < 3; ++d) square.dim[d] = grid[d];
        square.dst = by_body.data();
        run_per_voxel(grid, SquareFieldBody{square});
        square.dst = by_rows.data();
        square_field(cpu, square);
        expect_same_bits(by_rows, by_body);
    }
}

void check_deform_rows(const int64_t map_dim[3], const int64_t out_dim[3], const int64_t field_dim[3]) {
    DeviceContext cpu;
    std::vector<uint8_t> map(size_t(map_dim[0] * map_dim[1] * map_dim[2]));
    for (size_t v = 0; v < map.size(); ++v) map[v] = uint8_t((v * 131) % 41);
    const std::vector<float> field = wavy(size_t(field_dim[0] * field_dim[1] * field_dim[2] * 3), 2.5f, 3);
    DeformArgs a;
    a.map = map.data();
    const float affine[3][3] = {{0.97f, 0.12f, -0.05f}, {-0.1f, 1.08f, 0.07f}, {0.04f, -0.09f, 0.93f}};
    for (int d = 0; d < 3; ++d) {
        a.map_dim[d] = map_dim[d];
        a.out_dim[d] = out_dim[d];
        a.field_dim[d] = field_dim[d];
        a.field_ratio[d] = float(double(field_dim[d]) / double(map_dim[d]));
        a.field_scale[d] = float(double(map_dim[d]) / double(field_dim[d]));
        a.centre[d] = float(double(map_dim[d] - 1) / 2);
        a.offset[d] = d + 2;
        for (int c = 0; c < 3; ++c) a.affine[d][c] = affine[d][c];
    }
    for (int g = 0; g <= max_generation_labels; ++g) a.twin[g] = uint8_t((g * 7 + 3) % 256);
    map.back() = 77;  // a label of its own in the map's last voxel
    a.outside = 5;
    const size_t n = size_t(out_dim[0] * out_dim[1] * out_dim[2]);
    for (const bool with_field : {false, true})
        for (int flip = -1; flip < 3; ++flip)
            for (const int fill : {-1, 0, 2})  // pad_when_smaller: background outside along that axis
                for (const float shift : {0.0f, 40.0f}) {  // 40: every voxel reads the map's last voxel
                    SCOPED_TRACE(std::string(with_field ? "field" : "affine only") + ", flip axis " +
                                 std::to_string(flip) + ", fill axis " + std::to_string(fill) + ", shift " +
                                 std::to_string(shift));
                    a.field = with_field ? field.data() : nullptr;
                    a.flip_axis = flip;
                    for (int d = 0; d < 3; ++d) {
                        a.fill_outside[d] = d == fill;
                        a.source_centre[d] = a.centre[d] + 1.5f * float(d) - 1.0f + shift;
                    }
                    std::vector<uint8_t> by_body(n), by_rows(n, 255);
                    a.out = by_body.data();
                    run_per_quad(out_dim, DeformBody{a});
                    a.out = by_rows.data();
                    deform_labels(cpu, a);
                    expect_same_bits(by_rows, by_body);
                    if (shift > 0 && fill < 0) {
                        EXPECT_EQ(by_body.front(), flip >= 0 ? a.twin[77] : 77);
                    }
                }
}

TEST(SynthRows, DeformGivesThePerVoxelBodysBits) {
    const int64_t map_dim[3] = {23, 19, 17}, out_dim[3] = {11, 14, 9}, field_dim[3] = {6, 5, 7};
    check_deform_rows(map_dim, out_dim, field_dim);
    // A field 2 voxels wide: a row's taps read 6 floats, one vector (AVX2's permutes).
    const int64_t narrow_field[3] = {2, 5, 7};
    check_deform_rows(map_dim, out_dim, narrow_field);
}

// Rows of more than one run of 256 voxels ending in a part of a group of 16, and fields whose x
// taps for 16 voxels spread over more floats than the AVX-512 path's two loads (its gathers
// then), and less (its permutes), within one row.
TEST(SynthRows, DeformLongAndWideRowsGiveThePerVoxelBodysBits) {
    const int64_t map_dim[3] = {40, 7, 6};
    for (const int64_t field_x : {20, 37}) {
        for (const int64_t out_x : {300, 37}) {
            SCOPED_TRACE("field " + std::to_string(field_x) + " wide, output " + std::to_string(out_x) + " wide");
            const int64_t out_dim[3] = {out_x, 3, 2}, field_dim[3] = {field_x, 4, 3};
            check_deform_rows(map_dim, out_dim, field_dim);
        }
    }
}

void check_bias_clip_rows(int64_t nx, int64_t bias_x) {
    DeviceContext cpu;
    const int64_t dim[3] = {nx, 6, 5}, bias_dim[3] = {bias_x, 3, 2};
    const size_t n = size_t(dim[0] * dim[1] * dim[2]);
    const std::vector<float> image = wavy(n, 150.0f, 4), bias = wavy(size_t(bias_dim[0] * bias_dim[1] * bias_dim[2]), 1.5f, 5);
    std::vector<uint8_t> generation(n);
    for (size_t v = 0; v < n; ++v) generation[v] = uint8_t(v % 5);
    BiasClipArgs a;
    a.generation = generation.data();
    a.bias = bias.data();
    a.clip_max = 120.0f;
    for (int d = 0; d < 3; ++d) {
        a.dim[d] = dim[d];
        a.bias_dim[d] = bias_dim[d];
        a.bias_ratio[d] = float(double(bias_dim[d]) / double(dim[d]));
    }
    for (const bool with_bias : {false, true})
        for (const bool reset : {false, true}) {
            SCOPED_TRACE(std::string(with_bias ? "bias" : "no bias") + (reset ? ", reset" : ""));
            a.bias = with_bias ? bias.data() : nullptr;
            a.reset_background = reset;
            std::vector<float> by_body = image, by_rows = image;
            a.image = by_body.data();
            // The body over its quads as CUDA runs it: each call's range is that of the voxels it
            // wrote (four, or the row's last), folded as the kernel folds them.
            const BiasClipBody body{a};
            ASSERT_EQ(body.grid()[0], (nx + 3) / 4);
            ValueBits folded;
            for (int32_t k = 0; k < int32_t(dim[2]); ++k)
                for (int32_t j = 0; j < int32_t(dim[1]); ++j)
                    for (int32_t q = 0; q < int32_t(body.grid()[0]); ++q) {
                        const ValueBits written = body(q, j, k);
                        ValueBits want;
                        const int64_t at = (k * dim[1] + j) * nx + 4 * q;
                        for (int64_t i = 4 * q; i < std::min<int64_t>(nx, 4 * q + 4); ++i) want.add(by_body[size_t(at + i - 4 * q)]);
                        ASSERT_EQ(written.low, want.low) << "quad " << q << " of row " << j << ", " << k;
                        ASSERT_EQ(written.high, want.high) << "quad " << q << " of row " << j << ", " << k;
                        folded.low = std::min(folded.low, written.low);
                        folded.high = std::max(folded.high, written.high);
                    }
            a.image = by_rows.data();
            uint32_t range[2] = {7, 7};
            a.range = range;
            bias_clip(cpu, a);
            expect_same_bits(by_rows, by_body);
            // The range the rows reduce is the body's image's, as the CUDA reduction takes it.
            EXPECT_EQ(range[0], float_to_bits(*std::min_element(by_body.begin(), by_body.end())));
            EXPECT_EQ(range[1], float_to_bits(*std::max_element(by_body.begin(), by_body.end())));
            EXPECT_EQ(folded.low, range[0]);
            EXPECT_EQ(folded.high, range[1]);
        }
}

TEST(SynthRows, BiasClipGivesThePerVoxelBodysBits) {
    // Bias grids whose rows fit one vector (AVX2 blends them by permutes, 8 voxels at a time),
    // wider ones, and one finer than the image (AVX-512's groups of 16 then gather), on rows
    // that end in 1 and in 7 voxels past a whole 8 (CUDA's quads: the last one short), and of
    // whole quads (CUDA's 128-bit path).
    for (const int64_t nx : {17, 23, 24})
        for (const int64_t bias_x : {4, 8, 9, 11, 40}) {
            SCOPED_TRACE("rows of " + std::to_string(nx) + ", bias grid " + std::to_string(bias_x) + " wide");
            check_bias_clip_rows(nx, bias_x);
        }
}

// The normalisation's CPU loop (its test of gamma hoisted out) against the body CUDA runs:
// values below, inside and above the range, and gamma 1 (no power) or not.
// Values past both ends (clamped), the ends exactly, NaN, and (from 0) values so small that the power
// takes exp's lower clamp, or that normalise below the normal range (0); a count that is not a
// multiple of 8 or 16 (nor of CUDA's 4).
TEST(SynthRows, NormaliseGivesThePerVoxelBodysBits) {
    DeviceContext cpu;
    std::vector<float> image = wavy(1037, 150.0f, 6);
    image[0] = -20.0f;
    image[1] = 130.0f;
    image[2] = std::nanf("");  // clampf's NaN: 0
    std::vector<float> near_zero = wavy(1037, 130.0f, 7);
    for (size_t v = 0; v < near_zero.size(); v += 3) near_zero[v] = std::fabs(near_zero[v]) * 1e-36f * float(v % 7);
    near_zero[0] = 130.0f;
    const uint32_t range[2] = {float_to_bits(-20.0f), float_to_bits(130.0f)};
    const uint32_t from_zero[2] = {float_to_bits(0.0f), float_to_bits(130.0f)};
    for (const float gamma : {1.0f, 0.7f, 2.3f})
        for (const bool small : {false, true})
            for (const int misaligned : {0, 1}) {  // (CUDA's 128-bit path, or value by value)
                SCOPED_TRACE("gamma " + std::to_string(gamma) + (small ? ", values near 0" : "") +
                             (misaligned ? ", misaligned" : ""));
                const std::vector<float>& input = small ? near_zero : image;
                // The image from the storage's start or one float on, NaN around it (which must
                // stay: nothing is written past the image's ends).
                std::vector<float> by_body(input.size() + 4, std::nanf("")), by_rows = by_body;
                std::copy(input.begin(), input.end(), by_body.begin() + misaligned);
                std::copy(input.begin(), input.end(), by_rows.begin() + misaligned);
                NormaliseGammaArgs a{by_body.data() + misaligned, int64_t(input.size()), small ? from_zero : range, gamma};
                const NormaliseGammaBody body{a};
                ASSERT_EQ(body.count(), (a.count + 3) / 4);  // four values a call, as CUDA runs it
                for (uint32_t e = 0; e < uint32_t(body.count()); ++e) body(e);
                a.image = by_rows.data() + misaligned;
                normalise_gamma(cpu, a);
                expect_same_bits(by_rows, by_body);
            }
}

// Runs of 256 blocks (1024 voxels), and a count that is not a multiple of 4. The runs' generation
// indices: all of 0..63 (the permuted tables of the AVX-512 and AVX2 paths); up to 199 (the
// general loop); all of 0..7, 0..15 and 0..31 (AVX2's smaller tables); only 0 and 8, 16 or 32
// (each the next table up, by one bit); below 8 but 40 at byte 21 of every 32 (the bound taken
// over every byte); only 0 and 64 (the general loop). The last run's (37 voxels: one whole 32 and
// 5 more) up to 49, or also 100 in its last voxel only (the check of the run's indices reads its
// bytes past the last whole 32 one by one).
size_t gmm_test_index(size_t v) {
    switch (v / 1024) {
        case 0: return (v * 13) % 64;
        case 1: return (v * 13) % 200;
        case 2: return (v * 13) % 8;
        case 3: return (v * 13) % 16;
        case 4: return (v * 13) % 32;
        case 5: return (v % 3 == 1) * 8;
        case 6: return (v % 3 == 1) * 16;
        case 7: return (v % 3 == 1) * 32;
        case 8: return v % 32 == 21 ? 40 : (v * 13) % 8;
        case 9: return (v % 3 == 1) * 64;
        default: return (v * 7) % 50;
    }
}

void check_gmm_rows(bool large_index_in_tail) {
    DeviceContext cpu;
    const int64_t count = 256 * 4 * 10 + 37;
    std::vector<uint8_t> generation(static_cast<size_t>(count));
    for (size_t v = 0; v < generation.size(); ++v) generation[v] = uint8_t(gmm_test_index(v));
    if (large_index_in_tail) generation.back() = 100;
    GmmArgs a;
    a.generation = generation.data();
    for (int g = 0; g <= max_generation_labels; ++g) {
        a.mean[g] = 10.0f * float(g) - 300.0f;
        a.std[g] = 0.5f + 0.25f * float(g);
        a.target_of[g] = uint8_t(255 - g);
    }
    a.key = RandomKey{0x2A0000002Bull, 3, 9};  // both halves of the seed (Philox's two key words)
    a.count = count;
    std::vector<float> image_body(static_cast<size_t>(count)), image_rows(static_cast<size_t>(count), std::nanf(""));
    std::vector<uint8_t> target_body(static_cast<size_t>(count)), target_rows(static_cast<size_t>(count), 255);
    a.image = image_body.data();
    a.target = target_body.data();
    const GmmBody body{a};
    for (int64_t block = 0; block < (count + 3) / 4; ++block) body(block);
    // The rows' outputs with 64 guard elements after them, which must stay as they are.
    constexpr size_t guard = 64;
    image_rows.resize(image_rows.size() + guard, -7.0f);
    target_rows.resize(target_rows.size() + guard, 7);
    a.image = image_rows.data();
    a.target = target_rows.data();
    paint_gmm(cpu, a);
    EXPECT_EQ(std::vector<float>(image_rows.end() - guard, image_rows.end()), std::vector<float>(guard, -7.0f));
    EXPECT_EQ(std::vector<uint8_t>(target_rows.end() - guard, target_rows.end()), std::vector<uint8_t>(guard, 7));
    image_rows.resize(size_t(count));
    target_rows.resize(size_t(count));
    expect_same_bits(image_rows, image_body);
    expect_same_bits(target_rows, target_body);
    // Without targets: the same image.
    std::vector<float> image_only(static_cast<size_t>(count), std::nanf(""));
    a.image = image_only.data();
    a.target = nullptr;
    paint_gmm(cpu, a);
    expect_same_bits(image_only, image_body);
}

TEST(SynthRows, GmmGivesThePerBlockBodysBits) {
    for (const bool large_index_in_tail : {false, true}) {
        SCOPED_TRACE(large_index_in_tail ? "an index of 100 in the last run's tail"
                                         : "the last run's indices below 64");
        check_gmm_rows(large_index_in_tail);
    }
}

// The vectorised draws of runs whose block numbers cross a multiple of 2^32 (a volume of 16 G
// voxels, never allocated here): the counter's low word wraps inside a vector (16 lanes with
// AVX-512, 8 with AVX2) and carries into its high word, as random_bits' 64-bit index does.
TEST(SynthRows, GmmCounterCarriesIntoItsHighWord) {
    const RandomKey key{0x0123456789ABCDEFull, 5, 2};
    for (const int64_t first : {int64_t(0), (int64_t(1) << 32) - 7, (int64_t(1) << 32) - gmm_cpu_run + 3,
                                (int64_t(3) << 32) - 16, (int64_t(1) << 40) - 1}) {
        uint32_t bits[4][gmm_cpu_run];
        gmm_run_bits_cpu(key, first, bits);
        for (int64_t b = 0; b < gmm_cpu_run; ++b) {
            const Philox4 want = random_bits(key, uint64_t(first + b));
            for (int w = 0; w < 4; ++w)
                ASSERT_EQ(bits[w][b], want.v[w]) << "block " << first + b << " (run from " << first << "), word " << w;
        }
    }
}

}  // namespace
}  // namespace iss
