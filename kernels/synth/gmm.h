// Painting (SPEC.md 3.5 and 3.9): every voxel with generation index g gets
// I = mean[g] + std[g] * z, z ~ N(0, 1) independent per voxel, and its training target, the
// segmentation index of g (labels outside the segmentation list map to 0), in the same pass.
//
// Randomness: voxel v takes normal number (v mod 4) of Philox block v / 4 under `key`, so a
// body call handles a block of 4 voxels and every draw is used.
// Layout: flat arrays of `count` voxels. CPU/GPU contract: bit-identical (Philox normals are
// bit-identical; the paint is one fmaf).
#pragma once

#include <cstdint>

#include "kernels/common/hd.h"
#include "kernels/common/philox.h"
#include "kernels/synth/deform.h"

namespace iss {

class DeviceContext;

struct GmmArgs {
    const uint8_t* generation = nullptr;  // generation index per voxel
    float mean[max_generation_labels + 1] = {};
    float std[max_generation_labels + 1] = {};
    uint8_t target_of[max_generation_labels + 1] = {};  // segmentation index of a generation index
    RandomKey key;
    int64_t count = 0;
    float* image = nullptr;
    uint8_t* target = nullptr;  // may be null: no targets
};

// The intensity of a voxel of generation index g with standard normal draw z.
ISS_HD_INLINE float painted(const GmmArgs& a, uint8_t g, float z) { return fmaf(a.std[g], z, a.mean[g]); }

// A block of 4 voxels (CUDA): their intensities and targets. The CPU draws a run of blocks'
// normals in one vectorised loop, then paints with the same operations (gmm.cpp).
struct GmmBody {
    GmmArgs a;
    ISS_HD int64_t count() const { return (a.count + 3) / 4; }  // blocks
    ISS_HD void operator()(int64_t block) const {
        float z[4];
        random_normal4(a.key, uint64_t(block), z);
        const int64_t first = block * 4;
        const int n = a.count - first < 4 ? int(a.count - first) : 4;
        // The block's generation indices before any store: a store could alias them as far as
        // the compiler knows, so voxel by voxel each load waited for the previous voxel's stores
        // (four round trips to memory a block on a GPU, where one does). Loops of 4, not n, so
        // that nvcc unrolls them and keeps g and z in registers.
        uint8_t g[4];
        for (int e = 0; e < 4; ++e) g[e] = e < n ? a.generation[first + e] : uint8_t(0);
        for (int e = 0; e < 4; ++e) {
            if (e >= n) break;
            a.image[first + e] = painted(a, g[e], z[e]);
            if (a.target) a.target[first + e] = a.target_of[g[e]];
        }
    }
};

void paint_gmm(DeviceContext& ctx, const GmmArgs& args);

// The CPU path's Philox draws for a run of gmm_cpu_run blocks from block `first` (16 counters
// at a time in AVX-512, 8 in AVX2, their low words carried into the high word where they wrap): word w of
// random_bits(key, first + b) in bits[w][b]. Exposed for its test.
constexpr int64_t gmm_cpu_run = 256;
void gmm_run_bits_cpu(const RandomKey& key, int64_t first, uint32_t (*bits)[gmm_cpu_run]);
void paint_gmm_cuda(DeviceContext& ctx, const GmmArgs& args);

}  // namespace iss
