// The nonlinear part of the spatial transform (SPEC.md 3.2): a stationary velocity field on a
// coarse grid, resized trilinearly to the integration grid and integrated by scaling and
// squaring. Fields are channels-last float (x, y, z components per voxel), in voxel units of
// the grid they live on.
//
// Resize (the reference's semantics): output voxel x samples the source at x * ratio with
// ratio = src_dim / dst_dim per axis (origin-aligned, not centre-aligned), clamped, and
// multiplies component d by scale[d] (1 in the reference; the ratio's inverse when the
// displacements are rescaled with the grid). The 1 / 2^steps of scaling and squaring is folded
// into scale.
// Squaring step: v'(x) = v(x) + v(x + v(x)), trilinear, clamped.
// CPU/GPU contract: bit-identical (only correctly rounded operations, fmaf spelled out).
#pragma once

#include <cstdint>

#include "kernels/common/hd.h"
#include "kernels/common/index_type.h"
#include "kernels/synth/field_sample.h"

namespace iss {

class DeviceContext;

struct ResizeFieldArgs {
    const float* src = nullptr;
    float* dst = nullptr;
    int64_t src_dim[3] = {0, 0, 0};
    int64_t dst_dim[3] = {0, 0, 0};
    float ratio[3] = {1, 1, 1};
    float scale[3] = {1, 1, 1};
};

// Per voxel (CUDA), in the launch's index type I (launch.h); the CPU samples separably with the
// same operations (svf.cpp).
struct ResizeFieldBody {
    ResizeFieldArgs a;
    ISS_HD LaunchGrid grid() const { return voxel_grid(a.dst_dim); }
    ISS_HD int64_t index_extent() const {
        const int64_t src = a.src_dim[0] * a.src_dim[1] * a.src_dim[2];
        const int64_t dst = a.dst_dim[0] * a.dst_dim[1] * a.dst_dim[2];
        return 3 * (src > dst ? src : dst);
    }
    template <class I>
    ISS_HD void operator()(I i, I j, I k) const {
        const I src_dim[3] = {I(a.src_dim[0]), I(a.src_dim[1]), I(a.src_dim[2])};
        float v[3];
        sample_field_rowwise<3>(a.src, src_dim, float(i) * a.ratio[0], float(j) * a.ratio[1], float(k) * a.ratio[2], v);
        float* out = a.dst + ((k * I(a.dst_dim[1]) + j) * I(a.dst_dim[0]) + i) * 3;
        for (int c = 0; c < 3; ++c) out[c] = v[c] * a.scale[c];
    }
};

struct SquareFieldArgs {
    const float* src = nullptr;
    float* dst = nullptr;  // must not alias src
    int64_t dim[3] = {0, 0, 0};
};

// One voxel of a squaring step. I: the launch's index type on CUDA, int32_t in the CPU rows
// (vectorised), where the field is smaller than 2^31 floats; the same result.
template <class I>
ISS_HD_INLINE void square_voxel(const SquareFieldArgs& a, const I dim[3], I i, I j, I k) {
    const I at = ((k * dim[1] + j) * dim[0] + i) * 3;
    const float vx = a.src[at], vy = a.src[at + 1], vz = a.src[at + 2];
    const detail::Taps<I> tx = detail::clamped_taps(float(i) + vx, dim[0]);
    const FieldRows<I> rows = field_rows<3>(dim[0], dim[1], detail::clamped_taps(float(j) + vy, dim[1]),
                                         detail::clamped_taps(float(k) + vz, dim[2]));
    // All three channels before any store: a store to dst could alias src as far as the compiler
    // knows, so interleaved it held each channel's 8 loads back behind the previous channel's
    // store (three round trips to memory a voxel on a GPU, where one does).
    const float x = vx + blend_channel(a.src, rows, tx.i0 * 3, tx.i1 * 3, tx.w1, 0);
    const float y = vy + blend_channel(a.src, rows, tx.i0 * 3, tx.i1 * 3, tx.w1, 1);
    const float z = vz + blend_channel(a.src, rows, tx.i0 * 3, tx.i1 * 3, tx.w1, 2);
    a.dst[at] = x;
    a.dst[at + 1] = y;
    a.dst[at + 2] = z;
}

struct SquareFieldBody {
    SquareFieldArgs a;
    ISS_HD LaunchGrid grid() const { return voxel_grid(a.dim); }
    ISS_HD int64_t index_extent() const { return 3 * a.dim[0] * a.dim[1] * a.dim[2]; }
    template <class I>
    ISS_HD void operator()(I i, I j, I k) const {
        const I dim[3] = {I(a.dim[0]), I(a.dim[1]), I(a.dim[2])};
        square_voxel(a, dim, i, j, k);
    }
};

void resize_field(DeviceContext& ctx, const ResizeFieldArgs& args);
void square_field(DeviceContext& ctx, const SquareFieldArgs& args);
void resize_field_cuda(DeviceContext& ctx, const ResizeFieldArgs& args);
void square_field_cuda(DeviceContext& ctx, const SquareFieldArgs& args);

}  // namespace iss
