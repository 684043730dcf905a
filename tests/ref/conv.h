// Reference 3-D convolution in double, written from the definition (docs/KERNELS.md,
// "Conv3d"): plain loops, never calling Conv3d. Cross-correlation, stride 1, zero padding
// p = k/2 (pd = p along D, or 0 where ConvShape::pad_d is false): tap (a, b, c) of the kernel
// at output (z, y, x) reads the input at (z+a-pd, y+b-p, x+c-p); the output has
// ConvShape::out()'s shape.
//
// Layouts as in nn/conv.h: x (N, D, H, W, Ci), y (N, D', H', W', Co), w (Co, k, k, k, Ci), b (Co).
#pragma once

#include <vector>

#include "nn/conv.h"

namespace iss::ref {

// y = b + sum over taps and input channels of w * x (taps outside the volume read 0).
std::vector<double> conv3d_forward(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                                   const std::vector<float>& b);

// dx = d(sum dy * y)/dx: every output position that read input position q through tap t
// sends dy * w(t) back to q.
std::vector<double> conv3d_backward_data(const ConvShape& s, const std::vector<float>& dy,
                                         const std::vector<float>& w);

// dw(t) = sum over output positions of dy * (input at the position tap t reads); db = sum dy.
void conv3d_backward_weights(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& dy,
                             std::vector<double>& dw, std::vector<double>& db);

}  // namespace iss::ref
