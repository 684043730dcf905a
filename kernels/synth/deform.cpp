#include "kernels/synth/deform.h"

#include <algorithm>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"  // ISS_CUDA_ONLY

namespace iss {

namespace {

// The CPU path, a row at a time: the field's columns blended along y and z once per row, the x
// positions and the field's x taps once per call (a flip along x included), and per voxel the
// blend along x and DeformBody's arithmetic with int32 indices (vectorised).
void deform_rows_cpu(const DeformArgs& a) {
    const int64_t nx = a.out_dim[0], ny = a.out_dim[1], nz = a.out_dim[2];
    const int32_t map_dim[3] = {int32_t(a.map_dim[0]), int32_t(a.map_dim[1]), int32_t(a.map_dim[2])};
    const int32_t field_dim[3] = {int32_t(a.field_dim[0]), int32_t(a.field_dim[1]), int32_t(a.field_dim[2])};
    auto position = [&](int d, int64_t q) {
        if (a.flip_axis == d) q = a.out_dim[d] - 1 - q;
        return float(q + a.offset[d]);
    };
    // Local copies of the pointers: the byte stores below could alias `a`, which would make the
    // compiler reload them for every voxel.
    const uint8_t* const map = a.map;
    const uint8_t* const twin = a.twin;  // the twin of each label (flipping only)
    const bool fills = a.fill_outside[0] || a.fill_outside[1] || a.fill_outside[2];  // sources may be -1
    std::vector<float> xs(static_cast<size_t>(nx));
    for (int64_t i = 0; i < nx; ++i) xs[size_t(i)] = position(0, i);
    const RowTaps xt =
        a.field ? row_taps<3>(nx, field_dim[0], [&](int64_t i) { return xs[size_t(i)] * a.field_ratio[0]; }) : RowTaps{};
    constexpr int32_t chunk = 256;  // a multiple of 16: blend_columns_along_x starts its groups there
#pragma omp parallel
    {
        std::vector<float> columns = column_buffer<3>(field_dim[0]);
        int32_t source[chunk];
        float displacement[3][chunk];
        float* const displacement_of[3] = {displacement[0], displacement[1], displacement[2]};
        // Rows handed out in runs of 32: a row's cost varies with where its sources fall in the
        // map (the gathers' cache misses), so equal static halves left one thread waiting.
#pragma omp for collapse(2) schedule(dynamic, 32)
        for (int64_t k = 0; k < nz; ++k)
            for (int64_t j = 0; j < ny; ++j) {
                const float y = position(1, j), z = position(2, k);
                if (a.field)
                    field_columns<3>(a.field,
                                     field_rows<3>(field_dim[0], field_dim[1], detail::clamped_taps(y * a.field_ratio[1], field_dim[1]),
                                                   detail::clamped_taps(z * a.field_ratio[2], field_dim[2])),
                                     field_dim[0], columns.data());
                const float* col = columns.data();
                uint8_t* out = a.out + (k * ny + j) * nx;
                // The arithmetic vectorises; the byte gather from the map does not, so it follows.
                for (int32_t start = 0; start < int32_t(nx); start += chunk) {
                    const int32_t n = std::min<int32_t>(chunk, int32_t(nx) - start);
                    const float* x_of = xs.data() + start;
                    if (a.field) {
                        blend_columns_along_x<3>(col, xt, start, n, displacement_of);
#pragma omp simd
                        for (int32_t i = 0; i < n; ++i)
                            source[i] = deformed_source(a, map_dim, x_of[i], y, z, displacement[0][i], displacement[1][i],
                                                        displacement[2][i]);
                    } else {
#pragma omp simd
                        for (int32_t i = 0; i < n; ++i) source[i] = deformed_source(a, map_dim, x_of[i], y, z, 0.0f, 0.0f, 0.0f);
                    }
                    if (fills) {
                        for (int32_t i = 0; i < n; ++i) {
                            const uint8_t g = source[i] < 0 ? a.outside : map[source[i]];
                            out[start + i] = a.flip_axis >= 0 ? twin[g] : g;
                        }
                    } else if (a.flip_axis >= 0) {
                        for (int32_t i = 0; i < n; ++i) out[start + i] = twin[map[source[i]]];
                    } else {
                        for (int32_t i = 0; i < n; ++i) out[start + i] = map[source[i]];
                    }
                }
            }
    }
}

}  // namespace

void deform_labels(DeviceContext& ctx, const DeformArgs& a) {
    ISS_REQUIRE(a.map && a.out, "deform_labels: null label map or output");
    for (int d = 0; d < 3; ++d) {
        ISS_REQUIRE(a.map_dim[d] > 0 && a.out_dim[d] > 0, "deform_labels: empty label map or output");
        ISS_REQUIRE(!a.field || a.field_dim[d] > 0, "deform_labels: empty displacement field");
    }
    ISS_REQUIRE(a.flip_axis >= -1 && a.flip_axis < 3, "deform_labels: flip axis ", a.flip_axis);
    // The CPU rows index the map and the field in int32.
    ISS_REQUIRE(a.map_dim[0] * a.map_dim[1] * a.map_dim[2] < (int64_t(1) << 31), "deform_labels: a map of 2^31 voxels or more");
    ISS_REQUIRE(!a.field || a.field_dim[0] * a.field_dim[1] * a.field_dim[2] * 3 < (int64_t(1) << 31),
                "deform_labels: a field of 2^31 values or more");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("deform_labels", deform_labels_cuda(ctx, a));
        return;
    }
    deform_rows_cpu(a);
}

}  // namespace iss
