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

// Before `src` is resampled to voxels of `target_mm`: each axis it coarsens (factor = its voxel
// size / the target's, below 1) blurred with a Gaussian of 0.25 / factor of its voxels, as
// SynthSeg's resample_volume does (scipy's gaussian_filter: taps to 4 sigma, normalised, the
// volume mirrored at its faces, mode 'reflect'; float taps, sums in double), sigma at most 4 voxels (a factor
// below 1/16 is a header's in other units). Trilinear sampling alone reads one 0.4 mm voxel in 2.5
// and keeps its noise. Other axes, and a volume coarsened on none, are returned as they are.
// Every frame alike.
Image blurred_for_downsampling(const Image& src, const std::array<double, 3>& target_mm);

// Nearest-neighbour resampling of a label map; voxels outside the source become 0 (background).
LabelMap resample_labels(DeviceContext& ctx, const LabelMap& src, const Grid& target);

}  // namespace iss
