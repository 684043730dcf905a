// Post-processing (post/*.h) on small hand-made volumes with known answers: connected
// components with 6-connectivity (diagonal neighbours are separate), the T1/T2 merge rule with
// exact ties, label folding and island relabelling (layer by layer from the border inwards,
// checked against a scan-per-layer reference on random volumes), Dice with empty and one-sided
// structures, and the checked readers: wrong frame counts, 4-D where 3-D is expected,
// mismatched grids and missing files are InputErrors naming the file.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "io/csv.h"
#include "io/nifti.h"
#include "io/npy.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "post/clean.h"
#include "post/components.h"
#include "post/dice.h"
#include "post/merge.h"
#include "post/prediction.h"
#include "synth/labels.h"
#include "test_util.h"

namespace iss {
namespace {

Grid grid_of(int64_t nx, int64_t ny, int64_t nz) {
    Grid g;
    g.dim = {nx, ny, nz};
    return g;
}

// A label map from values in memory order (i fastest).
LabelMap labels_of(int64_t nx, int64_t ny, int64_t nz, const std::vector<int32_t>& values) {
    LabelMap m(grid_of(nx, ny, nz));
    EXPECT_EQ(m.data.size(), values.size());
    m.data = values;
    return m;
}

// Posteriors for `list`: every frame `low` except the frame of each voxel's own label, `high`.
Image posteriors_like(const LabelMap& seg, const LabelList& list, float high = 0.9f, float low = 0.01f) {
    Image p(seg.grid, int64_t(list.labels.size()), low);
    for (size_t v = 0; v < seg.data.size(); ++v) {
        const int f = list.index_of(seg.data[v]);
        if (f >= 0) p.data[size_t(f) * seg.data.size() + v] = high;
    }
    return p;
}

float& post_at(Image& p, const LabelList& list, int32_t label, int64_t voxel) {
    return p.data[size_t(list.index_of(label)) * size_t(p.grid.voxels()) + size_t(voxel)];
}

// ---------------------------------------------------------------------------------------
// Components

// The boring reference: every voxel starts as its own component; repeat until nothing changes:
// take the smallest id among equal-labelled face neighbours.
std::vector<int64_t> reference_components(const LabelMap& m) {
    const int64_t nx = m.nx(), ny = m.ny(), nz = m.nz();
    std::vector<int64_t> id(m.data.size());
    for (size_t v = 0; v < id.size(); ++v) id[v] = int64_t(v);
    for (bool changed = true; changed;) {
        changed = false;
        for (int64_t k = 0; k < nz; ++k)
            for (int64_t j = 0; j < ny; ++j)
                for (int64_t i = 0; i < nx; ++i) {
                    const int64_t v = m.index(i, j, k);
                    const int d[6][3] = {{-1, 0, 0}, {1, 0, 0}, {0, -1, 0}, {0, 1, 0}, {0, 0, -1}, {0, 0, 1}};
                    for (const auto& o : d) {
                        const int64_t a = i + o[0], b = j + o[1], c = k + o[2];
                        if (a < 0 || b < 0 || c < 0 || a >= nx || b >= ny || c >= nz) continue;
                        const int64_t w = m.index(a, b, c);
                        if (m.data[size_t(w)] == m.data[size_t(v)] && id[size_t(w)] < id[size_t(v)]) {
                            id[size_t(v)] = id[size_t(w)];
                            changed = true;
                        }
                    }
                }
    }
    return id;
}

TEST(Components, DiagonalNeighboursAreSeparate) {
    // 3x3x1: label 1 on the diagonal (edge neighbours only), label 2 an L joined by faces.
    const LabelMap m = labels_of(3, 3, 1,
                                 {1, 2, 2,  //
                                  0, 1, 2,  //
                                  0, 0, 1});
    const Components c = connected_components(m);
    ASSERT_EQ(c.count(), 4);
    EXPECT_EQ(c.label, (std::vector<int32_t>{1, 2, 1, 1}));
    EXPECT_EQ(c.size, (std::vector<int64_t>{1, 3, 1, 1}));
    EXPECT_EQ(c.id.data, (std::vector<int32_t>{0, 1, 1, -1, 2, 1, -1, -1, 3}));

    // Corner neighbours in 3-D are separate too; with background included it is one more.
    LabelMap cube(grid_of(2, 2, 2));
    cube.at(0, 0, 0) = 5;
    cube.at(1, 1, 1) = 5;
    EXPECT_EQ(connected_components(cube).count(), 2);
    const Components with_bg = connected_components(cube, true);
    EXPECT_EQ(with_bg.count(), 3);
    EXPECT_EQ(with_bg.size[1], 6) << "the six background voxels are face-connected";
}

TEST(Components, MatchesReferenceOnRandomVolumes) {
    std::mt19937 rng(7);
    for (int trial = 0; trial < 5; ++trial) {
        LabelMap m(grid_of(13, 9, 7));
        for (int32_t& v : m.data) v = int32_t(rng() % 3);  // many components, some long and winding
        const Components c = connected_components(m, true);
        const std::vector<int64_t> ref = reference_components(m);
        // Same partition: equal reference ids <=> equal component ids.
        std::map<int64_t, int32_t> ref_to_ours;
        std::map<int32_t, int64_t> sizes;
        for (size_t v = 0; v < ref.size(); ++v) {
            const auto [it, fresh] = ref_to_ours.emplace(ref[v], c.id.data[v]);
            ASSERT_EQ(it->second, c.id.data[v]) << "voxel " << v;
            ++sizes[c.id.data[v]];
            EXPECT_EQ(c.label[size_t(c.id.data[v])], m.data[v]);
        }
        ASSERT_EQ(int(ref_to_ours.size()), c.count());
        for (const auto& [id, n] : sizes) EXPECT_EQ(c.size[size_t(id)], n);
    }
}

TEST(Components, LargestComponentMasks) {
    EXPECT_EQ(largest_foreground_component(labels_of(6, 1, 1, {1, 1, 0, 1, 1, 1})).data,
              (std::vector<uint8_t>{0, 0, 0, 1, 1, 1}));
    EXPECT_EQ(largest_foreground_component(labels_of(6, 1, 1, {1, 1, 0, 1, 1, 0})).data,
              (std::vector<uint8_t>{1, 1, 0, 0, 0, 0}))
        << "ties: the first";
    EXPECT_EQ(largest_foreground_component(labels_of(6, 1, 1, {0, 0, 0, 0, 0, 0})).data, std::vector<uint8_t>(6, 0));

    // Labels 2 and 3 touch: one foreground component of 4 beats a lone run of 3 voxels of 4.
    const LabelMap seg = labels_of(8, 1, 1, {2, 2, 3, 3, 0, 4, 4, 4});
    EXPECT_EQ(largest_foreground_component(seg).data, (std::vector<uint8_t>{1, 1, 1, 1, 0, 0, 0, 0}));
}

// ---------------------------------------------------------------------------------------
// Merge

TEST(Merge, StrictlyGreaterT1WinsTiesGoToT2AndPosteriorsTakeTheMaximum) {
    const Grid g = grid_of(4, 1, 1);
    Prediction t1{LabelMap(g), Image(g, 2)}, t2{LabelMap(g), Image(g, 2)};
    t1.seg.data = {10, 11, 12, 13};
    t2.seg.data = {20, 21, 22, 23};
    // Frame-major: frame 0 for the four voxels, then frame 1.
    t1.post.data = {0.8f, 0.7f, 0.5f, NAN, /**/ 0.2f, 0.3f, 0.5f, 0.1f};
    t2.post.data = {0.6f, 0.3f, 0.9f, 0.4f, /**/ 0.4f, 0.7f, 0.1f, 0.6f};
    const Prediction m = merge_t1_t2(t1, t2);
    // 0: 0.8 > 0.6 -> T1; 1: 0.7 == 0.7, a tie -> T2; 2: 0.5 < 0.9 -> T2; 3: NaN never wins -> T2.
    EXPECT_EQ(m.seg.data, (std::vector<int32_t>{10, 21, 22, 23}));
    EXPECT_EQ(m.post.data, (std::vector<float>{0.8f, 0.7f, 0.9f, 0.4f, 0.4f, 0.7f, 0.5f, 0.6f}));
    EXPECT_EQ(m.post.frames, 2);
    EXPECT_THROW(merge_t1_t2(t1, Prediction{LabelMap(g), Image(g, 3)}), Error) << "frame counts differ";
}

// ---------------------------------------------------------------------------------------
// Clean

TEST(Clean, FoldsExtraLabelsAndTheirPosteriors) {
    LabelMap seg = labels_of(7, 1, 1, {21, 61, 170, 7, 46, 2, 0});
    LabelMap plain = seg;
    EXPECT_EQ(fold_segmentation(plain, false), 3);
    EXPECT_EQ(plain.data, (std::vector<int32_t>{2, 41, 16, 7, 46, 2, 0}));
    EXPECT_EQ(fold_segmentation(seg, true), 5);
    EXPECT_EQ(seg.data, (std::vector<int32_t>{2, 41, 16, 8, 47, 2, 0}));

    const LabelList list{{0, 2, 21, 8, 7}, "test list"};
    Image post(grid_of(2, 1, 1), 5);
    post.data = {0.1f, 0.2f, /*2*/ 0.3f, 0.1f, /*21*/ 0.25f, 0.5f, /*8*/ 0.2f, 0.1f, /*7*/ 0.15f, 0.1f};
    Image folded = post;
    fold_posteriors(folded, list, false);
    EXPECT_EQ(folded.frames, 5) << "the folded frame stays, so frame k still belongs to labels[k]";
    EXPECT_FLOAT_EQ(folded.data[2], 0.55f);
    EXPECT_FLOAT_EQ(folded.data[3], 0.6f);
    EXPECT_EQ(folded.data[4], 0.0f);
    EXPECT_EQ(folded.data[5], 0.0f);
    EXPECT_EQ(folded.data[8], 0.15f) << "7 stays without merge_cerebellum";
    fold_posteriors(post, list, true);
    EXPECT_FLOAT_EQ(post.data[6], 0.35f);
    EXPECT_EQ(post.data[8], 0.0f);

    Image orphan(grid_of(1, 1, 1), 2);
    try {
        fold_posteriors(orphan, LabelList{{0, 61}, "--labels"}, false);
        ADD_FAILURE() << "61 without 41";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("--labels has label 61 but not 41"), std::string::npos) << e.what();
    }
}

TEST(Clean, SingleVoxelIslandTakesTheNeighbourWithTheHighestPosterior) {
    // 5x3x1. Row 0 is label 3 (its largest component); below it 2 on the left, 4 on the right,
    // and a one-voxel island of 3 at (2, 2) whose neighbours are 2 (left, above) and 4 (right).
    const LabelMap base = labels_of(5, 3, 1,
                                    {3, 3, 3, 3, 3,  //
                                     2, 2, 2, 4, 4,  //
                                     2, 2, 3, 4, 4});
    const LabelList list{{0, 2, 3, 4}, "test list"};
    const int64_t island = base.index(2, 2, 0);
    for (const auto& [p2, p4, expect] :
         std::vector<std::tuple<float, float, int32_t>>{{0.6f, 0.3f, 2}, {0.2f, 0.5f, 4}, {0.4f, 0.4f, 2}}) {
        SCOPED_TRACE(expect);
        LabelMap seg = base;
        Image post = posteriors_like(seg, list);
        post_at(post, list, 2, island) = p2;
        post_at(post, list, 4, island) = p4;
        post_at(post, list, 3, island) = 0.99f;  // its own label is no candidate
        const CleanStats s = remove_islands(seg, post, list, 15);
        EXPECT_EQ(s.islands, 1);
        EXPECT_EQ(s.island_voxels, 1);
        LabelMap want = base;
        want.data[size_t(island)] = expect;  // equal posteriors: 2 comes before 4 in the list
        EXPECT_EQ(seg.data, want.data);
    }
}

TEST(Clean, IslandInsideLabelTwoBecomesTwoAndBigIslandsAndLargestComponentsStay) {
    // 9x9x3, all label 2, except: a 3x3x1 block of 3 (9 voxels, the largest of 3); a lone
    // voxel of 3 inside the 2s (an island); a 2-voxel piece of 3 (an island below threshold 3,
    // kept at threshold 2); and a lone voxel of 5, the only (so largest) component of 5.
    LabelMap seg(grid_of(9, 9, 3), 1, 2);
    for (int j = 0; j < 3; ++j)
        for (int i = 0; i < 3; ++i) seg.at(i, j, 1) = 3;
    seg.at(6, 6, 1) = 3;
    seg.at(6, 2, 1) = 3;
    seg.at(7, 2, 1) = 3;
    seg.at(4, 7, 1) = 5;
    const LabelList list{{0, 2, 3, 5}, "test list"};

    LabelMap a = seg;
    const CleanStats s = remove_islands(a, posteriors_like(seg, list), list, 3);
    EXPECT_EQ(s.islands, 2);
    EXPECT_EQ(s.island_voxels, 3);
    EXPECT_EQ(s.to_background, 0);
    LabelMap want = seg;
    want.at(6, 6, 1) = 2;
    want.at(6, 2, 1) = 2;
    want.at(7, 2, 1) = 2;
    EXPECT_EQ(a.data, want.data);

    LabelMap b = seg;
    EXPECT_EQ(remove_islands(b, posteriors_like(seg, list), list, 2).islands, 1) << "size 2 >= threshold 2";
    EXPECT_EQ(b.at(6, 2, 1), 3);
    EXPECT_EQ(b.at(6, 6, 1), 2);
    EXPECT_EQ(b.at(4, 7, 1), 5) << "the largest component of a label is never changed";

    LabelMap c = seg;
    EXPECT_EQ(remove_islands(c, posteriors_like(seg, list), list, 0).islands, 0) << "threshold 0 keeps all";
    EXPECT_EQ(c.data, seg.data);
    // The lone 3 at the edge of a background slab, where background is likelier than 2: it goes
    // to background, and is counted so.
    LabelMap d = seg;
    for (int j = 0; j < 9; ++j)
        for (int i = 0; i < 9; ++i) d.at(i, j, 2) = 0;
    Image post = posteriors_like(d, list);
    post_at(post, list, 0, d.index(6, 6, 1)) = 0.5f;
    for (const int i : {6, 7}) post_at(post, list, 2, d.index(i, 2, 1)) = 0.5f;  // the pair stays with 2
    const CleanStats ds = remove_islands(d, post, list, 3);
    EXPECT_EQ(ds.islands, 2);
    EXPECT_EQ(ds.to_background, 1);
    EXPECT_EQ(d.at(6, 6, 1), 0);
    EXPECT_EQ(d.at(6, 2, 1), 2);
}

TEST(Clean, ThickIslandIsResolvedFromTheBorderInwards) {
    // 12x8x1: label 2 at i < 4, label 4 at 4 <= i < 8, label 3 at i >= 8 (its largest component),
    // and a 4x4 island of 3 at i, j in [2, 6): an outer ring of 12 voxels and 2x2 inside.
    LabelMap seg(grid_of(12, 8, 1));
    for (int j = 0; j < 8; ++j)
        for (int i = 0; i < 12; ++i) seg.at(i, j, 0) = i < 4 ? 2 : i < 8 ? 4 : 3;
    for (int j = 2; j < 6; ++j)
        for (int i = 2; i < 6; ++i) seg.at(i, j, 0) = 3;
    const LabelList list{{0, 2, 3, 4}, "test list"};
    // Everywhere in the island the posteriors favour 2. The ring can only take the label
    // that touches it: 2 on the left half, 4 on the right. The inner voxels decide in the
    // second layer, from the ring alone: inner voxels at i = 4 see only the 4s of the ring
    // (their neighbour at i = 3 is decided in the same layer, not before), so they become 4
    // although 2 has the higher posterior there.
    Image post = posteriors_like(seg, list);
    for (int j = 2; j < 6; ++j)
        for (int i = 2; i < 6; ++i) {
            post_at(post, list, 2, seg.index(i, j, 0)) = 0.6f;
            post_at(post, list, 4, seg.index(i, j, 0)) = 0.3f;
        }
    const CleanStats s = remove_islands(seg, post, list, 20);
    EXPECT_EQ(s.islands, 1);
    EXPECT_EQ(s.island_voxels, 16);
    for (int j = 0; j < 8; ++j)
        for (int i = 0; i < 8; ++i) EXPECT_EQ(seg.at(i, j, 0), i < 4 ? 2 : 4) << i << "," << j;

    // With a 16-voxel island and the default threshold 15 nothing changes.
    LabelMap kept(grid_of(12, 8, 1));
    for (int j = 0; j < 8; ++j)
        for (int i = 0; i < 12; ++i) kept.at(i, j, 0) = i < 4 ? 2 : i < 8 ? 4 : 3;
    for (int j = 2; j < 6; ++j)
        for (int i = 2; i < 6; ++i) kept.at(i, j, 0) = 3;
    const LabelMap before = kept;
    EXPECT_EQ(remove_islands(kept, post, list, 15).islands, 0);
    EXPECT_EQ(kept.data, before.data);
}

TEST(Clean, AVoxelThatTakesItsOwnLabelBackIsNotCountedAsChanged) {
    // 15x1x1: 3 3 3 3 | 2 | 3 3 | 4 4 4 4 | 2 2 2 2. Islands at threshold 3: the lone 2 and the
    // pair of 3s. The first layer makes the 2 a 3 (its settled neighbour) and the pair's right
    // voxel a 4; the second gives the pair's left voxel the 3 just made beside it, its own label.
    LabelMap seg(grid_of(15, 1, 1));
    const std::vector<int32_t> row{3, 3, 3, 3, 2, 3, 3, 4, 4, 4, 4, 2, 2, 2, 2};
    seg.data.assign(row.begin(), row.end());
    const LabelList list{{0, 2, 3, 4}, "test list"};
    const CleanStats s = remove_islands(seg, posteriors_like(seg, list), list, 3);
    EXPECT_EQ(s.islands, 2);
    EXPECT_EQ(s.island_voxels, 3);
    EXPECT_EQ(s.changed_voxels, 2);
    EXPECT_EQ(s.to_background, 0);
    const std::vector<int32_t> want{3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 2, 2, 2, 2};
    EXPECT_EQ(seg.data, want);
}

// Which voxels are islands: in a component smaller than its label's largest and the threshold.
std::vector<int> island_mask(const LabelMap& seg, int64_t threshold) {
    const Components c = connected_components(seg);
    std::map<int32_t, int64_t> largest_of;  // label -> its largest component's size
    for (int32_t k = 0; k < c.count(); ++k)
        largest_of[c.label[size_t(k)]] = std::max(largest_of[c.label[size_t(k)]], c.size[size_t(k)]);
    std::vector<int> is_island(seg.data.size(), 0);
    for (size_t v = 0; v < seg.data.size(); ++v) {
        const int32_t k = c.id.data[v];
        if (k < 0) continue;
        const int64_t largest = largest_of[c.label[size_t(k)]];
        is_island[v] = c.size[size_t(k)] < largest && c.size[size_t(k)] < threshold;
    }
    return is_island;
}

// Blocky random labels 0-4: 3x3x3 cells (islands with an inner voxel, below a threshold of 60)
// and 60 single-voxel specks, so big components and islands of several shapes occur.
LabelMap blocky_random_labels(const Grid& grid, int trial, std::mt19937& rng) {
    LabelMap seg(grid);
    for (int64_t k = 0; k < seg.nz(); ++k)
        for (int64_t j = 0; j < seg.ny(); ++j)
            for (int64_t i = 0; i < seg.nx(); ++i) {
                std::mt19937 cell(uint32_t(trial * 100000 + (k / 3) * 1000 + (j / 3) * 10 + i / 3));
                seg.at(i, j, k) = int32_t(cell() % 5);
            }
    for (int s = 0; s < 60; ++s) seg.data[rng() % seg.data.size()] = int32_t(rng() % 5);
    return seg;
}

// Posteriors rounded to multiples of 1 / `steps`, so that ties occur.
Image coarse_random_posteriors(const Grid& grid, int64_t frames, int steps, std::mt19937& rng) {
    Image post(grid, frames);
    std::uniform_real_distribution<float> u(0, 1);
    for (float& p : post.data) p = std::round(u(rng) * float(steps)) / float(steps);
    return post;
}

// The reference for the layer rule: a full scan per layer, deciding every unresolved island
// voxel with a settled neighbour, then settling them together.
LabelMap reference_islands(LabelMap seg, const Image& post, const LabelList& list, int64_t threshold) {
    std::vector<int> is_island = island_mask(seg, threshold);
    const int64_t n = seg.grid.voxels();
    while (true) {
        std::vector<std::pair<size_t, int32_t>> decided;
        for (int64_t k = 0; k < seg.nz(); ++k)
            for (int64_t j = 0; j < seg.ny(); ++j)
                for (int64_t i = 0; i < seg.nx(); ++i) {
                    const size_t v = size_t(seg.index(i, j, k));
                    if (!is_island[v]) continue;
                    double best = -1;
                    int32_t label = -1;
                    const int d[6][3] = {{-1, 0, 0}, {1, 0, 0}, {0, -1, 0}, {0, 1, 0}, {0, 0, -1}, {0, 0, 1}};
                    for (const auto& o : d) {
                        const int64_t a = i + o[0], b = j + o[1], e = k + o[2];
                        if (a < 0 || b < 0 || e < 0 || a >= seg.nx() || b >= seg.ny() || e >= seg.nz()) continue;
                        const size_t w = size_t(seg.index(a, b, e));
                        if (is_island[w]) continue;
                        const int32_t l = seg.data[w];
                        const double p = post.data[size_t(list.index_of(l)) * size_t(n) + v];
                        if (p > best || (p == best && list.index_of(l) < list.index_of(label))) {
                            best = p;
                            label = l;
                        }
                    }
                    if (label >= 0) decided.emplace_back(v, label);
                }
        if (decided.empty()) break;
        for (const auto& [v, l] : decided) {
            seg.data[v] = l;
            is_island[v] = 0;
        }
    }
    for (size_t v = 0; v < seg.data.size(); ++v)
        if (is_island[v]) seg.data[v] = 0;
    return seg;
}

TEST(Clean, MatchesScanPerLayerReferenceOnRandomVolumes) {
    std::mt19937 rng(11);
    const LabelList list{{0, 1, 2, 3, 4}, "test list"};
    int64_t islands = 0, island_voxels = 0;
    for (int trial = 0; trial < 6; ++trial) {
        SCOPED_TRACE(trial);
        const LabelMap seg = blocky_random_labels(grid_of(14, 12, 10), trial, rng);
        const Image post = coarse_random_posteriors(seg.grid, 5, 8, rng);
        LabelMap ours = seg;
        const CleanStats st = remove_islands(ours, post, list, 60);
        islands += st.islands;
        island_voxels += st.island_voxels;
        EXPECT_EQ(ours.data, reference_islands(seg, post, list, 60).data);
    }
    EXPECT_GT(islands, 30) << "the volumes must exercise the rule";
    EXPECT_GT(island_voxels, 2 * islands) << "islands of several voxels, not only specks";
}

// island_processing.py's get_islands, as written: per label, scipy.ndimage.label's components
// numbered in C order (i slowest), the one largest kept (np.argsort(sizes)[-2], stable: the last
// of those tied) and those of at least `threshold` voxels; the others are islands.
std::vector<int> script_island_mask(const LabelMap& seg, int64_t threshold) {
    std::vector<int> is_island(seg.data.size(), 0);
    std::set<int32_t> labels(seg.data.begin(), seg.data.end());
    labels.erase(0);
    const int d[6][3] = {{1, 0, 0}, {-1, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 0, 1}, {0, 0, -1}};
    for (const int32_t label : labels) {
        std::vector<int> number(seg.data.size(), 0);
        std::vector<int64_t> sizes{0};
        for (int64_t i = 0; i < seg.nx(); ++i)
            for (int64_t j = 0; j < seg.ny(); ++j)
                for (int64_t k = 0; k < seg.nz(); ++k) {
                    const size_t start = size_t(seg.index(i, j, k));
                    if (seg.data[start] != label || number[start] != 0) continue;
                    sizes.push_back(0);
                    std::vector<std::array<int64_t, 3>> stack{{i, j, k}};
                    number[start] = int(sizes.size() - 1);
                    while (!stack.empty()) {
                        const auto [a, b, e] = stack.back();
                        stack.pop_back();
                        ++sizes.back();
                        for (const auto& o : d) {
                            const int64_t x = a + o[0], y = b + o[1], z = e + o[2];
                            if (x < 0 || y < 0 || z < 0 || x >= seg.nx() || y >= seg.ny() || z >= seg.nz()) continue;
                            const size_t w = size_t(seg.index(x, y, z));
                            if (seg.data[w] != label || number[w] != 0) continue;
                            number[w] = number[start];
                            stack.push_back({x, y, z});
                        }
                    }
                }
        size_t main = 1;
        for (size_t c = 1; c < sizes.size(); ++c)
            if (sizes[c] >= sizes[main]) main = c;
        for (size_t v = 0; v < seg.data.size(); ++v)
            if (number[v] != 0 && size_t(number[v]) != main && sizes[size_t(number[v])] < threshold) is_island[v] = 1;
    }
    return is_island;
}

// island_processing.py's clear_islands, as written: loops over i, j and k (k innermost), each
// island voxel relabelled in place from its neighbours that are not island voxels still waiting,
// np.unique's ascending candidates sorted by posterior and the last taken (equal posteriors: the
// higher label).
LabelMap script_islands(LabelMap seg, const Image& post, const LabelList& list, int64_t threshold) {
    std::vector<int> is_island = script_island_mask(seg, threshold);
    const int64_t n = seg.grid.voxels();
    for (int64_t i = 0; i < seg.nx(); ++i)
        for (int64_t j = 0; j < seg.ny(); ++j)
            for (int64_t k = 0; k < seg.nz(); ++k) {
                const size_t v = size_t(seg.index(i, j, k));
                if (!is_island[v]) continue;
                std::set<int32_t> candidates;
                const int d[6][3] = {{1, 0, 0}, {-1, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 0, 1}, {0, 0, -1}};
                for (const auto& o : d) {
                    const int64_t a = i + o[0], b = j + o[1], e = k + o[2];
                    if (a < 0 || b < 0 || e < 0 || a >= seg.nx() || b >= seg.ny() || e >= seg.nz()) continue;
                    const size_t w = size_t(seg.index(a, b, e));
                    if (!is_island[w]) candidates.insert(seg.data[w]);
                }
                int32_t label = 0;
                float best = -1;
                for (const int32_t c : candidates) {  // ascending; a later equal one wins
                    const float p = post.data[size_t(list.index_of(c)) * size_t(n) + v];
                    if (p >= best) best = p, label = c;
                }
                seg.data[v] = label;
                is_island[v] = 0;
            }
    return seg;
}

TEST(Clean, PublishedOrderMatchesTheScriptsLoops) {
    std::mt19937 rng(12);
    const LabelList list{{0, 1, 2, 3, 4}, "test list"};
    int64_t island_voxels = 0, differ_from_layers = 0;
    for (int trial = 0; trial < 6; ++trial) {
        SCOPED_TRACE(trial);
        const LabelMap seg = blocky_random_labels(grid_of(13, 11, 9), trial, rng);  // odd sizes: i, j, k apart
        const Image post = coarse_random_posteriors(seg.grid, 5, 4, rng);
        LabelMap published = seg, layers = seg;
        const CleanStats st = remove_islands(published, post, list, 60, IslandOrder::published);
        island_voxels += st.island_voxels;
        EXPECT_EQ(published.data, script_islands(seg, post, list, 60).data);
        remove_islands(layers, post, list, 60);
        for (size_t v = 0; v < seg.data.size(); ++v) differ_from_layers += published.data[v] != layers.data[v];
    }
    EXPECT_GT(island_voxels, 100) << "the volumes must exercise the rule";
    EXPECT_GT(differ_from_layers, 0) << "the two orders must be told apart";
}

// Of a label's components tied for its largest, the script keeps one (np.argsort(sizes)[-2]: the
// last scipy numbers, in C order); the layers keep all, the same in any voxel order.
TEST(Clean, PublishedIslandsKeepOneOfTheTiedLargest) {
    const LabelList list{{0, 2, 3}, "test list"};
    LabelMap seg(grid_of(4, 3, 2), 1, 2);
    seg.at(1, 1, 0) = 3;  // first in C order (i slowest): i = 1
    seg.at(2, 1, 1) = 3;  // last: i = 2
    Image post(seg.grid, 3, 0.0f);
    const int64_t n = seg.grid.voxels();
    for (int64_t v = 0; v < n; ++v) {
        post.data[size_t(n + v)] = 0.4f;
        post.data[size_t(2 * n + v)] = 0.6f;
    }
    LabelMap layers = seg, published = seg;
    EXPECT_EQ(remove_islands(layers, post, list, 15).islands, 0);
    const CleanStats s = remove_islands(published, post, list, 15, IslandOrder::published);
    EXPECT_EQ(s.islands, 1);
    EXPECT_EQ(published.at(1, 1, 0), 2) << "the first in C order is the island";
    EXPECT_EQ(published.at(2, 1, 1), 3);
    EXPECT_EQ(published.data, script_islands(seg, post, list, 15).data);
}

// The published script chooses by the posteriors before folding and sends a tie to the higher
// label; the layers choose by the folded posteriors and send a tie to the earlier frame.
TEST(Clean, PublishedIslandsChooseByTheUnfoldedPosteriors) {
    const LabelList list{{0, 2, 3, 21}, "test list"};
    // Row 0 background, rows 1-3 white matter (2), an island of 3 at (3, 1) between them.
    LabelMap seg(grid_of(5, 4, 1), 1, 2);
    for (int i = 0; i < 5; ++i) seg.at(i, 0, 0) = 0;
    seg.at(0, 3, 0) = 3, seg.at(1, 3, 0) = 3, seg.at(0, 2, 0) = 3;  // the largest 3
    seg.at(3, 1, 0) = 3;
    Image post(seg.grid, 4, 0.0f);
    const int64_t n = seg.grid.voxels();
    auto set = [&](int64_t i, int64_t j, std::array<float, 4> p) {
        for (int f = 0; f < 4; ++f) post.data[size_t(f * n + seg.index(i, j, 0))] = p[size_t(f)];
    };
    for (int64_t v = 0; v < n; ++v) post.data[size_t(list.index_of(seg.data[size_t(v)]) * n + v)] = 1;
    set(3, 1, {0.4f, 0.3f, 0.0f, 0.3f});  // 0 (0.4) against 2 (0.3 alone, 0.6 folded)
    CleanOptions options;
    Prediction layers{seg, post};
    EXPECT_EQ(clean_prediction(layers, list, options).islands, 1);
    EXPECT_EQ(layers.seg.at(3, 1, 0), 2) << "2 and 21 together outweigh the background";
    options.island_order = IslandOrder::published;
    Prediction published{seg, post};
    clean_prediction(published, list, options);
    EXPECT_EQ(published.seg.at(3, 1, 0), 0) << "the background outweighs 2's frame alone";
    EXPECT_FLOAT_EQ(published.post.data[size_t(1 * n + seg.index(3, 1, 0))], 0.6f) << "the output still folded";

    // One-hot posteriors: the island's neighbours 0 and 2 tie at 0.
    set(3, 1, {0.0f, 0.0f, 1.0f, 0.0f});
    Prediction tie_layers{seg, post}, tie_published{seg, post};
    clean_prediction(tie_layers, list, CleanOptions{});
    clean_prediction(tie_published, list, options);
    EXPECT_EQ(tie_layers.seg.at(3, 1, 0), 0) << "the earlier frame";
    EXPECT_EQ(tie_published.seg.at(3, 1, 0), 2) << "the higher label";
}

// Two components of one label tied for its largest both stay, and the result is the same in
// world space whichever voxel order the file has (RAS kept one blob, LAS the other, when the
// first met won the tie).
TEST(Clean, ComponentsTiedForTheLargestStayInAnyVoxelOrder) {
    const LabelList list{{0, 2, 3}, "test list"};
    LabelMap seg(grid_of(12, 6, 4));
    for (int64_t k = 1; k < 3; ++k)
        for (int64_t j = 1; j < 4; ++j) {
            for (int64_t i = 1; i < 3; ++i) seg.at(i, j, k) = 2;  // 12 voxels at the left
            for (int64_t i = 8; i < 10; ++i) seg.at(i, j, k) = 2;  // 12 at the right
        }
    for (int64_t k = 0; k < 4; ++k)
        for (int64_t j = 0; j < 6; ++j) seg.at(5, j, k) = 3;  // a wall of 3 between them
    seg.at(5, 2, 2) = 2;                                        // with a speck of 2: the one island
    Image post(seg.grid, 3, 0.1f);
    std::fill(post.data.begin() + 2 * seg.grid.voxels(), post.data.end(), 0.5f);  // 3 is likelier
    LabelMap ras = seg;
    const CleanStats s = remove_islands(ras, post, list, 15);
    EXPECT_EQ(s.islands, 1);
    EXPECT_EQ(s.island_voxels, 1);
    EXPECT_EQ(ras.at(5, 2, 2), 3);
    EXPECT_EQ(ras.at(1, 1, 1), 2);
    EXPECT_EQ(ras.at(9, 3, 2), 2);
    LabelMap las = reorient(seg, "LAS");
    remove_islands(las, reorient(post, "LAS"), list, 15);
    EXPECT_EQ(reorient(las, "RAS").data, ras.data);
}

TEST(Clean, CleanPredictionFoldsThenRemovesIslands) {
    // A lone 21 inside 2 folds into 2 (no island left); a lone 3 inside 2 becomes 2.
    LabelMap seg(grid_of(5, 5, 1), 1, 2);
    for (int i = 0; i < 5; ++i) seg.at(i, 0, 0) = 3;
    seg.at(2, 2, 0) = 21;
    seg.at(3, 3, 0) = 3;
    const LabelList list{{0, 2, 3, 21}, "test list"};
    Prediction p{seg, posteriors_like(seg, list)};
    const CleanStats s = clean_prediction(p, list, CleanOptions{});
    EXPECT_EQ(s.folded_voxels, 1);
    EXPECT_EQ(s.islands, 1);
    EXPECT_EQ(p.seg.at(2, 2, 0), 2);
    EXPECT_EQ(p.seg.at(3, 3, 0), 2);
    EXPECT_EQ(p.seg.at(0, 0, 0), 3);
    EXPECT_FLOAT_EQ(p.post.data[size_t(1 * 25 + seg.index(2, 2, 0))], 0.91f) << "frame 2 gains frame 21";

    Prediction unlisted{labels_of(2, 1, 1, {2, 9}), Image(grid_of(2, 1, 1), 4)};
    try {
        clean_prediction(unlisted, list, CleanOptions{}, "seg.nii.gz");
        ADD_FAILURE() << "label 9 has no frame";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("seg.nii.gz: label 9 has no posterior frame"), std::string::npos)
            << e.what();
    }
}

// An early checkpoint's near-flat posteriors: 3 the largest frame everywhere, but 2 and 21
// together larger. The pair agrees (predict wrote it); checked after folding it agreed at 0%
// and clean refused predict's own output as frames "in another order".
TEST(Clean, NearFlatPosteriorsOfAgreeingFramesAreCleaned) {
    const LabelMap seg(grid_of(4, 4, 1), 1, 3);
    const LabelList list{{0, 2, 3, 21}, "test list"};
    Image post(seg.grid, 4);
    const float share[4] = {0.2f, 0.25f, 0.3f, 0.25f};
    for (int64_t f = 0; f < 4; ++f)
        for (int64_t v = 0; v < 16; ++v) post.data[size_t(f * 16 + v)] = share[f];
    Prediction p{seg, post};
    EXPECT_NO_THROW(clean_prediction(p, list, CleanOptions{}, "seg.nii.gz", "post.nii.gz"));
    EXPECT_EQ(p.seg.at(1, 1, 0), 3);
}

// ---------------------------------------------------------------------------------------
// Dice

TEST(Dice, KnownPairWithEmptyAndOneSidedStructures) {
    // Label 1: 4 predicted, 4 true, 3 shared -> 0.75. Label 2: predicted only -> 0.
    // Label 4: true only -> 0. Label 3: in neither -> empty.
    const LabelMap pred = labels_of(10, 1, 1, {1, 1, 1, 1, 2, 2, 0, 0, 0, 0});
    const LabelMap truth = labels_of(10, 1, 1, {0, 1, 1, 1, 1, 0, 4, 0, 0, 0});
    const auto o = label_overlaps(pred, truth);
    EXPECT_EQ(o.at(1).pred, 4);
    EXPECT_EQ(o.at(1).truth, 4);
    EXPECT_EQ(o.at(1).both, 3);
    EXPECT_DOUBLE_EQ(dice(o.at(1)), 0.75);
    EXPECT_EQ(dice(o.at(2)), 0.0);
    EXPECT_EQ(dice(o.at(4)), 0.0);
    EXPECT_DOUBLE_EQ(dice(o.at(0)), 2.0 * 3 / (4 + 5));
    EXPECT_TRUE(std::isnan(dice(Overlap{})));

    const LabelMap same = pred;
    std::vector<DiceSubject> subjects{{"a.nii.gz", o}, {"b.nii.gz", label_overlaps(same, pred)}};
    EXPECT_EQ(labels_present(subjects), (std::vector<int32_t>{1, 2, 4})) << "background left out";
    const CsvTable t = dice_table(subjects, {1, 2, 3, 4});
    EXPECT_EQ(t.columns, (std::vector<std::string>{"subject", "dice_1", "dice_2", "dice_3", "dice_4"}));
    ASSERT_EQ(t.rows.size(), 3u);
    EXPECT_EQ(t.rows[0], (std::vector<std::string>{"a.nii.gz", "0.75", "0", "", "0"}));
    EXPECT_EQ(t.rows[1], (std::vector<std::string>{"b.nii.gz", "1", "1", "", ""}));
    EXPECT_EQ(t.rows[2], (std::vector<std::string>{"mean", "0.875", "0.5", "", "0"}));
}

// One spelling of "no Dice" in every CSV we write (dice's table and train's validation.csv):
// an empty field, read back as NaN; an older file's "nan" still reads.
TEST(Dice, AbsentIsAnEmptyFieldAndReadsBackAsNan) {
    EXPECT_EQ(dice_field(NAN), "");
    EXPECT_EQ(dice_field(0.5), "0.5");
    EXPECT_TRUE(std::isnan(dice_from_field("", "t")));
    EXPECT_TRUE(std::isnan(dice_from_field("nan", "t")));
    EXPECT_EQ(dice_from_field("0.25", "t"), 0.25);
    EXPECT_THROW(dice_from_field("x", "t"), InputError);
}

TEST(Dice, CommonListMapsUnlistedLabelsToBackground) {
    // 5 and 7 are not listed: both become background, and so overlap there.
    const LabelMap pred = labels_of(4, 1, 1, {1, 5, 5, 0});
    const LabelMap truth = labels_of(4, 1, 1, {1, 7, 0, 0});
    const auto o = label_overlaps(pred, truth, {0, 1});
    EXPECT_EQ(o.count(5), 0u);
    EXPECT_EQ(o.count(7), 0u);
    EXPECT_DOUBLE_EQ(dice(o.at(0)), 1.0);
    EXPECT_DOUBLE_EQ(dice(o.at(1)), 1.0);
    EXPECT_DOUBLE_EQ(dice(label_overlaps(pred, truth).at(0)), 2.0 * 1 / (1 + 2)) << "unmapped";
}

// ---------------------------------------------------------------------------------------
// The checked readers (post/prediction.h)

class PostInputs : public test::TempDirTest {
protected:
    // The InputError message of f(), "" when it succeeds.
    template <class F>
    static std::string error_of(F f) {
        try {
            f();
        } catch (const InputError& e) {
            return e.what();
        }
        return "";
    }
};

TEST_F(PostInputs, LabelLists) {
    EXPECT_EQ(parse_label_list("0, 2,3 ,41"), (std::vector<int32_t>{0, 2, 3, 41}));
    EXPECT_EQ(label_list_or_default(nullptr).labels.size(), 34u);
    const std::string empty;
    EXPECT_THROW(label_list_or_default(&empty), InputError) << "an empty --labels is not the default list";
    // The names predict and import take: infant, synthseg, SynthSeg's .npy label files (values
    // repeated, in generation order: the frames are in the networks' channel order).
    const std::string infant = "infant", synthseg = "synthseg";
    EXPECT_EQ(label_list_or_default(&infant).labels, labels::segmentation_labels());
    EXPECT_EQ(label_list_or_default(&synthseg).labels, labels::synthseg_segmentation_labels());
    std::vector<double> shuffled;
    for (auto it = labels::synthseg_segmentation_labels().rbegin(); it != labels::synthseg_segmentation_labels().rend();
         ++it)
        shuffled.insert(shuffled.end(), {double(*it), double(*it)});
    write_npy(path("labels.npy"), {int64_t(shuffled.size())}, shuffled);
    const std::string npy = path("labels.npy");
    testing::internal::CaptureStderr();
    EXPECT_EQ(label_list_or_default(&npy).labels, labels::synthseg_segmentation_labels());
    const std::string said = testing::internal::GetCapturedStderr();
    EXPECT_NE(
        said.find(npy + ": 64 values, 32 distinct (SynthSeg's label files repeat them): the labels are the distinct"),
        std::string::npos)
        << said;
    EXPECT_EQ(named_label_list("3,2,0"), (std::vector<int32_t>{3, 2, 0})) << "a list is the frame order as given";
    EXPECT_NE(error_of([] { parse_label_list("0,2,2"); }).find("--labels: label 2 is listed twice"), std::string::npos);
    EXPECT_NE(error_of([] { parse_label_list("0,,2"); }).find("--labels"), std::string::npos);
    EXPECT_NE(error_of([] { parse_label_list("0,x"); }).find("'x'"), std::string::npos);
    EXPECT_NE(error_of([] { parse_label_list(""); }).find("--labels"), std::string::npos);
    EXPECT_NE(
        error_of([] { named_label_list("seg.nii.gz"); }).find("--labels: seg.nii.gz is a volume, not a label list"),
        std::string::npos);
}

TEST_F(PostInputs, FrameCountsDimensionsGridsAndMissingFilesNameTheFile) {
    const Grid g = grid_of(3, 2, 2);
    write_posteriors(path("post3.nii.gz"), Image(g, 3, 0.5f));
    write_labels(path("seg.nii.gz"), LabelMap(g));
    const LabelList two{{0, 2}, "--labels"};
    const LabelList three{{0, 2, 3}, "--labels"};
    EXPECT_EQ(read_posteriors(path("post3.nii.gz"), three).image.frames, 3);
    const std::string frames = error_of([&] { read_posteriors(path("post3.nii.gz"), two); });
    EXPECT_NE(frames.find(path("post3.nii.gz") + ": 3 posterior frames but --labels has 2 labels"), std::string::npos)
        << frames;
    const std::string four_d = error_of([&] { read_segmentation(path("post3.nii.gz")); });
    EXPECT_NE(four_d.find(path("post3.nii.gz") + ": a 4-D volume with 3 frames"), std::string::npos) << four_d;
    EXPECT_EQ(read_segmentation(path("seg.nii.gz")).frames, 1);
    EXPECT_NE(error_of([&] { read_segmentation(path("missing.nii.gz")); }).find(path("missing.nii.gz")),
              std::string::npos);

    Grid other = grid_of(3, 2, 3);
    const std::string dims = error_of([&] { require_same_grid(g, "a.nii", other, "b.nii"); });
    EXPECT_NE(dims.find("b.nii: not on the voxel grid of a.nii: dims 3x2x3 vs 3x2x2"), std::string::npos) << dims;
    other = g;
    other.affine.m[0][3] = 5e-5;
    EXPECT_EQ(error_of([&] { require_same_grid(g, "a.nii", other, "b.nii"); }), "") << "within 1e-4";
    other.affine.m[0][3] = 0.5;
    const std::string affine = error_of([&] { require_same_grid(g, "a.nii", other, "b.nii"); });
    EXPECT_NE(affine.find("b.nii: not on the voxel grid of a.nii: shifted by 0.5 mm"), std::string::npos) << affine;
    // What a user checks with info: the voxel sizes, the orientation, an oblique turn.
    other = grid_of(3, 2, 2);
    other.affine = Mat4::scaling(-1, 1, 2.5);
    const std::string sizes = error_of([&] { require_same_grid(g, "a.nii", other, "b.nii"); });
    EXPECT_NE(sizes.find(": voxels 1x1x2.5 mm vs 1x1x1 mm, orientation LAS vs RAS, centres "), std::string::npos)
        << sizes;
    other = g;
    const double turn = 10 * M_PI / 180;
    other.affine.m[1][1] = other.affine.m[2][2] = std::cos(turn);
    other.affine.m[1][2] = -std::sin(turn);
    other.affine.m[2][1] = std::sin(turn);
    const std::string oblique = error_of([&] { require_same_grid(g, "a.nii", other, "b.nii"); });
    EXPECT_NE(oblique.find(": axes turned by up to 10 degrees"), std::string::npos) << oblique;

    // A shifted grid stored in another voxel order (LIA): compared in a's order, so the message
    // says the shift, not the permuted dims; another size along an axis is said in the file's
    // own terms, as info shows it (dims, orientation).
    const Grid a = grid_of(4, 3, 2);
    Grid moved = a;
    moved.affine.m[1][3] = 0.5;
    LabelMap lia = reorient(LabelMap(moved), "LIA");
    ASSERT_NE(lia.grid.dim, a.dim);
    const std::string shifted = error_of([&] { on_grid_of(std::move(lia), "b.nii", a, "a.nii"); });
    EXPECT_NE(shifted.find("b.nii: not on the voxel grid of a.nii: shifted by 0.5 mm (b.nii read in the voxel order "
                           "of a.nii)"),
              std::string::npos)
        << shifted;
    const std::string longer =
        error_of([&] { on_grid_of(reorient(LabelMap(grid_of(4, 3, 3)), "LIA"), "b.nii", a, "a.nii"); });
    EXPECT_NE(
        longer.find("b.nii: not on the voxel grid of a.nii: dims 4x3x3 vs 4x3x2, orientation LIA vs RAS, centres "),
        std::string::npos)
        << longer;
}

// A posterior is a probability: NaN, negative and past-1 values (percentages, scaled integers,
// which would win every merge) are refused, naming the voxel; rounding's excess over 1 is not.
TEST_F(PostInputs, PosteriorsOutsideZeroToOneAreRefusedWhereTheyAre) {
    const Grid g = grid_of(3, 2, 2);
    const LabelList two{{0, 2}, "--labels"};
    Image post(g, 2, 0.5f);
    post.at(2, 1, 0, 1) = 1.0004f;
    write_posteriors(path("p.nii.gz"), post);
    EXPECT_EQ(read_posteriors(path("p.nii.gz"), two).image.frames, 2);
    for (const float bad : {5.0f, 1.01f, std::nextafter(1.001f, 2.0f), -0.1f, std::nanf("")}) {
        SCOPED_TRACE(bad);
        post.at(2, 1, 0, 1) = bad;
        write_posteriors(path("p.nii.gz"), post);
        const std::string e = error_of([&] { read_posteriors(path("p.nii.gz"), two); });
        EXPECT_NE(e.find(path("p.nii.gz") + ": posterior " + csv_float(bad) + " "), std::string::npos) << e;
        EXPECT_NE(e.find(" at voxel 2,1,0 of frame 1 is not a probability (0 to 1, past it by rounding up to 1.001)"),
                  std::string::npos)
            << e;
    }
}

TEST_F(PostInputs, WritePredictionLeavesNothingOnFailure) {
    const Grid g = grid_of(2, 2, 2);
    write_prediction(path("s.nii.gz"), LabelMap(g), nullptr, path("p.nii"), Image(g, 2), {0, 1}, nullptr);
    EXPECT_EQ(read_posteriors(path("p.nii"), std::nullopt).image.frames, 2);
    // The posteriors cannot be written (their directory is missing): no segmentation either.
    const std::string e = error_of([&] {
        write_prediction(path("s2.nii.gz"), LabelMap(g), nullptr, path("no/p.nii.gz"), Image(g, 2), {}, nullptr);
    });
    EXPECT_NE(e.find(path("no/p.nii.gz") + ": cannot"), std::string::npos) << e;
    EXPECT_EQ(e.find(".tmp-"), std::string::npos) << "names the file asked for: " << e;
    EXPECT_FALSE(std::filesystem::exists(path("s2.nii.gz")));
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), std::filesystem::directory_iterator{}), 2);
}

}  // namespace
}  // namespace iss
