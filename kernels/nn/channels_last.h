// Running a per-element body over a channels-last tensor: the body has
// `ISS_HD void at(int64_t v, int64_t c) const` for voxel v and channel c (element v * C + c), or
// a template `at(I v, I c)` that takes the launch's index type (32 bits in most CUDA launches).
// The CPU loops voxels under OpenMP with the channels innermost, so the body's index
// arithmetic on v is hoisted out of the channel loop; CUDA runs one thread per element over
// the flat index (neighbouring threads touch neighbouring channels: coalesced). On the CPU,
// ChannelBlocks runs passes whose per-channel constants enter every element as flat loops.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "kernels/common/error.h"
#include "kernels/common/hd.h"

namespace iss {

#if !defined(__CUDACC__)  // OpenMP is for the host compiler only (.cu files are built without it)
// Channels-last passes on the CPU whose per-channel constants enter every element, as flat
// vector loops: blocks of whole periods of lcm(C, 32) elements (whole voxels and whole 32-lane
// vectors), about 1024 elements each, with every constant laid out once across a block, so that
// element j of a block reads the constants at j. cpu_for_each_channels_last's channel loop runs
// 24 channels as 16 + 8 lanes: batch norm's bf16 pass at level 0 took twice as long that way.
class ChannelBlocks {
public:
    explicit ChannelBlocks(int64_t channels) : channels_(channels) {
        ISS_REQUIRE(channels > 0, "ChannelBlocks: ", channels, " channels");
        const int64_t period = std::lcm(channels, int64_t(32));
        block_ = period * std::max<int64_t>(1, 1024 / period);
    }

    // A per-channel array laid out across a block: element j is channel j mod C.
    std::vector<float> repeat(const float* per_channel) const {
        std::vector<float> r(static_cast<size_t>(block_));
        for (int64_t j = 0; j < block_; ++j) r[size_t(j)] = per_channel[j % channels_];
        return r;
    }

    // pass(start, length) for each block of the voxels x C elements (the last one shorter),
    // under OpenMP.
    template <class Pass>
    void for_each_block(int64_t voxels, const Pass& pass) const {
        const int64_t elements = voxels * channels_, block = block_;
#pragma omp parallel for schedule(static)
        for (int64_t start = 0; start < elements; start += block) pass(start, std::min(block, elements - start));
    }

private:
    int64_t channels_, block_ = 0;
};

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
