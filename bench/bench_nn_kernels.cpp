// The network's own kernels at the U-Net's level-0 training shape, 1x128x160x128x24 (batch 1,
// the 128x160x128 crop, 24 features): ELU, batch norm (training forward, backward), max-pool,
// nearest upsampling (level 1's 48 channels up to level 0), the concatenation
// [skip 24 | upsampled 48] -> 72, and the two fused as the decoder runs them; forward and
// backward, with fp32 tensors and with bf16 ones (suffix /bf16: the same bodies, widening on
// load and rounding once on store). Inference's batch norm (BatchNormInfer) and sum of the folded
// upsampling's parities (AddUpsampledParities) are timed forward only.
// bytes/s counts the minimal traffic of each kernel, documented per benchmark below, so the
// figure says how close it runs to memory speed. CUDA variants are registered only when a
// device is present; CUDA timings synchronise every iteration.
#include <benchmark/benchmark.h>

#include "bench/bench_util.h"

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/device.h"
#include "kernels/nn/batchnorm.h"
#include "kernels/nn/elementwise.h"
#include "kernels/nn/pool.h"

namespace {

using iss::Bf16;
using iss::Buffer;
using iss::DeviceContext;
using iss::Shape5;

const Shape5 kLevel0{1, 128, 160, 128, 24};
const Shape5 kLevel1{1, 64, 80, 64, 48};

// Fills a device buffer with a pseudo-random pattern in [-2, 2) (rounded once to T), uploaded in
// slices (no second full-size copy on the host).
template <class T>
void fill_pattern(DeviceContext& ctx, Buffer<T>& b, uint32_t seed) {
    const size_t slice = size_t(1) << 20;
    std::vector<T> host(slice);
    uint32_t state = seed * 2654435761u + 1;
    for (size_t start = 0; start < b.size(); start += slice) {
        const size_t n = std::min(slice, b.size() - start);
        for (size_t i = 0; i < n; ++i) {
            state = state * 1664525u + 1013904223u;
            host[i] = iss::narrow<T>(float(state >> 8) * (4.0f / 16777216.0f) - 2.0f);
        }
        ctx.copy_to_device(b.data() + start, host.data(), n * sizeof(T));
    }
}

template <class T>
Buffer<T> random_buffer(DeviceContext& ctx, size_t n, uint32_t seed) {
    Buffer<T> b(ctx, n);
    fill_pattern(ctx, b, seed);
    return b;
}

// Runs `step` per iteration and reports bytes/s for `bytes` moved per step.
void time_it(benchmark::State& state, DeviceContext& ctx, double bytes, const std::function<void()>& step) {
    step();  // warm-up (first touch of the output pages on the CPU)
    ctx.synchronize();
    for (auto _ : state) {
        step();
        ctx.synchronize();
    }
    state.counters["GB/s"] = benchmark::Counter(bytes * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// The traffic below is counted in activation elements of E bytes (4 in fp32, 2 in bf16);
// batch norm's statistics and parameters stay fp32 and are negligible.

// ELU forward: read x, write y (2E per element). Backward: read y and dy, write dx (3E).
template <class T>
void elu(benchmark::State& state, iss::Backend backend, bool backward) {
    DeviceContext ctx(iss::Device{backend, 0});
    const int64_t n = kLevel0.size();
    constexpr double E = sizeof(T);
    Buffer<T> x = random_buffer<T>(ctx, size_t(n), 1), dy = random_buffer<T>(ctx, size_t(n), 2), y(ctx, size_t(n));
    if (!backward) {
        time_it(state, ctx, 2 * E * double(n), [&] { iss::elu_forward(ctx, x.data(), y.data(), n, 1.0f); });
    } else {
        iss::elu_forward(ctx, x.data(), x.data(), n, 1.0f);  // a real ELU output
        time_it(state, ctx, 3 * E * double(n), [&] { iss::elu_backward(ctx, x.data(), dy.data(), y.data(), n, 1.0f); });
    }
}

// Batch norm forward (training): the minimum is x read twice (statistics, then normalising)
// and y written: 3E per element (our two-pass statistics read x a third time). Backward: x and
// dy read for the sums, again for dx, dx written: 5E.
template <class T>
void batchnorm(benchmark::State& state, iss::Backend backend, bool backward) {
    DeviceContext ctx(iss::Device{backend, 0});
    const Shape5 s = kLevel0;
    const size_t n = size_t(s.size()), c = size_t(s.c);
    constexpr double E = sizeof(T);
    Buffer<T> x = random_buffer<T>(ctx, n, 3), dy = random_buffer<T>(ctx, n, 4), y(ctx, n);
    Buffer<float> gamma(ctx, std::vector<float>(c, 1.0f)), beta(ctx, std::vector<float>(c, 0.0f));
    Buffer<float> rm(ctx, std::vector<float>(c, 0.0f)), rv(ctx, std::vector<float>(c, 1.0f));
    Buffer<float> mean(ctx, c), invstd(ctx, c), dgamma(ctx, c), dbeta(ctx, c);
    Buffer<double> ws(ctx, iss::batchnorm_workspace_bytes(s) / sizeof(double));
    auto forward = [&] {
        iss::batchnorm_forward_train(ctx, x.data(), s, gamma.data(), beta.data(), 1e-3f, 0.99f, y.data(), mean.data(),
                                     invstd.data(), rm.data(), rv.data(), ws.data());
    };
    if (!backward) {
        time_it(state, ctx, 3 * E * double(n), forward);
    } else {
        forward();
        time_it(state, ctx, 5 * E * double(n), [&] {
            iss::batchnorm_backward(ctx, x.data(), dy.data(), s, gamma.data(), mean.data(), invstd.data(), y.data(),
                                    dgamma.data(), dbeta.data(), ws.data());
        });
    }
}

// Max-pool forward: read x, write y (1/8) and argmax (1 byte per output): (9E + 1) / 8 bytes per
// input element. Backward: read dy and argmax, write dx: the same.
template <class T>
void maxpool(benchmark::State& state, iss::Backend backend, bool backward) {
    DeviceContext ctx(iss::Device{backend, 0});
    const Shape5 s = kLevel0;
    const size_t n = size_t(s.size());
    const double bytes = (9.0 * sizeof(T) + 1.0) / 8.0 * double(n);
    Buffer<T> x = random_buffer<T>(ctx, n, 5), dy = random_buffer<T>(ctx, n / 8, 6), y(ctx, n / 8), dx(ctx, n);
    Buffer<uint8_t> argmax(ctx, n / 8);
    auto forward = [&] { iss::maxpool2_forward(ctx, x.data(), s, y.data(), argmax.data()); };
    if (!backward) {
        time_it(state, ctx, bytes, forward);
    } else {
        forward();
        time_it(state, ctx, bytes, [&] { iss::maxpool2_backward(ctx, dy.data(), argmax.data(), s, dx.data()); });
    }
}

// Upsampling level 1 (48 channels) to level 0: forward reads x (1/8) and writes y, 9E/8 per
// output element; backward reads dy and writes dx (1/8): the same.
template <class T>
void upsample(benchmark::State& state, iss::Backend backend, bool backward) {
    DeviceContext ctx(iss::Device{backend, 0});
    const Shape5 s = kLevel1;
    const size_t n = size_t(s.size());
    const double bytes = 9.0 * sizeof(T) / 8.0 * double(8 * n);
    Buffer<T> x = random_buffer<T>(ctx, n, 7), dy = random_buffer<T>(ctx, 8 * n, 8), y(ctx, 8 * n), dx(ctx, n);
    if (!backward)
        time_it(state, ctx, bytes, [&] { iss::upsample2_forward(ctx, x.data(), s, y.data()); });
    else
        time_it(state, ctx, bytes, [&] { iss::upsample2_backward(ctx, dy.data(), s, dx.data()); });
}

// Concatenation [24 | 48] -> 72 at level 0: every element read once and written once, 2E per
// output element, both ways.
template <class T>
void concat(benchmark::State& state, iss::Backend backend, bool backward) {
    DeviceContext ctx(iss::Device{backend, 0});
    const int64_t voxels = kLevel0.voxels(), ca = 24, cb = 48;
    Buffer<T> a = random_buffer<T>(ctx, size_t(voxels * ca), 9), b = random_buffer<T>(ctx, size_t(voxels * cb), 10);
    Buffer<T> y(ctx, size_t(voxels * (ca + cb)));
    const double bytes = 2.0 * sizeof(T) * double(voxels * (ca + cb));
    if (!backward) {
        time_it(state, ctx, bytes,
                [&] { iss::concat_channels_forward(ctx, a.data(), ca, b.data(), cb, voxels, y.data()); });
    } else {
        fill_pattern(ctx, y, 11);
        time_it(state, ctx, bytes,
                [&] { iss::concat_channels_backward(ctx, y.data(), ca, cb, voxels, a.data(), b.data()); });
    }
}

// The decoder's upsample and concatenation in one kernel, as the U-Net runs them: level 1's 48
// channels upsampled beside level 0's 24 skip channels -> 72. Forward reads the skip (24E per
// voxel) and the coarse tensor (48E/8) and writes 72E: 102E per fine voxel. Backward reads dy
// (72E) and writes the skip's gradient (24E) and the coarse one (48E/8): the same.
template <class T>
void upsample_concat(benchmark::State& state, iss::Backend backend, bool backward) {
    DeviceContext ctx(iss::Device{backend, 0});
    const Shape5 fine = kLevel0;  // the skip: 24 channels
    const int64_t voxels = fine.voxels(), ca = fine.c, cb = kLevel1.c;
    Buffer<T> a = random_buffer<T>(ctx, size_t(voxels * ca), 12), b = random_buffer<T>(ctx, size_t(kLevel1.size()), 13);
    Buffer<T> y(ctx, size_t(voxels * (ca + cb)));
    const double bytes = 102.0 * sizeof(T) * double(voxels);
    if (!backward) {
        time_it(state, ctx, bytes, [&] { iss::upsample_concat_forward(ctx, a.data(), fine, b.data(), cb, y.data()); });
    } else {
        fill_pattern(ctx, y, 14);
        time_it(state, ctx, bytes,
                [&] { iss::upsample_concat_backward(ctx, y.data(), fine, cb, a.data(), b.data()); });
    }
}

// Batch norm at inference (running statistics): read x, write y, 2E per element.
template <class T>
void batchnorm_infer(benchmark::State& state, iss::Backend backend, bool) {
    DeviceContext ctx(iss::Device{backend, 0});
    const Shape5 s = kLevel0;
    const size_t n = size_t(s.size()), c = size_t(s.c);
    Buffer<T> x = random_buffer<T>(ctx, n, 17), y(ctx, n);
    Buffer<float> gamma(ctx, std::vector<float>(c, 1.5f)), beta(ctx, std::vector<float>(c, 0.25f));
    Buffer<float> rm(ctx, std::vector<float>(c, 0.1f)), rv(ctx, std::vector<float>(c, 2.0f));
    time_it(state, ctx, 2.0 * sizeof(T) * double(n), [&] {
        iss::batchnorm_forward_infer(ctx, x.data(), s, gamma.data(), beta.data(), rm.data(), rv.data(), 1e-3f,
                                     y.data());
    });
}

// Inference's decoder sum, the parities folded from level 1 added to the skip's part at level 0
// with the ELU (nn/ops.h, upsample_concat_conv): reads the skip's part (4 bytes a channel, fp32)
// and each fine voxel's parity (4 bytes a channel: every parity is read once), writes y (E a
// channel): 8 + E bytes per output element. Inference only: no backward.
template <class T>
void add_upsampled_parities(benchmark::State& state, iss::Backend backend, bool) {
    DeviceContext ctx(iss::Device{backend, 0});
    const Shape5 fine = kLevel0;
    const Shape5 coarse{fine.n, fine.d / 2 + 1, fine.h / 2 + 1, fine.w / 2 + 1, 8 * fine.c};
    Buffer<float> a = random_buffer<float>(ctx, size_t(fine.size()), 15);
    Buffer<float> parities = random_buffer<float>(ctx, size_t(coarse.size()), 16);
    Buffer<T> y(ctx, size_t(fine.size()));
    time_it(state, ctx, (8.0 + sizeof(T)) * double(fine.size()),
            [&] { iss::add_upsampled_parities(ctx, a.data(), parities.data(), fine, y.data(), 1.0f); });
}

void register_all() {
    std::vector<iss::Backend> backends{iss::Backend::cpu};
    if (iss::cuda_device_count() > 0)
        backends.push_back(iss::Backend::cuda);
    else
        std::fprintf(stderr, "no CUDA device: Nn*/cuda benchmarks skipped\n");
    using Kernel = void (*)(benchmark::State&, iss::Backend, bool);
    struct Entry {
        const char* name;
        Kernel fp32, bf16;
        bool backward = true;  // also timed backward
    };
    const Entry kernels[] = {{"Elu", elu<float>, elu<Bf16>},
                             {"BatchNormTrain", batchnorm<float>, batchnorm<Bf16>},
                             {"MaxPool2", maxpool<float>, maxpool<Bf16>},
                             {"Upsample2", upsample<float>, upsample<Bf16>},
                             {"Concat", concat<float>, concat<Bf16>},
                             {"UpsampleConcat", upsample_concat<float>, upsample_concat<Bf16>},
                             {"BatchNormInfer", batchnorm_infer<float>, batchnorm_infer<Bf16>, false},
                             {"AddUpsampledParities", add_upsampled_parities<float>, add_upsampled_parities<Bf16>,
                              false}};
    for (iss::Backend be : backends) {
        const std::string dev = be == iss::Backend::cuda ? "cuda" : "cpu";
        for (const Entry& e : kernels)
            for (const bool bf16 : {false, true})
                for (const bool backward : {false, true}) {
                    if (backward && !e.backward) continue;
                    const std::string label = std::string("Nn/") + e.name + (backward ? "/backward/" : "/forward/") + dev +
                                              "/" + kLevel0.str() + (bf16 ? "/bf16" : "");
                    Kernel k = bf16 ? e.bf16 : e.fp32;
                    benchmark::RegisterBenchmark(label.c_str(),
                                                 [k, be, backward](benchmark::State& s) { k(s, be, backward); })
                        ->UseRealTime()
                        ->Unit(benchmark::kMillisecond);
                }
    }
}

}  // namespace

int main(int argc, char** argv) { return iss::bench::run(argc, argv, register_all); }
