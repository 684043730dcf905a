// `infant-synthseg merge`: combines the predictions of a T1 and a T2 image of one subject
// (SPEC.md section 6, "T1/T2 merge"). Every input is read and checked (3-D segmentations,
// posteriors with one frame per label, all four files on one voxel grid) before anything is
// written; both outputs appear together or not at all.
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bin/cli.h"
#include "bin/commands.h"
#include "io/file_util.h"
#include "kernels/common/error.h"
#include "post/merge.h"
#include "post/prediction.h"

namespace iss::cli {
namespace {

const char* usage =
    "usage: infant-synthseg merge --t1-seg FILE --t1-post FILE --t2-seg FILE --t2-post FILE\n"
    "                             --o-seg FILE --o-post FILE [--labels LIST]\n"
    "                             [--t1-labels LIST] [--t2-labels LIST]\n"
    "\n"
    "Merges the predictions of a co-registered T1 and T2 image of one subject. At each voxel\n"
    "the segmentation keeps the T1 label where the T1 posteriors' maximum is strictly greater\n"
    "than the T2 posteriors' maximum, else the T2 label (ties go to T2); the merged\n"
    "posteriors are the element-wise maximum of the two posterior vectors, label by label.\n"
    "\n"
    "  --t1-seg FILE   T1 segmentation (3-D label map, NIfTI or MGH)\n"
    "  --t1-post FILE  T1 posteriors (4-D float, one frame per label of its list)\n"
    "  --t2-seg FILE   T2 segmentation, on the T1 segmentation's voxel grid\n"
    "  --t2-post FILE  T2 posteriors, on the same grid, with the same labels in any order\n"
    "  --o-seg FILE    merged segmentation (.nii, .nii.gz, .mgz or .mgh)\n"
    "  --o-post FILE   merged posteriors (.nii, .nii.gz, .mgz or .mgh), frames in the T1\n"
    "                  posteriors' order\n"
    "  --labels LIST   the labels of both posteriors' frames, in frame order: infant (the 34\n"
    "                  infant segmentation labels), synthseg (SynthSeg 1.0's 32), a model's\n"
    "                  folder (its labels in channel order), a .npy label file (SynthSeg's:\n"
    "                  its labels), or a comma-separated list; infant, synthseg and a .npy\n"
    "                  file's labels are taken in FreeSurfer's order (unsided, left, right),\n"
    "                  Infant-SynthSeg's (SynthSeg's own predict since 2021 writes ascending\n"
    "                  labels: list them)\n"
    "  --t1-labels LIST, --t2-labels LIST\n"
    "                  the same for one side's posteriors (from models with other orders)\n"
    "  --help          this text\n"
    "\n"
    "Posteriors written by predict, merge or clean as NIfTI record their frames' labels, and\n"
    "need no list (one given must be the recorded one). Others (SynthSeg's, MGH files) take\n"
    "their side's option, else --labels, else the infant list.\n"
    "\n"
    "All four inputs must be on one voxel grid (dims and affine to 1e-4 mm; a file of that\n"
    "grid stored in another voxel order, LIA beside RAS, is reordered exactly); the command\n"
    "names the file that differs and exits 2 otherwise, writing nothing. The outputs are on\n"
    "the T1 segmentation's grid. A T2 scan on a grid of its own: predict it with --like and\n"
    "the T1 scan (its outputs then on the T1's grid, where the headers co-register them).\n";

}  // namespace

int cmd_merge(int argc, char** argv) {
    const Args args("merge", argc, argv,
                    {"--t1-seg", "--t1-post", "--t2-seg", "--t2-post", "--o-seg", "--o-post", "--labels", "--t1-labels",
                     "--t2-labels"},
                    {"--help"});
    if (args.flag("--help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    args.reject_positional();
    const std::string t1_seg = args.require("--t1-seg"), t1_post = args.require("--t1-post");
    const std::string t2_seg = args.require("--t2-seg"), t2_post = args.require("--t2-post");
    const std::string o_seg = args.require("--o-seg"), o_post = args.require("--o-post");
    require_volume_output(o_seg, "--o-seg");
    require_volume_output(o_post, "--o-post");
    ISS_INPUT(!(args.has("--labels") && args.has("--t1-labels") && args.has("--t2-labels")),
              "merge: --labels is for a side without its own --t1-labels or --t2-labels; both are given");
    std::vector<NamedPath> inputs{
        {t1_seg, "--t1-seg"}, {t1_post, "--t1-post"}, {t2_seg, "--t2-seg"}, {t2_post, "--t2-post"}};
    for (const char* option : {"--labels", "--t1-labels", "--t2-labels"})
        if (args.has(option)) inputs.push_back(label_file_of(args.get(option, ""), option));
    const std::vector<NamedPath> outputs{{o_seg, "--o-seg"}, {o_post, "--o-post"}};
    check_outputs("merge", inputs, outputs, folders_of(outputs));
    // Each side's labels as given: its own option, else --labels (read once), else none.
    const std::optional<LabelList> both = given_label_list(args, "--labels");
    const std::optional<LabelList> t1_given = args.has("--t1-labels") ? given_label_list(args, "--t1-labels") : both;
    const std::optional<LabelList> t2_given = args.has("--t2-labels") ? given_label_list(args, "--t2-labels") : both;

    VolumeHeader seg_header, post_header;
    // Everything on the T1 segmentation's grid (a file of it stored in another voxel order is
    // reordered).
    Prediction t1{read_segmentation(t1_seg, &seg_header), Image()};
    Posteriors t1_read = read_posteriors(t1_post, t1_given, &post_header, "--t1-labels");
    t1.post = on_grid_of(std::move(t1_read.image), t1_post, t1.seg.grid, t1_seg);
    // An infant's T2 is often acquired on a grid of its own (coronal, 2 mm slices): the one
    // refusal a user of the README's workflow meets, so it says what to do.
    Prediction t2{read_segmentation(t2_seg), Image()};
    try {
        t2.seg = on_grid_of(std::move(t2.seg), t2_seg, t1.seg.grid, t1_seg);
    } catch (const InputError& e) {
        throw InputError(cat(e.what(), "; merge compares the two predictions voxel by voxel: predict the T2 scan ",
                             "again with --like and the T1 scan (its outputs then on the T1's grid, where the ",
                             "headers co-register the scans), or register it onto the T1 first"));
    }
    Posteriors t2_read = read_posteriors(t2_post, t2_given, nullptr, "--t2-labels");
    t2.post = on_grid_of(std::move(t2_read.image), t2_post, t1.seg.grid, t1_seg);

    // Every label of either segmentation must have its posterior frame (as clean requires), and
    // the two posteriors the same labels, T2's read in T1's order.
    require_listed(t1.seg, t1_seg, t1_read.labels);
    require_listed(t2.seg, t2_seg, t2_read.labels);
    std::vector<int64_t> t2_frames = frames_in_order_of(t2_read.labels, t2_post, t1_read.labels, t1_post);
    require_frames_match(t1.seg, t1_seg, t1.post, t1_post, t1_read.labels, "--t1-labels");
    require_frames_match(t2.seg, t2_seg, t2.post, t2_post, t2_read.labels, "--t2-labels");
    // The same prediction twice (a copied command line naming the T1's files for both): the merge
    // is the T1's, exit 0; said, as it is surely not what was meant.
    if (t1.seg.data == t2.seg.data && t1.post.data == t2.post.data && t1_read.labels.labels == t2_read.labels.labels)
        warning(cat("merge: ", t2_seg, " and ", t2_post, " hold the same prediction as ", t1_seg, " and ", t1_post,
                    " (the T1's files given twice?): the merge is that prediction"));
    const Prediction merged = merge_t1_t2(std::move(t1), t2, std::move(t2_frames));
    warn_of_temporaries_beside("merge", outputs);
    OutputDirectories folders;
    folders.make_for(outputs);
    write_prediction(o_seg, merged.seg, &seg_header, o_post, merged.post, t1_read.labels.labels, &post_header);
    std::printf("merged %s and %s: wrote %s and %s\n", t1_seg.c_str(), t2_seg.c_str(), o_seg.c_str(), o_post.c_str());
    return 0;
}

}  // namespace iss::cli
