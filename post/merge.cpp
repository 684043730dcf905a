// The merge in two sweeps over the posteriors, frame by frame so both reads stream through
// memory: the first keeps each voxel's T1 and T2 maxima and writes the element-wise maximum
// into the T1 buffer; the second picks the labels.
#include "post/merge.h"

#include <cmath>
#include <vector>

#include "kernels/common/error.h"

namespace iss {

Prediction merge_t1_t2(Prediction t1, const Prediction& t2) {
    const int64_t n = t1.seg.grid.voxels();
    const int64_t frames = t1.post.frames;
    ISS_REQUIRE(t1.seg.grid.dim == t2.seg.grid.dim && t1.post.grid.dim == t1.seg.grid.dim &&
                    t2.post.grid.dim == t1.seg.grid.dim,
                "merge: T1 and T2 segmentations and posteriors on one grid");
    ISS_REQUIRE(t2.post.frames == frames && frames >= 1, "merge: T1 has ", frames, " posterior frames, T2 ",
                t2.post.frames);
    ISS_REQUIRE(t1.seg.frames == 1 && t2.seg.frames == 1, "merge: 3-D segmentations");

    // Start below every probability: a voxel whose posteriors are all NaN keeps -inf on both
    // sides, a tie, and goes to T2 like any other tie.
    std::vector<float> max1(size_t(n), -INFINITY), max2(size_t(n), -INFINITY);
    for (int64_t f = 0; f < frames; ++f) {
        float* p1 = t1.post.data.data() + f * n;
        const float* p2 = t2.post.data.data() + f * n;
        for (int64_t v = 0; v < n; ++v) {
            const float a = p1[v], b = p2[v];
            max1[size_t(v)] = a > max1[size_t(v)] ? a : max1[size_t(v)];
            max2[size_t(v)] = b > max2[size_t(v)] ? b : max2[size_t(v)];
            p1[v] = std::fmax(a, b);  // a NaN yields to a number, as in the comparisons
        }
    }
    for (int64_t v = 0; v < n; ++v)
        if (!(max1[size_t(v)] > max2[size_t(v)])) t1.seg.data[size_t(v)] = t2.seg.data[size_t(v)];
    return t1;
}

}  // namespace iss
