// Losses of SPEC.md section 5, computed from class indices (no one-hot volume is made).
//
// Soft Dice, fused with the softmax: logits (N, D, H, W, C) channels-last, target index per
// position (uint8, < C). p = softmax(logits) over C; p' = clip(p / sum_c p, 1e-7, 1) (the
// renormalisation is the identity up to rounding but kept, as the reference does);
// y' = clip(onehot(target), 1e-7, 1); per class over all positions:
//   I_c = sum y' p', U_c = sum (y'^2 + p'^2), Dice_c = 2 I_c / max(U_c, 1e-3);
//   loss = 1 - mean_c Dice_c.
// softmax_dice_forward writes the probabilities (for the backward and for inference) and
// returns the loss and the per-class Dice on the host; softmax_dice_backward writes dlogits
// (scaled by `grad_scale`, the upstream gradient of the loss, normally 1).
// Weighted L2 (pre-training, optional; lab2im's WeightedL2Loss): per position a weight
//   w = 1 - y_0 + 1e-4 (y_0 = 1 for background: background positions weigh 1e-4), target
//   t_c = 5 (2 y_c - 1) (+5 for the true class, -5 otherwise), and
//   loss = sum_{pos, c} w (logit_c - t_c)^2 / (C * sum_pos w); backward writes dlogits.
// Reductions are deterministic (fixed partitions, double partial sums). CPU and CUDA agree
// within 1e-5 relative. `workspace`: loss_workspace_bytes(shape) bytes on the device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/nn/shape.h"

namespace iss {

class DeviceContext;

struct DiceResult {
    double loss = 0;
    std::vector<double> dice;  // per class
};

size_t loss_workspace_bytes(const Shape5& shape);

DiceResult softmax_dice_forward(DeviceContext& ctx, const float* logits, const uint8_t* target, const Shape5& shape,
                                float* probs, void* workspace);
void softmax_dice_backward(DeviceContext& ctx, const float* probs, const uint8_t* target, const Shape5& shape,
                           float grad_scale, float* dlogits, void* workspace);

double wl2_forward(DeviceContext& ctx, const float* logits, const uint8_t* target, const Shape5& shape,
                   void* workspace);
void wl2_backward(DeviceContext& ctx, const float* logits, const uint8_t* target, const Shape5& shape,
                  float grad_scale, float* dlogits, void* workspace);

}  // namespace iss
