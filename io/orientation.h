// Orientation of voxel axes in world (RAS+) space, and exact reorientation by axis
// permutation and flips (no interpolation), e.g. an LIA scan to the model's RAS and back.
#pragma once

#include <array>
#include <string>

#include "io/volume.h"

namespace iss {

// Axis codes of an affine, one letter per voxel axis: the direction in which the index grows
// (R/L, A/P, S/I), e.g. "RAS", "LIA". Oblique axes go to the closest world axis, choosing the
// assignment of voxel axes to world axes that best fits all three (never the same twice).
std::string orientation_code(const Mat4& affine);

// How to build an output volume from an input: output axis a reads input axis `axis[a]`,
// reversed when `flip[a]`.
struct AxisMap {
    std::array<int, 3> axis{0, 1, 2};
    std::array<bool, 3> flip{false, false, false};

    bool identity() const { return axis == AxisMap{}.axis && flip == AxisMap{}.flip; }
};

// InputError "WHAT: bad orientation code ..." unless `code` is three letters, one of each of
// {R,L}, {A,P}, {S,I}: for a code taken from a user or a file.
void require_orientation_code(const std::string& code, const std::string& what);

// The AxisMap that turns a volume with code `from` into one with code `to`. Codes are three
// letters from {R,L}, {A,P}, {S,I}, one of each pair; InputError otherwise.
AxisMap axis_map_between(const std::string& from, const std::string& to);

// The AxisMap that brings a volume on `from` to the voxel axes of `to`: each axis of `to` reads
// the axis of `from` that points most nearly along it (flipped when against it). Exact for two
// grids that differ only in voxel order however oblique, even with axes at exactly 45 degrees,
// where orientation codes tie and may pick different letters for the two.
AxisMap axis_map_onto(const Mat4& from, const Mat4& to);

// The grid a volume on `in` has once reoriented to `to` (below): dims permuted, affine updated.
Grid reoriented_grid(const Grid& in, const std::string& to);
Grid reoriented_grid(const Grid& in, const AxisMap& map);

// Reorders the voxels of every frame so that the volume has orientation `to`; the affine is
// updated so that every voxel keeps its world position.
template <class T>
Volume<T> reorient(const Volume<T>& in, const std::string& to);
// The same for a volume the caller no longer needs: where it already has orientation `to` it is
// returned as it is, without a copy (predict's posteriors: 485 MB for a 150x170x140 scan).
template <class T>
Volume<T> reorient(Volume<T>&& in, const std::string& to);
// The same by an AxisMap (output axis a reads input axis map.axis[a]).
template <class T>
Volume<T> reorient(const Volume<T>& in, const AxisMap& map);
template <class T>
Volume<T> reorient(Volume<T>&& in, const AxisMap& map);

// `in` with its voxels reordered onto `grid` where the two grids are one but for voxel order
// (axis_map_onto); otherwise `in` as it is, for the caller to compare with `grid` and refuse.
template <class T>
Volume<T> reordered_onto(Volume<T>&& in, const Grid& grid);

}  // namespace iss
