// predict on an infant scan: a 155x175x149 image (a 12-month phantom painted T1-like, 1 mm,
// LIA orientation so the reorientation does real work) with the published U-Net (random
// weights: the time does not depend on them), flip augmentation on.
//   Predict/<cpu|cuda>/155x175x149: wall time per scan; counters: seconds of each stage
//   (preprocess, network, postprocess) and the network's peak activation bytes.
//   Predict/<cpu|cuda>/155x175x149/keras: the same network given as a Keras .h5 file (as the
//   published T1.h5), imported in memory: the scan's time must not differ.
//   KerasImport/published: reading and checking that 13.2-million-parameter file.
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
#include "nn/keras.h"
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

// The published U-Net (random weights) saved as one of our model directories and as a Keras file.
struct PublishedModel {
    std::string dir, keras;
    PublishedModel() : dir((std::filesystem::temp_directory_path() / "iss-bench-predict").string()) {
        std::filesystem::create_directories(dir);
        keras = dir + "/published.h5";
        DeviceContext ctx;
        ModelSpec spec;
        spec.unet.classes = int(labels::segmentation_labels().size());
        spec.labels = labels::segmentation_labels();
        spec.preprocessing = {{"orientation", "RAS"}, {"voxel_size_mm", {1.0, 1.0, 1.0}}, {"size_multiple", 16}};
        ParamStore params(ctx);
        UNet net(spec.unet, params);
        params.allocate();
        net.initialise(1);
        save_model(dir + "/model.safetensors", spec, params);
        write_keras_unet(keras, spec.unet, params);
    }
    ~PublishedModel() { std::filesystem::remove_all(dir); }
};

void predict(benchmark::State& state, Backend backend, bool from_keras) {
    const PublishedModel model;
    PredictOptions options;
    options.device = Device{backend, 0};
    options.keras.labels = "infant";
    Predictor predictor(from_keras ? model.keras : model.dir, options);
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
}

void keras_import(benchmark::State& state) {
    const PublishedModel model;
    for (auto _ : state) {
        const KerasUNet imported = read_keras_unet(model.keras);
        benchmark::DoNotOptimize(imported.tensors.size());
    }
    state.counters["parameters"] = 13240666;
}

void register_all() {
    for (Backend b : iss::bench::backends())
        for (const bool keras : {false, true})
            benchmark::RegisterBenchmark(
                (std::string("Predict/") + iss::bench::name(b) + "/155x175x149" + (keras ? "/keras" : "")).c_str(),
                predict, b, keras)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime()
                ->MinTime(b == Backend::cuda ? 1.0 : 0.01);
    benchmark::RegisterBenchmark("KerasImport/published", keras_import)->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) { return iss::bench::run(argc, argv, register_all); }
