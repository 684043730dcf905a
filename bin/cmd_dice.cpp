// `infant-synthseg dice`: Dice per structure and subject between predicted segmentations and
// ground truth (SPEC.md section 8), as a CSV. Every pair is read and checked before the CSV is
// written; a structure in one of the two files only is named once on stderr.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "bin/cli.h"
#include "bin/commands.h"
#include "io/csv.h"
#include "io/file_util.h"
#include "io/nifti.h"  // VolumeHeader: what made a prediction
#include "kernels/common/error.h"
#include "post/clean.h"  // fold_segmentation
#include "post/dice.h"
#include "post/prediction.h"
#include "synth/labels.h"  // fold_pairs

namespace iss::cli {
namespace {

namespace fs = std::filesystem;

const char* usage =
    "usage: infant-synthseg dice --pred FILE|DIR --gt FILE|DIR --out FILE.csv [--labels LIST]\n"
    "                            [--fold [--merge-cerebellum]]\n"
    "\n"
    "Dice overlap 2|A n B| / (|A| + |B|) per structure between predicted segmentations and\n"
    "ground truth, after mapping both to a common label list: --labels, or the union of the\n"
    "labels present (background 0 left out unless listed; with --labels, a label not listed\n"
    "counts as background). A structure in neither file is an empty field, not 1; one in the\n"
    "prediction or the ground truth only scores 0 and is named on stderr.\n"
    "\n"
    "  --pred FILE|DIR   predicted segmentation, or a directory of them (*.nii, *.nii.gz, NIfTI\n"
    "                    pairs *.hdr + .img, and FreeSurfer's *.mgz, *.mgh; where predict wrote\n"
    "                    into the scans' folder, the scans beside their NAME_synthseg are left\n"
    "                    out)\n"
    "  --gt FILE|DIR     ground truth, or a directory holding one for each prediction, paired\n"
    "                    by name without .nii / .nii.gz / .hdr / .mgz / .mgh, and without\n"
    "                    _synthseg when every prediction has it and not every ground truth\n"
    "                    does (a folder predict wrote pairs with the scans' names, or with\n"
    "                    another folder predict wrote; their _posteriors and _resampled files\n"
    "                    are left out); a file without a partner is an error\n"
    "  --out FILE.csv    one row per subject (column subject = that name: the scan's, as\n"
    "                    predict --vol writes it, for a predict folder against ground truth\n"
    "                    named like the scans), one column dice_<label> per structure, and a\n"
    "                    last row 'mean' (the mean over the subjects with a value)\n"
    "  --labels LIST     labels to score, in column order: comma-separated (0 scored where\n"
    "                    listed), or infant, synthseg, a model's folder or a .npy label file\n"
    "                    (their structures: the background left out)\n"
    "  --fold            fold both files' labels as clean does (21 into 2, 61 into 41, 170\n"
    "                    into 16) before scoring: a cleaned prediction against ground truth\n"
    "                    that still holds them (synth's labels_NNNN)\n"
    "  --merge-cerebellum\n"
    "                    with --fold, also 7 into 8 and 46 into 47, as clean's option\n"
    "  --help            this text\n"
    "\n"
    "Each pair must be on one voxel grid (dims and affine to 1e-4 mm; a prediction of that\n"
    "grid stored in another voxel order is reordered exactly).\n";

struct Pair {
    std::string name, pred, gt;
};

// The segmentations in a folder: its volumes, but in a folder predict wrote (NAME_synthseg
// files) not the posteriors and resampled images --post and --resample put beside them; and, in
// the --pred folder (`predictions`), not the scans NAME predict read there (predict --o into the
// scans' folder: they were taken for predictions of subjects NAME_synthseg had none of), said in
// a note. Ground truth is never left out.
std::vector<std::string> segmentations_in(const std::string& folder, bool predictions) {
    std::vector<std::string> files = volume_files(folder);
    if (!std::any_of(files.begin(), files.end(), predicted_segmentation)) return files;
    std::set<std::string> segmented;  // the subjects NAME that have a NAME_synthseg here
    for (const std::string& f : files)
        if (predictions && predicted_segmentation(f)) segmented.insert(subject_of(f));
    const size_t before = files.size();
    int scans = 0;
    files.erase(std::remove_if(files.begin(), files.end(),
                               [&](const std::string& f) {
                                   if (predict_output_index(f) > 0) return true;
                                   const bool scan = predict_output_index(f) < 0 && segmented.count(volume_stem(f)) > 0;
                                   scans += scan;
                                   return scan;
                               }),
                files.end());
    if (scans > 0)
        std::fprintf(stderr,
                     "infant-synthseg dice: note: %s: %d scan(s) beside their NAME_synthseg segmentation "
                     "left out (of %zu files)\n",
                     folder.c_str(), scans, before);
    return files;
}

// Pairs by subject when both are directories; one pair when both are files.
std::vector<Pair> pair_inputs(const std::string& pred, const std::string& gt) {
    std::error_code ec;
    const bool pred_dir = fs::is_directory(pred, ec), gt_dir = fs::is_directory(gt, ec);
    ISS_INPUT(pred_dir == gt_dir, "dice: --pred ", pred, " and --gt ", gt,
              " must both be files or both be directories");
    if (!pred_dir) {
        require_regular_file(pred);
        require_regular_file(gt);
        return {{subject_of(pred), pred, gt}};
    }
    const std::vector<std::string> truth_files = segmentations_in(gt, false), files = segmentations_in(pred, true);
    auto all_predicted = [](const std::vector<std::string>& in) {
        return std::all_of(in.begin(), in.end(), predicted_segmentation);
    };
    // predict's folder against ground truth named like the scans: NAME_synthseg is subject NAME.
    // Two folders predict wrote (one model against another) pair by their names as they are.
    const bool strip = all_predicted(files) && !all_predicted(truth_files);
    std::map<std::string, std::string> truths = volume_files_by_subject(gt, truth_files);
    std::map<std::string, std::string> predictions;
    for (const std::string& f : files) {
        const std::string subject = strip ? subject_of(f) : volume_stem(f);
        const auto [it, added] = predictions.emplace(subject, f);
        ISS_INPUT(added, pred, ": ", fs::path(it->second).filename().string(), " and ",
                  fs::path(f).filename().string(), " are both predictions of ", subject);
    }
    std::vector<Pair> pairs;
    for (const auto& [subject, f] : predictions) {
        const auto it = truths.find(subject);
        if (it == truths.end()) {
            std::vector<std::string> held;  // what the folder offers, as pairing names them
            for (const auto& [name, file] : truths) held.push_back(name);
            ISS_INPUT(false, f, ": no ground truth for subject ", subject, " in ", gt,
                      held.empty() ? std::string()
                                   : cat(" (it holds ", first_values(held, 3), ": files pair by their names, a ",
                                         "prediction's _synthseg left out)"));
        }
        pairs.push_back({subject, f, it->second});
        truths.erase(it);
    }
    if (!truths.empty())
        throw InputError(
            cat(truths.begin()->second, ": no prediction for subject ", truths.begin()->first, " in ", pred));
    return pairs;
}

// What made a prediction, from its descrip ("infant-synthseg VERSION predict, model weights
// 5e6f7a8b model-t1", "... clean, islands < 15 voxels"): the command, and for predict the weights'
// CRC (a model's folder name, a copy's, and the field's cut at 79 bytes, which moves with the
// version's length, are no difference); "" when it does not say (another tool's, or a CRC cut).
// A folder whose rerun failed on some scans keeps the earlier run's outputs for them, from
// another model, which the mean averaged in unsaid.
std::string maker_of(const std::string& descrip) {
    const std::string ours = "infant-synthseg ", weights = "predict, model weights ";
    if (descrip.rfind(ours, 0) != 0) return "";
    const size_t after_version = descrip.find(' ', ours.size());
    if (after_version == std::string::npos) return "";
    const std::string made = descrip.substr(after_version + 1);
    if (made.rfind(weights, 0) != 0) return made.substr(0, made.find(','));
    const std::string crc = made.substr(weights.size(), 8);
    const bool whole = crc.size() == 8 && std::all_of(crc.begin(), crc.end(), [](char c) {
                           return std::isxdigit(static_cast<unsigned char>(c)) != 0;
                       });
    return whole ? weights + crc : "";
}

// Predictions made otherwise (maker_of -> a file it made), said with two of them.
void warn_of_mixed_makers(const std::map<std::string, std::string>& makers) {
    if (makers.size() < 2) return;
    std::string made;  // "; " between them: a description holds commas
    size_t shown = 0;
    for (const auto& [maker, file] : makers)
        if (shown++ < 2)
            made += cat(made.empty() ? "" : "; ", one_line(fs::path(file).filename().string()), ": ", maker);
    warning(cat("dice: the predictions were made ", makers.size(), " ways (", made, makers.size() > 2 ? "; ..." : "",
                "): does the folder mix runs? (info FILE shows each file's description)"));
}

// A cleaned prediction (21, 61 and 170 folded into 2, 41 and 16; with --merge-cerebellum 7 and
// 46 into 8 and 47) against a map that holds them scores those structures low and the folded
// labels 0: the usual first mistake. Said where a subject's prediction holds none of the labels
// folded that its truth holds, and holds what they fold into (a prediction that holds 21 but
// missed 170 is no cleaned one: --fold would hide the miss).
void warn_of_a_cleaned_prediction(const std::vector<DiceSubject>& subjects, bool fold, bool merge_cerebellum) {
    auto folded_in_prediction = [&](const std::vector<std::pair<int32_t, int32_t>>& folds) {
        std::set<int32_t> sources;
        for (const DiceSubject& s : subjects) {
            auto count = [&](int32_t label, bool truth) {
                const auto it = s.overlaps.find(label);
                return it == s.overlaps.end() ? int64_t(0) : truth ? it->second.truth : it->second.pred;
            };
            std::vector<int32_t> held;
            bool cleaned = true;
            for (const auto& [from, to] : folds) {
                cleaned &= count(from, false) == 0;
                if (count(from, true) == 0) continue;
                held.push_back(from);
                cleaned &= count(to, false) > 0;
            }
            if (cleaned) sources.insert(held.begin(), held.end());
        }
        return std::vector<int32_t>(sources.begin(), sources.end());
    };
    const std::vector<int32_t> cerebellum =
        merge_cerebellum ? std::vector<int32_t>() : folded_in_prediction(labels::cerebellum_fold_pairs());
    if (!fold) {
        std::vector<int32_t> sources = folded_in_prediction(labels::fold_pairs(false));
        if (!sources.empty() || !cerebellum.empty()) {
            sources.insert(sources.end(), cerebellum.begin(), cerebellum.end());
            std::sort(sources.begin(), sources.end());
            warning(cat("dice: the ground truth holds ", first_values(sources, 5), " and the prediction ",
                        sources.size() > 1 ? "none of them" : "none", ", as a cleaned prediction (clean folds ",
                        "21, 61 and 170 into 2, 41 and 16; with --merge-cerebellum 7 and 46 into 8 and 47): ",
                        cerebellum.empty() ? "--fold" : "--fold --merge-cerebellum", " folds both files alike"));
        }
    } else if (!cerebellum.empty()) {
        warning(cat("dice: the ground truth holds ", first_values(cerebellum, 2), " and the prediction ",
                    cerebellum.size() > 1 ? "none of them" : "none", ", as a prediction cleaned with ",
                    "--merge-cerebellum (7 and 46 into 8 and 47): --merge-cerebellum folds them too"));
    }
}

}  // namespace

int cmd_dice(int argc, char** argv) {
    const Args args("dice", argc, argv, {"--pred", "--gt", "--out", "--labels"},
                    {"--fold", "--merge-cerebellum", "--help"});
    if (args.flag("--help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    args.reject_positional();
    const std::string pred = args.require("--pred"), gt = args.require("--gt"), out = args.require("--out");
    ISS_INPUT(!is_volume_name(out), "dice: --out ", out, ": the table is CSV text, not an image (name it .csv)");
    std::vector<int32_t> labels;
    if (args.has("--labels")) {
        const std::string text = args.get("--labels", "");
        labels = named_label_list(text);
        // A named list (infant, a model's, a .npy file) holds the background as a network's
        // output: scored as a structure, it raised every mean; a list written out keeps a 0 given.
        const bool named = text == "infant" || text == "synthseg" || !label_file_of(text).path.empty();
        if (named) labels.erase(std::remove(labels.begin(), labels.end(), 0), labels.end());
        ISS_INPUT(!labels.empty(), "dice: --labels ", text, " holds no structure, only the background");
    }
    const bool fold = args.flag("--fold"), merge_cerebellum = args.flag("--merge-cerebellum");
    ISS_INPUT(fold || !merge_cerebellum, "dice: --merge-cerebellum folds with --fold: give both");

    const std::vector<Pair> pairs = pair_inputs(pred, gt);
    for (const Pair& p : pairs)  // a table read by subject (pandas' index) would find two rows
        ISS_INPUT(p.name != dice_mean_row, p.pred, ": subject '", dice_mean_row,
                  "' shares its name with the table's last row, the mean over the subjects: rename the files");
    std::vector<NamedPath> inputs{label_file_of(args.get("--labels", ""))};
    for (const Pair& p : pairs) inputs.insert(inputs.end(), {{p.pred, "--pred"}, {p.gt, "--gt"}});
    const std::vector<NamedPath> outputs{{out, "--out"}};
    check_outputs("dice", inputs, outputs, folders_of(outputs));
    require_replaceable_table("dice", "--out", out, TableKind::dice);

    // Labels the files hold that --labels leaves out score as background, said once (SynthSeg
    // 2.0's CSF, 24, lost its column unsaid under --labels synthseg, 1.0's list).
    std::set<int32_t> unlisted;
    auto note_unlisted = [&](const LabelMap& m) {
        for (const int32_t v : labels_not_in(m, labels))
            if (v != 0) unlisted.insert(v);
    };
    std::map<std::string, std::string> makers;  // what made the predictions -> a file it made
    std::vector<DiceSubject> subjects;
    for (const Pair& p : pairs) {
        LabelMap b = read_segmentation(p.gt);
        VolumeHeader made;
        LabelMap a = on_grid_of(read_segmentation(p.pred, &made), p.pred, b.grid, p.gt);
        if (const std::string maker = maker_of(made.descrip); !maker.empty()) makers.emplace(maker, p.pred);
        if (fold) {
            fold_segmentation(a, merge_cerebellum);
            fold_segmentation(b, merge_cerebellum);
        }
        if (!labels.empty()) note_unlisted(a), note_unlisted(b);
        subjects.push_back({p.name, label_overlaps(a, b, labels)});
    }
    if (!unlisted.empty()) {
        std::string values;
        for (const int32_t v : unlisted) values += cat(values.empty() ? "" : ", ", v);
        warning(cat("dice: label", unlisted.size() > 1 ? "s " : " ", values, " in the files ",
                    unlisted.size() > 1 ? "are" : "is", " not in --labels: scored as background"));
    }
    if (labels.empty()) labels = labels_present(subjects);
    warn_of_mixed_makers(makers);

    // One warning for the structures in one of the two files only, however many subjects and
    // structures (a line each buried a batch's other messages).
    std::vector<std::string> one_sided;
    for (const int32_t label : labels) {
        int64_t count = 0;
        std::string first;  // the first such subject's: what it lacks
        for (const DiceSubject& s : subjects) {
            const auto it = s.overlaps.find(label);
            if (it == s.overlaps.end() || (it->second.pred > 0) == (it->second.truth > 0)) continue;
            if (count++ == 0) first = it->second.pred > 0 ? "not in the ground truth" : "not predicted";
            if (count == 1 && subjects.size() > 1) first = cat(s.name, ": ", first);
        }
        if (count == 0) continue;
        one_sided.push_back(subjects.size() == 1
                                ? cat(label, " (", first, ")")
                                : cat(label, " (", count, " of ", subjects.size(), " subjects; first ", first, ")"));
    }
    if (!one_sided.empty())
        warning(cat("dice: ", one_sided.size() > 1 ? cat(one_sided.size(), " labels are") : std::string("a label is"),
                    " in one of the two files only, and score", one_sided.size() > 1 ? "" : "s",
                    " 0 there: ", first_values(one_sided, 8)));

    warn_of_a_cleaned_prediction(subjects, fold, merge_cerebellum);
    warn_of_temporaries_beside("dice", outputs);  // once every refusal is past
    OutputDirectories folders;
    folders.make_for(outputs);
    write_csv(out, dice_table(subjects, labels));
    std::printf("dice: %zu subject%s, %zu structure%s: wrote %s\n", subjects.size(), subjects.size() == 1 ? "" : "s",
                labels.size(), labels.size() == 1 ? "" : "s", out.c_str());
    return 0;
}

}  // namespace iss::cli
