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

// The map voxel (its offset in the map) that map position (x, y, z) with displacement
// (dx, dy, dz) reads: the affine about the centre, the nearest voxel, clamped. I: the index type
// (int32_t in the CPU rows, where the map is smaller than 2^31 voxels; the same result).
template <class I>
ISS_HD_INLINE I deformed_axis(const DeformArgs& a, int r, float cx, float cy, float cz, I n) {
    return detail::nearest_clamped(fmaf(a.affine[r][0], cx, fmaf(a.affine[r][1], cy, fmaf(a.affine[r][2], cz, a.source_centre[r]))), n);
}

template <class I>
ISS_HD_INLINE I deformed_source(const DeformArgs& a, const I map_dim[3], float x, float y, float z, float dx, float dy,
                                float dz) {
    const float cx = fmaf(dx, a.field_scale[0], x - a.centre[0]);
    const float cy = fmaf(dy, a.field_scale[1], y - a.centre[1]);
    const float cz = fmaf(dz, a.field_scale[2], z - a.centre[2]);
    const I sx = deformed_axis(a, 0, cx, cy, cz, map_dim[0]);
    const I sy = deformed_axis(a, 1, cx, cy, cz, map_dim[1]);
    const I sz = deformed_axis(a, 2, cx, cy, cz, map_dim[2]);
    return (sz * map_dim[1] + sy) * map_dim[0] + sx;
}

// Per voxel (CUDA), in the launch's index type I (launch.h); the CPU samples the field
// separably with the same operations (deform.cpp).
struct DeformBody {
    DeformArgs a;
    ISS_HD const int64_t* grid() const { return a.out_dim; }
    // The map, the field's floats, the output, and the map positions q + offset.
    ISS_HD int64_t index_extent() const {
        int64_t extent = a.map_dim[0] * a.map_dim[1] * a.map_dim[2];
        const int64_t field = a.field ? 3 * a.field_dim[0] * a.field_dim[1] * a.field_dim[2] : 0;
        const int64_t out = a.out_dim[0] * a.out_dim[1] * a.out_dim[2];
        extent = extent > field ? extent : field;
        extent = extent > out ? extent : out;
        for (int d = 0; d < 3; ++d) {
            const int64_t reach = (a.offset[d] < 0 ? -a.offset[d] : a.offset[d]) + a.out_dim[d];
            extent = extent > reach ? extent : reach;
        }
        return extent;
    }
    template <class I>
    ISS_HD void operator()(I i, I j, I k) const {
        const I out_dim[3] = {I(a.out_dim[0]), I(a.out_dim[1]), I(a.out_dim[2])};
        I q[3] = {i, j, k};
        if (a.flip_axis >= 0) q[a.flip_axis] = out_dim[a.flip_axis] - 1 - q[a.flip_axis];
        float x[3];
        for (int d = 0; d < 3; ++d) x[d] = float(q[d] + I(a.offset[d]));
        float phi[3] = {0, 0, 0};
        if (a.field) {
            const I field_dim[3] = {I(a.field_dim[0]), I(a.field_dim[1]), I(a.field_dim[2])};
            sample_field_rowwise<3>(a.field, field_dim, x[0] * a.field_ratio[0], x[1] * a.field_ratio[1],
                                    x[2] * a.field_ratio[2], phi);
        }
        const I map_dim[3] = {I(a.map_dim[0]), I(a.map_dim[1]), I(a.map_dim[2])};
        const uint8_t g = a.map[deformed_source(a, map_dim, x[0], x[1], x[2], phi[0], phi[1], phi[2])];
        a.out[(k * out_dim[1] + j) * out_dim[0] + i] = a.flip_axis >= 0 ? a.twin[g] : g;
    }
};

void deform_labels(DeviceContext& ctx, const DeformArgs& args);
void deform_labels_cuda(DeviceContext& ctx, const DeformArgs& args);

}  // namespace iss
