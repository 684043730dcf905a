// CUDA launcher of the spatial gather: one thread per output voxel over the shared body.
#include "kernels/common/launch.cuh"
#include "kernels/synth/deform.h"

namespace iss {

void deform_labels_cuda(DeviceContext& ctx, const DeformArgs& a) { cuda_for_each_voxel(ctx, DeformBody{a}); }

}  // namespace iss
