// Resampling of a 3-D volume through a voxel transform: trilinear or nearest-neighbour.
//
// For each output voxel (i, j, k) the source position is p = T * (i, j, k, 1) in source voxel
// coordinates, where T (3x4, row-major, float) maps output voxels to source voxels; the host
// computes it in double as inv(src.affine) * dst.affine and rounds it to float once.
// Layout: NIfTI memory order, x fastest: value(i, j, k, t) at ((t * nz + k) * ny + j) * nx + i,
// for the source and the output alike; every frame t uses the same transform.
// Out of bounds: `fill` treats every voxel outside the source as `fill` (a sample straddling
// the border blends the edge with it); `clamp` clamps coordinates to the volume (repeats the
// edge value). Nearest picks index floor(p) + (frac(p) >= 0.5), i.e. rounds half up (towards
// +inf), computed without forming p + 0.5 (that sum rounds 0.5 - 2^-25 up to 1).
//
// CPU/GPU contract: bit-identical. Every multiply-add is an explicit fmaf (correctly rounded
// on both sides), p - floor(p) and b - a are single correctly rounded subtractions, and there
// is no other floating-point product a compiler could contract, so nvcc's FMA contraction has nothing to change. Against the double
// reference the error is bounded by the model in docs/KERNELS.md ("Resample").
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/hd.h"
#include "kernels/common/index_type.h"
#include "kernels/common/portable_math.h"

namespace iss {

class DeviceContext;

enum class Interp { nearest, linear };
enum class OutOfBounds { fill, clamp };

// Arguments of one resampling: T is float (images) or int32_t (labels, nearest only).
// Pointers live on the context's device.
template <class T>
struct ResampleArgsT {
    const T* src = nullptr;          // [frames][src_dim[2]][src_dim[1]][src_dim[0]]
    T* dst = nullptr;                // [frames][dst_dim[2]][dst_dim[1]][dst_dim[0]]
    int64_t src_dim[3] = {0, 0, 0};  // nx, ny, nz
    int64_t dst_dim[3] = {0, 0, 0};
    int64_t frames = 1;
    float xform[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}};  // output voxel -> source voxel
    Interp interp = Interp::linear;
    OutOfBounds oob = OutOfBounds::fill;
    T fill = T{};
};

using ResampleArgs = ResampleArgsT<float>;
using ResampleLabelArgs = ResampleArgsT<int32_t>;

// Throws iss::Error naming the bad field; both launchers call it before any work.
void check_resample_args(const ResampleArgs& args);
void check_resample_args(const ResampleLabelArgs& args);

// Dispatch on the context's backend. On a build without CUDA a CUDA context throws
// "built without CUDA". The CUDA path is asynchronous on the context's stream.
void resample(DeviceContext& ctx, const ResampleArgs& args);
void resample(DeviceContext& ctx, const ResampleLabelArgs& args);

// Whether every off-diagonal entry of the transform is 0 (+0 or -0): scalings, flips and
// shifts. The CPU launcher then computes the taps once per index (the same bits).
template <class T>
bool is_axis_aligned(const ResampleArgsT<T>& args);

// The launchers behind the dispatcher (the CUDA ones exist only when built with CUDA).
void resample_cpu(const ResampleArgs& args);
void resample_cpu(const ResampleLabelArgs& args);
void resample_cuda(DeviceContext& ctx, const ResampleArgs& args);
void resample_cuda(DeviceContext& ctx, const ResampleLabelArgs& args);

namespace detail {

// Positions beyond the volume by more than a voxel all give the same result (fill, or the
// edge value under clamp), so they are pulled into [-2, n + 1] before conversion to int:
// that keeps the conversion defined for huge positions, and a NaN position lands at -2.
// The index type I is int64_t, or int32_t where the sizes allow (vectorised CPU rows): the
// results are the same.
template <class I>
ISS_HD_INLINE float bound_position(float p, I n) {
    return clampf(p, -2.0f, float(n) + 1.0f);
}

// p = T[row] . (i, j, k, 1) as a chain of correctly rounded fmaf: identical on host and device.
template <class T>
ISS_HD_INLINE float source_position(const ResampleArgsT<T>& a, int row, float x, float y, float z) {
    return fmaf(a.xform[row][0], x, fmaf(a.xform[row][1], y, fmaf(a.xform[row][2], z, a.xform[row][3])));
}

// Into [0, n - 1] (n >= 1), as a min then a max: one instruction each in a vectorised CPU loop.
template <class I>
ISS_HD_INLINE I clamp_index(I i, I n) {
    const I below_end = i < n - 1 ? i : n - 1;
    return below_end > I(0) ? below_end : I(0);
}

// The two taps along one axis for linear interpolation, before any out-of-bounds policy. When
// the weight of the upper tap is exactly 0 it repeats the lower tap, so an integer position
// never reads (or blends with) its neighbour: integer shifts stay exact, and the last voxel does
// not mix in a NaN fill.
template <class I>
struct Taps {
    I i0, i1;
    float w1;  // weight of i1, in [0, 1]
};

template <class I>
ISS_HD_INLINE Taps<I> taps_of(float p, I n) {
    p = bound_position(p, n);
    const float base = floorf(p);
    Taps<I> t;
    // Exact (Sterbenz) except for p in (-0.5, 0), where p + 1 rounds by at most 2^-25 (and
    // may round to 1): the same rounding on both backends, and counted in the error model.
    t.w1 = p - base;
    t.i0 = I(base);
    t.i1 = t.w1 == 0.0f ? t.i0 : t.i0 + 1;
    return t;
}

// The taps under the clamp policy (the generator's fields).
template <class I>
ISS_HD_INLINE Taps<I> clamped_taps(float p, I n) {
    Taps<I> t = taps_of(p, n);
    t.i0 = clamp_index(t.i0, n);
    t.i1 = clamp_index(t.i1, n);
    return t;
}

// The taps under either policy. `valid` is false for a tap outside the volume under fill.
struct LinearTaps {
    int64_t i0, i1;
    bool valid0, valid1;
    float w1;  // weight of i1, in [0, 1]
};

ISS_HD_INLINE LinearTaps linear_taps(float p, int64_t n, OutOfBounds oob) {
    const Taps<int64_t> raw = oob == OutOfBounds::clamp ? clamped_taps(p, n) : taps_of(p, n);
    LinearTaps t;
    t.i0 = raw.i0;
    t.i1 = raw.i1;
    t.w1 = raw.w1;
    t.valid0 = oob == OutOfBounds::clamp || (t.i0 >= 0 && t.i0 < n);
    t.valid1 = oob == OutOfBounds::clamp || (t.i1 >= 0 && t.i1 < n);
    return t;
}

// Nearest index: floor(p) + (frac(p) >= 0.5), exact for the float p, before any policy.
template <class I>
ISS_HD_INLINE I nearest_of(float p, I n) {
    p = bound_position(p, n);
    const float base = floorf(p);
    return I(base) + ((p - base) >= 0.5f ? I(1) : I(0));
}

// The nearest index under either policy: -1 when it is outside the volume under fill.
ISS_HD_INLINE int64_t nearest_index(float p, int64_t n, OutOfBounds oob) {
    const int64_t i = nearest_of(p, n);
    if (oob == OutOfBounds::clamp) return clamp_index(i, n);
    return (i >= 0 && i < n) ? i : -1;
}

// a + w * (b - a) with one rounding for the multiply-add: w = 0 gives a, w = 1 gives b
// up to the rounding of b - a.
ISS_HD_INLINE float lerp(float a, float b, float w) { return fmaf(w, b - a, a); }

// The trilinear blend of a cell whose corner (ux, uy, uz) in {0, 1}^3 is corner(ux, uy, uz):
// along x, then y, then z, a fixed order, so that every caller (both backends, the CPU's rows)
// rounds alike.
template <class Corner>
ISS_HD_INLINE float blend_cell(const Corner& corner, float wx, float wy, float wz) {
    const float c00 = lerp(corner(0, 0, 0), corner(1, 0, 0), wx);
    const float c10 = lerp(corner(0, 1, 0), corner(1, 1, 0), wx);
    const float c01 = lerp(corner(0, 0, 1), corner(1, 0, 1), wx);
    const float c11 = lerp(corner(0, 1, 1), corner(1, 1, 1), wx);
    return lerp(lerp(c00, c10, wy), lerp(c01, c11, wy), wz);
}

// Corner (ux, uy, uz) in {0, 1}^3 of the cell around p in one frame `s`: the fill value when
// any of its taps is outside the volume.
ISS_HD_INLINE float corner(const ResampleArgs& a, const float* s, const LinearTaps& tx, const LinearTaps& ty,
                           const LinearTaps& tz, int ux, int uy, int uz) {
    const bool ok = (ux ? tx.valid1 : tx.valid0) && (uy ? ty.valid1 : ty.valid0) && (uz ? tz.valid1 : tz.valid0);
    if (!ok) return a.fill;
    const int64_t i = ux ? tx.i1 : tx.i0, j = uy ? ty.i1 : ty.i0, k = uz ? tz.i1 : tz.i0;
    return s[(k * a.src_dim[1] + j) * a.src_dim[0] + i];
}

}  // namespace detail

// Writes output voxel (i, j, k) of every frame from source voxel (si, sj, sk) (-1 along an axis:
// outside, the fill).
template <class T>
ISS_HD_INLINE void write_nearest(const ResampleArgsT<T>& a, int64_t i, int64_t j, int64_t k, int64_t si, int64_t sj,
                                 int64_t sk) {
    const bool inside = si >= 0 && sj >= 0 && sk >= 0;
    const int64_t src_frame = a.src_dim[0] * a.src_dim[1] * a.src_dim[2];
    const int64_t dst_frame = a.dst_dim[0] * a.dst_dim[1] * a.dst_dim[2];
    const int64_t src_at = (sk * a.src_dim[1] + sj) * a.src_dim[0] + si;
    const int64_t dst_at = (k * a.dst_dim[1] + j) * a.dst_dim[0] + i;
    for (int64_t t = 0; t < a.frames; ++t)
        a.dst[t * dst_frame + dst_at] = inside ? a.src[t * src_frame + src_at] : a.fill;
}

// Writes output voxel (i, j, k) of every frame by nearest neighbour.
template <class T>
ISS_HD_INLINE void resample_nearest_voxel(const ResampleArgsT<T>& a, int64_t i, int64_t j, int64_t k) {
    const float x = float(i), y = float(j), z = float(k);
    write_nearest(a, i, j, k, detail::nearest_index(detail::source_position(a, 0, x, y, z), a.src_dim[0], a.oob),
                  detail::nearest_index(detail::source_position(a, 1, x, y, z), a.src_dim[1], a.oob),
                  detail::nearest_index(detail::source_position(a, 2, x, y, z), a.src_dim[2], a.oob));
}

// Writes output voxel (i, j, k) of every frame from the cell of taps tx, ty, tz.
ISS_HD_INLINE void write_linear(const ResampleArgs& a, int64_t i, int64_t j, int64_t k, const detail::LinearTaps& tx,
                                const detail::LinearTaps& ty, const detail::LinearTaps& tz) {
    const int64_t src_frame = a.src_dim[0] * a.src_dim[1] * a.src_dim[2];
    const int64_t dst_frame = a.dst_dim[0] * a.dst_dim[1] * a.dst_dim[2];
    const int64_t dst_at = (k * a.dst_dim[1] + j) * a.dst_dim[0] + i;
    for (int64_t t = 0; t < a.frames; ++t) {
        const float* s = a.src + t * src_frame;
        a.dst[t * dst_frame + dst_at] = detail::blend_cell(
            [&](int ux, int uy, int uz) { return detail::corner(a, s, tx, ty, tz, ux, uy, uz); }, tx.w1, ty.w1, tz.w1);
    }
}

ISS_HD_INLINE void resample_linear_voxel(const ResampleArgs& a, int64_t i, int64_t j, int64_t k) {
    const float x = float(i), y = float(j), z = float(k);
    write_linear(a, i, j, k, detail::linear_taps(detail::source_position(a, 0, x, y, z), a.src_dim[0], a.oob),
                 detail::linear_taps(detail::source_position(a, 1, x, y, z), a.src_dim[1], a.oob),
                 detail::linear_taps(detail::source_position(a, 2, x, y, z), a.src_dim[2], a.oob));
}

// Writes output voxel (i, j, k) of every frame: the one body both launchers run.
ISS_HD_INLINE void resample_voxel(const ResampleArgs& a, int64_t i, int64_t j, int64_t k) {
    if (a.interp == Interp::linear)
        resample_linear_voxel(a, i, j, k);
    else
        resample_nearest_voxel(a, i, j, k);
}

// Labels: nearest only (check_resample_args rejects linear).
ISS_HD_INLINE void resample_voxel(const ResampleLabelArgs& a, int64_t i, int64_t j, int64_t k) {
    resample_nearest_voxel(a, i, j, k);
}

// A resampling as a voxel body over its output grid (the generator's resolution passes run it
// from a block in device memory, kernels/synth/sample_kernels.h).
struct ResampleBody {
    ResampleArgs a;
    ISS_HD LaunchGrid grid() const { return voxel_grid(a.dst_dim); }
    ISS_HD void operator()(int64_t i, int64_t j, int64_t k) const { resample_voxel(a, i, j, k); }
};

}  // namespace iss
