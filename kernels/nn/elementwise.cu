// CUDA launchers of the element-wise kernels: one thread per element over the shared bodies.
#include "kernels/common/launch.cuh"
#include "kernels/nn/elementwise.h"

namespace iss {

void elu_forward_cuda(DeviceContext& ctx, const EluForwardBody& body, int64_t count) { cuda_for_each(ctx, count, body); }
void elu_backward_cuda(DeviceContext& ctx, const EluBackwardBody& body, int64_t count) {
    cuda_for_each(ctx, count, body);
}
void add_inplace_cuda(DeviceContext& ctx, const AddInplaceBody& body, int64_t count) { cuda_for_each(ctx, count, body); }
void fill_cuda(DeviceContext& ctx, const FillBody& body, int64_t count) { cuda_for_each(ctx, count, body); }
void scale_inplace_cuda(DeviceContext& ctx, const ScaleBody& body, int64_t count) { cuda_for_each(ctx, count, body); }

}  // namespace iss
