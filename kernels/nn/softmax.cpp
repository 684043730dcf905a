#include "kernels/nn/softmax.h"

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"

namespace iss {

void softmax_forward(DeviceContext& ctx, const float* logits, int64_t positions, int64_t c, float* probs) {
    ISS_REQUIRE(logits && probs, "softmax_forward: null logits or probabilities");
    ISS_REQUIRE(positions >= 0 && c >= 1, "softmax_forward: ", positions, " positions of ", c, " channels");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("softmax_forward", softmax_forward_cuda(ctx, logits, positions, c, probs));
        return;
    }
    cpu_for_each(positions, SoftmaxBody{logits, probs, c});
}

}  // namespace iss
