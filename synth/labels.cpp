#include "synth/labels.h"

#include <algorithm>
#include <unordered_set>

#include "kernels/common/error.h"

namespace iss::labels {

const std::vector<int32_t>& generation_labels() {
    static const std::vector<int32_t> list = {
        0,  14, 15, 16, 24, 77, 85, 170, 172,                                  // background, unsided
        2,  3,  4,  5,  7,  8,  10, 11,  12,  13, 17, 18, 21, 26, 28, 30, 31,  // left
        41, 42, 43, 44, 46, 47, 49, 50,  51,  52, 53, 54, 58, 60, 61, 62, 63,  // right twins
    };
    return list;
}

const std::vector<int32_t>& segmentation_labels() {
    static const std::vector<int32_t> list = {0,  14, 15, 16, 170, 172, 2,  3,  4,  7,  8,  10,
                                              11, 12, 13, 17, 18,  21,  26, 28, 41, 42, 43, 46,
                                              47, 49, 50, 51, 52,  53,  54, 58, 60, 61};
    return list;
}

const std::vector<int32_t>& synthseg_segmentation_labels() {
    static const std::vector<int32_t> list = {0,  14, 15, 16, 2,  3,  4,  5,  7,  8,  10, 11, 12, 13, 17, 18,
                                              26, 28, 41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 58, 60};
    return list;
}

namespace {

enum class Side { unsided, left, right, unknown };

// The declared pair that names `label`, or nullptr.
const std::vector<int32_t>* declared_pair(int32_t label, const DeclaredTwins& declared) {
    for (const std::vector<int32_t>& pair : declared)
        if (pair.size() == 2 && (pair[0] == label || pair[1] == label)) return &pair;
    return nullptr;
}

// FreeSurfer's classification as SynthSeg's get_list_labels writes it, with the twin table of
// SPEC.md section 1 first (it places Infant-SynthSeg's 21 on the left); declared sides before both.
Side side_of(int32_t label, const DeclaredTwins& declared = {}) {
    if (const std::vector<int32_t>* pair = declared_pair(label, declared))
        return (*pair)[0] == (*pair)[1] ? Side::unsided : (*pair)[0] == label ? Side::left : Side::right;
    const int32_t twin = lr_twin(label);
    if (twin != label) return twin > label ? Side::left : Side::right;
    static const std::vector<int32_t> unsided = {
        0,   14,  15,  16,  21,  22,  23,  24,  72,  77,  80,  85,  100, 101, 102, 103, 104, 105, 106, 107,
        108, 109, 165, 170, 172, 200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 251, 252, 253, 254,
        255, 258, 259, 260, 331, 332, 333, 334, 335, 336, 337, 338, 339, 340, 502, 506, 507, 508, 509, 511,
        512, 514, 515, 516, 517, 530, 531, 532, 533, 534, 535, 536, 537};
    if (std::find(unsided.begin(), unsided.end(), label) != unsided.end()) return Side::unsided;
    const int32_t l = label;
    if ((0 < l && l < 14) || (16 < l && l < 21) || (24 < l && l < 40) || (135 < l && l < 139) ||
        (1000 <= l && l <= 1035) || l == 865 || (20100 < l && l < 20110))
        return Side::left;
    if ((39 < l && l < 72) || (162 < l && l < 165) || (2000 <= l && l <= 2035) || (20000 < l && l < 20010) ||
        l == 139 || l == 866)
        return Side::right;
    return Side::unknown;
}

}  // namespace

std::vector<int32_t> freesurfer_sorted(const std::vector<int32_t>& labels) {
    std::vector<int32_t> by_side[3];
    for (const int32_t& label : labels) {
        const Side side = side_of(label);
        ISS_INPUT(side != Side::unknown, "label ", label,
                  " is in none of SynthSeg's label classes (unsided, left, right): its output channel is unknown");
        ISS_INPUT(index_of(labels, label) == int(&label - labels.data()), "label ", label, " is listed twice");
        by_side[int(side)].push_back(label);
    }
    std::vector<int32_t> sorted;
    for (std::vector<int32_t>& part : by_side) {
        std::sort(part.begin(), part.end());
        sorted.insert(sorted.end(), part.begin(), part.end());
    }
    return sorted;
}

const std::vector<std::vector<int32_t>>& fused_classes() {
    static const std::vector<std::vector<int32_t>> groups = {{2, 21, 41, 61}, {16, 170}, {7, 46}};
    return groups;
}

int32_t lr_twin(int32_t label, const DeclaredTwins& declared) {
    if (const std::vector<int32_t>* pair = declared_pair(label, declared))
        return (*pair)[0] == label ? (*pair)[1] : (*pair)[0];
    // SPEC.md section 1's table, then the adult pairs SynthSeg's sorted lists put side by side.
    static const int32_t left[] = {2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 17, 18, 21, 26, 28, 30, 31, 25, 136, 137};
    static const int32_t right[] = {41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 61, 58, 60, 62, 63, 57, 163, 164};
    for (size_t i = 0; i < sizeof left / sizeof left[0]; ++i) {
        if (left[i] == label) return right[i];
        if (right[i] == label) return left[i];
    }
    if (1000 <= label && label <= 1035) return label + 1000;  // cortical parcels (DK atlas)
    if (2000 <= label && label <= 2035) return label - 1000;
    return label;
}

std::vector<int> twin_positions(const std::vector<int32_t>& list, const DeclaredTwins& declared) {
    std::vector<int> twin(list.size());
    for (size_t p = 0; p < list.size(); ++p) {
        const int t = index_of(list, lr_twin(list[p], declared));
        twin[p] = t >= 0 ? t : int(p);
    }
    return twin;
}

int first_unmirrored(const std::vector<int32_t>& generation, const std::vector<int32_t>& targets,
                     const std::vector<int32_t>& outputs, const DeclaredTwins& declared) {
    const std::vector<int> generation_twin = twin_positions(generation, declared),
                           output_twin = twin_positions(outputs, declared);
    for (size_t g = 0; g < generation.size(); ++g) {
        if (!side_known(generation[g], declared)) return int(g);  // its mirror image unknown
        if (lateral(generation[g], declared) && generation_twin[g] == int(g)) return int(g);
        const int output = index_of(outputs, targets[g]);
        const int32_t swapped = output >= 0 ? outputs[size_t(output_twin[size_t(output)])] : targets[g];
        if (swapped != targets[size_t(generation_twin[g])]) return int(g);
    }
    return -1;
}

bool lateral(int32_t label, const DeclaredTwins& declared) {
    const Side side = side_of(label, declared);
    return side == Side::left || side == Side::right;
}

bool side_known(int32_t label, const DeclaredTwins& declared) {
    return side_of(label, declared) != Side::unknown;
}

int32_t first_unreversed(const std::vector<int32_t>& list, const DeclaredTwins& declared) {
    for (const int32_t label : list)
        if (lr_twin(lr_twin(label, declared), declared) != label) return label;
    return -1;
}

std::string unreversed_text(int32_t label, const DeclaredTwins& declared) {
    const int32_t twin = lr_twin(label, declared);
    const std::string why = cat("label ", label, "'s twin is ", twin, ", whose twin is ", lr_twin(twin, declared),
                                ", so a flip would not swap them back");
    // The twin already declared (as another's): redeclaring it is refused, so only `label` can be.
    const bool twin_declared = std::any_of(declared.begin(), declared.end(), [&](const auto& pair) {
        return std::find(pair.begin(), pair.end(), twin) != pair.end();
    });
    if (twin_declared)
        return cat(why, ": declare label ", label, " too (e.g. [[", label, ", ", label, "]] for a label of no side)");
    return cat(why, ": declare both labels of a pair (e.g. [[", twin, ", ", twin, "], [", label, ", ", label,
               "]] or [[", std::min(label, twin), ", ", std::max(label, twin), "]])");
}

std::vector<int32_t> not_infant(const std::vector<int32_t>& list) {
    std::vector<int32_t> foreign;
    for (const int32_t label : list)
        if (index_of(generation_labels(), label) < 0) foreign.push_back(label);
    return foreign;
}

std::vector<std::pair<int32_t, int32_t>> cerebellum_fold_pairs() {
    return {{7, 8}, {46, 47}};
}

std::vector<std::pair<int32_t, int32_t>> fold_pairs(bool merge_cerebellum) {
    std::vector<std::pair<int32_t, int32_t>> pairs{{21, 2}, {61, 41}, {170, 16}};
    if (merge_cerebellum) {
        const auto cerebellum = cerebellum_fold_pairs();
        pairs.insert(pairs.end(), cerebellum.begin(), cerebellum.end());
    }
    return pairs;
}

std::vector<int32_t> distinct(const std::vector<int32_t>& list) {
    std::vector<int32_t> once;
    std::unordered_set<int32_t> seen;
    for (const int32_t label : list)
        if (seen.insert(label).second) once.push_back(label);
    return once;
}

int index_of(const std::vector<int32_t>& list, int32_t label) {
    const auto it = std::find(list.begin(), list.end(), label);
    return it == list.end() ? -1 : int(it - list.begin());
}

}  // namespace iss::labels
