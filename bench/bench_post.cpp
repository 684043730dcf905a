// Post-processing on the infant case, CPU: a 155x175x149 segmentation (a 12-month phantom
// padded to the published maps' size, generation labels not predicted set to background)
// with about 3000 random islands of 1 to 27 voxels sprinkled into the brain, and 34 posterior
// frames (the voxel's own label high, the rest small random values).
//   PostComponents          6-connected components of the segmentation (background skipped)
//   PostLargestForeground   predict's step: the largest component of the non-background mask
//   PostIslands             clean's island step: components + breadth-first relabelling
//   PostFold                fold 21/61/170 in the segmentation and in the 34 posterior frames
//   PostMerge               T1/T2 merge of two such predictions (labels + element-wise max)
//   WriteNifti              writing the posteriors (float32, 34 frames) and the segmentation
//                           (uint8) as .nii.gz, into the system's temporary directory
//   WriteMgh                the posteriors as FreeSurfer's .mgz (big-endian voxels)
//   ReadVolume              reading one frame of them (a scan's size, float32) back, from
//                           .nii.gz and from .mgz
// Times are wall-clock in ms per call; merge and the writes split their work over OpenMP
// threads (OMP_NUM_THREADS), the others run on one thread. Freed memory is kept, as the
// program's main() keeps it (iss::keep_freed_host_memory).
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench_util.h"
#include "io/nifti.h"
#include "post/clean.h"
#include "post/components.h"
#include "post/merge.h"
#include "post/prediction.h"
#include "synth/labels.h"
#include "synth/phantom.h"

namespace {

constexpr int64_t kMap[3] = {155, 175, 149};

iss::LabelMap infant_segmentation() {
    const iss::LabelMap phantom = iss::make_phantom(12, 1);
    iss::Grid grid;
    grid.dim = {kMap[0], kMap[1], kMap[2]};
    iss::LabelMap map(grid);
    int64_t shift[3];
    for (int d = 0; d < 3; ++d) shift[d] = (kMap[d] - phantom.grid.dim[size_t(d)]) / 2;
    const std::vector<int32_t>& seg = iss::labels::segmentation_labels();
    for (int64_t k = 0; k < phantom.nz(); ++k)
        for (int64_t j = 0; j < phantom.ny(); ++j)
            for (int64_t i = 0; i < phantom.nx(); ++i) {
                const int32_t v = phantom.at(i, j, k);
                map.at(i + shift[0], j + shift[1], k + shift[2]) = iss::labels::index_of(seg, v) >= 0 ? v : 0;
            }
    // Islands: cubes of side 1 to 3 of a random label, centred on random brain voxels.
    std::mt19937 rng(3);
    int placed = 0;
    while (placed < 3000) {
        const int64_t i = 1 + int64_t(rng() % uint32_t(kMap[0] - 4)), j = 1 + int64_t(rng() % uint32_t(kMap[1] - 4)),
                      k = 1 + int64_t(rng() % uint32_t(kMap[2] - 4));
        if (map.at(i, j, k) == 0) continue;
        const int32_t label = seg[1 + rng() % uint32_t(seg.size() - 1)];
        const int side = 1 + int(rng() % 3);
        for (int c = 0; c < side; ++c)
            for (int b = 0; b < side; ++b)
                for (int a = 0; a < side; ++a) map.at(i + a, j + b, k + c) = label;
        ++placed;
    }
    return map;
}

iss::Image posteriors_for(const iss::LabelMap& seg, uint32_t seed) {
    const std::vector<int32_t>& list = iss::labels::segmentation_labels();
    const int64_t n = seg.grid.voxels();
    iss::Image post(seg.grid, int64_t(list.size()));
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> small(0.0f, 0.02f), high(0.5f, 0.95f);
    for (float& p : post.data) p = small(rng);
    for (int64_t v = 0; v < n; ++v)
        post.data[size_t(iss::labels::index_of(list, seg.data[size_t(v)]) * n + v)] = high(rng);
    return post;
}

const iss::LabelList& infant_list() {
    static const iss::LabelList list = iss::label_list_or_default(nullptr);
    return list;
}

void set_counters(benchmark::State& state, int64_t voxels) {
    state.counters["voxels/s"] =
        benchmark::Counter(double(voxels) * double(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_components(benchmark::State& state) {
    const iss::LabelMap seg = infant_segmentation();
    int32_t count = 0;
    for (auto _ : state) count = iss::connected_components(seg).count();
    state.counters["components"] = count;
    set_counters(state, seg.grid.voxels());
}

void BM_largest_foreground(benchmark::State& state) {
    const iss::LabelMap seg = infant_segmentation();
    for (auto _ : state) benchmark::DoNotOptimize(iss::largest_foreground_component(seg).data.data());
    set_counters(state, seg.grid.voxels());
}

void BM_islands(benchmark::State& state) {
    const iss::LabelMap seg = infant_segmentation();
    const iss::Image post = posteriors_for(seg, 1);
    iss::CleanStats stats;
    for (auto _ : state) {
        state.PauseTiming();
        iss::LabelMap work = seg;  // the step rewrites its input
        state.ResumeTiming();
        stats = iss::remove_islands(work, post, infant_list(), 15);
    }
    state.counters["islands"] = double(stats.islands);
    state.counters["island_voxels"] = double(stats.island_voxels);
    set_counters(state, seg.grid.voxels());
}

void BM_fold(benchmark::State& state) {
    iss::LabelMap seg = infant_segmentation();
    iss::Image post = posteriors_for(seg, 1);
    // After the first call the folded frames hold zeros; adding them costs the same.
    for (auto _ : state) {
        iss::fold_segmentation(seg, false);
        iss::fold_posteriors(post, infant_list(), false);
    }
    set_counters(state, seg.grid.voxels());
}

void BM_merge(benchmark::State& state) {
    const iss::LabelMap seg = infant_segmentation();
    iss::Prediction t1{seg, posteriors_for(seg, 1)};
    const iss::Prediction t2{seg, posteriors_for(seg, 2)};
    // The result reuses t1's buffers, and merging again does the same work.
    for (auto _ : state) t1 = iss::merge_t1_t2(std::move(t1), t2);
    set_counters(state, seg.grid.voxels());
    // Read 2 x 34 frames, write 34, plus the labels.
    state.SetBytesProcessed(int64_t(state.iterations()) * seg.grid.voxels() * (3 * 34 * 4 + 3 * 4));
}

// A fresh directory under the system's temporary one, removed with everything in it at the end.
class ScratchDir {
public:
    explicit ScratchDir(const std::string& tag)
        : dir_(std::filesystem::temp_directory_path() / ("iss-bench-" + tag + "-" + std::to_string(::getpid()))) {
        std::filesystem::create_directories(dir_);
    }
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    std::string file(const std::string& name) const { return (dir_ / name).string(); }

private:
    std::filesystem::path dir_;
};

// One file written again and again in a scratch directory.
template <class Write>
void write_repeatedly(benchmark::State& state, const std::string& name, int64_t bytes, const Write& write) {
    const ScratchDir dir("write");
    const std::string file = dir.file(name);
    for (auto _ : state) write(file);
    state.counters["file_MB"] = double(std::filesystem::file_size(file)) / 1e6;
    state.SetBytesProcessed(int64_t(state.iterations()) * bytes);
}

// The posteriors of a scan, as `ending` (.nii.gz or .mgz) says.
void BM_write_posteriors(benchmark::State& state, const char* ending) {
    const iss::LabelMap seg = infant_segmentation();
    const iss::Image post = posteriors_for(seg, 1);
    write_repeatedly(state, std::string("posteriors") + ending, int64_t(post.data.size() * sizeof(float)),
                     [&](const std::string& file) { iss::write_posteriors(file, post); });
}

// A scan-sized float32 volume (the first posterior frame) written once as `ending`, then read.
void BM_read_volume(benchmark::State& state, const char* ending) {
    const iss::LabelMap seg = infant_segmentation();
    iss::Image frame(seg.grid);
    std::copy_n(posteriors_for(seg, 1).data.begin(), frame.data.size(), frame.data.begin());
    const ScratchDir dir("read");
    const std::string file = dir.file(std::string("scan") + ending);
    iss::write_image(file, frame);
    for (auto _ : state) benchmark::DoNotOptimize(iss::read_image(file).data.data());
    state.counters["file_MB"] = double(std::filesystem::file_size(file)) / 1e6;
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(frame.data.size() * sizeof(float)));
}

void BM_write_labels(benchmark::State& state) {
    const iss::LabelMap seg = infant_segmentation();
    write_repeatedly(state, "labels.nii.gz", seg.grid.voxels(),
                     [&](const std::string& file) { iss::write_labels(file, seg); });
}

}  // namespace

BENCHMARK_CAPTURE(BM_write_posteriors, nii_gz, ".nii.gz")
    ->Name("WriteNifti/posteriors/155x175x149x34")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_write_labels)->Name("WriteNifti/labels/155x175x149")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_write_posteriors, mgz, ".mgz")
    ->Name("WriteMgh/posteriors/155x175x149x34")
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_read_volume, nii_gz, ".nii.gz")
    ->Name("ReadVolume/nii.gz/155x175x149")
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_read_volume, mgz, ".mgz")->Name("ReadVolume/mgz/155x175x149")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_components)->Name("PostComponents/155x175x149")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_largest_foreground)->Name("PostLargestForeground/155x175x149")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_islands)->Name("PostIslands/155x175x149")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fold)->Name("PostFold/155x175x149x34")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_merge)->Name("PostMerge/155x175x149x34")->Unit(benchmark::kMillisecond);

// The benchmarks above register themselves.
int main(int argc, char** argv) { return iss::bench::run(argc, argv, [] {}); }
