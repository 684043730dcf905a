#include "io/resample.h"

#include <cmath>

#include "kernels/common/device.h"
#include "kernels/common/error.h"

namespace iss {

Mat4 voxel_transform(const Grid& src, const Grid& dst) { return src.affine.inverse() * dst.affine; }

namespace {

// The transform is composed in double and rounded to float once, here. Entries below 1e-9
// are set to 0: composing an oblique affine with its inverse leaves ~1e-15 where an exact 0
// belongs, and float keeps that residue (rounding is relative), which would turn resampling
// onto the same grid, or a flip, into a blend with the neighbour instead of a copy. 1e-9 per
// entry moves a position by at most 1e-9 * 2^24 voxels (the largest dim allowed): 0.017 voxel
// in the extreme, 1e-6 for dims up to 1000. Entries near nonzero integers need no such
// care: float rounds 1 - 1e-16 to 1 exactly.
template <class T>
void set_geometry(ResampleArgsT<T>& a, const Volume<T>& src, const Grid& target) {
    const Mat4 t = voxel_transform(src.grid, target);
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) a.xform[r][c] = std::fabs(t.m[r][c]) < 1e-9 ? 0.0f : float(t.m[r][c]);
    for (int d = 0; d < 3; ++d) {
        a.src_dim[d] = src.grid.dim[d];
        a.dst_dim[d] = target.dim[d];
    }
    a.frames = src.frames;
}

template <class T>
Volume<T> run(DeviceContext& ctx, const Volume<T>& src, const Grid& target, ResampleArgsT<T> a, const char* what) {
    ISS_REQUIRE(src.frames > 0 && src.grid.voxels() > 0, what, ": source volume is empty");
    ISS_REQUIRE(int64_t(src.data.size()) == src.grid.voxels() * src.frames, what, ": source holds ",
                src.data.size(), " values but its grid and frames need ", src.grid.voxels() * src.frames);
    ISS_REQUIRE(target.voxels() > 0, what, ": target grid is empty");
    set_geometry(a, src, target);
    Buffer<T> in(ctx, src.data);
    Buffer<T> out(ctx, size_t(target.voxels() * src.frames));
    a.src = in.data();
    a.dst = out.data();
    resample(ctx, a);
    Volume<T> result;
    result.grid = target;
    result.frames = src.frames;
    result.data = out.download();  // synchronises the stream before copying back
    return result;
}

}  // namespace

Image resample_image(DeviceContext& ctx, const Image& src, const Grid& target, Interp interp, OutOfBounds oob,
                     float fill) {
    ResampleArgs a;
    a.interp = interp;
    a.oob = oob;
    a.fill = fill;
    return run(ctx, src, target, a, "resample_image");
}

LabelMap resample_labels(DeviceContext& ctx, const LabelMap& src, const Grid& target) {
    ResampleLabelArgs a;
    a.interp = Interp::nearest;
    a.oob = OutOfBounds::fill;
    a.fill = 0;
    return run(ctx, src, target, a, "resample_labels");
}

}  // namespace iss
