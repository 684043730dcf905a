// CUDA launcher of the softmax: one thread per position over the shared body.
#include "kernels/common/launch.cuh"
#include "kernels/nn/softmax.h"

namespace iss {

void softmax_forward_cuda(DeviceContext& ctx, const float* logits, int64_t positions, int64_t c, float* probs) {
    cuda_for_each(ctx, positions, SoftmaxBody{logits, probs, c});
}

}  // namespace iss
