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

void elu_forward(DeviceContext& ctx, const float* x, float* y, int64_t count, float alpha) {
    require_array(x, count, "elu_forward", "x");
    require_array(y, count, "elu_forward", "y");
    const EluForwardBody body{x, y, alpha};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("elu_forward", elu_forward_cuda(ctx, body, count));
        return;
    }
    cpu_for_each(count, body);
}

void elu_backward(DeviceContext& ctx, const float* y, const float* dy, float* dx, int64_t count, float alpha) {
    require_array(y, count, "elu_backward", "y");
    require_array(dy, count, "elu_backward", "dy");
    require_array(dx, count, "elu_backward", "dx");
    const EluBackwardBody body{y, dy, dx, alpha};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("elu_backward", elu_backward_cuda(ctx, body, count));
        return;
    }
    cpu_for_each(count, body);
}

void add_inplace(DeviceContext& ctx, float* dst, const float* src, int64_t count) {
    require_array(dst, count, "add_inplace", "dst");
    require_array(src, count, "add_inplace", "src");
    const AddInplaceBody body{dst, src};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("add_inplace", add_inplace_cuda(ctx, body, count));
        return;
    }
    cpu_for_each(count, body);
}

void fill(DeviceContext& ctx, float* dst, int64_t count, float value) {
    require_array(dst, count, "fill", "dst");
    const FillBody body{dst, value};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("fill", fill_cuda(ctx, body, count));
        return;
    }
    cpu_for_each(count, body);
}

void scale_inplace(DeviceContext& ctx, float* dst, int64_t count, float factor) {
    require_array(dst, count, "scale_inplace", "dst");
    const ScaleBody body{dst, factor};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("scale_inplace", scale_inplace_cuda(ctx, body, count));
        return;
    }
    cpu_for_each(count, body);
}

}  // namespace iss
