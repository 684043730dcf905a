// Separable Gaussian blur along one axis (SPEC.md 3.6 resolution; also posterior smoothing):
// dst(x) = sum_t taps[t] * src(x + (t - h) e_axis), zero outside the volume ("same" padding),
// taps the normal density at integer offsets -h..h, normalised to sum 1 (blur_taps builds
// them). Layout: x fastest, `dim` voxels of `channels` floats each (channels-last: a channel's
// neighbours are `channels` floats apart; 1 for an image), src and dst must not alias.
// CPU/GPU contract: bit-identical (fixed tap order, fmaf accumulation); each channel of a
// channels-last volume gets exactly the sums it would get alone. CUDA runs BlurBody (four
// voxels of a row a thread); the CPU applies the same taps in the same order a whole row at a
// time (blur.cpp).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/common/hd.h"
#include "kernels/common/quad.h"

namespace iss {

class DeviceContext;

constexpr int max_blur_half_width = 16;  // sigma up to 0.75 * 16 voxels at blur_range 1.03

struct BlurArgs {
    const float* src = nullptr;
    float* dst = nullptr;
    int64_t dim[3] = {0, 0, 0};
    int64_t channels = 1;
    int axis = 0;
    int half_width = 0;
    float taps[2 * max_blur_half_width + 1] = {};
};

// Four voxels of a row per call (kernels/common/quad.h), in the launch's index type I
// (launch.h). An image (one channel) of whole aligned quads is blurred four voxels at a time
// with 128-bit loads and stores and the taps' loop unrolled for the half-widths up to 4 (the
// infant preset's is 1): a run-time tap loop cost each tap its counter, compare, branch and a
// load of the tap. Every voxel still gets the fmaf sequence above, in tap order; any other
// volume (channels-last posteriors, odd widths) runs voxel by voxel.
struct BlurBody {
    BlurArgs a;
    ISS_HD LaunchGrid grid() const { return quad_grid(a.dim); }
    ISS_HD int64_t index_extent() const { return a.dim[0] * a.dim[1] * a.dim[2] * a.channels; }

    template <class I>
    ISS_HD void operator()(I q, I j, I k) const {
        const I i = q * I(quad), nx = I(a.dim[0]);
        if (a.channels == 1 && whole_aligned_quads(a.src, a.dim[0], sizeof(float)) &&
            whole_aligned_quads(a.dst, a.dim[0], sizeof(float))) {
            switch (a.half_width) {
                case 0: return four_sums<0>(i, j, k);
                case 1: return four_sums<1>(i, j, k);
                case 2: return four_sums<2>(i, j, k);
                case 3: return four_sums<3>(i, j, k);
                case 4: return four_sums<4>(i, j, k);  // (the widest whose x taps a quad either side holds)
                default: break;
            }
        }
        for (I x = i; x < i + quad_count(i, nx); ++x) sums(x, j, k);
    }

    // The per-voxel sums (any channels, any half-width): the contract's definition.
    template <class I>
    ISS_HD void sums(I i, I j, I k) const {
        const I nx = I(a.dim[0]), ny = I(a.dim[1]), channels = I(a.channels);
        const I voxel = (k * ny + j) * nx + i;
        const I pos = a.axis == 0 ? i : (a.axis == 1 ? j : k);
        const I stride = (a.axis == 0 ? I(1) : (a.axis == 1 ? nx : nx * ny)) * channels;
        const I n = I(a.dim[a.axis]);
        for (I c = 0; c < channels; ++c) {
            const I at = voxel * channels + c;
            float sum = 0.0f;
            for (int t = -a.half_width; t <= a.half_width; ++t) {
                const I p = pos + I(t);
                if (p >= 0 && p < n) sum = fmaf(a.taps[t + a.half_width], a.src[at + I(t) * stride], sum);
            }
            a.dst[at] = sum;
        }
    }

private:
    // Voxels i..i+3 of an image of whole quads, H the half-width. A quad lies wholly inside the
    // row or wholly outside it, so along x a tap is skipped exactly when its quad is outside.
    template <int H, class I>
    ISS_HD void four_sums(I i, I j, I k) const {
        const I nx = I(a.dim[0]), ny = I(a.dim[1]);
        const I at = (k * ny + j) * nx + i;
        float sum[quad] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (a.axis == 0) {
            float row[3 * quad] = {};  // voxels i - 4 .. i + 7
            const bool left = i > 0, right = i + I(quad) < nx;
            load4(a.src + at, row + quad);
            if (left) load4(a.src + at - I(quad), row);
            if (right) load4(a.src + at + I(quad), row + 2 * quad);
            for (int v = 0; v < quad; ++v)
                for (int t = -H; t <= H; ++t) {
                    const int e = quad + v + t;
                    if (e < quad ? left : (e < 2 * quad || right)) sum[v] = fmaf(a.taps[t + H], row[e], sum[v]);
                }
        } else {
            const I pos = a.axis == 1 ? j : k, n = I(a.dim[a.axis]);
            const I stride = a.axis == 1 ? nx : nx * ny;
            for (int t = -H; t <= H; ++t) {
                const I p = pos + I(t);
                if (p >= 0 && p < n) {
                    float value[quad];
                    load4(a.src + at + I(t) * stride, value);
                    for (int v = 0; v < quad; ++v) sum[v] = fmaf(a.taps[t + H], value[v], sum[v]);
                }
            }
        }
        store4(a.dst + at, sum);
    }
};

// Normalised Gaussian taps for sigma (voxels) at offsets -h..h; sigma 0 gives the identity.
std::vector<float> blur_taps(double sigma, int half_width);

// One pass along args.axis.
void blur_axis(DeviceContext& ctx, const BlurArgs& args);

// Three passes in order, x, y, z. Where they are separable_blur_passes' chain (x: a -> b,
// y: b -> a, z: a -> b) and the volume has slices enough for the CPU's threads, the CPU runs
// them in one sweep along z (blur.cpp: each slice blurred along x and y into a ring of slices
// that the z pass reads), and `a` then keeps the input: after the passes, read `b` alone. The
// same bits either way; blur_sweeps says which way the CPU goes.
void blur_passes(DeviceContext& ctx, const std::array<BlurArgs, 3>& passes);
bool blur_sweeps(const DeviceContext& ctx, const std::array<BlurArgs, 3>& passes);

// The three passes of a separable blur (x, then y, then z) of `channels`-float voxels, from `a`
// (the input, which the passes may overwrite) through `b` and back: returns the buffer holding
// the result, `b`. Gaussian taps of `sigma` voxels and `half_width` per axis.
float* blur_separable(DeviceContext& ctx, float* a, float* b, const std::array<int64_t, 3>& dim, int64_t channels,
                      const std::array<double, 3>& sigma, const std::array<int, 3>& half_width);

// The same three passes as arguments, in order (x: a -> b, y: b -> a, z: a -> b), for a caller
// that runs them itself.
std::array<BlurArgs, 3> separable_blur_passes(float* a, float* b, const std::array<int64_t, 3>& dim, int64_t channels,
                                              const std::array<double, 3>& sigma, const std::array<int, 3>& half_width);

// The CPU's building blocks (host memory): BlurBody's sums a row at a time, every element with
// the body's fmaf sequence (t from -h to h, taps outside the volume skipped, from 0.0f), its
// taps summed in registers, in loops that vectorise along the row.
// Along a row of `voxels` voxels of `channels` floats (src and dst distinct):
void blur_row_along(const float* src, float* dst, int64_t voxels, int64_t channels, const float* taps, int half_width);
// Across rows: dst[e] = sum over t of taps[t] * rows[t][e] for e < length; rows[t] (2h + 1 of
// them, t = -h..h) is null for a row outside the volume, so the null rows are at the ends of
// the list (a null between two rows is refused); dst is none of the rows.
void blur_rows_across(const float* const* rows, float* dst, int64_t length, const float* taps, int half_width);
void blur_axis_cuda(DeviceContext& ctx, const BlurArgs& args);

}  // namespace iss
