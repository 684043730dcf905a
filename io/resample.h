// Moving volumes between grids on any backend: the host computes the output-voxel to
// source-voxel transform in double, uploads, runs kernels/geometry/resample and downloads.
#pragma once

#include "io/volume.h"
#include "kernels/geometry/resample.h"

namespace iss {

class DeviceContext;

// inv(src.affine) * dst.affine: maps a voxel of `dst` to a (fractional) voxel of `src`.
Mat4 voxel_transform(const Grid& src, const Grid& dst);

// Resamples every frame of `src` onto `target` (frames preserved).
Image resample_image(DeviceContext& ctx, const Image& src, const Grid& target, Interp interp, OutOfBounds oob,
                     float fill = 0.0f);

// Nearest-neighbour resampling of a label map; voxels outside the source become 0 (background).
LabelMap resample_labels(DeviceContext& ctx, const LabelMap& src, const Grid& target);

}  // namespace iss
