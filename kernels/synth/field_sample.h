// Trilinear sampling of a small channels-last field (velocity: 3 channels, bias: 1) with
// coordinates clamped to the volume, as the reference's resize and integration do. Uses the
// tap and lerp helpers of the resampling kernel, so the rounding is the same everywhere:
// bit-identical on host and CUDA.
//
// Two orders of the same trilinear blend, each used identically by CUDA's per-voxel bodies and
// the CPU's rows:
//   - blend_channel: along x, then y, then z. For samples that each have their own position
//     (the squaring steps of the integration, svf.h's square_voxel).
//   - sample_field_rowwise: along y and z first, then x. For fields read along rows, where a
//     whole row of samples shares y and z (the resize, the deformation, the bias field): a CPU
//     row blends each column of the field once (field_columns) and each sample only along x.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/common/hd.h"
#include "kernels/geometry/resample.h"

namespace iss {

// The four rows (y0 z0, y1 z0, y0 z1, y1 z1) of the cells at y/z taps, as offsets in floats
// from the field's start (offsets, not pointers: a vectorised CPU loop then gathers with one
// base and 32-bit indices), and their weights.
template <class I>
struct FieldRows {
    I r00, r10, r01, r11;
    float wy, wz;
};

template <int C, class I>
ISS_HD_INLINE FieldRows<I> field_rows(I nx, I ny, const detail::Taps<I>& ty, const detail::Taps<I>& tz) {
    FieldRows<I> r;
    r.r00 = ((tz.i0 * ny + ty.i0) * nx) * C;
    r.r10 = ((tz.i0 * ny + ty.i1) * nx) * C;
    r.r01 = ((tz.i1 * ny + ty.i0) * nx) * C;
    r.r11 = ((tz.i1 * ny + ty.i1) * nx) * C;
    r.wy = ty.w1;
    r.wz = tz.w1;
    return r;
}

// The blend of channel c of one cell: along x (x0, x1: offsets of the two samples in the rows,
// in floats), then y, then z. The one order every backend uses. (Returned by value: a local
// array in a CPU row's simd loop would become a scatter.)
template <class I>
ISS_HD_INLINE float blend_channel(const float* field, const FieldRows<I>& r, I x0, I x1, float wx, int c) {
    const float c00 = detail::lerp(field[r.r00 + x0 + c], field[r.r00 + x1 + c], wx);
    const float c10 = detail::lerp(field[r.r10 + x0 + c], field[r.r10 + x1 + c], wx);
    const float c01 = detail::lerp(field[r.r01 + x0 + c], field[r.r01 + x1 + c], wx);
    const float c11 = detail::lerp(field[r.r11 + x0 + c], field[r.r11 + x1 + c], wx);
    return detail::lerp(detail::lerp(c00, c10, r.wy), detail::lerp(c01, c11, r.wy), r.wz);
}

// Channel c of column x (its offset in floats) of a cell's rows, blended along y, then z.
template <class I>
ISS_HD_INLINE float blend_column(const float* field, const FieldRows<I>& r, I x, int c) {
    return detail::lerp(detail::lerp(field[r.r00 + x + c], field[r.r10 + x + c], r.wy),
                        detail::lerp(field[r.r01 + x + c], field[r.r11 + x + c], r.wy), r.wz);
}

// Two columns' blends, then along x.
ISS_HD_INLINE float blend_along_x(float column0, float column1, float wx) { return detail::lerp(column0, column1, wx); }

// The field at (px, py, pz) in its voxel coordinates, clamped, blended along y and z first,
// then x. I: int64_t, or int32_t where the field is smaller than 2^31 floats (the same result).
template <int C, class I>
ISS_HD_INLINE void sample_field_rowwise(const float* field, const I dim[3], float px, float py, float pz,
                                        float out[C]) {
    const detail::Taps<I> tx = detail::clamped_taps(px, dim[0]);
    const FieldRows<I> rows = field_rows<C>(dim[0], dim[1], detail::clamped_taps(py, dim[1]), detail::clamped_taps(pz, dim[2]));
    for (int c = 0; c < C; ++c)
        out[c] = blend_along_x(blend_column(field, rows, tx.i0 * C, c), blend_column(field, rows, tx.i1 * C, c), tx.w1);
}

#if !defined(__CUDACC__)  // the CPU rows' helpers (OpenMP is for the host compiler only)

// A CPU row's columns: columns[x * C + c] = blend_column of column x, for the field's nx columns.
// Written as one flat loop over the row's nx * C floats (float x * C + c is channel c of column
// x: blend_column's operations on the same values), so that it vectorises.
template <int C>
inline void field_columns(const float* field, const FieldRows<int32_t>& rows, int32_t nx, float* __restrict columns) {
    const float* r00 = field + rows.r00;
    const float* r10 = field + rows.r10;
    const float* r01 = field + rows.r01;
    const float* r11 = field + rows.r11;
#pragma omp simd
    for (int32_t f = 0; f < nx * C; ++f)
        columns[f] = detail::lerp(detail::lerp(r00[f], r10[f], rows.wy), detail::lerp(r01[f], r11[f], rows.wy), rows.wz);
}

// The x taps of a CPU row of samples (sample i at x position `position(i)` of a field n voxels
// wide), as the samplers compute them: offsets in floats (tap index times C) and the
// upper tap's weight, one array each so that the row's loop vectorises.
struct RowTaps {
    std::vector<int32_t> x0, x1;
    std::vector<float> w;
};

template <int C, class Position>
inline RowTaps row_taps(int64_t samples, int32_t n, const Position& position) {
    RowTaps t;
    t.x0.resize(size_t(samples));
    t.x1.resize(size_t(samples));
    t.w.resize(size_t(samples));
    for (int64_t i = 0; i < samples; ++i) {
        const detail::Taps<int32_t> taps = detail::clamped_taps(position(i), n);
        t.x0[size_t(i)] = taps.i0 * C;
        t.x1[size_t(i)] = taps.i1 * C;
        t.w[size_t(i)] = taps.w1;
    }
    return t;
}

#endif  // !__CUDACC__

}  // namespace iss
