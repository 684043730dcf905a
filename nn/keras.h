// Keras files of the SynthSeg-family U-Net (ext/neuron's `unet`, as SynthSeg and Infant-SynthSeg
// build it): reading one into our U-Net, and writing ours as a Keras 2 weights file that
// SynthSeg's own tools load by name, or as a Keras 3 `.keras` model that Keras loads alone.
// docs/FORMATS.md ("Keras HDF5") has the name mapping.
//
// Accepted layouts: weights only (`save_weights`: the layers at the root) and whole models
// (`model.save`: the layers under /model_weights), name lists as fixed-length byte strings
// (Keras 2.2, the published files) or variable-length strings (tf-keras 2.x); Keras 3's
// `.weights.h5` (a group per layer under /layers), and its `.keras` archive (a zip of that
// weights file, config.json and metadata.json; read from memory). Layers that are not
// the U-Net's (`unet_*`) are ignored, so a training checkpoint of the published code, which also
// holds the synthetic-image and loss models, imports too.
//
// Axes: Keras numbers a volume (x, y, z) (nibabel's array order) and stores a kernel as
// (kx, ky, kz, in, out); our tensors are (z, y, x) with weights (out, kz, ky, kx, in). Reading
// transposes accordingly, so that our predict, which feeds NIfTI voxels as (z, y, x), computes
// what SynthSeg's predict computes on the same voxels.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/params.h"
#include "nn/unet.h"

namespace iss {

// KerasUNet::keras_version of a Keras 3 file that records no release (a bare .weights.h5).
inline constexpr char keras3_release_unrecorded[] = "3 (release not recorded)";

struct KerasUNet {
    UNetConfig unet;  // inferred from the file (levels, features, convolutions, kernel, channels, classes)
    // Our parameter name -> values in our layout, for every parameter UNet(unet) declares.
    std::map<std::string, std::vector<float>> tensors;
    std::string layout;         // "weights only", "whole model", "Keras 3 weights" or "Keras 3 archive"
    std::string keras_version;  // as the file says, or "unknown"
    // A file this program's export wrote (write_keras_archive, write_keras_unet) records the model
    // it came from: its model.json, as text, unchecked (predict/keras_model.h parses it when it is
    // used), under keras_record_key; "" for a file of another's.
    std::string description;
};

// Where our exports keep the model.json: a key of an archive's metadata.json, an attribute (or
// its parts) of a Keras 2 file's root group. Keras reads neither.
inline constexpr const char* keras_record_key = "infant_synthseg_model";

// Whether `path` names a Keras file (`.h5`, or Keras 3's `.keras` archive, in any case, and not a
// directory), rather than one of our models.
bool is_keras_model_path(const std::string& path);

// Reads and checks the whole U-Net: every layer present, every dataset float32 of the shape the
// inferred architecture needs (an archive's config.json is checked as a whole model's
// model_config is); an architecture our U-Net does not build (another feature
// multiplier, no batch norm, an unknown `unet_*` layer such as a residual or dropout variant) is
// an InputError naming the file and the layer. The HDF Group's library reads the file in a child
// process (io/isolate.h): a crash inside it, or a read longer than `timeout_seconds`, refuses
// the file too.
KerasUNet read_keras_unet(const std::string& path, unsigned timeout_seconds = 120);

// Puts the tensors of read_keras_unet into a ParamStore made by UNet(unet) (allocated).
void load_keras_tensors(const KerasUNet& model, ParamStore& params);

// Writes the network as Keras 3's `.keras` archive, as `model.save` writes one: config.json
// describes ext/neuron's U-Net layer by layer, so that `keras.saving.load_model` rebuilds and runs
// it with no code of SynthSeg's; model.weights.h5 holds the weights in Keras 3's layout; and
// metadata.json also holds the spec's model.json (labels in channel order, frame,
// preprocessing), which read_keras_unet returns as `description`. Written through a temporary
// name, renamed when complete. The network must pass require_neuron_arithmetic.
void write_keras_archive(const std::string& path, const ModelSpec& spec, ParamStore& params);

// Keras' "elu" and ext/neuron's batch norm are what both exports write: a network of another
// batch norm epsilon or ELU alpha is an InputError naming `source` (where those values are set).
void require_neuron_arithmetic(const UNetConfig& unet, const std::string& source);

// Writes the network as a weights-only Keras 2 file: the layer names, their order, the
// attributes and the dataset shapes of `save_weights`, name lists as fixed-length byte strings;
// and the spec's model.json as the root's attribute keras_record_key (which read_keras_unet
// returns as `description`: the labels in channel order, which SynthSeg's sorted order need not
// be). Built in memory, then written through a temporary name and renamed when complete. The
// network must pass require_neuron_arithmetic.
void write_keras_unet(const std::string& path, const ModelSpec& spec, ParamStore& params);

}  // namespace iss
