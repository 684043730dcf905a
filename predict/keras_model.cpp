#include "predict/keras_model.h"

#include <algorithm>
#include <cmath>

#include "io/file_util.h"
#include "io/npy.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "post/prediction.h"
#include "synth/labels.h"

namespace iss {

std::vector<int32_t> keras_label_list(const std::string& text) {
    ISS_INPUT(!text.empty(), "--labels is required for a Keras model: infant, synthseg, a .npy file or a list");
    if (text == "infant") return labels::segmentation_labels();
    if (text == "synthseg") return labels::synthseg_segmentation_labels();
    if (!ends_with(text, ".npy")) return parse_label_list(text, "--labels");
    // SynthSeg's label files repeat values (one per generation label): the distinct ones.
    const NpyArray array = read_npy(text);
    ISS_INPUT(array.size() >= 1 && array.size() <= 4096, text, ": expected a list of labels, found ", array.size(),
              " values");
    std::vector<int32_t> values;
    for (double v : array.values) {
        ISS_INPUT(std::isfinite(v) && v == std::floor(v) && v >= 0 && v <= 65535, text, ": label ", v,
                  " is not an integer from 0 to 65535");
        if (std::find(values.begin(), values.end(), int32_t(v)) == values.end()) values.push_back(int32_t(v));
    }
    return values;
}

ModelSpec keras_model_spec(const KerasUNet& model, const KerasImportOptions& options, const std::string& source) {
    ModelSpec spec;
    spec.unet = model.unet;
    spec.labels = labels::freesurfer_sorted(keras_label_list(options.labels));
    ISS_INPUT(int(spec.labels.size()) == model.unet.classes, "--labels: ", spec.labels.size(),
              " labels, but the network in ", source, " has ", model.unet.classes, " outputs");
    try {
        axis_map_between(options.orientation, options.orientation);
    } catch (const InputError& e) {
        throw InputError(cat("--orientation: ", e.what()));
    }
    spec.preprocessing = {{"orientation", options.orientation},
                          {"size_multiple", model.unet.size_multiple()},
                          {"normalisation", "min-max to [0, 1]"},
                          {"input_channels", model.unet.in_channels}};
    if (options.voxel_size_mm > 0) {
        const double v = options.voxel_size_mm;
        spec.preprocessing["voxel_size_range_mm"] = {{"min", {v, v, v}}, {"max", {v, v, v}}};
    } else {
        spec.preprocessing["voxel_size_mm"] = nullptr;  // none: scans keep their resolution
    }
    spec.training = {{"imported_from", source}, {"keras_layout", model.layout}, {"keras_version", model.keras_version}};
    return spec;
}

}  // namespace iss
