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
#include "kernels/common/quad.h"
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
    // Padding a map smaller than the crop (pad_when_smaller): along such an axis a position
    // outside the map reads `outside` (the background's index), as if the map had been padded
    // with background; along the others it is clamped, as the reference repeats the edge.
    bool fill_outside[3] = {false, false, false};
    uint8_t outside = 0;
    uint8_t* out = nullptr;
};

// The map voxel (its offset in the map) that map position (x, y, z) with displacement
// (dx, dy, dz) reads: the affine about the centre, the nearest voxel, clamped; -1 when it falls
// outside the map along a fill_outside axis. I: the index type (int32_t in the CPU rows, where
// the map is smaller than 2^31 voxels; the same result).
template <class I>
ISS_HD_INLINE I deformed_axis(const DeformArgs& a, int r, float cx, float cy, float cz, I n) {
    const I i = detail::nearest_of(
        fmaf(a.affine[r][0], cx, fmaf(a.affine[r][1], cy, fmaf(a.affine[r][2], cz, a.source_centre[r]))), n);
    if (a.fill_outside[r] && (i < I(0) || i >= n)) return I(-1);
    return detail::clamp_index(i, n);
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
    if (sx < I(0) || sy < I(0) || sz < I(0)) return I(-1);
    return (sz * map_dim[1] + sy) * map_dim[0] + sx;
}

// The generation index at a source from deformed_source.
template <class I>
ISS_HD_INLINE uint8_t label_at(const DeformArgs& a, I source) {
    return source < I(0) ? a.outside : a.map[source];
}

// Four voxels of a row per call on CUDA (kernels/common/quad.h; fewer at the end of a row whose
// length is not a multiple of 4), in the launch's index type I (launch.h): the field's rows at
// the row's y and z are found once for the four, and rows of whole aligned quads are stored as
// one 32-bit word. The CPU samples the field separably with the same operations (deform.cpp).
struct DeformBody {
    DeformArgs a;
    ISS_HD LaunchGrid grid() const { return quad_grid(a.out_dim); }
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
    ISS_HD void operator()(I q, I j, I k) const {
        const I out_dim[3] = {I(a.out_dim[0]), I(a.out_dim[1]), I(a.out_dim[2])};
        const I field_dim[3] = {I(a.field_dim[0]), I(a.field_dim[1]), I(a.field_dim[2])};
        const I map_dim[3] = {I(a.map_dim[0]), I(a.map_dim[1]), I(a.map_dim[2])};
        // Output voxel (i, j, k) reads map position q + offset, q flipped on the flip axis.
        auto position = [&](int d, I p) {
            if (a.flip_axis == d) p = out_dim[d] - 1 - p;
            return float(p + I(a.offset[d]));
        };
        const float y = position(1, j), z = position(2, k);
        const FieldRows<I> rows =
            a.field ? field_rows_at<3>(field_dim, y * a.field_ratio[1], z * a.field_ratio[2]) : FieldRows<I>{};
        const I i = q * I(quad), count = quad_count(i, out_dim[0]);
        uint8_t labels[quad] = {0, 0, 0, 0};
        for (I v = 0; v < count; ++v) {
            const float x = position(0, i + v);
            float phi[3] = {0, 0, 0};
            if (a.field) sample_rows_at<3>(a.field, field_dim, rows, x * a.field_ratio[0], phi);
            const uint8_t g = label_at(a, deformed_source(a, map_dim, x, y, z, phi[0], phi[1], phi[2]));
            labels[v] = a.flip_axis >= 0 ? a.twin[g] : g;
        }
        uint8_t* out = a.out + (k * out_dim[1] + j) * out_dim[0] + i;
        if (whole_aligned_quads(a.out, a.out_dim[0], 1)) {
            store4(out, labels);
        } else {
            for (I v = 0; v < count; ++v) out[v] = labels[v];
        }
    }
};

void deform_labels(DeviceContext& ctx, const DeformArgs& args);
void deform_labels_cuda(DeviceContext& ctx, const DeformArgs& args);

}  // namespace iss
