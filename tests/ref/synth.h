// Independent double-precision references for the generator's stages, written from SPEC.md
// section 3 with plain loops; they never call the kernel bodies.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace iss::ref {

using Dim3 = std::array<int64_t, 3>;

// Trilinear sample of a channels-last field with the position clamped to the volume.
void sample_clamped(const std::vector<double>& field, const Dim3& dim, int channels, const double p[3], double* out);

// The reference's resize: output x samples the source at x * src / dst, values times scale.
std::vector<double> resize_field(const std::vector<double>& src, const Dim3& src_dim, const Dim3& dst_dim,
                                 int channels, const std::array<double, 3>& scale);

// Scaling and squaring: v <- v / 2^steps, then `steps` times v <- v + v(x + v).
std::vector<double> integrate(std::vector<double> v, const Dim3& dim, int steps);

struct DeformSpec {
    Dim3 map_dim{}, field_dim{}, out_dim{};
    std::array<int64_t, 3> offset{};
    double affine[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    std::array<double, 3> field_scale{1, 1, 1};
    std::array<double, 3> translation{0, 0, 0};
    int flip_axis = -1;
};

// Generation index at every output voxel; `twin` maps an index to its left/right twin.
std::vector<uint8_t> deform(const std::vector<uint8_t>& map, const std::vector<double>* field, const DeformSpec& spec,
                            const std::vector<uint8_t>& twin);

// Separable Gaussian blur, zero outside, normalised taps at offsets -h..h.
std::vector<double> blur(const std::vector<double>& image, const Dim3& dim, const std::array<double, 3>& sigma, int h);

}  // namespace iss::ref
