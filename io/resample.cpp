#include "io/resample.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/synth/blur.h"  // blur_taps

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

// Voxels 16 times finer than the target's are no head scan's but a header's in other units
// (micrometres read as mm, which a warning names): their blur is bounded there, sigma 4 and the
// generator's widest taps (33), where sigma 0.25 / factor grew without bound (minutes, and an int
// radius that overflowed).
constexpr double max_downsampling_sigma = 4.0;
static_assert(int(4 * max_downsampling_sigma + 0.5) == max_blur_half_width, "scipy's radius for the largest sigma");

// scipy.ndimage's Gaussian taps: the generator's (normalised to sum 1) to its radius, int(4 sigma + 0.5).
std::vector<float> gaussian_taps(double sigma) {
    return blur_taps(sigma, int(4.0 * sigma + 0.5));
}

// scipy's mode 'reflect' (d c b a | a b c d | d c b a): position p of a line of n voxels.
int64_t reflected(int64_t p, int64_t n) {
    p %= 2 * n;
    if (p < 0) p += 2 * n;
    return p < n ? p : 2 * n - 1 - p;
}

// One axis of `image` convolved with `taps` (odd count, centred), every line along it.
void blur_lines(Image& image, int axis, const std::vector<float>& taps) {
    const std::array<int64_t, 3> dim = image.grid.dim;
    const int64_t n = dim[size_t(axis)], radius = int64_t(taps.size() / 2);
    const int64_t stride = axis == 0 ? 1 : (axis == 1 ? dim[0] : dim[0] * dim[1]);
    const int64_t lines = image.grid.voxels() / n * image.frames;
    // A line's first voxel: the other two axes' positions, frame by frame.
    const int64_t inner = axis == 0 ? 1 : stride, outer = stride * n;
#pragma omp parallel
    {
        std::vector<float> line(static_cast<size_t>(n));
#pragma omp for schedule(static)
        for (int64_t l = 0; l < lines; ++l) {
            float* first = image.data.data() + (l / inner) * outer + (l % inner) * (axis == 0 ? n : 1);
            for (int64_t p = 0; p < n; ++p) line[size_t(p)] = first[p * stride];
            for (int64_t p = 0; p < n; ++p) {
                double sum = 0;
                if (p >= radius && p + radius < n) {  // no tap past a face
                    const float* centre = line.data() + p;
                    for (int64_t t = -radius; t <= radius; ++t)
                        sum += double(taps[size_t(t + radius)]) * double(centre[t]);
                } else {
                    for (int64_t t = -radius; t <= radius; ++t)
                        sum += double(taps[size_t(t + radius)]) * double(line[size_t(reflected(p + t, n))]);
                }
                first[p * stride] = float(sum);
            }
        }
    }
}

}  // namespace

Image blurred_for_downsampling(const Image& src, const std::array<double, 3>& target_mm) {
    Image out = src;
    const std::array<double, 3> own = src.grid.voxel_size();
    for (int axis = 0; axis < 3; ++axis) {
        const double factor = own[size_t(axis)] / target_mm[size_t(axis)];
        if (factor < 1 && src.grid.dim[size_t(axis)] > 0)
            blur_lines(out, axis, gaussian_taps(std::min(0.25 / factor, max_downsampling_sigma)));
    }
    return out;
}

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
