#include "kernels/synth/svf.h"

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"

namespace iss {

void resize_field(DeviceContext& ctx, const ResizeFieldArgs& a) {
    ISS_REQUIRE(a.src && a.dst, "resize_field: null field pointer");
    for (int d = 0; d < 3; ++d) ISS_REQUIRE(a.src_dim[d] > 0 && a.dst_dim[d] > 0, "resize_field: empty field");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("resize_field", resize_field_cuda(ctx, a));
        return;
    }
    cpu_for_each_voxel(a.dst_dim, ResizeFieldBody{a});
}

void square_field(DeviceContext& ctx, const SquareFieldArgs& a) {
    ISS_REQUIRE(a.src && a.dst && a.src != a.dst, "square_field: null or aliased field pointers");
    for (int d = 0; d < 3; ++d) ISS_REQUIRE(a.dim[d] > 0, "square_field: empty field");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("square_field", square_field_cuda(ctx, a));
        return;
    }
    cpu_for_each_voxel(a.dim, SquareFieldBody{a});
}

}  // namespace iss
