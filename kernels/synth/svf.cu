// CUDA launchers of the velocity-field kernels: one thread per voxel over the shared bodies.
#include "kernels/common/launch.cuh"
#include "kernels/synth/svf.h"

namespace iss {

void resize_field_cuda(DeviceContext& ctx, const ResizeFieldArgs& a) { cuda_for_each_voxel(ctx, ResizeFieldBody{a}); }
void square_field_cuda(DeviceContext& ctx, const SquareFieldArgs& a) { cuda_for_each_voxel(ctx, SquareFieldBody{a}); }

}  // namespace iss
