// `infant-synthseg priors`: intensity priors for the generator estimated from real images and
// their label maps (SPEC.md section 7; the computation is in synth/priors_estimate.h). Reads and
// measures every subject before writing anything, then writes prior_means.npy and
// prior_stds.npy (float64, (2, n_labels)) with prior_labels.npy (their columns' labels) and prints
// a table per label.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bin/cli.h"
#include "bin/commands.h"
#include "io/file_util.h"
#include "io/npy.h"
#include "kernels/common/error.h"
#include "post/prediction.h"  // parse_label_list
#include "synth/config.h"     // prior_labels_file_name
#include "synth/labels.h"
#include "synth/priors_estimate.h"

namespace iss::cli {
namespace {

namespace fs = std::filesystem;

const char* usage =
    "usage: infant-synthseg priors --images DIR --labels DIR --out DIR [--labels-list LIST]\n"
    "                              [--classes]\n"
    "\n"
    "Estimates intensity priors from real images and their label maps. Per subject the image\n"
    "is clipped to the 2nd and 98th percentiles of its positive intensities and that range\n"
    "rescaled to [0, 255]; then for each label present: the median and 1.4826 * the median\n"
    "absolute deviation of the positive intensities inside it (the first listed label, the\n"
    "background, keeps its zeros; a label with none counts as absent in that subject, as in\n"
    "the reference). Across the subjects where a label is present: prior_means = [mean; std]\n"
    "of the medians, prior_stds = [mean; std] of the spreads (population std, ddof 0: 0 with\n"
    "one subject). Writes DIR/prior_means.npy and DIR/prior_stds.npy (float64, shape\n"
    "(2, n_labels), columns in label-list order) and DIR/prior_labels.npy (that list, int32),\n"
    "usable as prior_means / prior_stds of a synth or train --config by path\n"
    "({\"prior_means\": \"DIR/prior_means.npy\", ...}, relative to the configuration's folder):\n"
    "each generation label then takes its own column, found in prior_labels.npy beside them.\n"
    "Labels present in no subject get 0 and a warning; so does a label map whose voxels mostly\n"
    "hold labels not in the list. Every input is checked before anything is written.\n"
    "\n"
    "  --images DIR       images (*.nii, *.nii.gz, NIfTI pairs *.hdr + .img, *.mgz, *.mgh), or\n"
    "                     one file\n"
    "  --labels DIR       their label maps, each on its image's grid (in any voxel order):\n"
    "                     in a folder the same names (without .nii / .nii.gz / .hdr / .mgz /\n"
    "                     .mgh); beside one image file, one label map file\n"
    "  --out DIR          output directory, created when missing\n"
    "  --labels-list LIST the labels to measure, in column order: comma-separated integers or a\n"
    "                     .npy file of them (default: the 43 generation labels in index order);\n"
    "                     the first is the background, whose zero intensities count, as in\n"
    "                     SynthSeg's estimate_priors\n"
    "  --classes          pool the voxels of each fused class ((2,21,41,61), (16,170), (7,46),\n"
    "                     the members that are in the list) and write the class's value in the\n"
    "                     column of every label of the group\n"
    "  --help             this text\n";

// "2,3,41" (parse_label_list, shared with the other commands) or a .npy file of integers;
// duplicates are bad input (a column would be lost), and so is a value no generation_labels list
// can hold (-2 or 70000 gave a column of zeros).
std::vector<int32_t> priors_label_list(const std::string& text) {
    const std::string option = "priors: --labels-list";
    ISS_INPUT(!is_volume_name(text), option, ": ", text,
              " is a volume, not a label list: give comma-separated labels (2,3,41) or a .npy file");
    const std::vector<int32_t> list = ends_with(text, ".npy") ? read_npy_labels(text) : parse_label_list(text, option);
    require_distinct_labels(list, option);
    ISS_INPUT(list.size() >= 2, option, ": lists label ", list.front(),
              " alone: list the background first, then the structures to estimate");
    return list;
}

// --classes pools the infant protocol's fused classes: a list with labels its generation list has
// not, which holds two labels of one class (a lab's 2 and 21, its left hippocampus and right
// thalamus, given one value), is said.
void warn_of_pooling_another_protocol(const PriorsOptions& options) {
    if (!options.classes || labels::not_infant(options.labels).empty()) return;
    std::string pooled;
    for (const std::vector<int32_t>& fused : labels::fused_classes()) {
        std::string listed;
        int count = 0;
        for (const int32_t label : fused)
            if (labels::index_of(options.labels, label) >= 0) listed += cat(count++ ? "," : "", label);
        if (count >= 2) pooled += cat(pooled.empty() ? "" : ", ", "(", listed, ")");
    }
    if (!pooled.empty())
        warning(cat("priors: --classes pools ", pooled, " as the infant protocol's fused classes, but --labels-list ",
                    "has labels its generation list has not: for a protocol whose labels are other structures leave "
                    "--classes out"));
}

}  // namespace

int cmd_priors(int argc, char** argv) {
    const Args args("priors", argc, argv, {"--images", "--labels", "--out", "--labels-list"}, {"--classes", "--help"});
    if (args.flag("--help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    args.reject_positional();
    const std::string images = args.require("--images");
    const std::string label_maps = args.require("--labels");
    const std::string out_dir = args.require("--out");
    PriorsOptions options;
    options.labels =
        args.has("--labels-list") ? priors_label_list(args.get("--labels-list", "")) : labels::generation_labels();
    options.classes = args.flag("--classes");
    options.list_given = args.has("--labels-list");
    if (options.labels.front() != 0)
        warning(cat("priors: label ", options.labels.front(), " is listed first, so it is taken as the background, ",
                    "as the reference takes its first label: its zeros count (list 0 first otherwise)"));

    const std::vector<SubjectFiles> subjects = pair_subject_files(images, label_maps);
    const std::string means_path = (fs::path(out_dir) / "prior_means.npy").string();
    const std::string stds_path = (fs::path(out_dir) / "prior_stds.npy").string();
    const std::string labels_path = prior_labels_beside(means_path);
    std::vector<NamedPath> inputs{{args.get("--labels-list", ""), "--labels-list"}};
    for (const SubjectFiles& f : subjects) inputs.insert(inputs.end(), {{f.image, "--images"}, {f.labels, "--labels"}});
    check_outputs("priors", inputs, {{means_path, "--out"}, {stds_path, "--out"}, {labels_path, "--out"}}, {out_dir});
    const EstimatedPriors priors = estimate_priors(subjects, options);
    // Columns of zeros alone paint every structure black: nothing worth writing.
    ISS_INPUT(std::any_of(priors.subjects.begin() + 1, priors.subjects.end(), [](int seen) { return seen > 0; }),
              images, ": no structure of the label list was measured in any of its ", subjects.size(), " subject",
              subjects.size() > 1 ? "s" : "", " (each image flat, or each label map holding none of the listed labels)",
              ": there are no priors to write");
    warn_of_pooling_another_protocol(options);  // once every input is checked
    warn_of_temporaries_beside("priors", {{means_path, "--out"}, {stds_path, "--out"}, {labels_path, "--out"}});

    OutputDirectories folders;
    folders.make(out_dir);
    const std::vector<int64_t> shape = {2, int64_t(options.labels.size())};
    OutputSet outputs;  // all or none
    outputs.write(means_path, [&](const std::string& path) { write_npy(path, shape, priors.means); });
    outputs.write(stds_path, [&](const std::string& path) { write_npy(path, shape, priors.stds); });
    outputs.write(labels_path, [&](const std::string& path) { write_npy_labels(path, options.labels); });
    outputs.commit();

    if (!priors.absent.empty()) {
        std::string names;
        for (const int32_t label : priors.absent) names += cat(names.empty() ? "" : " ", label);
        warning(cat("priors: label", priors.absent.size() > 1 ? "s " : " ", names,
                    " present in no subject (or only at the rescaled 0): prior columns set to 0"));
    }
    const size_t n = options.labels.size();
    std::printf("%6s %9s %16s %16s\n", "label", "subjects", "mean of medians", "mean of spreads");
    for (size_t i = 0; i < n; ++i)
        std::printf("%6d %9d %16.2f %16.2f\n", options.labels[i], priors.subjects[i], priors.means[i], priors.stds[i]);
    std::printf("wrote prior_means.npy and prior_stds.npy (2 x %zu) and %s from %zu subject%s%s to %s\n", n,
                prior_labels_file_name, subjects.size(), subjects.size() == 1 ? "" : "s",
                options.classes ? " (fused classes pooled)" : "", out_dir.c_str());
    return 0;
}

}  // namespace iss::cli
