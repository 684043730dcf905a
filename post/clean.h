// Clean (SPEC.md section 6): fold the infant extra labels back into the structures they
// model, then relabel small disconnected pieces ("islands") from their surroundings.
//
// Fold (labels::fold_pairs): 21 -> 2, 61 -> 41, 170 -> 16, and with merge_cerebellum also 7 -> 8,
// 46 -> 47. In the posteriors the folded label's frame is added into the kept label's frame and
// then zeroed, so the file keeps one frame per label of its list (a folded label's frame stays,
// empty).
//
// Islands: for each label except background, its 6-connected components; every component
// smaller than the largest of its label (components tied for the largest all stay, so that the
// result does not depend on the file's voxel order) is an island unless it has at least
// `island_threshold` voxels. Island voxels are relabelled
// breadth-first from the island borders inwards, in layers:
//   - a voxel is *settled* when it is not an island voxel, or was relabelled in an earlier layer;
//   - layer 0 is every island voxel with a settled 6-neighbour; layer t+1 is every island voxel
//     not yet in a layer that has a 6-neighbour in layer t;
//   - each voxel of a layer takes, among the labels of its settled 6-neighbours, the one with
//     the highest posterior at that voxel (equal posteriors: the label earlier in the list;
//     a NaN posterior counts as lowest); all voxels of a layer are decided before any of them
//     is settled, so the result does not depend on the order within a layer.
// Island voxels that no layer reaches (an island region with no settled voxel around it at
// all) become background. Background voxels are never islands, but count as neighbours.
// Cost: one labelling pass, then each island voxel is queued once.
//
// IslandOrder::published relabels as the published island_processing.py's clear_islands does
// instead: one island voxel at a time in the file's voxel order (i slowest, k fastest, as numpy
// loops over the array nibabel reads), each from its 6-neighbours that are not island voxels
// still waiting (voxels relabelled before it count, with their new label), by the posteriors
// before folding, equal posteriors going to the higher label number; of a label's components tied
// for its largest, only the last in that order stays (the others are islands), as a stable
// sort keeps it (the script's np.argsort is not stable: its choice there depends on the NumPy
// release and the CPU). A neighbour outside the volume is none (the script's index wraps around at
// the near faces and fails at the far ones). Its result depends on the file's voxel order; the
// layers' does not.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "post/prediction.h"
#include "synth/labels.h"

namespace iss {

// How island voxels are relabelled (above): breadth-first layers, or as the published script.
enum class IslandOrder { layers, published };

struct CleanOptions {
    // Fold the infant protocol's extra labels (21 -> 2, 61 -> 41, 170 -> 16); off for a protocol
    // whose numbers mean other structures (clean --no-fold).
    bool fold = true;
    int64_t island_threshold = 15;  // components of at least this many voxels are never islands
    bool merge_cerebellum = false;  // also fold cerebellar white matter into cortex (7->8, 46->47)
    IslandOrder island_order = IslandOrder::layers;
};

struct CleanStats {
    int64_t folded_voxels = 0;  // segmentation voxels whose label was folded
    int64_t islands = 0;        // island components
    int64_t island_voxels = 0;  // voxels in them
    // Island voxels whose label changed: fewer than island_voxels where a voxel takes its own
    // label back from a neighbour that an earlier layer relabelled (a piece of 3 cut off from
    // the 3s by an island of 2 that becomes 3).
    int64_t changed_voxels = 0;
    int64_t to_background = 0;  // island voxels relabelled 0
};

// Folds the segmentation's labels; returns how many voxels changed.
int64_t fold_segmentation(LabelMap& seg, bool merge_cerebellum);

// Folds the posterior frames (frame k belongs to list.labels[k]). A folded label absent from
// the list is skipped; one present whose kept label is absent is an InputError naming the
// list's source (its probability would have nowhere to go).
void fold_posteriors(Image& post, const LabelList& list, bool merge_cerebellum);

// Relabels the islands of `seg` as described above, choosing by `post`. Every label of `seg`
// must have a frame in `list` (require_listed); preconditions checked (iss::Error): `post` on
// seg's dims with one frame per label of the list.
CleanStats remove_islands(LabelMap& seg, const Image& post, const LabelList& list, int64_t island_threshold,
                          IslandOrder order = IslandOrder::layers);

// The whole step: fold_segmentation, fold_posteriors, remove_islands (on the folded
// posteriors; IslandOrder::published on the posteriors before folding, as the script). `p.post` is left folded, each
// folded frame at most 1. InputError when a label of the folded segmentation has no frame in the list, or when the
// frames disagree with it (require_listed, require_frames_match; `seg_path` and `post_path` name the files).
CleanStats clean_prediction(Prediction& p, const LabelList& list, const CleanOptions& options,
                            const std::string& seg_path = "segmentation", const std::string& post_path = "posteriors");

}  // namespace iss
