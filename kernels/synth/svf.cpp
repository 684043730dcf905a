#include "kernels/synth/svf.h"

#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"  // ISS_CUDA_ONLY

namespace iss {

namespace {

// The CPU paths, a row at a time. The resize reads the source at (i, j, k) * ratio: the source's
// columns blended along y and z once per row, its x taps once per call, per voxel the blend
// along x and the scaling (ResizeFieldBody's operations). A squaring step reads at (i, j, k) + v(i, j, k): no shared taps, but the
// row runs square_voxel with int32 indices (vectorised).
void resize_rows_cpu(const ResizeFieldArgs& a) {
    const int32_t src_dim[3] = {int32_t(a.src_dim[0]), int32_t(a.src_dim[1]), int32_t(a.src_dim[2])};
    const int64_t nx = a.dst_dim[0], ny = a.dst_dim[1], nz = a.dst_dim[2];
    const RowTaps xt = row_taps<3>(nx, src_dim[0], [&](int64_t i) { return float(i) * a.ratio[0]; });
#pragma omp parallel
    {
        std::vector<float> columns(static_cast<size_t>(src_dim[0]) * 3);
#pragma omp for collapse(2) schedule(static)
        for (int64_t k = 0; k < nz; ++k)
            for (int64_t j = 0; j < ny; ++j) {
                field_columns<3>(a.src,
                                 field_rows<3>(src_dim[0], src_dim[1], detail::clamped_taps(float(j) * a.ratio[1], src_dim[1]),
                                               detail::clamped_taps(float(k) * a.ratio[2], src_dim[2])),
                                 src_dim[0], columns.data());
                const float* col = columns.data();
                float* __restrict out = a.dst + (k * ny + j) * nx * 3;
                const int32_t* x0 = xt.x0.data();
                const int32_t* x1 = xt.x1.data();
                const float* w = xt.w.data();
#pragma omp simd
                for (int32_t i = 0; i < int32_t(nx); ++i) {
                    out[3 * i] = blend_along_x(col[x0[i]], col[x1[i]], w[i]) * a.scale[0];
                    out[3 * i + 1] = blend_along_x(col[x0[i] + 1], col[x1[i] + 1], w[i]) * a.scale[1];
                    out[3 * i + 2] = blend_along_x(col[x0[i] + 2], col[x1[i] + 2], w[i]) * a.scale[2];
                }
            }
    }
}

void square_rows_cpu(const SquareFieldArgs& a) {
    const int32_t dim[3] = {int32_t(a.dim[0]), int32_t(a.dim[1]), int32_t(a.dim[2])};
#pragma omp parallel for collapse(2) schedule(static)
    for (int32_t k = 0; k < dim[2]; ++k)
        for (int32_t j = 0; j < dim[1]; ++j) {
#pragma omp simd
            for (int32_t i = 0; i < dim[0]; ++i) square_voxel(a, dim, i, j, k);
        }
}

}  // namespace

void resize_field(DeviceContext& ctx, const ResizeFieldArgs& a) {
    ISS_REQUIRE(a.src && a.dst, "resize_field: null field pointer");
    for (int d = 0; d < 3; ++d) ISS_REQUIRE(a.src_dim[d] > 0 && a.dst_dim[d] > 0, "resize_field: empty field");
    ISS_REQUIRE(a.src_dim[0] * a.src_dim[1] * a.src_dim[2] * 3 < (int64_t(1) << 31),
                "resize_field: a field of 2^31 values or more");  // the CPU rows index it in int32
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("resize_field", resize_field_cuda(ctx, a));
        return;
    }
    resize_rows_cpu(a);
}

void square_field(DeviceContext& ctx, const SquareFieldArgs& a) {
    ISS_REQUIRE(a.src && a.dst && a.src != a.dst, "square_field: null or aliased field pointers");
    for (int d = 0; d < 3; ++d) ISS_REQUIRE(a.dim[d] > 0, "square_field: empty field");
    ISS_REQUIRE(a.dim[0] * a.dim[1] * a.dim[2] * 3 < (int64_t(1) << 31), "square_field: a field of 2^31 values or more");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("square_field", square_field_cuda(ctx, a));
        return;
    }
    square_rows_cpu(a);
}

}  // namespace iss
