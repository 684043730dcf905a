// The generator's spatial stage in one gather (SPEC.md 3.2-3.4): for every voxel of the output
// crop, find its position in the (uncropped) label map through the random affine and the
// integrated velocity field, and take the label index there by nearest neighbour with clamped
// coordinates; optionally mirror along the left-right axis and swap left/right labels.
//
// Output voxel q (after the flip, q_a -> n_a - 1 - q_a on the flip axis) sits at map position
// x = q + offset. The displacement phi(x) is the integrated field sampled trilinearly at
// x * field_ratio (the reference's origin-aligned resize), times field_scale per component.
// With c = x - centre, centre = (map_dim - 1) / 2, the source is A (c + phi) + centre + t
// (source_centre = centre + t, the translation t being 0 in the reference).
// Layout: label maps hold generation indices (uint8), x fastest; the field is channels-last.
// CPU/GPU contract: bit-identical (fmaf spelled out; integer outputs compared exactly).
#pragma once

#include <cstdint>

#include "kernels/common/hd.h"
#include "kernels/geometry/resample.h"
#include "kernels/synth/field_sample.h"

namespace iss {

class DeviceContext;

constexpr int max_generation_labels = 255;

struct DeformArgs {
    const uint8_t* map = nullptr;  // generation indices of the training label map
    int64_t map_dim[3] = {0, 0, 0};
    const float* field = nullptr;  // integrated displacement (may be null: affine only)
    int64_t field_dim[3] = {0, 0, 0};
    float field_ratio[3] = {1, 1, 1};
    float field_scale[3] = {1, 1, 1};
    float affine[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    float centre[3] = {0, 0, 0};
    float source_centre[3] = {0, 0, 0};
    int64_t offset[3] = {0, 0, 0};  // crop start in map voxels
    int64_t out_dim[3] = {0, 0, 0};
    int flip_axis = -1;  // -1: no flip
    uint8_t twin[max_generation_labels + 1] = {};  // generation index of the left/right twin
    uint8_t* out = nullptr;
};

struct DeformBody {
    DeformArgs a;
    ISS_HD void operator()(int64_t i, int64_t j, int64_t k) const {
        int64_t q[3] = {i, j, k};
        if (a.flip_axis >= 0) q[a.flip_axis] = a.out_dim[a.flip_axis] - 1 - q[a.flip_axis];
        float x[3];
        for (int d = 0; d < 3; ++d) x[d] = float(q[d] + a.offset[d]);
        float phi[3] = {0, 0, 0};
        if (a.field)
            sample_field_clamped<3>(a.field, a.field_dim, x[0] * a.field_ratio[0], x[1] * a.field_ratio[1],
                                    x[2] * a.field_ratio[2], phi);
        float c[3];
        for (int d = 0; d < 3; ++d) c[d] = fmaf(phi[d], a.field_scale[d], x[d] - a.centre[d]);
        int64_t s[3];
        for (int r = 0; r < 3; ++r) {
            const float p = fmaf(a.affine[r][0], c[0], fmaf(a.affine[r][1], c[1], fmaf(a.affine[r][2], c[2], a.source_centre[r])));
            s[r] = detail::nearest_index(p, a.map_dim[r], OutOfBounds::clamp);
        }
        uint8_t g = a.map[(s[2] * a.map_dim[1] + s[1]) * a.map_dim[0] + s[0]];
        if (a.flip_axis >= 0) g = a.twin[g];
        a.out[(k * a.out_dim[1] + j) * a.out_dim[0] + i] = g;
    }
};

void deform_labels(DeviceContext& ctx, const DeformArgs& args);
void deform_labels_cuda(DeviceContext& ctx, const DeformArgs& args);

}  // namespace iss
