// 3-D convolution, stride 1, zero padding k/2 on every side (or none along D: ConvShape::pad_d),
// with bias, on channels-last activations: the vendor libraries do the work (oneDNN on the CPU,
// cuDNN on CUDA), each confined to one file behind this narrow interface. Kernels 1 and 3 keep
// the size ("same"); kernel 2 (padding 1) gives one more row on every axis: output (z, y, x)
// reads inputs z-1..z, y-1..y, x-1..x (the decoder's convolution over upsampled values computed
// on the coarse grid, nn/ops.h: upsample_concat_conv).
//
// Layouts: x (N, D, H, W, Ci) and y (N, D', H', W', Co) channels-last; weights (Co, k, k, k, Ci)
// ("odhwi", the layout cuDNN calls NHWC for filters); bias (Co).
// forward:          y = conv(x, w) + b, or ELU(conv(x, w) + b) with the ELU fused (elu_alpha > 0)
// backward_data:    dx = conv_transpose(dy, w)            (overwrites dx)
// backward_weights: dw = sum x * dy, db = sum dy           (overwrites dw, db)
// Algorithms / primitives are chosen once per shape and cached in the Conv3d object.
// No TF32 on CUDA in fp32 (the fp32 path is compared with the CPU). Tolerance against a naive double
// convolution: 1e-4 relative to the largest |output| (fp32 accumulation over k^3 * Ci terms).
// In bf16 (ConvShape::precision, where usable_precision allows it) the inputs and weights of
// each pass are read as bfloat16 and the products summed in fp32. The activations may be
// stored bf16 or fp32 (x_type for x and dx, y_type for y and dy; fp32 inputs are rounded to
// bf16 on the way in, a bf16 output is the fp32 sum plus bias rounded once, except a CUDA
// forward on bf16 tensor cores, which rounds the sum and then the sum plus bias); weights,
// bias and their gradients are fp32. In fp32 every tensor is fp32. Error model:
// docs/KERNELS.md, "Conv3d in bf16".
#pragma once

#include <memory>

#include "kernels/nn/shape.h"
#include "nn/precision.h"

namespace iss {

class DeviceContext;

struct ConvShape {
    Shape5 in;       // input activation shape (c = input channels)
    int64_t out_c;   // output channels
    int64_t kernel;  // 1, 2 or 3
    Precision precision = Precision::fp32;
    DType x_type = DType::f32;  // x and dx
    DType y_type = DType::f32;  // y and dy
    // > 0: the forward applies ELU(alpha) to its output (oneDNN as a post-op on the values still
    // in registers; cuDNN through our ELU kernel after the bias), saving a pass over y. The
    // backward passes are the convolution's alone (the gradient before the ELU).
    float elu_alpha = 0.0f;
    // An engine for inference: only the forward pass runs (the backward passes refuse), so no
    // backward primitive is built, and an fp32 forward on the CPU may go through oneDNN's
    // blocked layout (nn/conv_dnnl.cpp), whose copies of the activations a training step's
    // 72-channel decoder convolution would make large.
    bool forward_only = false;
    // false: no zero padding along D, so the output has 2 * padding() fewer rows than with it.
    // For a slab of a larger volume whose input already holds the real neighbour rows
    // (UNet::predict): only the rows the slab keeps are computed.
    bool pad_d = true;

    int64_t padding() const { return kernel / 2; }
    int64_t padding_d() const { return pad_d ? padding() : 0; }
    // The output's shape: the input's, one larger on every padded spatial axis for kernel 2, and
    // kernel - 1 rows shorter along an unpadded D.
    Shape5 out() const {
        const auto extent = [&](int64_t size, int64_t pad) { return size + 2 * pad - kernel + 1; };
        return Shape5{in.n, extent(in.d, padding_d()), extent(in.h, padding()), extent(in.w, padding()), out_c};
    }
    int64_t weight_count() const { return out_c * kernel * kernel * kernel * in.c; }
    bool operator==(const ConvShape& o) const {
        return in == o.in && out_c == o.out_c && kernel == o.kernel && precision == o.precision &&
               x_type == o.x_type && y_type == o.y_type && elu_alpha == o.elu_alpha &&
               forward_only == o.forward_only && pad_d == o.pad_d;
    }
};

class Conv3d {
public:
    Conv3d(DeviceContext& ctx, const ConvShape& shape);
    ~Conv3d();
    Conv3d(const Conv3d&) = delete;
    Conv3d& operator=(const Conv3d&) = delete;

    const ConvShape& shape() const { return shape_; }
    // Activations (x, y, dy, dx) are of the shape's x_type / y_type; w, b, dw, db fp32.
    void forward(const void* x, const float* w, const float* b, void* y);
    void backward_data(const void* dy, const float* w, void* dx);
    void backward_weights(const void* x, const void* dy, float* dw, float* db);
    // Whether the forward reorders its activations into a library layout and back (the CPU's
    // blocked forward, nn/conv_dnnl.cpp): for tests and benchmarks.
    bool forward_reorders_activations() const;
    // How many passes over slabs along D backward_weights makes (1: the whole volume at once;
    // the CPU's slabs bound oneDNN's scratchpad, nn/conv_dnnl.cpp): for tests and benchmarks.
    int64_t backward_weights_slabs() const;

    struct Impl;  // oneDNN or cuDNN state, per backend

private:
    DeviceContext& ctx_;
    ConvShape shape_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace iss
