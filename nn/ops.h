// The network's differentiable ops, each a forward function that records a node and a
// backward beside it (ops.cpp). Values are channels-last (N, D, H, W, C) tensors, fp32 or bf16
// (the graph's activation_type()); an op's output and every gradient have its input's type,
// except conv3d's output (chosen by the caller: the head writes fp32 logits). The losses and
// softmax take fp32 logits.
//
//   conv3d      y = conv(x, w) + b through a cached Conv3d engine (oneDNN / cuDNN), in the
//               graph's precision, y stored as `out_type`; with elu_alpha > 0, y = ELU(conv + b)
//               fused, for inference only (gradients off: training runs elu() after it); with
//               pad_d false, no zero padding along D (ConvShape::pad_d)
//   elu         ELU(alpha); in place by default (its backward needs only the output, and the
//               value it overwrites - a convolution's output - is needed by nobody else)
//   batchnorm   training statistics (and running-statistics update) or inference statistics
//   maxpool2
//   upsample_concat    concat(a, upsample2(b)) in one pass, without the upsampled tensor (the
//               U-Net decoder's input: the largest transient of a forward)
//   upsample_concat_conv  conv3d(upsample_concat(a, b)) with its ELU, for inference only,
//               without the concatenation and with b's part on b's own grid
//   softmax_dice_loss  the fused softmax + soft Dice of SPEC.md section 5; the last op
//   wl2_loss           the weighted L2 pre-training loss on the logits; the last op
//   softmax     probabilities for inference (no backward: record-free, gradients must be off)
#pragma once

#include <cstdint>
#include <vector>
#include <memory>

#include "kernels/nn/loss.h"
#include "nn/autograd.h"
#include "nn/conv.h"

namespace iss {

// Conv3d engines for one layer, one per ConvShape asked (input shape, precision, tensor types,
// fused ELU): built on first use, then reused. A layer sees a few (a training crop, a scan,
// the slabs of predict), so a list is searched.
class ConvEngines {
public:
    ConvEngines(int64_t out_c, int64_t kernel) : out_c_(out_c), kernel_(kernel) {}
    int64_t out_c() const { return out_c_; }
    int64_t kernel() const { return kernel_; }
    Conv3d& get(DeviceContext& ctx, const ConvShape& shape);
    // Drops every engine (their compiled kernels and copies of the weights); the next get builds anew.
    void clear() { engines_.clear(); }

private:
    int64_t out_c_, kernel_;
    std::vector<std::unique_ptr<Conv3d>> engines_;
};

Var conv3d(Graph& g, const Var& x, Param weight, Param bias, ConvEngines& engines, DType out_type,
           float elu_alpha = 0.0f, bool pad_d = true);
// ELU in place: x's storage becomes the output (the backward needs only the output).
Var elu(Graph& g, const Var& x, float alpha);

struct BatchNormParams {
    Param gamma, beta;                  // trainable
    Param running_mean, running_var;    // state
    float momentum = 0.99f, epsilon = 1e-3f;
};
Var batchnorm(Graph& g, const Var& x, const BatchNormParams& bn, bool training);

Var maxpool2(Graph& g, const Var& x);
Var upsample_concat(Graph& g, const Var& a, const Var& b);

// The two convolutions upsample_concat_conv runs for one layer of `out_c` channels: a's part
// (3^3 to out_c) and b's folded part (2^3 to 8 out_c), each built on first use per shape.
struct UpsampledConvEngines {
    explicit UpsampledConvEngines(int64_t out_c) : fine(out_c, 3), coarse(8 * out_c, 2) {}
    ConvEngines fine, coarse;
};

// Inference (gradients off): conv3d(upsample_concat(a, b), weight, bias) stored in the graph's
// activation type, with ELU(elu_alpha) where elu_alpha > 0, for a 3^3 layer, without the
// concatenation: a's part on a's grid, and b's part on b's own grid, where the 27 taps over the
// upsampled copies fold into 8 (kernels/nn/pool.h: upsample_fold_weights), each parity of the
// fine voxel one set of output channels. At the U-Net's level 0 (24 + 48 -> 24 channels) that
// is 53% of the convolution's multiplications. The two parts are summed in fp32, then the ELU,
// rounded once: the same sum as the convolution over the concatenation in another order, and
// in bf16 each folded weight rounded as a whole (docs/KERNELS.md, "The decoder's folded
// upsampling").
Var upsample_concat_conv(Graph& g, const Var& a, const Var& b, Param weight, Param bias, UpsampledConvEngines& engines,
                         float elu_alpha);

// Loss ops: `target` is a device array of class indices, one per position of `logits`.
// softmax_dice_loss also returns the probabilities when `probs` is given.
DiceResult softmax_dice_loss(Graph& g, const Var& logits, const uint8_t* target, Var* probs = nullptr);
double wl2_loss(Graph& g, const Var& logits, const uint8_t* target);

// Inference only: softmax over channels.
Var softmax(Graph& g, const Var& logits);
// The same written into `out` (logits' size, memory of the graph's device): no tensor made.
void softmax_into(Graph& g, const Var& logits, float* out);

}  // namespace iss
