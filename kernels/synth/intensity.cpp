#include "kernels/synth/intensity.h"

#include <algorithm>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"
#include "kernels/common/portable_math_avx2.h"
#include "kernels/common/row_scratch.h"
#include "kernels/common/x86_simd.h"

namespace iss {

namespace {

// The CPU path, a row at a time: the bias grid's columns blended along y and z once per row,
// its x taps once per call, and per voxel the blend along x (AVX2: for the whole row first) and
// BiasClipBody's arithmetic (vectorised); then the row's min and max bits.
void bias_clip_rows_cpu(const BiasClipArgs& a) {
    const int64_t nx = a.dim[0], ny = a.dim[1], nz = a.dim[2];
    const int32_t bias_dim[3] = {int32_t(a.bias_dim[0]), int32_t(a.bias_dim[1]), int32_t(a.bias_dim[2])};
    const RowTaps xt = a.bias ? row_taps<1>(nx, bias_dim[0], [&](int64_t i) { return float(i) * a.bias_ratio[0]; })
                              : RowTaps{};
    uint32_t low = 0xffffffffu, high = 0u;
#pragma omp parallel
    {
        std::vector<float> columns = column_buffer<1>(bias_dim[0]);
#if defined(ISS_X86_AVX2)
        RowScratch row_bias(static_cast<size_t>(nx));  // the row's log bias, voxel by voxel
#endif
#pragma omp for collapse(2) schedule(static) reduction(min : low) reduction(max : high)
        for (int64_t k = 0; k < nz; ++k)
            for (int64_t j = 0; j < ny; ++j) {
                float* __restrict image = a.image + (k * ny + j) * nx;
                const uint8_t* __restrict generation = a.generation + (k * ny + j) * nx;
                if (!a.bias) {
                    for (int64_t i = 0; i < nx; ++i) image[i] = bias_clip_value(a, image[i], generation[i], 0.0f);
                } else {
                    field_columns<1>(a.bias,
                                     field_rows<1>(bias_dim[0], bias_dim[1], detail::clamped_taps(float(j) * a.bias_ratio[1], bias_dim[1]),
                                                   detail::clamped_taps(float(k) * a.bias_ratio[2], bias_dim[2])),
                                     bias_dim[0], columns.data());
#if defined(ISS_X86_AVX2)
                    // AVX2's gathers are slow: the row's blend first (by permutes where the grid
                    // is at most 8 wide, as the presets' are; else 4-float loads), then the voxels.
                    float* const row_bias_of[1] = {row_bias.beside(image)};
                    blend_columns_along_x<1>(columns.data(), xt, 0, nx, row_bias_of);
                    const float* __restrict log_bias = row_bias_of[0];
                    // bias_clip_value 16 voxels at a time in intrinsics (the same bits), as two
                    // independent chains: 1.68-1.70 -> 1.53-1.55 ms on a Zen 2 EPYC against g++'s
                    // vectorised loop. The row's rest by the scalar function. (The two halves
                    // written out: as one lambda called twice g++ ordered them worse, 1.62 ms.)
                    int32_t i = 0;
                    for (; i + 16 <= int32_t(nx); i += 16) {
                        __m256 v0 = _mm256_loadu_ps(image + i), v1 = _mm256_loadu_ps(image + i + 8);
                        if (a.reset_background) {  // 0 where the generation index is 0
                            const __m128i g = _mm_loadu_si128(reinterpret_cast<const __m128i*>(generation + i));
                            const __m256i zero = _mm256_setzero_si256();
                            v0 = _mm256_andnot_ps(
                                _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_cvtepu8_epi32(g), zero)), v0);
                            v1 = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(
                                                      _mm256_cvtepu8_epi32(_mm_srli_si128(g, 8)), zero)),
                                                  v1);
                        }
                        const __m256 e0 = avx2::portable_exp(_mm256_loadu_ps(log_bias + i));
                        const __m256 e1 = avx2::portable_exp(_mm256_loadu_ps(log_bias + i + 8));
                        _mm256_storeu_ps(image + i, clamp8(_mm256_mul_ps(v0, e0), 0.0f, a.clip_max));
                        _mm256_storeu_ps(image + i + 8, clamp8(_mm256_mul_ps(v1, e1), 0.0f, a.clip_max));
                    }
                    for (; i < int32_t(nx); ++i) image[i] = bias_clip_value(a, image[i], generation[i], log_bias[i]);
#else
                    // The blend inside the voxel loop, two gathers per 16 voxels: with the blend
                    // moved out, GCC 12 leaves the AVX-512 loop scalar ("no vectype").
                    const float* col = columns.data();
                    const int32_t* x0 = xt.x0.data();
                    const int32_t* x1 = xt.x1.data();
                    const float* w = xt.w.data();
#pragma omp simd
                    for (int32_t i = 0; i < int32_t(nx); ++i)
                        image[i] = bias_clip_value(a, image[i], generation[i], blend_along_x(col[x0[i]], col[x1[i]], w[i]));
#endif
                }
                for (int64_t i = 0; i < nx; ++i) {
                    const uint32_t bits = float_to_bits(image[i]);
                    low = std::min(low, bits);
                    high = std::max(high, bits);
                }
            }
    }
    a.range[0] = low;
    a.range[1] = high;
}

}  // namespace

void bias_clip(DeviceContext& ctx, const BiasClipArgs& a) {
    ISS_REQUIRE(a.image && a.generation && a.range, "bias_clip: null image, label or range pointer");
    ISS_REQUIRE(a.clip_max > 0, "bias_clip: clip_max must be positive, is ", a.clip_max);  // clampf's lo <= hi
    for (int d = 0; d < 3; ++d) {
        ISS_REQUIRE(a.dim[d] > 0, "bias_clip: empty image");
        ISS_REQUIRE(!a.bias || a.bias_dim[d] > 0, "bias_clip: empty bias grid");
    }
    ISS_REQUIRE(!a.bias || a.bias_dim[0] * a.bias_dim[1] * a.bias_dim[2] < (int64_t(1) << 31),
                "bias_clip: a bias grid of 2^31 values or more");  // the CPU rows index it in int32
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("bias_clip", bias_clip_cuda(ctx, a));
        return;
    }
    bias_clip_rows_cpu(a);
}

void normalise_gamma(DeviceContext& ctx, const NormaliseGammaArgs& a) {
    ISS_REQUIRE(a.image && a.range && a.count >= 0, "normalise_gamma: null image or range");
    ISS_REQUIRE(a.gamma > 0, "normalise_gamma: gamma must be positive, is ", a.gamma);
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("normalise_gamma", normalise_gamma_cuda(ctx, a));
        return;
    }
    const NormaliseScale scale = normalise_scale(a.range);
    float* image = a.image;
    const float gamma = a.gamma;
    // normalise_gamma_value with its test of gamma out of the loop: inside, g++ if-converted
    // both sides together and kept the clamps as compares and blends.
    if (gamma == 1.0f) {
#pragma omp parallel for simd schedule(static)
        for (int64_t v = 0; v < a.count; ++v) image[v] = normalised_value(image[v], scale);
    } else {
#if defined(ISS_X86_AVX2)
        // 16 voxels at a time in intrinsics (the same bits), the remainder by the scalar loop.
        // g++'s version of the scalar loop took 4.1 ms a sample, this one 8 at a time 2.9 and as
        // two independent chains 2.7, on a Zen 2 EPYC (a loop of 4 chains, or of 2 written as
        // one over an array, was slower).
        const int64_t vectors = a.count / 16 * 2;
        const __m256 low = _mm256_set1_ps(scale.low), inv_range = _mm256_set1_ps(scale.inv_range);
        const __m256 gamma_v = _mm256_set1_ps(gamma);
#pragma omp parallel for schedule(static)
        for (int64_t b = 0; b < vectors; b += 2) {
            float* const at = image + 8 * b;
            const __m256 x0 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(at), low), inv_range);
            const __m256 x1 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(at + 8), low), inv_range);
            const __m256 y0 = avx2::portable_pow_unit(clamp8(x0, 0.0f, 1.0f), gamma_v);
            const __m256 y1 = avx2::portable_pow_unit(clamp8(x1, 0.0f, 1.0f), gamma_v);
            _mm256_storeu_ps(at, y0);
            _mm256_storeu_ps(at + 8, y1);
        }
        for (int64_t v = 8 * vectors; v < a.count; ++v)
            image[v] = portable_pow_unit(normalised_value(image[v], scale), gamma);
#else
#pragma omp parallel for simd schedule(static)
        for (int64_t v = 0; v < a.count; ++v) image[v] = portable_pow_unit(normalised_value(image[v], scale), gamma);
#endif
    }
}

}  // namespace iss
