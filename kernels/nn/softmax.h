// Softmax over the channels of each position of a channels-last (positions, C) tensor:
// p_c = exp(l_c - max) / sum_k exp(l_k - max). The per-position body is shared with the fused
// softmax + Dice loss (kernels/nn/loss.*). exp is portable_exp: bit-identical CPU/CUDA.
#pragma once

#include <cstdint>

#include "kernels/common/hd.h"
#include "kernels/common/portable_math.h"

namespace iss {

class DeviceContext;

// One position: `c` logits in, `c` probabilities out (out may alias in).
ISS_HD_INLINE void softmax_position(const float* logits, int64_t c, float* out) {
    float top = logits[0];
    for (int64_t k = 1; k < c; ++k) top = logits[k] > top ? logits[k] : top;
    float sum = 0.0f;
    for (int64_t k = 0; k < c; ++k) {
        out[k] = portable_exp(logits[k] - top);
        sum += out[k];
    }
    const float inv = 1.0f / sum;
    for (int64_t k = 0; k < c; ++k) out[k] *= inv;
}

struct SoftmaxBody {
    const float* logits;
    float* probs;
    int64_t c;
    ISS_HD void operator()(int64_t position) const { softmax_position(logits + position * c, c, probs + position * c); }
};

void softmax_forward(DeviceContext& ctx, const float* logits, int64_t positions, int64_t c, float* probs);
void softmax_forward_cuda(DeviceContext& ctx, const float* logits, int64_t positions, int64_t c, float* probs);

}  // namespace iss
