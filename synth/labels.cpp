#include "synth/labels.h"

#include <algorithm>

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

const std::vector<std::vector<int32_t>>& fused_classes() {
    static const std::vector<std::vector<int32_t>> groups = {{2, 21, 41, 61}, {16, 170}, {7, 46}};
    return groups;
}

int32_t lr_twin(int32_t label) {
    static const int32_t left[] = {2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 17, 18, 21, 26, 28, 30, 31};
    static const int32_t right[] = {41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 61, 58, 60, 62, 63};
    for (size_t i = 0; i < sizeof left / sizeof left[0]; ++i) {
        if (left[i] == label) return right[i];
        if (right[i] == label) return left[i];
    }
    return label;
}

int index_of(const std::vector<int32_t>& list, int32_t label) {
    const auto it = std::find(list.begin(), list.end(), label);
    return it == list.end() ? -1 : int(it - list.begin());
}

}  // namespace iss::labels
