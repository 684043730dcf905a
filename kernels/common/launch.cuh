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

template <class Body>
__global__ void voxel_kernel(const Body body, int64_t nx, int64_t ny, int64_t count) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < count; v += stride) {
        const int64_t i = v % nx;
        const int64_t j = (v / nx) % ny;
        body(i, j, v / (nx * ny));
    }
}

template <class Body>
__global__ void flat_kernel(const Body body, int64_t count) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < count; e += stride) body(e);
}

inline unsigned cuda_blocks_for(int64_t count, int threads) {
    // Enough blocks to fill any current GPU many times over; the grid-stride loop does the rest.
    return unsigned(std::max<int64_t>(1, std::min<int64_t>((count + threads - 1) / threads, int64_t(1) << 16)));
}

template <class Body>
void cuda_for_each_voxel(DeviceContext& ctx, const int64_t dim[3], const Body& body) {
    const int64_t count = dim[0] * dim[1] * dim[2];
    if (count == 0) return;
    const int threads = 256;
    voxel_kernel<<<cuda_blocks_for(count, threads), threads, 0, static_cast<cudaStream_t>(ctx.cuda_stream())>>>(
        body, dim[0], dim[1], count);
    ISS_CUDA_CHECK_LAUNCH();
}

template <class Body>
void cuda_for_each(DeviceContext& ctx, int64_t count, const Body& body) {
    if (count == 0) return;
    const int threads = 256;
    flat_kernel<<<cuda_blocks_for(count, threads), threads, 0, static_cast<cudaStream_t>(ctx.cuda_stream())>>>(
        body, count);
    ISS_CUDA_CHECK_LAUNCH();
}

}  // namespace iss
