// The merge in one sweep over the posteriors, block of voxels by block: for each block every
// frame is read once from both sides (T2's in T1's label order), the element-wise maximum
// written into the T1 buffer and each voxel's T1 and T2 maxima kept, then the block's labels
// are picked.
#include "post/merge.h"

#include <algorithm>
#include <cmath>

#include "kernels/common/error.h"

namespace iss {

Prediction merge_t1_t2(Prediction t1, const Prediction& t2, std::vector<int64_t> t2_frames) {
    const int64_t n = t1.seg.grid.voxels();
    const int64_t frames = t1.post.frames;
    ISS_REQUIRE(t1.seg.grid.dim == t2.seg.grid.dim && t1.post.grid.dim == t1.seg.grid.dim &&
                    t2.post.grid.dim == t1.seg.grid.dim,
                "merge: T1 and T2 segmentations and posteriors on one grid");
    ISS_REQUIRE(t2.post.frames == frames && frames >= 1, "merge: T1 has ", frames, " posterior frames, T2 ",
                t2.post.frames);
    ISS_REQUIRE(t1.seg.frames == 1 && t2.seg.frames == 1, "merge: 3-D segmentations");
    if (t2_frames.empty())
        for (int64_t f = 0; f < frames; ++f) t2_frames.push_back(f);
    std::vector<int64_t> sorted = t2_frames;
    std::sort(sorted.begin(), sorted.end());
    bool permutation = int64_t(sorted.size()) == frames;
    for (int64_t f = 0; permutation && f < frames; ++f) permutation = sorted[size_t(f)] == f;
    ISS_REQUIRE(permutation, "merge: T2's frame order is not a permutation of its ", frames, " frames");

    // Blocks of voxels, all frames per block: the running maxima stay in L1 instead of
    // streaming two volume-sized arrays through memory once per frame.
    // Blocks are independent, so threads split them with no effect on the result.
    constexpr int64_t block = 2048;
    float* p1_all = t1.post.data.data();
    const float* p2_all = t2.post.data.data();
#pragma omp parallel for schedule(static)
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        float max1[block], max2[block];
        const int64_t len = std::min(block, n - b0);
        // Start below every probability: a voxel whose posteriors are all NaN keeps -inf on
        // both sides, a tie, and goes to T2 like any other tie.
        std::fill(max1, max1 + len, -INFINITY);
        std::fill(max2, max2 + len, -INFINITY);
        for (int64_t f = 0; f < frames; ++f) {
            float* p1 = p1_all + f * n + b0;
            const float* p2 = p2_all + t2_frames[size_t(f)] * n + b0;
            for (int64_t v = 0; v < len; ++v) {
                const float a = p1[v], b = p2[v];
                max1[v] = a > max1[v] ? a : max1[v];
                max2[v] = b > max2[v] ? b : max2[v];
                p1[v] = std::fmax(a, b);  // a NaN yields to a number, as in the comparisons
            }
        }
        int32_t* seg1 = t1.seg.data.data() + b0;
        const int32_t* seg2 = t2.seg.data.data() + b0;
        for (int64_t v = 0; v < len; ++v)
            if (!(max1[v] > max2[v])) seg1[v] = seg2[v];
    }
    return t1;
}

}  // namespace iss
