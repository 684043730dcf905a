#include "predict/postprocess.h"

#include <algorithm>
#include <cmath>

#include "kernels/common/device.h"
#include "kernels/synth/blur.h"
#include "post/components.h"
#include "post/prediction.h"  // rounded_mm3

namespace iss {

namespace {

constexpr double smoothing_sigma = 0.5;   // voxels (SynthSeg's posterior smoothing)
constexpr int smoothing_half_width = 1;  // 3 taps

// Copies the cropped voxels of one row of channels-last posteriors into the channel-first
// posteriors (row j, k of `post`).
void crop_row_channel_first(const float* row, Image& post, int64_t j, int64_t k) {
    const int64_t nx = post.grid.dim[0], classes = post.frames, voxels = post.grid.voxels();
    float* out_row = &post.at(0, j, k, 0);
    for (int64_t c = 0; c < classes; ++c)
        for (int64_t i = 0; i < nx; ++i) out_row[c * voxels + i] = row[i * classes + c];
}

// The CPU path, in place of the network's output and without a second volume: along x each row
// from a copy of itself; along y each row of a slab from copies of the original rows before it
// (a ring of h + 1 rows); along z straight into the cropped channel-first output, only for the
// rows kept. The same sums as blur_axis three times (blur_row_along, blur_rows_across).
Image smooth_and_crop_cpu(float* data, const std::array<int64_t, 3>& padded_dim, const std::array<int64_t, 3>& before,
                          const Grid& grid, int64_t classes) {
    const int h = smoothing_half_width;
    const std::vector<float> taps = blur_taps(smoothing_sigma, h);
    const int64_t nx = padded_dim[0], ny = padded_dim[1], nz = padded_dim[2], length = nx * classes;
    auto row_at = [&](int64_t j, int64_t k) { return data + (k * ny + j) * length; };
#pragma omp parallel
    {
        std::vector<float> copy(static_cast<size_t>(length));
        std::vector<std::vector<float>> ring(size_t(h + 1), std::vector<float>(size_t(length)));
        const float* rows[2 * max_blur_half_width + 1];
#pragma omp for collapse(2) schedule(static)
        for (int64_t k = 0; k < nz; ++k)
            for (int64_t j = 0; j < ny; ++j) {
                float* row = row_at(j, k);
                std::copy(row, row + length, copy.data());
                blur_row_along(copy.data(), row, nx, classes, taps.data(), h);
            }
#pragma omp for schedule(static)
        for (int64_t k = 0; k < nz; ++k)
            for (int64_t j = 0; j < ny; ++j) {
                float* row = row_at(j, k);
                std::vector<float>& saved = ring[size_t(j % (h + 1))];
                std::copy(row, row + length, saved.data());
                for (int t = -h; t <= h; ++t) {
                    const int64_t q = j + t;
                    rows[t + h] = q < 0 || q >= ny ? nullptr : (t <= 0 ? ring[size_t(q % (h + 1))].data() : row_at(q, k));
                }
                blur_rows_across(rows, row, length, taps.data(), h);
            }
    }
    Image post(grid, classes);
    const int64_t crop_length = grid.dim[0] * classes;
#pragma omp parallel
    {
        std::vector<float> blurred(static_cast<size_t>(crop_length));
        const float* rows[2 * max_blur_half_width + 1];
#pragma omp for collapse(2) schedule(static)
        for (int64_t k = 0; k < grid.dim[2]; ++k)
            for (int64_t j = 0; j < grid.dim[1]; ++j) {
                const int64_t pk = k + before[2], pj = j + before[1];
                for (int t = -h; t <= h; ++t)
                    rows[t + h] = pk + t < 0 || pk + t >= nz ? nullptr : row_at(pj, pk + t) + before[0] * classes;
                blur_rows_across(rows, blurred.data(), crop_length, taps.data(), h);
                crop_row_channel_first(blurred.data(), post, j, k);
            }
    }
    return post;
}

// The smoothing takes zeros outside the padded volume, so within h voxels of its faces the
// posteriors summed to less than 1 (0.89 on a face, 0.71 in a corner: a structure touching a
// tightly cropped scan lost up to a tenth of its volume there). Those voxels are divided by
// their sum, as SynthSeg renormalises after smoothing; inside, every tap was in the volume and
// the sum is already 1.
void renormalise_near_faces(Image& post, const std::array<int64_t, 3>& padded_dim,
                            const std::array<int64_t, 3>& before) {
    const int64_t h = smoothing_half_width, voxels = post.grid.voxels(), classes = post.frames;
    auto near_face = [&](int64_t at, int d) {
        return at + before[size_t(d)] < h || at + before[size_t(d)] >= padded_dim[size_t(d)] - h;
    };
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t k = 0; k < post.grid.dim[2]; ++k)
        for (int64_t j = 0; j < post.grid.dim[1]; ++j) {
            const bool whole_row = near_face(k, 2) || near_face(j, 1);
            for (int64_t i = 0; i < post.grid.dim[0]; ++i) {
                if (!whole_row && !near_face(i, 0)) continue;
                const int64_t v = post.index(i, j, k);
                double sum = 0;
                for (int64_t c = 0; c < classes; ++c) sum += post.data[size_t(c * voxels + v)];
                if (!(sum > 0)) continue;
                for (int64_t c = 0; c < classes; ++c)
                    post.data[size_t(c * voxels + v)] = float(double(post.data[size_t(c * voxels + v)]) / sum);
            }
        }
}

// On a GPU: up once, three passes, down once.
Image smooth_and_crop_cuda(DeviceContext& ctx, float* channels_last, const std::array<int64_t, 3>& padded_dim,
                           const std::array<int64_t, 3>& before, const Grid& grid, int64_t classes) {
    const size_t count = size_t(padded_dim[0] * padded_dim[1] * padded_dim[2] * classes);
    Buffer<float> a(ctx, count), b(ctx, count);
    ctx.copy_to_device(a.data(), channels_last, count * sizeof(float));
    const float* src = blur_separable(ctx, a.data(), b.data(), padded_dim, classes, {smoothing_sigma, smoothing_sigma, smoothing_sigma},
                                      {smoothing_half_width, smoothing_half_width, smoothing_half_width});
    ctx.copy_to_host(channels_last, src, count * sizeof(float));
    Image post(grid, classes);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t k = 0; k < grid.dim[2]; ++k)
        for (int64_t j = 0; j < grid.dim[1]; ++j) {
            const int64_t padded_voxel = ((k + before[2]) * padded_dim[1] + (j + before[1])) * padded_dim[0] + before[0];
            crop_row_channel_first(channels_last + padded_voxel * classes, post, j, k);
        }
    return post;
}

}  // namespace

Image smooth_and_crop_posteriors(DeviceContext& ctx, float* channels_last, const std::array<int64_t, 3>& padded_dim,
                                 const std::array<int64_t, 3>& before, const Grid& grid, int64_t classes) {
    Image post = ctx.is_cuda() ? smooth_and_crop_cuda(ctx, channels_last, padded_dim, before, grid, classes)
                               : smooth_and_crop_cpu(channels_last, padded_dim, before, grid, classes);
    renormalise_near_faces(post, padded_dim, before);
    return post;
}

LabelMap segment_posteriors(const Image& posteriors, const std::vector<int32_t>& labels,
                            const std::vector<uint8_t>* background) {
    LabelMap seg(posteriors.grid);
    const int64_t voxels = seg.grid.voxels(), classes = posteriors.frames;
    // Block by block, so that each channel is read in order.
    constexpr int64_t block = 4096;
#pragma omp parallel for schedule(static)
    for (int64_t v0 = 0; v0 < voxels; v0 += block) {
        const int64_t n = std::min(block, voxels - v0);
        float best_value[block];
        int32_t best[block];
        std::copy(&posteriors.data[size_t(v0)], &posteriors.data[size_t(v0 + n)], best_value);
        std::fill(best, best + n, 0);
        for (int64_t c = 1; c < classes; ++c) {
            const float* channel = &posteriors.data[size_t(c * voxels + v0)];
            for (int64_t v = 0; v < n; ++v)
                if (channel[v] > best_value[v]) {
                    best_value[v] = channel[v];
                    best[v] = int32_t(c);
                }
        }
        for (int64_t v = 0; v < n; ++v) seg.data[size_t(v0 + v)] = labels[size_t(best[v])];
    }
    if (background)
        for (size_t v = 0; v < seg.data.size(); ++v)
            if ((*background)[v]) seg.data[v] = 0;
    const Mask keep = largest_foreground_component(seg);
    for (size_t v = 0; v < seg.data.size(); ++v)
        if (!keep.data[v]) seg.data[v] = 0;
    return seg;
}

std::vector<double> posterior_volumes_mm3(const Image& posteriors, const std::vector<int32_t>& labels) {
    const double voxel_volume = posteriors.grid.voxel_volume();
    const int64_t n = posteriors.grid.voxels(), classes = posteriors.frames;
    std::vector<double> volumes(size_t(classes), 0.0);
    // A class per thread: each sum keeps its voxel order, so the volumes do not depend on the
    // number of threads.
#pragma omp parallel for schedule(dynamic)
    for (int64_t c = 0; c < classes; ++c) {
        if (labels[size_t(c)] == 0) continue;
        double sum = 0;
        for (int64_t v = 0; v < n; ++v) sum += posteriors.data[size_t(c * n + v)];
        volumes[size_t(c)] = rounded_mm3(sum * voxel_volume);
    }
    return volumes;
}

}  // namespace iss
