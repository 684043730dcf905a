// Element-wise kernels of the network: ELU forward/backward, accumulation (a += b) for
// gradients of tensors with several consumers, fill, and scaling. Flat arrays of `count`
// floats on the context's device; in place is allowed (x == y, dy == dx).
//
// ELU (alpha): y = x for x > 0, alpha * (exp(x) - 1) otherwise. Its backward uses the output:
// dx = dy for y > 0, dy * (y + alpha) otherwise (no need to keep x). NaN propagates.
// Backward kernels OVERWRITE their gradient outputs; the autograd tape accumulates with
// add_inplace when a tensor feeds several ops.
// CPU/GPU contract: bit-identical (exp is portable_exp; every other step is one correctly
// rounded operation, none of them a product that nvcc could fuse into an FMA).
// Against double: ELU within alpha * (2e-7 + 2u) absolute, see docs/KERNELS.md.
#pragma once

#include <cstdint>

#include "kernels/common/hd.h"
#include "kernels/common/portable_math.h"

namespace iss {

class DeviceContext;

void elu_forward(DeviceContext& ctx, const float* x, float* y, int64_t count, float alpha);
void elu_backward(DeviceContext& ctx, const float* y, const float* dy, float* dx, int64_t count, float alpha);
void add_inplace(DeviceContext& ctx, float* dst, const float* src, int64_t count);  // dst += src
void fill(DeviceContext& ctx, float* dst, int64_t count, float value);
void scale_inplace(DeviceContext& ctx, float* dst, int64_t count, float factor);   // dst *= factor

// --- Bodies shared by the CPU and CUDA launchers (one element each) ------------------------

struct EluForwardBody {
    const float* x;
    float* y;
    float alpha;
    ISS_HD void operator()(int64_t e) const {
        const float v = x[e];
        // Both branches computed, then a select: g++ does not speculate float operations
        // behind a branch (they could trap), so a branch would keep the loop scalar.
        // `v <= 0` rather than `v > 0` so that NaN takes the identity branch and propagates
        // (portable_exp clamps NaN to -87, which would turn it into -alpha).
        const float negative = alpha * (portable_exp(v) - 1.0f);
        y[e] = v <= 0.0f ? negative : v;
    }
};

struct EluBackwardBody {
    const float* y;
    const float* dy;
    float* dx;
    float alpha;
    ISS_HD void operator()(int64_t e) const {
        const float out = y[e], g = dy[e];
        // y + alpha = alpha * exp(x): the derivative of the negative branch, from the output.
        // Computed unconditionally so the loop vectorizes (see EluForwardBody).
        const float negative = g * (out + alpha);
        dx[e] = out > 0.0f ? g : negative;
    }
};

struct AddInplaceBody {
    float* dst;
    const float* src;
    ISS_HD void operator()(int64_t e) const { dst[e] = dst[e] + src[e]; }
};

struct FillBody {
    float* dst;
    float value;
    ISS_HD void operator()(int64_t e) const { dst[e] = value; }
};

struct ScaleBody {
    float* dst;
    float factor;
    ISS_HD void operator()(int64_t e) const { dst[e] = dst[e] * factor; }
};

void elu_forward_cuda(DeviceContext& ctx, const EluForwardBody& body, int64_t count);
void elu_backward_cuda(DeviceContext& ctx, const EluBackwardBody& body, int64_t count);
void add_inplace_cuda(DeviceContext& ctx, const AddInplaceBody& body, int64_t count);
void fill_cuda(DeviceContext& ctx, const FillBody& body, int64_t count);
void scale_inplace_cuda(DeviceContext& ctx, const ScaleBody& body, int64_t count);

}  // namespace iss
