// `infant-synthseg clean`: folds the infant extra labels and relabels small islands (SPEC.md
// section 6, "Clean"; the rules in post/clean.h). Inputs are read and checked before anything
// is written; the outputs appear together or not at all.
#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "bin/cli.h"
#include "bin/commands.h"
#include "io/csv.h"
#include "io/file_util.h"
#include "io/nifti.h"  // set_output_description
#include "kernels/common/error.h"
#include "post/clean.h"
#include "post/prediction.h"
#include "synth/labels.h"  // generation_labels

namespace iss::cli {
namespace {

const char* usage =
    "usage: infant-synthseg clean --seg FILE --post FILE --o FILE [--o-post FILE]\n"
    "                             [--vol FILE.csv] [--island-threshold N] [--merge-cerebellum]\n"
    "                             [--labels LIST] [--no-fold] [--published-islands]\n"
    "\n"
    "Cleans a segmentation. First folds the infant extra labels into the structures they\n"
    "model: 21 -> 2, 61 -> 41, 170 -> 16 (and with --merge-cerebellum 7 -> 8, 46 -> 47).\n"
    "Then, for each label but background, every 6-connected component smaller than the\n"
    "label's largest is an island unless it has at least N voxels (components tied for the\n"
    "largest all stay); island voxels take the label of a neighbour (6 faces, island voxels\n"
    "excluded) with the highest posterior there, resolved breadth-first from the island's\n"
    "border inwards (equal posteriors: the label earlier in the list), by the posteriors\n"
    "after folding (2's and 21's frames summed for 2).\n"
    "\n"
    "  --seg FILE              segmentation (3-D label map, NIfTI or MGH)\n"
    "  --post FILE             its posteriors (4-D float, one frame per label of the\n"
    "                          list), on the segmentation's voxel grid (stored in any voxel\n"
    "                          order)\n"
    "  --o FILE                cleaned segmentation (.nii, .nii.gz, .mgz or .mgh)\n"
    "  --o-post FILE           also write the folded posteriors: a folded label's frame is\n"
    "                          added to its kept label's frame (at most 1: a merge's maxima\n"
    "                          may sum past it) and left as zeros, so frame k still belongs\n"
    "                          to the k-th label of the list\n"
    "  --vol FILE.csv          also write the cleaned segmentation's volumes in mm^3: a row\n"
    "                          (subject: its name), a column per label of the list that\n"
    "                          stays after folding (background left out) and `total`; each\n"
    "                          the label's voxel count times the voxel volume (a merge's\n"
    "                          posteriors are maxima of two, not probabilities: their sums\n"
    "                          would overstate); a file there is replaced, not added to\n"
    "  --island-threshold N    components of at least N voxels are kept (default 15; 0 or 1\n"
    "                          keeps every component)\n"
    "  --merge-cerebellum      also fold cerebellar white matter into cortex (the published\n"
    "                          island_processing.py always does)\n"
    "  --no-fold               fold nothing: for a protocol whose numbers 21, 61 and 170 are\n"
    "                          structures of their own (the islands are cleaned alone)\n"
    "  --labels LIST           the labels of the posterior frames, in frame order: infant (the\n"
    "                          34 infant segmentation labels, the default), synthseg\n"
    "                          (SynthSeg 1.0's 32), a model's folder (its labels in channel\n"
    "                          order), a .npy label file (its labels; these three in\n"
    "                          FreeSurfer's order: unsided, left, right), or a list;\n"
    "                          posteriors written by predict, merge or clean as NIfTI record\n"
    "                          their labels and need none (one given must be the recorded one)\n"
    "  --published-islands     relabel islands as the published island_processing.py does:\n"
    "                          one voxel at a time in the file's voxel order (i slowest),\n"
    "                          each from its neighbours then settled, by the posteriors\n"
    "                          before folding, equal posteriors to the higher label number,\n"
    "                          one of a label's components tied for its largest kept (its\n"
    "                          result depends on the voxel order; the default's does not)\n"
    "  --help                  this text\n";

// The cleaned segmentation's volumes (mm^3), as predict --vol lays them out: each label of the
// list that stays after folding, its voxel count times the voxel volume; a segmentation all
// background has a row of empty cells, as predict gives it (its zeros read as a brain of none).
CsvTable segmentation_volumes(const LabelMap& seg, const std::vector<int32_t>& labels, const CleanOptions& options,
                              const std::string& subject) {
    std::set<int32_t> folded;
    if (options.fold)
        for (const auto& [from, to] : labels::fold_pairs(options.merge_cerebellum)) folded.insert(from);
    std::vector<int32_t> kept;
    for (const int32_t label : labels)
        if (!folded.count(label)) kept.push_back(label);
    CsvTable table = volumes_table(kept);
    const bool any = has_structure(seg);
    if (!any) warning(cat("clean: ", subject, ": the segmentation is all background: its --vol row is left empty"));
    add_volumes_row(table, subject, kept, any ? label_volumes_mm3(seg, kept) : std::vector<double>());
    return table;
}

// The infant extra labels' folds are the infant protocol's: a list with labels it has not, which
// holds a label folded (a lab's 21, its right thalamus, became 2), is said, with the way out.
// --merge-cerebellum's are FreeSurfer's, whose cerebellum has both sides: a list with 7 but
// neither 46 nor 47 (a 9-tissue protocol's 7, its deep grey matter, became 8, its brainstem) is
// said too. A FreeSurfer list with labels the infant protocol lacks (aseg's 251) is not.
void warn_of_another_protocol(const LabelList& list, const CleanOptions& options) {
    if (!options.fold) return;
    const std::vector<int32_t> foreign = labels::not_infant(list.labels);
    // The folds made: the infant protocol's, and --merge-cerebellum's.
    auto made = [&](const std::vector<std::pair<int32_t, int32_t>>& pairs) {
        std::string text;
        for (const auto& [from, to] : pairs)
            if (list.index_of(from) >= 0) text += cat(text.empty() ? "" : ", ", from, " -> ", to);
        return text;
    };
    const std::string infant = made(labels::fold_pairs(false));
    const std::string cerebellum = options.merge_cerebellum ? made(labels::cerebellum_fold_pairs()) : "";
    const bool infant_warned = !infant.empty() && !foreign.empty();
    if (infant_warned)
        warning(cat("clean: folds ", infant, " as the infant protocol numbers its labels",
                    cerebellum.empty() ? "" : cat(" (and ", cerebellum, " as FreeSurfer numbers the cerebellum)"),
                    ", but the list (", list.source, ") holds labels the infant protocol has not (",
                    first_values(foreign, 5), "): for a protocol whose labels are other structures give --no-fold",
                    options.merge_cerebellum ? " without --merge-cerebellum" : ""));
    const bool right = list.index_of(46) >= 0 || list.index_of(47) >= 0;
    if (options.merge_cerebellum && !infant_warned && list.index_of(7) >= 0 && !right)
        warning(cat("clean: --merge-cerebellum folds 7 -> 8 as FreeSurfer numbers the cerebellum, but the list (",
                    list.source, ") has neither 46 nor 47, the other side's: for a protocol whose 7 and 8 are ",
                    "other structures leave out --merge-cerebellum"));
}

}  // namespace

int cmd_clean(int argc, char** argv) {
    const Args args("clean", argc, argv,
                    {"--seg", "--post", "--o", "--o-post", "--vol", "--island-threshold", "--labels"},
                    {"--merge-cerebellum", "--no-fold", "--published-islands", "--help"});
    if (args.flag("--help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    args.reject_positional();
    const std::string seg_path = args.require("--seg"), post_path = args.require("--post");
    const std::string out = args.require("--o"), out_post = args.get("--o-post", ""), vol = args.get("--vol", "");
    require_volume_output(out, "--o");
    if (args.has("--o-post")) require_volume_output(out_post, "--o-post");
    ISS_INPUT(!args.has("--vol") || !is_volume_name(vol), "clean: --vol ", vol,
              ": the volumes are CSV text, not an image (name it .csv)");
    const std::string labels_text = args.get("--labels", "");
    const std::vector<NamedPath> outputs{{out, "--o"}, {out_post, "--o-post"}, {vol, "--vol"}};
    check_outputs("clean", {{seg_path, "--seg"}, {post_path, "--post"}, label_file_of(labels_text)}, outputs,
                  folders_of(outputs));
    require_replaceable_table("clean", "--vol", vol, TableKind::volumes);
    CleanOptions options;
    options.island_threshold = args.integer("--island-threshold", options.island_threshold);
    ISS_INPUT(options.island_threshold >= 0, "clean: --island-threshold must be >= 0, got ", options.island_threshold);
    options.merge_cerebellum = args.flag("--merge-cerebellum");
    options.fold = !args.flag("--no-fold");
    if (args.flag("--published-islands")) options.island_order = IslandOrder::published;
    ISS_INPUT(options.fold || !options.merge_cerebellum,
              "clean: --merge-cerebellum folds, and --no-fold folds nothing: give one of them");
    const std::optional<LabelList> given = given_label_list(args, "--labels");

    VolumeHeader seg_header, post_header;
    Prediction p{read_segmentation(seg_path, &seg_header), Image()};
    Posteriors posteriors = read_posteriors(post_path, given, &post_header);
    p.post = on_grid_of(std::move(posteriors.image), post_path, p.seg.grid, seg_path);

    const CleanStats s = clean_prediction(p, posteriors.labels, options, seg_path, post_path);
    warn_of_another_protocol(posteriors.labels, options);  // once every input is checked
    // Within the field's 79 bytes on a "-dirty" build with every option ("as published" after
    // "voxels" was cut).
    set_output_description(cat(
        output_description(), options.fold ? "" : ", no fold", options.merge_cerebellum ? ", cerebellum merged" : "",
        options.island_order == IslandOrder::published ? ", published islands < " : ", islands < ",
        options.island_threshold, options.island_order == IslandOrder::published ? "" : " voxels"));
    warn_of_temporaries_beside("clean", outputs);
    OutputDirectories folders;
    folders.make_for(outputs);
    OutputSet files;  // all of them or none
    write_prediction(files, out, p.seg, &seg_header, out_post, p.post, posteriors.labels.labels, &post_header);
    if (!vol.empty()) {
        const CsvTable volumes = segmentation_volumes(p.seg, posteriors.labels.labels, options, subject_of(seg_path));
        warn_if_replacing_volumes("clean", vol, volumes,
                                  "a table holds one segmentation's volumes (give each subject a table of its own)");
        files.write(vol, [&](const std::string& path) { write_csv(path, volumes); });
    }
    files.commit();
    auto counted = [](int64_t n, const char* what) { return cat(n, " ", what, n == 1 ? "" : "s"); };
    std::printf(
        "clean: folded %s; %s of %s relabelled from their neighbours (%lld changed label, %lld to "
        "background); wrote %s%s%s%s%s\n",
        counted(s.folded_voxels, "voxel").c_str(), counted(s.islands, "island").c_str(),
        counted(s.island_voxels, "voxel").c_str(), (long long)s.changed_voxels, (long long)s.to_background, out.c_str(),
        out_post.empty() ? "" : " and ", out_post.c_str(), vol.empty() ? "" : " and ", vol.c_str());
    return 0;
}

}  // namespace iss::cli
