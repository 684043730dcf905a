#include "kernels/synth/blur.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include <omp.h>

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

namespace {

// dst[e] = the fmaf sum, from 0, of taps[t] * rows[t][e] over t = 0..N-1 in order, for e in
// [begin, end): each element's taps in registers, one store (applied tap by tap over the whole
// row, a blur pass stored every element 2h + 2 times and ran at the core's one store a cycle).
template <int N>
void sum_taps(const float* const* rows, const float* taps, float* __restrict dst, int64_t begin, int64_t end) {
    const float* r[N];
    float w[N];
    for (int t = 0; t < N; ++t) r[t] = rows[t], w[t] = taps[t];
    for (int64_t e = begin; e < end; ++e) {  // (g++ vectorises it along e; clang's omp simd would not)
        float sum = 0.0f;
        for (int t = 0; t < N; ++t) sum = fmaf(w[t], r[t][e], sum);
        dst[e] = sum;
    }
}

// The same for any count: 16 elements at a time, each with its own sum in the same order (the
// wide windows of a random resolution's thick axes, up to 33 taps).
void sum_many_taps(const float* const* rows, const float* taps, int n, float* __restrict dst, int64_t begin,
                   int64_t end) {
    constexpr int64_t lanes = 16;
    int64_t e = begin;
    for (; e + lanes <= end; e += lanes) {
        float sum[lanes] = {};
        for (int t = 0; t < n; ++t) {
            const float w = taps[t];
            const float* r = rows[t] + e;
            for (int64_t l = 0; l < lanes; ++l) sum[l] = fmaf(w, r[l], sum[l]);
        }
        for (int64_t l = 0; l < lanes; ++l) dst[e + l] = sum[l];
    }
    for (; e < end; ++e) {
        float sum = 0.0f;
        for (int t = 0; t < n; ++t) sum = fmaf(taps[t], rows[t][e], sum);
        dst[e] = sum;
    }
}

// The same for n taps, compiled per count up to 9 (half-widths up to 4).
void sum_taps(const float* const* rows, const float* taps, int n, float* dst, int64_t begin, int64_t end) {
    switch (n) {
        case 1: return sum_taps<1>(rows, taps, dst, begin, end);
        case 2: return sum_taps<2>(rows, taps, dst, begin, end);
        case 3: return sum_taps<3>(rows, taps, dst, begin, end);
        case 4: return sum_taps<4>(rows, taps, dst, begin, end);
        case 5: return sum_taps<5>(rows, taps, dst, begin, end);
        case 6: return sum_taps<6>(rows, taps, dst, begin, end);
        case 7: return sum_taps<7>(rows, taps, dst, begin, end);
        case 8: return sum_taps<8>(rows, taps, dst, begin, end);
        case 9: return sum_taps<9>(rows, taps, dst, begin, end);
        default: return sum_many_taps(rows, taps, n, dst, begin, end);
    }
}

}  // namespace

void blur_row_along(const float* src, float* dst, int64_t voxels, int64_t channels, const float* taps, int half_width) {
    const int64_t row = voxels * channels, reach = int64_t(half_width) * channels;
    // Element e's tap t (t = -h..h) reads e + t * channels, skipped outside the row: every tap
    // inside for e in [reach, row - reach), sums over the taps inside at the ends.
    auto ends = [&](int64_t begin, int64_t end) {
        for (int64_t e = begin; e < end; ++e) {
            float sum = 0.0f;
            for (int t = -half_width; t <= half_width; ++t) {
                const int64_t at = e + t * channels;
                if (at >= 0 && at < row) sum = fmaf(taps[t + half_width], src[at], sum);
            }
            dst[e] = sum;
        }
    };
    if (row <= 2 * reach) return ends(0, row);
    ends(0, reach);
    const float* rows[2 * max_blur_half_width + 1];
    for (int t = -half_width; t <= half_width; ++t) rows[t + half_width] = src + t * channels;
    sum_taps(rows, taps, 2 * half_width + 1, dst, reach, row - reach);
    ends(row - reach, row);
}

void blur_rows_across(const float* const* rows, float* dst, int64_t length, const float* taps, int half_width) {
    // The rows inside the volume are a contiguous run of the taps (those outside are at its ends).
    int first = 0, last = 2 * half_width;
    while (first <= last && !rows[first]) ++first;
    while (last >= first && !rows[last]) --last;
    if (first > last) {
        std::fill(dst, dst + length, 0.0f);
        return;
    }
    for (int t = first; t <= last; ++t) ISS_REQUIRE(rows[t], "blur_rows_across: a row outside the volume between two inside");
    sum_taps(rows + first, taps + first, last - first + 1, dst, 0, length);
}

namespace {

// The rows of a pass across rows at position `pos` of an axis of n: rows[t + h] = row_at(pos +
// t) for the taps inside [0, n), null for those outside (blur_rows_across's input).
template <class RowAt>
void tap_rows(const float** rows, int64_t pos, int64_t n, int half_width, const RowAt& row_at) {
    for (int t = -half_width; t <= half_width; ++t)
        rows[t + half_width] = pos + t >= 0 && pos + t < n ? row_at(pos + t) : nullptr;
}

void check_blur_args(const BlurArgs& a) {
    ISS_REQUIRE(a.src && a.dst && a.src != a.dst, "blur_axis: null or aliased image pointers");
    ISS_REQUIRE(a.axis >= 0 && a.axis < 3, "blur_axis: axis ", a.axis);
    ISS_REQUIRE(a.half_width >= 0 && a.half_width <= max_blur_half_width, "blur_axis: half width ", a.half_width);
    for (int d = 0; d < 3; ++d) ISS_REQUIRE(a.dim[d] > 0, "blur_axis: empty image");
    ISS_REQUIRE(a.channels >= 1, "blur_axis: ", a.channels, " channels");
}

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
            tap_rows(rows, pos, n, a.half_width, [&](int64_t p) { return a.src + start + (p - pos) * stride; });
            blur_rows_across(rows, a.dst + start, row, a.taps, a.half_width);
        }
}

// Whether three passes are separable_blur_passes' chain (x: a -> b, y: b -> a, z: a -> b) over
// one volume.
bool chained_passes(const std::array<BlurArgs, 3>& p) {
    for (int axis = 0; axis < 3; ++axis) {
        const BlurArgs& pass = p[size_t(axis)];
        if (pass.axis != axis || pass.channels != p[0].channels || !std::equal(pass.dim, pass.dim + 3, p[0].dim))
            return false;
    }
    return p[0].src == p[2].src && p[0].src == p[1].dst && p[0].dst == p[1].src && p[0].dst == p[2].dst;
}

// blur_passes on the CPU in one sweep along z. Each thread takes a contiguous range of output
// slices; each slice it needs is blurred along x into `along_x`, then along y into a ring of
// 2 h_z + 1 slices, from which the z pass writes the output rows. The image goes through memory
// once instead of three times (a slice of the generator's crop is 80 KB: the ring stays in the
// core's L2), at the price of h_z slices blurred twice at each thread's ends. The sums are
// blur_rows_cpu's: blur_row_along, then blur_rows_across over the same rows.
void blur_sweep_cpu(const std::array<BlurArgs, 3>& p) {
    const BlurArgs &x = p[0], &y = p[1], &z = p[2];
    const int64_t nx = x.dim[0], ny = x.dim[1], nz = x.dim[2], row = nx * x.channels, slice = row * ny;
    const int hy = y.half_width, hz = z.half_width, ring_slices = 2 * hz + 1;
    // Each thread's slice along x and its ring, allocated here, where running out of memory is
    // an exception the caller sees (inside the parallel region it would end the program);
    // uninitialised: every float is written before it is read.
    const int max_threads = omp_get_max_threads();
    const size_t per_thread = size_t(slice) * size_t(1 + ring_slices);
    const std::unique_ptr<float[]> scratch(new float[per_thread * size_t(max_threads)]);
#pragma omp parallel num_threads(max_threads)
    {
        const int64_t threads = omp_get_num_threads(), thread = omp_get_thread_num();
        const int64_t k0 = nz * thread / threads, k1 = nz * (thread + 1) / threads;
        float* const along_x = scratch.get() + per_thread * size_t(thread);
        float* const ring = along_x + slice;
        auto ring_slice = [&](int64_t s) { return ring + (s % ring_slices) * slice; };
        const float* rows[2 * max_blur_half_width + 1];
        // The ring holds slices next - ring_slices .. next - 1: all that output slice k reads.
        int64_t next = std::max<int64_t>(0, k0 - hz);
        for (int64_t k = k0; k < k1; ++k) {
            for (; next <= std::min(nz - 1, k + hz); ++next) {
                const float* in = x.src + next * slice;
                for (int64_t j = 0; j < ny; ++j)
                    blur_row_along(in + j * row, along_x + j * row, nx, x.channels, x.taps, x.half_width);
                float* out = ring_slice(next);
                for (int64_t j = 0; j < ny; ++j) {
                    tap_rows(rows, j, ny, hy, [&](int64_t r) { return along_x + r * row; });
                    blur_rows_across(rows, out + j * row, row, y.taps, hy);
                }
            }
            for (int64_t j = 0; j < ny; ++j) {
                tap_rows(rows, k, nz, hz, [&](int64_t s) { return ring_slice(s) + j * row; });
                blur_rows_across(rows, z.dst + k * slice + j * row, row, z.taps, hz);
            }
        }
    }
}

}  // namespace

// Worth it where each thread has at least 4 ring lengths of slices (the slices blurred twice
// then cost at most an eighth more).
bool blur_sweeps(const DeviceContext& ctx, const std::array<BlurArgs, 3>& passes) {
    const int64_t ring_slices = 2 * int64_t(passes[2].half_width) + 1;
    return !ctx.is_cuda() && chained_passes(passes) && passes[2].dim[2] >= 4 * ring_slices * int64_t(omp_get_max_threads());
}

void blur_passes(DeviceContext& ctx, const std::array<BlurArgs, 3>& passes) {
    if (!blur_sweeps(ctx, passes)) {
        for (const BlurArgs& pass : passes) blur_axis(ctx, pass);
        return;
    }
    for (const BlurArgs& pass : passes) check_blur_args(pass);
    blur_sweep_cpu(passes);
}

void blur_axis(DeviceContext& ctx, const BlurArgs& a) {
    check_blur_args(a);
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
    blur_passes(ctx, separable_blur_passes(a, b, dim, channels, sigma, half_width));
    return b;
}

}  // namespace iss
