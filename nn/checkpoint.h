// Model files (DESIGN.md, "Files users see"): a model is NAME.safetensors (every parameter and
// batch-norm statistic by name, float32) plus NAME.json beside it (architecture, label list,
// preprocessing, training provenance), so it is self-describing and readable from numpy or
// PyTorch. Optimizer state for resuming goes in a second safetensors file (Adam moments and
// step count). Loading checks names and shapes against the model and says exactly what does
// not match; nothing is loaded unless everything matches. Layout in docs/FORMATS.md.
#pragma once

#include <array>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "io/file_util.h"  // OutputSet
#include "nn/optimizer.h"
#include "nn/params.h"
#include "nn/unet.h"

namespace iss {

struct ModelSpec {
    UNetConfig unet;
    std::vector<int32_t> labels;       // segmentation label of each output channel
    nlohmann::json preprocessing = nlohmann::json::object();
    nlohmann::json training = nlohmann::json::object();
    std::string written_by;  // the build that wrote the description last; "" where it does not say
};

// train's stamp in model.json ("checkpoint": {"step": N, "run_id": "..."}); none in an import's,
// an export's reader's or an older model's description.
struct DescriptionStamp {
    nlohmann::json step;
    std::string run;  // as the weights' metadata holds it: a string's text, anything else's JSON
};
std::optional<DescriptionStamp> description_stamp(const ModelSpec& spec);

// What predict must do to a scan, from ModelSpec::preprocessing (docs/FORMATS.md):
struct Preprocessing {
    std::string frame = "RAS";  // the network's voxel frame (orientation code)
    // The voxel sizes (mm, per axis of the frame) the network has seen; all 0: any (never resample).
    std::array<double, 3> voxel_min{0, 0, 0}, voxel_max{0, 0, 0};
    int64_t size_multiple = 1;  // spatial sizes are padded to a multiple of this
    // Whether the outputs swap by their twins as a left/right flip swaps the structures (what
    // predict's flip averaging assumes); unrecorded (imports, older models): judged by the labels.
    std::optional<bool> flip_averaging;
    // The sides its training declared for labels numbered otherwise than FreeSurfer's (the
    // generator's lr_twins, labels::DeclaredTwins): how its outputs swap under a flip.
    std::vector<std::vector<int32_t>> lr_twins;
};

// Parses and checks a spec's preprocessing: every field present with the right type, in range,
// and one of the known values (orientation a code, normalisation "min-max to [0, 1]",
// size_multiple a multiple of the network's, input_channels the network's); InputError naming
// `source` and the field.
Preprocessing parse_preprocessing(const ModelSpec& spec, const std::string& source);

// The files a checkpoint writes into a model directory, the weights first (train writes them in
// this order, and its tidying of a killed run's checkpoint relies on it; a "<name>.tmp-<pid>..."
// beside one of them was left by a run killed while writing it). No other command overwrites them.
inline constexpr std::array<const char*, 6> checkpoint_files = {
    "model.safetensors", "model.json", "model.optimizer.safetensors", "training_log.csv", "validation.csv", "loss.png"};

// Where train --keep-every keeps weights in a model directory: step_NNNNNNN.safetensors + .json.
inline constexpr char kept_weights_folder[] = "weights";
// That folder of a model directory.
std::string kept_weights_in(const std::string& model_dir);
// The name --keep-every gives the weights of `step`: step_NNNNNNN.safetensors (at least 7 digits).
std::string kept_weights_name(int64_t step);
// The step of a file name --keep-every writes (step_N.safetensors or .json, N in digits that fit
// 64 bits; not a temporary of one), or nothing for another name; `weights`: the .safetensors alone.
std::optional<int64_t> kept_weights_step(const std::string& name, bool weights = false);
inline bool is_kept_weights_name(const std::string& name, bool weights = false) {
    return kept_weights_step(name, weights).has_value();
}
// The weights files --keep-every kept in `folder` (their names, by step; with `weights` false
// their .json descriptions too); none where it is missing.
std::vector<std::string> kept_weights_files(const std::string& folder, bool weights = true);
// load_weights into `params` (built for `spec`, load_model_spec's). Where the weights' metadata
// and the description both carry train's checkpoint stamp, they must be one checkpoint's: a
// model.json beside the weights of another step (or run) was read as theirs. A train replacing
// the two files between their reads (a reader polling a live run) gives two checkpoints' files:
// both are read again, for up to a second (its renames take milliseconds), and `spec` becomes
// the description read last. InputError naming both files after that, or where the description
// read again is of another network.
std::map<std::string, std::string> load_checkpoint_weights(const std::string& weights_path, ModelSpec& spec,
                                                           ParamStore& params);

// A model directory's weights file: "dir" -> "dir/model.safetensors".
std::string model_weights_in(const std::string& dir);
// "dir/model.safetensors" -> "dir/model.json".
std::string model_json_path(const std::string& weights_path);

// Writes the weights and the JSON as one set: both or, where a write fails, neither (an earlier
// model's files as they were). `metadata` goes into the weights file's safetensors metadata
// beside its format (a checkpoint's stamp).
void save_model(const std::string& weights_path, const ModelSpec& spec, ParamStore& params,
                const std::map<std::string, std::string>& metadata = {});
// The same two files added to `files`, a larger set (a checkpoint) that the caller commits.
void write_model_files(OutputSet& files, const std::string& weights_path, const ModelSpec& spec, ParamStore& params,
                       const std::map<std::string, std::string>& metadata = {});

// The JSON written beside the weights (model.json): the spec, the parameter counts and the build.
nlohmann::json model_description(const ModelSpec& spec, const ParamStore& params);

// Reads and checks the JSON beside the weights completely before anything is built: types
// (integers where integers belong), ranges (levels, features, kernel, convolutions, classes,
// batch norm), known values (type, activation), the label list (distinct labels 0..65535, one
// per class) and the preprocessing (parse_preprocessing); InputError naming the file and field.
ModelSpec load_model_spec(const std::string& weights_path);
// The same checks on a description's text (`path` names it in messages); load_model_spec adds
// that the weights file exists and is large enough for the parameters described.
ModelSpec parse_model_description(const std::string& text, const std::string& path);

// Loads every parameter of `params` (declared by the model of the spec) from the weights file;
// InputError naming the file and each missing, extra or mis-shaped tensor, a value that is not
// finite, or a negative running variance.
// Returns the weights file's metadata.
std::map<std::string, std::string> load_weights(const std::string& weights_path, ParamStore& params);
// The data_crc32 a weights file states (its header alone read), "" where it states none: equal
// for equal weights, whatever else of the files differs (their run_id).
std::string weights_data_crc32(const std::string& weights_path);
// What load_weights refuses of the file's header (its tensors' names, dtypes and shapes against
// `params`' declared ones), and a network too large for this process's memory, checked before
// `params` is allocated: model.json's network was allocated (and zero-filled, 1.5 GB for a large
// description) before a damaged weights file was read at all.
void require_loadable_weights(const std::string& weights_path, const ParamStore& params);

// Adam's moments and step count, plus caller metadata (e.g. the training step).
void save_optimizer(const std::string& path, ParamStore& params, const Adam& adam,
                    const std::map<std::string, std::string>& metadata = {});
// Returns the caller metadata saved with it.
std::map<std::string, std::string> load_optimizer(const std::string& path, ParamStore& params, Adam& adam);

nlohmann::json unet_config_to_json(const UNetConfig& config);
UNetConfig unet_config_from_json(const nlohmann::json& j, const std::string& source);

}  // namespace iss
