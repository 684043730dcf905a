// `infant-synthseg export`: one of our models as a Keras file. A weights-only Keras 2 HDF5 file
// with SynthSeg's layer and weight names, which SynthSeg's own predict loads by name; or Keras 3's
// `.keras` archive, which Keras loads and runs alone, and which carries our model.json.
#include <cstdio>

#include "bin/cli.h"
#include "bin/commands.h"
#include "io/file_util.h"
#include "kernels/common/error.h"
#include "nn/checkpoint.h"
#include "nn/keras.h"
#include "predict/predictor.h"

namespace iss::cli {
namespace {

const char* usage =
    "usage: infant-synthseg export --model MODEL_DIR|FILE.safetensors --keras OUT.h5|OUT.keras\n"
    "\n"
    "Writes the model's U-Net as a Keras file, its layers named as SynthSeg's (unet_*):\n"
    "  OUT.h5     weights only, Keras 2's layout (save_weights), for SynthSeg's and\n"
    "             Infant-SynthSeg's Python tools, which build the network and load it by\n"
    "             name. Their predict needs the label list and frame of model.json: the\n"
    "             labels in the recorded order, and the recorded orientation (RAS for models\n"
    "             trained here). The root's attribute infant_synthseg_model holds model.json\n"
    "             (Keras reads none of it), so import and predict take the file without\n"
    "             --labels.\n"
    "  OUT.keras  the whole model, Keras 3's archive (what model.save writes): Keras 3.0 and\n"
    "             later load it with keras.saving.load_model and run it, no other code needed\n"
    "             (input: a batch of volumes in the model's frame, RAS for models trained\n"
    "             here, in nibabel's axis order, channels last, in [0, 1]). metadata.json\n"
    "             also holds model.json, so import and predict take the archive without\n"
    "             --labels.\n"
    "\n"
    "  --model M        a model directory (model.safetensors + model.json), its .safetensors or\n"
    "                   .json, or kept weights (weights/step_N.safetensors or .json)\n"
    "  --keras OUT      the file to write (a file there is replaced; never the model's own)\n"
    "  --help           this text\n";

}  // namespace

int cmd_export(int argc, char** argv) {
    const Args args("export", argc, argv, {"--model", "--keras"}, {"--help"});
    if (args.flag("--help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    args.reject_positional();
    ISS_INPUT(!is_keras_model_path(args.require("--model")), "export: --model ", args.require("--model"),
              " is a Keras file already: export writes our models (a model directory, or its .safetensors)");
    const std::string weights = resolve_model_path(args.require("--model")), out = args.require("--keras");
    const bool archive = ends_with_ignoring_case(out, ".keras");
    ISS_INPUT(archive || ends_with_ignoring_case(out, ".h5"), "export: --keras must name a .h5 or .keras file, got '",
              out, "'");
    // Keras 3 reads a file of this ending in its own layout, and this one is Keras 2's.
    ISS_INPUT(!ends_with_ignoring_case(out, ".weights.h5"), "export: --keras ", out,
              ": Keras 3 would read a .weights.h5 name in its own layout, not the Keras 2 layout written here; "
              "name it .h5 (every Keras version reads that as Keras 2's)");
    const std::vector<NamedPath> outputs{{out, "--keras"}};
    check_outputs("export", {{weights, "--model"}, {model_json_path(weights), "--model"}}, outputs,
                  folders_of(outputs));

    ModelSpec spec = load_model_spec(weights);
    require_neuron_arithmetic(spec.unet, model_json_path(weights));
    DeviceContext cpu;
    ParamStore params(cpu);
    UNet net(spec.unet, params);
    require_loadable_weights(weights, params);
    params.allocate(ParamStore::Use::inference);
    load_checkpoint_weights(weights, spec, params);
    warn_of_temporaries_beside("export", outputs);  // once every refusal is past
    OutputDirectories folders;
    folders.make_for(outputs);
    if (archive)
        write_keras_archive(out, spec, params);
    else
        write_keras_unet(out, spec, params);
    std::printf("exported %s -> %s (%s; labels in channel order:", weights.c_str(), out.c_str(),
                archive ? "Keras 3 model" : "Keras 2 weights");
    for (int32_t label : spec.labels) std::printf(" %d", label);
    std::printf("; frame %s)\n", spec.preprocessing.value("orientation", std::string("RAS")).c_str());
    return 0;
}

}  // namespace iss::cli
