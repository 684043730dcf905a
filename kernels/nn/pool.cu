// CUDA launchers of pooling, upsampling and concatenation: one thread per element of the
// tensor the body runs over, grid-stride, over the shared bodies of pool.h.
#include "kernels/common/launch.cuh"
#include "kernels/nn/channels_last.h"
#include "kernels/nn/pool.h"

namespace iss {

template <class Body>
void pool_cuda(DeviceContext& ctx, const Body& body, int64_t voxels, int64_t channels) {
    const int64_t count = voxels * channels;
    cuda_for_each(ctx, count, index_extent_of(body, count), ChannelsLastElement<Body>{body, channels});
}

#define ISS_INSTANTIATE(T)                                                                          \
    template void pool_cuda(DeviceContext&, const MaxPool2ForwardBody<T>&, int64_t, int64_t);       \
    template void pool_cuda(DeviceContext&, const MaxPool2BackwardBody<T>&, int64_t, int64_t);      \
    template void pool_cuda(DeviceContext&, const Upsample2ForwardBody<T>&, int64_t, int64_t);      \
    template void pool_cuda(DeviceContext&, const Upsample2BackwardBody<T>&, int64_t, int64_t);     \
    template void pool_cuda(DeviceContext&, const ConcatForwardBody<T>&, int64_t, int64_t);         \
    template void pool_cuda(DeviceContext&, const ConcatBackwardBody<T>&, int64_t, int64_t);        \
    template void pool_cuda(DeviceContext&, const UpsampleConcatForwardBody<T>&, int64_t, int64_t); \
    template void pool_cuda(DeviceContext&, const AddUpsampledParitiesBody<T>&, int64_t, int64_t);
ISS_FOR_EACH_STORAGE(ISS_INSTANTIATE)
#undef ISS_INSTANTIATE
template void pool_cuda(DeviceContext&, const SplitUpsampledWeightsBody&, int64_t, int64_t);
template void pool_cuda(DeviceContext&, const FoldUpsampledWeightsBody&, int64_t, int64_t);

}  // namespace iss
