// predict on an infant scan: a 155x175x149 image (a 12-month phantom painted T1-like, 1 mm,
// LIA orientation so the reorientation does real work) with the published U-Net (random
// weights: the time does not depend on them), flip augmentation on.
//   Predict/<cpu|cuda>/155x175x149: wall time per scan; counters: seconds of each stage
//   (preprocess, network, postprocess) and the network's peak activation bytes.
// The baseline is bench/baselines/predict_torch.py: the same stages in NumPy/SciPy/PyTorch.
#include <benchmark/benchmark.h>

#include "bench/bench_util.h"

#include <filesystem>
#include <map>
#include <string>

#include "io/orientation.h"
#include "kernels/common/device.h"
#include "kernels/common/philox.h"
#include "nn/checkpoint.h"
#include "predict/predictor.h"
#include "synth/labels.h"

namespace {

using namespace iss;

Image infant_scan() {
    const LabelMap labels = iss::bench::infant_sized_phantom();
    Image image(labels.grid);
    for (size_t v = 0; v < image.data.size(); ++v) {
        float z[4];
        random_normal4(RandomKey{1, 0, 0}, uint64_t(v), z);
        const int32_t label = labels.data[v];
        image.data[v] = float(label == 0 ? 0 : 60 + (label * 37) % 140) + 5 * z[0];
    }
    return reorient(image, "LIA");
}

void predict(benchmark::State& state, Backend backend) {
    const std::string dir = (std::filesystem::temp_directory_path() / "iss-bench-predict").string();
    std::filesystem::create_directories(dir);
    {
        DeviceContext ctx;
        ModelSpec spec;
        spec.unet.classes = int(labels::segmentation_labels().size());
        spec.labels = labels::segmentation_labels();
        spec.preprocessing = {{"voxel_size_mm", {1.0, 1.0, 1.0}}, {"size_multiple", 16}};
        ParamStore params(ctx);
        UNet net(spec.unet, params);
        params.allocate();
        net.initialise(1);
        save_model(dir + "/model.safetensors", spec, params);
    }
    PredictOptions options;
    options.device = Device{backend, 0};
    Predictor predictor(dir, options);
    const Image scan = infant_scan();
    predictor.predict(scan, "warm-up");  // engines and first-touch memory, as the baseline warms up
    std::map<std::string, double> seconds;
    size_t peak = 0;
    for (auto _ : state) {
        const Segmentation out = predictor.predict(scan, "scan");
        for (const auto& [stage, s] : out.stage_seconds) seconds[stage] += s;
        peak = std::max(peak, out.network_peak_bytes);
    }
    for (const auto& [stage, s] : seconds) state.counters[stage + "_s"] = s / double(state.iterations());
    state.counters["network_peak_bytes"] = double(peak);
    std::filesystem::remove_all(dir);
}

void register_all() {
    for (Backend b : iss::bench::backends())
        benchmark::RegisterBenchmark((std::string("Predict/") + iss::bench::name(b) + "/155x175x149").c_str(), predict, b)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->MinTime(b == Backend::cuda ? 1.0 : 0.01);
}

}  // namespace

int main(int argc, char** argv) { return iss::bench::run(argc, argv, register_all); }
