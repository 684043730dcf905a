#include "io/preview.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "io/orientation.h"
#include "kernels/common/error.h"

namespace iss {
namespace {

// Which RAS axes a slice shows: `across` left to right, `up` bottom to top, `fixed` at its
// middle. Axial, coronal, sagittal.
struct SliceAxes {
    int across, up, fixed;
};
constexpr SliceAxes slice_axes[3] = {{0, 1, 2}, {0, 2, 1}, {1, 2, 0}};

// Renders slice `s` of a grid with `paint(voxel_index, pixel)` writing each pixel's RGB:
// the one place that decides orientation, flipping and aspect. The volume is read in the RAS
// order of its axes (as reorient to RAS would order them), so that an LIA scan's panels are
// the planes they are named after; no copy is made. Pixels are square in mm: each axis is drawn
// at the finer of the slice's two voxel sizes (nearest voxel), so that a 0.8 x 0.8 x 3 mm scan's
// coronal panel is not squashed 3.75 times; an axis is stretched at most 8 times.
template <class Paint>
RgbImage render_slice(const Grid& grid, int s, Paint paint) {
    const SliceAxes a = slice_axes[s];
    ISS_REQUIRE(grid.dim[0] > 0 && grid.dim[1] > 0 && grid.dim[2] > 0, "preview: empty volume");
    // RAS axis r is voxel axis map.axis[r], reversed where map.flip[r].
    const AxisMap map = axis_map_between(orientation_code(grid.affine), "RAS");
    std::array<int64_t, 3> dim{};
    std::array<double, 3> size{};
    const auto stored_size = grid.voxel_size();
    for (size_t r = 0; r < 3; ++r) {
        dim[r] = grid.dim[size_t(map.axis[r])];
        size[r] = stored_size[size_t(map.axis[r])];
    }
    const double across_mm = size[size_t(a.across)], up_mm = size[size_t(a.up)];
    const double pixel_mm = std::max(std::min(across_mm, up_mm), std::max(across_mm, up_mm) / 8);
    // Pixels along an axis of n voxels of `mm`, and the voxel that pixel p shows.
    auto pixels = [&](int64_t n, double mm) { return std::max<int64_t>(1, std::llround(double(n) * mm / pixel_mm)); };
    auto voxel = [&](int64_t p, int64_t n, double mm) {
        return std::min(n - 1, int64_t((double(p) + 0.5) * pixel_mm / mm));
    };
    const int64_t width = pixels(dim[size_t(a.across)], across_mm), height = pixels(dim[size_t(a.up)], up_mm);
    ISS_REQUIRE(width <= 1 << 15 && height <= 1 << 15, "preview: slice too large");
    RgbImage out{int(width), int(height)};
    std::array<int64_t, 3> v{};
    v[size_t(a.fixed)] = dim[size_t(a.fixed)] / 2;
    for (int y = 0; y < out.height; ++y) {
        v[size_t(a.up)] = dim[size_t(a.up)] - 1 - voxel(y, dim[size_t(a.up)], up_mm);  // superior / anterior up
        for (int x = 0; x < out.width; ++x) {
            v[size_t(a.across)] = voxel(x, dim[size_t(a.across)], across_mm);
            std::array<int64_t, 3> stored{};
            for (size_t r = 0; r < 3; ++r)
                stored[size_t(map.axis[r])] = map.flip[r] ? dim[r] - 1 - v[r] : v[r];
            paint((stored[2] * grid.dim[1] + stored[1]) * grid.dim[0] + stored[0], out.pixel(x, y));
        }
    }
    return out;
}

// The grey value of each voxel: min..max of the finite values to 0..255.
struct GreyWindow {
    float low = 0, scale = 0;
    explicit GreyWindow(const Image& image) {
        float lo = INFINITY, hi = -INFINITY;
        for (float v : image.data) {
            if (!std::isfinite(v)) continue;
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        if (hi > lo) {
            low = lo;
            scale = 255.0f / (hi - lo);
        }
    }
    uint8_t operator()(float v) const {
        if (!std::isfinite(v)) return 0;
        return uint8_t(std::clamp(std::lround((v - low) * scale), 0L, 255L));
    }
};

void check_frames(const Image& image) {
    ISS_REQUIRE(image.data.size() >= size_t(image.grid.voxels()), "preview: image holds fewer voxels than its grid");
}

}  // namespace

RgbImage::RgbImage(int w, int h, std::array<uint8_t, 3> fill) : width(w), height(h), rgb(size_t(w) * size_t(h) * 3) {
    for (size_t p = 0; p < rgb.size(); p += 3) std::copy(fill.begin(), fill.end(), rgb.begin() + long(p));
}

MidSlices image_mid_slices(const Image& image) {
    check_frames(image);
    const GreyWindow grey(image);
    MidSlices out;
    for (int s = 0; s < 3; ++s)
        out[size_t(s)] = render_slice(image.grid, s, [&](int64_t v, uint8_t* px) {
            px[0] = px[1] = px[2] = grey(image.data[size_t(v)]);
        });
    return out;
}

MidSlices label_mid_slices(const LabelMap& labels) {
    ISS_REQUIRE(labels.data.size() >= size_t(labels.grid.voxels()), "preview: label map holds fewer voxels than its grid");
    MidSlices out;
    for (int s = 0; s < 3; ++s)
        out[size_t(s)] = render_slice(labels.grid, s, [&](int64_t v, uint8_t* px) {
            const auto c = label_colour(labels.data[size_t(v)]);
            std::copy(c.begin(), c.end(), px);
        });
    return out;
}

MidSlices overlay_mid_slices(const Image& image, const LabelMap& labels, double alpha) {
    check_frames(image);
    ISS_REQUIRE(image.grid.dim == labels.grid.dim, "preview: overlay of a label map on an image of other dims");
    ISS_REQUIRE(labels.data.size() >= size_t(labels.grid.voxels()), "preview: label map holds fewer voxels than its grid");
    const GreyWindow grey(image);
    const float a = float(std::clamp(alpha, 0.0, 1.0));
    MidSlices out;
    for (int s = 0; s < 3; ++s)
        out[size_t(s)] = render_slice(image.grid, s, [&](int64_t v, uint8_t* px) {
            const uint8_t g = grey(image.data[size_t(v)]);
            const int32_t label = labels.data[size_t(v)];
            const auto c = label_colour(label);
            for (int ch = 0; ch < 3; ++ch)
                px[ch] = label == 0 ? g : uint8_t(std::lround((1 - a) * float(g) + a * float(c[size_t(ch)])));
        });
    return out;
}

std::array<uint8_t, 3> label_colour(int32_t label) {
    // FreeSurferColorLUT.txt for the labels of the infant lists; 21/61 (less-myelinated white
    // matter, "Line-1"/"Right-undetermined" in FreeSurfer) get a colour of their own so they
    // stand out from the white matter they sit in, and 170 (a brainstem sub-region, the same
    // colour as 16 in FreeSurfer) one that stands out from the rest of the brainstem.
    static const std::map<int32_t, std::array<uint8_t, 3>> table = {
        {0, {0, 0, 0}},         {2, {245, 245, 245}},   {3, {205, 62, 78}},     {4, {120, 18, 134}},
        {5, {196, 58, 250}},    {7, {220, 248, 164}},   {8, {230, 148, 34}},    {10, {0, 118, 14}},
        {11, {122, 186, 220}},  {12, {236, 13, 176}},   {13, {12, 48, 255}},    {14, {204, 182, 142}},
        {15, {42, 204, 164}},   {16, {119, 159, 176}},  {17, {220, 216, 20}},   {18, {103, 255, 255}},
        {21, {255, 204, 153}},  {24, {60, 60, 60}},     {26, {255, 165, 0}},    {28, {165, 42, 42}},
        {30, {160, 32, 240}},   {31, {0, 200, 200}},    {41, {245, 245, 245}},  {42, {205, 62, 78}},
        {43, {120, 18, 134}},   {44, {196, 58, 250}},   {45, {0, 148, 0}},      {46, {220, 248, 164}},
        {47, {230, 148, 34}},   {48, {0, 118, 14}},     {49, {0, 118, 14}},     {50, {122, 186, 220}},
        {51, {236, 13, 176}},   {52, {13, 48, 255}},    {53, {220, 216, 20}},   {54, {103, 255, 255}},
        {55, {80, 196, 98}},    {56, {60, 58, 210}},    {57, {255, 165, 0}},    {58, {255, 165, 0}},
        {59, {0, 255, 127}},    {60, {165, 42, 42}},    {61, {255, 204, 153}},  {62, {160, 32, 240}},
        {63, {0, 200, 200}},    {77, {200, 70, 255}},   {85, {234, 169, 30}},   {170, {242, 104, 76}},
        {172, {119, 100, 176}},
    };
    const auto it = table.find(label);
    if (it != table.end()) return it->second;
    // Other values: a stable hash (splitmix64's finaliser) with each channel in 64..255, so no
    // hashed label is mistaken for background.
    uint64_t h = uint64_t(uint32_t(label)) + 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
    return {uint8_t(64 + (h & 0xff) % 192), uint8_t(64 + ((h >> 8) & 0xff) % 192), uint8_t(64 + ((h >> 16) & 0xff) % 192)};
}

std::vector<RgbImage> montage_row(const Image& image, const LabelMap& labels) {
    const MidSlices grey = image_mid_slices(image), colour = label_mid_slices(labels);
    return {grey[0], grey[1], grey[2], colour[0], colour[1], colour[2]};
}

RgbImage tile_grid(const std::vector<std::vector<RgbImage>>& rows, int gap) {
    ISS_REQUIRE(gap >= 0, "tile_grid: negative gap");
    std::vector<int> col_width, row_height(rows.size(), 0);
    for (size_t r = 0; r < rows.size(); ++r)
        for (size_t c = 0; c < rows[r].size(); ++c) {
            if (col_width.size() <= c) col_width.resize(c + 1, 0);
            col_width[c] = std::max(col_width[c], rows[r][c].width);
            row_height[r] = std::max(row_height[r], rows[r][c].height);
        }
    int width = gap, height = gap;
    for (int w : col_width) width += w + gap;
    for (int h : row_height) height += h + gap;
    RgbImage out(width, height, {32, 32, 32});
    int y0 = gap;
    for (size_t r = 0; r < rows.size(); ++r) {
        int x0 = gap;
        for (size_t c = 0; c < rows[r].size(); ++c) {
            const RgbImage& cell = rows[r][c];
            if (cell.width == 0 || cell.height == 0) {
                x0 += col_width[c] + gap;
                continue;
            }
            const int dx = x0 + (col_width[c] - cell.width) / 2, dy = y0 + (row_height[r] - cell.height) / 2;
            for (int y = 0; y < cell.height; ++y)
                std::copy(cell.pixel(0, y), cell.pixel(0, y) + size_t(cell.width) * 3, out.pixel(dx, dy + y));
            x0 += col_width[c] + gap;
        }
        y0 += row_height[r] + gap;
    }
    return out;
}

}  // namespace iss
