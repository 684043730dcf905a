#include "synth/generator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "io/file_util.h"
#include "io/nifti.h"
#include "io/orientation.h"
#include "io/safetensors.h"  // crc32_of
#include "kernels/common/error.h"
#include "kernels/common/index_type.h"  // index_extent_of
#include "kernels/common/launch.h"      // ISS_CUDA_ONLY
#include "kernels/geometry/resample.h"
#include "kernels/synth/blur.h"
#include "kernels/synth/deform.h"
#include "kernels/synth/gmm.h"
#include "kernels/synth/intensity.h"
#include "kernels/synth/svf.h"
#include "synth/labels.h"

namespace iss {

namespace {

std::array<double, 3> map_voxel_mm(const Grid& grid) {
    std::array<double, 3> size = grid.voxel_size();
    for (double& s : size) {
        const double snapped = std::round(s * 1e6) / 1e6;
        if (std::fabs(snapped - s) <= 1e-6 * s) s = snapped;  // float noise, not a size under 1e-6 mm
    }
    return size;
}

}  // namespace

TrainingMap make_training_map(const LabelMap& labels, const GeneratorConfig& config, const std::string& name) {
    ISS_INPUT(labels.grid.voxels() > 0 && !labels.data.empty(), name, ": the label map is empty");
    ISS_INPUT(labels.frames == 1, name, ": expected a 3-D label map, found ", labels.frames, " volumes");
    // Generation indices in the stored order first, so that an error names a voxel as the user
    // sees it in the file.
    Volume<uint8_t> generation(labels.grid);
    // Lookup from label value to generation index through a sorted list of the values.
    std::vector<std::pair<int32_t, uint8_t>> lookup;
    for (size_t g = 0; g < config.generation_labels.size(); ++g) lookup.push_back({config.generation_labels[g], uint8_t(g)});
    std::sort(lookup.begin(), lookup.end());
    int32_t cached_value = lookup.front().first;
    uint8_t cached_index = lookup.front().second;
    std::map<int32_t, size_t> unknown;  // value -> its first voxel: every one is named at once
    for (size_t v = 0; v < labels.data.size(); ++v) {
        const int32_t value = labels.data[v];
        if (value != cached_value) {
            const auto it = std::lower_bound(lookup.begin(), lookup.end(), std::make_pair(value, uint8_t(0)));
            if (it == lookup.end() || it->first != value) {
                unknown.emplace(value, v);
                continue;
            }
            cached_value = value;
            cached_index = it->second;
        }
        generation.data[v] = cached_index;
    }
    if (!unknown.empty()) {
        const auto first = std::min_element(unknown.begin(), unknown.end(),
                                            [](const auto& a, const auto& b) { return a.second < b.second; });
        std::vector<int32_t> values;
        bool all_labels = true;  // a --config may list them (not -5 or 70000)
        for (const auto& [value, at] : unknown) {
            values.push_back(value);
            all_labels = all_labels && is_label_value(value);
        }
        throw InputError(
            cat(name, ": label value ", first->first, " (first at voxel ",
                voxel_text(labels.grid.dim, int64_t(first->second)), ") is not one of the ",
                config.generation_labels.size(), " generation_labels (preset '", config.preset,
                "', or a --config's own list)",
                unknown.size() > 1 ? cat(" (", unknown.size(), " such values: ", first_values(values, 20), ")") : "",
                all_labels ? "; a --config whose generation_labels list them can use them"
                           : cat("; labels are integers from 0 to ", max_label_value, ": relabel the map")));
    }
    // All background (a blank or wrong file, a mask of zeros): its samples would teach nothing.
    ISS_INPUT(std::any_of(labels.data.begin(), labels.data.end(), [](int32_t v) { return v != 0; }), name,
              ": the label map holds only background (label 0)");
    TrainingMap map;
    map.name = name;
    map.stored_orientation = orientation_code(labels.grid.affine);
    Volume<uint8_t> framed = reorient(generation, training_frame);
    map.grid = framed.grid;
    map.generation = std::move(framed.data);
    map.lr_axis = int(orientation_code(map.grid.affine).find_first_of("RL"));
    map.voxel_mm = map_voxel_mm(map.grid);
    // Checked before a model records them: train saved a model of 0.002 mm voxels that predict
    // then refused to load.
    for (const double size : map.grid.voxel_size())
        ISS_INPUT(size >= min_model_voxel_mm && size <= max_model_voxel_mm, name, ": voxels of ",
                  voxel_size_text({map.grid.voxel_size(), map.grid.voxel_size()}), ", outside ", min_model_voxel_mm,
                  " to ", max_model_voxel_mm, " mm: the header's units are likely wrong (xyzt_units in mm for ",
                  "sizes in metres or microns); fix them (e.g. nibabel's set_xyzt_units) and try again");
    // A crop is a multiple of shape_multiple voxels along each axis; on a thinner map (thick
    // slices, a slab) the clamped sampling would fill the rest with copies of its last slice
    // (pad_when_smaller fills it with background instead).
    const int64_t m = config.shape_multiple;
    for (int d = 0; d < 3; ++d)
        ISS_INPUT(config.pad_when_smaller || map.grid.dim[size_t(d)] >= m, name, ": ", dims_text(map.grid.dim),
                  " voxels (in ", training_frame, " order) cannot hold a ",
                  "crop of ", m, " voxels along ", "xyz"[d], " (shape_multiple, 2^levels of the U-Net) without ",
                  "repeating its last slice: use a smaller shape_multiple (train: fewer --levels)");
    return map;
}

namespace {

// A random resolution in mm on voxels finer than its blur reaches is drawn up to what it reaches
// (resolution_in_voxels): said once for a set of maps.
void warn_of_maps_past_the_blurs_reach(const std::vector<TrainingMap>& maps, const GeneratorConfig& config) {
    const double bound = config.resolution_unit == "mm" ? largest_random_bound(config) : 0;
    const TrainingMap* first = nullptr;
    double finest = 0, coarsest = 0;  // of the flagged maps' smallest voxels
    int finer = 0;
    for (const TrainingMap& m : maps) {
        const double smallest = *std::min_element(m.voxel_mm.begin(), m.voxel_mm.end());
        if (bound <= 0 || !beyond_blur_reach(config, bound / smallest)) continue;
        if (finer++ == 0) first = &m, finest = coarsest = smallest;
        finest = std::min(finest, smallest);
        coarsest = std::max(coarsest, smallest);
    }
    if (first)
        warning(cat(first->name, finer > 1 ? cat(" and ", finer - 1, " other map", finer > 2 ? "s" : "") : "",
                    ": voxels of ", finest == coarsest ? cat(finest) : cat(finest, "-", coarsest),
                    " mm, finer than the random resolution's blur reaches at ", bound, " mm (the kernels' ",
                    max_blur_half_width, " taps each side hold ", largest_blurred_resolution(config),
                    " voxels): resolutions there are drawn up to that many of their voxels"));
}

}  // namespace

std::string maps_digest(const std::vector<TrainingMap>& maps) {
    uint32_t crc = 0;
    for (const TrainingMap& m : maps) {
        crc = crc32_of(crc, m.grid.dim.data(), sizeof m.grid.dim);
        crc = crc32_of(crc, &m.grid.affine.m[0][0], sizeof m.grid.affine.m);
        crc = crc32_of(crc, m.generation.data(), m.generation.size());
    }
    return crc32_text(crc);
}

std::vector<TrainingMap> load_training_maps(const std::vector<std::string>& files, const GeneratorConfig& config) {
    // a.nii beside a.nii.gz: one subject's map drawn twice as often as the others, unsaid.
    require_one_file_per_subject(files);
    std::vector<TrainingMap> maps;
    for (const std::string& file : files) maps.push_back(make_training_map(read_labels(file), config, file));
    warn_of_maps_past_the_blurs_reach(maps, config);
    return maps;
}

namespace {

// Whether any map holds each generation index (at most 255 generation labels).
std::array<bool, 256> generation_indices_held(const std::vector<TrainingMap>& maps) {
    std::array<bool, 256> held{};
    for (const TrainingMap& m : maps)
        for (const uint8_t g : m.generation) held[g] = true;
    return held;
}

}  // namespace

std::vector<int32_t> segmentation_labels_in_no_map(const std::vector<TrainingMap>& maps,
                                                   const GeneratorConfig& config) {
    const std::array<bool, 256> held = generation_indices_held(maps);
    const std::vector<int32_t> targets = target_labels(config);
    std::set<int32_t> learned;
    for (size_t g = 0; g < targets.size(); ++g)
        if (held[g]) learned.insert(targets[g]);
    std::vector<int32_t> missing;
    for (const int32_t label : config.segmentation_labels)
        if (label != 0 && !learned.count(label)) missing.push_back(label);
    return missing;
}

std::string folds_learned_as_background(const std::vector<TrainingMap>& maps, const GeneratorConfig& config,
                                        const std::string& source) {
    if (!config.output_labels.empty()) return {};  // targets given label by label: as meant
    const std::array<bool, 256> held = generation_indices_held(maps);
    const std::vector<int32_t> targets = target_labels(config);
    std::vector<int32_t> folded, kept;
    for (const auto& [from, to] : labels::fold_pairs(false)) {
        const int g = labels::index_of(config.generation_labels, from);
        if (g >= 0 && held[size_t(g)] && targets[size_t(g)] == 0 &&
            labels::index_of(config.segmentation_labels, to) >= 0)
            folded.push_back(from), kept.push_back(to);
    }
    if (folded.empty()) return {};
    const bool one = folded.size() == 1;
    return cat(source, ": the maps hold generation label", one ? " " : "s ", first_values(folded, 3),
               " (which clean folds into ", first_values(kept, 3), "), learned as background while ",
               first_values(kept, 3), one ? " is" : " are",
               " learned: give output_labels (a target for each generation ", "label) to learn ", one ? "it" : "them",
               " as ", one ? "that structure" : "those", ", or list ", one ? "it" : "them", " in segmentation_labels");
}

VoxelSizeRange voxel_size_range(const std::vector<TrainingMap>& maps) {
    ISS_REQUIRE(!maps.empty(), "voxel_size_range: no maps");
    VoxelSizeRange range;
    range.min = range.max = maps.front().grid.voxel_size();
    for (const TrainingMap& m : maps) {
        const auto v = m.grid.voxel_size();
        for (size_t d = 0; d < 3; ++d) {
            range.min[d] = std::min(range.min[d], v[d]);
            range.max[d] = std::max(range.max[d], v[d]);
        }
    }
    return range;
}

std::string describe_training_maps(const std::vector<TrainingMap>& maps) {
    std::map<std::string, int> by_orientation;
    for (const TrainingMap& m : maps) ++by_orientation[m.stored_orientation];
    std::string stored;
    for (const auto& [code, count] : by_orientation) stored += cat(stored.empty() ? "" : ", ", code, ": ", count);
    return cat(maps.size(), " label map", maps.size() == 1 ? "" : "s", " (stored ", stored, "), brought to ",
               training_frame, "; voxel size ", voxel_size_text(voxel_size_range(maps)));
}

std::string voxel_size_text(const VoxelSizeRange& r) {
    std::string sizes;
    for (size_t d = 0; d < 3; ++d) {
        // Printed once where the two print alike (1.5 and an oblique map's 1.4999999).
        const std::string low = cat(r.min[d]), high = cat(r.max[d]);
        const std::string one = low == high ? low : cat(low, "-", high);
        sizes += (d ? " x " : "") + one;
    }
    return sizes + " mm";
}

struct Generator::Buffers {
    std::vector<Buffer<uint8_t>> maps;
    Buffer<float> field_a, field_b;
    Buffer<uint8_t> generation, target;
    Buffer<float> image_a, image_b;
    Buffer<uint32_t> range;  // the image's min and max bits after the bias (bias_clip)
    // A sample's upload: its SampleKernels, then its velocity grid, then its bias grid, each at
    // a 256-byte offset; staged on the host, one copy to `block` on the device.
    size_t velocity_offset = 0, bias_offset = 0;
    std::vector<uint8_t> staging;
    Buffer<uint8_t> block;
    float* velocity() { return reinterpret_cast<float*>(block.data() + velocity_offset); }
    float* bias() { return reinterpret_cast<float*>(block.data() + bias_offset); }
    bool drawn = false;  // a sample has been planned
};

namespace {

int64_t product(const std::array<int64_t, 3>& d) { return d[0] * d[1] * d[2]; }
int64_t product(const int64_t d[3]) { return d[0] * d[1] * d[2]; }
size_t round_up_256(size_t bytes) { return (bytes + 255) / 256 * 256; }

// A sample's voxel bodies index no further than the launches from the block allow (launch.h).
struct WithinIndexExtent {
    int64_t extent;
    template <class Body>
    void operator()(const Body& body) const {
        check(index_extent_of(body, body.grid().count()));
    }
    // Flat bodies of four voxels a call: their launch's index type follows the extent too.
    void operator()(const GmmBody& body) const { check(body.a.count); }
    void operator()(const NormaliseGammaBody& body) const { check(body.a.count); }
    void check(int64_t count) const {
        ISS_REQUIRE(count <= extent, "generator: a sample past the index extent");
    }
};

}  // namespace

Generator::Generator(DeviceContext& ctx, const GeneratorConfig& config, std::vector<TrainingMap> maps, uint64_t seed)
    : ctx_(ctx), config_(config), maps_(std::move(maps)), seed_(seed), buffers_(std::make_unique<Buffers>()) {
    validate_config(config_, "generator configuration");
    ISS_INPUT(!maps_.empty(), "no training label maps given");
    const size_t n = config_.generation_labels.size();
    ISS_REQUIRE(n <= size_t(max_generation_labels), "too many generation labels: ", n);
    // validate_config saw every target among the segmentation labels.
    const std::vector<int32_t> targets = target_labels(config_);
    for (size_t g = 0; g < n; ++g)
        target_of_.push_back(uint8_t(labels::index_of(config_.segmentation_labels, targets[g])));
    for (const int twin : labels::twin_positions(config_.generation_labels, config_.lr_twins))
        twin_of_.push_back(uint8_t(twin));

    // Workspace at the largest shapes any map can produce.
    for (const TrainingMap& m : maps_) map_geometry_.push_back({m.grid.dim, m.lr_axis, m.voxel_mm});
    int64_t max_velocity = 0, max_field = 0, max_out = 0, max_bias = 0, max_map = 0, max_reach = 0;
    for (const MapGeometry& map : map_geometry_) {
        // The shapes depend only on the map, so any draw for that map gives them.
        const SampleParams p = draw_sample_params(config_, 0, 0, {map});
        max_velocity = std::max(max_velocity, product(p.velocity_shape) * 3);
        max_field = std::max(max_field, product(p.integration_shape) * 3);
        max_out = std::max(max_out, product(p.out_shape));
        max_bias = std::max(max_bias, product(p.bias_shape));
        max_map = std::max(max_map, product(p.map_shape));
        // The deformation's map positions: a crop starts within the map, or (padded) less than
        // its own size before it.
        for (size_t d = 0; d < 3; ++d) max_reach = std::max(max_reach, p.map_shape[d] + 2 * p.out_shape[d]);
    }
    // Refuse a crop that cannot fit before allocating anything (padding to a huge shape, say).
    int64_t map_bytes = 0;
    for (const TrainingMap& m : maps_) map_bytes += int64_t(m.generation.size());
    const double workspace = double(map_bytes) + 4.0 * double(max_velocity + 2 * max_field + max_bias) +
                             (2.0 + 2.0 * sizeof(float)) * double(max_out);
    const size_t capacity = ctx_.memory_capacity();
    ISS_INPUT(fits_in_memory(workspace, capacity), "the generator needs ", gib_text(workspace), " GiB on ",
              ctx_.device().name(), " for a crop of ", max_out, " voxels, more than 80% of the ",
              gib_text(double(capacity)), " GiB it may use: ask for a smaller shape");
    Buffers& b = *buffers_;
    for (const TrainingMap& m : maps_) b.maps.emplace_back(ctx_, m.generation);
    b.field_a = Buffer<float>(ctx_, size_t(max_field));
    b.field_b = Buffer<float>(ctx_, size_t(max_field));
    b.generation = Buffer<uint8_t>(ctx_, size_t(max_out));
    b.target = Buffer<uint8_t>(ctx_, size_t(max_out));
    b.image_a = Buffer<float>(ctx_, size_t(max_out));
    b.image_b = Buffer<float>(ctx_, size_t(max_out));
    b.range = Buffer<uint32_t>(ctx_, 2);
    b.velocity_offset = round_up_256(sizeof(SampleKernels));
    b.bias_offset = round_up_256(b.velocity_offset + sizeof(float) * size_t(max_velocity));
    b.staging.assign(b.bias_offset + sizeof(float) * size_t(max_bias), 0);
    b.block = Buffer<uint8_t>(ctx_, b.staging.size());
    capacity_.field = max_field / 3;
    capacity_.image = max_out;
    capacity_.steps = config_.integration_steps;
    // A bound on every body's index_extent(), which upload_plan checks sample by sample.
    capacity_.index_extent = std::max({max_field, max_velocity, max_bias, max_out, max_map, max_reach});
    cuda_graph_ = environment_flag("INFANT_CUDA_GRAPH");
}

Generator::~Generator() = default;

const char* Generator::stage_name(Stage stage) {
    switch (stage) {
        case Stage::velocity: return "velocity";
        case Stage::deform: return "deform";
        case Stage::paint: return "gmm";
        case Stage::blur: return "blur";
        case Stage::resolution: return "resolution";
        case Stage::bias_clip: return "bias";
        case Stage::normalise: return "normalise";
    }
    return "?";
}

const SampleParams& Generator::generate(uint32_t sample) {
    draw(sample);
    if (ctx_.is_cuda() && cuda_graph_) {
        if (!replay_)
            ISS_CUDA_ONLY("generator", replay_ = make_sample_replay_cuda(
                                           ctx_, kernels_, reinterpret_cast<const SampleKernels*>(buffers_->block.data()),
                                           capacity_));
        replay_->run();
        return params_;
    }
    for (Stage stage : all_stages) run(stage);
    return params_;
}

const SampleParams& Generator::draw(uint32_t sample) {
    buffers_->drawn = false;  // until the new sample's block is uploaded
    params_ = draw_sample_params(config_, seed_, sample, map_geometry_);
    plan_velocity();
    plan_deform();
    plan_paint();
    plan_blur();
    plan_resolution();
    plan_bias_clip();
    plan_normalise();
    upload_plan();
    return params_;
}

// The block and the sample's grids in one asynchronous copy. The launches that read the block
// on the device are sized once for the largest sample: this one must fit.
void Generator::upload_plan() {
    Buffers& b = *buffers_;
    ISS_REQUIRE(
        kernels_.resize.grid().count() <= capacity_.field && product(kernels_.deform.a.out_dim) <= capacity_.image,
        "generator: a sample larger than the workspace");
    for_each_sample_kernel(kernels_, capacity_.steps, WithinIndexExtent{capacity_.index_extent});
    ISS_REQUIRE(b.velocity_offset + sizeof(float) * params_.velocity.size() <= b.bias_offset &&
                    b.bias_offset + sizeof(float) * params_.bias.size() <= b.staging.size(),
                "generator: a sample's grids larger than the workspace");
    std::memcpy(b.staging.data(), &kernels_, sizeof(SampleKernels));
    std::copy(params_.velocity.begin(), params_.velocity.end(), reinterpret_cast<float*>(b.staging.data() + b.velocity_offset));
    std::copy(params_.bias.begin(), params_.bias.end(), reinterpret_cast<float*>(b.staging.data() + b.bias_offset));
    ctx_.upload_async(b.block.data(), b.staging.data(), b.staging.size());
    b.drawn = true;
}

void Generator::run(Stage stage) {
    ISS_REQUIRE(buffers_->drawn, "Generator::run: no sample drawn yet");
    const SampleKernels& k = kernels_;
    switch (stage) {
        case Stage::velocity:
            if (k.resize.grid().count() == 0) break;
            resize_field(ctx_, k.resize.a);
            for (int step = 0; step < capacity_.steps; ++step) square_field(ctx_, k.square[step % 2].a);
            break;
        case Stage::deform: deform_labels(ctx_, k.deform.a); break;
        case Stage::paint: paint_gmm(ctx_, k.paint.a); break;
        case Stage::blur:
            blur_passes(ctx_, {k.blur[0].a, k.blur[1].a, k.blur[2].a});
            break;
        case Stage::resolution:
            if (k.resolution[0].grid().count() == 0) break;
            for (const ResampleBody& pass : k.resolution) resample(ctx_, pass.a);
            break;
        case Stage::bias_clip: bias_clip(ctx_, k.bias.a); break;
        case Stage::normalise: normalise_gamma(ctx_, k.normalise.a); break;
    }
}

// 1. Velocity field -> integrated displacement on the integration grid: resized into field a,
// then the squaring steps from a to b and back. Empty grids when the sample has no field.
void Generator::plan_velocity() {
    const SampleParams& p = params_;
    Buffers& b = *buffers_;
    kernels_.resize = ResizeFieldBody{};
    kernels_.square[0] = kernels_.square[1] = SquareFieldBody{};
    if (!(p.velocity_std > 0)) return;
    ResizeFieldArgs& resize = kernels_.resize.a;
    resize.src = b.velocity();
    resize.dst = b.field_a.data();
    const float step_scale = std::ldexp(1.0f, -config_.integration_steps);
    for (int d = 0; d < 3; ++d) {
        resize.src_dim[d] = p.velocity_shape[size_t(d)];
        resize.dst_dim[d] = p.integration_shape[size_t(d)];
        resize.ratio[d] = float(double(p.velocity_shape[size_t(d)]) / double(p.integration_shape[size_t(d)]));
        resize.scale[d] = step_scale;
    }
    for (int step = 0; step < 2; ++step) {
        SquareFieldArgs& square = kernels_.square[step].a;
        square.src = step == 0 ? b.field_a.data() : b.field_b.data();
        square.dst = step == 0 ? b.field_b.data() : b.field_a.data();
        for (int d = 0; d < 3; ++d) square.dim[d] = p.integration_shape[size_t(d)];
    }
}

// 2. Spatial gather: crop, affine, displacement, nearest label, flip.
void Generator::plan_deform() {
    const SampleParams& p = params_;
    Buffers& b = *buffers_;
    DeformArgs& deform = kernels_.deform.a;
    deform = DeformArgs{};
    deform.map = b.maps[size_t(p.map_index)].data();
    // The integrated field: where the last squaring step (or the resize, without steps) wrote it.
    const int steps = capacity_.steps;
    deform.field = kernels_.resize.grid().count() == 0 ? nullptr
                   : steps == 0                         ? kernels_.resize.a.dst
                                                        : kernels_.square[(steps - 1) % 2].a.dst;
    for (int d = 0; d < 3; ++d) {
        deform.map_dim[d] = p.map_shape[size_t(d)];
        deform.field_dim[d] = p.integration_shape[size_t(d)];
        const double zoom = double(p.map_shape[size_t(d)]) / double(p.integration_shape[size_t(d)]);
        deform.field_ratio[d] = float(1.0 / zoom);
        deform.field_scale[d] = config_.rescale_velocity ? float(zoom) : 1.0f;
        deform.centre[d] = float(double(p.map_shape[size_t(d)] - 1) / 2.0);
        deform.source_centre[d] = float(double(p.map_shape[size_t(d)] - 1) / 2.0 + p.translation[d]);
        deform.offset[d] = p.crop_offset[size_t(d)];
        deform.out_dim[d] = p.out_shape[size_t(d)];
        for (int c = 0; c < 3; ++c) deform.affine[d][c] = float(p.affine[d][c]);
    }
    deform.flip_axis = p.flip ? p.flip_axis : -1;
    std::copy(twin_of_.begin(), twin_of_.end(), deform.twin);
    for (int d = 0; d < 3; ++d) deform.fill_outside[d] = p.out_shape[size_t(d)] > p.map_shape[size_t(d)];
    deform.outside = 0;  // the background's generation index (validate_config: listed first)
    deform.out = b.generation.data();
}

// 3. GMM paint and targets.
void Generator::plan_paint() {
    const SampleParams& p = params_;
    Buffers& b = *buffers_;
    GmmArgs& gmm = kernels_.paint.a;
    gmm = GmmArgs{};
    gmm.generation = b.generation.data();
    std::copy(p.mean.begin(), p.mean.end(), gmm.mean);
    std::copy(p.std.begin(), p.std.end(), gmm.std);
    std::copy(target_of_.begin(), target_of_.end(), gmm.target_of);
    gmm.key = RandomKey{seed_, p.sample, purpose_gmm_noise};
    gmm.count = product(p.out_shape);
    gmm.image = b.image_a.data();
    gmm.target = b.target.data();
}

// 4. Blur, axis by axis: a -> b -> a -> b. The image is in b from here on.
void Generator::plan_blur() {
    const SampleParams& p = params_;
    Buffers& b = *buffers_;
    const std::array<double, 3> sigma{p.blur_sigma[0], p.blur_sigma[1], p.blur_sigma[2]};
    const std::array<BlurArgs, 3> passes =
        separable_blur_passes(b.image_a.data(), b.image_b.data(), p.out_shape, 1, sigma, p.blur_half_width);
    for (int axis = 0; axis < 3; ++axis) kernels_.blur[axis].a = passes[size_t(axis)];
}

// 4b. A random acquisition resolution, as SynthSeg 2.0's MimicAcquisition: down to the
// low-resolution grid of int(n / r) voxels by nearest neighbour (the blur before it did the
// anti-aliasing), back up trilinearly, both origin-aligned with clamped coordinates. The
// low-resolution copy lives in the spare image buffer, a (it is never larger than the image).
// Empty grids when the sample keeps its resolution.
void Generator::plan_resolution() {
    const SampleParams& p = params_;
    Buffers& b = *buffers_;
    kernels_.resolution[0] = kernels_.resolution[1] = ResampleBody{};
    if (p.resolution[0] <= 1 && p.resolution[1] <= 1 && p.resolution[2] <= 1) return;
    float* image = b.image_b.data();
    float* low = b.image_a.data();
    ResampleArgs& down = kernels_.resolution[0].a;
    ResampleArgs& up = kernels_.resolution[1].a;
    down.src = up.dst = image;
    down.dst = low;
    up.src = low;
    down.interp = Interp::nearest;
    up.interp = Interp::linear;
    down.oob = up.oob = OutOfBounds::clamp;
    for (int d = 0; d < 3; ++d) {
        const int64_t n = p.out_shape[size_t(d)];
        const int64_t m = std::max<int64_t>(1, int64_t(double(n) / double(p.resolution[size_t(d)])));
        down.src_dim[d] = up.dst_dim[d] = n;
        down.dst_dim[d] = up.src_dim[d] = m;
        down.xform[d][d] = float(double(n) / double(m));
        up.xform[d][d] = float(double(m) / double(n));
    }
    // Checked here too: a graph replay runs the bodies without resample()'s checks.
    check_resample_args(down);
    check_resample_args(up);
}

// 5. Background reset, bias field, clip; then the range.
void Generator::plan_bias_clip() {
    const SampleParams& p = params_;
    Buffers& b = *buffers_;
    BiasClipArgs& bias = kernels_.bias.a;
    bias = BiasClipArgs{};
    bias.image = b.image_b.data();
    bias.generation = b.generation.data();
    bias.reset_background = p.reset_background;
    bias.bias = p.bias.empty() ? nullptr : b.bias();  // null: no bias field
    for (int d = 0; d < 3; ++d) {
        bias.dim[d] = p.out_shape[size_t(d)];
        bias.bias_dim[d] = p.bias_shape[size_t(d)];
        bias.bias_ratio[d] = float(double(p.bias_shape[size_t(d)]) / double(p.out_shape[size_t(d)]));
    }
    bias.clip_max = float(config_.clip_max);
    bias.range = b.range.data();
}

// 6. Min-max normalisation and gamma.
void Generator::plan_normalise() {
    NormaliseGammaArgs& norm = kernels_.normalise.a;
    norm = NormaliseGammaArgs{};
    norm.image = buffers_->image_b.data();
    norm.count = product(params_.out_shape);
    norm.range = buffers_->range.data();
    norm.gamma = params_.gamma;
}

const float* Generator::image() const { return buffers_->image_b.data(); }
const SampleKernels* Generator::sample_block() const {
    return reinterpret_cast<const SampleKernels*>(buffers_->block.data());
}
const uint8_t* Generator::target() const { return buffers_->target.data(); }
const uint8_t* Generator::generation() const { return buffers_->generation.data(); }

Grid Generator::output_grid() const {
    const TrainingMap& map = maps_[size_t(params_.map_index)];
    Grid grid;
    grid.dim = params_.out_shape;
    Mat4 shift;
    for (int d = 0; d < 3; ++d) shift.m[d][3] = double(params_.crop_offset[size_t(d)]);
    grid.affine = map.grid.affine * shift;
    return grid;
}

Image Generator::image_host() const {
    ISS_REQUIRE(buffers_->drawn, "image_host: no sample generated yet");
    Image out(output_grid());
    ctx_.copy_to_host(out.data.data(), image(), out.data.size() * sizeof(float));
    return out;
}

LabelMap Generator::labels_host() const {
    ISS_REQUIRE(buffers_->drawn, "labels_host: no sample generated yet");
    LabelMap out(output_grid());
    std::vector<uint8_t> target(out.data.size());
    ctx_.copy_to_host(target.data(), buffers_->target.data(), target.size());
    for (size_t v = 0; v < target.size(); ++v) out.data[v] = config_.segmentation_labels[target[v]];
    return out;
}

}  // namespace iss
