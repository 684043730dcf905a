// A procedural infant-like label map (a "phantom") for a given age, for trying the generator,
// the CLI and the tests without the published training maps.
//
// Output: 1 mm isotropic voxels, RAS axes, world origin at the grid centre; about
// 150x170x140 voxels at 12 months, shrinking to 0.8 of that at birth. Labels are generation
// labels (SPEC.md section 1): cerebral WM with less-myelinated patches (21/61), a folded
// cortical ribbon, ventricles, deep grey nuclei, hippocampus/amygdala, cerebellum (no WM
// before 2 months), vermis, brainstem with sub-region 170, extra-cerebral CSF. Shapes are
// ellipsoids deformed by smooth random sinusoids drawn from Philox keyed by the seed, so a
// seed always gives the same map. Left structures (i < nx/2) are exact mirrors of the right
// ones with twin labels: map(i, j, k) == lr_twin(map(nx-1-i, j, k)).
#pragma once

#include <array>
#include <cstdint>

#include "io/volume.h"

namespace iss {

// Ages accepted by make_phantom, in months (inclusive).
constexpr double phantom_min_age_months = 0.0;
constexpr double phantom_max_age_months = 24.0;

// Linear size of the head relative to 12 months: 0.8 at birth, 1.0 at 12 months, growing
// fast at first and slowly after (about 1.03 at 24 months). Throws InputError for an age
// outside [0, 24] months.
double phantom_scale(double age_months);

// The grid for an age: about (150, 170, 140) * phantom_scale(age) voxels; nx is always even,
// so no voxel lies on the midsagittal plane and the mirror pairs every voxel with another.
std::array<int64_t, 3> phantom_dims(double age_months);

// The label map for an age and a seed (same arguments, identical map). Throws InputError for
// an age outside [0, 24] months.
LabelMap make_phantom(double age_months, uint64_t seed);

}  // namespace iss
