#include "tests/ref/resample.h"

#include <algorithm>
#include <cmath>

namespace iss::ref {

namespace {

// Value of source voxel (i, j, k) in frame t, with the out-of-bounds rule applied.
double source_value(const Image& src, int64_t i, int64_t j, int64_t k, int64_t t, bool clamp, double fill) {
    const int64_t n[3] = {src.nx(), src.ny(), src.nz()};
    int64_t idx[3] = {i, j, k};
    for (int d = 0; d < 3; ++d) {
        if (idx[d] >= 0 && idx[d] < n[d]) continue;
        if (!clamp) return fill;
        idx[d] = std::min(std::max(idx[d], int64_t(0)), n[d] - 1);
    }
    return double(src.at(idx[0], idx[1], idx[2], t));
}

}  // namespace

std::vector<double> resample_linear(const Image& src, const Mat4& t, const std::array<int64_t, 3>& dst_dim,
                                    bool clamp, double fill) {
    const int64_t count = dst_dim[0] * dst_dim[1] * dst_dim[2];
    std::vector<double> out(size_t(count * src.frames));
    const int64_t n[3] = {src.nx(), src.ny(), src.nz()};
    for (int64_t f = 0; f < src.frames; ++f)
        for (int64_t k = 0; k < dst_dim[2]; ++k)
            for (int64_t j = 0; j < dst_dim[1]; ++j)
                for (int64_t i = 0; i < dst_dim[0]; ++i) {
                    std::array<double, 3> p = t.apply(double(i), double(j), double(k));
                    // Clamping coordinates to [0, n-1] is the same as repeating the edge voxel.
                    if (clamp)
                        for (int d = 0; d < 3; ++d) p[d] = std::min(std::max(p[d], 0.0), double(n[d] - 1));
                    const double fx = std::floor(p[0]), fy = std::floor(p[1]), fz = std::floor(p[2]);
                    const double wx = p[0] - fx, wy = p[1] - fy, wz = p[2] - fz;
                    double sum = 0;
                    for (int c = 0; c < 8; ++c) {
                        const int ux = c & 1, uy = (c >> 1) & 1, uz = (c >> 2) & 1;
                        const double w = (ux ? wx : 1 - wx) * (uy ? wy : 1 - wy) * (uz ? wz : 1 - wz);
                        if (w == 0) continue;  // a zero-weight corner may lie outside: it does not count
                        sum += w * source_value(src, int64_t(fx) + ux, int64_t(fy) + uy, int64_t(fz) + uz, f, clamp,
                                                fill);
                    }
                    out[size_t(f * count + (k * dst_dim[1] + j) * dst_dim[0] + i)] = sum;
                }
    return out;
}

template <class T>
std::vector<T> resample_nearest(const Volume<T>& src, const Mat4& t, const std::array<int64_t, 3>& dst_dim,
                                bool clamp, T fill) {
    const int64_t count = dst_dim[0] * dst_dim[1] * dst_dim[2];
    std::vector<T> out(size_t(count * src.frames));
    const int64_t n[3] = {src.nx(), src.ny(), src.nz()};
    for (int64_t f = 0; f < src.frames; ++f)
        for (int64_t k = 0; k < dst_dim[2]; ++k)
            for (int64_t j = 0; j < dst_dim[1]; ++j)
                for (int64_t i = 0; i < dst_dim[0]; ++i) {
                    const std::array<double, 3> p = t.apply(double(i), double(j), double(k));
                    int64_t idx[3];
                    bool inside = true;
                    for (int d = 0; d < 3; ++d) {
                        const double base = std::floor(p[d]);
                        idx[d] = int64_t(base) + (p[d] - base >= 0.5 ? 1 : 0);
                        if (clamp) idx[d] = std::min(std::max(idx[d], int64_t(0)), n[d] - 1);
                        inside = inside && idx[d] >= 0 && idx[d] < n[d];
                    }
                    out[size_t(f * count + (k * dst_dim[1] + j) * dst_dim[0] + i)] =
                        inside ? src.at(idx[0], idx[1], idx[2], f) : fill;
                }
    return out;
}

template std::vector<float> resample_nearest(const Image&, const Mat4&, const std::array<int64_t, 3>&, bool, float);
template std::vector<int32_t> resample_nearest(const LabelMap&, const Mat4&, const std::array<int64_t, 3>&, bool,
                                               int32_t);

}  // namespace iss::ref
