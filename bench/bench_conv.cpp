// Conv3d throughput on the U-Net's own shapes at the infant training crop (128x160x128,
// batch 1): level 0 (1->24 input, 24->24, 72->24 after the decoder's concatenation, 24->34
// head with a 1x1x1 kernel), level 1 (64x80x64: 24->48, 48->48), level 2 (32x40x32: 96->96)
// and the level-0 decoder's fold at inference (64x80x64: 48->192, kernel 2, forward only).
// Names: Conv3d/<fwd|bwd_data|bwd_weights>/<cpu|cuda>/<D>x<H>x<W>x<Ci>-><Co> (kernel 3, except
// 24->34, the only 1x1x1 one), the fold's ending in /k2.
// Reported: the counter GFLOP, a rate (printed "GFLOP=N/s"), counting 2 * output voxels * Co *
// Ci * k^3 per pass (the bias is not counted).
// Setup (allocation, a cheap fill, building the primitives / choosing algorithms) is outside
// the timed loop; only the tensors a pass touches are allocated (a 128x160x128x72 fp32
// tensor is 755 MB). CUDA variants are registered only when a device is present.
#include <benchmark/benchmark.h>

#include "bench/bench_util.h"

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/common/device.h"
#include "nn/conv.h"

namespace {

enum class Pass { fwd, bwd_data, bwd_weights };

const char* pass_name(Pass p) {
    switch (p) {
        case Pass::fwd: return "fwd";
        case Pass::bwd_data: return "bwd_data";
        default: return "bwd_weights";
    }
}

// Values in [-1, 1) from an integer hash: the speed does not depend on them (no denormals),
// and filling 190 M elements this way takes a fraction of a second, unlike std::mt19937.
std::vector<float> filled(size_t count, uint32_t salt) {
    std::vector<float> v(count);
    for (size_t i = 0; i < count; ++i) {
        uint32_t h = uint32_t(i) * 2654435761u ^ salt;
        h ^= h >> 15;
        v[i] = float(h & 0xffff) / 32768.0f - 1.0f;
    }
    return v;
}

void run(benchmark::State& state, iss::Backend backend, iss::ConvShape s, Pass pass) {
    iss::DeviceContext ctx(iss::Device{backend, 0});
    iss::Conv3d conv(ctx, s);
    const size_t in_count = size_t(s.in.size()), out_count = size_t(s.out().size());
    const size_t w_count = size_t(s.weight_count()), b_count = size_t(s.out_c);
    // Weights are small: always there. Activations only for the pass that reads or writes them.
    iss::Buffer<float> w(ctx, filled(w_count, 2)), b(ctx, filled(b_count, 3));
    iss::Buffer<float> x, y, dx, dy;
    if (pass != Pass::bwd_data) x = iss::Buffer<float>(ctx, filled(in_count, 1));
    if (pass == Pass::fwd) y = iss::Buffer<float>(ctx, out_count);
    if (pass != Pass::fwd) dy = iss::Buffer<float>(ctx, filled(out_count, 4));
    if (pass == Pass::bwd_data) dx = iss::Buffer<float>(ctx, in_count);
    iss::Buffer<float> dw(ctx, w_count), db(ctx, b_count);

    for (auto _ : state) {
        switch (pass) {
            case Pass::fwd: conv.forward(x.data(), w.data(), b.data(), y.data()); break;
            case Pass::bwd_data: conv.backward_data(dy.data(), w.data(), dx.data()); break;
            case Pass::bwd_weights: conv.backward_weights(x.data(), dy.data(), dw.data(), db.data()); break;
        }
        ctx.synchronize();
    }
    const double flops = 2.0 * double(s.out().voxels()) * double(s.out_c) * double(s.in.c) * double(s.kernel) *
                         double(s.kernel) * double(s.kernel);
    state.counters["GFLOP"] =
        benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
}

void register_all() {
    const std::vector<iss::ConvShape> shapes{
        {iss::Shape5{1, 128, 160, 128, 1}, 24, 3},   // level 0, first convolution (the image)
        {iss::Shape5{1, 128, 160, 128, 24}, 24, 3},  // level 0, second encoder / decoder convolution
        {iss::Shape5{1, 128, 160, 128, 72}, 24, 3},  // level 0 decoder, after concat [24 skip, 48 up]
        {iss::Shape5{1, 128, 160, 128, 24}, 34, 1},  // head, 1x1x1 to the 34 labels
        {iss::Shape5{1, 64, 80, 64, 24}, 48, 3},     // level 1, first encoder convolution
        {iss::Shape5{1, 64, 80, 64, 48}, 48, 3},     // level 1, second
        {iss::Shape5{1, 32, 40, 32, 96}, 96, 3},     // level 2, second
        // The level-0 decoder's folded upsampling at inference (docs/KERNELS.md): level 1's 48
        // channels to 8 parities of 24, kernel 2 on the coarse grid. Forward only.
        {iss::Shape5{1, 64, 80, 64, 48}, 192, 2},
    };
    std::vector<iss::Backend> backends{iss::Backend::cpu};
    if (iss::cuda_device_count() > 0)
        backends.push_back(iss::Backend::cuda);
    else
        std::fprintf(stderr, "no CUDA device: Conv3d/*/cuda/* benchmarks skipped\n");
    for (iss::Backend backend : backends)
        for (const iss::ConvShape& s : shapes)
            for (Pass pass : {Pass::fwd, Pass::bwd_data, Pass::bwd_weights}) {
                // The network's input needs no gradient: backward-data of the first layer never runs.
                if (pass == Pass::bwd_data && s.in.c == 1) continue;
                if (pass != Pass::fwd && s.kernel == 2) continue;
                const std::string name = std::string("Conv3d/") + pass_name(pass) + "/" +
                                         (backend == iss::Backend::cuda ? "cuda" : "cpu") + "/" +
                                         std::to_string(s.in.d) + "x" + std::to_string(s.in.h) + "x" +
                                         std::to_string(s.in.w) + "x" + std::to_string(s.in.c) + "->" +
                                         std::to_string(s.out_c) + (s.kernel == 2 ? "/k2" : "");
                benchmark::RegisterBenchmark(name.c_str(),
                                             [backend, s, pass](benchmark::State& st) { run(st, backend, s, pass); })
                    ->UseRealTime()
                    ->Unit(benchmark::kMillisecond);
            }
}

}  // namespace

int main(int argc, char** argv) { return iss::bench::run(argc, argv, register_all); }
