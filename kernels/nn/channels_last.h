// Running a per-element body over a channels-last tensor: the body has
// `ISS_HD void at(int64_t v, int64_t c) const` for voxel v and channel c (element v * C + c), or
// a template `at(I v, I c)` that takes the launch's index type (32 bits in most CUDA launches).
// The CPU loops voxels under OpenMP with the channels innermost, so the body's index
// arithmetic on v is hoisted out of the channel loop; CUDA runs one thread per element over
// the flat index (neighbouring threads touch neighbouring channels: coalesced).
#pragma once

#include <cstdint>

#include "kernels/common/hd.h"

namespace iss {

#if !defined(__CUDACC__)  // OpenMP is for the host compiler only (.cu files are built without it)
template <class Body>
void cpu_for_each_channels_last(int64_t voxels, int64_t channels, const Body& body) {
#pragma omp parallel
    {
        // A private copy, and `omp simd` on the channel loop: every (v, c) writes its own
        // element and reads only inputs, so the iterations are independent; without the
        // assertion g++ fears that a uint8 store (argmax) aliases the body's fields or inputs
        // and keeps the loop scalar. 16 lanes: left to itself g++ sizes the vectors by the
        // narrowest type stored (64 lanes for max-pool's argmax bytes) and runs every tensor of
        // fewer channels in the scalar remainder.
        const Body local = body;
#pragma omp for schedule(static)
        for (int64_t v = 0; v < voxels; ++v) {
#pragma omp simd simdlen(16)
            for (int64_t c = 0; c < channels; ++c) local.at(v, c);
        }
    }
}
#endif

// Adapter for cuda_for_each / cpu_for_each over the flat element index, split in the index's
// own type (32 bits where the launch indexes in 32 bits: a cheap division on the GPU). A body
// whose `at` is a template gets (v, c) in that type too; the others convert them to int64.
template <class Body>
struct ChannelsLastElement {
    Body body;
    int64_t channels;
    template <class I>
    ISS_HD void operator()(I e) const {
        const I c = I(channels);
        body.at(e / c, e % c);
    }
};

}  // namespace iss
