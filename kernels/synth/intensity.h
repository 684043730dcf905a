// The generator's intensity stages (SPEC.md 3.6 end, 3.7, 3.8), in two passes over the image:
//  1. bias_clip: optionally reset background voxels (generation index 0) to 0, multiply by
//     exp(bias(x)) where bias is the small random grid sampled trilinearly at x * bias_ratio
//     (origin-aligned, clamped, as the reference's resize), clip to [0, clip_max];
//     and the min and max of the result, reduced over the bit patterns (for floats >= 0 their
//     unsigned order is the numeric order: exact, order-free, so deterministic), left in
//     device memory: no host waits for them.
//  2. normalise_gamma: I = ((I - low) / (high - low))^gamma, 0 when high == low, with low and
//     high read on the device from bias_clip's range.
// CPU/GPU contract: bit-identical (portable exp/log, fmaf spelled out).
#pragma once

#include <cstdint>

#include "kernels/common/hd.h"
#include "kernels/common/portable_math.h"
#include "kernels/common/quad.h"
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
    uint32_t* range = nullptr;  // two words on the context's device: min and max of the result, as bits
};

// One voxel: the background reset, times exp(log_bias) when there is a bias grid, the clip.
ISS_HD_INLINE float bias_clip_value(const BiasClipArgs& a, float v, uint8_t generation, float log_bias) {
    if (a.reset_background && generation == 0) v = 0.0f;
    if (a.bias) v = v * portable_exp(log_bias);
    return clampf(v, 0.0f, a.clip_max);
}

// The min and max bits of the values a call wrote (see the range above).
struct ValueBits {
    uint32_t low = 0xffffffffu, high = 0u;
    ISS_HD void add(float v) {
        const uint32_t bits = float_to_bits(v);
        low = bits < low ? bits : low;
        high = bits > high ? bits : high;
    }
};

// Four voxels of a row per call on CUDA (kernels/common/quad.h; fewer at the end of a row whose
// length is not a multiple of 4), in the launch's index type I (launch.h): the bias grid's rows
// at the row's y and z are found once for the four, an image of whole aligned quads moves with
// 128-bit loads and stores. The CPU samples the grid separably with the same operations.
struct BiasClipBody {
    BiasClipArgs a;
    ISS_HD LaunchGrid grid() const { return quad_grid(a.dim); }
    ISS_HD int64_t index_extent() const {
        const int64_t image = a.dim[0] * a.dim[1] * a.dim[2];
        const int64_t bias = a.bias ? a.bias_dim[0] * a.bias_dim[1] * a.bias_dim[2] : 0;
        return image > bias ? image : bias;
    }

    // Returns the range of the values written, which the CUDA kernel reduces as it goes.
    template <class I>
    ISS_HD ValueBits operator()(I q, I j, I k) const {
        const I nx = I(a.dim[0]), i = q * I(quad);
        const I at = (k * I(a.dim[1]) + j) * nx + i;
        const I bias_dim[3] = {I(a.bias_dim[0]), I(a.bias_dim[1]), I(a.bias_dim[2])};
        const FieldRows<I> rows =
            a.bias ? field_rows_at<1>(bias_dim, float(j) * a.bias_ratio[1], float(k) * a.bias_ratio[2]) : FieldRows<I>{};
        // The log bias and the clip of voxel i + v.
        auto value = [&](I v, float image, uint8_t generation) {
            float b = 0.0f;
            if (a.bias) sample_rows_at<1>(a.bias, bias_dim, rows, float(i + v) * a.bias_ratio[0], &b);
            return bias_clip_value(a, image, generation, b);
        };
        ValueBits range;
        if (whole_aligned_quads(a.image, a.dim[0], sizeof(float)) && whole_aligned_quads(a.generation, a.dim[0], 1)) {
            float image[quad];
            uint8_t generation[quad];
            load4(a.image + at, image);
            load4(a.generation + at, generation);
            for (int v = 0; v < quad; ++v) {
                image[v] = value(I(v), image[v], generation[v]);
                range.add(image[v]);
            }
            store4(a.image + at, image);
        } else {
            const I count = quad_count(i, nx);
            for (I v = 0; v < count; ++v) {
                const float written = value(v, a.image[at + v], a.generation[at + v]);
                a.image[at + v] = written;
                range.add(written);
            }
        }
        return range;
    }
};

struct NormaliseGammaArgs {
    float* image = nullptr;
    int64_t count = 0;
    const uint32_t* range = nullptr;  // bias_clip's min and max bits, on the context's device
    float gamma = 1;
};

// low and 1 / (high - low) from the range bits; 0 for a constant image.
struct NormaliseScale {
    float low, inv_range;
};

ISS_HD_INLINE NormaliseScale normalise_scale(const uint32_t* range) {
    const float low = bits_to_float(range[0]), high = bits_to_float(range[1]);
    return {low, high > low ? 1.0f / (high - low) : 0.0f};
}

ISS_HD_INLINE float normalised_value(float v, NormaliseScale s) { return clampf((v - s.low) * s.inv_range, 0.0f, 1.0f); }

ISS_HD_INLINE float normalise_gamma_value(float v, NormaliseScale s, float gamma) {
    const float x = normalised_value(v, s);
    return gamma == 1.0f ? x : portable_pow_unit(x, gamma);
}

// Four values a call on CUDA (the last call fewer), the scale computed once for them (a
// division: about as many instructions as the rest of the normalisation) and 128-bit loads and
// stores where the image is aligned; the CPU reads the range once.
struct NormaliseGammaBody {
    NormaliseGammaArgs a;
    ISS_HD int64_t count() const { return quads(a.count); }
    template <class I>
    ISS_HD void operator()(I e) const {
        const NormaliseScale scale = normalise_scale(a.range);
        // In the launch's index type: 32 bits where the count allows (kernels/common/index_type.h).
        const I count = I(a.count), first = e * I(quad);
        float* const image = a.image + first;
        if (first + I(quad) <= count && quad_aligned(a.image, sizeof(float))) {
            float v[quad];
            load4(image, v);
            for (int l = 0; l < quad; ++l) v[l] = normalise_gamma_value(v[l], scale, a.gamma);
            store4(image, v);
        } else {
            for (I l = 0; l < I(quad) && first + l < count; ++l)
                image[l] = normalise_gamma_value(image[l], scale, a.gamma);
        }
    }
};

void bias_clip(DeviceContext& ctx, const BiasClipArgs& args);
void normalise_gamma(DeviceContext& ctx, const NormaliseGammaArgs& args);

void bias_clip_cuda(DeviceContext& ctx, const BiasClipArgs& args);
// The same from a body in device memory (kernels/synth/sample_kernels.h), launched over
// `capacity` voxels, indexing at most `extent` elements; `range` is the body's range pointer
// (the same in every call).
void bias_clip_cuda_from(DeviceContext& ctx, const BiasClipBody* device_body, uint32_t* range, int64_t capacity,
                         int64_t extent);
void normalise_gamma_cuda(DeviceContext& ctx, const NormaliseGammaArgs& args);

}  // namespace iss
