// The training step's loss and optimizer at the infant sizes:
//   SoftmaxDice/{forward,backward}/<cpu|cuda>/1x128x160x128x34   softmax + Dice sums; Dice backward
//   Adam/<cpu|cuda>/13240666                                     one step over the U-Net's parameters
// Bytes/s count what each must at least move, so the figure says how close it runs to memory
// speed: forward reads logits and targets and writes probs (8 B per element + 1 B per
// position); backward reads probs twice (sums, then the gradient) and targets twice, and
// writes dlogits (12 B per element + 2 B per position); Adam reads p, g, m, v and writes p, m, v
// (28 B per parameter). CUDA variants are registered only when a device is present.
#include <benchmark/benchmark.h>

#include "bench/bench_util.h"

#include <random>
#include <string>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/nn/adam.h"
#include "kernels/nn/loss.h"

namespace {

const iss::Shape5 kShape{1, 128, 160, 128, 34};
constexpr int64_t kParams = 13240666;

struct LossSetup {
    iss::Buffer<float> logits, probs, dlogits;
    iss::Buffer<uint8_t> target, workspace;
    explicit LossSetup(iss::DeviceContext& ctx)
        : logits(ctx, size_t(kShape.size())), probs(ctx, size_t(kShape.size())), dlogits(ctx, size_t(kShape.size())),
          target(ctx, size_t(kShape.voxels())), workspace(ctx, iss::loss_workspace_bytes(kShape)) {
        std::mt19937 rng(1);
        std::uniform_real_distribution<float> x(-6.0f, 6.0f);
        std::vector<float> l(size_t(kShape.size()));
        for (float& v : l) v = x(rng);
        std::vector<uint8_t> t(size_t(kShape.voxels()));
        for (size_t v = 0; v < t.size(); ++v) t[v] = uint8_t((v * 7 + v / 977) % size_t(kShape.c));
        logits.upload(l);
        target.upload(t);
    }
};

void dice(benchmark::State& state, iss::Backend backend, bool backward) {
    iss::DeviceContext ctx(iss::Device{backend, 0});
    LossSetup s(ctx);
    iss::softmax_dice_forward(ctx, s.logits.data(), s.target.data(), kShape, s.probs.data(), s.workspace.data());
    for (auto _ : state) {
        if (backward)
            iss::softmax_dice_backward(ctx, s.probs.data(), s.target.data(), kShape, 1.0f, s.dlogits.data(),
                                       s.workspace.data());
        else
            benchmark::DoNotOptimize(iss::softmax_dice_forward(ctx, s.logits.data(), s.target.data(), kShape,
                                                               s.probs.data(), s.workspace.data()));
        ctx.synchronize();
    }
    const int64_t bytes = backward ? kShape.size() * 12 + kShape.voxels() * 2 : kShape.size() * 8 + kShape.voxels();
    state.SetBytesProcessed(int64_t(state.iterations()) * bytes);
    state.SetItemsProcessed(int64_t(state.iterations()) * kShape.voxels());
}

void adam(benchmark::State& state, iss::Backend backend) {
    iss::DeviceContext ctx(iss::Device{backend, 0});
    std::vector<float> host(static_cast<size_t>(kParams));
    std::mt19937 rng(2);
    std::normal_distribution<float> n(0.0f, 0.01f);
    for (float& v : host) v = n(rng);
    iss::Buffer<float> p(ctx, host), g(ctx, host), m(ctx, size_t(kParams)), v(ctx, size_t(kParams));
    ctx.fill_zero(m.data(), size_t(kParams) * sizeof(float));
    ctx.fill_zero(v.data(), size_t(kParams) * sizeof(float));
    int64_t step = 0;
    for (auto _ : state) {
        iss::adam_step(ctx, iss::AdamConfig{}, ++step, p.data(), g.data(), m.data(), v.data(), kParams);
        ctx.synchronize();
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * kParams * 28);
    state.SetItemsProcessed(int64_t(state.iterations()) * kParams);
}

void register_all() {
    std::vector<iss::Backend> backends{iss::Backend::cpu};
    if (iss::cuda_device_count() > 0) backends.push_back(iss::Backend::cuda);
    for (iss::Backend backend : backends) {
        const std::string dev = backend == iss::Backend::cuda ? "cuda" : "cpu";
        for (bool backward : {false, true})
            benchmark::RegisterBenchmark(
                ("SoftmaxDice/" + std::string(backward ? "backward/" : "forward/") + dev + "/" + kShape.str()).c_str(),
                dice, backend, backward)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
        benchmark::RegisterBenchmark(("Adam/" + dev + "/" + std::to_string(kParams)).c_str(), adam, backend)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
    }
}

}  // namespace

int main(int argc, char** argv) { return iss::bench::run(argc, argv, register_all); }
