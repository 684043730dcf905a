// Volumes in memory: a voxel grid (dims and the voxel-to-world affine) and the voxel values in
// NIfTI memory order (i fastest, then j, then k, then frames).
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace iss {

// A 4x4 matrix in double, row-major: m[row][col]. Used for voxel-to-world affines.
struct Mat4 {
    double m[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};

    static Mat4 identity() { return Mat4{}; }
    static Mat4 scaling(double sx, double sy, double sz);
    Mat4 operator*(const Mat4& other) const;
    // Throws iss::Error when the 3x3 part is singular.
    Mat4 inverse() const;
    // The 3x3 part's determinant: a voxel's signed volume (negative for a left-handed grid).
    double determinant3() const;
    std::array<double, 3> apply(double x, double y, double z) const;
    // Length of column c of the 3x3 part: the voxel size along axis c.
    double column_norm(int c) const;
    bool approx_equal(const Mat4& other, double tolerance) const;
};

// "155x175x149": a grid's dims for messages.
std::string dims_text(const std::array<int64_t, 3>& dim);
// NumPy's text for an array shape: "(2, 3)", "(4,)", "()" (.npy headers, HDF5 messages).
std::string shape_text(const std::vector<int64_t>& shape);
// "i,j,k" of the voxel at index v of a grid of dims `dim` (x fastest), for messages; with
// " of frame t" where v lies past the first frame.
std::string voxel_text(const std::array<int64_t, 3>& dim, int64_t v);

// Calls f(w) for each face neighbour w (6-connectivity) inside a grid of dims `dim` of the voxel
// at index v (x fastest), in the order -x, +x, -y, +y, -z, +z.
template <class F>
inline void for_each_face_neighbour(const std::array<int64_t, 3>& dim, int64_t v, F&& f) {
    const int64_t nx = dim[0], ny = dim[1], slice = nx * ny;
    const int64_t i = v % nx, j = (v / nx) % ny, k = v / slice;
    if (i > 0) f(v - 1);
    if (i + 1 < nx) f(v + 1);
    if (j > 0) f(v - nx);
    if (j + 1 < ny) f(v + nx);
    if (k > 0) f(v - slice);
    if (k + 1 < dim[2]) f(v + slice);
}

// The voxel sizes, in mm, a model may record and train may learn from: beyond them a header's
// units are wrong (sizes in metres stated as mm), and a model recording them would not load.
constexpr double min_model_voxel_mm = 0.01, max_model_voxel_mm = 100;

struct Grid {
    std::array<int64_t, 3> dim{1, 1, 1};
    Mat4 affine;

    int64_t voxels() const { return dim[0] * dim[1] * dim[2]; }
    std::array<double, 3> voxel_size() const {
        return {affine.column_norm(0), affine.column_norm(1), affine.column_norm(2)};
    }
    // A voxel's volume (mm^3): |det|, which is the voxel sizes' product only for a grid without
    // shear (an affine registration's or a tilted gantry's sform has some).
    double voxel_volume() const { return std::fabs(affine.determinant3()); }
    // Same dims and affines equal to `tolerance` (world units).
    bool same_as(const Grid& other, double tolerance = 1e-4) const {
        return dim == other.dim && affine.approx_equal(other.affine, tolerance);
    }
};

template <class T>
struct Volume {
    Grid grid;
    int64_t frames = 1;  // volumes along the 4th and higher NIfTI dims, flattened
    std::vector<T> data;

    Volume() = default;
    Volume(const Grid& g, int64_t nframes = 1, T fill = T{})
        : grid(g), frames(nframes), data(std::size_t(g.voxels() * nframes), fill) {}

    int64_t nx() const { return grid.dim[0]; }
    int64_t ny() const { return grid.dim[1]; }
    int64_t nz() const { return grid.dim[2]; }
    int64_t index(int64_t i, int64_t j, int64_t k, int64_t t = 0) const {
        return ((t * grid.dim[2] + k) * grid.dim[1] + j) * grid.dim[0] + i;
    }
    T& at(int64_t i, int64_t j, int64_t k, int64_t t = 0) { return data[std::size_t(index(i, j, k, t))]; }
    const T& at(int64_t i, int64_t j, int64_t k, int64_t t = 0) const { return data[std::size_t(index(i, j, k, t))]; }
};

using Image = Volume<float>;
using LabelMap = Volume<int32_t>;

// The largest label value a model may learn and record (its segmentation written as uint16).
inline constexpr int32_t max_label_value = 65535;

// Whether a number read from a file or an option is such a label, and the words refusals end with.
inline bool is_label_value(double v) {
    return v >= 0 && v <= max_label_value && v == std::floor(v);
}
inline const std::string not_a_label = "not a label (an integer from 0 to " + std::to_string(max_label_value) + ")";

// A list of labels whose order means something (columns, channels): every value a label, none
// twice. InputError "<source>: -2 is not a label ..." or "<source>: label 3 is listed twice".
void require_distinct_labels(const std::vector<int32_t>& list, const std::string& source);

}  // namespace iss
