#include "synth/sample_params.h"

#include <algorithm>
#include <cmath>

#include "kernels/common/error.h"
#include "kernels/common/philox.h"
#include "synth/labels.h"

namespace iss {
namespace {

// Sequential draws from one keyed stream: one Philox block per draw (host-side, a few hundred
// draws per sample, so simplicity beats throughput).
class Draws {
public:
    Draws(uint64_t seed, uint32_t sample, RandomPurpose purpose) : key_{seed, sample, uint32_t(purpose)} {}

    double uniform(double low, double high) {
        const Philox4 r = random_bits(key_, next_++);
        return low + (high - low) * double(uniform_open(r.v[0]));
    }
    double normal(double mean, double std) {
        const Philox4 r = random_bits(key_, next_++);
        return mean + std * double(box_muller(r.v[0], r.v[1]).z0);
    }
    // Uniform integer in [0, n).
    int64_t below(int64_t n) {
        const Philox4 r = random_bits(key_, next_++);
        const uint64_t wide = uint64_t(r.v[0]) << 32 | r.v[1];
        return n <= 1 ? 0 : int64_t(wide % uint64_t(n));
    }

private:
    RandomKey key_;
    uint64_t next_ = 0;
};

using Mat3 = std::array<std::array<double, 3>, 3>;

Mat3 multiply(const Mat3& a, const Mat3& b) {
    Mat3 out{};
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
            for (int k = 0; k < 3; ++k) out[r][c] += a[r][k] * b[k][c];
    return out;
}

// Rotation by `angle` radians about voxel axis `axis`.
Mat3 rotation(int axis, double angle) {
    const double c = std::cos(angle), s = std::sin(angle);
    const int p = (axis + 1) % 3, q = (axis + 2) % 3;
    Mat3 r{};
    r[axis][axis] = 1;
    r[p][p] = c;
    r[p][q] = -s;
    r[q][p] = s;
    r[q][q] = c;
    return r;
}

int64_t ceil_times(double factor, int64_t n) { return std::max<int64_t>(1, int64_t(std::ceil(factor * double(n) - 1e-9))); }

}  // namespace

std::array<int64_t, 3> crop_shape(const GeneratorConfig& config, const std::array<int64_t, 3>& map_shape) {
    std::array<int64_t, 3> shape{};
    const int64_t m = config.shape_multiple;
    for (int a = 0; a < 3; ++a) {
        const int64_t wanted = config.pad_when_smaller ? config.output_shape[size_t(a)]
                                                       : std::min(config.output_shape[size_t(a)], map_shape[size_t(a)]);
        shape[size_t(a)] = std::max<int64_t>(m, wanted / m * m);
    }
    return shape;
}

std::vector<int> generation_classes(const GeneratorConfig& config, bool use_classes) {
    const auto& labels = config.generation_labels;
    std::vector<int> classes(labels.size());
    for (size_t g = 0; g < labels.size(); ++g) {
        classes[g] = int(g);
        if (!use_classes) continue;
        for (const auto& group : config.fused_classes)
            if (std::find(group.begin(), group.end(), labels[g]) != group.end())
                classes[g] = labels::index_of(labels, group.front());
    }
    return classes;
}

SampleParams draw_sample_params(const GeneratorConfig& config, uint64_t seed, uint32_t sample,
                                const std::vector<MapGeometry>& maps) {
    ISS_REQUIRE(!maps.empty(), "draw_sample_params: no label maps");
    SampleParams p;
    p.sample = sample;
    p.map_index = int(Draws(seed, sample, purpose_label_map).below(int64_t(maps.size())));
    const MapGeometry& map = maps[size_t(p.map_index)];
    p.map_shape = map.shape;
    p.out_shape = crop_shape(config, p.map_shape);

    // Affine: scaling, shearing, then rotations about the first, second and third axis.
    Draws affine(seed, sample, purpose_affine);
    Mat3 scale{}, shear{};
    for (int a = 0; a < 3; ++a) scale[a][a] = affine.uniform(1 - config.scaling_bounds, 1 + config.scaling_bounds);
    Mat3 rot[3];
    for (int a = 0; a < 3; ++a) {
        const double degrees = affine.uniform(-config.rotation_bounds, config.rotation_bounds);
        rot[a] = rotation(a, degrees * M_PI / 180.0);
    }
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
            shear[r][c] = r == c ? 1.0 : affine.uniform(-config.shearing_bounds, config.shearing_bounds);
    for (int d = 0; d < 3; ++d) p.translation[d] = affine.uniform(-config.translation_bounds, config.translation_bounds);
    const Mat3 a = multiply(rot[2], multiply(rot[1], multiply(rot[0], multiply(shear, scale))));
    // The transform acts in mm: on voxel offsets it is S^-1 A S, S the voxel sizes, else a rotation
    // of a map of anisotropic voxels shears and stretches its anatomy (on isotropic voxels the
    // ratios are exactly 1, and A is used as drawn).
    for (size_t r = 0; r < 3; ++r)
        for (size_t c = 0; c < 3; ++c) p.affine[r][c] = a[r][c] * (map.voxel_mm[c] / map.voxel_mm[r]);

    // Velocity field: sigma ~ U(0, nonlin_std), entries N(0, sigma).
    Draws velocity(seed, sample, purpose_velocity);
    for (int d = 0; d < 3; ++d) {
        p.velocity_shape[size_t(d)] = ceil_times(config.nonlin_shape_factor, p.map_shape[size_t(d)]);
        p.integration_shape[size_t(d)] = std::max(p.map_shape[size_t(d)] / 2, p.velocity_shape[size_t(d)]);
    }
    p.velocity_std = float(velocity.uniform(0, config.nonlin_std));
    p.velocity.resize(size_t(p.velocity_shape[0] * p.velocity_shape[1] * p.velocity_shape[2] * 3));
    for (float& v : p.velocity) v = float(velocity.normal(0, p.velocity_std));

    // Crop offset: uniform over the positions that keep the crop inside the map, or (when
    // padding a smaller map) the map inside the crop.
    Draws crop(seed, sample, purpose_crop);
    for (int d = 0; d < 3; ++d) {
        const int64_t slack = p.map_shape[size_t(d)] - p.out_shape[size_t(d)];
        const int64_t low = std::min<int64_t>(0, slack), high = std::max<int64_t>(0, slack);
        p.crop_offset[size_t(d)] = low + crop.below(high - low + 1);
    }

    Draws flip(seed, sample, purpose_flip);
    p.flip = flip.uniform(0, 1) < config.flip_probability;
    p.flip_axis = map.lr_axis;

    // Contrast: fused classes or not, then priors or random per class.
    Draws classes(seed, sample, purpose_classes);
    p.use_classes = classes.uniform(0, 1) < config.use_generation_classes;
    const std::vector<int> class_of = generation_classes(config, p.use_classes);
    const size_t n = config.generation_labels.size();
    const bool have_priors = !config.prior_means.empty();
    Draws contrast(seed, sample, purpose_contrast);
    p.random_contrast = !have_priors || (config.mix_prior_and_random && contrast.uniform(0, 1) < 0.5);
    std::vector<double> class_mean(n), class_std(n);
    for (size_t k = 0; k < n; ++k) {
        if (p.random_contrast) {
            class_mean[k] = contrast.uniform(config.random_mean[0], config.random_mean[1]);
            class_std[k] = contrast.uniform(config.random_std[0], config.random_std[1]);
        } else {
            class_mean[k] = std::max(0.0, contrast.normal(config.prior_means[k], config.prior_means[n + k]));
            class_std[k] = std::max(0.0, contrast.normal(config.prior_stds[k], config.prior_stds[n + k]));
        }
    }
    p.mean.resize(n);
    p.std.resize(n);
    for (size_t g = 0; g < n; ++g) {
        p.mean[g] = float(class_mean[size_t(class_of[g])]);
        p.std[g] = float(class_std[size_t(class_of[g])]);
    }

    // Resolution and blur: the window is fixed by the configuration and the map (the base sigma
    // and the range, or on resampled axes the largest sigma a sample can draw there); the sigma
    // itself varies by the random coefficient.
    Draws blur(seed, sample, purpose_blur);
    std::array<double, 3> base_sigma{config.blur_sigma, config.blur_sigma, config.blur_sigma};
    if (config.randomise_resolution) {
        auto up_to = [&](double bound, size_t axis) {
            return float(blur.uniform(1, resolution_in_voxels(config, bound, map.voxel_mm[axis])));
        };
        if (blur.uniform(0, 1) < config.anisotropic_probability) {
            const size_t axis = size_t(blur.below(3));
            p.resolution[axis] = up_to(config.max_anisotropic, axis);
        } else {
            for (size_t d = 0; d < 3; ++d) p.resolution[d] = up_to(config.max_isotropic, d);
        }
        if (blur.uniform(0, 1) < config.full_resolution_probability) p.resolution.fill(1);
        for (int d = 0; d < 3; ++d) {
            const double r = p.resolution[size_t(d)];
            const double thickness = config.randomise_thickness ? blur.uniform(1, r) : r;
            if (r > 1) base_sigma[size_t(d)] = 0.75 * std::min(r, thickness);
        }
    }
    // With a random resolution the window is the one of the largest sigma a sample can draw, on
    // the blurred axes, as SynthSeg 2.0's DynamicGaussianBlur sizes it: a window from the drawn
    // sigma (2.5 sigma wide) would cut its Gaussian at +-1.25 sigma, a weaker blur than 2.0's.
    for (size_t d = 0; d < 3; ++d) {
        p.blur_sigma[d] = float(base_sigma[d] * blur.uniform(1.0 / config.blur_range, config.blur_range));
        const bool resampled = p.resolution[d] > 1;
        // The largest sigma bounds the drawn one (and is what fits the kernels' taps: a resolution
        // stored as float may round up past its bound).
        const double sigma = resampled ? 0.75 * largest_random_resolution(config, map.voxel_mm[d]) : base_sigma[d];
        p.blur_half_width[d] = int(blur_window(sigma, config.blur_range)) / 2;
    }
    // The reset is fused into the bias pass, which comes after a random resolution's resampling:
    // there it would put full-resolution background edges into a low-resolution image.
    // SynthSeg 2.0, whose option that is, resets nothing; neither do we then.
    const bool reset = blur.uniform(0, 1) < config.background_reset_probability;
    p.reset_background = reset && !config.randomise_resolution;

    Draws bias(seed, sample, purpose_bias);
    for (int d = 0; d < 3; ++d) p.bias_shape[size_t(d)] = ceil_times(config.bias_shape_factor, p.out_shape[size_t(d)]);
    const double bias_std = bias.uniform(0, config.bias_field_std);
    p.bias.resize(size_t(p.bias_shape[0] * p.bias_shape[1] * p.bias_shape[2]));
    for (float& b : p.bias) b = float(bias.normal(0, bias_std));

    p.gamma = float(std::exp(Draws(seed, sample, purpose_gamma).normal(0, config.gamma_std)));
    return p;
}

}  // namespace iss
