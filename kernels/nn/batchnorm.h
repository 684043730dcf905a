// Batch normalisation over a channels-last (N, D, H, W, C) tensor, per channel c, with the
// Keras defaults of SPEC.md section 4 (momentum 0.99, epsilon 1e-3):
//   training:  mean_c, var_c over the N*D*H*W positions (biased), invstd = 1/sqrt(var + eps),
//              y = gamma * (x - mean) * invstd + beta;
//              running_mean = m * running_mean + (1 - m) * mean,
//              running_var  = m * running_var  + (1 - m) * var * P / (P - 1)   (unbiased, as TF)
//   inference: the same with the running statistics.
//   backward:  dgamma = sum dy * xhat, dbeta = sum dy,
//              dx = gamma * invstd * (dy - dbeta / P - xhat * dgamma / P).
// Reductions are deterministic: fixed partition into partial sums (in double), combined in a
// fixed order, so a run repeats bit for bit on the same backend (no float atomics). CPU and
// CUDA partition differently: they agree within 1e-5 relative. `workspace` holds the partials:
// batchnorm_workspace_bytes(shape) bytes on the context's device.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/nn/shape.h"

namespace iss {

class DeviceContext;

size_t batchnorm_workspace_bytes(const Shape5& shape);

void batchnorm_forward_train(DeviceContext& ctx, const float* x, const Shape5& shape, const float* gamma,
                             const float* beta, float eps, float momentum, float* y, float* save_mean,
                             float* save_invstd, float* running_mean, float* running_var, void* workspace);
void batchnorm_forward_infer(DeviceContext& ctx, const float* x, const Shape5& shape, const float* gamma,
                             const float* beta, const float* running_mean, const float* running_var, float eps,
                             float* y);
void batchnorm_backward(DeviceContext& ctx, const float* x, const float* dy, const Shape5& shape, const float* gamma,
                        const float* save_mean, const float* save_invstd, float* dx, float* dgamma, float* dbeta,
                        void* workspace);

}  // namespace iss
