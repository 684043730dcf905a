// Element-wise kernels: preconditions, then the OpenMP loop over the shared body or the CUDA
// launcher (elementwise.cu).
#include "kernels/nn/elementwise.h"

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"
#include "kernels/nn/channels_last.h"

namespace iss {
namespace {

// A null pointer is allowed only for an empty array (an empty Buffer has no storage).
void require_array(const void* ptr, int64_t count, const char* op, const char* name) {
    ISS_REQUIRE(count >= 0, op, ": negative count ", count);
    ISS_REQUIRE(ptr || count == 0, op, ": tensor '", name, "' is null");
}

// One body over `count` elements on the context's device.
template <class Body>
void run_elementwise(DeviceContext& ctx, const char* op, const Body& body, int64_t count) {
    if (ctx.is_cuda()) {
#if INFANT_WITH_CUDA
        elementwise_cuda(ctx, body, count);
#else
        throw Error(cat(op, ": this program was built without CUDA"));
#endif
        return;
    }
    cpu_for_each(count, body);
}

}  // namespace

template <class T>
void elu_forward(DeviceContext& ctx, const T* x, T* y, int64_t count, float alpha) {
    require_array(x, count, "elu_forward", "x");
    require_array(y, count, "elu_forward", "y");
    run_elementwise(ctx, "elu_forward", EluForwardBody<T>{x, y, alpha}, count);
}

template <class T>
void elu_backward(DeviceContext& ctx, const T* y, const T* dy, T* dx, int64_t count, float alpha) {
    require_array(y, count, "elu_backward", "y");
    require_array(dy, count, "elu_backward", "dy");
    require_array(dx, count, "elu_backward", "dx");
    run_elementwise(ctx, "elu_backward", EluBackwardBody<T>{y, dy, dx, alpha}, count);
}

template <class T>
void add_inplace(DeviceContext& ctx, T* dst, const T* src, int64_t count) {
    require_array(dst, count, "add_inplace", "dst");
    require_array(src, count, "add_inplace", "src");
    run_elementwise(ctx, "add_inplace", AddInplaceBody<T>{dst, src}, count);
}

void fill(DeviceContext& ctx, float* dst, int64_t count, float value) {
    require_array(dst, count, "fill", "dst");
    run_elementwise(ctx, "fill", FillBody{dst, value}, count);
}

void scale_inplace(DeviceContext& ctx, float* dst, int64_t count, float factor) {
    require_array(dst, count, "scale_inplace", "dst");
    run_elementwise(ctx, "scale_inplace", ScaleBody{dst, factor}, count);
}

template <class In, class Out>
void round_to_bf16_values(DeviceContext& ctx, const In* src, Out* dst, int64_t count) {
    require_array(src, count, "round_to_bf16_values", "src");
    require_array(dst, count, "round_to_bf16_values", "dst");
    run_elementwise(ctx, "round_to_bf16_values", RoundToBf16ValuesBody<In, Out>{src, dst}, count);
}

template <class In, class Out>
void bias_elu(DeviceContext& ctx, const In* src, Out* dst, const float* bias, int64_t voxels, int64_t channels,
              bool elu, float alpha) {
    ISS_REQUIRE(voxels >= 0 && channels >= 1, "bias_elu: bad shape, ", voxels, " voxels x ", channels, " channels");
    require_array(src, voxels * channels, "bias_elu", "src");
    require_array(dst, voxels * channels, "bias_elu", "dst");
    require_array(bias, channels, "bias_elu", "bias");
    const BiasEluBody<In, Out> body{src, dst, bias, channels, elu, alpha};
    if (ctx.is_cuda()) {
        run_elementwise(ctx, "bias_elu", ChannelsLastElement<BiasEluBody<In, Out>>{body, channels}, voxels * channels);
        return;
    }
    cpu_for_each_channels_last(voxels, channels, body);
}

#define ISS_INSTANTIATE(T)                                                                      \
    template void elu_forward<T>(DeviceContext&, const T*, T*, int64_t, float);                \
    template void elu_backward<T>(DeviceContext&, const T*, const T*, T*, int64_t, float);     \
    template void add_inplace<T>(DeviceContext&, T*, const T*, int64_t);
ISS_FOR_EACH_STORAGE(ISS_INSTANTIATE)
#undef ISS_INSTANTIATE

// The conversions and epilogues a convolution needs (nn/conv_cudnn.cpp).
#define ISS_INSTANTIATE(In, Out)                                                                      \
    template void round_to_bf16_values<In, Out>(DeviceContext&, const In*, Out*, int64_t);            \
    template void bias_elu<In, Out>(DeviceContext&, const In*, Out*, const float*, int64_t, int64_t, bool, float);
ISS_FOR_EACH_STORAGE_PAIR(ISS_INSTANTIATE)
#undef ISS_INSTANTIATE

}  // namespace iss
