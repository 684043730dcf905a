// T1/T2 merge (SPEC.md section 6): two predictions of one subject, from a T1 and a T2 image on
// the same voxel grid, combined voxel by voxel. The segmentation keeps the T1 label where the
// T1 posteriors' maximum is strictly greater than the T2 posteriors' maximum, else the T2
// label (exact ties go to T2); the merged posteriors are the element-wise maximum of the two
// posterior vectors (so they need not sum to 1). A NaN posterior never wins a comparison.
#pragma once

#include <cstdint>
#include <vector>

#include "post/prediction.h"

namespace iss {

// Both predictions: segmentations on one grid, posteriors on that grid with the same frame
// count. `t1` is taken by value so that a caller done with it (std::move) lends its memory to
// the result: the posteriors of a 34-label infant volume are over 500 MB. The result's frames
// are in T1's order; `t2_frames[f]` is the T2 frame of the label of T1's frame f (empty: the
// same order; frames_in_order_of gives it for two label lists).
// Preconditions (checked, iss::Error): equal dims and frame counts, `t2_frames` empty or a
// permutation; grids are the caller's to compare with require_same_grid, which can name the files.
Prediction merge_t1_t2(Prediction t1, const Prediction& t2, std::vector<int64_t> t2_frames = {});

}  // namespace iss
