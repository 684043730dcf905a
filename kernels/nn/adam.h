// Adam (Kingma & Ba) over the flat parameter, gradient and moment buffers, one launch per
// step. Keras defaults of SPEC.md section 5: lr 1e-4, beta1 0.9, beta2 0.999, epsilon 1e-7.
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr_t * m / (sqrt(v) + eps),  lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t).
// Keras' form, which SynthSeg trains with: epsilon is added to the root of the uncorrected v.
// (The Adam paper's Algorithm 1 and PyTorch add it to the corrected one, which is eps scaled by
// sqrt(1 - b2^t) here: 0.03 eps at step 1, so early steps of tiny gradients move further.)
// t is the 1-based step count. Bias corrections are computed once on the host in double.
// CPU/GPU contract: bit-identical (fmaf spelled out, correctly rounded sqrtf and division).
// The body reads each of p, g, m, v once and writes p, m, v once (28 bytes per parameter).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/hd.h"

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

// The per-step constants, from the host: 1 - beta in float (exact for beta in [0.5, 1]),
// lr_t from the bias corrections in double, rounded once.
struct AdamArgs {
    float* params = nullptr;
    const float* grads = nullptr;
    float* m = nullptr;
    float* v = nullptr;
    float beta1 = 0, beta2 = 0, one_minus_beta1 = 0, one_minus_beta2 = 0;
    float lr_t = 0, epsilon = 0;
};

// One parameter. Every multiply-add is an explicit fmaf and the rest are single correctly
// rounded operations (*, /, +, sqrtf), so nvcc has nothing to contract: host and device agree
// bit for bit.
struct AdamBody {
    AdamArgs a;
    ISS_HD void operator()(int64_t e) const {
        const float g = a.grads[e];
        const float m = fmaf(a.beta1, a.m[e], a.one_minus_beta1 * g);
        const float v = fmaf(a.beta2, a.v[e], (a.one_minus_beta2 * g) * g);
        a.m[e] = m;
        a.v[e] = v;
        a.params[e] = fmaf(-a.lr_t, m / (sqrtf(v) + a.epsilon), a.params[e]);
    }
};

void adam_step_cuda(DeviceContext& ctx, const AdamArgs& args, int64_t count);

}  // namespace iss
