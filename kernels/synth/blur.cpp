#include "kernels/synth/blur.h"

#include <algorithm>
#include <cmath>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"  // ISS_CUDA_ONLY

namespace iss {

std::vector<float> blur_taps(double sigma, int half_width) {
    ISS_REQUIRE(half_width >= 0 && half_width <= max_blur_half_width, "blur_taps: half width ", half_width,
                " outside 0..", max_blur_half_width);
    std::vector<double> weights(size_t(2 * half_width + 1), 0.0);
    if (sigma <= 0) {
        weights[size_t(half_width)] = 1;
    } else {
        for (int t = -half_width; t <= half_width; ++t) weights[size_t(t + half_width)] = std::exp(-0.5 * t * t / (sigma * sigma));
    }
    double total = 0;
    for (double w : weights) total += w;
    std::vector<float> taps;
    for (double w : weights) taps.push_back(float(w / total));
    return taps;
}

void blur_row_along(const float* src, float* dst, int64_t voxels, int64_t channels, const float* taps, int half_width) {
    const int64_t row = voxels * channels;
    for (int64_t e = 0; e < row; ++e) dst[e] = 0.0f;
    for (int t = -half_width; t <= half_width; ++t) {
        // Tap t is inside the row for the elements with 0 <= e + t * channels < row.
        const int64_t lo = std::max<int64_t>(0, -t * channels), hi = std::min<int64_t>(row, row - t * channels);
        const float w = taps[t + half_width];
        const float* __restrict from = src + t * channels;
        float* __restrict to = dst;
        for (int64_t e = lo; e < hi; ++e) to[e] = fmaf(w, from[e], to[e]);
    }
}

void blur_rows_across(const float* const* rows, float* dst, int64_t length, const float* taps, int half_width) {
    for (int64_t e = 0; e < length; ++e) dst[e] = 0.0f;
    for (int t = -half_width; t <= half_width; ++t) {
        const float* __restrict from = rows[t + half_width];
        if (!from) continue;
        const float w = taps[t + half_width];
        float* __restrict to = dst;
        for (int64_t e = 0; e < length; ++e) to[e] = fmaf(w, from[e], to[e]);
    }
}

namespace {

// The CPU path, row by row (a row: dim[0] voxels of `channels` floats, contiguous).
void blur_rows_cpu(const BlurArgs& a) {
    const int64_t nx = a.dim[0], ny = a.dim[1], nz = a.dim[2], channels = a.channels;
    const int64_t row = nx * channels;
    const int64_t stride = a.axis == 1 ? row : row * ny;
    const int64_t n = a.dim[a.axis];
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t k = 0; k < nz; ++k)
        for (int64_t j = 0; j < ny; ++j) {
            const int64_t start = (k * ny + j) * row;
            if (a.axis == 0) {
                blur_row_along(a.src + start, a.dst + start, nx, channels, a.taps, a.half_width);
                continue;
            }
            const int64_t pos = a.axis == 1 ? j : k;
            const float* rows[2 * max_blur_half_width + 1];
            for (int t = -a.half_width; t <= a.half_width; ++t)
                rows[t + a.half_width] = pos + t >= 0 && pos + t < n ? a.src + start + t * stride : nullptr;
            blur_rows_across(rows, a.dst + start, row, a.taps, a.half_width);
        }
}

}  // namespace

void blur_axis(DeviceContext& ctx, const BlurArgs& a) {
    ISS_REQUIRE(a.src && a.dst && a.src != a.dst, "blur_axis: null or aliased image pointers");
    ISS_REQUIRE(a.axis >= 0 && a.axis < 3, "blur_axis: axis ", a.axis);
    ISS_REQUIRE(a.half_width >= 0 && a.half_width <= max_blur_half_width, "blur_axis: half width ", a.half_width);
    for (int d = 0; d < 3; ++d) ISS_REQUIRE(a.dim[d] > 0, "blur_axis: empty image");
    ISS_REQUIRE(a.channels >= 1, "blur_axis: ", a.channels, " channels");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("blur_axis", blur_axis_cuda(ctx, a));
        return;
    }
    blur_rows_cpu(a);
}

std::array<BlurArgs, 3> separable_blur_passes(float* a, float* b, const std::array<int64_t, 3>& dim, int64_t channels,
                                              const std::array<double, 3>& sigma, const std::array<int, 3>& half_width) {
    std::array<BlurArgs, 3> passes;
    float* src = a;
    float* dst = b;
    for (int axis = 0; axis < 3; ++axis) {
        BlurArgs& blur = passes[size_t(axis)];
        blur.src = src;
        blur.dst = dst;
        for (int d = 0; d < 3; ++d) blur.dim[d] = dim[size_t(d)];
        blur.channels = channels;
        blur.axis = axis;
        blur.half_width = half_width[size_t(axis)];
        const std::vector<float> taps = blur_taps(sigma[size_t(axis)], blur.half_width);
        std::copy(taps.begin(), taps.end(), blur.taps);
        std::swap(src, dst);
    }
    return passes;
}

float* blur_separable(DeviceContext& ctx, float* a, float* b, const std::array<int64_t, 3>& dim, int64_t channels,
                      const std::array<double, 3>& sigma, const std::array<int, 3>& half_width) {
    for (const BlurArgs& pass : separable_blur_passes(a, b, dim, channels, sigma, half_width)) blur_axis(ctx, pass);
    return b;
}

}  // namespace iss
