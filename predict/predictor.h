// Segmenting a scan with a trained model (SPEC.md section 6, "Predict"), our improvements on:
//   1. reorient to the model's voxel frame (preprocessing.orientation: RAS for models trained
//      here), an exact axis permutation/flip;
//   2. resample (trilinear, centred) only a scan whose voxel size lies outside the range the
//      model was trained on (1% slack), to the nearest bound, axis by axis; back at the end;
//   3. pad (never crop) to a multiple of the model's size multiple, with the image minimum;
//   4. min-max normalise to [0, 1] (optionally after clipping the 0.5 / 99.5 percentiles);
//   5. forward pass, and (default on) the left/right flip: predict on the image mirrored along
//      the frame's left-right axis, mirror the posteriors back swapping left/right channels,
//      average;
//   6. smooth every posterior channel with a Gaussian of sigma 0.5 voxel (3 taps);
//   7. argmax, then keep the largest 6-connected component of the non-background mask (the
//      posteriors stay as they are);
//   8. undo padding, resampling and reorientation: outputs on the input's grid and affine.
// Volumes: per structure the sum of its posterior times the voxel volume (mm^3).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/volume.h"
#include "kernels/common/device.h"
#include "kernels/common/error.h"  // InputError
#include "nn/precision.h"
#include "predict/keras_model.h"

namespace iss {

struct PredictOptions {
    Device device;
    bool flip = true;                // left/right test-time augmentation
    bool resample_to_model = true;   // to the model's voxel size and back
    bool clip_percentiles = false;   // clip intensities to [p0.5, p99.5] before normalising
    // The network's full-resolution level in slabs of this many rows (UNet::predict): the same
    // result within the convolutions' tolerance, in less memory; 0: the whole volume. 32: the
    // network's peak is then the encoder's (951 MB at 155x175x149, as with 16, against 1.44 GB
    // whole), with less of the slabs' halo recomputed than at 16 (docs/PERFORMANCE.md).
    int64_t slab_depth = 32;
    KerasImportOptions keras;        // for a model given as a Keras .h5 file (labels required)
    // The convolutions' arithmetic (nn/precision.h); bf16 runs fp32 where it is not native.
    Precision precision = Precision::fp32;
    // Whether Segmentation::posteriors is filled. Off (`predict` without --post), the posteriors
    // are not turned back to the input's orientation: one volume per class less to allocate and
    // fill (about 0.4 s of a 14 s CPU predict at 128x160x128, docs/PERFORMANCE.md).
    bool keep_posteriors = true;
};

struct Segmentation {
    LabelMap segmentation;             // on the input's grid
    Image posteriors;                  // frames = classes, in label order, on the input's grid
                                       // (empty without PredictOptions::keep_posteriors)
    Image resampled;                   // the normalised image the network saw (its grid)
    bool resampled_to_model = false;   // that grid is at the model's voxel size, not the scan's
    std::vector<double> volumes_mm3;   // per label (background's entry 0)
    // With a grid to segment onto (predict --like): the share of its voxels outside the scan's
    // field of view (posteriors 0, label 0); 0 otherwise.
    double outside_field_of_view = 0;
    // Wall seconds of each stage ("preprocess", "network", "postprocess"), and the bytes the
    // network held at most: its activations' blocks and its convolutions' workspace, which
    // keeps the size of the largest scan so far (the other stages hold a few volumes on the
    // host).
    std::vector<std::pair<std::string, double>> stage_seconds;
    size_t network_peak_bytes = 0;
};

class Predictor {
public:
    // `model`: a .safetensors file (its .json beside it), a directory holding model.safetensors,
    // or a published Keras .h5 model (imported in memory).
    Predictor(const std::string& model, const PredictOptions& options);
    ~Predictor();

    // InputError naming `name` for an image that is not 3-D, is empty, or has other channels
    // than the model expects. `onto`: the outputs on that grid instead of the image's (another
    // scan's of the subject, co-registered by the headers: predict --like), voxels outside the
    // image's field of view with posteriors 0 and label 0; InputError when none is inside.
    Segmentation predict(const Image& image, const std::string& name, const Grid* onto = nullptr);

    const std::vector<int32_t>& labels() const;
    int64_t input_channels() const;  // images per subject (1; 2 for a T1 + T2 model)
    // The model as read: its description and what predict does to a scan (info prints them).
    const ModelSpec& spec() const;
    const Preprocessing& preprocessing() const;

private:
    void onto_grid(Image post, const std::vector<uint8_t>& outside, const Grid& onto, const Image& seen,
                   const std::string& name, Segmentation& out);

    struct State;
    std::unique_ptr<State> state_;
};

// A warning when the scan's largest extent is below 1 cm or above 2 m: a header in the wrong units
// (microns for mm) resamples a head to a few voxels, which segments as nothing. Another when it
// is one or two slices thick along an axis (a 2-D file).
void warn_if_not_head_sized(const Grid& grid, const std::string& name);
// A warning when a scan holds at most 64 distinct values, all whole numbers: a label map or a
// mask given as a scan (a folder holding segmentations beside the scans), which segments as
// nonsense without a word otherwise.
void warn_if_a_label_map(const Image& image, const std::string& name);
// A warning when the segmentation is background alone and the normalised image was not constant
// (which has its own): a hot spot that squeezed a scan into a sliver of [0, 1] gave an empty
// segmentation, exit 0, with the range's warning alone.
void warn_if_no_structure(const LabelMap& seg, const Image& normalised, const std::string& name);

// The model itself fails (its output is not a number): a folder's run stops at the first scan
// unless the model has segmented one already (bad input: exit 2).
class ModelFailure : public InputError {
public:
    explicit ModelFailure(const std::string& what) : InputError(what) {}
};

// What a segmentation holds at once, for require_memory_to_segment.
struct SegmentationSizes {
    Grid scan;                  // the scan as read (it and its copy in the model's frame stay)
    Grid work;                  // the model's grid: the scan's, or resampled to the model's voxel size
    double padded_voxels = 0;   // `work` padded to the network's size multiple (0: as `work`)
    bool flip = false;          // a mirrored copy of the padded image goes through the network too
    Grid own;                   // where the posteriors go back to: the scan's grid, or --like's
    bool resampled = false;     // `own` is not `work`
    bool onto_another = false;  // `own` is --like's grid
    int64_t channels = 1, classes = 2;
    double network_bytes = 0;  // network_bytes_to_segment (nn/unet.h); 0 on a GPU
};

// Sizes that come from a header (a scan of 1000 mm voxels resampled to 1 mm, a huge grid) are
// checked against the memory a segmentation takes before anything is allocated: the images (the
// scan and its copy in the model's frame, on `work`, and padded, twice with flip), the network's
// own bytes, its probabilities on the padded grid (a 97^3 scan's 128^3 of them peaked 250 MB
// above an estimate that counted them unpadded, and a model's size multiple of 256 made a
// 30x34x28 scan's 2.3 GB), the smoothed posteriors on `work` and their reoriented copy, and, when
// resampled, the posteriors brought back to the scan's own grid and their copy (a 400^3 scan of
// 0.25 mm voxels segmented at 1 mm peaked at 18 GB there, which the check left out). InputError
// naming `name` when the sum passes 80% of `host_bytes`.
void require_memory_to_segment(const std::string& name, const SegmentationSizes& sizes, size_t host_bytes);

// "dir" -> "dir/model.safetensors"; a file path is returned as is.
std::string resolve_model_path(const std::string& model);

}  // namespace iss
