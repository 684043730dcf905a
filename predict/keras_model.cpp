#include "predict/keras_model.h"

#include <algorithm>
#include <filesystem>

#include "io/json.h"  // is_json_text
#include "io/orientation.h"
#include "io/volume.h"  // is_label_value
#include "kernels/common/error.h"
#include "post/prediction.h"
#include "synth/labels.h"

namespace iss {

std::vector<int32_t> keras_label_list(const std::string& text) {
    ISS_INPUT(
        !text.empty(),
        "--labels is required for a Keras model: infant, synthseg, a model's folder, a .npy file or a list (a file "
        "written by this program's export records them)");
    const std::vector<int32_t> labels = named_label_list(text, "--labels");
    // A file's list is named by the file (a .npy of SynthSeg's, a model's folder).
    std::error_code ec;
    const std::string source = std::filesystem::exists(text, ec) ? cat("--labels ", text) : "--labels";
    for (const int32_t label : labels) ISS_INPUT(is_label_value(label), source, ": ", label, " is ", not_a_label);
    // The SynthSeg family's networks all have a background output; without it every voxel would
    // count as a structure (predict's volumes).
    ISS_INPUT(std::find(labels.begin(), labels.end(), 0) != labels.end(), source,
              " must hold 0, the background: the network has an output for it");
    return labels;
}

namespace {

// A file's path as the record keeps it (provenance, never opened again): absolute, as train
// records its maps (a relative one says nothing once the shell has moved), and bytes that are
// not UTF-8 (a Latin-1 name) escaped as messages show them, where JSON cannot hold them (an
// internal error).
std::string recordable_path(const std::string& path) {
    std::error_code ec;
    const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
    const std::string recorded = ec ? path : absolute.string();
    return is_json_text(recorded) ? recorded : one_line(recorded);
}

// The model a file of our export records, checked as model.json is and against the network of
// the file's weights.
ModelSpec recorded_spec(const KerasUNet& model, const std::string& source) {
    const bool archive = model.layout == "Keras 3 archive";
    const std::string where = cat(source, archive ? ": metadata.json's " : ": the attribute ", keras_record_key);
    ModelSpec spec = parse_model_description(model.description, where);
    const UNetConfig &a = spec.unet, &b = model.unet;
    const std::pair<const char*, bool> same[] = {{"levels", a.levels == b.levels},
                                                 {"features", a.features == b.features},
                                                 {"convolutions per level", a.convs_per_level == b.convs_per_level},
                                                 {"kernel", a.kernel == b.kernel},
                                                 {"input channels", a.in_channels == b.in_channels},
                                                 {"classes", a.classes == b.classes},
                                                 {"batch norm epsilon", a.bn_epsilon == b.bn_epsilon},
                                                 {"ELU alpha", a.elu_alpha == b.elu_alpha}};
    for (const auto& [field, equal] : same)
        ISS_INPUT(equal, where, " gives the network other ", field, " than the ",
                  archive ? "archive's weights and config.json" : "file's weights");
    // Where the model came from: the recorded import when it was one (then this archive is
    // noted beside it), else this archive.
    nlohmann::json& t = spec.training;
    if (t.contains("imported_from")) {
        t["reimported_from"] = recordable_path(source);
    } else {
        t["imported_from"] = recordable_path(source);
        t["keras_layout"] = model.layout;
        t["keras_version"] = model.keras_version;
    }
    return spec;
}

}  // namespace

ModelSpec keras_model_spec(const KerasUNet& model, const KerasImportOptions& options, const std::string& source) {
    ISS_INPUT(model.description.empty() || options.channel_order.empty(), source,
              " records its model's channel order: --channel-order is for files written elsewhere");
    if (!model.description.empty() && options.labels.empty()) {
        ISS_INPUT(options.orientation.empty() && options.voxel_size_mm == 0, source,
                  " records its model (labels, frame, voxel sizes): ",
                  options.orientation.empty() ? "--voxel-size" : "--orientation", " goes with --labels");
        return recorded_spec(model, source);
    }
    ISS_INPUT(
        options.channel_order.empty() || options.channel_order == "freesurfer" || options.channel_order == "ascending",
        "--channel-order must be freesurfer or ascending, got '", options.channel_order, "'");
    std::vector<int32_t> labels = keras_label_list(options.labels);
    if (options.channel_order == "ascending") {
        std::sort(labels.begin(), labels.end());  // distinct: named_label_list refuses a label twice
    } else {
        labels = labels::freesurfer_sorted(labels);
    }
    ISS_INPUT(int(labels.size()) == model.unet.classes, "--labels: ", labels.size(), " labels, but the network in ",
              source, " has ", model.unet.classes, " outputs");
    if (!options.orientation.empty()) require_orientation_code(options.orientation, "--orientation");
    ModelSpec spec;
    if (!model.description.empty()) {
        // A file of ours: its record, with the frame and voxel size given in place of its own. A
        // network trained here has its channels in its own label order, which SynthSeg's sorted
        // one need not be (0, 2, 16, 41 is 0, 16, 2, 41 sorted): the labels given must be the
        // recorded ones, and keep the recorded order.
        spec = recorded_spec(model, source);
        ISS_INPUT(std::is_permutation(labels.begin(), labels.end(), spec.labels.begin(), spec.labels.end()), source,
                  " records its labels (", label_list_text(spec.labels), "): --labels names others");
        if (!options.orientation.empty()) spec.preprocessing["orientation"] = options.orientation;
    } else {
        spec.unet = model.unet;
        spec.labels = labels;
        spec.preprocessing = {{"orientation", options.orientation.empty() ? "RAS" : options.orientation},
                              {"size_multiple", model.unet.reference_multiple()},
                              {"normalisation", "min-max to [0, 1]"},
                              {"input_channels", model.unet.in_channels},
                              {"voxel_size_mm", nullptr}};  // none: scans keep their resolution
        spec.training = {{"imported_from", recordable_path(source)},
                         {"keras_layout", model.layout},
                         {"keras_version", model.keras_version}};
    }
    if (options.voxel_size_mm > 0) {
        const double v = options.voxel_size_mm;
        spec.preprocessing.erase("voxel_size_mm");
        spec.preprocessing["voxel_size_range_mm"] = {{"min", {v, v, v}}, {"max", {v, v, v}}};
    }
    return spec;
}

}  // namespace iss
