// The generator's intensity stages (SPEC.md 3.6 end, 3.7, 3.8), in two passes over the image:
//  1. bias_clip: optionally reset background voxels (generation index 0) to 0, multiply by
//     exp(bias(x)) where bias is the small random grid sampled trilinearly at x * bias_ratio
//     (origin-aligned, clamped, as the reference's resize), clip to [0, clip_max];
//     then the min and max of the result (a reduction; order-free, so deterministic).
//  2. normalise_gamma: I = ((I - low) / (high - low))^gamma, 0 when high == low.
// CPU/GPU contract: bit-identical (portable exp/log, fmaf spelled out).
#pragma once

#include <cstdint>
#include <utility>

#include "kernels/common/hd.h"
#include "kernels/common/portable_math.h"
#include "kernels/synth/field_sample.h"

namespace iss {

class DeviceContext;

struct BiasClipArgs {
    float* image = nullptr;
    const uint8_t* generation = nullptr;
    int64_t dim[3] = {0, 0, 0};
    bool reset_background = false;
    const float* bias = nullptr;  // small grid; null: no bias
    int64_t bias_dim[3] = {0, 0, 0};
    float bias_ratio[3] = {1, 1, 1};
    float clip_max = 300;
};

// One voxel: the background reset, times exp(log_bias) when there is a bias grid, the clip.
ISS_HD_INLINE float bias_clip_value(const BiasClipArgs& a, float v, uint8_t generation, float log_bias) {
    if (a.reset_background && generation == 0) v = 0.0f;
    if (a.bias) v = v * portable_exp(log_bias);
    return clampf(v, 0.0f, a.clip_max);
}

// Per voxel (CUDA); the CPU samples the bias grid separably with the same operations.
struct BiasClipBody {
    BiasClipArgs a;
    ISS_HD void operator()(int64_t i, int64_t j, int64_t k) const {
        const int64_t at = (k * a.dim[1] + j) * a.dim[0] + i;
        float b = 0.0f;
        if (a.bias)
            sample_field_rowwise<1>(a.bias, a.bias_dim, float(i) * a.bias_ratio[0], float(j) * a.bias_ratio[1],
                                    float(k) * a.bias_ratio[2], &b);
        a.image[at] = bias_clip_value(a, a.image[at], a.generation[at], b);
    }
};

struct NormaliseGammaArgs {
    float* image = nullptr;
    int64_t count = 0;
    float low = 0;
    float inv_range = 0;  // 1 / (high - low), or 0 for a constant image
    float gamma = 1;
};

struct NormaliseGammaBody {
    NormaliseGammaArgs a;
    ISS_HD void operator()(int64_t v) const {
        const float x = clampf((a.image[v] - a.low) * a.inv_range, 0.0f, 1.0f);
        a.image[v] = a.gamma == 1.0f ? x : portable_pow_unit(x, a.gamma);
    }
};

void bias_clip(DeviceContext& ctx, const BiasClipArgs& args);
// (min, max) of `count` values that are all >= 0 (after bias_clip). `scratch` is two words of
// device memory for the CUDA reduction (unused on the CPU), so no allocation per call.
std::pair<float, float> min_max_nonnegative(DeviceContext& ctx, const float* values, int64_t count,
                                            uint32_t* scratch);
void normalise_gamma(DeviceContext& ctx, const NormaliseGammaArgs& args);

void bias_clip_cuda(DeviceContext& ctx, const BiasClipArgs& args);
std::pair<float, float> min_max_nonnegative_cuda(DeviceContext& ctx, const float* values, int64_t count,
                                                 uint32_t* scratch);
void normalise_gamma_cuda(DeviceContext& ctx, const NormaliseGammaArgs& args);

}  // namespace iss
