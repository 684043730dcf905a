// Adam (Kingma & Ba) over the flat parameter, gradient and moment buffers, one launch per
// step. Keras defaults of SPEC.md section 5: lr 1e-4, beta1 0.9, beta2 0.999, epsilon 1e-7.
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr_t * m / (sqrt(v) + eps_hat),  lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t),
//   eps_hat = eps * sqrt(1 - b2^t)   (Keras' form: epsilon applies to the uncorrected v).
// t is the 1-based step count. Bias corrections are computed once on the host in double.
// CPU/GPU contract: bit-identical (fmaf spelled out, correctly rounded sqrtf and division).
#pragma once

#include <cstdint>

namespace iss {

class DeviceContext;

struct AdamConfig {
    float lr = 1e-4f;
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float epsilon = 1e-7f;
};

void adam_step(DeviceContext& ctx, const AdamConfig& config, int64_t step, float* params, const float* grads, float* m,
               float* v, int64_t count);

}  // namespace iss
