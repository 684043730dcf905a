#include "kernels/synth/gmm.h"

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"

namespace iss {

void paint_gmm(DeviceContext& ctx, const GmmArgs& a) {
    ISS_REQUIRE(a.generation && a.image, "paint_gmm: null label or image pointer");
    ISS_REQUIRE(a.count >= 0, "paint_gmm: negative voxel count");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("paint_gmm", paint_gmm_cuda(ctx, a));
        return;
    }
    cpu_for_each((a.count + 3) / 4, GmmBody{a});
}

}  // namespace iss
