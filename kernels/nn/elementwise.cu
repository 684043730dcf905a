// CUDA launcher of the element-wise kernels: one thread per element over the shared bodies.
#include "kernels/common/launch.cuh"
#include "kernels/nn/channels_last.h"
#include "kernels/nn/elementwise.h"

namespace iss {

template <class Body>
void elementwise_cuda(DeviceContext& ctx, const Body& body, int64_t count) {
    cuda_for_each(ctx, count, body);
}

#define ISS_INSTANTIATE(T)                                                                 \
    template void elementwise_cuda(DeviceContext&, const EluForwardBody<T>&, int64_t);    \
    template void elementwise_cuda(DeviceContext&, const EluBackwardBody<T>&, int64_t);   \
    template void elementwise_cuda(DeviceContext&, const AddInplaceBody<T>&, int64_t);
ISS_FOR_EACH_STORAGE(ISS_INSTANTIATE)
#undef ISS_INSTANTIATE
#define ISS_INSTANTIATE(In, Out)                                                                           \
    template void elementwise_cuda(DeviceContext&, const RoundToBf16ValuesBody<In, Out>&, int64_t);           \
    template void elementwise_cuda(DeviceContext&, const ChannelsLastElement<BiasEluBody<In, Out>>&, int64_t);
ISS_FOR_EACH_STORAGE_PAIR(ISS_INSTANTIATE)
#undef ISS_INSTANTIATE
template void elementwise_cuda(DeviceContext&, const FillBody&, int64_t);
template void elementwise_cuda(DeviceContext&, const ScaleBody&, int64_t);

}  // namespace iss
