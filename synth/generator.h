// The synthetic generator (SPEC.md section 3): from a set of training label maps, makes
// (image, target) pairs on the device, one sample at a time, each a pure function of
// (seed, sample number). The stages and their passes:
//   1. velocity: coarse random field -> resized to the integration grid -> scaling and squaring
//   2. deform: crop + affine + displacement + nearest label + flip, one gather  (labels)
//   3. paint: GMM intensities and training targets in one pass
//   4. blur: three separable passes; optionally down to a random acquisition resolution and
//      back up (trilinear)
//   5. bias + background reset + clip, then min/max; 6. normalise + gamma
// All buffers are allocated once, at the largest shapes; generate() allocates nothing.
// Every kernel argument of a sample is planned on the host into one block (SampleKernels,
// kernels/synth/sample_kernels.h), uploaded with the sample's velocity and bias grids in one
// asynchronous copy; the stages run from it. On CUDA, with the CUDA graph on (set_cuda_graph, or
// INFANT_CUDA_GRAPH=1 in the environment), generate() replays the whole sample as one captured
// graph reading that block: no host synchronisation and one launch a sample.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "io/volume.h"
#include "kernels/common/device.h"
#include "kernels/synth/sample_kernels.h"
#include "synth/config.h"
#include "synth/sample_params.h"

namespace iss {

// The voxel frame the network is trained in: every training map is brought to it when loaded,
// exactly (axis permutation and flips, no interpolation), as predict brings every scan to the
// frame its model records. So a map's stored voxel order never reaches the network, and maps of
// one training set may be stored in any orientations (docs/ARCHITECTURE.md, "Voxel frame").
inline const char* const training_frame = "RAS";

// A training label map as the generator holds it: generation indices (uint8) on the host, in
// the training frame.
struct TrainingMap {
    std::string name;                // file name, for messages
    std::string stored_orientation;  // the file's voxel order, e.g. "LAS" (for messages)
    Grid grid;                       // in the training frame
    std::vector<uint8_t> generation;  // generation index per voxel
    int lr_axis = 0;                  // voxel axis closest to left-right (0 in RAS)
    // Voxel sizes (mm) as the generator's draws count them: the affine's column norms rounded to
    // 1e-6 mm where that moves them by at most a millionth, so that a 1 mm map whose rotated
    // affine a file holds in float32 (norms of 0.99999999) draws as one of exactly 1 mm.
    std::array<double, 3> voxel_mm{};
};

// Maps label values to generation indices, then reorients to the training frame; InputError
// naming `name`, the value and a voxel (in the stored order) where it occurs when a value is not
// in the configuration's generation list, when the map is empty or all background, or when it
// is thinner than the crop's multiple along an axis.
TrainingMap make_training_map(const LabelMap& labels, const GeneratorConfig& config, const std::string& name);

// The label maps `files` names (volume_files of a --labels path), read and converted; all are
// checked before any is returned.
std::vector<TrainingMap> load_training_maps(const std::vector<std::string>& files, const GeneratorConfig& config);

// A fingerprint of the training maps in the order samples draw them (their grids and generation
// indices): zlib's CRC-32 as 8 hex digits, not a checksum against tampering. What tells a resume
// on other maps, or a synth run of other samples.
std::string maps_digest(const std::vector<TrainingMap>& maps);

// The segmentation labels (background aside) that no map holds, through any generation label
// learned as them: outputs a network then learns only as absent. Listed for a warning.
std::vector<int32_t> segmentation_labels_in_no_map(const std::vector<TrainingMap>& maps, const GeneratorConfig& config);

// Where the maps hold a label the infant protocol folds into a structure (21 into 2, 61 into 41,
// 170 into 16: clean's folds) and the configuration learns it as background while learning that
// structure by segmentation_labels (output_labels give each target as meant), a warning saying
// so, naming `source` (the configuration); empty otherwise. A
// segmentation_labels list without them did it without a word: the demo learned 47% of a
// 1-month phantom's white matter (its 21 and 61) as background.
std::string folds_learned_as_background(const std::vector<TrainingMap>& maps, const GeneratorConfig& config,
                                        const std::string& source);

// The smallest and largest voxel size (mm) of the maps along each axis of the training frame:
// the resolutions the network has seen (predict resamples only scans outside this range).
struct VoxelSizeRange {
    std::array<double, 3> min{}, max{};
};
VoxelSizeRange voxel_size_range(const std::vector<TrainingMap>& maps);
// "0.5-1 x 0.8 x 0.5-2 mm": each axis's range, or its one size.
std::string voxel_size_text(const VoxelSizeRange& range);

// One line for the user: how many maps, their stored orientations, and the voxel size range,
// e.g. "4 label maps (stored LAS: 3, RAS: 1), brought to RAS; voxel size 0.86-1 x 0.86-1 x
// 0.86-1 mm".
std::string describe_training_maps(const std::vector<TrainingMap>& maps);

class Generator {
public:
    Generator(DeviceContext& ctx, const GeneratorConfig& config, std::vector<TrainingMap> maps, uint64_t seed);
    ~Generator();

    // Synthesises sample `sample` into the device buffers below; returns its parameters.
    const SampleParams& generate(uint32_t sample);

    // CUDA: whether generate() replays the sample as a captured CUDA graph (the same bits as the
    // stages launched one by one). Off by default: on an H200 it was slower than the launches
    // (docs/PERFORMANCE.md, 2026-12-04); the environment's INFANT_CUDA_GRAPH=1 turns it on. No
    // effect on the CPU.
    void set_cuda_graph(bool on) { cuda_graph_ = on; }

    // The same, stage by stage (for benchmarks): draw() the parameters (and plan and upload the
    // sample's kernels), then run each stage in order. Running a stage again repeats its work on
    // the current buffers.
    enum class Stage { velocity, deform, paint, blur, resolution, bias_clip, normalise };
    static constexpr Stage all_stages[] = {Stage::velocity,   Stage::deform,    Stage::paint,    Stage::blur,
                                           Stage::resolution, Stage::bias_clip, Stage::normalise};
    static const char* stage_name(Stage stage);
    const SampleParams& draw(uint32_t sample);
    void run(Stage stage);

    // Results of the last generate(), on the context's device, out_shape voxels, x fastest.
    const float* image() const;
    const uint8_t* target() const;      // segmentation index per voxel
    const uint8_t* generation() const;  // generation index per voxel (deformed map)
    // Voxel grid of the last sample: the map's affine moved to the crop.
    Grid output_grid() const;

    // Host copies of the last sample: the image, and the target as segmentation label values.
    Image image_host() const;
    LabelMap labels_host() const;

    const GeneratorConfig& config() const { return config_; }
    DeviceContext& context() const { return ctx_; }
    const std::vector<TrainingMap>& maps() const { return maps_; }

    // The last draw()'s kernels (host copy; its pointers are device addresses), the block they
    // were uploaded to (on the context's device: the bodies a CUDA graph replay reads), and the
    // largest grids any sample asks for.
    const SampleKernels& sample_kernels() const { return kernels_; }
    const SampleKernels* sample_block() const;
    const SampleCapacity& sample_capacity() const { return capacity_; }

private:
    // Each stage's arguments into kernels_, from params_.
    void plan_velocity();
    void plan_deform();
    void plan_paint();
    void plan_blur();
    void plan_resolution();
    void plan_bias_clip();
    void plan_normalise();
    void upload_plan();

    struct Buffers;
    DeviceContext& ctx_;
    GeneratorConfig config_;
    std::vector<TrainingMap> maps_;
    uint64_t seed_;
    std::vector<MapGeometry> map_geometry_;
    SampleParams params_;
    std::vector<uint8_t> target_of_;  // segmentation index of each generation index
    std::vector<uint8_t> twin_of_;    // generation index of each one's left/right twin
    SampleKernels kernels_;
    SampleCapacity capacity_;
    bool cuda_graph_ = false;
    std::unique_ptr<Buffers> buffers_;
    std::unique_ptr<SampleReplay> replay_;  // CUDA graph of a sample (captured on its second run)
};

}  // namespace iss
