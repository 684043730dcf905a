// The per-sample random draws of the generator (SPEC.md section 3), made on the host from the
// configuration and keyed by (seed, sample number), so that any sample can be regenerated
// alone and the CPU and CUDA pipelines receive identical parameters. The per-voxel draws
// (GMM noise) happen in the kernels, keyed the same way.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "synth/config.h"

namespace iss {

// Random-stream purposes: one per kind of draw, so streams never overlap.
enum RandomPurpose : uint32_t {
    purpose_label_map = 1,
    purpose_affine = 2,
    purpose_velocity = 3,
    purpose_crop = 4,
    purpose_flip = 5,
    purpose_classes = 6,
    purpose_contrast = 7,
    purpose_blur = 8,
    purpose_bias = 9,
    purpose_gamma = 10,
    purpose_gmm_noise = 11,
};

// The crop shape for a label map: the request clipped to the map (unless padding is asked
// for), rounded down to a multiple of `shape_multiple` (at least one multiple).
std::array<int64_t, 3> crop_shape(const GeneratorConfig& config, const std::array<int64_t, 3>& map_shape);

struct SampleParams {
    uint32_t sample = 0;
    int map_index = 0;  // which training label map

    std::array<int64_t, 3> map_shape{};
    std::array<int64_t, 3> out_shape{};
    std::array<int64_t, 3> crop_offset{};  // may be negative when padding a small map

    // Linear part A = R3 R2 R1 Sh Sc (row-major), drawn in mm and applied to centred voxel
    // coordinates as S^-1 A S (S the map's voxel sizes; A itself on isotropic voxels).
    double affine[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    double translation[3] = {0, 0, 0};  // voxels, added after the linear part
    // Stationary velocity field on a coarse grid, channels last (x, y, z components).
    std::array<int64_t, 3> velocity_shape{};     // ceil(nonlin_shape_factor * map_shape)
    std::array<int64_t, 3> integration_shape{};  // max(floor(map_shape / 2), velocity_shape)
    float velocity_std = 0;
    std::vector<float> velocity;  // velocity_shape voxels x 3

    bool flip = false;
    int flip_axis = 0;  // voxel axis closest to left-right

    bool use_classes = false;
    bool random_contrast = false;  // U(random_mean) / U(random_std) instead of the priors
    std::vector<float> mean;  // per generation index (class values already spread to labels)
    std::vector<float> std;

    std::array<float, 3> resolution{1, 1, 1};  // acquisition resolution in the map's voxels (1: none)
    std::array<float, 3> blur_sigma{};         // voxels, per axis
    std::array<int, 3> blur_half_width{};      // taps -h..h, per axis
    bool reset_background = false;

    std::array<int64_t, 3> bias_shape{};  // ceil(bias_shape_factor * out_shape)
    std::vector<float> bias;              // bias_shape voxels
    float gamma = 1;                      // exponent exp(N(0, gamma_std))
};

// What a sample's draws need to know of a training map.
struct MapGeometry {
    std::array<int64_t, 3> shape{};
    int lr_axis = 0;                          // the left-right voxel axis (for flips)
    std::array<double, 3> voxel_mm{1, 1, 1};  // per axis (a random resolution in mm counts them)
};

// Draws every per-sample parameter; `maps` describes the training maps a sample picks from.
SampleParams draw_sample_params(const GeneratorConfig& config, uint64_t seed, uint32_t sample,
                                const std::vector<MapGeometry>& maps);

// Class index of every generation index: itself, or the first label of its fused group when
// `use_classes`.
std::vector<int> generation_classes(const GeneratorConfig& config, bool use_classes);

}  // namespace iss
