// Max-pooling by 2 and nearest-neighbour upsampling by 2 over (D, H, W) of a channels-last
// (N, D, H, W, C) tensor, and channel concatenation. Exact (no rounding): CPU and CUDA agree
// bit for bit.
//
// maxpool2: out (N, D/2, H/2, W/2, C) (D, H, W even); `argmax` keeps, per output element, which
//   of the 8 inputs won (0..7, bit 0 = w, bit 1 = h, bit 2 = d; the first maximum wins; NaN
//   propagates). Backward writes dx (zero where the input did not win).
// upsample2: out (N, 2D, 2H, 2W, C), each input copied to its 2x2x2 block. Backward sums the
//   8 gradients of the block in a fixed order.
// concat: out channels [a (ca) | b (cb)] per voxel. Backward splits; either gradient may be null.
// Backward kernels overwrite their outputs.
#pragma once

#include <cstdint>

#include "kernels/nn/shape.h"

namespace iss {

class DeviceContext;

void maxpool2_forward(DeviceContext& ctx, const float* x, const Shape5& in, float* y, uint8_t* argmax);
void maxpool2_backward(DeviceContext& ctx, const float* dy, const uint8_t* argmax, const Shape5& in, float* dx);

void upsample2_forward(DeviceContext& ctx, const float* x, const Shape5& in, float* y);
void upsample2_backward(DeviceContext& ctx, const float* dy, const Shape5& in, float* dx);

void concat_channels_forward(DeviceContext& ctx, const float* a, int64_t ca, const float* b, int64_t cb,
                             int64_t voxels, float* y);
void concat_channels_backward(DeviceContext& ctx, const float* dy, int64_t ca, int64_t cb, int64_t voxels, float* da,
                              float* db);

}  // namespace iss
