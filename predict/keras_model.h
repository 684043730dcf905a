// A published Keras model as one of ours: the label list of its output channels and the
// preprocessing predict needs, for `import` (written as a model directory) and for
// `predict --model FILE.h5` (in memory). docs/FORMATS.md, "Keras HDF5".
#pragma once

#include <string>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/keras.h"

namespace iss {

struct KerasImportOptions {
    // "infant" (the 34 infant labels), "synthseg" (SynthSeg's 32), a .npy file of label values
    // (duplicates allowed, as SynthSeg's files have them) or a comma-separated list, in any
    // order: they are put in the network's channel order, channel_order's.
    // Empty: those a file written by our export records (KerasUNet::description); required
    // otherwise.
    std::string labels;
    // "freesurfer" (or empty): unsided, left, right labels, each ascending
    // (labels::freesurfer_sorted), as Infant-SynthSeg's networks and the first SynthSeg.h5
    // (2020) number their outputs; "ascending": as SynthSeg's networks since 2021 do (their
    // code takes np.unique of the labels). A file of our export records its own order.
    std::string channel_order;
    std::string orientation;          // the frame the network was trained in (the 2020 SynthSeg.h5: LIA); empty: RAS
    double voxel_size_mm = 0;         // recorded only when given: the published predict never resamples
};

// The label values a --labels text names (infant, synthseg, a .npy file or a list:
// named_label_list), unsorted; InputError naming the option or the file, or that it is required.
std::vector<int32_t> keras_label_list(const std::string& text);

// The ModelSpec of an imported network; InputError when the label list does not fit the
// network's outputs or the orientation is not a code. Without labels, a file our export wrote
// gives the spec it records (checked as model.json is, and against the file's network; its
// provenance noting the file), and --orientation and --voxel-size are refused there. With
// labels (the recorded ones, in any order), its record too, in its recorded channel order
// (SynthSeg's sorted order is that of published networks only), the frame and voxel size given
// replacing the recorded ones.
ModelSpec keras_model_spec(const KerasUNet& model, const KerasImportOptions& options, const std::string& source);

}  // namespace iss
