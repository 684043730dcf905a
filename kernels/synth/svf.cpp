#include "kernels/synth/svf.h"

#include <algorithm>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"  // ISS_CUDA_ONLY
#include "kernels/common/x86_simd.h"

namespace iss {

namespace {

// The CPU paths, a row at a time. The resize reads the source at (i, j, k) * ratio: the source's
// columns blended along y and z once per row, its x taps once per call, per voxel the blend
// along x and the scaling (ResizeFieldBody's operations). A squaring step reads at
// (i, j, k) + v(i, j, k): no shared taps; a row runs square_voxel with int32 indices (16 voxels
// at a time with AVX-512, a voxel's channels in one vector with AVX2, below).
void resize_rows_cpu(const ResizeFieldArgs& a) {
    const int32_t src_dim[3] = {int32_t(a.src_dim[0]), int32_t(a.src_dim[1]), int32_t(a.src_dim[2])};
    const int64_t nx = a.dst_dim[0], ny = a.dst_dim[1], nz = a.dst_dim[2];
    const RowTaps xt = row_taps<3>(nx, src_dim[0], [&](int64_t i) { return float(i) * a.ratio[0]; });
#pragma omp parallel
    {
        std::vector<float> columns = column_buffer<3>(src_dim[0]);
        std::vector<float> blended(static_cast<size_t>(nx) * 3);
        float* const channel[3] = {blended.data(), blended.data() + nx, blended.data() + 2 * nx};
#pragma omp for collapse(2) schedule(static)
        for (int64_t k = 0; k < nz; ++k)
            for (int64_t j = 0; j < ny; ++j) {
                field_columns<3>(a.src,
                                 field_rows<3>(src_dim[0], src_dim[1], detail::clamped_taps(float(j) * a.ratio[1], src_dim[1]),
                                               detail::clamped_taps(float(k) * a.ratio[2], src_dim[2])),
                                 src_dim[0], columns.data());
                blend_columns_along_x<3>(columns.data(), xt, 0, nx, channel);
                float* __restrict out = a.dst + (k * ny + j) * nx * 3;
                const float* __restrict v0 = channel[0];
                const float* __restrict v1 = channel[1];
                const float* __restrict v2 = channel[2];
#pragma omp simd
                for (int32_t i = 0; i < int32_t(nx); ++i) {
                    out[3 * i] = v0[i] * a.scale[0];
                    out[3 * i + 1] = v1[i] * a.scale[1];
                    out[3 * i + 2] = v2[i] * a.scale[2];
                }
            }
    }
}

// The portable loop (builds without AVX2; AVX-512 rows of one voxel): voxel by voxel, not
// vectorised. Vectorised, the loop is 24 gathers per 8 voxels, and on a 2-vCPU AMD EPYC without
// AVX-512 that took the velocity stage 43.4 ms against 31.8 scalar (same bits; 2026-12-04).
void square_rows_generic(const SquareFieldArgs& a) {
    const int32_t dim[3] = {int32_t(a.dim[0]), int32_t(a.dim[1]), int32_t(a.dim[2])};
#pragma omp parallel for collapse(2) schedule(static)
    for (int32_t k = 0; k < dim[2]; ++k)
        for (int32_t j = 0; j < dim[1]; ++j)
            for (int32_t i = 0; i < dim[0]; ++i) square_voxel(a, dim, i, j, k);
}

#if defined(__AVX512F__)
// square_voxel for 16 voxels of a row at once, written out in AVX-512 because the compiler's
// version of the loop above is bound by its gathers: 24 of 16 floats per 16 voxels (8 taps x 3
// channels). Here one 64-bit gather brings two neighbouring floats, and the 6 floats of an x
// cell (both taps, 3 channels each, contiguous) come in 3 of them: 12 gathers of 8 pairs. The
// arithmetic is square_voxel's, operation for operation (the same bits; SynthRows checks).
namespace avx512 {

struct Lanes {
    __m512i iota, even, odd;                          // 0..15; the even and odd floats of two vectors
    __m512i from3_01[3], from3_2[3];                  // channel c of 16 interleaved xyz triples
    __m512i to3_01[3], to3_2[3];                      // 16-float chunk m of the triples
    Lanes() {
        alignas(64) int32_t t[16];
        auto load = [&] { return _mm512_load_si512(t); };
        for (int l = 0; l < 16; ++l) t[l] = l;
        iota = load();
        for (int l = 0; l < 16; ++l) t[l] = 2 * l;
        even = load();
        for (int l = 0; l < 16; ++l) t[l] = 2 * l + 1;
        odd = load();
        // Deinterleave: lane l of channel c is float 3l + c of the 48; first from the first 32
        // (two vectors), then the rest from the third (index 16 + offset in it).
        for (int c = 0; c < 3; ++c) {
            for (int l = 0; l < 16; ++l) t[l] = 3 * l + c < 32 ? 3 * l + c : 0;
            from3_01[c] = load();
            for (int l = 0; l < 16; ++l) t[l] = 3 * l + c < 32 ? l : 16 + 3 * l + c - 32;
            from3_2[c] = load();
        }
        // Interleave: float q of chunk m is channel (16m + q) % 3 of lane (16m + q) / 3; x and y
        // first (y at 16 + lane), then z from the third vector.
        for (int m = 0; m < 3; ++m) {
            for (int q = 0; q < 16; ++q) {
                const int f = 16 * m + q, c = f % 3, l = f / 3;
                t[q] = c == 2 ? 0 : c * 16 + l;
            }
            to3_01[m] = load();
            for (int q = 0; q < 16; ++q) {
                const int f = 16 * m + q, c = f % 3, l = f / 3;
                t[q] = c == 2 ? 16 + l : q;
            }
            to3_2[m] = load();
        }
    }
};

// detail::clamped_taps, 16 at a time: clampf is max then min (x > lo ? x : lo, then
// x < hi ? x : hi, NaN to lo, as vmaxps / vminps with x first), floorf is round down.
struct Taps16 {
    __m512i i0, i1;
    __m512 w1;
};

inline Taps16 clamped_taps(__m512 p, int32_t n) {
    p = _mm512_min_ps(_mm512_max_ps(p, _mm512_set1_ps(-2.0f)), _mm512_set1_ps(float(n) + 1.0f));
    const __m512 base = _mm512_roundscale_ps(p, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    Taps16 t;
    t.w1 = _mm512_sub_ps(p, base);
    t.i0 = _mm512_cvttps_epi32(base);
    const __mmask16 integer = _mm512_cmp_ps_mask(t.w1, _mm512_setzero_ps(), _CMP_EQ_OQ);
    t.i1 = _mm512_mask_blend_epi32(integer, _mm512_add_epi32(t.i0, _mm512_set1_epi32(1)), t.i0);
    const __m512i zero = _mm512_setzero_si512(), last = _mm512_set1_epi32(n - 1);
    t.i0 = _mm512_min_epi32(_mm512_max_epi32(t.i0, zero), last);
    t.i1 = _mm512_min_epi32(_mm512_max_epi32(t.i1, zero), last);
    return t;
}

// The x cell (taps x0, x1) of 3-channel rows at float offsets `row`, for 16 lanes: for channel c,
// the value at x0 (at[c]) and at x1 (next[c]). The gathers start at x0, or at x0 - 1 where x0 is
// the row's last voxel (then x1 = x0), so they never read past the row.
struct Cell {
    __m512 at[3], next[3];
};

inline Cell gather_cell(const Lanes& L, const float* field, __m512i row, __m512i gather_x, __mmask16 at_end,
                        __mmask16 repeated) {
    const __m512i offset = _mm512_add_epi32(row, gather_x);
    const __m256i lo = _mm512_castsi512_si256(offset), hi = _mm512_extracti64x4_epi64(offset, 1);
    __m512 first[3], second[3];  // the first and second float of each pair, parts at +0, +2, +4
    for (int part = 0; part < 3; ++part) {
        const float* base = field + 2 * part;
        const __m512 a = _mm512_castsi512_ps(_mm512_i32gather_epi64(lo, base, 4));
        const __m512 b = _mm512_castsi512_ps(_mm512_i32gather_epi64(hi, base, 4));
        first[part] = _mm512_permutex2var_ps(a, L.even, b);
        second[part] = _mm512_permutex2var_ps(a, L.odd, b);
    }
    // The 6 floats from the gather's start: x y z of one voxel, x y z of the next.
    const __m512 left[3] = {first[0], second[0], first[1]};
    const __m512 right[3] = {second[1], first[2], second[2]};
    Cell cell;
    for (int c = 0; c < 3; ++c) {
        cell.at[c] = _mm512_mask_blend_ps(at_end, left[c], right[c]);
        cell.next[c] = _mm512_mask_blend_ps(repeated, right[c], cell.at[c]);
    }
    return cell;
}

void square_rows(const SquareFieldArgs& a) {
    static const Lanes L;
    const int32_t nx = int32_t(a.dim[0]), ny = int32_t(a.dim[1]), nz = int32_t(a.dim[2]);
    const __m512i three = _mm512_set1_epi32(3), nx_v = _mm512_set1_epi32(nx), ny_v = _mm512_set1_epi32(ny);
#pragma omp parallel for collapse(2) schedule(static)
    for (int32_t k = 0; k < nz; ++k)
        for (int32_t j = 0; j < ny; ++j)
            for (int32_t i = 0; i < nx; i += 16) {
                const int32_t lanes = std::min(16, nx - i);
                const uint64_t floats = lanes == 16 ? ~uint64_t(0) : (uint64_t(1) << (3 * lanes)) - 1;
                const __mmask16 part[3] = {__mmask16(floats), __mmask16(floats >> 16), __mmask16(floats >> 32)};
                const int32_t at = ((k * ny + j) * nx + i) * 3;
                // Lanes past the row's end read zeros, sample (clamped) inside the field and
                // are not stored.
                const __m512 in[3] = {_mm512_maskz_loadu_ps(part[0], a.src + at),
                                      _mm512_maskz_loadu_ps(part[1], a.src + at + 16),
                                      _mm512_maskz_loadu_ps(part[2], a.src + at + 32)};
                __m512 v[3];
                for (int c = 0; c < 3; ++c)
                    v[c] = _mm512_permutex2var_ps(_mm512_permutex2var_ps(in[0], L.from3_01[c], in[1]), L.from3_2[c],
                                                  in[2]);
                const __m512 x = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_set1_epi32(i), L.iota));
                const Taps16 tx = clamped_taps(_mm512_add_ps(x, v[0]), nx);
                const Taps16 ty = clamped_taps(_mm512_add_ps(_mm512_set1_ps(float(j)), v[1]), ny);
                const Taps16 tz = clamped_taps(_mm512_add_ps(_mm512_set1_ps(float(k)), v[2]), nz);
                // field_rows<3>: ((z * ny + y) * nx) * 3.
                auto row = [&](__m512i z, __m512i y) {
                    return _mm512_mullo_epi32(_mm512_mullo_epi32(_mm512_add_epi32(_mm512_mullo_epi32(z, ny_v), y), nx_v),
                                              three);
                };
                const __mmask16 at_end = _mm512_cmpeq_epi32_mask(tx.i0, _mm512_set1_epi32(nx - 1));
                const __mmask16 repeated = _mm512_cmpeq_epi32_mask(tx.i0, tx.i1);
                const __m512i gather_x =
                    _mm512_mullo_epi32(_mm512_mask_sub_epi32(tx.i0, at_end, tx.i0, _mm512_set1_epi32(1)), three);
                const Cell c00 = gather_cell(L, a.src, row(tz.i0, ty.i0), gather_x, at_end, repeated);
                const Cell c10 = gather_cell(L, a.src, row(tz.i0, ty.i1), gather_x, at_end, repeated);
                const Cell c01 = gather_cell(L, a.src, row(tz.i1, ty.i0), gather_x, at_end, repeated);
                const Cell c11 = gather_cell(L, a.src, row(tz.i1, ty.i1), gather_x, at_end, repeated);
                __m512 out[3];
                for (int c = 0; c < 3; ++c) {
                    const __m512 b00 = lerp16(c00.at[c], c00.next[c], tx.w1), b10 = lerp16(c10.at[c], c10.next[c], tx.w1);
                    const __m512 b01 = lerp16(c01.at[c], c01.next[c], tx.w1), b11 = lerp16(c11.at[c], c11.next[c], tx.w1);
                    out[c] = _mm512_add_ps(v[c], lerp16(lerp16(b00, b10, ty.w1), lerp16(b01, b11, ty.w1), tz.w1));
                }
                for (int m = 0; m < 3; ++m)
                    _mm512_mask_storeu_ps(a.dst + at + 16 * m, part[m],
                                          _mm512_permutex2var_ps(_mm512_permutex2var_ps(out[0], L.to3_01[m], out[1]),
                                                                 L.to3_2[m], out[2]));
            }
}

}  // namespace avx512
#elif defined(ISS_X86_AVX2)
// square_voxel for CPUs without AVX-512, whose gathers are slow, 8 voxels of a row at a time:
// their taps in vectors (Taps16's operations on 8 lanes), then voxel by voxel the blend with a
// voxel's three channels in the lanes of one vector. A tap of 3-channel rows is 3 contiguous
// floats, so one unaligned 4-float load brings all three (and the next voxel's x, unused); the
// four rows' taps at x0 and x1 are 8 loads into 4 vectors of two rows each. The blend is
// square_voxel's (along x, then y, then z, each lerp the same fmadd): the same bits.
namespace avx2 {

struct Taps8 {
    __m256i i0, i1;
    __m256 w1;
};

// detail::clamped_taps, 8 at a time (NaN to -2, as clampf).
inline Taps8 clamped_taps(__m256 p, int32_t n) {
    p = clamp8(p, -2.0f, float(n) + 1.0f);
    const __m256 base = _mm256_round_ps(p, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    Taps8 t;
    t.w1 = _mm256_sub_ps(p, base);
    t.i0 = _mm256_cvttps_epi32(base);
    const __m256 integer = _mm256_cmp_ps(t.w1, _mm256_setzero_ps(), _CMP_EQ_OQ);
    t.i1 = _mm256_blendv_epi8(_mm256_add_epi32(t.i0, _mm256_set1_epi32(1)), t.i0, _mm256_castps_si256(integer));
    const __m256i zero = _mm256_setzero_si256(), last = _mm256_set1_epi32(n - 1);
    t.i0 = _mm256_min_epi32(_mm256_max_epi32(t.i0, zero), last);
    t.i1 = _mm256_min_epi32(_mm256_max_epi32(t.i1, zero), last);
    return t;
}

// Channel c of 8 interleaved xyz triples (floats 0-23 in three vectors): every third float lies
// in positions of the three vectors that do not collide, so two blends gather them and one
// permute puts them in order.
template <int c>
inline __m256 deinterleave3(__m256 in0, __m256 in1, __m256 in2) {
    // Positions p of in0 with p % 3 == c, then of in1 with (8 + p) % 3 == c, of in2 (16 + p).
    constexpr int from1 = c == 0 ? 0x92 : c == 1 ? 0x24 : 0x49;
    constexpr int from2 = c == 0 ? 0x24 : c == 1 ? 0x49 : 0x92;
    const __m256 mixed = _mm256_blend_ps(_mm256_blend_ps(in0, in1, from1), in2, from2);
    const __m256i order = c == 0   ? _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5)
                          : c == 1 ? _mm256_setr_epi32(1, 4, 7, 2, 5, 0, 3, 6)
                                   : _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7);
    return _mm256_permutevar8x32_ps(mixed, order);
}

// Rows r_low and r_high at float offset x: [r_low's 4 floats | r_high's].
inline __m256 two_rows(const float* f, int32_t r_low, int32_t r_high, int32_t x) {
    return _mm256_set_m128(_mm_loadu_ps(f + r_high + x), _mm_loadu_ps(f + r_low + x));
}

void square_rows(const SquareFieldArgs& a) {
    const int32_t dim[3] = {int32_t(a.dim[0]), int32_t(a.dim[1]), int32_t(a.dim[2])};
    const int32_t floats = dim[0] * dim[1] * dim[2] * 3;
    const float* const f = a.src;
    float* const dst = a.dst;  // (a local: a store through a.dst would reload a's members)
    const __m256i row_v = _mm256_set1_epi32(3 * dim[0]), slice_v = _mm256_set1_epi32(3 * dim[0] * dim[1]);
#pragma omp parallel for collapse(2) schedule(static)
    for (int32_t k = 0; k < dim[2]; ++k)
        for (int32_t j = 0; j < dim[1]; ++j)
            for (int32_t i = 0; i < dim[0]; i += 8) {
                const int32_t lanes = std::min(8, dim[0] - i), at = ((k * dim[1] + j) * dim[0] + i) * 3;
                // A row's last, shorter group by masked loads: lanes past the row's end read
                // zeros and are not stored. (Masked for every group: about 3% longer.)
                __m256 in[3];
                if (lanes == 8) {
                    for (int m = 0; m < 3; ++m) in[m] = _mm256_loadu_ps(f + at + 8 * m);
                } else {
                    for (int m = 0; m < 3; ++m) {
                        const __m256i float_index =
                            _mm256_add_epi32(_mm256_set1_epi32(8 * m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                        in[m] = _mm256_maskload_ps(f + at + 8 * m,
                                                   _mm256_cmpgt_epi32(_mm256_set1_epi32(3 * lanes), float_index));
                    }
                }
                const __m256 v[3] = {deinterleave3<0>(in[0], in[1], in[2]), deinterleave3<1>(in[0], in[1], in[2]),
                                     deinterleave3<2>(in[0], in[1], in[2])};
                const __m256 x = _mm256_cvtepi32_ps(
                    _mm256_add_epi32(_mm256_set1_epi32(i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
                const Taps8 tx = clamped_taps(_mm256_add_ps(x, v[0]), dim[0]);
                const Taps8 ty = clamped_taps(_mm256_add_ps(_mm256_set1_ps(float(j)), v[1]), dim[1]);
                const Taps8 tz = clamped_taps(_mm256_add_ps(_mm256_set1_ps(float(k)), v[2]), dim[2]);
                // field_rows<3>: ((z * ny + y) * nx) * 3, as z * 3 nx ny + y * 3 nx: the same
                // integers (the field has fewer than 2^31 floats) by 4 vector multiplies, not 14
                // (with 14, a squaring step took about 5% longer on a Zen 2 EPYC).
                const __m256i z0 = _mm256_mullo_epi32(tz.i0, slice_v), z1 = _mm256_mullo_epi32(tz.i1, slice_v);
                const __m256i y0 = _mm256_mullo_epi32(ty.i0, row_v), y1 = _mm256_mullo_epi32(ty.i1, row_v);
                auto times3 = [](__m256i x) { return _mm256_add_epi32(_mm256_slli_epi32(x, 1), x); };
                alignas(32) int32_t x0[8], x1[8], r00[8], r10[8], r01[8], r11[8];
                alignas(32) float vx[8], vy[8], vz[8], wx[8], wy[8], wz[8];
                _mm256_store_si256(reinterpret_cast<__m256i*>(x0), times3(tx.i0));
                _mm256_store_si256(reinterpret_cast<__m256i*>(x1), times3(tx.i1));
                _mm256_store_si256(reinterpret_cast<__m256i*>(r00), _mm256_add_epi32(z0, y0));
                _mm256_store_si256(reinterpret_cast<__m256i*>(r10), _mm256_add_epi32(z0, y1));
                _mm256_store_si256(reinterpret_cast<__m256i*>(r01), _mm256_add_epi32(z1, y0));
                _mm256_store_si256(reinterpret_cast<__m256i*>(r11), _mm256_add_epi32(z1, y1));
                _mm256_store_ps(vx, v[0]);
                _mm256_store_ps(vy, v[1]);
                _mm256_store_ps(vz, v[2]);
                _mm256_store_ps(wx, tx.w1);
                _mm256_store_ps(wy, ty.w1);
                _mm256_store_ps(wz, tz.w1);
                for (int32_t l = 0; l < lanes; ++l) {
                    // r11 + x1 is the furthest tap (the clamp keeps every i1 >= its i0); its
                    // fourth float is past the field only at the field's last voxel.
                    if (r11[l] + x1[l] + 4 > floats) {
                        square_voxel(a, dim, i + l, j, k);
                        continue;
                    }
                    const __m256 w = _mm256_set1_ps(wx[l]);
                    const __m256 y0 = lerp8(two_rows(f, r00[l], r10[l], x0[l]), two_rows(f, r00[l], r10[l], x1[l]), w);
                    const __m256 y1 = lerp8(two_rows(f, r01[l], r11[l], x0[l]), two_rows(f, r01[l], r11[l], x1[l]), w);
                    const __m128 w_y = _mm_set1_ps(wy[l]);
                    const __m128 z0 = lerp4(_mm256_castps256_ps128(y0), _mm256_extractf128_ps(y0, 1), w_y);
                    const __m128 z1 = lerp4(_mm256_castps256_ps128(y1), _mm256_extractf128_ps(y1, 1), w_y);
                    const __m128 out =
                        _mm_add_ps(_mm_setr_ps(vx[l], vy[l], vz[l], 0.0f), lerp4(z0, z1, _mm_set1_ps(wz[l])));
                    float* const to = dst + at + 3 * l;
                    _mm_storel_pi(reinterpret_cast<__m64*>(to), out);
                    _mm_store_ss(to + 2, _mm_movehl_ps(out, out));
                }
            }
}

}  // namespace avx2
#endif

void square_rows_cpu(const SquareFieldArgs& a) {
#if defined(__AVX512F__)
    if (a.dim[0] >= 2) return avx512::square_rows(a);  // (its gathers need two voxels a row)
#elif defined(ISS_X86_AVX2)
    return avx2::square_rows(a);
#endif
    square_rows_generic(a);
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
