// Resampling, CPU launcher and backend dispatch: OpenMP over output slices k, each voxel
// computed by the shared body in resample.h (the oracle the CUDA launcher is tested against).
#include "kernels/geometry/resample.h"

#include <cmath>

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

template <class T>
void run_cpu(const ResampleArgsT<T>& a) {
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
