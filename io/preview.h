// Preview pictures of volumes: the three orthogonal mid-slices of an image (grey) or a label
// map (a fixed colour per label), a label overlay on an image, and a grid montage of such
// slices, for `synth --preview` and `predict`.
//
// Slices are read in the volume's RAS order (its axes ordered as reorient to RAS would order
// them, so that the panels are the planes they are named after whatever the file's voxel
// order), superior or anterior up: axial (the middle slice along S) has the R axis across and A
// up; coronal and sagittal have R or A across and S up. Pixels are square in mm (anisotropic
// voxels stretched, nearest voxel, at most 8 times).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "io/volume.h"

namespace iss {

struct RgbImage {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;  // width * height pixels, 3 bytes each, rows top to bottom

    RgbImage() = default;
    RgbImage(int w, int h, std::array<uint8_t, 3> fill = {0, 0, 0});
    uint8_t* pixel(int x, int y) { return &rgb[(size_t(y) * size_t(width) + size_t(x)) * 3]; }
    const uint8_t* pixel(int x, int y) const { return &rgb[(size_t(y) * size_t(width) + size_t(x)) * 3]; }
};

// Slices in this order everywhere: axial, coronal, sagittal.
using MidSlices = std::array<RgbImage, 3>;

// Grey mid-slices; the window is the volume's min..max (NaN ignored) mapped to 0..255.
MidSlices image_mid_slices(const Image& image);
// Colour mid-slices, label_colour() per voxel.
MidSlices label_mid_slices(const LabelMap& labels);
// Labels blended over the grey image at `alpha`; background (label 0) leaves the grey as is.
// The two volumes must have the same dims.
MidSlices overlay_mid_slices(const Image& image, const LabelMap& labels, double alpha = 0.4);

// A FreeSurfer-like colour for the common labels (left/right twins share a colour, as in
// FreeSurfer's lookup table; 0 is black) and a stable hashed colour for any other value.
std::array<uint8_t, 3> label_colour(int32_t label);

// One montage row for a sample: the image's mid-slices then the labels' (six cells).
std::vector<RgbImage> montage_row(const Image& image, const LabelMap& labels);

// A preview picture shows at most this many rows (samples, subjects): beyond that it gets too
// tall to be a quick look.
constexpr size_t preview_max_rows = 8;

// Tiles `rows` (each a list of cells, left to right) into one picture: each column as wide as
// its widest cell, each row as tall as its tallest, `gap` pixels between and around cells,
// on a dark grey background. A cell smaller than its slot is centred in it.
RgbImage tile_grid(const std::vector<std::vector<RgbImage>>& rows, int gap = 4);

}  // namespace iss
