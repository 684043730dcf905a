#include "predict/keras_model.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "io/file_util.h"
#include "io/npy.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "synth/labels.h"

namespace iss {

std::vector<int32_t> parse_label_list(const std::string& text) {
    ISS_INPUT(!text.empty(), "--labels is required for a Keras model: infant, synthseg, a .npy file or a list");
    if (text == "infant") return labels::segmentation_labels();
    if (text == "synthseg") return labels::synthseg_segmentation_labels();
    std::vector<int32_t> values;
    auto add = [&](double v, const std::string& where) {
        ISS_INPUT(std::isfinite(v) && v == std::floor(v) && v >= 0 && v <= 65535, where, ": label ", v,
                  " is not an integer from 0 to 65535");
        if (std::find(values.begin(), values.end(), int32_t(v)) == values.end()) values.push_back(int32_t(v));
    };
    if (ends_with(text, ".npy")) {
        const NpyArray array = read_npy(text);
        ISS_INPUT(array.size() >= 1 && array.size() <= 4096, text, ": expected a list of labels, found ", array.size(),
                  " values");
        for (double v : array.values) add(v, text);
        return values;
    }
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(item.c_str(), &end);
        ISS_INPUT(!item.empty() && *end == '\0' && errno == 0, "--labels: '", item,
                  "' is not a label (expected infant, synthseg, a .npy file or numbers separated by commas)");
        add(v, "--labels");
    }
    return values;
}

ModelSpec keras_model_spec(const KerasUNet& model, const KerasImportOptions& options, const std::string& source) {
    ModelSpec spec;
    spec.unet = model.unet;
    spec.labels = labels::freesurfer_sorted(parse_label_list(options.labels));
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
    }
    spec.training = {{"imported_from", source}, {"keras_layout", model.layout}, {"keras_version", model.keras_version}};
    return spec;
}

}  // namespace iss
