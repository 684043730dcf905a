// Independent double-precision references for the losses and Adam (SPEC.md section 5,
// kernels/nn/loss.h and adam.h), written from the definitions with plain loops; they never
// call the kernel bodies. Layouts as the kernels': logits channels-last (position-major, C
// fastest), one target index per position.
#pragma once

#include <cstdint>
#include <vector>

namespace iss::ref {

// softmax over C at every position, renormalised (not clipped).
std::vector<double> softmax(const std::vector<double>& logits, int64_t classes);

struct Dice {
    double loss = 0;
    std::vector<double> dice;                       // per class: Dice_c, the mean over the samples
    std::vector<double> intersection, denominator;  // per sample n and class c at n C + c: I_nc, U_nc
};

// 1 - mean_{n,c} 2 I_nc / max(U_nc, 1e-3) with p' and y' clipped to [1e-7, 1], the positions cut
// into `samples` samples of equal size (lab2im's DiceLoss: sums per sample, then the mean).
Dice soft_dice(const std::vector<double>& logits, const std::vector<uint8_t>& target, int64_t classes,
               int64_t samples = 1);
// dLoss/dlogits times grad_scale, through the full C x C softmax Jacobian at each position.
std::vector<double> soft_dice_grad(const std::vector<double>& logits, const std::vector<uint8_t>& target,
                                   int64_t classes, double grad_scale = 1, int64_t samples = 1);

// lab2im's weighted L2 and its gradient (times grad_scale).
double wl2(const std::vector<double>& logits, const std::vector<uint8_t>& target, int64_t classes);
std::vector<double> wl2_grad(const std::vector<double>& logits, const std::vector<uint8_t>& target, int64_t classes,
                             double grad_scale = 1);

// One Adam step (Keras' form: epsilon on the root of the uncorrected v) on double state; t is 1-based.
struct AdamState {
    std::vector<double> params, m, v;
};
void adam_step(AdamState& state, const std::vector<double>& grads, double lr, double beta1, double beta2,
               double epsilon, int64_t t);

}  // namespace iss::ref
