// Resampling throughput on a typical infant volume (155x175x149 source and output), through a
// small oblique transform (the generator's case: most output voxels land inside the source).
// Reported: voxels/s (output voxels) and bytes/s counting only what must move at least: the
// source read once and the output written once. CUDA variants are registered only when a
// device is present. Times are wall-clock (OpenMP threads; CUDA synchronised per iteration).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "io/resample.h"
#include "kernels/common/device.h"
#include "kernels/geometry/resample.h"

namespace {

constexpr int64_t kDim[3] = {155, 175, 149};

// Rotation by 5 degrees about z around the centre, plus a fractional shift.
template <class T>
void set_transform(iss::ResampleArgsT<T>& a) {
    const double angle = 5.0 * M_PI / 180.0, c = std::cos(angle), s = std::sin(angle);
    const double cx = (kDim[0] - 1) / 2.0, cy = (kDim[1] - 1) / 2.0;
    const double m[3][4] = {{c, -s, 0, cx - c * cx + s * cy + 0.3},
                            {s, c, 0, cy - s * cx - c * cy - 0.2},
                            {0, 0, 1, 0.4}};
    for (int r = 0; r < 3; ++r)
        for (int col = 0; col < 4; ++col) a.xform[r][col] = float(m[r][col]);
}

template <class T>
void run(benchmark::State& state, iss::Backend backend, iss::Interp interp) {
    iss::DeviceContext ctx(iss::Device{backend, 0});
    const int64_t voxels = kDim[0] * kDim[1] * kDim[2];
    std::vector<T> host(static_cast<size_t>(voxels));
    std::mt19937 rng(1);
    for (T& v : host) v = T(rng() % 256);
    iss::Buffer<T> src(ctx, host), dst(ctx, size_t(voxels));

    iss::ResampleArgsT<T> a;
    a.src = src.data();
    a.dst = dst.data();
    for (int d = 0; d < 3; ++d) a.src_dim[d] = a.dst_dim[d] = kDim[d];
    a.interp = interp;
    a.oob = iss::OutOfBounds::clamp;
    set_transform(a);

    for (auto _ : state) {
        iss::resample(ctx, a);
        ctx.synchronize();
    }
    state.counters["voxels/s"] = benchmark::Counter(double(voxels) * double(state.iterations()), benchmark::Counter::kIsRate);
    state.SetBytesProcessed(int64_t(state.iterations()) * 2 * voxels * int64_t(sizeof(T)));
}

// predict's blur before it resamples a fine scan (io/resample.h): a clinical T2 of 0.4 x 0.4 x 3 mm
// voxels, 512x512x40, to the model's 1 mm: sigma 0.625 voxel along x and y (7 taps), z
// untouched. On the host whatever the device (predict's preprocessing).
void antialias(benchmark::State& state) {
    iss::Grid grid;
    grid.dim = {512, 512, 40};
    grid.affine = iss::Mat4::scaling(0.4, 0.4, 3.0);
    iss::Image scan(grid);
    std::mt19937 rng(1);
    for (float& v : scan.data) v = float(rng() % 256);
    for (auto _ : state) benchmark::DoNotOptimize(iss::blurred_for_downsampling(scan, {1.0, 1.0, 1.0}).data.data());
    state.counters["voxels/s"] =
        benchmark::Counter(double(grid.voxels()) * double(state.iterations()), benchmark::Counter::kIsRate);
}

void register_all() {
    benchmark::RegisterBenchmark("Resample/antialias/cpu/512x512x40", antialias)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    const std::string size = std::to_string(kDim[0]) + "x" + std::to_string(kDim[1]) + "x" + std::to_string(kDim[2]);
    std::vector<iss::Backend> backends{iss::Backend::cpu};
    if (iss::cuda_device_count() > 0)
        backends.push_back(iss::Backend::cuda);
    else
        std::fprintf(stderr, "no CUDA device: Resample/*/cuda/* benchmarks skipped\n");
    for (iss::Backend b : backends) {
        const std::string dev = b == iss::Backend::cuda ? "cuda" : "cpu";
        // Images are trilinear (float32); label maps nearest (int32), as the pipeline uses them.
        benchmark::RegisterBenchmark(("Resample/trilinear/" + dev + "/" + size).c_str(),
                                     [b](benchmark::State& s) { run<float>(s, b, iss::Interp::linear); })
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("Resample/nearest/" + dev + "/" + size).c_str(),
                                     [b](benchmark::State& s) { run<int32_t>(s, b, iss::Interp::nearest); })
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    }
}

}  // namespace

int main(int argc, char** argv) { return iss::bench::run(argc, argv, register_all); }
