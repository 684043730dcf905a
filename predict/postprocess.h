// Predict's post-processing (predictor.h, steps 6-8), on its own so that it can be measured
// against the SciPy baseline (bench_predict PredictPost) and reused.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "io/volume.h"

namespace iss {

class DeviceContext;

// Step 6: every posterior channel smoothed with a Gaussian of sigma 0.5 voxel (3 taps, zero
// outside the padded volume, the voxels next to its faces then divided by their sum so that
// every voxel's posteriors sum to 1), all channels in one pass per axis in the network's
// channels-last layout
// (`channels_last`, host memory of padded_dim's voxels x classes floats; on the CPU it is
// smoothed in place of the network's output, which it overwrites), then cropped to `grid` (which
// starts at `before` in the padded grid) and turned channel-first: one frame per class.
Image smooth_and_crop_posteriors(DeviceContext& ctx, float* channels_last,
                                 const std::array<int64_t, 3>& padded_dim, const std::array<int64_t, 3>& before,
                                 const Grid& grid, int64_t classes);

// Step 7: the label of each voxel's largest posterior (the first of equal maxima), then only the
// largest 6-connected component of the non-background voxels kept. `background` (one byte a voxel,
// optional): voxels labelled 0 whatever their posteriors, before the component is found.
LabelMap segment_posteriors(const Image& posteriors, const std::vector<int32_t>& labels,
                            const std::vector<uint8_t>* background = nullptr);

// Soft volumes: per label, the sum of its posterior times the voxel volume in mm^3, rounded to
// 0.001 mm^3 (background: 0).
std::vector<double> posterior_volumes_mm3(const Image& posteriors, const std::vector<int32_t>& labels);

}  // namespace iss
