// Element-wise kernels of the network: ELU forward/backward, accumulation (a += b) for
// gradients of tensors with several consumers, fill, and scaling. Flat arrays of `count`
// elements on the context's device; in place is allowed (x == y, dy == dx). ELU and the
// accumulation run on fp32 or bf16 storage (T = float or Bf16, kernels/common/bf16.h: read
// widened, computed in fp32, written rounded once); fill and scale are fp32 (parameters).
// Two more serve a convolution library that lacks them (cuDNN, nn/conv_cudnn.cpp): the bias and
// ELU after a convolution, and the rounding of a tensor to bf16 values.
//
// ELU (alpha): y = x for x > 0, alpha * (exp(x) - 1) otherwise. Its backward uses the output:
// dx = dy for y > 0, dy * (y + alpha) otherwise (no need to keep x). NaN propagates.
// Backward kernels OVERWRITE their gradient outputs; the autograd tape accumulates with
// add_inplace when a tensor feeds several ops.
// CPU/GPU contract: bit-identical (exp is portable_exp; every other step is one correctly
// rounded operation, none of them a product that nvcc could fuse into an FMA), NaN payloads
// aside: an addition that makes or carries a NaN gives the GPU's one canonical NaN.
// Against double: ELU within alpha * (2e-7 + 2u) absolute, see docs/KERNELS.md.
#pragma once

#include <cstdint>

#include "kernels/common/bf16.h"
#include "kernels/common/hd.h"
#include "kernels/common/portable_math.h"

namespace iss {

class DeviceContext;

template <class T>
void elu_forward(DeviceContext& ctx, const T* x, T* y, int64_t count, float alpha);
template <class T>
void elu_backward(DeviceContext& ctx, const T* y, const T* dy, T* dx, int64_t count, float alpha);
template <class T>
void add_inplace(DeviceContext& ctx, T* dst, const T* src, int64_t count);  // dst += src
void fill(DeviceContext& ctx, float* dst, int64_t count, float value);
// dst = src's elements rounded to bf16 (to nearest, ties to even), stored as Out: as Bf16, or as
// the fp32 value a bf16 stands for (exact; what an fp32 or TF32 convolution reads without loss).
template <class In, class Out>
void round_to_bf16_values(DeviceContext& ctx, const In* src, Out* dst, int64_t count);
// A convolution's epilogue on a channels-last tensor of `voxels` x `channels` elements:
// dst = ELU(src + bias[c]) (ELU only where `elu`), computed in fp32 and rounded once to Out; src
// may be dst. Both are instantiated for In and Out each float or Bf16.
template <class In, class Out>
void bias_elu(DeviceContext& ctx, const In* src, Out* dst, const float* bias, int64_t voxels, int64_t channels,
              bool elu, float alpha);
void scale_inplace(DeviceContext& ctx, float* dst, int64_t count, float factor);   // dst *= factor

// --- Bodies shared by the CPU and CUDA launchers (one element each) ------------------------

// ELU(alpha) of one value.
ISS_HD_INLINE float elu_value(float v, float alpha) {
    // Both branches computed, then a select: g++ does not speculate float operations behind a
    // branch (they could trap), so a branch would keep the loop scalar.
    // `v <= 0` rather than `v > 0` so that NaN takes the identity branch and propagates
    // (portable_exp clamps NaN to -87, which would turn it into -alpha).
    const float negative = alpha * (portable_exp(v) - 1.0f);
    return v <= 0.0f ? negative : v;
}

template <class T>
struct EluForwardBody {
    const T* x;
    T* y;
    float alpha;
    ISS_HD void operator()(int64_t e) const { y[e] = narrow<T>(elu_value(widen(x[e]), alpha)); }
};

template <class T>
struct EluBackwardBody {
    const T* y;
    const T* dy;
    T* dx;
    float alpha;
    ISS_HD void operator()(int64_t e) const {
        const float out = widen(y[e]), g = widen(dy[e]);
        // y + alpha = alpha * exp(x): the derivative of the negative branch, from the output.
        // Computed unconditionally so the loop vectorizes (see EluForwardBody).
        const float negative = g * (out + alpha);
        dx[e] = narrow<T>(out > 0.0f ? g : negative);
    }
};

template <class T>
struct AddInplaceBody {
    T* dst;
    const T* src;
    ISS_HD void operator()(int64_t e) const { dst[e] = narrow<T>(widen(dst[e]) + widen(src[e])); }
};

template <class In, class Out>
struct RoundToBf16ValuesBody {
    const In* src;
    Out* dst;
    // For a Bf16 source the rounding keeps its bits (a NaN gets its quiet bit).
    ISS_HD void operator()(int64_t e) const { dst[e] = narrow<Out>(widen(round_to_bf16(widen(src[e])))); }
};

// Over a channels-last tensor (kernels/nn/channels_last.h: voxel v, channel c).
template <class In, class Out>
struct BiasEluBody {
    const In* src;
    Out* dst;
    const float* bias;
    int64_t channels;
    bool elu;
    float alpha;
    ISS_HD void at(int64_t v, int64_t c) const {
        const int64_t e = v * channels + c;
        // One correctly rounded sum, as cuDNN's and oneDNN's bias add; then the ELU of
        // EluForwardBody, selected (not branched) so that the loop vectorises.
        const float sum = widen(src[e]) + bias[c];
        dst[e] = narrow<Out>(elu ? elu_value(sum, alpha) : sum);
    }
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

// CUDA launcher (elementwise.cu): one thread per element over any body above; instantiated
// there for each body and storage type.
template <class Body>
void elementwise_cuda(DeviceContext& ctx, const Body& body, int64_t count);

}  // namespace iss
