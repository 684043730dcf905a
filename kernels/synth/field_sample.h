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

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/common/hd.h"
#include "kernels/common/x86_simd.h"
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

// sample_field_rowwise in two parts, for samples that share y and z (a row's): the rows at
// (py, pz) once, then each sample's blend at px.
template <int C, class I>
ISS_HD_INLINE FieldRows<I> field_rows_at(const I dim[3], float py, float pz) {
    return field_rows<C>(dim[0], dim[1], detail::clamped_taps(py, dim[1]), detail::clamped_taps(pz, dim[2]));
}

template <int C, class I>
ISS_HD_INLINE void sample_rows_at(const float* field, const I dim[3], const FieldRows<I>& rows, float px, float out[C]) {
    const detail::Taps<I> tx = detail::clamped_taps(px, dim[0]);
    for (int c = 0; c < C; ++c)
        out[c] = blend_along_x(blend_column(field, rows, tx.i0 * C, c), blend_column(field, rows, tx.i1 * C, c), tx.w1);
}

// The field at (px, py, pz) in its voxel coordinates, clamped, blended along y and z first,
// then x. I: int64_t, or int32_t where the field is smaller than 2^31 floats (the same result).
template <int C, class I>
ISS_HD_INLINE void sample_field_rowwise(const float* field, const I dim[3], float px, float py, float pz,
                                        float out[C]) {
    sample_rows_at<C>(field, dim, field_rows_at<C>(dim, py, pz), px, out);
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

// A row's columns buffer for a field nx voxels wide: nx * C floats, then room for the wide loads
// of blend_columns_along_x.
template <int C>
inline std::vector<float> column_buffer(int64_t nx) {
    return std::vector<float>(static_cast<size_t>(nx * C + 32));
}

// The x taps of a CPU row of samples (sample i at x position `position(i)` of a field n voxels
// wide), as the samplers compute them: offsets in floats (tap index times C) and the
// upper tap's weight, one array each so that the row's loop vectorises.
// For AVX-512, also a plan per group of 16 samples (samples 16g .. 16g + 15): where the floats
// its taps read lie within 32 of one another, the offset `base` of the first (else -1), and
// each lane's x0 + c and x1 + c relative to it (16 of each, channel by channel), so that two
// loads and a permute per channel replace the gathers.
struct RowTaps {
    std::vector<int32_t> x0, x1;
    std::vector<float> w;
    int32_t reach = 0;  // the floats of the columns that the taps read: max of x1 + C
    std::vector<int32_t> group_base;
    std::vector<int32_t> group_lanes;  // group g, channel c: x0 lanes at (g * 2C + 2c) * 16, x1 lanes next
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
        t.reach = std::max(t.reach, taps.i1 * C + C);
    }
    const int64_t groups = (samples + 15) / 16;
    t.group_base.assign(size_t(groups), -1);
    t.group_lanes.assign(size_t(groups * 2 * C * 16), 0);
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t first = 16 * g, last = std::min(samples, first + 16);
        int32_t low = t.x0[size_t(first)], high = t.x1[size_t(first)];
        for (int64_t i = first; i < last; ++i) {
            low = std::min(low, t.x0[size_t(i)]);
            high = std::max(high, t.x1[size_t(i)]);
        }
        if (high + C - 1 - low >= 32) continue;
        t.group_base[size_t(g)] = low;
        for (int64_t i = first; i < last; ++i)
            for (int c = 0; c < C; ++c) {
                t.group_lanes[size_t((g * 2 * C + 2 * c) * 16 + i - first)] = t.x0[size_t(i)] + c - low;
                t.group_lanes[size_t((g * 2 * C + 2 * c + 1) * 16 + i - first)] = t.x1[size_t(i)] + c - low;
            }
    }
    return t;
}

// Samples start .. start + n - 1 of a row (start a multiple of 16) blended along x:
// out[c][i - start] = blend_along_x(columns[x0[i] + c], columns[x1[i] + c], w[i]). `columns`
// from column_buffer. AVX-512 takes the plan's two loads and permutes (gathers for a group whose
// taps spread wider); AVX2 a permute where the taps fit one vector, else 4-float loads; the
// same values, blended by the same operation.
template <int C>
inline void blend_columns_along_x(const float* columns, const RowTaps& t, int64_t start, int64_t n,
                                  float* const out[C]) {
#if defined(__AVX512F__)
    for (int64_t i = 0; i < n; i += 16) {
        const int64_t g = (start + i) / 16;
        const __mmask16 lanes = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1u);
        const __m512 w = _mm512_maskz_loadu_ps(lanes, t.w.data() + start + i);
        const int32_t base = t.group_base[size_t(g)];
        for (int c = 0; c < C; ++c) {
            __m512 a, b;
            if (base >= 0) {
                const __m512 low = _mm512_loadu_ps(columns + base), high = _mm512_loadu_ps(columns + base + 16);
                const int32_t* lane = t.group_lanes.data() + (g * 2 * C + 2 * c) * 16;
                a = _mm512_permutex2var_ps(low, _mm512_loadu_si512(lane), high);
                b = _mm512_permutex2var_ps(low, _mm512_loadu_si512(lane + 16), high);
            } else {
                const __m512i c_lanes = _mm512_set1_epi32(c);
                const __m512i i0 = _mm512_add_epi32(_mm512_maskz_loadu_epi32(lanes, t.x0.data() + start + i), c_lanes);
                const __m512i i1 = _mm512_add_epi32(_mm512_maskz_loadu_epi32(lanes, t.x1.data() + start + i), c_lanes);
                a = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, i0, columns, 4);
                b = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, i1, columns, 4);
            }
            _mm512_mask_storeu_ps(out[c] + i, lanes, lerp16(a, b, w));
        }
    }
#elif defined(ISS_X86_AVX2)
    // Without AVX-512 gathers are slow. Where the taps read at most 8 floats (a small field,
    // the bias grid's), those are one vector and a look-up is a permute; otherwise a sample's
    // C <= 4 channels of a tap are contiguous, so one 4-float load brings them (the buffer's
    // padding covers the last tap's excess).
    static_assert(C <= 4, "one load holds a tap's channels");
    const int32_t* x0 = t.x0.data() + start;
    const int32_t* x1 = t.x1.data() + start;
    const float* w = t.w.data() + start;
    int64_t i = 0;
    if (t.reach <= 8) {
        const __m256 all = _mm256_loadu_ps(columns);
        for (; i + 8 <= n; i += 8) {
            const __m256i at0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + i));
            const __m256i at1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1 + i));
            const __m256 weight = _mm256_loadu_ps(w + i);
            for (int c = 0; c < C; ++c) {
                const __m256i lane = _mm256_set1_epi32(c);
                const __m256 a = _mm256_permutevar8x32_ps(all, _mm256_add_epi32(at0, lane));
                const __m256 b = _mm256_permutevar8x32_ps(all, _mm256_add_epi32(at1, lane));
                _mm256_storeu_ps(out[c] + i, lerp8(a, b, weight));
            }
        }
    }
    // 8 samples at a time: samples q and q + 4 in the halves of one vector, then a 4 x 4
    // transpose in each half puts channel c of the 8 in order in one vector.
    for (; i + 8 <= n; i += 8) {
        const __m256 weights = _mm256_loadu_ps(w + i);
        __m256 r[4];
        for (int q = 0; q < 4; ++q) {
            const int64_t low = i + q, high = i + q + 4;
            const __m256 a = _mm256_set_m128(_mm_loadu_ps(columns + x0[high]), _mm_loadu_ps(columns + x0[low]));
            const __m256 b = _mm256_set_m128(_mm_loadu_ps(columns + x1[high]), _mm_loadu_ps(columns + x1[low]));
            const __m256i pick = _mm256_setr_epi32(q, q, q, q, q + 4, q + 4, q + 4, q + 4);
            r[q] = lerp8(a, b, _mm256_permutevar8x32_ps(weights, pick));
        }
        const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
        const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
        const __m256 channel[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                                   _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
        for (int c = 0; c < C; ++c) _mm256_storeu_ps(out[c] + i, channel[c]);
    }
    for (; i < n; ++i) {
        const __m128 a = _mm_loadu_ps(columns + x0[i]), b = _mm_loadu_ps(columns + x1[i]);
        alignas(16) float blended[4];
        _mm_store_ps(blended, lerp4(a, b, _mm_set1_ps(w[i])));
        for (int c = 0; c < C; ++c) out[c][i] = blended[c];
    }
#else
    const int32_t* x0 = t.x0.data() + start;
    const int32_t* x1 = t.x1.data() + start;
    const float* w = t.w.data() + start;
    for (int c = 0; c < C; ++c) {
        float* __restrict o = out[c];
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) o[i] = blend_along_x(columns[x0[i] + c], columns[x1[i] + c], w[i]);
    }
#endif
}

#endif  // !__CUDACC__

}  // namespace iss
