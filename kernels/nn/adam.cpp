// Adam (adam.h): checks, the per-step constants on the host in double, and the CPU launcher
// (OpenMP over the flat buffers) of the body shared with CUDA.
#include "kernels/nn/adam.h"

#include <cmath>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"

namespace iss {

void adam_step(DeviceContext& ctx, const AdamConfig& config, int64_t step, float* params, const float* grads, float* m,
               float* v, int64_t count) {
    ISS_REQUIRE(step >= 1, "adam_step: step is 1-based, got ", step);
    ISS_REQUIRE(count >= 0, "adam_step: negative parameter count ", count);
    ISS_REQUIRE(count == 0 || (params && grads && m && v), "adam_step: null parameter, gradient or moment buffer");
    ISS_REQUIRE(config.beta1 >= 0 && config.beta1 < 1 && config.beta2 >= 0 && config.beta2 < 1,
                "adam_step: betas must lie in [0, 1), got ", config.beta1, " and ", config.beta2);
    ISS_REQUIRE(std::isfinite(config.lr) && config.lr >= 0, "adam_step: learning rate ", config.lr);
    ISS_REQUIRE(std::isfinite(config.epsilon) && config.epsilon > 0, "adam_step: epsilon ", config.epsilon);
    if (count == 0) return;

    const double t = double(step);
    const double c1 = 1.0 - std::pow(double(config.beta1), t);
    const double c2 = std::sqrt(1.0 - std::pow(double(config.beta2), t));
    AdamArgs a;
    a.params = params;
    a.grads = grads;
    a.m = m;
    a.v = v;
    a.beta1 = config.beta1;
    a.beta2 = config.beta2;
    a.one_minus_beta1 = 1.0f - config.beta1;  // in float as Keras does; exact for beta >= 0.5 (Sterbenz)
    a.one_minus_beta2 = 1.0f - config.beta2;
    a.lr_t = float(double(config.lr) * c2 / c1);
    a.epsilon = config.epsilon;
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("adam_step", adam_step_cuda(ctx, a, count));
        return;
    }
    cpu_for_each(count, AdamBody{a});
}

}  // namespace iss
