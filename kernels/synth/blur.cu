// CUDA launcher of the separable blur: the shared body over the rows' quads (blur.h).
#include "kernels/common/launch.cuh"
#include "kernels/synth/blur.h"

namespace iss {

void blur_axis_cuda(DeviceContext& ctx, const BlurArgs& a) { cuda_for_each_voxel(ctx, BlurBody{a}); }

}  // namespace iss
