// Running one voxel body over a 3-D grid on CUDA: grid-stride over the flattened grid (x
// fastest, so neighbouring threads touch neighbouring voxels), on the context's stream, every
// launch checked. The CPU counterpart is launch.h.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device.h"
#include "kernels/common/index_type.h"

namespace iss {

// Calls visit(i, j, k) for each voxel of this thread (VoxelWalk, index_type.h) of a grid nx wide,
// ny high and `count` voxels long, (i, j, k) signed in the launch's width. A thread with a single
// voxel (every thread of a grid smaller than the launch) splits no step.
template <class I, class Visit>
__device__ __forceinline__ void for_each_thread_voxel(I nx, I ny, I count, const Visit& visit) {
    using Signed = std::make_signed_t<I>;
    const I step = I(gridDim.x) * blockDim.x;
    I v = I(blockIdx.x) * blockDim.x + threadIdx.x;
    if (v >= count) return;
    VoxelWalk<I> at(v, nx, ny);
    visit(Signed(at.i), Signed(at.j), Signed(at.k));
    if (count - v <= step) return;
    at.set_step(step);
    for (v += step; v < count; v += step) {
        at.next();
        visit(Signed(at.i), Signed(at.j), Signed(at.k));
    }
}

// The kernels take their index type I: uint32_t below 2^31 elements (fits_32_bit_index), int64_t
// above, where every multiply and division is several times the work. A launch's step is at most
// 2^24 (cuda_blocks_for), so a 32-bit v + step stays below 2^32. A voxel body gets i, j, k signed
// in the launch's width (index_type.h).
template <class I, class Body>
__global__ void voxel_kernel(const Body body, I nx, I ny, I count) {
    for_each_thread_voxel(nx, ny, count, [&](auto i, auto j, auto k) { body(i, j, k); });
}

// A body may take the element index as a template (ChannelsLastElement), and then splits it in
// the launch's index type too.
template <class I, class Body>
__global__ void flat_kernel(const Body body, I count) {
    const I stride = I(gridDim.x) * blockDim.x;
    for (I e = I(blockIdx.x) * blockDim.x + threadIdx.x; e < count; e += stride) body(e);
}

// Enough blocks to fill any current GPU many times over (at most max_blocks); the grid-stride
// loop does the rest.
inline unsigned cuda_blocks_for(int64_t count, int threads, unsigned max_blocks = 1u << 16) {
    return unsigned(std::max<int64_t>(1, std::min<int64_t>((count + threads - 1) / threads, max_blocks)));
}

// A voxel launch's blocks of 256 threads: several waves on any current GPU (an H100 holds about
// 1,000 such blocks at once), few enough that a thread of a crop-sized grid walks several voxels
// and its splits (VoxelWalk) pay off.
constexpr unsigned voxel_launch_max_blocks = 2048;

// Calls launch(I{}, blocks, threads, stream) with the index type I that `extent` (at least
// `count`: the largest element count the bodies index) allows, a grid sized for `count` and the
// context's stream, then checks the launch; nothing for count 0.
template <class Launch>
void launch_for(DeviceContext& ctx, int64_t count, int64_t extent, const Launch& launch,
                unsigned max_blocks = 1u << 16) {
    if (count == 0) return;
    const int threads = 256;
    const unsigned blocks = cuda_blocks_for(count, threads, max_blocks);
    const cudaStream_t stream = static_cast<cudaStream_t>(ctx.cuda_stream());
    if (fits_32_bit_index(std::max(count, extent)))
        launch(uint32_t{}, blocks, threads, stream);
    else
        launch(int64_t{}, blocks, threads, stream);
    ISS_CUDA_CHECK_LAUNCH();
}

// Over the body's own grid, body.grid() (x fastest).
template <class Body>
void cuda_for_each_voxel(DeviceContext& ctx, const Body& body) {
    const LaunchGrid dim = body.grid();
    const int64_t count = dim.count();
    const int64_t extent = index_extent_of(body, count);
    launch_for(ctx, count, extent, [&](auto index, unsigned blocks, int threads, cudaStream_t stream) {
        using I = decltype(index);
        voxel_kernel<<<blocks, threads, 0, stream>>>(body, I(dim[0]), I(dim[1]), I(count));
    }, voxel_launch_max_blocks);
}

// Over `count` elements of a body that indexes up to `extent` elements (at least count).
template <class Body>
void cuda_for_each(DeviceContext& ctx, int64_t count, int64_t extent, const Body& body) {
    launch_for(ctx, count, extent, [&](auto index, unsigned blocks, int threads, cudaStream_t stream) {
        flat_kernel<<<blocks, threads, 0, stream>>>(body, decltype(index)(count));
    });
}

template <class Body>
void cuda_for_each(DeviceContext& ctx, int64_t count, const Body& body) {
    cuda_for_each(ctx, count, count, body);
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
// CUDA graph can replay it with new arguments. The index type follows the capacity and an
// `extent`, the largest element count any of those bodies indexes (the body's index_extent()
// at its largest); the caller keeps every body within both, which the launch cannot check.
template <class I, class Body>
__global__ void voxel_kernel_from(const Body* __restrict__ body) {
    const LaunchGrid dim = body->grid();
    for_each_thread_voxel(I(dim[0]), I(dim[1]), I(dim.count()),
                          [&](auto i, auto j, auto k) { (*body)(i, j, k); });
}

template <class I, class Body>
__global__ void flat_kernel_from(const Body* __restrict__ body) {
    const I count = I(body->count());
    const I stride = I(gridDim.x) * blockDim.x;
    for (I e = I(blockIdx.x) * blockDim.x + threadIdx.x; e < count; e += stride) (*body)(e);
}

template <class Body>
void cuda_for_each_voxel_from(DeviceContext& ctx, const Body* device_body, int64_t capacity, int64_t extent) {
    launch_for(ctx, capacity, extent, [&](auto index, unsigned blocks, int threads, cudaStream_t stream) {
        voxel_kernel_from<decltype(index)><<<blocks, threads, 0, stream>>>(device_body);
    }, voxel_launch_max_blocks);
}

template <class Body>
void cuda_for_each_from(DeviceContext& ctx, const Body* device_body, int64_t capacity, int64_t extent) {
    launch_for(ctx, capacity, extent, [&](auto index, unsigned blocks, int threads, cudaStream_t stream) {
        flat_kernel_from<decltype(index)><<<blocks, threads, 0, stream>>>(device_body);
    });
}

}  // namespace iss
