// The index type of a voxel body on CUDA. Shared by the CPU's launch.h and CUDA's launch.cuh; no
// OpenMP here, so nvcc's host pass sees none.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace iss {

// A CUDA launch splits its flat index in 32 bits below 2^31 elements, where 64-bit arithmetic is
// several instructions per operation. A voxel body may take its indices in the launch's type
// (`template <class I> void operator()(I i, I j, I k) const`, I signed) and then computes its
// offsets in it; a body taking int64_t gets them widened. A body whose offsets reach past its own
// grid (channels per voxel, a second array it reads) says how far with `int64_t index_extent()`,
// the largest element count it indexes; 32 bits are used only where that fits too.
inline bool fits_32_bit_index(int64_t count) { return count < (int64_t(1) << 31); }

template <class Body, class = void>
struct HasIndexExtent : std::false_type {};
template <class Body>
struct HasIndexExtent<Body, std::void_t<decltype(std::declval<const Body&>().index_extent())>> : std::true_type {};

// The element count a launch of `count` voxels of `body` must index.
template <class Body>
int64_t index_extent_of(const Body& body, int64_t count) {
    if constexpr (HasIndexExtent<Body>::value)
        return std::max(count, body.index_extent());
    else
        return count;
}

}  // namespace iss
