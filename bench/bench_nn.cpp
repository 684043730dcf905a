// The U-Net at the published sizes (24 base features, 5 levels, 34 classes):
//   UNetForward/<cpu|cuda>/160x192x160     inference on an infant scan's padded grid
//                                          (no gradients, memory freed as the forward goes)
//   UNetForward/<cpu|cuda>/160x192x160/slab32  the same with the last level, the head and the
//                                          softmax in slabs of 32 rows (UNet::predict, as predict runs)
//   UNetConvolutions/<cpu|cuda>/160x192x160  the forward's convolutions alone, each with its
//                                          fused ELU (the bound UNetForward is measured against;
//                                          the decoders' first ones as the forward runs them, with
//                                          or without the concatenation: UNet::folds_upsampling)
//   UNetTrainStep/<cpu|cuda>/128x160x128   the infant training crop: forward + soft Dice +
//                                          backward + Adam, a step as training repeats it
//                                          (after the recorded step and the first planned one)
//   DecoderConv/<cpu|cuda>/160x192x160/level<l>/<concat|folded>  a decoder level's first
//                                          convolution at inference, over the concatenation
//                                          (upsample_concat, conv3d) or without it
//                                          (upsample_concat_conv), on the scan's level-l grid
//   .../bf16                               the same in bf16 (bf16 tensors and convolutions), where native
// Counters: GFLOP/s of the published network's convolutions (2 * voxels * Co * Ci * k^3 per
// conv; the backward counts twice the forward). At inference, where a decoder's first
// convolution runs without the concatenation (UNet::folds_upsampling), two rates:
// executed_GFLOP/s counts the arithmetic run (its two parts), nominal_GFLOP/s the convolution
// over the concatenation that the frameworks run (the network's work over our time: 36% above
// the executed rate at the published sizes on the CPU, where every level folds: 1529 against
// 1125 GFLOP a forward of 160x192x160). And peak_bytes of the activations (the arena's peak, or the pool's peak of the
// blocks held, a block possibly larger than its tensor; weights and optimizer state not included). Sizes can be shrunk
// for a quick look with --benchmark_filter and the environment variable INFANT_BENCH_SCALE=2 (halves each axis).
#include <benchmark/benchmark.h>

#include "bench/bench_util.h"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/philox.h"
#include "nn/autograd.h"
#include "nn/conv.h"
#include "nn/ops.h"
#include "nn/optimizer.h"
#include "nn/params.h"
#include "nn/tensor.h"
#include "nn/unet.h"

namespace {

using namespace iss;

int64_t scale_down() {
    const char* s = std::getenv("INFANT_BENCH_SCALE");
    return s ? std::max(1L, std::atol(s)) : 1;
}

// Every convolution of the U-Net's forward on an input of `in` (as nn/unet.cpp builds it: per
// level the encoder's convolutions, then the decoder's after the concatenation, and the 1x1x1
// head), in `precision`, with the network's tensor types (activations in the precision's type,
// except the fp32 image the first reads and the fp32 logits the head writes) and its fused ELUs
// (all but the head).
// Where folds(level) says so, the decoder level on grid `level` has as its first convolution the
// two that upsample_concat_conv runs (nn/ops.h): the skip's part on the level's grid and the
// deeper level's part, folded, on its own grid, both to fp32.
std::vector<ConvShape> forward_convolutions(const UNetConfig& c, const Shape5& in, Precision precision,
                                            const std::function<bool(int level)>& folds = {}) {
    const DType act = activation_type(precision);
    std::vector<ConvShape> shapes;
    for (int l = 0; l < c.levels; ++l) {
        const Shape5 at{in.n, in.d >> l, in.h >> l, in.w >> l, 0};
        const int64_t f = c.features_at(l);
        int64_t channels = l == 0 ? c.in_channels : c.features_at(l - 1);
        for (int k = 0; k < c.convs_per_level; ++k, channels = f)
            shapes.push_back({Shape5{at.n, at.d, at.h, at.w, channels}, f, c.kernel, precision, act, act, c.elu_alpha});
        if (l < c.levels - 1) {
            const int64_t deeper = c.features_at(l + 1);
            int k = 0;
            channels = f + deeper;
            if (folds && folds(l)) {
                shapes.push_back({Shape5{at.n, at.d, at.h, at.w, f}, f, 3, precision, act, DType::f32});
                shapes.push_back(
                    {Shape5{at.n, at.d / 2, at.h / 2, at.w / 2, deeper}, 8 * f, 2, precision, act, DType::f32});
                k = 1;
                channels = f;
            }
            for (; k < c.convs_per_level; ++k, channels = f)
                shapes.push_back(
                    {Shape5{at.n, at.d, at.h, at.w, channels}, f, c.kernel, precision, act, act, c.elu_alpha});
        }
    }
    shapes.front().x_type = DType::f32;
    shapes.push_back({Shape5{in.n, in.d, in.h, in.w, c.features}, c.classes, 1, precision, act, DType::f32});
    return shapes;
}

// The forward's multiply-adds, twice: over the concatenation, or as run where `folds` says.
double forward_flops(const UNetConfig& c, const Shape5& in, const std::function<bool(int level)>& folds = {}) {
    double total = 0;
    for (const ConvShape& s : forward_convolutions(c, in, Precision::fp32, folds))
        total += 2.0 * double(s.in.voxels()) * double(s.out_c) * double(s.in.c) * double(s.kernel * s.kernel * s.kernel);
    return total;
}

// executed_GFLOP/s and nominal_GFLOP/s of an inference run (the counters above).
void set_inference_rates(benchmark::State& state, double executed_flops, double nominal_flops) {
    const double runs = double(state.iterations()) * 1e-9;
    state.counters["executed_GFLOP/s"] = benchmark::Counter(executed_flops * runs, benchmark::Counter::kIsRate);
    state.counters["nominal_GFLOP/s"] = benchmark::Counter(nominal_flops * runs, benchmark::Counter::kIsRate);
}

struct Model {
    UNetConfig config;
    ParamStore params;
    UNet net;
    explicit Model(DeviceContext& ctx) : params(ctx), net(config, params) {
        params.allocate();
        net.initialise(1);
    }
};

void fill_input(DeviceContext& ctx, Tensor& x) {
    std::vector<float> host(size_t(x.size()));
    for (size_t i = 0; i < host.size(); i += 4) {
        float u[4];
        random_uniform4(RandomKey{3, 0, 0}, i / 4, u);
        for (size_t e = 0; e < 4 && i + e < host.size(); ++e) host[i + e] = u[e];
    }
    if (x.dtype == DType::f32) {
        ctx.copy_to_device(x.data, host.data(), host.size() * sizeof(float));
        return;
    }
    std::vector<Bf16> rounded(host.size());
    for (size_t i = 0; i < host.size(); ++i) rounded[i] = round_to_bf16(host[i]);
    ctx.copy_to_device(x.bf16_data, rounded.data(), rounded.size() * sizeof(Bf16));
}

// `slab`: 0 the whole volume at once; else UNet::predict's slabs of that many rows.
void unet_forward(benchmark::State& state, Backend backend, Shape5 shape, int64_t slab, Precision precision) {
    DeviceContext ctx(Device{backend, 0});
    Model model(ctx);
    PoolAllocator pool(ctx);
    Tensor x = Tensor::make(pool, shape);
    fill_input(ctx, x);
    auto forward = [&] {
        Graph g(pool, model.params, false);
        g.set_precision(precision);
        const Var probs = model.net.predict(g, g.input(x), slab);
        ctx.synchronize();
        return probs;
    };
    // One untimed pass builds the convolution engines and faults the pool's memory in, as the
    // PyTorch baseline's first (discarded) run does.
    forward();
    for (auto _ : state) benchmark::DoNotOptimize(forward().data());
    const auto folds = [&](int level) {
        return UNet::folds_upsampling(model.config, ctx, activation_type(precision), level);
    };
    set_inference_rates(state, forward_flops(model.config, shape, folds), forward_flops(model.config, shape));
    state.counters["peak_bytes"] = double(pool.peak_bytes());
    // The convolutions' shared workspace, outside the pool (bf16: the first layer's fp32 input
    // converted; fp32 on an AVX2 CPU: the blocked forward's copies of a layer's activations).
    state.counters["workspace_bytes"] = double(ctx.workspace_bytes());
}

// The forward's convolutions alone, one after another on buffers of the largest size: what
// UNetForward would take if everything but the convolutions were free.
void unet_convolutions(benchmark::State& state, Backend backend, Shape5 shape, Precision precision) {
    DeviceContext ctx(Device{backend, 0});
    const UNetConfig config;
    std::vector<std::unique_ptr<Conv3d>> convs;
    size_t largest_in = 0, largest_out = 0, largest_w = 0, largest_b = 0;
    const auto folds = [&](int level) {
        return UNet::folds_upsampling(config, ctx, activation_type(precision), level);
    };
    for (const ConvShape& s : forward_convolutions(config, shape, precision, folds)) {
        convs.push_back(std::make_unique<Conv3d>(ctx, s));
        largest_in = std::max(largest_in, size_t(s.in.size()));
        largest_out = std::max(largest_out, size_t(s.out().size()));
        largest_w = std::max(largest_w, size_t(s.weight_count()));
        largest_b = std::max(largest_b, size_t(s.out_c));
    }
    PoolAllocator pool(ctx);
    // Activations of each type the convolutions read and write (fp32 and, in bf16, bf16).
    auto flat = [](size_t n) { return Shape5{1, 1, 1, 1, int64_t(n)}; };
    const DType act = activation_type(precision);
    Tensor x32 = Tensor::make(pool, flat(largest_in)), y32 = Tensor::make(pool, flat(largest_out));
    Tensor x_act = act == DType::f32 ? x32 : Tensor::make(pool, flat(largest_in), act);
    Tensor y_act = act == DType::f32 ? y32 : Tensor::make(pool, flat(largest_out), act);
    Tensor w = Tensor::make(pool, flat(largest_w)), b = Tensor::make(pool, flat(largest_b));
    for (Tensor* t : {&x32, &x_act, &w, &b}) fill_input(ctx, *t);
    auto all = [&] {
        for (auto& conv : convs) {
            const ConvShape& s = conv->shape();
            conv->forward((s.x_type == DType::f32 ? x32 : x_act).raw(), w.data, b.data,
                          (s.y_type == DType::f32 ? y32 : y_act).raw());
        }
        ctx.synchronize();
    };
    all();  // untimed: first-touch memory, as UNetForward's warm-up pass
    for (auto _ : state) all();
    set_inference_rates(state, forward_flops(config, shape, folds), forward_flops(config, shape));
}

// A decoder level's first convolution at inference on the scan's level-`level` grid, with its
// fused ELU: over the concatenation, or without it.
void decoder_conv(benchmark::State& state, Backend backend, Shape5 scan, int level, bool folded, Precision precision) {
    DeviceContext ctx(Device{backend, 0});
    const UNetConfig config;
    const int64_t f = config.features_at(level), deeper = config.features_at(level + 1);
    ParamStore params(ctx);
    const Param w = params.declare("w", {f, 3, 3, 3, f + deeper}), b = params.declare("b", {f});
    params.allocate();
    PoolAllocator pool(ctx);
    const Shape5 fine{1, scan.d >> level, scan.h >> level, scan.w >> level, f};
    const Shape5 coarse{1, fine.d / 2, fine.h / 2, fine.w / 2, deeper};
    const DType act = activation_type(precision);
    Tensor skip = Tensor::make(pool, fine, act), from_below = Tensor::make(pool, coarse, act);
    Tensor weights = Tensor::make(pool, Shape5{1, 1, 1, 1, params.info(w).count});
    for (Tensor* t : {&skip, &from_below, &weights}) fill_input(ctx, *t);
    ctx.copy_on_device(params.value(w), weights.data, size_t(weights.size()) * sizeof(float));
    ConvEngines engines(f, 3);
    UpsampledConvEngines upsampled(f);
    auto run = [&] {
        Graph g(pool, params, false);
        g.set_precision(precision);
        const Var a = g.input(skip), c = g.input(from_below);
        const Var y = folded ? upsample_concat_conv(g, a, c, w, b, upsampled, config.elu_alpha)
                             : conv3d(g, upsample_concat(g, a, c), w, b, engines, act, config.elu_alpha);
        ctx.synchronize();
        return y;
    };
    run();  // untimed: builds the engines, faults the pool's memory in
    for (auto _ : state) benchmark::DoNotOptimize(run().data());
    // Folded: the skip's 27 taps on the fine grid, the deeper level's 8 folded taps to 8 f
    // channels on the coarse grid (an eighth of the voxels).
    const double nominal = 2.0 * double(fine.voxels()) * double(f) * double(f + deeper) * 27;
    const double executed = folded ? 2.0 * double(fine.voxels()) * double(f) * double(f * 27 + deeper * 8) : nominal;
    set_inference_rates(state, executed, nominal);
    state.counters["peak_bytes"] = double(pool.peak_bytes());
}

void unet_train_step(benchmark::State& state, Backend backend, Shape5 shape, Precision precision) {
    DeviceContext ctx(Device{backend, 0});
    Model model(ctx);
    Adam adam;
    ArenaAllocator arena(ctx);
    PoolAllocator inputs(ctx);
    Tensor x = Tensor::make(inputs, shape);  // outside the arena: filled once
    fill_input(ctx, x);
    std::vector<uint8_t> target(size_t(shape.voxels()));
    for (size_t p = 0; p < target.size(); ++p) target[p] = uint8_t((p / 4096) % model.config.classes);
    Buffer<uint8_t> target_device(ctx, target);
    auto step = [&] {
        arena.reset();
        Graph g(arena, model.params, true);
        g.set_precision(precision);
        softmax_dice_loss(g, model.net.forward(g, g.input(x), true), target_device.data());
        model.params.zero_grads();
        g.backward();
        adam.step(model.params);
        ctx.synchronize();
    };
    // Untimed: the first step builds the engines, and the arena records it and plans its memory;
    // the second is the first in the planned block, whose pages the kernel maps on first touch
    // (3.4 GB in fp32, 7 s of page faults on a 2-vCPU VM). Training pays both once; the timed
    // steps are the ones it repeats.
    step();
    step();
    for (auto _ : state) step();
    state.counters["GFLOP/s"] = benchmark::Counter(3 * forward_flops(model.config, shape) * 1e-9 *
                                                       double(state.iterations()),
                                                   benchmark::Counter::kIsRate);
    // The live peak of a step, and the planned block that holds it (what a step uses).
    state.counters["peak_bytes"] = double(arena.peak_bytes());
    state.counters["planned_bytes"] = double(arena.planned_bytes());
    state.counters["workspace_bytes"] = double(ctx.workspace_bytes());
}

void register_all() {
    const int64_t s = scale_down();
    const Shape5 scan{1, 160 / s, 192 / s, 160 / s, 1}, crop{1, 128 / s, 160 / s, 128 / s, 1};
    auto size = [](const Shape5& x) { return std::to_string(x.d) + "x" + std::to_string(x.h) + "x" + std::to_string(x.w); };
    std::vector<Backend> backends{Backend::cpu};
    if (cuda_device_count() > 0) backends.push_back(Backend::cuda);
    for (Backend b : backends) {
        const std::string dev = b == Backend::cuda ? "cuda" : "cpu";
        for (const Precision p : iss::bench::precisions(b)) {
            const std::string suffix = p == Precision::bf16 ? "/bf16" : "";
            for (const int64_t slab : {int64_t(0), int64_t(32)})
                benchmark::RegisterBenchmark(("UNetForward/" + dev + "/" + size(scan) +
                                              (slab ? "/slab" + std::to_string(slab) : "") + suffix)
                                                 .c_str(),
                                             unet_forward, b, scan, slab, p)
                    ->Unit(benchmark::kMillisecond)
                    ->UseRealTime()
                    ->MinTime(b == Backend::cuda ? 0.5 : 0.01);
            benchmark::RegisterBenchmark(("UNetConvolutions/" + dev + "/" + size(scan) + suffix).c_str(),
                                         unet_convolutions, b, scan, p)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime()
                ->MinTime(b == Backend::cuda ? 0.5 : 0.01);
            for (int level = 0; level < UNetConfig{}.levels - 1; ++level)
                for (const bool folded : {false, true})
                    benchmark::RegisterBenchmark(("DecoderConv/" + dev + "/" + size(scan) + "/level" +
                                                  std::to_string(level) + (folded ? "/folded" : "/concat") + suffix)
                                                     .c_str(),
                                                 decoder_conv, b, scan, level, folded, p)
                        ->Unit(benchmark::kMillisecond)
                        ->UseRealTime()
                        ->MinTime(b == Backend::cuda ? 0.5 : 0.01);
            benchmark::RegisterBenchmark(("UNetTrainStep/" + dev + "/" + size(crop) + suffix).c_str(),
                                         unet_train_step, b, crop, p)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime()
                ->MinTime(b == Backend::cuda ? 0.5 : 0.01);
        }
    }
}

}  // namespace

int main(int argc, char** argv) { return iss::bench::run(argc, argv, register_all); }
