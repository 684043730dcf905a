// The index type of a voxel body on CUDA. Shared by the CPU's launch.h and CUDA's launch.cuh; no
// OpenMP here, so nvcc's host pass sees none.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "kernels/common/hd.h"

namespace iss {

// A CUDA launch splits its flat index in 32 bits below 2^31 elements, where 64-bit arithmetic is
// several instructions per operation. A voxel body may take its indices in the launch's type
// (`template <class I> void operator()(I i, I j, I k) const`, I signed) and then computes its
// offsets in it; a body taking int64_t gets them widened. A body whose offsets reach past its own
// grid (channels per voxel, a second array it reads) says how far with `int64_t index_extent()`,
// the largest element count it indexes; 32 bits are used only where that fits too.
inline bool fits_32_bit_index(int64_t count) { return count < (int64_t(1) << 31); }

// The grid a voxel body's launch runs over (x fastest), `body.grid()`: its voxels, or for a body
// that runs four voxels of a row a call its rows in quads (kernels/common/quad.h). Returned by
// value, computed from the body's arguments, so that it cannot fall out of step with them.
struct LaunchGrid {
    int64_t dim[3];
    ISS_HD int64_t operator[](int d) const { return dim[d]; }
    ISS_HD int64_t count() const { return dim[0] * dim[1] * dim[2]; }
};

// A body's grid of voxels as its launch grid.
ISS_HD_INLINE LaunchGrid voxel_grid(const int64_t dim[3]) { return LaunchGrid{{dim[0], dim[1], dim[2]}}; }

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

// The voxels one thread of a CUDA voxel launch visits: its flat index, then steps of the launch's
// size (the grid stride), on a grid nx voxels wide and ny rows high (x fastest). A voxel's (i, j,
// k) is split from its flat index once; each step then carries them forward by the step's own
// split, a few adds and compares, where a split is two divisions by run-time values (a software
// routine of about twenty instructions each on the GPU, in 32 bits too). I: the launch's index
// type; every flat index stays below its range (launch.cuh).
template <class I>
class VoxelWalk {
public:
    ISS_HD VoxelWalk(I v, I nx, I ny) : nx_(nx), ny_(ny) { split(v, i, j, k); }

    // The step between this thread's voxels; split once, before the first next().
    ISS_HD void set_step(I step) { split(step, di_, dj_, dk_); }

    // The voxel a step further on: i + di < 2 nx and j + dj + 1 < 2 ny, so one carry each.
    ISS_HD void next() {
        i += di_;
        const I carry_x = i >= nx_ ? I(1) : I(0);
        i -= carry_x * nx_;
        j += dj_ + carry_x;
        const I carry_y = j >= ny_ ? I(1) : I(0);
        j -= carry_y * ny_;
        k += dk_ + carry_y;
    }

    I i = 0, j = 0, k = 0;

private:
    ISS_HD void split(I v, I& x, I& y, I& z) const {
        const I row = v / nx_;
        x = v - row * nx_;
        y = row % ny_;
        z = row / ny_;
    }

    I nx_, ny_, di_ = 0, dj_ = 0, dk_ = 0;
};

}  // namespace iss
