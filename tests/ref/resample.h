// Reference resampling in double, written from the definition (docs/KERNELS.md, "Resample"):
// plain loops, the trilinear value as the weighted sum of the 8 cell corners, never calling
// the kernel body. The voxel transform is given directly (output voxel -> source voxel).
#pragma once

#include <cstdint>
#include <vector>

#include "io/volume.h"

namespace iss::ref {

// Trilinear: every frame of `src` sampled at T * (i, j, k, 1) for each voxel of `dst_dim`.
// clamp: coordinates clamped to [0, n - 1]; otherwise voxels outside the source are `fill`.
std::vector<double> resample_linear(const Image& src, const Mat4& t, const std::array<int64_t, 3>& dst_dim,
                                    bool clamp, double fill);

// Nearest: index floor(p) + (p - floor(p) >= 0.5) per axis; outside -> fill (or clamped).
template <class T>
std::vector<T> resample_nearest(const Volume<T>& src, const Mat4& t, const std::array<int64_t, 3>& dst_dim,
                                bool clamp, T fill);

}  // namespace iss::ref
