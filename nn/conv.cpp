// Conv3d: checks the shape and the call arguments, then hands the work to the backend of the
// context (oneDNN on the CPU, cuDNN on CUDA; see nn/conv_backends.h). The checks live here so
// that both backends refuse the same inputs with the same messages.
#include "nn/conv.h"

#include <cmath>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "nn/conv_backends.h"

namespace iss {

struct Conv3d::Impl {
    std::unique_ptr<ConvBackend> backend;
};

namespace {

void check_shape(const ConvShape& s) {
    ISS_REQUIRE(s.kernel >= 1 && s.kernel <= 3, "Conv3d: kernel must be 1, 2 or 3, got ", s.kernel);
    ISS_REQUIRE(s.in.n >= 1, "Conv3d: in.n (batch) must be >= 1, got ", s.in.n);
    ISS_REQUIRE(s.in.d >= 1 && s.in.h >= 1 && s.in.w >= 1, "Conv3d: in.d, in.h, in.w must be >= 1, got ",
                s.in.str());
    ISS_REQUIRE(s.in.c >= 1, "Conv3d: in.c (input channels) must be >= 1, got ", s.in.c);
    ISS_REQUIRE(s.pad_d || s.in.d >= s.kernel, "Conv3d: without padding along D the input needs at least ", s.kernel,
                " rows, got ", s.in.d);
    ISS_REQUIRE(s.out_c >= 1, "Conv3d: out_c (output channels) must be >= 1, got ", s.out_c);
    ISS_REQUIRE(s.elu_alpha >= 0.0f && std::isfinite(s.elu_alpha), "Conv3d: elu_alpha must be finite and >= 0, got ",
                s.elu_alpha);
    ISS_REQUIRE(s.precision == Precision::bf16 || (s.x_type == DType::f32 && s.y_type == DType::f32),
                "Conv3d: bf16 tensors need bf16 precision (x is ", dtype_name(s.x_type), ", y ", dtype_name(s.y_type),
                ")");
}

void require_backward(const ConvShape& s, const char* call) {
    ISS_REQUIRE(!s.forward_only, "Conv3d::", call, ": this engine was made for forward passes only (forward_only)");
}

}  // namespace

Conv3d::Conv3d(DeviceContext& ctx, const ConvShape& shape) : ctx_(ctx), shape_(shape), impl_(std::make_unique<Impl>()) {
    check_shape(shape_);
    // bf16 where it runs natively only (callers ask usable_precision, nn/precision.h): never a
    // silent fp32 run, nor an emulation slower than fp32.
    ISS_REQUIRE(shape_.precision == Precision::fp32 || bf16_is_native(ctx_),
                "Conv3d: bf16 is not available on this device (nn/precision.h: usable_precision)");
    if (ctx_.is_cuda()) {
#if INFANT_WITH_CUDA
        impl_->backend = make_cudnn_conv3d(ctx_, shape_);
#else
        throw Error("Conv3d: this program was built without CUDA");
#endif
    } else {
        impl_->backend = make_dnnl_conv3d(ctx_, shape_);
    }
}

Conv3d::~Conv3d() = default;

void Conv3d::forward(const void* x, const float* w, const float* b, void* y) {
    require_tensor(x, "Conv3d::forward", "x");
    require_tensor(w, "Conv3d::forward", "w");
    require_tensor(b, "Conv3d::forward", "b");
    require_tensor(y, "Conv3d::forward", "y");
    impl_->backend->forward(x, w, b, y);
}

void Conv3d::backward_data(const void* dy, const float* w, void* dx) {
    require_backward(shape_, "backward_data");
    require_tensor(dy, "Conv3d::backward_data", "dy");
    require_tensor(w, "Conv3d::backward_data", "w");
    require_tensor(dx, "Conv3d::backward_data", "dx");
    impl_->backend->backward_data(dy, w, dx);
}

void Conv3d::backward_weights(const void* x, const void* dy, float* dw, float* db) {
    require_backward(shape_, "backward_weights");
    require_tensor(x, "Conv3d::backward_weights", "x");
    require_tensor(dy, "Conv3d::backward_weights", "dy");
    require_tensor(dw, "Conv3d::backward_weights", "dw");
    require_tensor(db, "Conv3d::backward_weights", "db");
    impl_->backend->backward_weights(x, dy, dw, db);
}

bool Conv3d::forward_reorders_activations() const { return impl_->backend->forward_reorders_activations(); }
int64_t Conv3d::backward_weights_slabs() const { return impl_->backend->backward_weights_slabs(); }

}  // namespace iss
