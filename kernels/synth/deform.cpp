#include "kernels/synth/deform.h"

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"

namespace iss {

void deform_labels(DeviceContext& ctx, const DeformArgs& a) {
    ISS_REQUIRE(a.map && a.out, "deform_labels: null label map or output");
    for (int d = 0; d < 3; ++d) {
        ISS_REQUIRE(a.map_dim[d] > 0 && a.out_dim[d] > 0, "deform_labels: empty label map or output");
        ISS_REQUIRE(!a.field || a.field_dim[d] > 0, "deform_labels: empty displacement field");
    }
    ISS_REQUIRE(a.flip_axis >= -1 && a.flip_axis < 3, "deform_labels: flip axis ", a.flip_axis);
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("deform_labels", deform_labels_cuda(ctx, a));
        return;
    }
    cpu_for_each_voxel(a.out_dim, DeformBody{a});
}

}  // namespace iss
