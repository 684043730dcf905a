// Trilinear sampling of a small channels-last field (velocity: 3 channels, bias: 1) with
// coordinates clamped to the volume, as the reference's resize and integration do. Uses the
// tap and lerp helpers of the resampling kernel, so the rounding is the same everywhere:
// bit-identical on host and CUDA.
#pragma once

#include <cstdint>

#include "kernels/common/hd.h"
#include "kernels/geometry/resample.h"

namespace iss {

template <int C>
ISS_HD_INLINE void sample_field_clamped(const float* field, const int64_t dim[3], float px, float py, float pz,
                                        float out[C]) {
    const detail::LinearTaps tx = detail::linear_taps(px, dim[0], OutOfBounds::clamp);
    const detail::LinearTaps ty = detail::linear_taps(py, dim[1], OutOfBounds::clamp);
    const detail::LinearTaps tz = detail::linear_taps(pz, dim[2], OutOfBounds::clamp);
    const int64_t nx = dim[0], ny = dim[1];
    const float* r00 = field + ((tz.i0 * ny + ty.i0) * nx) * C;
    const float* r10 = field + ((tz.i0 * ny + ty.i1) * nx) * C;
    const float* r01 = field + ((tz.i1 * ny + ty.i0) * nx) * C;
    const float* r11 = field + ((tz.i1 * ny + ty.i1) * nx) * C;
    for (int c = 0; c < C; ++c) {
        const float c00 = detail::lerp(r00[tx.i0 * C + c], r00[tx.i1 * C + c], tx.w1);
        const float c10 = detail::lerp(r10[tx.i0 * C + c], r10[tx.i1 * C + c], tx.w1);
        const float c01 = detail::lerp(r01[tx.i0 * C + c], r01[tx.i1 * C + c], tx.w1);
        const float c11 = detail::lerp(r11[tx.i0 * C + c], r11[tx.i1 * C + c], tx.w1);
        out[c] = detail::lerp(detail::lerp(c00, c10, ty.w1), detail::lerp(c01, c11, ty.w1), tz.w1);
    }
}

}  // namespace iss
