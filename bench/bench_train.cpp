// A training step at full size, part by part: the infant case (a 155x175x149 label map, the
// 128x160x128 crop, the published U-Net), as `infant-synthseg train` runs it.
//   TrainStep/<cpu|cuda>/128x160x128[/bf16]: steps/s, and counters with the seconds of each
//   part: generator (one sample), forward (U-Net + soft Dice), backward (the tape), optimizer
//   (Adam); bf16 where the backend runs it natively, as `train --precision bf16`.
// The PyTorch comparison (docs/PERFORMANCE.md) is bench/baselines/unet_torch.py's training
// step, fed the same generator (whose time is added: the generator is ours either way).
#include <benchmark/benchmark.h>

#include "bench/bench_util.h"

#include <chrono>
#include <memory>
#include <string>

#include "kernels/common/device.h"
#include "nn/autograd.h"
#include "nn/ops.h"
#include "nn/optimizer.h"
#include "nn/tensor.h"
#include "nn/unet.h"
#include "synth/config.h"
#include "synth/generator.h"
#include "synth/phantom.h"

namespace {

using namespace iss;
using clock_type = std::chrono::steady_clock;


void train_step(benchmark::State& state, Backend backend, Precision precision) {
    DeviceContext ctx(Device{backend, 0});
    const GeneratorConfig config = preset_config("infant-t1");
    Generator generator(ctx, config, {make_training_map(iss::bench::infant_sized_phantom(), config, "phantom")}, 1);
    UNetConfig unet;
    ParamStore params(ctx);
    UNet net(unet, params);
    params.allocate();
    net.initialise(1);
    Adam adam;
    ArenaAllocator arena(ctx);
    double parts[4] = {0, 0, 0, 0};  // generator, forward, backward, optimizer
    uint32_t sample = 0;
    auto step = [&](bool timed) {
        auto t0 = clock_type::now();
        const SampleParams& p = generator.generate(sample++);
        ctx.synchronize();
        auto t1 = clock_type::now();
        arena.reset();
        Graph g(arena, params, true);
        g.set_precision(precision);
        Tensor x;
        x.data = const_cast<float*>(generator.image());
        x.shape = Shape5{1, p.out_shape[2], p.out_shape[1], p.out_shape[0], 1};
        softmax_dice_loss(g, net.forward(g, g.input(x), true), generator.target());
        ctx.synchronize();
        auto t2 = clock_type::now();
        params.zero_grads();
        g.backward();
        ctx.synchronize();
        auto t3 = clock_type::now();
        adam.step(params);
        ctx.synchronize();
        auto t4 = clock_type::now();
        if (timed) {
            parts[0] += std::chrono::duration<double>(t1 - t0).count();
            parts[1] += std::chrono::duration<double>(t2 - t1).count();
            parts[2] += std::chrono::duration<double>(t3 - t2).count();
            parts[3] += std::chrono::duration<double>(t4 - t3).count();
        }
    };
    // Untimed, as in bench_nn's UNetTrainStep: the step the arena records, then the first in the
    // planned block (its pages' first touch).
    step(false);
    step(false);
    for (auto _ : state) step(true);
    const double n = double(state.iterations());
    const double total = parts[0] + parts[1] + parts[2] + parts[3];
    state.counters["steps/s"] = benchmark::Counter(n, benchmark::Counter::kIsRate);
    state.counters["generator_s"] = parts[0] / n;
    state.counters["forward_s"] = parts[1] / n;
    state.counters["backward_s"] = parts[2] / n;
    state.counters["optimizer_s"] = parts[3] / n;
    state.counters["generator_share"] = parts[0] / total;
    // The live peak of a step, and the planned block that holds it (what a step uses).
    state.counters["peak_bytes"] = double(arena.peak_bytes());
    state.counters["planned_bytes"] = double(arena.planned_bytes());
}

void register_all() {
    for (Backend b : iss::bench::backends())
        for (const Precision p : iss::bench::precisions(b))
            benchmark::RegisterBenchmark((std::string("TrainStep/") + iss::bench::name(b) + "/128x160x128" +
                                          (p == Precision::bf16 ? "/bf16" : ""))
                                             .c_str(),
                                         train_step, b, p)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime()
                ->MinTime(b == Backend::cuda ? 1.0 : 0.01);
}

}  // namespace

int main(int argc, char** argv) { return iss::bench::run(argc, argv, register_all, /*keep_freed_memory=*/false); }
