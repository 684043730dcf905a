#include "kernels/synth/gmm.h"

#include <algorithm>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"  // ISS_CUDA_ONLY

namespace iss {

namespace {

// The CPU path: runs of `chunk` blocks, their normals drawn in one vectorised loop (the same
// Philox and Box-Muller operations as random_normal4) in voxel order, then painted in another.
void paint_gmm_cpu(const GmmArgs& a) {
    constexpr int64_t chunk = 256;
    const int64_t blocks = (a.count + 3) / 4;
#pragma omp parallel for schedule(static)
    for (int64_t first = 0; first < blocks; first += chunk) {
        const int32_t n = int32_t(std::min(chunk, blocks - first));
        float z[4 * chunk];
#pragma omp simd
        for (int32_t b = 0; b < n; ++b) {
            const Philox4 r = random_bits(a.key, uint64_t(first + b));
            const NormalPair p = box_muller(r.v[0], r.v[1]), q = box_muller(r.v[2], r.v[3]);
            z[4 * b] = p.z0;
            z[4 * b + 1] = p.z1;
            z[4 * b + 2] = q.z0;
            z[4 * b + 3] = q.z1;
        }
        const int64_t start = first * 4;
        const int32_t voxels = int32_t(std::min(a.count, (first + n) * 4) - start);
        const uint8_t* __restrict generation = a.generation + start;
        float* __restrict image = a.image + start;
#pragma omp simd
        for (int32_t e = 0; e < voxels; ++e) image[e] = painted(a, generation[e], z[e]);
        if (a.target) {
            uint8_t* __restrict target = a.target + start;
            const uint8_t* __restrict target_of = a.target_of;
            for (int32_t e = 0; e < voxels; ++e) target[e] = target_of[generation[e]];
        }
    }
}

}  // namespace

void paint_gmm(DeviceContext& ctx, const GmmArgs& a) {
    ISS_REQUIRE(a.generation && a.image, "paint_gmm: null label or image pointer");
    ISS_REQUIRE(a.count >= 0, "paint_gmm: negative voxel count");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("paint_gmm", paint_gmm_cuda(ctx, a));
        return;
    }
    paint_gmm_cpu(a);
}

}  // namespace iss
