// Resampling, CPU launcher and backend dispatch: OpenMP over output slices k, each voxel
// computed by the shared body in resample.h (the oracle the CUDA launcher is tested against),
// or, for an axis-aligned transform, by the same arithmetic from taps computed once per index.
#include "kernels/geometry/resample.h"

#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/error.h"

namespace iss {

namespace {

template <class T>
void check_common(const ResampleArgsT<T>& a, const char* what) {
    ISS_REQUIRE(a.src != nullptr, what, ": source volume 'src' is null");
    ISS_REQUIRE(a.dst != nullptr, what, ": output volume 'dst' is null");
    for (int d = 0; d < 3; ++d) {
        ISS_REQUIRE(a.src_dim[d] > 0, what, ": source 'src' dim ", d, " is ", a.src_dim[d], ", expected > 0");
        ISS_REQUIRE(a.dst_dim[d] > 0, what, ": output 'dst' dim ", d, " is ", a.dst_dim[d], ", expected > 0");
        // Indices become float coordinates; beyond 2^24 they would no longer be exact.
        ISS_REQUIRE(a.src_dim[d] <= (int64_t(1) << 24) && a.dst_dim[d] <= (int64_t(1) << 24), what, ": dim ", d,
                    " exceeds 2^24 voxels");
    }
    ISS_REQUIRE(a.frames > 0, what, ": frames is ", a.frames, ", expected > 0");
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c)
            ISS_REQUIRE(std::isfinite(a.xform[r][c]), what, ": transform 'xform' entry (", r, ", ", c, ") is not finite");
}


// The position along `axis` of every output index, through `taps` (linear or nearest).
template <class T, class Taps>
auto axis_table(const ResampleArgsT<T>& a, int axis, Taps taps) {
    std::vector<decltype(taps(0.0f))> table(size_t(a.dst_dim[axis]));
    for (size_t n = 0; n < table.size(); ++n) {
        float at[3] = {0.0f, 0.0f, 0.0f};
        at[axis] = float(n);
        table[n] = taps(detail::source_position(a, axis, at[0], at[1], at[2]));
    }
    return table;
}

template <class T>
void run_nearest_aligned(const ResampleArgsT<T>& a) {
    auto index = [&](int axis) {
        return axis_table(a, axis, [&](float p) { return detail::nearest_index(p, a.src_dim[axis], a.oob); });
    };
    const std::vector<int64_t> si = index(0), sj = index(1), sk = index(2);
    const int64_t nx = a.dst_dim[0], ny = a.dst_dim[1], nz = a.dst_dim[2];
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nz; ++k)
        for (int64_t j = 0; j < ny; ++j)
            for (int64_t i = 0; i < nx; ++i) write_nearest(a, i, j, k, si[size_t(i)], sj[size_t(j)], sk[size_t(k)]);
}

// write_linear's blend_cell, a row at a time: the four source rows of the cell's y and z taps
// fixed, the x taps from the table.
void run_linear_aligned(const ResampleArgs& a) {
    using detail::LinearTaps;
    auto taps = [&](int axis) {
        return axis_table(a, axis, [&](float p) { return detail::linear_taps(p, a.src_dim[axis], a.oob); });
    };
    const std::vector<LinearTaps> tx = taps(0), ty = taps(1), tz = taps(2);
    const int64_t nx = a.dst_dim[0], ny = a.dst_dim[1], nz = a.dst_dim[2];
    const int64_t sx = a.src_dim[0], sy = a.src_dim[1];
    const int64_t src_frame = sx * sy * a.src_dim[2], dst_frame = nx * ny * nz;
    const float fill = a.fill;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t t = 0; t < a.frames; ++t)
        for (int64_t k = 0; k < nz; ++k)
            for (int64_t j = 0; j < ny; ++j) {
                const LinearTaps &y = ty[size_t(j)], &z = tz[size_t(k)];
                const float* s = a.src + t * src_frame;
                // Row (uy, uz) of the cell, or null where its y or z tap is outside (the fill).
                auto row = [&](int uy, int uz) -> const float* {
                    const bool ok = (uy ? y.valid1 : y.valid0) && (uz ? z.valid1 : z.valid0);
                    return ok ? s + ((uz ? z.i1 : z.i0) * sy + (uy ? y.i1 : y.i0)) * sx : nullptr;
                };
                const float *r00 = row(0, 0), *r10 = row(1, 0), *r01 = row(0, 1), *r11 = row(1, 1);
                float* out = a.dst + t * dst_frame + (k * ny + j) * nx;
                for (int64_t i = 0; i < nx; ++i) {
                    const LinearTaps& x = tx[size_t(i)];
                    out[i] = detail::blend_cell(
                        [&](int ux, int uy, int uz) {
                            const float* r = uz ? (uy ? r11 : r01) : (uy ? r10 : r00);
                            return r && (ux ? x.valid1 : x.valid0) ? r[ux ? x.i1 : x.i0] : fill;
                        },
                        x.w1, y.w1, z.w1);
                }
            }
}

template <class T>
void run_cpu(const ResampleArgsT<T>& a) {
    if (is_axis_aligned(a)) {
        if constexpr (std::is_same_v<T, float>) {
            if (a.interp == Interp::linear) return run_linear_aligned(a);
        }
        return run_nearest_aligned(a);
    }
    const int64_t nx = a.dst_dim[0], ny = a.dst_dim[1], nz = a.dst_dim[2];
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nz; ++k)
        for (int64_t j = 0; j < ny; ++j)
            for (int64_t i = 0; i < nx; ++i) resample_voxel(a, i, j, k);
}

template <class T>
void dispatch(DeviceContext& ctx, const ResampleArgsT<T>& a) {
    if (!ctx.is_cuda()) {
        resample_cpu(a);
        return;
    }
#if INFANT_WITH_CUDA
    resample_cuda(ctx, a);
#else
    throw Error("resample: CUDA context requested, but this program was built without CUDA");
#endif
}

}  // namespace

// With an off-diagonal entry w = +-0, fmaf(w, y, c) for an index y >= 0 is w * y (a zero of w's
// sign, whatever y) plus c: the same bits for y = 0. So the position along an axis computed
// with the other indices 0 is the one every voxel of that index computes.
template <class T>
bool is_axis_aligned(const ResampleArgsT<T>& a) {
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
            if (r != c && a.xform[r][c] != 0.0f) return false;
    return true;
}
template bool is_axis_aligned(const ResampleArgs&);
template bool is_axis_aligned(const ResampleLabelArgs&);

void check_resample_args(const ResampleArgs& args) {
    check_common(args, "resample (float)");
    // NaN is a fine "outside" marker; an infinite fill would turn 0 * inf into NaN inside.
    ISS_REQUIRE(!std::isinf(args.fill), "resample (float): fill value is infinite");
}

void check_resample_args(const ResampleLabelArgs& args) {
    check_common(args, "resample (labels)");
    ISS_REQUIRE(args.interp == Interp::nearest, "resample (labels): label maps take nearest interpolation only");
}

void resample_cpu(const ResampleArgs& args) {
    check_resample_args(args);
    run_cpu(args);
}

void resample_cpu(const ResampleLabelArgs& args) {
    check_resample_args(args);
    run_cpu(args);
}

void resample(DeviceContext& ctx, const ResampleArgs& args) { dispatch(ctx, args); }
void resample(DeviceContext& ctx, const ResampleLabelArgs& args) { dispatch(ctx, args); }

}  // namespace iss
