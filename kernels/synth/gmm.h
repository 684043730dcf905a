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

// One voxel: its intensity and its target.
ISS_HD_INLINE void paint_voxel(const GmmArgs& a, int64_t v, float z) {
    const uint8_t g = a.generation[v];
    a.image[v] = painted(a, g, z);
    if (a.target) a.target[v] = a.target_of[g];
}

// A block of 4 voxels (CUDA); the CPU draws a run of blocks' normals in one vectorised loop,
// then paints with the same operations (gmm.cpp). (Loading the block's 4 indices before any
// store, so that no load waits behind a store, measured no faster on an H200: 27 against 26 µs.)
struct GmmBody {
    GmmArgs a;
    ISS_HD int64_t count() const { return (a.count + 3) / 4; }  // blocks
    ISS_HD void operator()(int64_t block) const {
        float z[4];
        random_normal4(a.key, uint64_t(block), z);
        for (int e = 0; e < 4; ++e) {
            const int64_t v = block * 4 + e;
            if (v >= a.count) return;
            paint_voxel(a, v, z[e]);
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
