// Element-wise kernels of the network: ELU forward/backward, accumulation (a += b) for
// gradients of tensors with several consumers, fill, and scaling. Flat arrays of `count`
// floats on the context's device.
//
// ELU (alpha): y = x for x > 0, alpha * (exp(x) - 1) otherwise. Its backward uses the output:
// dx = dy for y > 0, dy * (y + alpha) otherwise (no need to keep x).
// Backward kernels OVERWRITE their gradient outputs; the autograd tape accumulates with
// add_inplace when a tensor feeds several ops.
// CPU/GPU contract: within 2 ulp (exp differs between libm and CUDA; everything else is exact).
#pragma once

#include <cstdint>

namespace iss {

class DeviceContext;

void elu_forward(DeviceContext& ctx, const float* x, float* y, int64_t count, float alpha);
void elu_backward(DeviceContext& ctx, const float* y, const float* dy, float* dx, int64_t count, float alpha);
void add_inplace(DeviceContext& ctx, float* dst, const float* src, int64_t count);  // dst += src
void fill(DeviceContext& ctx, float* dst, int64_t count, float value);
void scale_inplace(DeviceContext& ctx, float* dst, int64_t count, float factor);   // dst *= factor

}  // namespace iss
