// One generator sample's kernels as data, so that on CUDA a sample is a fixed sequence of
// launches that a CUDA graph replays (issue 14).
//
// SampleKernels holds every argument of every kernel of one sample, as the bodies the kernels
// run, in one trivially copyable block. The generator fills it on the host from the sample's
// parameters (synth/generator.cpp), places the sample's velocity and bias grids after it, and
// uploads the whole with one asynchronous copy. Then:
//   - on the CPU, each stage runs its row-wise kernel with the block's arguments;
//   - on CUDA, each stage launches its kernel with the block's arguments by value (the same
//     launchers as any other caller), or
//   - on CUDA, SampleReplay runs the whole sample from the device copy of the block: every kernel
//     reads its body there, over a grid sized once for the largest sample (launch.cuh, "Bodies
//     read from device memory"). Those launches are the same for every sample, so they are
//     captured once as a CUDA graph and replayed: a sample is one copy and one graph launch,
//     with no host synchronisation.
// A stage that a sample skips (no velocity field, no resolution loss) has empty grids there: its
// kernels run and do nothing.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>

#include "kernels/geometry/resample.h"
#include "kernels/synth/blur.h"
#include "kernels/synth/deform.h"
#include "kernels/synth/gmm.h"
#include "kernels/synth/intensity.h"
#include "kernels/synth/svf.h"

namespace iss {

class DeviceContext;

struct SampleKernels {
    ResizeFieldBody resize;       // the velocity to the integration grid
    SquareFieldBody square[2];    // the squaring steps alternate: field a -> b, then b -> a
    DeformBody deform;
    GmmBody paint;
    BlurBody blur[3];             // x, y, z
    ResampleBody resolution[2];   // to the acquisition grid and back
    BiasClipBody bias;            // then the image's range, into bias.a.range
    NormaliseGammaBody normalise;
};
static_assert(std::is_trivially_copyable_v<SampleKernels>, "the block is uploaded byte for byte");

// The largest grids any sample asks for: the launches from device memory are sized by them.
struct SampleCapacity {
    int64_t field = 0;  // voxels of the integration grid
    int64_t image = 0;  // voxels of the crop
    int steps = 0;      // squaring steps
    // The most elements any body indexes (its index_extent(), index_type.h): 32-bit launches
    // below 2^31. Unset, 64-bit.
    int64_t index_extent = std::numeric_limits<int64_t>::max();
};

// The kernels of a sample in the order they run, each body visited once per launch (the
// squaring bodies once per step). SampleReplay launches this sequence; a test runs it on the host.
template <class Visit>
void for_each_sample_kernel(const SampleKernels& k, int steps, Visit&& visit) {
    visit(k.resize);
    for (int step = 0; step < steps; ++step) visit(k.square[step % 2]);
    visit(k.deform);
    visit(k.paint);
    for (const BlurBody& pass : k.blur) visit(pass);
    for (const ResampleBody& pass : k.resolution) visit(pass);
    visit(k.bias);
    visit(k.normalise);
}

// A sample's kernels on CUDA from a device copy of the block: launched one by one on the first
// run(), captured as a CUDA graph on the second and replayed from then on; in synchronous mode
// (INFANT_CUDA_SYNC, every launch waited for, which a capture forbids) launched one by one each
// time. Each run() reads the block as it is when the stream reaches it, so the caller uploads a
// sample's block on the same stream first.
class SampleReplay {
public:
    virtual ~SampleReplay() = default;
    virtual void run() = 0;
};

// `host` is the host copy of the block at `device` (only its layout is used: where each body
// lies); the launches keep every body's grid within `capacity`.
std::unique_ptr<SampleReplay> make_sample_replay_cuda(DeviceContext& ctx, const SampleKernels& host,
                                                      const SampleKernels* device, const SampleCapacity& capacity);

}  // namespace iss
