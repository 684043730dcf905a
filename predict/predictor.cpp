#include "predict/predictor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <tuple>

#include "io/file_util.h"
#include "io/orientation.h"
#include "io/resample.h"
#include "kernels/common/error.h"
#include "nn/autograd.h"
#include "nn/checkpoint.h"
#include "nn/keras.h"
#include "nn/ops.h"
#include "nn/tensor.h"
#include "nn/unet.h"
#include "post/prediction.h"  // has_structure
#include "predict/keras_model.h"
#include "predict/postprocess.h"
#include "synth/labels.h"

namespace iss {
namespace {

// The voxel size a scan is segmented at: its own where the model has seen it along every axis
// (inside [min, max], give or take SynthSeg's predict's 0.05 mm: headers round, and a 1.02 mm scan
// that SynthSeg segments as it is was resampled here), else, as SynthSeg resamples every axis
// once one is off, each axis at the nearest size the model has seen (for a model of one size,
// that size: a 1.04 x 1.04 x 3 mm scan at 1 x 1 x 1, not 1.04 x 1.04 x 1).
constexpr double voxel_size_slack_mm = 0.05;

std::array<double, 3> voxel_size_to_segment_at(const std::array<double, 3>& scan, const std::array<double, 3>& min,
                                               const std::array<double, 3>& max) {
    bool seen = true;
    for (size_t d = 0; d < 3; ++d)
        seen = seen && scan[d] >= min[d] - voxel_size_slack_mm && scan[d] <= max[d] + voxel_size_slack_mm;
    if (seen) return scan;
    std::array<double, 3> target{};
    for (size_t d = 0; d < 3; ++d) target[d] = std::clamp(scan[d], min[d], max[d]);
    return target;
}

// A grid of `voxel` mm covering the same field of view as `g`, centred on it.
Grid grid_at_voxel_size(const Grid& g, const std::array<double, 3>& voxel) {
    const auto current = g.voxel_size();
    Grid out;
    Mat4 to_old;  // new voxel -> old voxel
    for (int d = 0; d < 3; ++d) {
        const double ratio = voxel[size_t(d)] / current[size_t(d)];
        out.dim[size_t(d)] = std::max<int64_t>(1, std::llround(double(g.dim[size_t(d)]) / ratio));
        to_old.m[d][d] = ratio;
        to_old.m[d][3] = (double(g.dim[size_t(d)]) - 1) / 2 - ratio * (double(out.dim[size_t(d)]) - 1) / 2;
    }
    out.affine = g.affine * to_old;
    return out;
}

// The q_low and q_high quantiles of the values (nearest rank), from one copy of them.
std::pair<float, float> quantiles(std::vector<float> values, double q_low, double q_high) {
    auto at = [&](double q) {
        const size_t k = std::min(values.size() - 1, size_t(q * double(values.size() - 1) + 0.5));
        std::nth_element(values.begin(), values.begin() + std::ptrdiff_t(k), values.end());
        return values[k];
    };
    const float low = at(q_low);
    return {low, at(q_high)};
}

// NaN or infinite voxels (outside the brain mask of a registration tool's output) become their
// channel's lowest finite value, background, with a warning: left in, the normalisation's
// min/max skipped a NaN unless it came first, and the network turned it into NaN posteriors.
// Done before resampling, which would spread them.
void replace_non_finite(Image& image, const std::string& name) {
    const int64_t voxels = image.grid.voxels();
    for (int64_t c = 0; c < image.frames; ++c) {
        float* const first = image.data.data() + c * voxels;
        float low = INFINITY;
        int64_t bad = 0;
        for (int64_t v = 0; v < voxels; ++v) {
            if (std::isfinite(first[v]))
                low = std::min(low, first[v]);
            else
                ++bad;
        }
        if (bad == 0) continue;
        ISS_INPUT(bad < voxels, name, ": the image holds no finite value",
                  image.frames > 1 ? cat(" in channel ", c + 1) : "");
        for (int64_t v = 0; v < voxels; ++v)
            if (!std::isfinite(first[v])) first[v] = low;
        warning(cat(name, ": ", bad, " voxel", bad > 1 ? "s are" : " is", " NaN or infinite",
                    image.frames > 1 ? cat(" in channel ", c + 1) : "", "; set to the lowest finite value (",
                    low, ")"));
    }
}

// The 1% and 99% quantiles, to a thousandth, of where the values strictly between `low` and
// `high` lie in [low, high] as fractions of it (in double: a fill of -3.4e38 puts a head's values
// at 1 - 1e-36, which float rounds to 1); one pass, no copy; {0, 1} when there are none.
std::pair<float, float> inner_quantiles(const float* first, const float* last, float low, float high) {
    std::array<int64_t, 1001> count{};
    int64_t n = 0;
    const double span = double(high) - double(low);
    for (const float* v = first; v != last; ++v)
        if (*v > low && *v < high) {
            ++count[size_t(std::lround((double(*v) - double(low)) / span * 1000.0))];
            ++n;
        }
    if (n == 0) return {0.0f, 1.0f};
    int64_t below = 0;
    float q01 = -1, q99 = 1;
    for (size_t b = 0; b < count.size(); ++b) {
        below += count[b];
        if (q01 < 0 && below > n / 100) q01 = float(b) / 1000;
        if (below >= n - n / 100) {
            q99 = float(b) / 1000;
            break;
        }
    }
    return {std::max(q01, 0.0f), q99};
}

// Each channel min-max normalised to [0, 1] on its own (or between its 0.5% and 99.5%
// quantiles, clipped), a constant channel to zeros with a warning.
void normalise_channels(Image& x, bool clip_percentiles, const std::string& name, bool resampled) {
    const int64_t voxels = x.grid.voxels();
    for (int64_t c = 0; c < x.frames; ++c) {
        const auto first = x.data.begin() + c * voxels, last = first + voxels;
        const std::string in_channel = x.frames > 1 ? cat(" in channel ", c + 1) : "";
        float low = *std::min_element(first, last);
        float high = *std::max_element(first, last);
        if (!(high > low))  // a blank or failed conversion, segmented as zeros: say so
            warning(cat(name, ": the image",
                        // A scan of a few voxels at the model's size (a header in other units) is
                        // constant there alone: "the image is constant" sent a user to the scan.
                        resampled ? cat(" resampled to the model's voxel size (", dims_text(x.grid.dim), " voxels)")
                                  : std::string(),
                        " is constant (", low, in_channel, "); it is segmented as a blank image"));
        if (clip_percentiles && high > low) {
            const auto [q005, q995] = quantiles(std::vector<float>(first, last), 0.005, 0.995);
            // 99% of the voxels one value (the background of a small field of view): the
            // quantiles' range is empty and made every voxel 0, a blank image without a word.
            if (q995 > q005)
                std::tie(low, high) = std::tie(q005, q995);
            else
                warning(cat(name, ": its 0.5% and 99.5% quantiles", in_channel, " are both ", q005,
                            " (99% of its voxels one value): normalised between its minimum and maximum instead, ",
                            "as without --clip-percentiles"));
        }
        // A range set by a few voxels (a hot spot, a fill value of -3.4e38 outside the head)
        // squeezes the rest into a sliver of [0, 1] that no training image looked like. The
        // voxels at the minimum (a skull-stripped scan's background) and the maximum left out.
        if (!clip_percentiles && high > low) {
            const auto [q01, q99] = inner_quantiles(&*first, &*first + voxels, low, high);
            // The quantiles are rounded to a thousandth: the range said is what holds them.
            if (q99 - q01 < 0.2f)
                warning(cat(name, ": 98% of its voxels", in_channel, " between its lowest and highest normalise into [",
                            std::max(q01 - 0.0005f, 0.0f), ", ", std::min(q99 + 0.0005f, 1.0f),
                            "] of [0, 1]: voxels far brighter or darker than the rest (a hot spot, a fill value) set "
                            "its min-max range; --clip-percentiles normalises between the 0.5% and 99.5% quantiles"));
        }
        // A range past a float's (values near both -3.4e38 and 3.4e38) in double: in float it was
        // infinite, and the image NaN posteriors.
        const float span = high - low;
        const double wide_span = double(high) - double(low);
        for (auto v = first; v != last; ++v)
            *v = !(high > low)         ? 0.0f
                 : std::isfinite(span) ? std::min(std::max((*v - low) / span, 0.0f), 1.0f)
                                       : float(std::clamp((double(*v) - double(low)) / wide_span, 0.0, 1.0));
    }
}

// `n` voxels padded up to the next multiple of `multiple`.
int64_t padded_size(int64_t n, int64_t multiple) {
    return (n + multiple - 1) / multiple * multiple;
}

// `x` centred in zeros up to the next multiple of `multiple` per axis; `before` gets the zeros
// ahead of it on each axis.
Image padded_to_multiple(const Image& x, int64_t multiple, std::array<int64_t, 3>& before) {
    Grid grid = x.grid;
    for (size_t d = 0; d < 3; ++d) {
        const int64_t n = x.grid.dim[d];
        grid.dim[d] = padded_size(n, multiple);
        before[d] = (grid.dim[d] - n) / 2;
    }
    Image padded(grid, x.frames, 0.0f);
    for (int64_t c = 0; c < x.frames; ++c)
        for (int64_t k = 0; k < x.nz(); ++k)
            for (int64_t j = 0; j < x.ny(); ++j)
                std::copy(&x.at(0, j, k, c), &x.at(0, j, k, c) + x.nx(),
                          &padded.at(before[0], j + before[1], k + before[2], c));
    return padded;
}

// The index in `image` of the voxel mirrored to (i, j, k) along `axis`.
struct Mirror {
    const Image& image;
    size_t axis;
    int64_t operator()(int64_t i, int64_t j, int64_t k) const {
        std::array<int64_t, 3> q{i, j, k};
        q[axis] = image.grid.dim[axis] - 1 - q[axis];
        return image.index(q[0], q[1], q[2]);
    }
};

// The image `mirror` reads, mirrored.
Image mirrored(const Mirror& mirror) {
    const Image& x = mirror.image;
    const int64_t voxels = x.grid.voxels();
    Image out(x.grid, x.frames);
    for (int64_t c = 0; c < x.frames; ++c)
        for (int64_t k = 0; k < x.nz(); ++k)
            for (int64_t j = 0; j < x.ny(); ++j)
                for (int64_t i = 0; i < x.nx(); ++i) out.at(i, j, k, c) = x.data[size_t(c * voxels + mirror(i, j, k))];
    return out;
}

}  // namespace

void warn_if_not_head_sized(const Grid& grid, const std::string& name) {
    const std::array<double, 3> size = grid.voxel_size();
    double longest = 0;
    for (size_t d = 0; d < 3; ++d) longest = std::max(longest, size[d] * double(grid.dim[d]));
    const int64_t thinnest = *std::min_element(grid.dim.begin(), grid.dim.end());
    if (thinnest <= 2)  // a 2-D file, or a slab: a 3-D network's result on it means little
        warning(cat(name, ": ", dims_text(grid.dim), " voxels, ", thinnest == 1 ? "one slice" : "two slices",
                    " along an axis: the model segments volumes (a whole head), and a slice alone gives it "
                    "too little to go on"));
    if (longest >= 10 && longest <= 2000) return;
    warning(cat(name, ": its field of view is at most ", longest, " mm across, not a head's (", size[0], " x ", size[1],
                " x ", size[2], " mm voxels): check the voxel size (and a NIfTI header's units, xyzt_units)"));
}

void warn_if_a_label_map(const Image& image, const std::string& name) {
    constexpr size_t most = 64;  // a label map's (infant 43, SynthSeg's 33, aseg's 45); a scan has hundreds
    std::vector<float> values;   // the distinct values seen, up to `most` + 1
    float last = NAN;
    for (const float v : image.data) {
        if (v == last || !std::isfinite(v)) continue;  // runs: a label map is mostly runs of one value
        last = v;
        if (v != std::floor(v)) return;
        if (std::find(values.begin(), values.end(), v) != values.end()) continue;
        values.push_back(v);
        if (values.size() > most) return;
    }
    if (values.size() <= 1) return;  // a constant image has its own warning
    warning(cat(name, ": only ", values.size(), " distinct values, all whole numbers, as a label map or a mask holds ",
                "(a scan has hundreds): is it a segmentation? It is segmented as a scan"));
}

void warn_if_no_structure(const LabelMap& seg, const Image& normalised, const std::string& name) {
    // The segmentation first: a structure is usually met within its first slices, and the image
    // is scanned only for an empty one.
    if (has_structure(seg)) return;
    if (std::all_of(normalised.data.begin(), normalised.data.end(), [](float v) { return v == 0; })) return;
    warning(cat(name,
                ": no structure found, the segmentation is all background (with --vol its row is left empty): is it ",
                "a head scan? (Voxels far brighter or darker than the rest squeeze it into a sliver of the range: ",
                "--clip-percentiles.)"));
}

void require_memory_to_segment(const std::string& name, const SegmentationSizes& sizes, size_t host_bytes) {
    auto voxels_of = [](const Grid& g) { return double(g.dim[0]) * double(g.dim[1]) * double(g.dim[2]); };
    const double work_voxels = voxels_of(sizes.work), padded_voxels = std::max(sizes.padded_voxels, work_voxels);
    const double channel = 4.0 * double(sizes.channels), posteriors = 4.0 * double(sizes.classes);
    const double images = voxels_of(sizes.scan) * 2.0 * channel + work_voxels * channel +
                          padded_voxels * channel * (sizes.flip ? 2.0 : 1.0);
    // Summed, though not all live at once (the probabilities are freed before the posteriors go
    // back): a 97^3 scan with flip and a 4-feature network peaked at 700 MB RSS (683,380 KiB)
    // against 633 MB estimated (the rest the process's own); a 256^3 one at 8.67 GB against
    // 10.9 GB.
    const double bytes = images + sizes.network_bytes + padded_voxels * posteriors + 2.0 * work_voxels * posteriors +
                         (sizes.resampled ? 2.0 * voxels_of(sizes.own) * posteriors : 0.0);
    ISS_INPUT(work_voxels <= double(int64_t(1) << 31) && fits_in_memory(bytes, host_bytes), name,
              ": segmenting it on a grid of ", dims_text(sizes.work.dim), " voxels",
              sizes.onto_another ? cat(" (its posteriors then on --like's grid of ", dims_text(sizes.own.dim), ")")
              : sizes.resampled  ? cat(" (resampled to the model's voxel size; its posteriors then back on its ",
                                       dims_text(sizes.own.dim), ")")
                                 : std::string(),
              " needs about ", gib_text(bytes), " GiB (", gib_text(sizes.network_bytes),
              " of them the network's), more than 80% of the ", gib_text(double(host_bytes)),
              " GiB this process may use");
}

std::string resolve_model_path(const std::string& model) {
    std::error_code ec;
    const bool exists = std::filesystem::exists(model, ec);
    // A folder above it that this user may not enter is not "no such model".
    ISS_INPUT(!ec || ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory, model,
              ": cannot open: ", ec.message());
    ISS_INPUT(exists, model,
              ": no such model (expected a model directory, its model.safetensors, or a Keras .h5 or .keras file)");
    // A model's description names its weights beside it, as info takes it.
    if (ends_with(model, ".json") && !std::filesystem::is_directory(model, ec))
        return model.substr(0, model.size() - 5) + ".safetensors";
    if (!std::filesystem::is_directory(model, ec)) return model;
    const std::string weights = model_weights_in(model);
    if (!std::filesystem::exists(weights, ec)) {
        // A folder of the weights train --keep-every kept, or no model at all: said as such (it was
        // "model.json: cannot open").
        const std::vector<std::string> kept = kept_weights_files(model);
        ISS_INPUT(kept.empty(), model, ": a folder of kept weights (train --keep-every), not a model directory: name ",
                  "one of its files, e.g. ", (std::filesystem::path(model) / kept.front()).string());
        ISS_INPUT(false, model, ": no model.safetensors in it (a model directory holds model.safetensors and ",
                  "model.json, as train and import write them)");
    }
    return weights;
}

struct Predictor::State {
    std::string model;  // as given, for messages
    PredictOptions options;
    DeviceContext ctx;
    ModelSpec spec;
    ParamStore params;
    std::unique_ptr<UNet> net;
    std::vector<int> twin_channel;  // output channel of each channel's left/right twin
    Preprocessing pre;              // frame, voxel sizes seen, size multiple (model.json)
    int lr_axis = 0;                // the frame's left-right axis, which the flip mirrors
    Precision precision;            // what runs: options.precision where usable

    // Kept across scans of one shape: its cached blocks spare every forward the device
    // allocations (and on the CPU the first-touch page faults of a few GiB).
    std::unique_ptr<PoolAllocator> pool;
    std::array<int64_t, 3> last_shape{0, 0, 0};

    explicit State(const PredictOptions& o)
        : options(o),
          ctx(o.device),
          params(ctx),
          precision(usable_precision(ctx, o.precision)),
          pool(std::make_unique<PoolAllocator>(ctx)) {}

    // The network's probabilities for x: into `host_out` (the whole volume) when given, else
    // slab by slab to `rows`.
    void forward(const Image& x, size_t* peak_bytes, const UNet::ProbabilityRows& rows, float* host_out = nullptr);
};

Predictor::Predictor(const std::string& model, const PredictOptions& options)
    : state_(std::make_unique<State>(options)) {
    State& s = *state_;
    s.model = model;
    if (is_keras_model_path(model)) {
        // A published Keras model, imported in memory.
        const KerasUNet keras = read_keras_unet(model);
        s.spec = keras_model_spec(keras, options.keras, model);
        s.net = std::make_unique<UNet>(s.spec.unet, s.params);
        s.params.allocate(ParamStore::Use::inference);
        load_keras_tensors(keras, s.params);
        s.pre = parse_preprocessing(s.spec, model);
    } else {
        const std::string weights = resolve_model_path(model);
        s.spec = load_model_spec(weights);
        s.net = std::make_unique<UNet>(s.spec.unet, s.params);
        require_loadable_weights(weights, s.params);
        s.params.allocate(ParamStore::Use::inference);
        load_checkpoint_weights(weights, s.spec, s.params);
        s.pre = parse_preprocessing(s.spec, model_json_path(weights));
    }
    s.lr_axis = int(s.pre.frame.find_first_of("RL"));
    const int32_t unreversed = labels::first_unreversed(s.spec.labels, s.pre.lr_twins);
    ISS_INPUT(unreversed < 0, model, ": preprocessing.lr_twins: ", labels::unreversed_text(unreversed, s.pre.lr_twins));
    s.twin_channel = labels::twin_positions(s.spec.labels, s.pre.lr_twins);
    // A model whose outputs do not swap as a flip swaps the structures (one hemisphere's, a
    // structure learned as one side's): the mirrored scan's prediction has no channels to be
    // averaged into. Models trained here record it (labels::first_unmirrored); others are judged
    // by their outputs taken as their own generation labels (a side's label whose twin is no
    // output: the mirrored scan's structure there is the other side's).
    const std::vector<int32_t>& outputs = s.spec.labels;
    const int unmirrored = s.pre.flip_averaging.has_value() ? -1 : labels::first_unmirrored(outputs, outputs, outputs);
    if (s.options.flip && (s.pre.flip_averaging == false || unmirrored >= 0)) {
        std::string why =
            "its outputs do not swap as a left/right flip swaps the structures (its record's "
            "flip_averaging)";
        if (unmirrored >= 0) {
            const int32_t label = outputs[size_t(unmirrored)], twin = labels::lr_twin(label);
            why = cat("label ", label, " is one side's, and ",
                      twin != label ? cat("its twin ", twin, " is not an output") : std::string("has no known twin"));
        }
        warning(cat(model, ": ", why,
                    ": the scans are segmented without the left/right flip averaging (as with --no-flip)"));
        s.options.flip = false;
    }
}

Predictor::~Predictor() = default;

const std::vector<int32_t>& Predictor::labels() const { return state_->spec.labels; }
int64_t Predictor::input_channels() const { return state_->spec.unet.in_channels; }
const ModelSpec& Predictor::spec() const {
    return state_->spec;
}
const Preprocessing& Predictor::preprocessing() const {
    return state_->pre;
}

void Predictor::State::forward(const Image& x, size_t* peak_bytes, const UNet::ProbabilityRows& rows, float* host_out) {
    PoolAllocator& pool = *this->pool;
    // The pool's cached blocks, the convolutions' workspace and their engines fit scans of one
    // shape; another shape would only add its own (the workspace stayed at the largest scan's
    // size, and a folder of 10 sizes held 10 sets of engines, 864 MB against 238 MB for one).
    if (x.grid.dim != last_shape) {
        pool.release_cached();
        ctx.release_workspace();
        net->release_engines();
    }
    last_shape = x.grid.dim;
    Graph g(pool, params, false);
    g.set_precision(precision);
    // Channels-last: the frames of the volume interleaved voxel by voxel.
    const int64_t channels = x.frames, voxels = x.grid.voxels();
    std::vector<float> interleaved(x.data.size());
    for (int64_t c = 0; c < channels; ++c)
        for (int64_t v = 0; v < voxels; ++v) interleaved[size_t(v * channels + c)] = x.data[size_t(c * voxels + v)];
    Tensor input = Tensor::make(pool, Shape5{1, x.nz(), x.ny(), x.nx(), channels});
    ctx.copy_to_device(input.data, interleaved.data(), interleaved.size() * sizeof(float));
    // The probabilities leave the device slab by slab: no device tensor of the whole output.
    if (host_out)
        net->predict(g, g.input(input), options.slab_depth, host_out);
    else
        net->predict(g, g.input(input), options.slab_depth, rows);
    // What the network holds: its pool's blocks, live or cached for the next forward (more than
    // were ever live at once), and the convolutions' shared workspace (the CPU's blocked copies
    // of a layer's activations, cuDNN's work space).
    *peak_bytes = std::max(*peak_bytes, pool.capacity_bytes() + ctx.workspace_bytes());
}

namespace {

// A network whose weights are finite but so large that its sums overflow (a damaged or wrongly
// converted model) gives NaN probabilities: the argmax took them for background and the volumes
// read "nan", exit 0. Any NaN makes a structure's summed volume NaN, so they tell at no cost.
void require_finite_posteriors(const std::vector<double>& volumes_mm3, const std::string& model,
                               const std::string& scan) {
    const bool finite = std::all_of(volumes_mm3.begin(), volumes_mm3.end(), [](double v) { return std::isfinite(v); });
    if (!finite)
        throw ModelFailure(cat(model, ": the network's output on ", scan,
                               " is not a number (NaN) in places: its weights are finite but too large for the "
                               "arithmetic (a damaged or wrongly converted model?)"));
}

// Voxels of `grid` whose centre lies outside `scan`'s field of view (its voxels' extent, half a
// voxel past the outer centres), through the two grids' world coordinates.
std::vector<uint8_t> outside_field_of_view(const Grid& grid, const Grid& scan) {
    const Mat4 to_scan = voxel_transform(scan, grid);
    std::vector<uint8_t> outside(size_t(grid.voxels()));
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t k = 0; k < grid.dim[2]; ++k)
        for (int64_t j = 0; j < grid.dim[1]; ++j)
            for (int64_t i = 0; i < grid.dim[0]; ++i) {
                const std::array<double, 3> p = to_scan.apply(double(i), double(j), double(k));
                bool out = false;
                for (size_t d = 0; d < 3; ++d) out = out || !(p[d] >= -0.5 && p[d] <= double(scan.dim[d]) - 0.5);
                outside[size_t((k * grid.dim[1] + j) * grid.dim[0] + i)] = out;
            }
    return outside;
}

}  // namespace

Segmentation Predictor::predict(const Image& image, const std::string& name, const Grid* onto) {
    State& s = *state_;
    const int64_t channels = s.spec.unet.in_channels;
    ISS_INPUT(image.frames == channels, name, ": the model takes ", channels, " channel", channels > 1 ? "s" : "",
              channels > 1 ? " (e.g. a T1 and a T2 on one grid, stacked as a 4-D file or given as --i T1 --i T2)" : "",
              ", the image has ", image.frames, image.frames > 1 ? " volumes" : " volume");
    ISS_INPUT(image.grid.voxels() > 1 && !image.data.empty(), name, ": the image has ", image.grid.voxels(), " voxel",
              image.grid.voxels() == 1 ? "" : "s", ": nothing to segment");
    const int64_t classes = int64_t(s.spec.labels.size());
    Segmentation out;
    auto clock = std::chrono::steady_clock::now();
    auto lap = [&](const char* stage) {
        const auto now = std::chrono::steady_clock::now();
        out.stage_seconds.push_back({stage, std::chrono::duration<double>(now - clock).count()});
        clock = now;
    };

    // 1-2. The model's frame, then a voxel size the model has seen.
    const std::string input_code = orientation_code(image.grid.affine);
    Image framed = reorient(image, s.pre.frame);
    replace_non_finite(framed, name);
    Grid work = framed.grid;
    bool resampled = false;
    std::array<double, 3> target = framed.grid.voxel_size();
    if (s.options.resample_to_model && s.pre.voxel_max[0] > 0) {
        target = voxel_size_to_segment_at(framed.grid.voxel_size(), s.pre.voxel_min, s.pre.voxel_max);
        resampled = target != framed.grid.voxel_size();
        if (resampled) work = grid_at_voxel_size(framed.grid, target);
    }
    out.resampled_to_model = resampled;
    double padded_voxels = 1;
    for (size_t d = 0; d < 3; ++d) padded_voxels *= double(padded_size(work.dim[d], s.pre.size_multiple));
    SegmentationSizes sizes;
    sizes.scan = framed.grid;
    sizes.work = work;
    sizes.padded_voxels = padded_voxels;
    sizes.flip = s.options.flip;
    sizes.own = onto ? *onto : framed.grid;
    sizes.resampled = resampled || onto;
    sizes.onto_another = onto != nullptr;
    sizes.channels = channels;
    sizes.classes = classes;
    // The network's blocks are host memory on the CPU only (on a GPU they are the GPU's).
    sizes.network_bytes = s.ctx.is_cuda() ? 0.0 : network_bytes_to_segment(s.spec.unet, s.precision, padded_voxels);
    require_memory_to_segment(name, sizes, host_memory_bytes());
    // Another grid (--like) must meet the scan's field of view: refused before the network runs.
    std::vector<uint8_t> outside;
    if (onto) {
        outside = outside_field_of_view(*onto, framed.grid);
        ISS_INPUT(std::count(outside.begin(), outside.end(), uint8_t(1)) < onto->voxels(), name,
                  ": its field of view and the grid of --like do not overlap in world coordinates: the two files ",
                  "are not co-registered by their headers");
    }
    warn_if_not_head_sized(image.grid, name);  // after the refusal a huge one gets: one line, not two
    warn_if_a_label_map(image, name);
    Image x = resampled ? resample_image(s.ctx, blurred_for_downsampling(framed, target), work, Interp::linear,
                                         OutOfBounds::clamp)
                        : framed;

    // 4, then 3: normalised before padding, so that the padding is the image minimum, 0.
    normalise_channels(x, s.options.clip_percentiles, name, resampled);
    std::array<int64_t, 3> before{};
    const Image padded = padded_to_multiple(x, s.pre.size_multiple, before);
    lap("preprocess");

    // 5. Forward, and the forward of the image mirrored along the frame's left-right axis,
    // mapped back with left and right channels swapped, averaged in as its slabs arrive (no
    // second volume of probabilities).
    const int64_t nx = padded.nx(), ny = padded.ny();
    // Uninitialised: the forward writes every value. Zeroing it first cost a single-threaded
    // pass that also took each fresh page's first touch (a probe on a 2-vCPU VM, 613 MB: zeroed
    // then written 0.26 s, written alone 0.15 s), which the forward's threads now share.
    std::unique_ptr<float[]> probs(new float[size_t(padded.grid.voxels() * classes)]);
    s.forward(padded, &out.network_peak_bytes, nullptr, probs.get());
    if (s.options.flip) {
        const Mirror mirror{padded, size_t(s.lr_axis)};
        // Voxel u of the mirrored scan's output is voxel mirror(u) of the scan's: each voxel of
        // `probs` is averaged with exactly one, so the rows can be merged in parallel.
        const int* twin = s.twin_channel.data();
        s.forward(mirrored(mirror), &out.network_peak_bytes, [&](int64_t z0, int64_t z1, const float* p) {
#pragma omp parallel for collapse(2) schedule(static)
            for (int64_t k = z0; k < z1; ++k)
                for (int64_t j = 0; j < ny; ++j)
                    for (int64_t i = 0; i < nx; ++i) {
                        float* mine = &probs[size_t(mirror(i, j, k) * classes)];
                        const float* theirs = p + (((k - z0) * ny + j) * nx + i) * classes;
                        for (int64_t c = 0; c < classes; ++c) mine[c] = 0.5f * (mine[c] + theirs[twin[c]]);
                    }
        });
    }

    lap("network");

    // 6. Smoothing, cropped and channel-first; back to the input's grid in the model's frame.
    Image post = smooth_and_crop_posteriors(s.ctx, probs.get(), padded.grid.dim, before, x.grid, classes);
    probs.reset();  // freed before the outputs are allocated
    if (onto) {
        onto_grid(std::move(post), outside, *onto, x, name, out);
        lap("postprocess");
        return out;
    }
    if (resampled) post = resample_image(s.ctx, post, framed.grid, Interp::linear, OutOfBounds::clamp);

    // 7. Volumes on the input's voxels (still in the model's frame: the same voxels, summed in
    // one order whether or not the posteriors are kept); a NaN among the posteriors shows there.
    out.volumes_mm3 = posterior_volumes_mm3(post, s.spec.labels);
    require_finite_posteriors(out.volumes_mm3, s.model, name);

    // 8. Argmax and the largest connected component, then the input's orientation (exact).
    LabelMap seg = segment_posteriors(post, s.spec.labels);
    warn_if_no_structure(seg, x, name);
    out.segmentation = reorient(std::move(seg), input_code);
    out.segmentation.grid.affine = image.grid.affine;  // equal up to rounding: keep the input's exactly
    if (s.options.keep_posteriors) {
        out.posteriors = reorient(std::move(post), input_code);
        out.posteriors.grid.affine = image.grid.affine;
    }
    out.resampled = x;
    lap("postprocess");
    return out;
}

// Steps 7 and 8 on another scan's grid (predict --like): the posteriors (on `scan`'s field of view
// in the model's frame) resampled trilinearly onto `onto` through world coordinates, as they come
// back to the scan's own grid otherwise; voxels outside the scan's field of view hold no evidence:
// posteriors 0 (merge then takes the other scan's) and label 0.
void Predictor::onto_grid(Image post, const std::vector<uint8_t>& outside, const Grid& onto, const Image& seen,
                          const std::string& name, Segmentation& out) {
    State& s = *state_;
    const int64_t outside_count = std::count(outside.begin(), outside.end(), uint8_t(1));
    post = resample_image(s.ctx, post, onto, Interp::linear, OutOfBounds::clamp);
    const int64_t voxels = onto.voxels();
    for (int64_t c = 0; c < post.frames; ++c)
        for (int64_t v = 0; v < voxels; ++v)
            if (outside[size_t(v)]) post.data[size_t(c * voxels + v)] = 0.0f;
    out.volumes_mm3 = posterior_volumes_mm3(post, s.spec.labels);
    require_finite_posteriors(out.volumes_mm3, s.model, name);
    // Outside: background before the largest component is found, whatever the label list's first.
    LabelMap seg = segment_posteriors(post, s.spec.labels, &outside);
    warn_if_no_structure(seg, seen, name);
    out.outside_field_of_view = double(outside_count) / double(voxels);
    out.segmentation = std::move(seg);
    out.segmentation.grid.affine = onto.affine;
    if (s.options.keep_posteriors) {
        out.posteriors = std::move(post);
        out.posteriors.grid.affine = onto.affine;
    }
    out.resampled = seen;
}

}  // namespace iss
