// Resampling, CUDA launcher: one thread per output voxel (grid-stride over the flattened
// output grid), each running the same body as the CPU launcher (resample.h), so the two
// backends agree bit for bit. Asynchronous on the context's stream.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/geometry/resample.h"

namespace iss {

namespace {

template <class T>
__global__ void resample_kernel(const ResampleArgsT<T> a) {
    const int64_t nx = a.dst_dim[0], ny = a.dst_dim[1];
    const int64_t count = nx * ny * a.dst_dim[2];
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < count; v += stride) {
        const int64_t i = v % nx;
        const int64_t j = (v / nx) % ny;
        const int64_t k = v / (nx * ny);
        resample_voxel(a, i, j, k);
    }
}

template <class T>
void launch(DeviceContext& ctx, const ResampleArgsT<T>& a) {
    ISS_REQUIRE(ctx.is_cuda(), "resample_cuda: the context is not a CUDA context");
    check_resample_args(a);
    const int64_t count = a.dst_dim[0] * a.dst_dim[1] * a.dst_dim[2];
    const int threads = 256;
    // Enough blocks to fill any current GPU many times over; the loop covers the rest.
    const int64_t blocks = std::min<int64_t>((count + threads - 1) / threads, int64_t(1) << 16);
    resample_kernel<T><<<unsigned(blocks), threads, 0, static_cast<cudaStream_t>(ctx.cuda_stream())>>>(a);
    ISS_CUDA_CHECK_LAUNCH();
}

}  // namespace

void resample_cuda(DeviceContext& ctx, const ResampleArgs& args) { launch(ctx, args); }
void resample_cuda(DeviceContext& ctx, const ResampleLabelArgs& args) { launch(ctx, args); }

}  // namespace iss
