// Running one voxel body over a 3-D grid on CUDA: one thread per voxel, grid-stride over the
// flattened grid (x fastest, so neighbouring threads touch neighbouring voxels), on the
// context's stream, every launch checked. The CPU counterpart is launch.h.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device.h"

namespace iss {

// The kernels take their index type I: uint32_t below 2^31 elements (fits_32_bit_index), where
// the split into i, j, k is a few instructions, int64_t above, where a division is a long
// software routine on the GPU. The grid's stride is at most 2^24 (cuda_blocks_for), so a 32-bit
// v + stride stays below 2^32. Bodies get int64 indices either way.
template <class I, class Body>
__global__ void voxel_kernel(const Body body, I nx, I ny, I count) {
    const I stride = I(gridDim.x) * blockDim.x;
    for (I v = I(blockIdx.x) * blockDim.x + threadIdx.x; v < count; v += stride) {
        const I row = v / nx;
        body(int64_t(v - row * nx), int64_t(row % ny), int64_t(row / ny));
    }
}

// A body may take the element index as a template (ChannelsLastElement), and then splits it in
// the launch's index type too.
template <class I, class Body>
__global__ void flat_kernel(const Body body, I count) {
    const I stride = I(gridDim.x) * blockDim.x;
    for (I e = I(blockIdx.x) * blockDim.x + threadIdx.x; e < count; e += stride) body(e);
}

inline bool fits_32_bit_index(int64_t count) { return count < (int64_t(1) << 31); }

inline unsigned cuda_blocks_for(int64_t count, int threads) {
    // Enough blocks to fill any current GPU many times over; the grid-stride loop does the rest.
    return unsigned(std::max<int64_t>(1, std::min<int64_t>((count + threads - 1) / threads, int64_t(1) << 16)));
}

// Over the body's own grid, body.grid() (x fastest).
template <class Body>
void cuda_for_each_voxel(DeviceContext& ctx, const Body& body) {
    const int64_t* dim = body.grid();
    const int64_t count = dim[0] * dim[1] * dim[2];
    if (count == 0) return;
    const int threads = 256;
    const cudaStream_t stream = static_cast<cudaStream_t>(ctx.cuda_stream());
    if (fits_32_bit_index(count))
        voxel_kernel<<<cuda_blocks_for(count, threads), threads, 0, stream>>>(body, uint32_t(dim[0]), uint32_t(dim[1]),
                                                                             uint32_t(count));
    else
        voxel_kernel<<<cuda_blocks_for(count, threads), threads, 0, stream>>>(body, dim[0], dim[1], count);
    ISS_CUDA_CHECK_LAUNCH();
}

template <class Body>
void cuda_for_each(DeviceContext& ctx, int64_t count, const Body& body) {
    if (count == 0) return;
    const int threads = 256;
    const cudaStream_t stream = static_cast<cudaStream_t>(ctx.cuda_stream());
    if (fits_32_bit_index(count))
        flat_kernel<<<cuda_blocks_for(count, threads), threads, 0, stream>>>(body, uint32_t(count));
    else
        flat_kernel<<<cuda_blocks_for(count, threads), threads, 0, stream>>>(body, count);
    ISS_CUDA_CHECK_LAUNCH();
}

// Over the body's own element count, body.count().
template <class Body>
void cuda_for_each(DeviceContext& ctx, const Body& body) {
    cuda_for_each(ctx, body.count(), body);
}

// --- Bodies read from device memory ------------------------------------------------------------
// The launches above pass the body by value, so every call bakes its arguments into the launch.
// These take a pointer to a body in device memory (a block the host uploads before the launch)
// and a `capacity`, the most voxels (or elements) any body the launch will read can ask for: the
// grid is sized by the capacity, and the threads follow the grid or count the body holds when the
// kernel runs (possibly empty: the stage is skipped). So the same launch serves every call, and a
// CUDA graph can replay it with new arguments. The body's index type follows the capacity; the
// caller keeps every body within it (fits_32_bit_index checks the capacity, not the body).
template <class I, class Body>
__global__ void voxel_kernel_from(const Body* __restrict__ body) {
    const int64_t* dim = body->grid();
    const I nx = I(dim[0]), ny = I(dim[1]), count = I(dim[0] * dim[1] * dim[2]);
    const I stride = I(gridDim.x) * blockDim.x;
    for (I v = I(blockIdx.x) * blockDim.x + threadIdx.x; v < count; v += stride) {
        const I row = v / nx;
        (*body)(int64_t(v - row * nx), int64_t(row % ny), int64_t(row / ny));
    }
}

template <class I, class Body>
__global__ void flat_kernel_from(const Body* __restrict__ body) {
    const I count = I(body->count());
    const I stride = I(gridDim.x) * blockDim.x;
    for (I e = I(blockIdx.x) * blockDim.x + threadIdx.x; e < count; e += stride) (*body)(e);
}

template <class Body>
void cuda_for_each_voxel_from(DeviceContext& ctx, const Body* device_body, int64_t capacity) {
    if (capacity == 0) return;
    const int threads = 256;
    const cudaStream_t stream = static_cast<cudaStream_t>(ctx.cuda_stream());
    if (fits_32_bit_index(capacity))
        voxel_kernel_from<uint32_t><<<cuda_blocks_for(capacity, threads), threads, 0, stream>>>(device_body);
    else
        voxel_kernel_from<int64_t><<<cuda_blocks_for(capacity, threads), threads, 0, stream>>>(device_body);
    ISS_CUDA_CHECK_LAUNCH();
}

template <class Body>
void cuda_for_each_from(DeviceContext& ctx, const Body* device_body, int64_t capacity) {
    if (capacity == 0) return;
    const int threads = 256;
    const cudaStream_t stream = static_cast<cudaStream_t>(ctx.cuda_stream());
    if (fits_32_bit_index(capacity))
        flat_kernel_from<uint32_t><<<cuda_blocks_for(capacity, threads), threads, 0, stream>>>(device_body);
    else
        flat_kernel_from<int64_t><<<cuda_blocks_for(capacity, threads), threads, 0, stream>>>(device_body);
    ISS_CUDA_CHECK_LAUNCH();
}

}  // namespace iss
