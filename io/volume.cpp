#include "io/volume.h"

#include <cmath>
#include <set>

#include "kernels/common/error.h"

namespace iss {

std::string dims_text(const std::array<int64_t, 3>& dim) { return cat(dim[0], "x", dim[1], "x", dim[2]); }

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string tuple;
    for (size_t i = 0; i < shape.size(); ++i) tuple += (i ? ", " : "") + std::to_string(shape[i]);
    return "(" + tuple + (shape.size() == 1 ? ",)" : ")");
}

std::string voxel_text(const std::array<int64_t, 3>& dim, int64_t v) {
    const int64_t slice = dim[0] * dim[1], voxels = slice * dim[2], w = v % voxels;
    return cat(w % dim[0], ",", w / dim[0] % dim[1], ",", w / slice, v >= voxels ? cat(" of frame ", v / voxels) : "");
}

Mat4 Mat4::scaling(double sx, double sy, double sz) {
    Mat4 s;
    s.m[0][0] = sx;
    s.m[1][1] = sy;
    s.m[2][2] = sz;
    return s;
}

Mat4 Mat4::operator*(const Mat4& other) const {
    Mat4 out;
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) {
            double sum = 0;
            for (int k = 0; k < 4; ++k) sum += m[r][k] * other.m[k][c];
            out.m[r][c] = sum;
        }
    return out;
}

Mat4 Mat4::inverse() const {
    // Affine inverse: invert the 3x3 part by cofactors, then the translation.
    const double a = m[0][0], b = m[0][1], c = m[0][2];
    const double d = m[1][0], e = m[1][1], f = m[1][2];
    const double g = m[2][0], h = m[2][1], i = m[2][2];
    const double det = determinant3();
    if (!(std::fabs(det) > 1e-300)) throw Error("affine matrix is singular and cannot be inverted");
    Mat4 inv;
    inv.m[0][0] = (e * i - f * h) / det;
    inv.m[0][1] = (c * h - b * i) / det;
    inv.m[0][2] = (b * f - c * e) / det;
    inv.m[1][0] = (f * g - d * i) / det;
    inv.m[1][1] = (a * i - c * g) / det;
    inv.m[1][2] = (c * d - a * f) / det;
    inv.m[2][0] = (d * h - e * g) / det;
    inv.m[2][1] = (b * g - a * h) / det;
    inv.m[2][2] = (a * e - b * d) / det;
    for (int r = 0; r < 3; ++r)
        inv.m[r][3] = -(inv.m[r][0] * m[0][3] + inv.m[r][1] * m[1][3] + inv.m[r][2] * m[2][3]);
    return inv;
}

double Mat4::determinant3() const {
    return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
           m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
}

std::array<double, 3> Mat4::apply(double x, double y, double z) const {
    return {m[0][0] * x + m[0][1] * y + m[0][2] * z + m[0][3], m[1][0] * x + m[1][1] * y + m[1][2] * z + m[1][3],
            m[2][0] * x + m[2][1] * y + m[2][2] * z + m[2][3]};
}

double Mat4::column_norm(int c) const { return std::sqrt(m[0][c] * m[0][c] + m[1][c] * m[1][c] + m[2][c] * m[2][c]); }

bool Mat4::approx_equal(const Mat4& other, double tolerance) const {
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c)
            if (!(std::fabs(m[r][c] - other.m[r][c]) <= tolerance)) return false;
    return true;
}

void require_distinct_labels(const std::vector<int32_t>& list, const std::string& source) {
    std::set<int32_t> seen;
    for (const int32_t label : list) {
        ISS_INPUT(is_label_value(label), source, ": ", label, " is ", not_a_label);
        ISS_INPUT(seen.insert(label).second, source, ": label ", label, " is listed twice");
    }
}

}  // namespace iss
