// CUDA launchers of the intensity stages. The min/max reduction works on the bit patterns:
// for floats >= 0 the unsigned order of the bits is the numeric order, so atomicMin/atomicMax
// on uint32 give the exact extremes, independent of the order of the threads. The range stays
// on the device, where normalise_gamma reads it: nothing here waits for the GPU.
#include "kernels/common/launch.cuh"
#include "kernels/synth/intensity.h"

namespace iss {
namespace {

__device__ void min_max_of(const float* values, int64_t count, uint32_t* result) {
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

__global__ void min_max_kernel(const float* values, int64_t count, uint32_t* result) { min_max_of(values, count, result); }

// The same over the image a body in device memory names (sample_kernels.h).
__global__ void min_max_kernel_from(const BiasClipBody* __restrict__ body) {
    const int64_t* dim = body->grid();
    min_max_of(body->a.image, dim[0] * dim[1] * dim[2], body->a.range);
}

constexpr int range_threads = 256;

unsigned range_blocks(int64_t count) { return std::min(cuda_blocks_for(count, range_threads), 1024u); }

// The reduction's identities: all ones for the min, zero for the max.
void reset_range(cudaStream_t stream, uint32_t* range) {
    ISS_CUDA_CHECK(cudaMemsetAsync(range, 0xff, sizeof(uint32_t), stream));
    ISS_CUDA_CHECK(cudaMemsetAsync(range + 1, 0, sizeof(uint32_t), stream));
}

}  // namespace

void bias_clip_cuda(DeviceContext& ctx, const BiasClipArgs& a) {
    const BiasClipBody body{a};
    cuda_for_each_voxel(ctx, body);
    const cudaStream_t stream = static_cast<cudaStream_t>(ctx.cuda_stream());
    reset_range(stream, a.range);
    const int64_t count = a.dim[0] * a.dim[1] * a.dim[2];
    min_max_kernel<<<range_blocks(count), range_threads, 0, stream>>>(a.image, count, a.range);
    ISS_CUDA_CHECK_LAUNCH();
}

void bias_clip_cuda_from(DeviceContext& ctx, const BiasClipBody* device_body, uint32_t* range, int64_t capacity) {
    cuda_for_each_voxel_from(ctx, device_body, capacity);
    const cudaStream_t stream = static_cast<cudaStream_t>(ctx.cuda_stream());
    reset_range(stream, range);
    min_max_kernel_from<<<range_blocks(capacity), range_threads, 0, stream>>>(device_body);
    ISS_CUDA_CHECK_LAUNCH();
}

void normalise_gamma_cuda(DeviceContext& ctx, const NormaliseGammaArgs& a) {
    cuda_for_each(ctx, NormaliseGammaBody{a});
}

}  // namespace iss
