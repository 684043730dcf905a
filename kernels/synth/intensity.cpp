#include "kernels/synth/intensity.h"

#include <algorithm>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"

namespace iss {

void bias_clip(DeviceContext& ctx, const BiasClipArgs& a) {
    ISS_REQUIRE(a.image && a.generation, "bias_clip: null image or label pointer");
    for (int d = 0; d < 3; ++d) {
        ISS_REQUIRE(a.dim[d] > 0, "bias_clip: empty image");
        ISS_REQUIRE(!a.bias || a.bias_dim[d] > 0, "bias_clip: empty bias grid");
    }
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("bias_clip", bias_clip_cuda(ctx, a));
        return;
    }
    cpu_for_each_voxel(a.dim, BiasClipBody{a});
}

std::pair<float, float> min_max_nonnegative(DeviceContext& ctx, const float* values, int64_t count,
                                            uint32_t* scratch) {
    ISS_REQUIRE(values && count > 0, "min_max_nonnegative: empty input");
    if (ctx.is_cuda()) {
        ISS_REQUIRE(scratch, "min_max_nonnegative: CUDA needs a scratch pointer");
        ISS_CUDA_ONLY("min_max_nonnegative", return min_max_nonnegative_cuda(ctx, values, count, scratch));
    }
    float low = values[0], high = values[0];
#pragma omp parallel for reduction(min : low) reduction(max : high) schedule(static)
    for (int64_t v = 0; v < count; ++v) {
        low = std::min(low, values[v]);
        high = std::max(high, values[v]);
    }
    return {low, high};
}

void normalise_gamma(DeviceContext& ctx, const NormaliseGammaArgs& a) {
    ISS_REQUIRE(a.image && a.count >= 0, "normalise_gamma: null image");
    ISS_REQUIRE(a.gamma > 0, "normalise_gamma: gamma must be positive, is ", a.gamma);
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("normalise_gamma", normalise_gamma_cuda(ctx, a));
        return;
    }
    cpu_for_each(a.count, NormaliseGammaBody{a});
}

}  // namespace iss
