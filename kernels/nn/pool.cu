// CUDA launchers of pooling, upsampling and concatenation: one thread per element of the
// tensor the body runs over, grid-stride, over the shared bodies of pool.h.
#include "kernels/common/launch.cuh"
#include "kernels/nn/channels_last.h"
#include "kernels/nn/pool.h"

namespace iss {
namespace {

template <class Body>
void launch(DeviceContext& ctx, const Body& body, int64_t voxels, int64_t channels) {
    cuda_for_each(ctx, voxels * channels, ChannelsLastElement<Body>{body, channels});
}

}  // namespace

void maxpool2_forward_cuda(DeviceContext& ctx, const MaxPool2ForwardBody& body, int64_t voxels, int64_t channels) {
    launch(ctx, body, voxels, channels);
}
void maxpool2_backward_cuda(DeviceContext& ctx, const MaxPool2BackwardBody& body, int64_t voxels, int64_t channels) {
    launch(ctx, body, voxels, channels);
}
void upsample2_forward_cuda(DeviceContext& ctx, const Upsample2ForwardBody& body, int64_t voxels, int64_t channels) {
    launch(ctx, body, voxels, channels);
}
void upsample2_backward_cuda(DeviceContext& ctx, const Upsample2BackwardBody& body, int64_t voxels, int64_t channels) {
    launch(ctx, body, voxels, channels);
}
void concat_forward_cuda(DeviceContext& ctx, const ConcatForwardBody& body, int64_t voxels, int64_t channels) {
    launch(ctx, body, voxels, channels);
}
void concat_backward_cuda(DeviceContext& ctx, const ConcatBackwardBody& body, int64_t voxels, int64_t channels) {
    launch(ctx, body, voxels, channels);
}

}  // namespace iss
