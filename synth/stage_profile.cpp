#include "synth/stage_profile.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <iterator>

#include "kernels/common/error.h"

namespace iss {
namespace {

using Clock = std::chrono::steady_clock;

int64_t voxels(const std::array<int64_t, 3>& d) { return d[0] * d[1] * d[2]; }

// The draw's row, then one per stage: the rows the generator's subtotal sums.
constexpr size_t generator_rows = 1 + std::size(Generator::all_stages);

}  // namespace

int64_t stage_traffic_bytes(Generator::Stage stage, const SampleParams& p, int integration_steps) {
    const int64_t out = voxels(p.out_shape), field = voxels(p.integration_shape) * 3 * 4;
    const bool resampled = p.resolution[0] > 1 || p.resolution[1] > 1 || p.resolution[2] > 1;
    switch (stage) {
        case Generator::Stage::velocity:  // resize write + (read + write) a step; none without a field
            return p.velocity_std > 0 ? field * (1 + 2 * integration_steps) : 0;
        case Generator::Stage::deform: return out * 2;                // gather 1 label byte, write 1
        case Generator::Stage::paint: return out * 6;                 // label in, image + target out
        case Generator::Stage::blur: return out * 24;                 // 3 passes of float in + out
        case Generator::Stage::resolution: return resampled ? out * 8 : 0;  // image in and out
        case Generator::Stage::bias_clip: return out * 13;  // image + label in, image out, range read
        case Generator::Stage::normalise: return out * 8;   // image in and out
    }
    return 0;
}

StageProfile::StageProfile() {
    row("draw");
    for (Generator::Stage stage : Generator::all_stages) row(Generator::stage_name(stage));
}

StageProfile::Row& StageProfile::row(const std::string& name) {
    for (Row& r : rows_)
        if (r.name == name) return r;
    rows_.push_back(Row{name});
    return rows_.back();
}

const SampleParams& StageProfile::generate(Generator& generator, uint32_t sample) {
    DeviceContext& ctx = generator.context();
    ctx.synchronize();  // work queued before is not this sample's
    Clock::time_point start = Clock::now();
    auto lap = [&](size_t index, int64_t bytes) {
        ctx.synchronize();
        const Clock::time_point now = Clock::now();
        rows_[index].seconds += std::chrono::duration<double>(now - start).count();
        rows_[index].traffic_bytes += double(bytes);
        start = now;
    };
    const SampleParams& p = generator.draw(sample);
    lap(0, 0);
    for (size_t s = 0; s < std::size(Generator::all_stages); ++s) {
        generator.run(Generator::all_stages[s]);
        lap(1 + s, stage_traffic_bytes(Generator::all_stages[s], p, generator.config().integration_steps));
    }
    ++samples_;
    return p;
}

void StageProfile::add(const std::string& step, double seconds) { row(step).seconds += seconds; }

double StageProfile::mean_seconds(const Row& r) const { return samples_ > 0 ? r.seconds / double(samples_) : 0; }

std::string StageProfile::table(const std::string& where) const {
    double generator_seconds = 0, total_seconds = 0;
    for (size_t i = 0; i < rows_.size(); ++i) {
        (i < generator_rows ? generator_seconds : total_seconds) += rows_[i].seconds;
    }
    total_seconds += generator_seconds;
    const double per = samples_ > 0 ? 1.0 / double(samples_) : 0;
    char line[160];
    auto add_line = [&](std::string& text, const std::string& name, double seconds, const std::string& rate) {
        const double share = total_seconds > 0 ? 100 * seconds / total_seconds : 0;
        std::snprintf(line, sizeof line, "  %-12s %10.3f %7.1f%%", name.c_str(), 1e3 * seconds * per, share);
        text += line;
        if (!rate.empty()) {
            std::snprintf(line, sizeof line, " %8s", rate.c_str());
            text += line;
        }
        text += '\n';
    };
    std::string text = cat("time per sample, mean of ", samples_, " (", where,
                           "; each stage waited for):\n  step                 ms    share     GB/s\n");
    for (size_t i = 0; i < rows_.size(); ++i) {
        const Row& r = rows_[i];
        std::string rate;
        if (r.traffic_bytes > 0 && r.seconds > 0) {
            std::snprintf(line, sizeof line, "%.1f", r.traffic_bytes / r.seconds / 1e9);
            rate = line;
        }
        add_line(text, r.name, r.seconds, rate);
        if (i + 1 == generator_rows) add_line(text, "generator", generator_seconds, "");
    }
    add_line(text, "total", total_seconds, "");
    text += "  (generator: the rows above it, summed; GB/s: the least a stage must read and write, over its time)\n";
    return text;
}

}  // namespace iss
