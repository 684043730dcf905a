// Element-wise kernels: preconditions, then the OpenMP loop over the shared body or the CUDA
// launcher (elementwise.cu).
#include "kernels/nn/elementwise.h"

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"

namespace iss {
namespace {

// A null pointer is allowed only for an empty array (an empty Buffer has no storage).
void require_array(const void* ptr, int64_t count, const char* op, const char* name) {
    ISS_REQUIRE(count >= 0, op, ": negative count ", count);
    ISS_REQUIRE(ptr || count == 0, op, ": tensor '", name, "' is null");
}

}  // namespace

template <class T>
void elu_forward(DeviceContext& ctx, const T* x, T* y, int64_t count, float alpha) {
    require_array(x, count, "elu_forward", "x");
    require_array(y, count, "elu_forward", "y");
    const EluForwardBody<T> body{x, y, alpha};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("elu_forward", elementwise_cuda(ctx, body, count));
        return;
    }
    cpu_for_each(count, body);
}

template <class T>
void elu_backward(DeviceContext& ctx, const T* y, const T* dy, T* dx, int64_t count, float alpha) {
    require_array(y, count, "elu_backward", "y");
    require_array(dy, count, "elu_backward", "dy");
    require_array(dx, count, "elu_backward", "dx");
    const EluBackwardBody<T> body{y, dy, dx, alpha};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("elu_backward", elementwise_cuda(ctx, body, count));
        return;
    }
    cpu_for_each(count, body);
}

template <class T>
void add_inplace(DeviceContext& ctx, T* dst, const T* src, int64_t count) {
    require_array(dst, count, "add_inplace", "dst");
    require_array(src, count, "add_inplace", "src");
    const AddInplaceBody<T> body{dst, src};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("add_inplace", elementwise_cuda(ctx, body, count));
        return;
    }
    cpu_for_each(count, body);
}

void fill(DeviceContext& ctx, float* dst, int64_t count, float value) {
    require_array(dst, count, "fill", "dst");
    const FillBody body{dst, value};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("fill", elementwise_cuda(ctx, body, count));
        return;
    }
    cpu_for_each(count, body);
}

void scale_inplace(DeviceContext& ctx, float* dst, int64_t count, float factor) {
    require_array(dst, count, "scale_inplace", "dst");
    const ScaleBody body{dst, factor};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("scale_inplace", elementwise_cuda(ctx, body, count));
        return;
    }
    cpu_for_each(count, body);
}

#define ISS_INSTANTIATE(T)                                                                      \
    template void elu_forward<T>(DeviceContext&, const T*, T*, int64_t, float);                \
    template void elu_backward<T>(DeviceContext&, const T*, const T*, T*, int64_t, float);     \
    template void add_inplace<T>(DeviceContext&, T*, const T*, int64_t);
ISS_FOR_EACH_STORAGE(ISS_INSTANTIATE)
#undef ISS_INSTANTIATE

}  // namespace iss
