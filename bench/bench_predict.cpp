// predict on an infant scan: a 155x175x149 image (a 12-month phantom painted T1-like, 1 mm,
// LIA orientation so the reorientation does real work) with the published U-Net (random
// weights: the time does not depend on them), flip augmentation on.
//   Predict/<cpu|cuda>/155x175x149: wall time per scan; counters: seconds of each stage
//   (preprocess, network, postprocess) and the bytes the network held (its activations'
//   blocks and the convolutions' workspace).
//   Predict/<cpu|cuda>/155x175x149/keras: the same network given as a Keras .h5 file (as the
//   published T1.h5), imported in memory: the scan's time must not differ.
//   KerasImport/published[/keras]: reading and checking that 13.2-million-parameter file, or the
//   same network as Keras 3's .keras archive (baseline: bench/baselines/keras_files.py,
//   Keras' load_model).
//   KerasExport/published/<h5|keras>: writing it from a loaded model (export's work), as Keras 2
//   weights or as a .keras archive (baseline: Keras' model.save).
//   PredictPost/<cpu|cuda>/155x175x149x34: the post-processing alone (smooth, crop, argmax,
//   largest component, back to LIA) on random posteriors of the padded 160x192x160 grid, the
//   stages bench/baselines/post_scipy.py times; counter extra_s: what predict also does and the
//   baseline does not (the posteriors back to LIA, the volumes).
// The baseline is bench/baselines/predict_torch.py: the same stages in NumPy/SciPy/PyTorch.
#include <benchmark/benchmark.h>

#include "bench/bench_util.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <map>
#include <string>

#include "io/orientation.h"
#include "kernels/common/device.h"
#include "kernels/common/philox.h"
#include "nn/checkpoint.h"
#include "nn/keras.h"
#include "predict/postprocess.h"
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

// The published U-Net (random weights) saved as one of our model directories and as a Keras
// `.h5` (and a `.keras` archive when asked); its parameters stay loaded (for the exports).
ModelSpec published_spec() {
    ModelSpec spec;
    spec.unet.classes = int(labels::segmentation_labels().size());
    spec.labels = labels::segmentation_labels();
    // Padded to a multiple of 32 (2^levels), as every model train and import write, and as
    // the published SynthSeg pads (the Keras file's row reads that from the file; both padded to 16
    // before the thirty-third session, the .h5's to 32).
    spec.preprocessing = {{"orientation", "RAS"}, {"voxel_size_mm", {1.0, 1.0, 1.0}}, {"size_multiple", 32}};
    return spec;
}

struct PublishedModel {
    std::string dir, keras, archive;
    DeviceContext ctx;
    ModelSpec spec = published_spec();
    ParamStore params{ctx};
    UNet net{spec.unet, params};
    explicit PublishedModel(bool with_archive = false)
        : dir((std::filesystem::temp_directory_path() / "iss-bench-predict").string()) {
        std::filesystem::create_directories(dir);
        keras = dir + "/published.h5";
        archive = dir + "/published.keras";
        params.allocate();
        net.initialise(1);
        save_model(dir + "/model.safetensors", spec, params);
        write_keras_unet(keras, spec, params);
        if (with_archive) write_keras_archive(archive, spec, params);
    }
    ~PublishedModel() { std::filesystem::remove_all(dir); }
};

void predict(benchmark::State& state, Backend backend, bool from_keras, Precision precision) {
    const PublishedModel model;
    PredictOptions options;
    options.device = Device{backend, 0};
    options.precision = precision;
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

void predict_post(benchmark::State& state, Backend backend) {
    DeviceContext ctx(Device{backend, 0});
    const std::array<int64_t, 3> padded{160, 192, 160}, before{2, 8, 5};
    Grid grid;
    grid.dim = {155, 175, 149};
    const std::vector<int32_t> labels = labels::segmentation_labels();
    const int64_t classes = int64_t(labels.size()), voxels = padded[0] * padded[1] * padded[2];
    std::vector<float> probs(size_t(voxels * classes));
    for (int64_t v = 0; v < voxels; ++v) {
        float sum = 0;
        for (int64_t c = 0; c < classes; c += 4) {
            float u[4];
            random_uniform4(RandomKey{2, 0, 0}, uint64_t(v * classes + c), u);
            for (int64_t e = c; e < std::min(c + 4, classes); ++e) sum += probs[size_t(v * classes + e)] = u[e - c];
        }
        for (int64_t c = 0; c < classes; ++c) probs[size_t(v * classes + c)] /= sum;
    }
    std::vector<float> work = probs;  // smoothed in place
    // One untimed run first, as the SciPy baseline warms up: a single timed iteration (this
    // takes about the minimum time) would count the allocator's first pages (1.25 against
    // 0.44 s on a 2-vCPU EPYC).
    benchmark::DoNotOptimize(
        reorient(
            segment_posteriors(smooth_and_crop_posteriors(ctx, work.data(), padded, before, grid, classes), labels),
            "LIA")
            .data.data());
    double extra = 0;
    for (auto _ : state) {
        state.PauseTiming();
        work = probs;
        state.ResumeTiming();
        const Image post = smooth_and_crop_posteriors(ctx, work.data(), padded, before, grid, classes);
        const LabelMap seg = reorient(segment_posteriors(post, labels), "LIA");
        benchmark::DoNotOptimize(seg.data.data());
        state.PauseTiming();
        const auto start = std::chrono::steady_clock::now();
        const Image post_lia = reorient(post, "LIA");
        benchmark::DoNotOptimize(posterior_volumes_mm3(post_lia, labels).data());
        extra += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        state.ResumeTiming();
    }
    state.counters["extra_s"] = extra / double(state.iterations());
}

void keras_import(benchmark::State& state, bool archive) {
    const PublishedModel model(archive);
    for (auto _ : state) {
        const KerasUNet imported = read_keras_unet(archive ? model.archive : model.keras);
        benchmark::DoNotOptimize(imported.tensors.size());
    }
    state.counters["parameters"] = 13240666;
}

// What export does once the model is loaded: the Keras file written and renamed into place.
void keras_export(benchmark::State& state, bool archive) {
    PublishedModel model;
    const std::string out = model.dir + "/exported";
    for (auto _ : state) {
        if (archive)
            write_keras_archive(out + ".keras", model.spec, model.params);
        else
            write_keras_unet(out + ".h5", model.spec, model.params);
    }
}

void register_all() {
    for (Backend b : iss::bench::backends())
        for (const Precision p : iss::bench::precisions(b))
            for (const bool keras : {false, true}) {
                if (keras && p == Precision::bf16) continue;  // the import is the same in either
                benchmark::RegisterBenchmark((std::string("Predict/") + iss::bench::name(b) + "/155x175x149" +
                                              (keras ? "/keras" : "") + (p == Precision::bf16 ? "/bf16" : ""))
                                                 .c_str(),
                                             predict, b, keras, p)
                    ->Unit(benchmark::kMillisecond)
                    ->UseRealTime()
                    ->MinTime(b == Backend::cuda ? 1.0 : 0.01);
            }
    for (Backend b : iss::bench::backends())
        benchmark::RegisterBenchmark((std::string("PredictPost/") + iss::bench::name(b) + "/155x175x149x34").c_str(),
                                     predict_post, b)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->MinTime(1.0);
    for (const bool archive : {false, true}) {
        benchmark::RegisterBenchmark(archive ? "KerasImport/published/keras" : "KerasImport/published", keras_import,
                                     archive)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
        benchmark::RegisterBenchmark(archive ? "KerasExport/published/keras" : "KerasExport/published/h5", keras_export,
                                     archive)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
    }
}

}  // namespace

int main(int argc, char** argv) { return iss::bench::run(argc, argv, register_all); }
