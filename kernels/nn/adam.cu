// CUDA launcher of Adam: one thread per parameter (grid-stride) over the body of adam.h.
#include "kernels/common/launch.cuh"
#include "kernels/nn/adam.h"

namespace iss {

void adam_step_cuda(DeviceContext& ctx, const AdamArgs& args, int64_t count) { cuda_for_each(ctx, count, AdamBody{args}); }

}  // namespace iss
