// `infant-synthseg synth`: synthetic training pairs from label maps (SPEC.md section 3). Reads
// and checks every input (configuration, then all label maps) before writing anything, then
// writes image_NNNN.nii.gz / labels_NNNN.nii.gz per sample, and optionally a preview montage.
// Each sample is a pure function of (seed, sample number), so the same arguments give
// byte-identical files.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "bin/cli.h"
#include "bin/commands.h"
#include "io/file_util.h"
#include "io/nifti.h"
#include "io/png.h"
#include "io/preview.h"
#include "io/safetensors.h"  // crc32_of
#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "synth/config.h"
#include "synth/generator.h"
#include "synth/stage_profile.h"

namespace iss::cli {
namespace {

namespace fs = std::filesystem;

const char* usage =
    "usage: infant-synthseg synth --labels FILE|DIR --out DIR [--count N] [--first F]\n"
    "                             [--seed S] [--preset NAME] [--config FILE] [--shape N]\n"
    "                             [--device auto|cpu|cuda[:N]] [--preview] [--profile]\n"
    "                             [--print-config]\n"
    "\n"
    "Generates synthetic training pairs: each sample picks one label map, deforms it, paints\n"
    "it with a random Gaussian mixture, blurs it, applies a bias field and a gamma, and crops\n"
    "it. Writes image_NNNN.nii.gz (float32 in [0, 1]) and labels_NNNN.nii.gz (segmentation\n"
    "labels) for N = first .. first+count-1 (0000 ...) into DIR, on the crop's grid of the\n"
    "map it came from, in RAS voxel order (a map stored LAS gives samples stored RAS, each\n"
    "voxel where the map's is). A sample flipped left/right (flip_probability: the synthseg\n"
    "preset's 0.5) is its crop's mirror image with left and right labels swapped, a\n"
    "mirror-image head whose left labels still lie at lower x: it does not overlay the map.\n"
    "Sample N depends only on the inputs, the seed and N, so any sample can be made again\n"
    "alone (--first N --count 1).\n"
    "Every input is checked before anything is written; a run that fails leaves none of its\n"
    "files (and puts back those of an earlier run it replaced). SIGINT (Ctrl-C), SIGTERM,\n"
    "SIGHUP, SIGUSR1 or SIGUSR2 (a batch scheduler's warning, e.g. Slurm's --signal), SIGXCPU,\n"
    "SIGALRM or SIGVTALRM (a time limit's) stops it once the sample in hand is written: the\n"
    "samples done stay, each image with its labels, and the exit status is 128 + the signal;\n"
    "a second signal ends it at once, saying what stays (the pair in hand taken back; a\n"
    "repeated SIGXCPU does not).\n"
    "\n"
    "  --labels FILE|DIR  a label map, or a directory: every *.nii, *.nii.gz, *.hdr, *.mgz and\n"
    "                     *.mgh in it, sorted by name; every value must be a generation label\n"
    "                     of the preset\n"
    "  --out DIR          output directory, created when missing\n"
    "  --count N          number of samples, N >= 1 (default 1)\n"
    "  --first F          number of the first sample (default 0); first + count <= 2^32\n"
    "  --seed S           non-negative integer; the same seed and inputs give identical files\n"
    "                     (default 1)\n"
    "  --preset NAME      generator parameters (default infant-t1):\n"
    "                       infant-t1  infant label lists, fused classes, T1-like priors mixed\n"
    "                                  with random contrast, no left/right flip\n"
    "                       infant-t2  the same with T2-like priors\n"
    "                       synthseg   uniform random contrast for every class, no fused\n"
    "                                  classes, random left/right flips; on the infant\n"
    "                                  label lists (adult SynthSeg maps need a --config\n"
    "                                  listing their labels)\n"
    "  --config FILE      JSON object overriding parameters of the preset by name (a \"preset\"\n"
    "                     field picks the base preset); see --print-config for the names\n"
    "  --shape N          requested crop N x N x N (default 160), at least shape_multiple\n"
    "                     (32), at most 4096; clipped to each map and rounded down to a\n"
    "                     multiple of it; a map thinner than that multiple along an axis is\n"
    "                     refused\n"
    "  --device D         auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default auto)\n"
    "  --preview          also write DIR/preview.png: one row per sample (the first 8 only),\n"
    "                     the image's axial, coronal and sagittal mid-slices beside the\n"
    "                     labels' in colour\n"
    "  --profile          at the end, print where a sample's time went: the parameters' draw,\n"
    "                     each generator stage run alone and waited for (with GB/s of the\n"
    "                     least traffic it must move), the copy to the host, the file writes;\n"
    "                     the same files as without it\n"
    "  --print-config     print the effective parameters as JSON and exit (needs no --labels\n"
    "                     or --out)\n"
    "  --help             this text\n"
    "\n"
    "Progress: a bar on stderr when it is a terminal, otherwise one summary line on stdout.\n";

// "synth [=====>    ] 12/100  3.4 samples/s  ETA 0:26", redrawn in place.
void draw_progress(long long done, long long total, double elapsed) {
    const std::string bar = progress_bar(double(done) / double(total), 30);
    const double rate = elapsed > 0 ? double(done) / elapsed : 0;
    const std::string eta = rate > 0 ? duration_text(double(total - done) / rate) : "?";
    std::fprintf(stderr, "\rsynth [%s] %lld/%lld  %s samples/s  ETA %s ", bar.c_str(), done, total,
                 rate_text(rate).c_str(), eta.c_str());
    if (done == total) std::fputc('\n', stderr);
    std::fflush(stderr);
}

// "image_0042.nii.gz": the file of one sample.
std::string sample_name(const char* kind, long long sample) {
    char name[64];
    std::snprintf(name, sizeof name, "%s_%04lld.nii.gz", kind, sample);
    return name;
}

// The sample number N of a file named image_NNNN.nii.gz or labels_NNNN.nii.gz, else -1.
long long sample_number(const std::string& name) {
    long long index = -1;
    char kind[8] = {};
    int end = 0;
    const bool sample = std::sscanf(name.c_str(), "%6[a-z]_%lld.nii.gz%n", kind, &index, &end) == 2 &&
                        size_t(end) == name.size() && (std::string(kind) == "image" || std::string(kind) == "labels");
    return sample && index >= 0 ? index : -1;
}

// The outputs are image_NNNN / labels_NNNN (first <= N < first + count) and preview.png in
// `out_dir`, which is not the --labels folder: none may be an input, and the directory must be
// writable. Each of those names that exists already is checked: a label map stored there under
// such a name, or a link to an input (either way round), would be replaced by a sample.
void check_synth_outputs(const std::string& labels_path, const std::vector<std::string>& map_files,
                         const std::string& config_path, const std::string& out_dir, long long first, long long count,
                         bool preview) {
    // Samples in the folder of maps would be read as maps by the next `--labels` of it (the
    // images refused as non-integer labels, the label crops trained on as maps).
    std::error_code ec;
    ISS_INPUT(!fs::is_directory(labels_path, ec) || !fs::equivalent(labels_path, out_dir, ec), "synth: --out ", out_dir,
              " is the folder of label maps --labels reads: the samples would be taken for label maps there; "
              "write them to another folder");
    std::vector<NamedPath> inputs = config_inputs(config_path);
    for (const std::string& f : map_files) inputs.push_back({f, "--labels"});
    const std::string first_image = sample_name("image", first);
    auto is_output = [&](const std::string& name) {
        const long long index = sample_number(name);
        return index >= first && index < first + count &&
               (name == sample_name("image", index) || name == sample_name("labels", index));
    };
    std::vector<NamedPath> outputs{{(fs::path(out_dir) / first_image).string(), "--out"}};
    if (preview) outputs.push_back({(fs::path(out_dir) / "preview.png").string(), "--out"});
    for (const fs::directory_entry& entry : fs::directory_iterator(out_dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (name != first_image && is_output(name)) outputs.push_back({entry.path().string(), "--out"});
    }
    // An output linked to a later sample's name, not there yet, is two outputs in one file (a
    // preview.png -> image_0001 link left sample 1 a PNG): the target counts as an output too.
    const size_t listed = outputs.size();
    for (size_t i = 0; i < listed; ++i) {
        const fs::path target = resolve_links(outputs[i].path);
        if (target != outputs[i].path && !fs::exists(target, ec) && is_output(target.filename().string()) &&
            fs::equivalent(target.parent_path(), out_dir, ec))
            outputs.push_back({target.string(), "--out"});
    }
    check_outputs("synth", inputs, outputs, {out_dir});
}

// Sample files (and a picture) in `out_dir` that this run will not write and does not read: an
// earlier run's, left as they are. Said, so that a folder mixing two runs is not taken for one.
// So are the files other runs were writing or had kept aside (NAME.tmp-PID..., an earlier sample
// as NAME.tmp-PID-replaced): a killed run's are left for good, but one on another host or in
// another container may be writing them now (its process id is no proof either way), so they
// are named, not removed.
void warn_of_other_runs(const std::string& out_dir, const std::vector<std::string>& inputs, long long first,
                        long long count, bool preview) {
    std::error_code ec;
    std::vector<std::string> others, temporaries;
    for (const fs::directory_entry& entry : fs::directory_iterator(out_dir, ec)) {
        const std::string name = entry.path().filename().string();
        const std::optional<TemporaryName> t = temporary_name(name);
        if (t && (sample_number(t->base) >= 0 || t->base == "preview.png")) temporaries.push_back(name);
        if (t) continue;
        const bool input = std::any_of(inputs.begin(), inputs.end(), [&](const std::string& map) {
            std::error_code same;
            return fs::equivalent(map, entry.path(), same);
        });
        if (input) continue;  // this run's own label maps, stored under such a name
        const long long index = sample_number(name);
        if ((index >= 0 && (index < first || index >= first + count)) || (name == "preview.png" && !preview))
            others.push_back(name);
    }
    if (!temporaries.empty()) warning(cat("synth: ", out_dir, " holds ", other_runs_temporaries_text(temporaries)));
    if (others.empty()) return;
    std::sort(others.begin(), others.end());
    warning(cat("synth: ", out_dir, " holds ", others.size(), " file", others.size() > 1 ? "s" : "",
                " this run does not write (", others.front(), others.size() > 1 ? ", ..." : "",
                "), from another run: they stay"));
}

// The maps whose crops come out smaller than asked (a map smaller than the crop along an axis,
// without pad_when_smaller), as a warning, where the maps' crops are not all of one shape; empty
// otherwise. The help says crops are clipped, but a folder with one small map gave files of two
// shapes, said only as "several shapes" (one shape is named in the last line).
std::string clipped_crops(const GeneratorConfig& config, const std::vector<TrainingMap>& maps) {
    const std::array<int64_t, 3> asked = crop_shape(config, config.output_shape);
    const std::array<int64_t, 3> first_crop = crop_shape(config, maps.front().grid.dim);
    std::vector<const TrainingMap*> clipped;
    bool one_shape = true;
    for (const TrainingMap& m : maps) {
        const std::array<int64_t, 3> crop = crop_shape(config, m.grid.dim);
        one_shape &= crop == first_crop;
        if (crop != asked) clipped.push_back(&m);
    }
    if (clipped.empty() || one_shape) return {};
    const TrainingMap& first = *clipped.front();
    return cat("synth: the ", dims_text(asked), " crops are clipped to maps smaller along an axis: ", clipped.size(),
               " of the ", maps.size(), " maps, whose samples are smaller (", first.name, ": ",
               dims_text(first.grid.dim), " voxels, crops of ", dims_text(crop_shape(config, first.grid.dim)),
               clipped.size() > 1 ? ", ..." : "", ")");
}

// The generator's configuration: the preset, a --config's overrides and --shape, checked as a
// whole (`config_path` names the file, empty for none).
GeneratorConfig synth_config(const Args& args, const std::string& config_path) {
    const PresetChoice preset{args.preset()};
    GeneratorConfig config = config_path.empty() ? preset_config(preset.base()) : load_config(preset, config_path);
    if (args.has("--shape")) {
        const long long n = args.integer_in("--shape", 0, 1, max_crop_side);
        config.output_shape = {n, n, n};
    }
    validate_config(config, config_path.empty() ? cat("preset ", config.preset) : config_path);
    // Crops are rounded down to the multiple: a smaller request was raised to it without a word.
    for (const int64_t n : config.output_shape)
        ISS_INPUT(n >= config.shape_multiple, "synth: ",
                  args.has("--shape") ? cat("--shape ", n) : cat(config_path, ": output_shape ", n),
                  " is smaller than shape_multiple ", config.shape_multiple,
                  ": crops are rounded down to a multiple of it");
    return config;
}

// How to make the samples a stopped run did not: "; the same options with --first F --count C
// make the rest", or nothing when all were written.
std::string rest_of_the_run(long long first, long long written, long long count) {
    return written < count ? cat("; the same options with --first ", first + written, " --count ", count - written,
                                 " make the rest")
                           : std::string();
}

}  // namespace

int cmd_synth(int argc, char** argv) {
    const Args args(
        "synth", argc, argv,
        {"--labels", "--out", "--count", "--first", "--seed", "--preset", "--config", "--shape", "--device"},
        {"--preview", "--profile", "--print-config", "--help"});
    if (args.flag("--help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    args.reject_positional();

    const std::string config_path = args.get("--config", "");
    const GeneratorConfig config = synth_config(args, config_path);
    if (args.flag("--print-config")) {
        std::printf("%s\n", config_to_json(config).c_str());
        return 0;
    }

    const long long count = args.integer("--count", 1);
    ISS_INPUT(count >= 1 && count <= (1ll << 32), "synth: --count must be between 1 and 2^32, got ", count);
    const long long first = args.integer("--first", 0);
    ISS_INPUT(first >= 0 && first <= (1ll << 32) - count, "synth: --first must be between 0 and 2^32 - count, got ",
              first);
    const uint64_t seed = args.seed();
    const std::string labels_path = args.require("--labels");
    const std::string out_dir = args.require("--out");
    const Device device = parse_device(args.get("--device", "auto"));

    const std::vector<std::string> map_files = volume_files(labels_path);
    check_synth_outputs(labels_path, map_files, config_path, out_dir, first, count, args.flag("--preview"));
    // Every map read and checked before the output directory is touched.
    std::vector<TrainingMap> maps = load_training_maps(map_files, config);
    const std::string clipped = clipped_crops(config, maps);
    const std::string folds = folds_learned_as_background(maps, config, cat("synth: ", config_path));

    const std::string what_is_drawn = cat(config_to_json(config), " seed ", seed, " maps ", maps_digest(maps));
    const std::string samples_key = crc32_text(crc32_of(0, what_is_drawn.data(), what_is_drawn.size()));
    // Each file says what drew it: the key also names the folder's lock (two runs of one key make
    // the same samples).
    set_output_description(
        cat(output_description(), ", key ", samples_key, ", preset ", config.preset, ", seed ", seed));
    DeviceContext ctx(device);
    Generator gen(ctx, config, std::move(maps), seed);
    // Crops the request does not give, said once every input is checked (a refusal is one line).
    const int64_t asked = config.output_shape[0];
    if (args.has("--shape") && asked % config.shape_multiple != 0)
        warning(cat("synth: --shape ", asked, " is not a multiple of shape_multiple ", config.shape_multiple,
                    ": crops are rounded down to one (", asked - asked % config.shape_multiple,
                    "), as well as clipped to each map"));
    if (!clipped.empty()) warning(clipped);
    if (!folds.empty()) warning(folds);
    OutputDirectories folders;
    folders.make(out_dir);
    // A run of other samples (another configuration, seed or maps) writing here at once would mix
    // its files with these, a pair's image with the other's labels; one of the same samples may
    // (--first ranges side by side: sample N is the same file in each).
    const SharedFolderLock samples_lock(out_dir, ".synth-", samples_key,
                                        "another synth run of other samples (its configuration, seed or label maps) is "
                                        "writing here: give this run an --out of its own");
    // Once no run of other samples can be writing here (a refusal is then one line).
    warn_of_other_runs(out_dir, map_files, first, count, args.flag("--preview"));

    const bool show_bar = ::isatty(::fileno(stderr)) != 0;
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    std::vector<std::vector<RgbImage>> preview_rows;
    // Every sample and the picture, or none: a failure takes back the samples already written.
    // A stop signal (install_stop_handlers) stops once the sample in hand is written: the
    // complete pairs stay.
    OutputSet outputs;
    std::array<int64_t, 3> first_shape{};
    bool mixed_shapes = false;
    if (show_bar) draw_progress(0, count, 0);
    install_stop_handlers();
    // Steps outside the generator are always timed (two clock reads); the generator's stages
    // only with --profile, which waits for each.
    const bool profile = args.flag("--profile");
    StageProfile stage_times;
    long long written = 0;
    // What a second signal, which ends the run at once, leaves (it ended it without a word).
    auto say_what_a_second_signal_leaves = [&] {
        set_signal_farewell(cat(show_bar ? "\n" : "",
                                "infant-synthseg synth: ended at once by a second signal: ", written, " of ", count,
                                " samples written whole", rest_of_the_run(first, written, count)));
    };
    say_what_a_second_signal_leaves();
    for (long long i = 0; i < count && !stop_flag(); ++i) {
        const long long sample = first + i;
        if (profile)
            stage_times.generate(gen, uint32_t(sample));
        else
            gen.generate(uint32_t(sample));
        Image image;
        LabelMap labels;
        stage_times.time("to host", [&] {
            image = gen.image_host();
            labels = gen.labels_host();
        });
        stage_times.time("write", [&] {
            outputs.write((fs::path(out_dir) / sample_name("image", sample)).string(),
                          [&](const std::string& path) { write_image(path, image); });
            outputs.write((fs::path(out_dir) / sample_name("labels", sample)).string(),
                          [&](const std::string& path) { write_labels(path, labels); });
        });
        outputs.commit_so_far();  // pair by pair
        written = i + 1;
        say_what_a_second_signal_leaves();

        if (i == 0) first_shape = image.grid.dim;
        mixed_shapes |= image.grid.dim != first_shape;
        if (args.flag("--preview") && size_t(i) < preview_max_rows)
            stage_times.time("preview", [&] { preview_rows.push_back(montage_row(image, labels)); });
        if (show_bar) draw_progress(i + 1, count, elapsed());
    }
    if (!preview_rows.empty()) {
        const RgbImage montage = tile_grid(preview_rows);
        outputs.write((fs::path(out_dir) / "preview.png").string(), [&](const std::string& path) {
            write_png(path, montage.rgb, montage.width, montage.height);
        });
    }
    outputs.commit();
    if (show_bar && written < count) std::fputc('\n', stderr);
    if (!show_bar || written < count) {
        const double seconds = elapsed();
        std::printf("wrote %lld sample%s of %s to %s in %.1f s (%.2f samples/s)\n", written, written == 1 ? "" : "s",
                    written == 0   ? "no shape"
                    : mixed_shapes ? "several shapes"
                                   : dims_text(first_shape).c_str(),
                    out_dir.c_str(), seconds, seconds > 0 ? double(written) / seconds : 0.0);
    }
    if (profile && written > 0)
        std::fputs(stage_times.table(ctx.is_cuda() ? ctx.device().name()
                                                   : cat("cpu, ", omp_get_max_threads(), " thread",
                                                         omp_get_max_threads() > 1 ? "s" : ""))
                       .c_str(),
                   stdout);
    if (written < count) {
        std::fprintf(stderr, "infant-synthseg synth: stopped by %s after %lld of %lld samples, each written whole%s\n",
                     signal_name(stop_signal()), written, count, rest_of_the_run(first, written, count).c_str());
        return 128 + stop_signal();
    }
    return 0;
}

}  // namespace iss::cli
