// Parameters of the synthetic generator (SPEC.md section 3) with the published presets:
// `infant-t1` and `infant-t2` (infant label lists, fused classes, T1/T2 priors mixed with random
// contrast, no flip) and `synthseg` (uniform random contrast, flipping on). A JSON file
// overrides any field by name; `synth --print-config` shows the effective values.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/file_util.h"

namespace iss {

// The preset of a command given neither --preset nor a config naming one.
inline constexpr const char* default_preset = "infant-t1";
// The largest crop side (voxels) a configuration or --shape may ask for: 4096^3 voxels are 250 GiB
// an image; beyond it a crop's sizes overflowed before the memory check could refuse them.
inline constexpr int64_t max_crop_side = 4096;

struct GeneratorConfig {
    std::string preset = default_preset;

    // Labels (SPEC.md section 1). segmentation_labels are the network's outputs, one channel
    // each. output_labels (SynthSeg's per-label segmentation_labels.npy), when given, holds the
    // label each generation label is learned as (0: background; lesions 25 and 57 as 2 and 41,
    // say); when empty, a generation label is learned as itself where it is a segmentation label
    // and as background elsewhere.
    std::vector<int32_t> generation_labels;
    std::vector<int32_t> segmentation_labels;
    std::vector<int32_t> output_labels;
    std::vector<std::vector<int32_t>> fused_classes;
    // Sides of labels numbered otherwise than FreeSurfer's (labels::DeclaredTwins): [left, right]
    // pairs that a flip swaps and predict's mirror averaging pairs, [label, label] for one on
    // neither side. Empty: FreeSurfer's numbers (an infant atlas's own must be declared for flips).
    std::vector<std::vector<int32_t>> lr_twins;
    double use_generation_classes = 0.5;  // probability per sample of using the fused classes

    // Intensities (section 2). Priors are (2, n_generation_labels) row-major: row 0 the mean
    // of the normal each class parameter is drawn from, row 1 its std.
    std::vector<double> prior_means;
    std::vector<double> prior_stds;
    bool mix_prior_and_random = true;          // with probability 0.5 ignore the priors
    std::array<double, 2> random_mean = {25, 225};  // U(a, b) when random
    std::array<double, 2> random_std = {5, 25};

    // Spatial transform (section 3.2): scaling, rotation and shearing act in mm (on a map of
    // anisotropic voxels too); translation and the displacement field count the map's voxels.
    std::array<int64_t, 3> output_shape = {160, 160, 160};  // requested crop, clipped and rounded
    int shape_multiple = 32;                                 // 2^levels of the U-Net
    bool pad_when_smaller = false;                           // improvement: pad instead of shrinking
    double scaling_bounds = 0.15;                            // s ~ U(1 - b, 1 + b)
    double rotation_bounds = 15;                             // degrees, U(-b, b) per axis
    double shearing_bounds = 0.012;
    double translation_bounds = 0;                           // voxels, U(-b, b); the reference: none

    double nonlin_std = 3.0;                                 // sigma ~ U(0, nonlin_std), voxels
    double nonlin_shape_factor = 0.04;                       // velocity grid = ceil(f * shape)
    int integration_steps = 7;                               // scaling and squaring
    bool rescale_velocity = false;  // reference: displacements stay in small-grid units
    double flip_probability = 0;    // left/right flip with label swap (infant: off)

    // Resolution (section 3.6). Infant preset: acquisition = map resolution, so the blur
    // sigma is blur_sigma (0.5 voxel) times U(1/blur_range, blur_range) per axis.
    double blur_sigma = 0.5;
    double blur_range = 1.03;
    double background_reset_probability = 0.2;
    // Optional (SynthSeg 2.0 style, drawn as its SampleResolution draws): a random acquisition
    // resolution per axis, its bounds in resolution_unit: "mm" (SynthSeg 2.0's, SPEC.md 3.6) or
    // "voxel" (the map's voxels; what records from before 2026-12-06 mean). On an axis of
    // voxel size a (1 for "voxel"), r below is the resolution in the map's voxels: with
    // probability anisotropic_probability one random axis gets r ~ U(1, max_anisotropic / a)
    // and the others 1, else every axis r ~ U(1, max_isotropic / a), each its own (2.0's
    // "isotropic" case draws the axes independently); then, with probability
    // full_resolution_probability, every axis r = 1 after all (a bound under a keeps r = 1).
    // Slice thickness ~ U(1, r) when randomise_thickness (else r). Sigma = 0.75 * min(r,
    // thickness) where r > 1, then the image is downsampled to int(n / r) voxels by nearest
    // neighbour and resampled back to the output grid trilinearly. As in SynthSeg 2.0, the
    // blurred axes' window is that of the largest sigma a sample can draw on that axis, and
    // there is no background reset (here it would come after the resampling).
    bool randomise_resolution = false;
    double max_isotropic = 4;
    double max_anisotropic = 8;
    std::string resolution_unit = "mm";
    double anisotropic_probability = 0.9;       // 2.0: 1 - prob_iso (0.1)
    double full_resolution_probability = 0.05;  // 2.0: prob_min
    bool randomise_thickness = true;

    // Bias field (section 3.7).
    double bias_field_std = 0.5;
    double bias_shape_factor = 0.025;

    // Intensity augmentation (section 3.8).
    double clip_max = 300;
    double gamma_std = 0.5;
};

// Which preset a configuration starts from: the one a user asked for (--preset; "" for none),
// else a JSON file's "preset" field, else `otherwise` (a resumed model's recorded preset, or
// default_preset). A file naming another preset than the one asked for is an InputError.
struct PresetChoice {
    std::string asked;
    std::string otherwise = default_preset;

    // The preset to start from, `named` being the file's field ("" for none or no file).
    std::string base(const std::string& named = "") const {
        return !asked.empty() ? asked : !named.empty() ? named : otherwise;
    }
};

// The named preset; InputError for an unknown name (the message lists the known ones).
GeneratorConfig preset_config(const std::string& name);

// Overrides fields of the preset `preset` chooses from a JSON file; InputError naming the file
// for unreadable JSON, an unknown field, a value of the wrong type or a preset other than the
// one asked for.
GeneratorConfig load_config(const PresetChoice& preset, const std::string& json_path);
// The labels of the columns of prior .npy files, which `priors` writes beside them: a
// configuration naming such a file by path gives each generation label its own column, found by
// value (a list in another order than generation_labels' painted labels with others' priors).
// Files without one (SynthSeg's) are taken column by column in generation_labels' order.
constexpr const char* prior_labels_file_name = "prior_labels.npy";
// The prior_labels.npy beside a prior .npy file, or, where none is, beside the file a link
// leads to (a link to another run's priors takes that run's list).
std::string prior_labels_beside(const std::string& prior_file);

// A --config file and the .npy files it names (prior_labels.npy beside a prior file too): the
// inputs a command must not overwrite (check_outputs); none for "".
std::vector<NamedPath> config_inputs(const std::string& json_path);
// The same from JSON text (a model.json's recorded generator); messages name `source`, and a
// prior .npy path is read relative to the folder `source` names, as for a file.
GeneratorConfig parse_config(const PresetChoice& preset, const std::string& json_text, const std::string& source);

// Checks consistency (prior shapes match the label list, bounds are ordered, probabilities in
// [0, 1], ...); InputError naming `source` and the field.
void validate_config(const GeneratorConfig& config, const std::string& source);

// The label each generation label is learned as (output_labels, or the rule it defaults to).
std::vector<int32_t> target_labels(const GeneratorConfig& config);

// The blur's window for a sigma (voxels) and the range of its random coefficient: 2.5 sigma
// times the range, rounded up (SPEC.md 3.6); floor(window / 2) taps each side. One rule for the
// samples and for the configuration's check that they fit the kernels.
double blur_window(double sigma, double blur_range);

// The largest bound a sample's random resolution can draw (in resolution_unit), 0 for none: a
// bound counts only where it can be drawn (anisotropic_probability 0: never the anisotropic
// one; full_resolution_probability 1: neither).
double largest_random_bound(const GeneratorConfig& config);
// The largest resolution (map voxels) whose blur, 0.75 r with the blur_range, the kernels' taps
// hold (max_blur_half_width each side): about 17 at the default range. beyond_blur_reach: whether
// a resolution's window would pass them.
double largest_blurred_resolution(const GeneratorConfig& config);
bool beyond_blur_reach(const GeneratorConfig& config, double resolution);
// The bound a resolution drawn on an axis of voxel size `voxel_mm` has, in map voxels, at least
// 1: `bound` in the configuration's resolution_unit; in mm, at most largest_blurred_resolution
// (a map finer than the bound over it is drawn up to what the blur reaches; load_training_maps
// says so), in voxels checked against it with the configuration.
double resolution_in_voxels(const GeneratorConfig& config, double bound, double voxel_mm);
// The largest resolution a sample can draw on an axis of voxel size `voxel_mm`, in map voxels.
double largest_random_resolution(const GeneratorConfig& config, double voxel_mm);

std::string config_to_json(const GeneratorConfig& config);

}  // namespace iss
