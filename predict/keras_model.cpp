#include "predict/keras_model.h"

#include <algorithm>

#include "io/orientation.h"
#include "kernels/common/error.h"
#include "post/prediction.h"
#include "synth/labels.h"

namespace iss {

std::vector<int32_t> keras_label_list(const std::string& text) {
    ISS_INPUT(!text.empty(), "--labels is required for a Keras model: infant, synthseg, a .npy file or a list");
    return named_label_list(text, "--labels");
}

ModelSpec keras_model_spec(const KerasUNet& model, const KerasImportOptions& options, const std::string& source) {
    ModelSpec spec;
    spec.unet = model.unet;
    spec.labels = labels::freesurfer_sorted(keras_label_list(options.labels));
    ISS_INPUT(int(spec.labels.size()) == model.unet.classes, "--labels: ", spec.labels.size(),
              " labels, but the network in ", source, " has ", model.unet.classes, " outputs");
    require_orientation_code(options.orientation, "--orientation");
    spec.preprocessing = {{"orientation", options.orientation},
                          {"size_multiple", model.unet.reference_multiple()},
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
