#include "io/orientation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "kernels/common/error.h"

namespace iss {
namespace {

const char positive_letter[3] = {'R', 'A', 'S'};
const char negative_letter[3] = {'L', 'P', 'I'};

// World axis (0..2) and sign of one orientation letter; InputError for anything else.
void parse_letter(char letter, const std::string& code, int* world_axis, int* sign) {
    for (int w = 0; w < 3; ++w) {
        if (letter == positive_letter[w]) {
            *world_axis = w;
            *sign = 1;
            return;
        }
        if (letter == negative_letter[w]) {
            *world_axis = w;
            *sign = -1;
            return;
        }
    }
    throw InputError(cat("bad orientation code '", code, "': '", letter, "' is not one of R L A P S I"));
}

void parse_code(const std::string& code, std::array<int, 3>& world_axis, std::array<int, 3>& sign) {
    ISS_INPUT(code.size() == 3, "bad orientation code '", code, "': expected three letters such as RAS");
    bool seen[3] = {false, false, false};
    for (int a = 0; a < 3; ++a) {
        parse_letter(code[size_t(a)], code, &world_axis[size_t(a)], &sign[size_t(a)]);
        ISS_INPUT(!seen[world_axis[size_t(a)]], "bad orientation code '", code, "': a world axis appears twice");
        seen[world_axis[size_t(a)]] = true;
    }
}

// Row r's column best[r]: of the six assignments of rows to distinct columns, the one with the
// largest sum of |weight|. A tie (two axes at exactly 45 degrees) goes to the largest sum, over
// the rows, of the weight at the row's column times the weight at the next column (x then y,
// y then z, z then x): it is the same for a row and its negative, and belongs to the row, not
// its place, so a scan stored with two voxel axes swapped or flipped gets the same frame, not
// one turned by 90 degrees. A tie of both keeps the first in permutation order.
std::array<int, 3> best_assignment(const double (&weight)[3][3]) {
    std::array<int, 3> perm{0, 1, 2}, best = perm;
    double best_score = -1, best_turn = -4;
    do {
        double score = 0, turn = 0;
        for (int r = 0; r < 3; ++r) {
            const int column = perm[size_t(r)];
            score += std::fabs(weight[r][column]);
            turn += weight[r][column] * weight[r][(column + 1) % 3];
        }
        const bool tie = std::fabs(score - best_score) <= 1e-12;
        if ((!tie && score > best_score) || (tie && turn > best_turn + 1e-12)) {
            best_score = score;
            best_turn = turn;
            best = perm;
        }
    } while (std::next_permutation(perm.begin(), perm.end()));
    return best;
}

// Column v of the affine's linear part, scaled to length 1 (zero stays zero).
std::array<double, 3> unit_column(const Mat4& affine, int v) {
    const double norm = affine.column_norm(v);
    std::array<double, 3> u{};
    for (int w = 0; w < 3; ++w) u[size_t(w)] = norm > 0 ? affine.m[w][v] / norm : 0;
    return u;
}

}  // namespace

std::string orientation_code(const Mat4& affine) {
    // How much each voxel axis points along each world axis; the voxel axes go to distinct
    // world axes.
    double weight[3][3];
    for (int v = 0; v < 3; ++v) {
        const std::array<double, 3> u = unit_column(affine, v);
        for (int w = 0; w < 3; ++w) weight[v][w] = u[size_t(w)];
    }
    const std::array<int, 3> best = best_assignment(weight);
    std::string code(3, '?');
    for (int v = 0; v < 3; ++v) {
        const int w = best[size_t(v)];
        code[size_t(v)] = weight[v][w] >= 0 ? positive_letter[w] : negative_letter[w];
    }
    return code;
}

void require_orientation_code(const std::string& code, const std::string& what) {
    std::array<int, 3> world_axis{}, sign{};
    try {
        parse_code(code, world_axis, sign);
    } catch (const InputError& e) {
        throw InputError(cat(what, ": ", e.what()));
    }
}

AxisMap axis_map_between(const std::string& from, const std::string& to) {
    std::array<int, 3> from_world{}, from_sign{}, to_world{}, to_sign{};
    parse_code(from, from_world, from_sign);
    parse_code(to, to_world, to_sign);
    AxisMap map;
    for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b)
            if (from_world[size_t(b)] == to_world[size_t(a)]) {
                map.axis[size_t(a)] = b;
                map.flip[size_t(a)] = from_sign[size_t(b)] != to_sign[size_t(a)];
            }
    return map;
}

AxisMap axis_map_onto(const Mat4& from, const Mat4& to) {
    // How nearly each axis of `to` points along (or against) each axis of `from`.
    double weight[3][3];
    for (int a = 0; a < 3; ++a) {
        const std::array<double, 3> t = unit_column(to, a);
        for (int b = 0; b < 3; ++b) {
            const std::array<double, 3> f = unit_column(from, b);
            weight[a][b] = t[0] * f[0] + t[1] * f[1] + t[2] * f[2];
        }
    }
    const std::array<int, 3> best = best_assignment(weight);
    AxisMap map;
    for (int a = 0; a < 3; ++a) {
        map.axis[size_t(a)] = best[size_t(a)];
        map.flip[size_t(a)] = weight[a][best[size_t(a)]] < 0;
    }
    return map;
}

Grid reoriented_grid(const Grid& in, const std::string& to) {
    return reoriented_grid(in, axis_map_between(orientation_code(in.affine), to));
}

Grid reoriented_grid(const Grid& in, const AxisMap& map) {
    Grid grid;
    // Input voxel coordinates of an output voxel: in[axis[a]] = flip ? n - 1 - out[a] : out[a].
    Mat4 out_to_in;
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) out_to_in.m[r][c] = 0;
    for (int a = 0; a < 3; ++a) {
        const int b = map.axis[size_t(a)];
        grid.dim[size_t(a)] = in.dim[size_t(b)];
        out_to_in.m[b][a] = map.flip[size_t(a)] ? -1.0 : 1.0;
        out_to_in.m[b][3] = map.flip[size_t(a)] ? double(in.dim[size_t(b)] - 1) : 0.0;
    }
    grid.affine = in.affine * out_to_in;
    return grid;
}

template <class T>
Volume<T> reorient(const Volume<T>& in, const std::string& to) {
    return reorient(in, axis_map_between(orientation_code(in.grid.affine), to));
}

template <class T>
Volume<T> reorient(const Volume<T>& in, const AxisMap& map) {
    const Grid grid = reoriented_grid(in.grid, map);
    Volume<T> out(grid, in.frames);
    const int64_t n[3] = {grid.dim[0], grid.dim[1], grid.dim[2]};
    // Input strides along each output axis, and the input offset of output voxel (0, 0, 0).
    const int64_t in_stride[3] = {1, in.grid.dim[0], in.grid.dim[0] * in.grid.dim[1]};
    int64_t step[3], origin = 0;
    int along_input_rows = 0;  // the output axis that walks the input's rows (step +-1)
    for (int a = 0; a < 3; ++a) {
        const int b = map.axis[size_t(a)];
        step[a] = map.flip[size_t(a)] ? -in_stride[b] : in_stride[b];
        if (map.flip[size_t(a)]) origin += (in.grid.dim[size_t(b)] - 1) * in_stride[b];
        if (b == 0) along_input_rows = a;
    }
    const int64_t frame_size = grid.voxels();
    const T* src = in.data.data();
    T* dst = out.data.data();
    if (along_input_rows == 0) {  // output rows read input rows (maybe reversed)
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t t = 0; t < in.frames; ++t)
            for (int64_t k = 0; k < n[2]; ++k)
                for (int64_t j = 0; j < n[1]; ++j) {
                    const int64_t from = t * frame_size + origin + k * step[2] + j * step[1];
                    T* row = dst + ((t * n[2] + k) * n[1] + j) * n[0];
                    for (int64_t i = 0; i < n[0]; ++i) row[i] = src[from + i * step[0]];
                }
        return out;
    }
    // A transpose: output rows (axis 0) cross the input's rows, which output axis q walks. In
    // tiles of kTile x kTile (i along output axis 0, q along axis q) both the reads and the
    // writes stay within kTile cache lines each, where a row at a time touches a new input
    // line for every voxel.
    constexpr int64_t kTile = 16;
    const int q_axis = along_input_rows, r_axis = 3 - along_input_rows;  // r: the remaining axis
    const int64_t out_stride[3] = {1, n[0], n[0] * n[1]};
    const int64_t q_tiles = (n[q_axis] + kTile - 1) / kTile;
#pragma omp parallel for collapse(3) schedule(static)
    for (int64_t t = 0; t < in.frames; ++t)
        for (int64_t r = 0; r < n[r_axis]; ++r)
            for (int64_t qt = 0; qt < q_tiles; ++qt) {
                const int64_t q0 = qt * kTile, q1 = std::min(n[q_axis], q0 + kTile);
                const int64_t from = t * frame_size + origin + r * step[r_axis];
                T* to = dst + t * frame_size + r * out_stride[r_axis];
                for (int64_t i0 = 0; i0 < n[0]; i0 += kTile) {
                    const int64_t i1 = std::min(n[0], i0 + kTile);
                    for (int64_t q = q0; q < q1; ++q)
                        for (int64_t i = i0; i < i1; ++i)
                            to[q * out_stride[q_axis] + i] = src[from + q * step[q_axis] + i * step[0]];
                }
            }
    return out;
}

template <class T>
Volume<T> reorient(Volume<T>&& in, const AxisMap& map) {
    if (map.identity()) return std::move(in);
    return reorient(static_cast<const Volume<T>&>(in), map);
}

template <class T>
Volume<T> reorient(Volume<T>&& in, const std::string& to) {
    return reorient(std::move(in), axis_map_between(orientation_code(in.grid.affine), to));
}

template <class T>
Volume<T> reordered_onto(Volume<T>&& in, const Grid& grid) {
    if (grid.same_as(in.grid)) return std::move(in);
    const AxisMap map = axis_map_onto(in.grid.affine, grid.affine);
    if (map.identity() || !grid.same_as(reoriented_grid(in.grid, map))) return std::move(in);
    return reorient(static_cast<const Volume<T>&>(in), map);
}

template Volume<float> reordered_onto(Volume<float>&&, const Grid&);
template Volume<int32_t> reordered_onto(Volume<int32_t>&&, const Grid&);
template Volume<float> reorient(const Volume<float>&, const AxisMap&);
template Volume<int32_t> reorient(const Volume<int32_t>&, const AxisMap&);
template Volume<float> reorient(Volume<float>&&, const AxisMap&);
template Volume<int32_t> reorient(Volume<int32_t>&&, const AxisMap&);
template Volume<float> reorient(Volume<float>&&, const std::string&);
template Volume<int32_t> reorient(Volume<int32_t>&&, const std::string&);
template Volume<float> reorient(const Volume<float>&, const std::string&);
template Volume<int32_t> reorient(const Volume<int32_t>&, const std::string&);
template Volume<double> reorient(const Volume<double>&, const std::string&);
template Volume<uint8_t> reorient(const Volume<uint8_t>&, const std::string&);

}  // namespace iss
