// PNG output and preview pictures (io/png.h, io/preview.h): a written PNG read back with
// libpng, a failed write that names the file and leaves nothing, stable and distinct label
// colours, slice orientation, overlay blending and the montage layout.
#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "io/orientation.h"
#include "io/png.h"
#include "io/preview.h"
#include "kernels/common/error.h"
#include "test_util.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

class PngTest : public test::TempDirTest {};

// Reads an 8-bit RGB PNG with libpng's simplified API.
RgbImage read_png_rgb(const std::string& path) {
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&image, path.c_str())) throw std::runtime_error(image.message);
    image.format = PNG_FORMAT_RGB;
    RgbImage out(int(image.width), int(image.height));
    if (!png_image_finish_read(&image, nullptr, out.rgb.data(), 0, nullptr)) throw std::runtime_error(image.message);
    return out;
}

int colour_distance(const std::array<uint8_t, 3>& a, const std::array<uint8_t, 3>& b) {
    int d = 0;
    for (int c = 0; c < 3; ++c) d += std::abs(int(a[size_t(c)]) - int(b[size_t(c)]));
    return d;
}

TEST_F(PngTest, WriteAndReadBack) {
    const int w = 7, h = 5;  // odd sizes: no row padding hides an off-by-one
    std::vector<uint8_t> rgb(size_t(w * h * 3));
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t((i * 37 + 11) % 256);
    const std::string file = path("small.png");
    write_png(file, rgb, w, h);
    const RgbImage back = read_png_rgb(file);
    EXPECT_EQ(back.width, w);
    EXPECT_EQ(back.height, h);
    EXPECT_EQ(back.rgb, rgb);
    // Only the final file: the temporary name is gone.
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 1);
}

TEST_F(PngTest, FailedWriteNamesTheFileAndLeavesNothing) {
    const std::string file = path("missing-dir/out.png");
    try {
        write_png(file, std::vector<uint8_t>(12, 0), 2, 2);
        FAIL() << "no error writing into a nonexistent directory";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path("missing-dir")));
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 0);
}

TEST_F(PngTest, LabelColoursAreStableAndDistinct) {
    EXPECT_EQ(label_colour(0), (std::array<uint8_t, 3>{0, 0, 0}));
    EXPECT_EQ(label_colour(3), (std::array<uint8_t, 3>{205, 62, 78}));  // FreeSurfer's cortex
    EXPECT_EQ(label_colour(17), label_colour(53)) << "twins share a colour";
    EXPECT_EQ(label_colour(1234), label_colour(1234)) << "hashed colours are stable";
    EXPECT_GT(colour_distance(label_colour(1234), label_colour(0)), 150) << "a hashed colour is not background";
    EXPECT_NE(label_colour(1234), label_colour(1235));
    // Structures that touch each other must be told apart.
    const std::vector<std::pair<int32_t, int32_t>> neighbours = {
        {0, 24},  {24, 3},  {3, 2},   {2, 21},  {21, 3},  {2, 4},   {4, 11},  {11, 12}, {12, 13},
        {13, 10}, {10, 4},  {10, 28}, {28, 16}, {16, 170}, {16, 15}, {15, 8},  {8, 7},   {8, 172},
        {17, 18}, {17, 5},  {5, 4},   {14, 4},  {14, 10}, {26, 11}, {26, 12}, {16, 8},  {24, 8},
        {42, 41}, {41, 61}, {0, 3},
    };
    for (const auto& [a, b] : neighbours)
        EXPECT_GT(colour_distance(label_colour(a), label_colour(b)), 60) << "labels " << a << " and " << b;
}

// A 4x3x2 volume whose value encodes its voxel, to check which voxel lands on which pixel.
Image coded_image() {
    Grid g;
    g.dim = {4, 3, 2};
    Image img(g);
    for (int64_t k = 0; k < 2; ++k)
        for (int64_t j = 0; j < 3; ++j)
            for (int64_t i = 0; i < 4; ++i) img.at(i, j, k) = float(i + 10 * j + 100 * k);
    return img;
}

TEST_F(PngTest, MidSlicesPutSuperiorAndAnteriorUp) {
    const Image img = coded_image();  // values 0..123, so grey = round(v * 255 / 123)
    const MidSlices s = image_mid_slices(img);
    auto grey = [](float v) { return uint8_t(std::lround(v * 255.0 / 123.0)); };
    // Axial: k = 1, i across, j up (top row j = 2).
    ASSERT_EQ(s[0].width, 4);
    ASSERT_EQ(s[0].height, 3);
    EXPECT_EQ(s[0].pixel(3, 0)[0], grey(3 + 20 + 100));
    EXPECT_EQ(s[0].pixel(0, 2)[0], grey(0 + 0 + 100));
    // Coronal: j = 1, i across, k up (top row k = 1).
    ASSERT_EQ(s[1].width, 4);
    ASSERT_EQ(s[1].height, 2);
    EXPECT_EQ(s[1].pixel(2, 0)[1], grey(2 + 10 + 100));
    EXPECT_EQ(s[1].pixel(2, 1)[2], grey(2 + 10));
    // Sagittal: i = 2, j across, k up.
    ASSERT_EQ(s[2].width, 3);
    ASSERT_EQ(s[2].height, 2);
    EXPECT_EQ(s[2].pixel(1, 0)[0], grey(2 + 10 + 100));
    EXPECT_EQ(s[2].pixel(2, 1)[0], grey(2 + 20));
}

// Anisotropic voxels (1 x 1 x 3 mm): the coronal and sagittal panels are 3 pixels a slice high,
// so that a millimetre is as long across as up; the axial panel is as before.
TEST_F(PngTest, MidSlicesHaveSquarePixelsInMillimetres) {
    Image img = coded_image();
    img.grid.affine = Mat4::scaling(1, 1, 3);
    const MidSlices s = image_mid_slices(img);
    auto grey = [](float v) { return uint8_t(std::lround(v * 255.0 / 123.0)); };
    EXPECT_EQ(s[0].width, 4);
    EXPECT_EQ(s[0].height, 3);
    ASSERT_EQ(s[1].width, 4);
    ASSERT_EQ(s[1].height, 6);
    ASSERT_EQ(s[2].width, 3);
    ASSERT_EQ(s[2].height, 6);
    for (int y = 0; y < 6; ++y) {  // top three rows k = 1, bottom three k = 0
        EXPECT_EQ(s[1].pixel(2, y)[0], grey(2 + 10 + (y < 3 ? 100 : 0))) << y;
        EXPECT_EQ(s[2].pixel(1, y)[0], grey(2 + 10 + (y < 3 ? 100 : 0))) << y;
    }
}

// The panels are read in RAS order: the same anisotropic volume stored LIA and PSR gives the
// same pictures as stored RAS.
TEST_F(PngTest, MidSlicesAreTheSameInEveryVoxelOrder) {
    Image img = coded_image();
    img.grid.affine = Mat4::scaling(1, 2, 3);
    const MidSlices ras = image_mid_slices(img);
    for (const char* code : {"LIA", "PSR"}) {
        const MidSlices other = image_mid_slices(reorient(img, code));
        for (size_t p = 0; p < 3; ++p) {
            EXPECT_EQ(other[p].width, ras[p].width) << code << " panel " << p;
            EXPECT_EQ(other[p].height, ras[p].height) << code << " panel " << p;
            EXPECT_EQ(other[p].rgb, ras[p].rgb) << code << " panel " << p;
        }
    }
}

TEST_F(PngTest, LabelSlicesAndOverlay) {
    const Image img = coded_image();
    LabelMap labels(img.grid, 1, 0);
    labels.at(1, 1, 1) = 17;
    const MidSlices colour = label_mid_slices(labels);
    const auto hippo = label_colour(17);
    EXPECT_EQ(colour[0].pixel(1, 1)[0], hippo[0]);  // axial: j = 1 is the middle row of 3
    EXPECT_EQ(colour[0].pixel(0, 0)[0], 0);

    const MidSlices over = overlay_mid_slices(img, labels, 0.4);
    const MidSlices grey = image_mid_slices(img);
    EXPECT_EQ(over[0].pixel(0, 0)[0], grey[0].pixel(0, 0)[0]) << "background keeps the grey";
    const int g = grey[0].pixel(1, 1)[0];
    for (int c = 0; c < 3; ++c)
        EXPECT_EQ(over[0].pixel(1, 1)[c], uint8_t(std::lround(0.6f * float(g) + 0.4f * float(hippo[size_t(c)]))));
}

TEST_F(PngTest, TileGridLayout) {
    const RgbImage a(3, 2, {255, 0, 0}), b(5, 4, {0, 255, 0});
    const RgbImage grid = tile_grid({{a, b}, {b, a}}, 2);
    EXPECT_EQ(grid.width, 2 + 5 + 2 + 5 + 2);
    EXPECT_EQ(grid.height, 2 + 4 + 2 + 4 + 2);
    EXPECT_EQ(grid.pixel(0, 0)[0], 32) << "gap colour";
    EXPECT_EQ(grid.pixel(2 + 1 + 1, 2 + 1 + 1)[0], 255) << "a centred in its 5x4 slot";
    EXPECT_EQ(grid.pixel(2, 2)[0], 32) << "outside a's 3x2 cell";
    EXPECT_EQ(grid.pixel(9, 2)[1], 255) << "b fills its slot";

    Grid g;
    g.dim = {6, 5, 4};
    const std::vector<RgbImage> row = montage_row(Image(g), LabelMap(g));
    ASSERT_EQ(row.size(), 6u);
    EXPECT_EQ(row[0].width, 6);
    EXPECT_EQ(row[0].height, 5);
    EXPECT_EQ(row[5].width, 5);
    EXPECT_EQ(row[5].height, 4);
}

}  // namespace
}  // namespace iss
