// `infant-synthseg info FILE...`: the header, orientation, intensity range and (for
// integer-valued volumes) the label counts of each NIfTI file. A bad file prints one error
// line and the command goes on with the others, then exits 2.
#include <nifti/nifti1.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <map>
#include <string>

#include "bin/cli.h"
#include "bin/commands.h"
#include "io/csv.h"
#include "io/file_util.h"
#include "io/json.h"
#include "io/nifti.h"
#include "io/npy.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "nn/checkpoint.h"
#include "nn/keras.h"
#include "nn/unet.h"  // unet_trainable_count
#include "post/prediction.h"
#include "predict/keras_model.h"  // keras_label_list
#include "predict/predictor.h"
#include "synth/config.h"  // prior_labels_file_name
#include "synth/generator.h"  // voxel_size_text
#include "synth/labels.h"     // freesurfer_sorted

namespace iss::cli {
namespace {

const char* help_text =
    "usage: infant-synthseg info FILE...\n"
    "\n"
    "Prints, for each NIfTI file (.nii, .nii.gz, .hdr/.img) or MGH file (.mgz, .mgh): format,\n"
    "dims, voxel size (the affine's, with pixdim where it differs), datatype, scaling,\n"
    "orientation code, the voxel-to-world affine and where it comes from (sform, qform, pixdim\n"
    "or the MGH header), the frames' labels that posteriors written by predict, merge or clean\n"
    "record, the intensity range after scaling with the NaN count, and, when every value is\n"
    "an integer, the labels with their voxel counts (only their number when there are over\n"
    "1000: an integer scan rather than a label map).\n"
    "\n"
    "For a model (a model directory, its model.json or a .safetensors weights file), read and\n"
    "checked as predict reads it: the network, its parameters, labels, frame, the voxel sizes\n"
    "it resamples scans to, and how it was made (the training's step and options, or the Keras\n"
    "file it was imported from); in a model directory also the last logged loss and\n"
    "validation, and the weights --keep-every kept. A Keras file (.h5, .keras) that export\n"
    "wrote is described by the model it records; a published one (SynthSeg's, Infant-\n"
    "SynthSeg's T1.h5) by its network alone: what predict --model and import then ask for.\n"
    "\n"
    "For a .npy file (priors' prior_means.npy, prior_stds.npy, prior_labels.npy, a label\n"
    "list): its dtype, shape and range, and a list's labels or the labels of the columns of\n"
    "priors (prior_labels.npy beside them). A folder without a model: each volume and .npy\n"
    "file in it.\n"
    "\n"
    "Exit status: 0 when every file was read, 2 when any file is bad (the others are still\n"
    "printed).\n";

// DIR/NAME.
std::string in_dir(const std::string& dir, const std::string& name) {
    return (std::filesystem::path(dir) / name).string();
}

// The last row of a model directory's CSV log, or none (no file; an unreadable one says so).
std::vector<std::string> last_row(const std::string& path, std::vector<std::string>& columns) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return {};
    const CsvTable table = read_csv(path);
    columns = table.columns;
    return table.rows.empty() ? std::vector<std::string>{} : table.rows.back();
}

// A record's value as text: a string without its quotes.
std::string text_of(const nlohmann::json& v) {
    return v.is_string() ? v.get<std::string>() : v.dump();
}

// The generator parameters a model was trained with that differ from its preset's (a --config's),
// so that models of two generator variants are told apart: both said "preset infant-t1".
void print_generator_changes(const nlohmann::json& t) {
    if (!t.contains("generator") || !t["generator"].is_object() || !t.contains("preset") || !t["preset"].is_string())
        return;
    nlohmann::json preset;
    try {
        preset = nlohmann::json::parse(config_to_json(preset_config(t["preset"].get<std::string>())));
    } catch (const std::exception&) {  // a preset this build does not know
        return;
    }
    std::vector<std::string> changed;
    for (const auto& [key, value] : t["generator"].items()) {
        // The crop and its multiple are the run's (--shape, --levels), said on the training line.
        if (key == "output_shape" || key == "shape_multiple" || key == "preset") continue;
        if (preset.contains(key) && preset[key] == value) continue;
        const std::string text =
            value.is_array() && value.size() > 4 ? cat("(", value.size(), " values)") : value.dump();
        changed.push_back(cat(key, " ", clipped(text, 40)));
    }
    if (changed.empty()) {
        std::printf("  generator: preset %s's parameters\n", text_of(t["preset"]).c_str());
        return;
    }
    std::string list;
    for (const std::string& c : changed) list += cat(list.empty() ? "" : ", ", c);
    std::printf("  generator: preset %s's but %zu parameter%s: %s\n", text_of(t["preset"]).c_str(), changed.size(),
                changed.size() > 1 ? "s" : "", clipped(list, 400).c_str());
}

// What a resume would continue (`resumable`: a model directory's weights, Adam's state beside
// them), or the file it was imported from.
void print_training(const nlohmann::json& t, bool resumable) {
    if (t.contains("imported_from")) {
        std::printf("  imported from: %s (Keras %s; no training state: it predicts, it is not resumed)\n",
                    text_of(t["imported_from"]).c_str(),
                    text_of(t.value("keras_version", nlohmann::json("?"))).c_str());
        return;
    }
    auto field = [&](const char* key) { return t.contains(key) ? text_of(t[key]) : std::string("?"); };
    std::string crop = "?";
    if (t.contains("crop") && t["crop"].is_array() && t["crop"].size() == 3)
        crop = cat(t["crop"][0].dump(), " x ", t["crop"][1].dump(), " x ", t["crop"][2].dump());
    const nlohmann::json stamp = t.value("checkpoint", nlohmann::json::object());
    // Options said only where set (a hand-edited record's other types are shown as they are).
    auto positive = [&](const char* key) {
        return t.contains(key) && (!t[key].is_number_integer() || t[key].get<int64_t>() > 0);
    };
    const std::string more =
        cat(positive("wl2_epochs") ? cat(", ", field("wl2_epochs"), " weighted-L2 epochs first") : "",
            positive("keep_every")
                ? cat(", weights kept every ", field("keep_every"), field("keep_every") == "1" ? " epoch" : " epochs")
                : "");
    std::printf("  training: step %s of %s (preset %s, crop %s, batch %s, lr %s, seed %s, %s, %s step%s an epoch%s)\n",
                stamp.is_object() && stamp.contains("step") ? stamp["step"].dump().c_str() : "?",
                field("steps").c_str(), field("preset").c_str(), crop.c_str(), field("batch").c_str(),
                field("lr").c_str(), field("seed").c_str(), field("precision").c_str(),
                field("steps_per_epoch").c_str(), field("steps_per_epoch") == "1" ? "" : "s", more.c_str());
    if (t.contains("maps_path"))
        std::printf("  label maps: %s (%s%s)\n", field("maps_path").c_str(),
                    field("maps") == "1" ? "1 map" : cat(field("maps"), " maps").c_str(),
                    resumable ? ", which --resume reads without --labels" : "");
    if (t.contains("arithmetic")) std::printf("  trained on: %s\n", field("arithmetic").c_str());
    print_generator_changes(t);
    // What a resume changed, from the step it took effect: each entry's values that differ from
    // the entry before (the first holds what the steps before ran with).
    const nlohmann::json history = t.value("history", nlohmann::json());
    if (!history.is_array()) return;
    for (size_t i = 1; i < history.size(); ++i) {
        const nlohmann::json &entry = history[i], &before = history[i - 1];
        if (!entry.is_object() || !before.is_object()) continue;
        std::string changes;
        for (auto it = entry.begin(); it != entry.end(); ++it) {
            // A key the entry before lacks is an older build's (arithmetic, dice), not a change;
            // a rate is Adam's float (older records kept its double's digits).
            // A validation missing is none (it is in every entry since the history began).
            if (it.key() == "from_step" || (!before.contains(it.key()) && it.key() != "validation")) continue;
            const nlohmann::json was = before.value(it.key(), nlohmann::json());
            const bool same = it.key() == "lr" && was.is_number() && it->is_number()
                                  ? float(was.get<double>()) == float(it->get<double>())
                                  : was == *it;
            if (!same)
                changes += cat(changes.empty() ? "" : ", ", it.key(), " ", it->is_null() ? "none" : text_of(*it));
        }
        if (!changes.empty())
            std::printf("  from step %s: %s\n", text_of(entry.value("from_step", nlohmann::json("?"))).c_str(),
                        clipped(changes, 300).c_str());
    }
}

// The network's shape and size (its own count, not a record's).
void print_network(const UNetConfig& u) {
    std::printf(
        "  network: 3-D U-Net, %d levels, %d features at the first (doubling a level), %d convolutions a "
        "level, kernel %d; %d input channel%s\n",
        u.levels, u.features, u.convs_per_level, u.kernel, u.in_channels, u.in_channels > 1 ? "s" : "");
    std::printf("  parameters: %lld trainable\n", (long long)unet_trainable_count(u));
}

// A Keras file of another's (SynthSeg's or Infant-SynthSeg's released T1.h5, ...): the network
// read from it and checked as predict and import read it, and what it does not record, which
// predict --model and import then ask for.
void print_published_keras(const std::string& path, const KerasUNet& network) {
    std::printf("%s\n", one_line(path).c_str());  // a folder's names are anyone's: shown escaped
    const std::string release = network.keras_version == keras3_release_unrecorded
                                    ? std::string("its Keras release unrecorded")
                                    : "Keras " + network.keras_version;
    std::printf("  format: a Keras model (%s, %s), not written by infant-synthseg: the network alone\n",
                network.layout.c_str(), release.c_str());
    print_network(network.unet);
    const int classes = network.unet.classes;
    std::string fits;
    for (const char* preset : {"infant", "synthseg"})
        if (keras_label_list(preset).size() == size_t(classes)) fits = cat(" (as many as --labels ", preset, "'s)");
    std::printf(
        "  outputs: %d labels%s; their values, channel order and the frame the network was trained in are "
        "not recorded\n",
        classes, fits.c_str());
    std::printf(
        "  to use it: predict --model %s --labels LIST%s (see --channel-order and --orientation), or "
        "import it once into a model directory\n",
        path.c_str(), network.unet.in_channels > 1 ? " and --i once per channel (images of one grid)" : "");
}

// A model: what predict would read, checked as predict checks it, and in a model directory what
// its logs end with.
void print_model(const std::string& given) {
    std::error_code ec;
    const bool folder = std::filesystem::is_directory(given, ec);
    // What the path is when it is no model of ours, said before anything names another file. A
    // Keras file our export wrote carries the model's record, and is described by it.
    const bool keras = is_keras_model_path(given);
    std::string exported_record, keras_layout;
    if (keras) {
        KerasUNet network = read_keras_unet(given);
        if (network.description.empty()) return print_published_keras(given, network);
        exported_record = std::move(network.description);
        keras_layout = network.layout;
    }
    ISS_INPUT(!ends_with(given, ".optimizer.safetensors"), given, ": Adam's state, for train --resume, not a model: ",
              "info describes the model beside it (model.safetensors)");
    if (!folder && ends_with(given, ".json")) parse_model_description(read_text_file(given), given);
    const std::string weights = keras ? given : resolve_model_path(given);  // says what a folder lacks
    const std::string json_path = keras ? std::string() : model_json_path(weights);
    // Read whole as predict reads it, on the CPU: the weights' names, shapes, values and checksum
    // too, which the description alone does not show.
    PredictOptions on_cpu;
    on_cpu.device = parse_device("cpu");
    const Predictor model(weights, on_cpu);
    const ModelSpec& spec = model.spec();
    const Preprocessing& pre = model.preprocessing();
    const nlohmann::json record =
        keras ? parse_json(exported_record, given) : parse_json(read_text_file(json_path), json_path);

    std::printf("%s\n", given.c_str());
    if (keras)
        std::printf("  format: an infant-synthseg model exported to Keras (%s, %s), its record inside\n", given.c_str(),
                    keras_layout.c_str());
    else
        std::printf("  format: an infant-synthseg model (%s + %s)\n", weights.c_str(), json_path.c_str());
    print_network(spec.unet);
    std::printf("  labels: %zu (%s)\n", spec.labels.size(), clipped(label_list_text(spec.labels), 300).c_str());
    std::printf("  frame: %s; padded to a multiple of %lld; flip averaging: %s\n", pre.frame.c_str(),
                (long long)pre.size_multiple,
                !pre.flip_averaging   ? "judged by its labels"
                : *pre.flip_averaging ? "yes"
                                      : "no (its outputs do "
                                        "not mirror)");
    if (!pre.lr_twins.empty()) {
        std::string pairs;
        for (const std::vector<int32_t>& pair : pre.lr_twins)
            pairs +=
                cat(pairs.empty() ? "" : ", ", pair[0], pair[0] == pair[1] ? " (neither side)" : cat("/", pair[1]));
        std::printf("  declared sides (lr_twins): %s\n", clipped(pairs, 300).c_str());
    }
    // Training's maps' sizes, or an import's --voxel-size: what predict resamples scans to.
    if (pre.voxel_max[0] > 0)
        std::printf("  voxel sizes: %s (a scan off them is resampled to them)\n",
                    voxel_size_text({pre.voxel_min, pre.voxel_max}).c_str());
    else
        std::printf("  voxel sizes: none recorded (scans are segmented at their own)\n");
    // An export's own record: how the model was trained (reading the file in memory notes it as
    // imported from there, which it was not).
    // Kept weights (weights/step_N) and exports are not resumed: a model directory's are.
    const std::filesystem::path weights_file(weights);
    const bool resumable = !keras && weights_file.filename() == "model.safetensors" &&
                           std::filesystem::exists(weights_file.parent_path() / "model.optimizer.safetensors", ec);
    print_training(keras ? record.value("training", nlohmann::json::object()) : spec.training, resumable);
    if (record.contains("written_by")) std::printf("  written by: %s\n", text_of(record["written_by"]).c_str());
    // Two runs' weights files differ in their run_id even where every weight is the same: the
    // data's checksum tells (cmp and sha256sum do not).
    if (const std::string crc = keras ? "" : weights_data_crc32(weights); !crc.empty())
        std::printf("  weights' data_crc32: %s (equal where every weight is)\n", crc.c_str());
    std::printf("  record: %s\n", record.contains("record_crc32")
                                      ? "checked against its record_crc32"
                                      : "unchecked (no record_crc32: written before 2026-12-07, or edited on purpose)");
    if (!folder) return;

    std::vector<std::string> columns;
    const std::vector<std::string> loss = last_row(in_dir(given, "training_log.csv"), columns);
    if (loss.size() >= 3 && columns.size() >= 3)
        std::printf("  last logged loss: %.4f (%s, step %s)\n", csv_to_number(loss[1], columns[1]), loss[2].c_str(),
                    loss[0].c_str());
    const std::vector<std::string> validation = last_row(in_dir(given, "validation.csv"), columns);
    if (validation.size() >= 2)
        std::printf("  last validation: mean Dice %s at step %s\n",
                    validation[1].empty()
                        ? "(none)"
                        : cat(std::round(csv_to_number(validation[1], columns[1]) * 1e4) / 1e4).c_str(),
                    validation[0].c_str());
    const std::vector<std::string> kept = kept_weights_files(kept_weights_in(given));
    if (!kept.empty())
        std::printf("  kept weights: %zu (%s/%s%s)\n", kept.size(), kept_weights_folder, kept.front().c_str(),
                    kept.size() > 1 ? cat(" to ", kept.back()).c_str() : "");
}

// A folder of scans or label maps and no model.
// What a folder without a model holds that info describes: its volumes and .npy files (priors'
// outputs), sorted; none for a model's folder, or one holding neither (said as a folder without a
// model). Hidden files, other runs' temporaries and folders are left out, as volume_files does.
std::vector<std::string> files_to_describe(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(path, ec) || fs::exists(in_dir(path, "model.json"), ec) ||
        fs::exists(in_dir(path, "model.safetensors"), ec))
        return {};
    std::vector<std::string> files;
    for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
        const std::string name = entry.path().filename().string();
        if (name[0] == '.' || temporary_name(name) || !entry.is_regular_file(ec)) continue;
        if (is_volume_name(name) || ends_with(name, ".npy")) files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
    return files;
}

// Whether `path` names a model rather than a volume: a directory holding a model's description,
// a description, or weights.
bool is_model_path(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_directory(path, ec) || ends_with(path, ".safetensors") || ends_with(path, ".json") ||
           is_keras_model_path(path);
}

// A .npy file: what synth's --config and priors' outputs are made of.
void print_npy(const std::string& path) {
    const NpyArray a = read_npy(path);
    std::printf("%s\n", one_line(path).c_str());  // a folder's names are anyone's: shown escaped
    std::printf("  format: NumPy array (.npy), dtype %s, shape %s\n", a.dtype.c_str(), shape_text(a.shape).c_str());
    if (a.values.empty()) return;
    std::vector<double> finite;
    std::copy_if(a.values.begin(), a.values.end(), std::back_inserter(finite),
                 [](double v) { return std::isfinite(v); });
    if (!finite.empty()) {
        const auto [low, high] = std::minmax_element(finite.begin(), finite.end());
        std::printf("  range: [%.6g, %.6g]%s\n", *low, *high,
                    finite.size() < a.values.size()
                        ? cat(", and ", a.values.size() - finite.size(), " not finite (NaN, infinity)").c_str()
                        : "");
    }
    const bool whole = std::all_of(a.values.begin(), a.values.end(), [](double v) { return v == std::round(v); });
    if (a.shape.size() == 1 && whole) {
        const std::vector<int32_t> labels = read_npy_labels(path);
        std::printf("  labels: %s\n", clipped(label_list_text(labels), 300).c_str());
        // What merge's and clean's --labels make of it: a user read the file's order here, and the
        // frames were taken in another. (Through neither's reader: its warning of repeated values
        // is said where such a list is used.)
        std::vector<int32_t> frames;
        try {
            frames = labels::freesurfer_sorted(labels::distinct(labels));
        } catch (const InputError&) {  // labels of no FreeSurfer class: --labels refuses it, saying why
            frames.clear();
        }
        // A priors run's prior_labels.npy lists generation labels, columns, not frames.
        const bool priors_columns = std::filesystem::path(path).filename() == prior_labels_file_name;
        if (!frames.empty() && frames != labels && !priors_columns)
            std::printf(
                "  as merge's and clean's --labels (distinct, in FreeSurfer's order; import orders them by "
                "--channel-order): %s\n",
                clipped(label_list_text(frames), 300).c_str());
        return;
    }
    const std::string listed = prior_labels_beside(path);
    std::error_code ec;
    if (a.shape.size() != 2 || a.shape[0] != 2 || !std::filesystem::exists(listed, ec)) return;
    const std::vector<int32_t> columns = read_npy_labels(listed);
    if (int64_t(columns.size()) == a.shape[1])
        std::printf("  priors of labels: %s (%s beside it)\n", clipped(label_list_text(columns), 300).c_str(),
                    prior_labels_file_name);
    else
        std::printf("  priors of labels: not those of %s beside it (%zu labels for %lld columns)\n",
                    prior_labels_file_name, columns.size(), (long long)a.shape[1]);
}

void print_file(const std::string& path) {
    VolumeHeader h;
    const Volume<double> vol = read_image_f64(path, &h);

    std::printf("%s\n", one_line(path).c_str());  // a folder's names are anyone's: shown escaped
    if (h.format == VolumeFormat::mgh)
        std::printf("  format: MGH (FreeSurfer), big-endian\n");
    else
        std::printf("  format: NIfTI-%d, %s, %s\n", h.version, h.single_file ? "single file" : "header + .img",
                    h.byte_swapped ? "byte-swapped (big-endian)" : "native byte order");
    // What made it (ours say their build, command and particulars: docs/FORMATS.md).
    if (!h.descrip.empty()) std::printf("  description: %s\n", one_line(h.descrip).c_str());
    std::printf("  dims:");
    for (int i = 1; i <= h.dim[0]; ++i) std::printf("%s%lld", i == 1 ? " " : " x ", static_cast<long long>(h.dim[i]));
    const int unit = h.xyzt_units & 0x07;
    // The affine's column lengths: the voxel size every command works with. An sform may
    // disagree with pixdim (then pixdim is only a note).
    const std::array<double, 3> size = vol.grid.voxel_size();
    bool pixdim_differs = false;
    for (int d = 0; d < 3; ++d)
        pixdim_differs |= std::fabs(h.pixdim[size_t(d + 1)] - size[size_t(d)]) > 1e-4 * std::max(1.0, size[size_t(d)]);
    std::printf("\n  voxel size: %.7g x %.7g x %.7g mm%s%s\n", size[0], size[1], size[2],
                unit == NIFTI_UNITS_METER    ? " (the header's unit is metres)"
                : unit == NIFTI_UNITS_MICRON ? " (the header's unit is microns)"
                                             : "",
                pixdim_differs
                    ? cat(" (from the affine; ", h.format == VolumeFormat::mgh ? "the header's voxel size" : "pixdim",
                          " says ", h.pixdim[1], " x ", h.pixdim[2], " x ", h.pixdim[3], ")")
                          .c_str()
                    : "");
    std::printf("  datatype: %s\n", h.datatype_name().c_str());
    if (h.scaled())
        std::printf("  scaling: slope %.9g, inter %.9g\n", h.scl_slope, h.scl_inter);
    else
        std::printf("  scaling: none\n");
    std::printf("  orientation: %s\n", orientation_code(h.affine).c_str());
    if (h.format == VolumeFormat::mgh)
        std::printf("  affine source: the MGH header (axis directions, voxel size, centre)\n");
    else
        std::printf("  affine source: %s (qform_code %d, sform_code %d)\n", h.affine_source.c_str(), h.qform_code,
                    h.sform_code);
    if (!h.frame_labels.empty())
        std::printf("  frame labels: %s (recorded with the posteriors)\n",
                    clipped(label_list_text(h.frame_labels), 300).c_str());
    else if (!h.frame_labels_problem.empty())
        std::printf("  frame labels: unreadable record (%s)\n", one_line(h.frame_labels_problem).c_str());
    std::printf("  affine:\n");
    for (int r = 0; r < 4; ++r)
        std::printf("    %12.6f %12.6f %12.6f %12.6f\n", h.affine.m[r][0], h.affine.m[r][1], h.affine.m[r][2],
                    h.affine.m[r][3]);

    // Range over non-NaN values; labels while every value is an exact integer.
    double lo = INFINITY, hi = -INFINITY;
    long long nans = 0;
    bool integral = true;
    std::map<double, long long> counts;
    auto last = counts.end();
    for (const double v : vol.data) {
        if (std::isnan(v)) {
            ++nans;
            integral = false;
            continue;
        }
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        if (!integral) continue;
        if (!(v == std::floor(v) && std::fabs(v) < 9007199254740992.0)) {
            integral = false;
            counts.clear();
            last = counts.end();
            continue;
        }
        // Label maps are long runs of one value: skip the tree lookup for a repeat.
        if (last == counts.end() || last->first != v) last = counts.emplace(v, 0).first;
        ++last->second;
    }
    if (nans == static_cast<long long>(vol.data.size()))
        std::printf("  range: all values are NaN\n");
    else
        std::printf("  range: min %.9g, max %.9g\n", lo, hi);
    if (nans > 0) std::printf("  NaN: %lld\n", nans);
    // An integer scan (most converted T1s are int16) has thousands of distinct values: a label
    // map has tens, and only those are listed.
    constexpr size_t max_listed = 1000;
    if (integral && counts.size() > max_listed) {
        std::printf("  labels: %zu distinct values (an integer image, not a label map?): not listed\n", counts.size());
    } else if (integral) {
        std::printf("  labels: %zu\n", counts.size());
        for (const auto& [value, count] : counts) std::printf("    %.0f %lld\n", value, count);
    }
}

}  // namespace

int cmd_info(int argc, char** argv) {
    const Args args("info", argc, argv, {}, {"--help"});
    if (args.flag("--help")) {
        std::fputs(help_text, stdout);
        return 0;
    }
    ISS_INPUT(!args.positional().empty(), "info: no input file (see 'infant-synthseg info --help')");
    int status = 0;
    std::vector<std::string> paths;  // a folder without a model as its files, each said on its own
    for (const std::string& path : args.positional()) {
        const std::vector<std::string> files = files_to_describe(path);
        paths.insert(paths.end(), files.begin(), files.end());
        if (files.empty()) paths.push_back(path);
    }
    for (const std::string& path : paths) {
        try {
            if (ends_with(path, ".npy"))
                print_npy(path);
            else if (is_model_path(path))
                print_model(path);
            else
                print_file(path);
        } catch (const Error& e) {  // a file's problem, or a read that failed (a disk's): the others still said
            std::fflush(stdout);
            const Failure failure = describe_failure(e, "info", path);
            std::fprintf(stderr, "infant-synthseg info: %s\n", failure.text.c_str());
            if (failure.status == 1 || status == 0) status = failure.status;  // not the user's (1) prevails
        }
        std::fflush(stdout);
    }
    return status;
}

}  // namespace iss::cli
