// CUDA launchers of the element-wise kernels: one thread per element over the shared bodies.
#include "kernels/common/launch.cuh"
#include "kernels/nn/elementwise.h"

namespace iss {

template <class T>
void elu_forward_cuda(DeviceContext& ctx, const EluForwardBody<T>& body, int64_t count) {
    cuda_for_each(ctx, count, body);
}
template <class T>
void elu_backward_cuda(DeviceContext& ctx, const EluBackwardBody<T>& body, int64_t count) {
    cuda_for_each(ctx, count, body);
}
template <class T>
void add_inplace_cuda(DeviceContext& ctx, const AddInplaceBody<T>& body, int64_t count) {
    cuda_for_each(ctx, count, body);
}
#define ISS_INSTANTIATE(T)                                                                      \
    template void elu_forward_cuda<T>(DeviceContext&, const EluForwardBody<T>&, int64_t);      \
    template void elu_backward_cuda<T>(DeviceContext&, const EluBackwardBody<T>&, int64_t);    \
    template void add_inplace_cuda<T>(DeviceContext&, const AddInplaceBody<T>&, int64_t);
ISS_FOR_EACH_STORAGE(ISS_INSTANTIATE)
#undef ISS_INSTANTIATE
void fill_cuda(DeviceContext& ctx, const FillBody& body, int64_t count) { cuda_for_each(ctx, count, body); }
void scale_inplace_cuda(DeviceContext& ctx, const ScaleBody& body, int64_t count) { cuda_for_each(ctx, count, body); }

}  // namespace iss
