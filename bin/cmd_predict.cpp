// `infant-synthseg predict`: segments scans with a trained model (predict/predictor.h), file by
// file; flags follow FreeSurfer's mri_synthseg where they mean the same thing. A folder is
// processed file by file: a bad file is reported and skipped, the rest still done, and the exit
// status says that something failed (2 for bad input, 1 for anything else).
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bin/cli.h"
#include "bin/commands.h"
#include "io/csv.h"
#include "io/file_util.h"
#include "io/nifti.h"
#include "io/png.h"
#include "io/preview.h"
#include "kernels/common/device.h"  // return_freed_host_memory
#include "kernels/common/error.h"
#include "nn/checkpoint.h"
#include "nn/keras.h"
#include "post/prediction.h"
#include "predict/predictor.h"
#include "synth/generator.h"  // voxel_size_text
#include "synth/labels.h"

namespace iss::cli {
namespace {

namespace fs = std::filesystem;

const char* usage =
    "usage: infant-synthseg predict --i FILE|DIR [--i FILE] --o FILE|DIR --model FILE|DIR|KERAS\n"
    "                               [--labels LABELS] [--channel-order ORDER]\n"
    "                               [--orientation CODE] [--voxel-size MM] [--post FILE|DIR]\n"
    "                               [--vol FILE.csv] [--resample FILE|DIR] [--preview FILE.png]\n"
    "                               [--like FILE]\n"
    "                               [--no-flip] [--no-resample] [--clip-percentiles]\n"
    "                               [--threads N] [--device auto|cpu|cuda[:N]]\n"
    "                               [--precision fp32|bf16]\n"
    "\n"
    "Segments infant brain scans of any contrast with a trained model, in SynthSeg's steps:\n"
    "  - reorients to the model's voxel frame (RAS for models trained here);\n"
    "  - resamples a scan whose voxel size lies outside the range the model was trained on, to\n"
    "    the nearest bound: each axis to round(n x size / bound) voxels over the same centred\n"
    "    field of view, trilinear with the edges repeated, an axis it coarsens blurred first\n"
    "    as SynthSeg does (Gaussian, sigma 0.25 x bound / size of its voxels, at most 4); the\n"
    "    posteriors come back trilinear;\n"
    "  - normalises to [0, 1] (min-max; NaN and infinite voxels first take the lowest finite\n"
    "    value, with a warning), then pads with zeros to the model's size multiple (centred, an\n"
    "    odd voxel after);\n"
    "  - predicts, averaged with the prediction of the left/right-mirrored scan (its left and\n"
    "    right channels swapped by their twins: 2 and 41, 17 and 53, ...; not, with a warning,\n"
    "    for a model whose record says its outputs do not mirror so (flip_averaging), or one\n"
    "    recording nothing with a side's label but not its twin);\n"
    "  - smooths the posteriors (Gaussian, sigma 0.5 voxel, 3 taps; near the padded volume's\n"
    "    faces, where taps fall outside, each voxel's posteriors are divided by their sum, as\n"
    "    SynthSeg renormalises), takes the argmax and keeps the largest 6-connected component\n"
    "    of the brain (voxels outside it become background in the segmentation only: the\n"
    "    posteriors, and so --vol, keep them, as Infant-SynthSeg's predict does; SynthSeg 2.0\n"
    "    zeroes them);\n"
    "  - writes everything on the input's own grid and affine (or --like's).\n"
    "\n"
    "  --i FILE|DIR        an image, or a directory of them (*.nii, *.nii.gz, NIfTI pairs *.hdr\n"
    "                      + .img, and FreeSurfer's *.mgz, *.mgh; each output is NIfTI or MGH by\n"
    "                      its own name's ending, in a directory by the scan's); for a model\n"
    "                      of several input channels (Infant-SynthSeg's multimodal model) a 4-D\n"
    "                      file of one volume per channel, or --i once per channel (T1 then T2,\n"
    "                      files on one grid)\n"
    "  --o FILE|DIR        the segmentation: a file for a file, a directory for a directory\n"
    "                      (NAME_synthseg.nii.gz for each input NAME; .mgz or .mgh for an\n"
    "                      MGH one)\n"
    "  --model FILE|DIR    a model's .safetensors (its .json beside it) or its directory, or a\n"
    "                      Keras file: .h5 as published, .weights.h5 or .keras (imported in\n"
    "                      memory; see import --help)\n"
    "  --labels LABELS     for a Keras model: its labels (infant, synthseg, a model's folder,\n"
    "                      FILE.npy or a list);\n"
    "                      a file written by export (.h5 or .keras) records its own\n"
    "  --channel-order ORDER  for a Keras model: freesurfer (default) or ascending, as SynthSeg's\n"
    "                      models since 2021 number their outputs (see import --help)\n"
    "  --orientation CODE  for a Keras model: its frame (RAS, the default, or LIA for the 2020\n"
    "                      SynthSeg.h5)\n"
    "  --voxel-size MM     for a Keras model: the voxel size it segments at, a scan more than\n"
    "                      0.05 mm off along an axis resampled to it (1 for SynthSeg's\n"
    "                      models, as its predict does); by default scans keep their own,\n"
    "                      as Infant-SynthSeg's predict does\n"
    "  --post FILE|DIR     also write the posteriors: 4-D, one volume per label, in the model's\n"
    "                      label order, which a NIfTI file records for merge and clean\n"
    "                      (NAME_posteriors.nii.gz in a directory, .mgz/.mgh as an MGH scan)\n"
    "  --vol FILE.csv      volumes in mm^3: one row per subject, one column per structure\n"
    "                      (the sum of its posterior times the voxel volume; background\n"
    "                      excluded), and `total` (all structures); a file there is replaced,\n"
    "                      not added to (a folder's scans are one run's rows); after a merge,\n"
    "                      clean --vol gives the final segmentation's\n"
    "  --resample FILE|DIR also write the image as the network saw it (normalised, on the\n"
    "                      model's grid, before its padding to the network's size multiple;\n"
    "                      NAME_resampled.nii.gz in a directory, .mgz/.mgh as an MGH scan)\n"
    "  --preview FILE.png  a picture: per subject (the first 8) the axial, coronal and sagittal\n"
    "                      mid-slices with the segmentation over the image\n"
    "  --like FILE         write the segmentation and posteriors (and so --vol) on FILE's voxel\n"
    "                      grid instead of the scan's, through the two headers' world\n"
    "                      coordinates: the T2 of a subject onto its T1's grid, for merge,\n"
    "                      when the scans are co-registered but not resampled (no\n"
    "                      registration is done). The posteriors are resampled trilinearly, as\n"
    "                      they come back to the scan's own grid otherwise; FILE's voxels\n"
    "                      outside the scan's field of view get posteriors 0 (no evidence:\n"
    "                      merge takes the other scan's there) and label 0. One scan (--i a\n"
    "                      file); FILE's header alone is read (its voxels for --preview)\n"
    "  --no-flip           no left/right test-time augmentation (twice as fast)\n"
    "  --no-resample       keep the input's voxel size even outside the model's range\n"
    "  --clip-percentiles  clip intensities to the 0.5 and 99.5 percentiles before normalising\n"
    "                      (said when voxels far brighter or darker set the range)\n"
    "  --threads N         CPU threads, at most 4 per hardware thread (default: all, or\n"
    "                      OMP_NUM_THREADS)\n"
    "  --device D          auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default auto)\n"
    "  --precision P       the network's arithmetic: fp32 (default) or bf16 (activations\n"
    "                      stored as bfloat16, convolutions summing in fp32, the posteriors\n"
    "                      fp32): half the network's memory (a run's peak fell 8-16% where\n"
    "                      measured, the posteriors staying fp32); about 2.5x as fast on a\n"
    "                      CPU with AMX, 1.7x on AMD's Zen 4, slower than fp32 on Intel's\n"
    "                      AVX512-BF16 without AMX (a note says so); on GPUs from sm_80\n"
    "                      (bf16 tensor cores); elsewhere fp32 runs and a warning says so.\n"
    "                      Not fp32's every bit: posteriors within about 0.01, a few voxels\n"
    "                      in a thousand near a boundary of another label\n";

// The model as a file's description names it: its weights' checksum where they state one (first:
// a long name is cut), then its folder's name ("model-t1" for model-t1/model.safetensors or ".";
// "model-t1/step_0000004" for a kept file; a Keras file's name).
std::string model_identity(const std::string& model) {
    std::error_code ec;
    fs::path path = fs::absolute(model, ec).lexically_normal();
    if (!path.has_filename()) path = path.parent_path();
    if (is_keras_model_path(model)) return path.filename().string();
    const fs::path weights = fs::absolute(resolve_model_path(model), ec).lexically_normal();
    const fs::path folder = weights.parent_path();
    const std::string name = weights.filename() == checkpoint_files[0] ? folder.filename().string()
                             : folder.filename() == kept_weights_folder
                                 ? cat(folder.parent_path().filename().string(), "/", weights.stem().string())
                                 : weights.filename().string();
    const std::string crc = weights_data_crc32(weights.string());
    return crc.empty() ? name : cat("weights ", crc, " ", name);
}

struct Job {
    std::string input, seg, post, resampled;
};

// One image whose frames are the files, in order: each one volume, all on the first's grid
// (its header, read already).
Image read_channels(const std::vector<std::string>& files, const VolumeHeader& first_header) {
    Image first = read_image(first_header);
    ISS_INPUT(first.frames == 1, files.front(), ": a channel must be one volume, found ", first.frames);
    Image stacked(first.grid, int64_t(files.size()));
    std::copy(first.data.begin(), first.data.end(), stacked.data.begin());
    for (size_t c = 1; c < files.size(); ++c) {
        const Image channel = on_grid_of(read_image(files[c]), files[c], first.grid, files.front());
        ISS_INPUT(channel.frames == 1, files[c], ": a channel must be one volume, found ", channel.frames);
        std::copy(channel.data.begin(), channel.data.end(), stacked.data.begin() + int64_t(c) * first.grid.voxels());
    }
    return stacked;
}

// The options that say how to segment (and how many threads), checked; `model` decides
// whether --labels and --orientation belong (a Keras model) or not.
PredictOptions predict_options(const Args& args, const std::string& model) {
    args.apply_threads();
    PredictOptions options;
    options.device = parse_device(args.get("--device", "auto"));
    options.precision = parse_precision(args.get("--precision", "fp32"), "predict: --precision");
    options.flip = !args.flag("--no-flip");
    options.resample_to_model = !args.flag("--no-resample");
    options.clip_percentiles = args.flag("--clip-percentiles");
    options.keep_posteriors = args.has("--post");  // the volumes need no reoriented posteriors
    if (is_keras_model_path(model)) {
        options.keras = keras_import_options(args);
        ISS_INPUT(!(args.has("--voxel-size") && args.flag("--no-resample")),
                  "--voxel-size and --no-resample contradict each other: the first asks scans to be resampled to it");
    } else {
        ISS_INPUT(!args.has("--labels") && !args.has("--channel-order") && !args.has("--orientation") &&
                      !args.has("--voxel-size"),
                  "predict: --labels, --channel-order, --orientation and --voxel-size are for a Keras model; a model "
                  "directory records its own");
    }
    return options;
}

// One job per scan: the input and its outputs' names (in a folder, NAME_synthseg.nii.gz and so
// on, or .mgz / .mgh for an MGH scan, as SynthSeg names them; predict's own earlier outputs
// there are not scans, with a note).
std::vector<Job> plan_jobs(const Args& args, const std::string& in, const std::string& out, bool folder) {
    std::vector<Job> jobs;
    std::map<std::string, std::string> input_of_output;  // a folder's output stems, each from one scan
    int skipped_outputs = 0;
    for (const std::string& file : volume_files(in)) {
        Job job{file, out, args.get("--post", ""), args.get("--resample", "")};
        if (folder) {
            const std::string name = volume_stem(file);
            // A run writing into the folder it reads: its earlier outputs are not scans.
            if (predict_output_index(file) >= 0) {
                ++skipped_outputs;
                continue;
            }
            const std::string ending = is_mgh_name(file) ? volume_ending(file) : ".nii.gz";
            auto named = [&](const std::string& dir, const char* suffix) {
                return (fs::path(dir) / (name + suffix + ending)).string();
            };
            job.seg = named(out, predict_output_suffixes[0]);
            if (!job.post.empty()) job.post = named(job.post, predict_output_suffixes[1]);
            if (!job.resampled.empty()) job.resampled = named(job.resampled, predict_output_suffixes[2]);
            // By stem: a.nii.gz and a.mgz are one subject's, whose outputs dice and --vol would mix.
            const auto [seen, fresh] = input_of_output.emplace(volume_stem(job.seg), file);
            ISS_INPUT(fresh, "predict: ", seen->second, " and ", file, " would both be written as ",
                      volume_stem(job.seg), ": rename one");
        }
        jobs.push_back(job);
    }
    ISS_INPUT(!jobs.empty(), "predict: ", in, ": no scans, only files named as predict's outputs (",
              skipped_outputs, ")");
    if (skipped_outputs > 0)
        std::fprintf(stderr, "infant-synthseg predict: note: %d file(s) named as predict's outputs (*%s, *%s, *%s) "
                             "not segmented\n",
                     skipped_outputs, predict_output_suffixes[0], predict_output_suffixes[1],
                     predict_output_suffixes[2]);
    return jobs;
}

// The folders predict makes, outermost first: for a folder of scans, its --o, --post and
// --resample folders as named; and each output file's folder (folders_of), as SynthSeg's
// predict makes it.
std::vector<std::string> prediction_folders(const Args& args, bool folder) {
    std::vector<std::string> folders;
    std::vector<NamedPath> files{{args.get("--vol", ""), "--vol"}, {args.get("--preview", ""), "--preview"}};
    for (const char* option : {"--o", "--post", "--resample"}) {
        if (!args.has(option)) continue;
        if (folder)
            folders.push_back(args.get(option, ""));
        else
            files.push_back({args.get(option, ""), option});
    }
    for (const std::string& f : folders_of(files)) folders.push_back(f);
    return folders;
}

// Every output checked before the network runs: none is an input, none another output, each
// can be written, and a single file's are named as NIfTI. Returns them.
std::vector<NamedPath> check_prediction_outputs(const Args& args, const std::vector<Job>& jobs,
                                                const std::vector<std::string>& channels, const std::string& model,
                                                const PredictOptions& options, bool folder) {
    std::vector<NamedPath> inputs, outputs{{args.get("--vol", ""), "--vol"}, {args.get("--preview", ""), "--preview"}};
    if (is_keras_model_path(model)) {
        inputs.insert(inputs.end(), {{model, "--model"}, label_file_of(options.keras.labels)});
    } else {
        // The weights and model.json; in a model directory every file of a checkpoint (Adam's
        // state and the logs a resumed train reads are not predict's to replace either).
        const fs::path weights = resolve_model_path(model);
        if (weights.filename() == checkpoint_files[0])
            for (const char* name : checkpoint_files)
                inputs.push_back({(weights.parent_path() / name).string(), "--model"});
        else
            inputs.insert(inputs.end(),
                          {{weights.string(), "--model"}, {model_json_path(weights.string()), "--model"}});
    }
    // The first --i is each job's input (or the folder of them); the other channels are extra.
    for (size_t c = 1; c < channels.size(); ++c) inputs.push_back({channels[c], "--i"});
    if (args.has("--like")) inputs.push_back({args.get("--like", ""), "--like"});
    for (const Job& job : jobs) {
        inputs.push_back({job.input, "--i"});
        outputs.insert(outputs.end(), {{job.seg, "--o"}, {job.post, "--post"}, {job.resampled, "--resample"}});
    }
    check_outputs("predict", inputs, outputs, prediction_folders(args, folder));
    require_replaceable_table("predict", "--vol", args.get("--vol", ""), TableKind::volumes);
    if (!folder)  // a NIfTI under another name misleads its readers (nibabel goes by the ending)
        for (const char* option : {"--o", "--post", "--resample"})
            if (args.has(option)) require_volume_output(args.get(option, ""), option);
    return outputs;
}

// The output options' kinds, before anything is read: with a folder of scans --o, --post and
// --resample name folders (a volume's name would become a folder of that name); the picture
// is a PNG and the volumes CSV.
void require_output_kinds(const Args& args, bool folder) {
    if (folder)
        for (const char* option : {"--o", "--post", "--resample"})
            ISS_INPUT(!args.has(option) || !is_volume_name(args.get(option, "")), "predict: ", option, " ",
                      args.get(option, ""), ": with a folder of scans, ", option, " names a folder");
    ISS_INPUT(!args.has("--preview") || ends_with_ignoring_case(args.get("--preview", ""), ".png"),
              "predict: --preview ", args.get("--preview", ""), ": the picture is a PNG (name it .png)");
    ISS_INPUT(!args.has("--vol") || !is_volume_name(args.get("--vol", "")), "predict: --vol ", args.get("--vol", ""),
              ": the volumes are CSV text, not an image (name it .csv)");
}

// --like goes through world coordinates: a file whose header places it nowhere (no qform, no
// sform: read as RAS at the origin, with a warning) would put the outputs at an arbitrary place.
void require_world_position(const VolumeHeader& header) {
    ISS_INPUT(header.affine_source != "pixdim", header.path, ": its header holds neither a qform nor an sform: no ",
              "place in world coordinates, through which --like puts the outputs on its grid");
}

// MGH has no place for the frames' labels: merge and clean will take the infant list unless
// told, which is wrong for a model of another list or order.
void warn_of_unlabelled_mgh_posteriors(const std::vector<Job>& jobs, const std::vector<int32_t>& labels) {
    if (labels == labels::segmentation_labels()) return;
    const auto mgh = std::find_if(jobs.begin(), jobs.end(), [](const Job& job) { return is_mgh_name(job.post); });
    if (mgh != jobs.end())
        warning(cat(mgh->post,
                    ": an MGH file cannot record the posteriors' labels, and this model's are not the "
                    "infant list: give merge and clean --labels ",
                    label_list_text(labels)));
}

// What the scans of a run add up to: the volumes table (a row per scan), the picture's rows,
// and a single file's outputs, which wait for both so that the set is all or nothing.
struct RunOutputs {
    CsvTable volumes;
    // The last scan's resampling, for its line, and how many were: predict resampled scans
    // without a word.
    std::string resampled_note;
    size_t resampled_scans = 0;
    std::vector<std::vector<RgbImage>> preview_rows;
    std::unique_ptr<OutputSet> single_file = std::make_unique<OutputSet>();
    std::array<int64_t, 8> last_dims{};  // the last scan's, whose freed blocks the heap keeps

    explicit RunOutputs(const std::vector<int32_t>& labels) : volumes(volumes_table(labels)) {}

    // The volumes and the picture, and with them a single file's outputs, moved into place.
    void commit(const Args& args) {
        if (!volumes.rows.empty()) {
            warn_if_replacing_volumes("predict", args.get("--vol", ""), volumes,
                                      "a table holds one run's scans (give each run a table of its own, or "
                                      "predict a folder of scans: one table for all)");
            single_file->write(args.get("--vol", ""), [&](const std::string& path) { write_csv(path, volumes); });
        }
        if (!preview_rows.empty()) {
            const RgbImage picture = tile_grid(preview_rows);
            single_file->write(args.get("--preview", ""), [&](const std::string& path) {
                write_png(path, picture.rgb, picture.width, picture.height);
            });
        }
        single_file->commit();
    }
};

// How one scan went.
enum class ScanOutcome { segmented, posteriors_skipped };

// Segments one job's scan and writes its outputs, all or none of them; in a folder they are
// committed at once (`committed` says so to the failure's message), a single file's wait in
// `run`. Posteriors an earlier run wrote are refused as a single file and skipped in a folder.
ScanOutcome segment_scan(const Job& job, const std::vector<std::string>& channels, Predictor& predictor, bool folder,
                         bool preview, const VolumeHeader* like, const char* line_start, RunOutputs& run,
                         bool& committed) {
    // The header first: posteriors an earlier run wrote (their frames record their labels) are
    // not a scan, and their voxels need not be read to say so. In a folder named otherwise (the
    // README's t1_post.nii.gz) they failed as 34 channels.
    VolumeHeader header = read_volume_header(job.input);
    if (!header.frame_labels.empty()) {
        ISS_INPUT(folder, job.input, ": posteriors (", header.frame_labels.size(),
                  " frames recording their labels, as predict --post writes them), not a scan");
        std::fprintf(stderr,
                     "%sinfant-synthseg predict: note: %s holds posteriors (its frames record their labels): "
                     "not segmented\n",
                     line_start, job.input.c_str());
        return ScanOutcome::posteriors_skipped;
    }
    // Freed blocks are kept for the next scan (keep_freed_host_memory), which reuses them when it
    // is of the same size; one of another size would hold its own beside them.
    if (header.dim != run.last_dims && run.last_dims[0] != 0) return_freed_host_memory();
    run.last_dims = header.dim;
    if (like) require_world_position(header);  // before the voxels are read (a large scan takes seconds)
    const Image image = channels.size() > 1 ? read_channels(channels, header) : read_image(header);
    const Grid like_grid = like ? like->grid() : Grid();
    const Segmentation result = predictor.predict(image, job.input, like ? &like_grid : nullptr);
    if (result.outside_field_of_view >= 0.005)
        std::fprintf(stderr,
                     "%sinfant-synthseg predict: note: %.0f%% of %s's voxels lie outside %s's field of view: "
                     "posteriors 0 and label 0 there\n",
                     line_start, 100.0 * result.outside_field_of_view, like->path.c_str(), job.input.c_str());
    const VolumeHeader* written_like = like ? like : &header;  // codes and units of the outputs' grid
    auto outputs = std::make_unique<OutputSet>();  // a failure below removes what it wrote
    write_prediction(*outputs, job.seg, result.segmentation, written_like, job.post, result.posteriors,
                     predictor.labels(), written_like);
    outputs->write(job.resampled, [&](const std::string& path) { write_image(path, result.resampled, &header); });
    if (folder) {
        outputs->commit();
        committed = true;
    }
    // A scan segmented as all background (blank, failed, not a head) has no volumes to give: its
    // row is empty, where its soft volumes read as a small brain (the warning said why).
    add_volumes_row(run.volumes, volume_stem(job.input), predictor.labels(),
                    has_structure(result.segmentation) ? result.volumes_mm3 : std::vector<double>());
    const std::array<double, 3> segmented_at = result.resampled.grid.voxel_size();
    run.resampled_note =
        result.resampled_to_model ? cat(", segmented at ", voxel_size_text({segmented_at, segmented_at})) : "";
    run.resampled_scans += result.resampled_to_model;
    if (preview && run.preview_rows.size() < preview_max_rows) {
        const MidSlices cells = overlay_mid_slices(like ? read_image(*like) : image, result.segmentation);
        run.preview_rows.push_back({cells[0], cells[1], cells[2]});
    }
    // Moved to the run last, so that a failure above drops them.
    if (!folder) run.single_file = std::move(outputs);
    return ScanOutcome::segmented;
}

// The failure's line, as main says it, with what became of the scan's outputs in a folder (an
// earlier run's outputs for it are not this run's).
void say_failure(const std::exception& e, const Job& job, bool folder, bool committed, const char* line_start,
                 int& failed_input, int& failed_other) {
    const Failure failure = describe_failure(e, "predict", job.input);
    std::error_code exists_error;
    const bool earlier = folder && !committed && fs::exists(job.seg, exists_error);
    const char* skipped = !folder     ? ""
                          : committed ? " (its outputs are written; the volumes table leaves it out)"
                          : earlier   ? " (skipped; an earlier run's outputs for it stay)"
                                      : " (skipped)";
    std::fprintf(stderr, "%sinfant-synthseg predict: %s%s\n", line_start, failure.text.c_str(), skipped);
    ++(failure.status == 2 ? failed_input : failed_other);
}

}  // namespace

int cmd_predict(int argc, char** argv) {
    const Args args("predict", argc, argv,
                    {"--i", "--o", "--model", "--post", "--vol", "--resample", "--preview", "--threads", "--device",
                     "--labels", "--channel-order", "--orientation", "--voxel-size", "--precision", "--like"},
                    {"--no-flip", "--no-resample", "--clip-percentiles", "--help"}, {"--i"});
    if (args.flag("--help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    args.reject_positional();
    const std::vector<std::string> channels = args.all("--i");
    ISS_INPUT(!channels.empty(), "predict: option --i is required");
    const std::string in = channels.front(), out = args.require("--o"), model = args.require("--model");
    const PredictOptions options = predict_options(args, model);

    // Inputs and outputs: file to file, or directory to directory; several --i: files stacked
    // into one image of several channels.
    std::error_code ec;
    const bool folder = fs::is_directory(in, ec);
    ISS_INPUT(channels.size() == 1 || !folder, "predict: several --i are the channels of one subject: give files");
    require_output_kinds(args, folder);
    ISS_INPUT(!args.has("--like") || !folder, "predict: --like puts one scan's outputs on another file's grid: give ",
              "--i a file, not a folder");
    const std::vector<Job> jobs = plan_jobs(args, in, out, folder);
    const std::vector<NamedPath> outputs = check_prediction_outputs(args, jobs, channels, model, options, folder);
    // The grid to write on, read (its header) before the model.
    std::optional<VolumeHeader> like;
    if (args.has("--like")) {
        like = read_volume_header(args.get("--like", ""));
        require_world_position(*like);
    }

    Predictor predictor(model, options);  // the model is read and checked before any output
    set_output_description(cat(output_description(), ", model ", model_identity(model)));
    warn_of_unlabelled_mgh_posteriors(jobs, predictor.labels());
    const int64_t model_channels = predictor.input_channels();
    ISS_INPUT(channels.size() == 1 || int64_t(channels.size()) == model_channels, "predict: --i given ",
              channels.size(), " times (the channels of one subject), but ", model, " takes ", model_channels,
              model_channels == 1 ? " image: segment the scans one at a time, or a folder of them"
                                  : " images, one --i each");
    warn_of_temporaries_beside("predict", outputs);  // once every refusal is past
    OutputDirectories folders;
    for (const std::string& f : prediction_folders(args, folder)) folders.make(f);

    RunOutputs run(predictor.labels());
    std::string done_line;  // a single file's "in -> out", said once everything is in place
    const bool show_bar = folder && ::isatty(::fileno(stderr)) != 0;
    const char* line_start = show_bar ? "\n" : "";  // a line said under the bar starts below it
    const auto start = std::chrono::steady_clock::now();
    int failed_input = 0, failed_other = 0;
    size_t posteriors_skipped = 0;
    // The bar after job n (0-based), ETA by the mean so far.
    auto draw_bar = [&](size_t n) {
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double eta = elapsed / double(n + 1) * double(jobs.size() - n - 1);
        std::fprintf(stderr, "\rpredict [%s] %zu/%zu  ETA %s ",
                     progress_bar(double(n + 1) / double(jobs.size()), 30).c_str(), n + 1, jobs.size(),
                     duration_text(eta).c_str());
    };
    bool any_segmented = false;
    // A signal ends predict at once: a folder's run says how far it got (it said nothing), in
    // words true at every moment it may come (a scan's outputs are one set: whole or none). The
    // volumes table and the picture are written once every scan is done.
    if (folder) arm_signal_farewell();
    const std::string farewell_start = cat(show_bar ? "\n" : "", "infant-synthseg predict: ended by a signal ");
    const std::string at_end = args.has("--vol") && args.has("--preview") ? "the --vol table and the --preview picture"
                               : args.has("--vol")                        ? "the --vol table"
                               : args.has("--preview")                    ? "the --preview picture"
                                                                          : "";
    const std::string earlier = "; what an earlier run wrote there stays as it was";
    for (size_t n = 0; n < jobs.size(); ++n) {
        const Job& job = jobs[n];
        if (folder)
            set_signal_farewell(cat(farewell_start, "at scan ", n + 1, " of ", jobs.size(),
                                    ": the scans segmented before it are written whole, it whole or not at all, the "
                                    "rest not",
                                    at_end.empty() ? "" : cat(", nor ", at_end), earlier));
        const auto job_start = std::chrono::steady_clock::now();
        bool segmented = false, committed = false;
        try {
            const ScanOutcome outcome = segment_scan(job, channels, predictor, folder, args.has("--preview"),
                                                     like ? &*like : nullptr, line_start, run, committed);
            posteriors_skipped += outcome == ScanOutcome::posteriors_skipped;
            segmented = outcome == ScanOutcome::segmented;
        } catch (const std::exception& e) {
            say_failure(e, job, folder, committed, line_start, failed_input, failed_other);  // a folder goes on
            // ... but not with a model that has segmented nothing: its output overflows on a scan's
            // intensities, and most likely on the next's (a model that did segment one goes on).
            if (dynamic_cast<const ModelFailure*>(&e) && !any_segmented && n + 1 < jobs.size()) {
                const size_t left = jobs.size() - n - 1;
                std::fprintf(stderr,
                             "infant-synthseg predict: error: the %zu scan%s after it %s not tried: the model has "
                             "segmented none\n",
                             left, left == 1 ? "" : "s", left == 1 ? "is" : "are");
                failed_input += int(left);
                break;
            }
        }
        any_segmented = any_segmented || segmented;
        if (show_bar) {
            draw_bar(n);
        } else if (segmented) {  // a failed input has had its error line: no arrow to an output it lacks
            char seconds[32];
            std::snprintf(seconds, sizeof seconds, "%.1f",
                          std::chrono::duration<double>(std::chrono::steady_clock::now() - job_start).count());
            std::string inputs = job.input;  // every channel's file (T1 + T2), not the first alone
            for (size_t c = 1; c < channels.size(); ++c) inputs += " + " + channels[c];
            // A folder's names are anyone's: one with a newline or a terminal's escape is shown
            // escaped, as in error messages, not split or obeyed.
            const std::string line =
                one_line(cat(inputs, " -> ", job.seg, " (", seconds, " s", run.resampled_note, ")"));
            if (folder)
                std::printf("%s\n", line.c_str());
            else
                done_line = line;
        }
    }
    if (show_bar) std::fputc('\n', stderr);
    if (show_bar && run.resampled_scans > 0)  // the bar replaced the lines that say it scan by scan
        std::fprintf(stderr,
                     "infant-synthseg predict: note: %zu of the %zu scans segmented were resampled to the model's "
                     "voxel size first (their outputs are on their own grids)\n",
                     run.resampled_scans, run.volumes.rows.size());
    if (posteriors_skipped == jobs.size()) {
        folders.take_back();
        throw InputError(cat("predict: ", channels.front(), ": no scans, only posteriors an earlier run wrote (",
                             posteriors_skipped, ")"));
    }
    if (folder)
        set_signal_farewell(cat(farewell_start, "after its last scan: the scans segmented are written whole",
                                at_end.empty() ? "" : cat(", ", at_end, " whole or not at all"), earlier));
    run.commit(args);
    if (!done_line.empty()) std::printf("%s\n", done_line.c_str());
    if (failed_input + failed_other > 0) {
        folders.take_back();  // those it made that hold nothing (every scan refused, say)
        if (folder)
            std::fprintf(stderr, "infant-synthseg predict: error: %d of %zu file%s failed (each said above)\n",
                         failed_input + failed_other, jobs.size(), jobs.size() == 1 ? "" : "s");
        return failed_other > 0 ? 1 : 2;
    }
    return 0;
}

}  // namespace iss::cli
