// A prediction as the post-processing tools see it: a 3-D segmentation and its posteriors, a
// 4-D float volume with one frame per label of a label list (frame k belongs to labels[k]).
// Posteriors we write as NIfTI record the list (write_posteriors); for others (SynthSeg's, an
// MGH file's) the tools take it from --labels or, by default, the infant segmentation list
// (SPEC.md section 1, 34 labels). The readers here check what the files must agree on before
// any work is done, each failure an InputError naming the file.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "io/csv.h"
#include "io/file_util.h"
#include "io/nifti.h"
#include "io/volume.h"

namespace iss {

struct LabelList {
    std::vector<int32_t> labels;  // frame k of a posteriors file belongs to labels[k]
    // For messages: "the infant segmentation list", "infant labels", "synthseg labels", the
    // option's name, or the label file or model.json it named.
    std::string source;

    // Position of `label` in the list, or -1.
    int index_of(int32_t label) const;
};

struct Prediction {
    LabelMap seg;  // label values
    Image post;    // frames = labels.size(), in the label list's order
};

// "0,2,3,41": distinct integers separated by commas (spaces allowed around them). InputError
// naming `option` for an empty list, a non-integer, or a repeated label.
std::vector<int32_t> parse_label_list(const std::string& text, const std::string& option = "--labels");
// "0,2,3,41": the text parse_label_list reads back.
std::string label_list_text(const std::vector<int32_t>& labels);

// The label values a --labels text names: "infant" (the 34 infant segmentation labels) or
// "synthseg" (SynthSeg's 32), each in FreeSurfer's order (freesurfer_sorted); a model's folder or its
// model.json (its labels, in channel order); a .npy label file as SynthSeg ships them (its
// distinct values, in file order); or a comma-separated list, as given.
std::vector<int32_t> named_label_list(const std::string& text, const std::string& option = "--labels");

// The file a --labels value reads (a .npy label file, a model.json), else "": an input no output
// may replace.
NamedPath label_file_of(const std::string& labels_text, const std::string& option = "--labels");

// The labels of a posteriors file's frames, in frame order: those `text` names (an option's
// value: an empty value is an error naming the option; a .npy file's put in the networks'
// channel order, labels::freesurfer_sorted, as predict writes an imported model's), or the
// infant segmentation list when the option was not given (`text` null).
LabelList label_list_or_default(const std::string* text, const std::string& option = "--labels");

// A 3-D label map: InputError naming the file when it has more than one frame.
LabelMap read_segmentation(const std::string& path, VolumeHeader* header = nullptr);

struct Posteriors {
    Image image;
    LabelList labels;  // frame k belongs to labels.labels[k]
};

// Posteriors (every value a probability) and the labels of their frames: those the file records,
// else `given` (an option's list, when it was given), else the infant segmentation
// list. InputError naming the file when the recorded labels and `given` differ (the frames would
// be taken for other labels), or when the frame count is not the list's; `option` is the one its
// advice names (merge's --t1-labels or --t2-labels).
Posteriors read_posteriors(const std::string& path, const std::optional<LabelList>& given,
                           VolumeHeader* header = nullptr, const std::string& option = "--labels");

// For each label of `to`, its frame in `from`: how to read posteriors of `from`'s order in
// `to`'s. InputError naming both files and their lists' sources when the lists do not hold the
// same labels.
std::vector<int64_t> frames_in_order_of(const LabelList& from, const std::string& from_path, const LabelList& to,
                                        const std::string& to_path);

// InputError when `b` is not on `a`'s voxel grid (dims equal, affines within 1e-4 mm), naming
// both files and what differs: the dims, or the largest affine difference.
void require_same_grid(const Grid& a, const std::string& a_path, const Grid& b, const std::string& b_path);

// `b` on `a`'s voxel grid: as it is, or reordered (exactly: axes permuted and flipped) when it
// is `a`'s grid stored in another voxel order (a T2 prediction written LIA beside a T1 one
// written RAS); otherwise InputError as require_same_grid.
template <class T>
Volume<T> on_grid_of(Volume<T> b, const std::string& b_path, const Grid& a, const std::string& a_path);

// The values of `seg` that `list` does not hold, background included, in increasing order.
std::set<int32_t> labels_not_in(const LabelMap& seg, const std::vector<int32_t>& list);

// InputError naming the file and the first label (in increasing order) of `seg` that has no
// posterior frame in `list`.
void require_listed(const LabelMap& seg, const std::string& path, const LabelList& list);

// InputError when the posteriors' frames, read as `list`'s labels, disagree with the
// segmentation they come with: at most half of its labelled voxels whose posteriors have one
// largest frame take that frame's label. Frames in another order than the list says (SynthSeg's
// own posteriors are in ascending label order, `--labels synthseg` FreeSurfer's) were read as
// other structures without a word; predict's and merge's outputs agree with their posteriors at
// every such voxel (the demo's nine pairs).
// `option` is the one its advice names.
void require_frames_match(const LabelMap& seg, const std::string& seg_path, const Image& post,
                          const std::string& post_path, const LabelList& list, const std::string& option = "--labels");

// InputError naming the option when `path` is not a .nii, .nii.gz, .mgz or .mgh name: checked
// before any input is read, so a typo costs nothing and leaves nothing behind.
void require_volume_output(const std::string& path, const std::string& option);

// Writes a segmentation and, when `post_path` is not empty, its posteriors (float32, one frame
// per label, the labels recorded in a NIfTI file), `like` headers lending their
// descrip/units/xform codes. Both files are written under temporary names first and renamed only
// when both are complete, so a failure leaves neither behind (nor half of a pair beside an older
// other half).
void write_prediction(const std::string& seg_path, const LabelMap& seg, const VolumeHeader* seg_like,
                      const std::string& post_path, const Image& post, const std::vector<int32_t>& frame_labels,
                      const VolumeHeader* post_like);
// The same into a set of outputs that the caller commits (with other outputs of the same run).
void write_prediction(OutputSet& outputs, const std::string& seg_path, const LabelMap& seg,
                      const VolumeHeader* seg_like, const std::string& post_path, const Image& post,
                      const std::vector<int32_t>& frame_labels, const VolumeHeader* post_like);

// A volume as the tables hold it: mm^3 to 3 decimals (SPEC.md section 6).
inline double rounded_mm3(double mm3) {
    return std::round(mm3 * 1000.0) / 1000.0;
}
// Whether a segmentation holds any structure (a label other than the background).
bool has_structure(const LabelMap& seg);

// Each label's volume in a segmentation (mm^3, rounded_mm3): its voxel count times the voxel
// volume, in `labels`' order (clean --vol: a merge's posteriors are maxima, not probabilities).
std::vector<double> label_volumes_mm3(const LabelMap& seg, const std::vector<int32_t>& labels);

// The volumes table of predict --vol and clean --vol: columns `subject`, a label each but the
// background (in `labels`' order) and `total`; add_volumes_row adds a subject's row from its
// volumes in mm^3 (one per label of the same list; the total rounded to 3 decimals), or with no
// volumes a row of empty cells (a scan segmented as all background: its soft volumes, some 20 mL
// of posterior mass, read as a small brain in a cohort's table).
CsvTable volumes_table(const std::vector<int32_t>& labels);
void add_volumes_row(CsvTable& table, const std::string& subject, const std::vector<int32_t>& labels,
                     const std::vector<double>& volumes_mm3);

}  // namespace iss
