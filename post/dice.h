// Dice overlap per structure (SPEC.md section 8): 2|A ∩ B| / (|A| + |B|) between a predicted
// segmentation and the ground truth, both mapped to a common label list (a label outside the
// list counts as no structure). A structure absent from both has no Dice: it is reported as
// empty (NaN here), never as 1. A structure present on one side only scores 0.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/csv.h"
#include "io/volume.h"

namespace iss {

struct Overlap {
    int64_t pred = 0, truth = 0, both = 0;  // voxel counts: |A|, |B|, |A ∩ B|
};

// The overlap counts of every label present in either map (background included). With a
// non-empty `common` list, values not in it are mapped to background (0) first, on both sides.
// The maps must have equal dims (iss::Error otherwise; grids are the caller's to compare).
std::map<int32_t, Overlap> label_overlaps(const LabelMap& pred, const LabelMap& truth,
                                          const std::vector<int32_t>& common = {});

// 2|A ∩ B| / (|A| + |B|); NaN when both are empty.
double dice(const Overlap& o);
// A Dice value as a CSV field: empty where there is none (NaN), as `dice` and pandas read it.
std::string dice_field(double d);
// Back from such a field: NaN for an empty one; InputError naming `source` otherwise.
double dice_from_field(const std::string& field, const std::string& source);

struct DiceSubject {
    std::string name;                     // the CSV's `subject` field
    std::map<int32_t, Overlap> overlaps;  // from label_overlaps
};

// The table the dice command writes: columns `subject`, then `dice_<label>` per label of
// `labels`; one row per subject, then a row `mean` (the mean over subjects with a value).
// Empty fields where a structure is absent from both sides (or from every subject, for the
// mean). Numbers as csv_number writes them.
CsvTable dice_table(const std::vector<DiceSubject>& subjects, const std::vector<int32_t>& labels);
// The name of that last row, which no subject may have.
inline constexpr const char* dice_mean_row = "mean";

// The labels present in any subject (either side), increasing, background 0 left out.
std::vector<int32_t> labels_present(const std::vector<DiceSubject>& subjects);

}  // namespace iss
