// `infant-synthseg import`: a published Keras model (SynthSeg, Infant-SynthSeg: T1.h5, T2.h5,
// multimodal_model.h5, SynthSeg.h5) as one of our model directories, so that predict, and
// everything that reads our models, uses it without TensorFlow.
#include <cstdio>
#include <filesystem>

#include "bin/cli.h"
#include "bin/commands.h"
#include "io/file_util.h"
#include "kernels/common/error.h"
#include "nn/checkpoint.h"
#include "nn/keras.h"
#include "post/prediction.h"
#include "predict/keras_model.h"

namespace iss::cli {
namespace {

namespace fs = std::filesystem;

const char* usage =
    "usage: infant-synthseg import --keras FILE.h5|FILE.weights.h5|FILE.keras --out MODEL_DIR\n"
    "                              [--labels LABELS\n"
    "                              [--channel-order freesurfer|ascending]\n"
    "                              [--orientation RAS|LIA|CODE] [--voxel-size MM]]\n"
    "\n"
    "Reads a Keras file of the SynthSeg-family U-Net (Keras 2, tf-keras, Keras 3's .keras,\n"
    ".weights.h5 or legacy .h5; weights only or a whole model, a training checkpoint too: only\n"
    "the unet_* layers are taken), infers its architecture (levels, features, convolutions per\n"
    "level, kernel, input channels, labels), checks every weight, and writes\n"
    "MODEL_DIR/model.safetensors and model.json. A whole model's config (model_config, or a\n"
    ".keras archive's config.json) must describe ext/neuron's U-Net as SynthSeg builds it (ELU,\n"
    "batch norm epsilon 1e-3, softmax output); a weights-only file cannot say, and is taken to\n"
    "be one.\n"
    "\n"
    "  --keras FILE         the Keras file (.h5, .weights.h5 or .keras)\n"
    "  --out MODEL_DIR      the model directory to write (must not hold a model yet)\n"
    "  --labels LABELS      the segmentation labels of the network's outputs, in any order:\n"
    "                       infant (Infant-SynthSeg's 34), synthseg (SynthSeg 1.0's 32; 2.0\n"
    "                       adds CSF, 24: give its list), a model's folder (its labels), a\n"
    "                       .npy file (e.g. synthseg_segmentation_labels.npy; a value repeated\n"
    "                       there counts once, said in a warning) or a list such as 0,2,3;\n"
    "                       they are put in the network's channel order and that order is\n"
    "                       recorded. Required, except for a file written by export (.h5 or\n"
    "                       .keras), which records its model: labels, frame, voxel sizes and\n"
    "                       provenance, all taken as recorded when --labels is absent; given,\n"
    "                       they must be its labels, kept in its channel order\n"
    "  --channel-order ORDER  how the network numbers its outputs: freesurfer (default;\n"
    "                       unsided, left, right labels, each ascending), as Infant-SynthSeg's\n"
    "                       models and the first SynthSeg.h5 (2020) do, or ascending, as\n"
    "                       SynthSeg's models since 2021 do (synthseg_1.0.h5)\n"
    "  --orientation CODE   the voxel frame the network was trained in: RAS (default) for\n"
    "                       Infant-SynthSeg and SynthSeg since 2021, LIA for the 2020\n"
    "                       SynthSeg.h5; predict reorients scans to it\n"
    "  --voxel-size MM      record a voxel size, so that predict resamples a scan more than\n"
    "                       0.05 mm off along an axis to it: 1 for SynthSeg's models, as its\n"
    "                       predict does; by default none, scans keeping their resolution, as\n"
    "                       Infant-SynthSeg's predict does\n"
    "  --help               this text\n";

}  // namespace

int cmd_import(int argc, char** argv) {
    const Args args("import", argc, argv,
                    {"--keras", "--out", "--labels", "--channel-order", "--orientation", "--voxel-size"}, {"--help"});
    if (args.flag("--help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    args.reject_positional();
    const std::string keras = args.require("--keras"), out = args.require("--out");
    const KerasImportOptions options = keras_import_options(args);
    const std::string weights = model_weights_in(out);
    std::error_code ec;
    const bool has_json = fs::exists(model_json_path(weights), ec), has_weights = fs::exists(weights, ec);
    ISS_INPUT(!has_json || !has_weights, out, ": already holds a model; choose another --out");
    // One of the two: what an import or a train killed between its two files left.
    ISS_INPUT(!has_json && !has_weights, out, ": holds ",
              has_weights ? "model.safetensors without its model.json" : "model.json without its model.safetensors",
              ", half a model (a run killed while writing them): remove it, or choose another --out");
    check_outputs("import", {{keras, "--keras"}, label_file_of(options.labels)},
                  {{weights, "--out"}, {model_json_path(weights), "--out"}}, {out});

    // Everything read and checked before the directory is touched.
    const KerasUNet model = read_keras_unet(keras);
    const ModelSpec spec = keras_model_spec(model, options, keras);
    DeviceContext cpu;
    ParamStore params(cpu);
    UNet net(spec.unet, params);
    params.allocate(ParamStore::Use::inference);
    load_keras_tensors(model, params);
    warn_of_temporaries_beside("import", {{weights, "--out"}, {model_json_path(weights), "--out"}});
    OutputDirectories folders;
    folders.make(out);
    save_model(weights, spec, params);
    const UNetConfig& u = spec.unet;
    std::printf(
        "imported %s (%s, Keras %s): %d level%s, %d features, %d convolution%s per level, %d input channel%s, "
        "%d labels, frame %s -> %s\n",
        keras.c_str(), model.layout.c_str(), model.keras_version.c_str(), u.levels, u.levels > 1 ? "s" : "", u.features,
        u.convs_per_level, u.convs_per_level > 1 ? "s" : "", u.in_channels, u.in_channels > 1 ? "s" : "", u.classes,
        spec.preprocessing.value("orientation", std::string("RAS")).c_str(), weights.c_str());
    return 0;
}

}  // namespace iss::cli
