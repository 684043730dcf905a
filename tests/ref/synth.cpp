#include "tests/ref/synth.h"

#include <algorithm>
#include <cmath>

namespace iss::ref {

void sample_clamped(const std::vector<double>& field, const Dim3& dim, int channels, const double p[3], double* out) {
    int64_t lo[3], hi[3];
    double w[3];
    for (int d = 0; d < 3; ++d) {
        const double q = std::min(std::max(p[d], 0.0), double(dim[size_t(d)] - 1));
        lo[d] = int64_t(std::floor(q));
        hi[d] = std::min(lo[d] + 1, dim[size_t(d)] - 1);
        w[d] = q - double(lo[d]);
    }
    for (int c = 0; c < channels; ++c) out[c] = 0;
    for (int corner = 0; corner < 8; ++corner) {
        double weight = 1;
        int64_t at[3];
        for (int d = 0; d < 3; ++d) {
            const bool upper = (corner >> d) & 1;
            at[d] = upper ? hi[d] : lo[d];
            weight *= upper ? w[d] : 1 - w[d];
        }
        const size_t base = size_t(((at[2] * dim[1] + at[1]) * dim[0] + at[0]) * channels);
        for (int c = 0; c < channels; ++c) out[c] += weight * field[base + size_t(c)];
    }
}

std::vector<double> resize_field(const std::vector<double>& src, const Dim3& src_dim, const Dim3& dst_dim,
                                 int channels, const std::array<double, 3>& scale) {
    std::vector<double> out(size_t(dst_dim[0] * dst_dim[1] * dst_dim[2] * channels));
    for (int64_t k = 0; k < dst_dim[2]; ++k)
        for (int64_t j = 0; j < dst_dim[1]; ++j)
            for (int64_t i = 0; i < dst_dim[0]; ++i) {
                const double p[3] = {double(i) * double(src_dim[0]) / double(dst_dim[0]),
                                     double(j) * double(src_dim[1]) / double(dst_dim[1]),
                                     double(k) * double(src_dim[2]) / double(dst_dim[2])};
                double* o = &out[size_t(((k * dst_dim[1] + j) * dst_dim[0] + i) * channels)];
                sample_clamped(src, src_dim, channels, p, o);
                for (int c = 0; c < channels; ++c) o[c] *= scale[size_t(std::min(c, 2))];
            }
    return out;
}

std::vector<double> integrate(std::vector<double> v, const Dim3& dim, int steps) {
    for (double& x : v) x /= std::pow(2.0, steps);
    for (int s = 0; s < steps; ++s) {
        std::vector<double> next(v.size());
        for (int64_t k = 0; k < dim[2]; ++k)
            for (int64_t j = 0; j < dim[1]; ++j)
                for (int64_t i = 0; i < dim[0]; ++i) {
                    const size_t at = size_t(((k * dim[1] + j) * dim[0] + i) * 3);
                    const double p[3] = {double(i) + v[at], double(j) + v[at + 1], double(k) + v[at + 2]};
                    double w[3];
                    sample_clamped(v, dim, 3, p, w);
                    for (int c = 0; c < 3; ++c) next[at + size_t(c)] = v[at + size_t(c)] + w[c];
                }
        v.swap(next);
    }
    return v;
}

std::vector<uint8_t> deform(const std::vector<uint8_t>& map, const std::vector<double>* field, const DeformSpec& s,
                            const std::vector<uint8_t>& twin) {
    std::vector<uint8_t> out(size_t(s.out_dim[0] * s.out_dim[1] * s.out_dim[2]));
    for (int64_t k = 0; k < s.out_dim[2]; ++k)
        for (int64_t j = 0; j < s.out_dim[1]; ++j)
            for (int64_t i = 0; i < s.out_dim[0]; ++i) {
                int64_t q[3] = {i, j, k};
                if (s.flip_axis >= 0) q[s.flip_axis] = s.out_dim[size_t(s.flip_axis)] - 1 - q[s.flip_axis];
                double x[3], phi[3] = {0, 0, 0}, c[3];
                for (int d = 0; d < 3; ++d) x[d] = double(q[d] + s.offset[size_t(d)]);
                if (field) {
                    const double p[3] = {x[0] * double(s.field_dim[0]) / double(s.map_dim[0]),
                                         x[1] * double(s.field_dim[1]) / double(s.map_dim[1]),
                                         x[2] * double(s.field_dim[2]) / double(s.map_dim[2])};
                    sample_clamped(*field, s.field_dim, 3, p, phi);
                }
                for (int d = 0; d < 3; ++d) c[d] = x[d] - double(s.map_dim[size_t(d)] - 1) / 2 + phi[d] * s.field_scale[size_t(d)];
                int64_t src[3];
                for (int r = 0; r < 3; ++r) {
                    const double pos = s.affine[r][0] * c[0] + s.affine[r][1] * c[1] + s.affine[r][2] * c[2] +
                                       double(s.map_dim[size_t(r)] - 1) / 2 + s.translation[size_t(r)];
                    src[r] = std::min(std::max(int64_t(std::floor(pos + 0.5)), int64_t(0)), s.map_dim[size_t(r)] - 1);
                }
                uint8_t g = map[size_t((src[2] * s.map_dim[1] + src[1]) * s.map_dim[0] + src[0])];
                if (s.flip_axis >= 0) g = twin[g];
                out[size_t((k * s.out_dim[1] + j) * s.out_dim[0] + i)] = g;
            }
    return out;
}

std::vector<double> blur(const std::vector<double>& image, const Dim3& dim, const std::array<double, 3>& sigma, int h) {
    std::vector<double> current = image;
    for (int axis = 0; axis < 3; ++axis) {
        std::vector<double> taps(size_t(2 * h + 1));
        double total = 0;
        for (int t = -h; t <= h; ++t) total += taps[size_t(t + h)] = std::exp(-0.5 * t * t / (sigma[size_t(axis)] * sigma[size_t(axis)]));
        for (double& t : taps) t /= total;
        std::vector<double> next(current.size(), 0.0);
        for (int64_t k = 0; k < dim[2]; ++k)
            for (int64_t j = 0; j < dim[1]; ++j)
                for (int64_t i = 0; i < dim[0]; ++i) {
                    int64_t q[3] = {i, j, k};
                    double sum = 0;
                    for (int t = -h; t <= h; ++t) {
                        int64_t r[3] = {q[0], q[1], q[2]};
                        r[axis] += t;
                        if (r[axis] < 0 || r[axis] >= dim[size_t(axis)]) continue;
                        sum += taps[size_t(t + h)] * current[size_t((r[2] * dim[1] + r[1]) * dim[0] + r[0])];
                    }
                    next[size_t((k * dim[1] + j) * dim[0] + i)] = sum;
                }
        current.swap(next);
    }
    return current;
}

}  // namespace iss::ref
