// Where a synthetic sample's time goes, stage by stage: `synth --profile` on a user's own maps
// and configuration, and bench_synth's SynthSampleStages. Each stage runs alone and is waited
// for, so the stages' sum exceeds a sample run straight through by those waits (on CUDA a
// launch no longer queues behind the previous kernel). Beside each stage's time, the rate of the
// least traffic its voxels must move (stage_traffic_bytes): how close it runs to memory speed.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "synth/generator.h"
#include "synth/sample_params.h"

namespace iss {

// The least a stage must read and write, in bytes, for the sample `p` with the configuration's
// `integration_steps` (0 for a stage the sample skips: no velocity field, no resolution step).
int64_t stage_traffic_bytes(Generator::Stage stage, const SampleParams& p, int integration_steps);

class StageProfile {
public:
    StageProfile();

    // Draws sample `sample` and runs its stages one by one, timing each (and the draw, which
    // plans and uploads the sample's kernels): the same bits as generator.generate(sample).
    const SampleParams& generate(Generator& generator, uint32_t sample);

    // Adds time spent on a step outside the generator (copying a sample to the host, writing its
    // files): a row of its own, after the stages, in the order first added.
    void add(const std::string& step, double seconds);
    // Runs `work` and adds its time to `step`'s row.
    template <class Work>
    void time(const std::string& step, Work&& work) {
        const auto start = std::chrono::steady_clock::now();
        work();
        add(step, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }

    struct Row {
        std::string name;
        double seconds = 0;       // over all samples
        double traffic_bytes = 0;  // over all samples; 0 where no rate is meaningful
    };
    const std::vector<Row>& rows() const { return rows_; }
    long long samples() const { return samples_; }
    // Mean seconds a sample of a row (0 before any sample).
    double mean_seconds(const Row& row) const;

    // The table for a user: per row the mean milliseconds a sample, its share of the total and,
    // for the generator's stages, GB/s of their least traffic; `where` says what ran it, e.g.
    // "cpu, 2 threads".
    std::string table(const std::string& where) const;

private:
    Row& row(const std::string& name);
    std::vector<Row> rows_;
    long long samples_ = 0;
};

}  // namespace iss
