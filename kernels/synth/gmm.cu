// CUDA launcher of the GMM paint: one thread per block of 4 voxels over the shared body.
#include "kernels/common/launch.cuh"
#include "kernels/synth/gmm.h"

namespace iss {

void paint_gmm_cuda(DeviceContext& ctx, const GmmArgs& a) { cuda_for_each(ctx, GmmBody{a}); }

}  // namespace iss
