// The generator on the infant case: a 155x175x149 label map (a 12-month phantom padded to the
// published maps' size) to the 128x160x128 training crop, infant-t1 preset.
//   SynthSample/<cpu|cuda>/155x175x149   one whole sample (samples/s), waited for
//   SynthSample/cuda/graph/...           the same, replayed as a CUDA graph (Generator::set_cuda_graph)
//   SynthSampleStream/cuda/<direct|graph>/...  16 samples queued back to back, one wait: the
//                                        throughput a training loop sees (issue 14's goal on an
//                                        H100: 50 microseconds a sample with the graph). The host
//                                        runs at most about two samples ahead: each sample's
//                                        upload waits for the copy two uploads back.
//   SynthStage/<stage>/<cpu|cuda>/...    each stage alone on one sample, its input made afresh
//                                        by the stages before it (untimed) every iteration;
//                                        pausing the timer costs about a microsecond, which
//                                        counts in a CUDA stage of tens of them
//   SynthSampleStages/<cpu|cuda>/...     whole samples, one after another (their parameters,
//                                        hence their costs, vary), with the draw's and each
//                                        stage's mean time as a counter <stage>_ms
//                                        (iss::StageProfile, as synth --profile): a
//                                        synchronisation after every stage, so the total is
//                                        SynthSample's plus those waits
// Bytes/s count what a stage must at least read and write (iss::stage_traffic_bytes), so the
// figure says how close a stage runs to memory speed. CUDA variants are registered only
// when a device is present; CUDA timings synchronise every iteration.
#include <benchmark/benchmark.h>

#include "bench/bench_util.h"

#include <memory>
#include <string>
#include <vector>

#include "kernels/common/device.h"
#include "synth/config.h"
#include "synth/generator.h"
#include "synth/phantom.h"
#include "synth/stage_profile.h"

namespace {

using iss::Generator;

constexpr int64_t kMap[3] = {155, 175, 149};


struct Setup {
    std::unique_ptr<iss::DeviceContext> ctx;
    std::unique_ptr<Generator> generator;
};

Setup make_setup(iss::Backend backend) {
    Setup s;
    s.ctx = std::make_unique<iss::DeviceContext>(iss::Device{backend, 0});
    const iss::GeneratorConfig config = iss::preset_config("infant-t1");
    std::vector<iss::TrainingMap> maps{iss::make_training_map(iss::bench::infant_sized_phantom(), config, "phantom")};
    s.generator = std::make_unique<Generator>(*s.ctx, config, std::move(maps), 1);
    return s;
}

int64_t voxels(const std::array<int64_t, 3>& d) { return d[0] * d[1] * d[2]; }

// Two untimed samples first: a CUDA graph is captured on the second.
void warm_up(Setup& s, bool graph, uint32_t& n) {
    s.generator->set_cuda_graph(graph);
    for (int i = 0; i < 2; ++i) s.generator->generate(n++);
    s.ctx->synchronize();
}

void sample(benchmark::State& state, iss::Backend backend, bool graph) {
    Setup s = make_setup(backend);
    uint32_t n = 0;
    warm_up(s, graph, n);
    int64_t out = 0;
    for (auto _ : state) {
        out = voxels(s.generator->generate(n++).out_shape);
        s.ctx->synchronize();
    }
    state.SetItemsProcessed(int64_t(state.iterations()));
    // Whole sample: read the map's labels once, write image + target.
    state.SetBytesProcessed(int64_t(state.iterations()) * out * 6);
}

void sample_stream(benchmark::State& state, iss::Backend backend, bool graph) {
    constexpr int kQueued = 16;
    Setup s = make_setup(backend);
    uint32_t n = 0;
    warm_up(s, graph, n);
    for (auto _ : state) {
        for (int q = 0; q < kQueued; ++q) s.generator->generate(n++);
        s.ctx->synchronize();
    }
    state.SetItemsProcessed(int64_t(state.iterations()) * kQueued);
}

void stage(benchmark::State& state, iss::Backend backend, Generator::Stage which) {
    Setup s = make_setup(backend);
    // Sample 3 has a nonzero velocity field (sample 0 too, but any fixed one will do).
    const iss::SampleParams& p = s.generator->draw(3);
    for (Generator::Stage st : Generator::all_stages) s.generator->run(st);
    s.ctx->synchronize();
    for (auto _ : state) {
        // The stages before it, untimed, so that every run finds the input the pipeline gives
        // it: the bias and normalisation work in place, and run on their own output the image
        // drifts (towards the clip, or into subnormals, whose arithmetic is slow).
        state.PauseTiming();
        for (Generator::Stage st : Generator::all_stages) {
            if (st == which) break;
            s.generator->run(st);
        }
        s.ctx->synchronize();
        state.ResumeTiming();
        s.generator->run(which);
        s.ctx->synchronize();
    }
    state.SetItemsProcessed(int64_t(state.iterations()));
    const int64_t bytes = iss::stage_traffic_bytes(which, p, s.generator->config().integration_steps);
    state.SetBytesProcessed(int64_t(state.iterations()) * bytes);
}

// Stage costs vary with the sample (its deformation's reach, its blur, a resolution step or
// not), and a stage run after the others finds the caches as the pipeline leaves them: what a
// user's training step pays, where SynthStage repeats one stage of one sample.
void sample_stages(benchmark::State& state, iss::Backend backend) {
    Setup s = make_setup(backend);
    iss::StageProfile profile;
    uint32_t n = 0;
    for (auto _ : state) profile.generate(*s.generator, n++);
    for (const iss::StageProfile::Row& row : profile.rows())
        state.counters[row.name + "_ms"] = 1e3 * profile.mean_seconds(row);
    state.SetItemsProcessed(int64_t(state.iterations()));
}

void register_all() {
    const std::string size = std::to_string(kMap[0]) + "x" + std::to_string(kMap[1]) + "x" + std::to_string(kMap[2]);
    std::vector<iss::Backend> backends{iss::Backend::cpu};
    if (iss::cuda_device_count() > 0) backends.push_back(iss::Backend::cuda);
    for (iss::Backend backend : backends) {
        const std::string dev = backend == iss::Backend::cuda ? "cuda" : "cpu";
        benchmark::RegisterBenchmark(("SynthSample/" + dev + "/" + size).c_str(), sample, backend, false)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
        if (backend == iss::Backend::cuda) {
            benchmark::RegisterBenchmark(("SynthSample/cuda/graph/" + size).c_str(), sample, backend, true)
                ->Unit(benchmark::kMicrosecond)
                ->UseRealTime();
            for (const bool graph : {false, true})
                benchmark::RegisterBenchmark(
                    ("SynthSampleStream/cuda/" + std::string(graph ? "graph/" : "direct/") + size).c_str(),
                    sample_stream, backend, graph)
                    ->Unit(benchmark::kMicrosecond)
                    ->UseRealTime();
        }
        benchmark::RegisterBenchmark(("SynthSampleStages/" + dev + "/" + size).c_str(), sample_stages, backend)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
        for (Generator::Stage st : Generator::all_stages)
            benchmark::RegisterBenchmark(
                ("SynthStage/" + std::string(Generator::stage_name(st)) + "/" + dev + "/" + size).c_str(), stage,
                backend, st)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime()
                // A fixed count: the untimed stages before it would make a stage that does no
                // work (resolution, for a sample without a resolution step) run without end.
                ->Iterations(backend == iss::Backend::cuda ? 200 : 30);
    }
}

}  // namespace

int main(int argc, char** argv) { return iss::bench::run(argc, argv, register_all); }
