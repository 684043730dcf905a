// The published Infant-SynthSeg label lists (SPEC.md section 1): generation labels in their
// index order, segmentation labels in output-channel order, left/right twins and fused classes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace iss::labels {

// 43 generation labels; position = generation index (every per-label array uses it).
const std::vector<int32_t>& generation_labels();
// 34 segmentation labels; position = network output channel.
const std::vector<int32_t>& segmentation_labels();
// Groups of generation labels that may share one Gaussian: (2,21,41,61), (16,170), (7,46).
const std::vector<std::vector<int32_t>>& fused_classes();
// Sides a configuration declares (its lr_twins) for labels numbered otherwise than FreeSurfer's
// (an infant atlas's own numbers): pairs [left, right], or [label, label] for a structure on
// neither side. They take precedence over the table below for the labels they name.
using DeclaredTwins = std::vector<std::vector<int32_t>>;

// The right twin of a left label and vice versa (declared, else from the published table, never
// by position, extended with the lateral pairs of SynthSeg's adult maps: 25/57, 136/163,
// 137/164, and the cortical parcels 1000+k/2000+k); labels without a twin map to themselves.
int32_t lr_twin(int32_t label, const DeclaredTwins& declared = {});
// For each position of `list`, the position of its label's twin there, or its own where the
// twin is not in the list (or the label has none): how a left/right flip renumbers channels.
std::vector<int> twin_positions(const std::vector<int32_t>& list, const DeclaredTwins& declared = {});
// Whether the label is on one side (a flip must swap it): declared so, else by FreeSurfer's
// classification.
bool lateral(int32_t label, const DeclaredTwins& declared = {});
// Whether the label's side is known: declared, or in FreeSurfer's classification.
bool side_known(int32_t label, const DeclaredTwins& declared = {});
// The first label of `list` whose twin's twin is not itself (a pair declared over one label of
// a FreeSurfer pair and not the other: [[2, 2]] leaves 41's twin 2), or -1; with it, what a
// refusal says of it.
int32_t first_unreversed(const std::vector<int32_t>& list, const DeclaredTwins& declared);
std::string unreversed_text(int32_t label, const DeclaredTwins& declared);
// Whether a network that learns targets[g] for generation label generation[g] mirrors as
// predict's left/right flip averaging assumes: a flip swaps the generation labels with their
// twins, and must swap the network's outputs by twin_positions(outputs) (an output without its
// twin there staying). A one-sided generation label whose twin is not among them (a map of one
// hemisphere), or one whose side is not known, has no mirror image: it does not. The position
// of the first generation label where it does not, or -1.
int first_unmirrored(const std::vector<int32_t>& generation, const std::vector<int32_t>& targets,
                     const std::vector<int32_t>& outputs, const DeclaredTwins& declared = {});

// SynthSeg's 32 segmentation labels (the distinct values of its
// synthseg_segmentation_labels.npy), in FreeSurfer's order, the first SynthSeg.h5's (2020)
// output-channel order (since 2021 its networks number them ascending).
const std::vector<int32_t>& synthseg_segmentation_labels();

// A label list in the order SynthSeg's networks number their outputs (its get_list_labels with
// FS_sort=True): unsided labels, then left, then right, each ascending, by FreeSurfer's
// classification; Infant-SynthSeg's labels extend it (170 and 172 unsided, 21 left, twin of 61),
// so that its 34 labels come out in their published order. InputError naming a label that is in
// none of the classes, or one given twice.
std::vector<int32_t> freesurfer_sorted(const std::vector<int32_t>& labels);

// The infant protocol's folds (SPEC.md section 6), as (folded label, kept label): 21 -> 2,
// 61 -> 41, 170 -> 16, and with merge_cerebellum also 7 -> 8, 46 -> 47 (cerebellar white matter
// into cortex).
std::vector<std::pair<int32_t, int32_t>> fold_pairs(bool merge_cerebellum);
// The folds merge_cerebellum adds: 7 -> 8, 46 -> 47.
std::vector<std::pair<int32_t, int32_t>> cerebellum_fold_pairs();

// Each label of `list` once, where it first appears (SynthSeg's label files repeat them).
std::vector<int32_t> distinct(const std::vector<int32_t>& list);

// Index of `label` in `list`, or -1.
int index_of(const std::vector<int32_t>& list, int32_t label);
// The labels of `list` the infant protocol has not (not among its generation labels): a list of
// another protocol's numbers, to which its folds and fused classes do not apply.
std::vector<int32_t> not_infant(const std::vector<int32_t>& list);

}  // namespace iss::labels
