// CUDA launchers of the intensity stages. The min/max reduction works on the bit patterns:
// for floats >= 0 the unsigned order of the bits is the numeric order, so atomicMin/atomicMax
// on uint32 give the exact extremes, independent of the order of the threads. The range stays
// on the device, where normalise_gamma reads it: nothing here waits for the GPU.
#include "kernels/common/launch.cuh"
#include "kernels/synth/intensity.h"

namespace iss {
namespace {

__global__ void min_max_kernel(const float* values, int64_t count, uint32_t* result) {
    unsigned int low = 0xffffffffu, high = 0u;
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < count; v += stride) {
        const unsigned int bits = __float_as_uint(values[v]);
        low = min(low, bits);
        high = max(high, bits);
    }
    // Warp reduction first, then one atomic per warp.
    for (int offset = 16; offset > 0; offset /= 2) {
        low = min(low, __shfl_down_sync(0xffffffffu, low, offset));
        high = max(high, __shfl_down_sync(0xffffffffu, high, offset));
    }
    if ((threadIdx.x & 31) == 0) {
        atomicMin(&result[0], low);
        atomicMax(&result[1], high);
    }
}

}  // namespace

void bias_clip_cuda(DeviceContext& ctx, const BiasClipArgs& a) {
    cuda_for_each_voxel(ctx, a.dim, BiasClipBody{a});
    const cudaStream_t stream = static_cast<cudaStream_t>(ctx.cuda_stream());
    // The reduction's identities: all ones for the min, zero for the max.
    ISS_CUDA_CHECK(cudaMemsetAsync(a.range, 0xff, sizeof(uint32_t), stream));
    ISS_CUDA_CHECK(cudaMemsetAsync(a.range + 1, 0, sizeof(uint32_t), stream));
    const int64_t count = a.dim[0] * a.dim[1] * a.dim[2];
    const int threads = 256;
    min_max_kernel<<<std::min(cuda_blocks_for(count, threads), 1024u), threads, 0, stream>>>(a.image, count, a.range);
    ISS_CUDA_CHECK_LAUNCH();
}

void normalise_gamma_cuda(DeviceContext& ctx, const NormaliseGammaArgs& a) {
    cuda_for_each(ctx, a.count, NormaliseGammaBody{a});
}

}  // namespace iss
