// CUDA launchers of the intensity stages. The min/max reduction works on the bit patterns:
// for floats >= 0 the unsigned order of the bits is the numeric order, so atomicMin/atomicMax
// on uint32 give the exact extremes, independent of the order of the threads. The range stays
// on the device, where normalise_gamma reads it: nothing here waits for the GPU.
#include "kernels/common/error.h"
#include "kernels/common/launch.cuh"
#include "kernels/synth/intensity.h"

namespace iss {
namespace {

constexpr int range_threads = 256;

// The bias pass and the image's range in one pass, as the CPU rows do (intensity.cpp): each
// thread runs the body over its voxels and folds the values it wrote into its min and max bits;
// the block reduces them (shuffles, then shared memory) and adds one atomic pair to the range.
// The index type I as for any voxel body (launch.cuh); the body comes by value or from device
// memory (sample_kernels.h).
template <class I>
__device__ void bias_clip_and_range(const BiasClipBody& body) {
    const LaunchGrid dim = body.grid();
    unsigned int low = 0xffffffffu, high = 0u;
    for_each_thread_voxel(I(dim[0]), I(dim[1]), I(dim.count()), [&](auto q, auto j, auto k) {
        const ValueBits written = body(q, j, k);
        low = min(low, written.low);
        high = max(high, written.high);
    });
    for (int offset = 16; offset > 0; offset /= 2) {
        low = min(low, __shfl_down_sync(0xffffffffu, low, offset));
        high = max(high, __shfl_down_sync(0xffffffffu, high, offset));
    }
    __shared__ unsigned int warp_low[range_threads / 32], warp_high[range_threads / 32];
    const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
    if (lane == 0) {
        warp_low[warp] = low;
        warp_high[warp] = high;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < range_threads / 32; ++w) {
            low = min(low, warp_low[w]);
            high = max(high, warp_high[w]);
        }
        atomicMin(&body.a.range[0], low);
        atomicMax(&body.a.range[1], high);
    }
}

template <class I>
__global__ void __launch_bounds__(range_threads) bias_clip_kernel(const BiasClipBody body) {
    bias_clip_and_range<I>(body);
}

template <class I>
__global__ void __launch_bounds__(range_threads) bias_clip_kernel_from(const BiasClipBody* __restrict__ body) {
    bias_clip_and_range<I>(*body);
}

// Blocks enough to fill any current GPU, few enough that the atomics (one pair per block) stay
// cheap; the grid-stride loop does the rest.
unsigned range_blocks(int64_t count) { return std::min(cuda_blocks_for(count, range_threads), 1024u); }

// The identities first: all ones for the min, zero for the max.
cudaStream_t reset_range(DeviceContext& ctx, uint32_t* range) {
    const cudaStream_t stream = static_cast<cudaStream_t>(ctx.cuda_stream());
    ISS_CUDA_CHECK(cudaMemsetAsync(range, 0xff, sizeof(uint32_t), stream));
    ISS_CUDA_CHECK(cudaMemsetAsync(range + 1, 0, sizeof(uint32_t), stream));
    return stream;
}

}  // namespace

void bias_clip_cuda(DeviceContext& ctx, const BiasClipArgs& a) {
    const BiasClipBody body{a};
    const int64_t count = body.grid().count();
    const cudaStream_t stream = reset_range(ctx, a.range);
    if (fits_32_bit_index(index_extent_of(body, count)))
        bias_clip_kernel<uint32_t><<<range_blocks(count), range_threads, 0, stream>>>(body);
    else
        bias_clip_kernel<int64_t><<<range_blocks(count), range_threads, 0, stream>>>(body);
    ISS_CUDA_CHECK_LAUNCH();
}

void bias_clip_cuda_from(DeviceContext& ctx, const BiasClipBody* device_body, uint32_t* range, int64_t capacity,
                         int64_t extent) {
    ISS_REQUIRE(device_body && range && capacity >= 0 && extent >= capacity,
                "bias_clip_cuda_from: no body or range, or an extent below the capacity");
    const cudaStream_t stream = reset_range(ctx, range);
    if (fits_32_bit_index(std::max(capacity, extent)))
        bias_clip_kernel_from<uint32_t><<<range_blocks(capacity), range_threads, 0, stream>>>(device_body);
    else
        bias_clip_kernel_from<int64_t><<<range_blocks(capacity), range_threads, 0, stream>>>(device_body);
    ISS_CUDA_CHECK_LAUNCH();
}

void normalise_gamma_cuda(DeviceContext& ctx, const NormaliseGammaArgs& a) {
    const NormaliseGammaBody body{a};
    cuda_for_each(ctx, body.count(), a.count, body);
}

}  // namespace iss
