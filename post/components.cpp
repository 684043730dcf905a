// Breadth-first labelling: the scan meets each unlabelled voxel once; a new component grows
// from it through a FIFO queue, each voxel being marked when pushed so it is pushed once.
#include "post/components.h"

#include <algorithm>

#include "kernels/common/error.h"

namespace iss {
namespace {

// Labels components of voxels whose key(value) agree; key 0 is skipped unless `include_zero`.
// `key` lets one body serve "same label" (key = value) and "any foreground" (key = value != 0).
template <class T, class Key>
Components label_components(const Volume<T>& vol, bool include_zero, Key key) {
    ISS_REQUIRE(vol.frames == 1, "connected components of a 3-D volume, got ", vol.frames, " frames");
    const int64_t n = vol.grid.voxels();
    ISS_REQUIRE(n < (int64_t(1) << 31), "connected components need fewer than 2^31 voxels, got ", n);

    Components out;
    out.id = LabelMap(vol.grid, 1, -1);
    int32_t* id = out.id.data.data();
    const T* value = vol.data.data();
    std::vector<int64_t> queue;
    for (int64_t start = 0; start < n; ++start) {
        if (id[start] >= 0) continue;
        const auto k = key(value[start]);
        if (k == 0 && !include_zero) continue;
        const int32_t cid = out.count();
        id[start] = cid;
        queue.clear();
        queue.push_back(start);
        for (size_t head = 0; head < queue.size(); ++head) {
            for_each_face_neighbour(vol.grid.dim, queue[head], [&](int64_t w) {
                if (id[w] < 0 && key(value[w]) == k) {
                    id[w] = cid;
                    queue.push_back(w);
                }
            });
        }
        out.size.push_back(int64_t(queue.size()));
        out.label.push_back(int32_t(value[start]));
    }
    return out;
}

// 1 where the voxel belongs to the largest component (lowest id among equal sizes).
Mask largest_as_mask(const Components& c) {
    Mask out(c.id.grid, 1, 0);
    if (c.count() == 0) return out;
    const int32_t best = int32_t(std::max_element(c.size.begin(), c.size.end()) - c.size.begin());
    for (size_t v = 0; v < out.data.size(); ++v) out.data[v] = c.id.data[v] == best;
    return out;
}

}  // namespace

Components connected_components(const LabelMap& labels, bool include_background) {
    return label_components(labels, include_background, [](int32_t v) { return v; });
}

Mask largest_foreground_component(const LabelMap& labels) {
    return largest_as_mask(label_components(labels, false, [](int32_t v) { return int(v != 0); }));
}

}  // namespace iss
