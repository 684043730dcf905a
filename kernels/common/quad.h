// Bodies that run four voxels of a row per call on CUDA (the blur, the deformation, the bias
// pass; the normalisation four values of the flat image). On a GPU the generator's image stages
// are bound by instructions, not memory, and a voxel's index arithmetic (and what it samples
// along y and z) is the same for its row's neighbours: four at a time pay it once, and rows of
// whole 16-byte-aligned quads move with 128-bit loads and stores. The launch's grid is then the
// rows in quads: ceil(nx / 4) x ny x nz.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/common/hd.h"
#include "kernels/common/index_type.h"

namespace iss {

constexpr int quad = 4;

// The quads that cover n voxels (the last one short when n is not a multiple of 4).
ISS_HD_INLINE int64_t quads(int64_t n) { return (n + quad - 1) / quad; }

// The launch grid of quads over a grid of voxels.
ISS_HD_INLINE LaunchGrid quad_grid(const int64_t dim[3]) { return LaunchGrid{{quads(dim[0]), dim[1], dim[2]}}; }

// The voxels of the quad that starts at voxel i of a row of n: 4, or fewer at the row's end.
template <class I>
ISS_HD_INLINE I quad_count(I i, I n) {
    return n - i < I(quad) ? n - i : I(quad);
}

// Whether p is aligned to a quad of `bytes_per_voxel` voxels.
ISS_HD_INLINE bool quad_aligned(const void* p, int bytes_per_voxel) {
    return reinterpret_cast<uintptr_t>(p) % uintptr_t(quad * bytes_per_voxel) == 0;
}

// Whether rows nx voxels long of `bytes_per_voxel` at p are whole aligned quads.
ISS_HD_INLINE bool whole_aligned_quads(const void* p, int64_t nx, int bytes_per_voxel) {
    return nx % quad == 0 && quad_aligned(p, bytes_per_voxel);
}

// Four floats at p (16-byte aligned): one 128-bit access on CUDA.
ISS_HD_INLINE void load4(const float* p, float v[quad]) {
#if defined(__CUDA_ARCH__)
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
#else
    std::memcpy(v, p, quad * sizeof(float));
#endif
}

ISS_HD_INLINE void store4(float* p, const float v[quad]) {
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
#else
    std::memcpy(p, v, quad * sizeof(float));
#endif
}

// Four bytes at p (4-byte aligned): one 32-bit access on CUDA.
ISS_HD_INLINE void load4(const uint8_t* p, uint8_t v[quad]) {
#if defined(__CUDA_ARCH__)
    const uchar4 q = *reinterpret_cast<const uchar4*>(p);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
#else
    std::memcpy(v, p, quad);
#endif
}

ISS_HD_INLINE void store4(uint8_t* p, const uint8_t v[quad]) {
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<uchar4*>(p) = make_uchar4(v[0], v[1], v[2], v[3]);
#else
    std::memcpy(p, v, quad);
#endif
}

}  // namespace iss
