// Connected components of a label volume with 6-connectivity (voxels that share a face; edge
// and corner neighbours are not connected), as the reference post-processing uses. One
// labelling pass: each voxel is visited by the scan once and pushed on a breadth-first queue
// at most once, so the cost is linear in the voxel count whatever the shapes.
//
// Component ids are numbered in the order of each component's first voxel in NIfTI memory
// order (i fastest), so the numbering, and every "largest" choice made from it (ties go to
// the lower id), depends only on the volume.
#pragma once

#include <cstdint>
#include <vector>

#include "io/volume.h"

namespace iss {

// A 0/1 mask on a grid (1 = inside). uint8_t rather than bool: std::vector<bool> packs bits
// and has no element references, which Volume<T>::at needs.
using Mask = Volume<uint8_t>;

struct Components {
    LabelMap id;                 // component of each voxel; -1 where no component (skipped voxels)
    std::vector<int64_t> size;   // voxels in each component
    std::vector<int32_t> label;  // the label value all voxels of the component share

    int32_t count() const { return int32_t(size.size()); }
};

// 6-connected components of equal-valued voxels of a 3-D label map. Voxels equal to 0
// (background) get id -1 and belong to no component unless `include_background`.
// Precondition: one frame and fewer than 2^31 voxels.
Components connected_components(const LabelMap& labels, bool include_background = false);

// The largest 6-connected component of the non-background (label != 0) voxels, whatever their
// labels (ties: the one whose first voxel comes first in memory order; all zeros when there are
// none): predict's "keep the brain, drop the specks" step (SPEC.md section 6, step 6).
Mask largest_foreground_component(const LabelMap& labels);

}  // namespace iss
