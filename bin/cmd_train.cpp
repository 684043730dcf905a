// `infant-synthseg train`: trains a segmentation U-Net on synthetic images made on the fly from
// label maps (SPEC.md section 5). A thin shell around iss::Trainer, which checks every input
// before any step and writes the model directory; this file parses the options (taking those not
// given from model.json on --resume), shows progress and turns a stop signal (SIGINT, SIGTERM, a
// batch scheduler's or a time limit's: install_stop_handlers) into a clean stop with a checkpoint.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cfloat>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "bin/cli.h"
#include "bin/commands.h"
#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "nn/checkpoint.h"
#include "nn/precision.h"
#include "train/trainer.h"

namespace iss::cli {
namespace {

const char* usage =
    "usage: infant-synthseg train --labels FILE|DIR --model-dir DIR [--preset NAME]\n"
    "                             [--config FILE] [--steps N] [--steps-per-epoch N] [--lr X]\n"
    "                             [--batch B]\n"
    "                             [--shape S] [--levels L] [--features F] [--wl2-epochs E]\n"
    "                             [--keep-every K] [--resume] [--seed S]\n"
    "                             [--device auto|cpu|cuda[:N]]\n"
    "                             [--precision fp32|bf16] [--threads N]\n"
    "                             [--validation-labels FILE|DIR [--validate-every N]\n"
    "                              [--validation-samples K]]\n"
    "       infant-synthseg train --model-dir DIR --resume [OPTIONS]   (the maps it recorded)\n"
    "\n"
    "Trains a 3D U-Net to segment brain MRI of any contrast: every step synthesises a batch of\n"
    "images from the label maps (as 'synth' does), runs the network and a soft Dice loss, and\n"
    "updates the weights with Adam. Every input is checked before the first step.\n"
    "\n"
    "  --labels FILE|DIR   a label map, or a directory: every *.nii, *.nii.gz, *.hdr, *.mgz and\n"
    "                      *.mgh in it; every value must be a generation label of the preset\n"
    "                      (with --resume: default the path model.json records)\n"
    "  --model-dir DIR     where the model and its logs go, created when missing; must not\n"
    "                      hold a model already unless --resume is given\n"
    "  --preset NAME       generator parameters: infant-t1, infant-t2 or synthseg (default\n"
    "                      infant-t1; see 'infant-synthseg synth --help')\n"
    "  --config FILE       JSON overrides of the preset's generator parameters\n"
    "  --steps N           total number of training steps; with --resume, training continues\n"
    "                      until step N (default 900000; with --resume, the recorded total)\n"
    "  --steps-per-epoch N steps between checkpoints (default 3000)\n"
    "  --lr X              Adam's learning rate (default 1e-4)\n"
    "  --batch B           samples per step, 1 to 64 (default 1); the loss is the mean of each\n"
    "                      sample's Dice, as SynthSeg's\n"
    "  --shape S           requested crop S x S x S (default: the configuration's output_shape,\n"
    "                      160^3; at most 4096); clipped to the smallest map and rounded down to\n"
    "                      a multiple of 2^levels (the configuration's shape_multiple is the\n"
    "                      network's)\n"
    "  --levels L          U-Net resolution levels, 1 to 8 (default 5)\n"
    "  --features F        feature maps at the first level, doubling per level (default 24;\n"
    "                      1 to 1024, and at most 8192 at the deepest level)\n"
    "  --wl2-epochs E      epochs of weighted-L2 pre-training before the Dice loss (default 0;\n"
    "                      the Dice loss then starts with a fresh Adam, as SynthSeg's does)\n"
    "  --keep-every K      also keep the weights of every K-th epoch's checkpoint, as SynthSeg\n"
    "                      keeps every epoch's: weights/step_NNNNNNN.safetensors + .json, for\n"
    "                      predict --model and export (not resumed: no optimizer state; 53 MB\n"
    "                      each at the default size) (default 0: the latest checkpoint alone)\n"
    "  --resume            continue the model in --model-dir from its last checkpoint; an\n"
    "                      option not given is what model.json recorded (--labels, the\n"
    "                      architecture, preset, --config's parameters, --seed, --batch, the\n"
    "                      crop, --steps, --steps-per-epoch, --wl2-epochs, --keep-every, --lr,\n"
    "                      --precision);\n"
    "                      one given must match what draws the samples (all of these but\n"
    "                      --steps, --lr, --precision, --steps-per-epoch and --keep-every,\n"
    "                      which may change: model.json records each change of --lr,\n"
    "                      --precision or --steps-per-epoch in its history; the weighted-L2\n"
    "                      steps, --wl2-epochs x --steps-per-epoch, must stay). Other\n"
    "                      --labels maps, or another device or --threads, may continue a\n"
    "                      model: a warning says the run no longer repeats the uninterrupted\n"
    "                      one, and the history records them.\n"
    "                      The validation goes on as recorded (its maps where they still\n"
    "                      are, interval and sample count); without its maps, or with other\n"
    "                      maps, samples or --validate-every, a warning says validation.csv's\n"
    "                      rows stop or change (the history records a change).\n"
    "                      One train at a time writes a --model-dir\n"
    "  --seed S            non-negative integer: initial weights and every sample; a resumed run\n"
    "                      repeats the uninterrupted one exactly on the same device and number\n"
    "                      of threads (sums run in another order otherwise: model.json records\n"
    "                      them, and a resume on others warns) (default 1)\n"
    "  --device D          auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default auto)\n"
    "  --threads N         CPU threads, at most 4 per hardware thread (default: all, or\n"
    "                      OMP_NUM_THREADS); the count model.json records repeats a run bit for\n"
    "                      bit on another machine of the same instruction set\n"
    "  --precision P       the network's arithmetic: fp32 (default) or bf16 (activations and\n"
    "                      their gradients stored as bfloat16, convolutions summing in fp32;\n"
    "                      weights, their gradients, the loss and Adam fp32; recorded in\n"
    "                      model.json; native on CPUs with AVX512-BF16 or AMX and on GPUs\n"
    "                      from sm_80; elsewhere fp32 runs and a warning says so)\n"
    "  --validation-labels FILE|DIR\n"
    "                      held-out label maps: the Dice of the model on a fixed set of\n"
    "                      synthetic samples from them is measured every --validate-every steps\n"
    "                      (the samples follow --seed: runs of other seeds measure other sets)\n"
    "  --validate-every N  steps between validations (default: --steps-per-epoch), and at the\n"
    "                      last step\n"
    "  --validation-samples K\n"
    "                      synthetic samples per validation (default 4)\n"
    "  --no-validation     with --resume: do not validate on the maps the model records\n"
    "  --help              this text\n"
    "\n"
    "Files in --model-dir, all rewritten at every checkpoint (each epoch, the last step, and\n"
    "an interruption):\n"
    "  model.safetensors, model.json   the weights and their description (architecture,\n"
    "                                  labels, preprocessing, training options)\n"
    "  model.optimizer.safetensors     Adam's state and the step, for --resume\n"
    "  training_log.csv                one row per step: step, loss, loss_function (soft_dice, or\n"
    "                                  weighted_l2 in --wl2-epochs), lr, seconds\n"
    "  validation.csv                  step, mean_dice (over the structures the true maps hold,\n"
    "                                  background left out; a label predicted where the truth\n"
    "                                  has none shows its Dice of 0 but is not in the mean),\n"
    "                                  then the Dice of each label, empty where a label is in\n"
    "                                  neither (with --validation-labels)\n"
    "  loss.png                        the loss curve (and the validation Dice)\n"
    "  weights/step_NNNNNNN.*          with --keep-every: the kept epochs' weights, never\n"
    "                                  rewritten\n"
    "\n"
    "SIGINT (Ctrl-C), SIGTERM, SIGHUP, SIGUSR1 or SIGUSR2 (a batch scheduler's warning before\n"
    "its time limit, e.g. Slurm's --signal=USR1@300), SIGXCPU, SIGALRM or SIGVTALRM (a time\n"
    "limit's: Grid Engine's s_cpu, a soft ulimit -t, timeout -s ALRM): the current step\n"
    "finishes, a checkpoint is written and the command exits with status 128 + the signal's\n"
    "number (130 for Ctrl-C, as the run did not reach --steps); --resume continues from\n"
    "there. A second signal ends it at once, without that checkpoint, saying which one stays\n"
    "(a repeated SIGXCPU, which the kernel sends every CPU second past a soft limit, does\n"
    "not). A signal ignored by whoever started the command stays ignored: nohup's SIGHUP, and\n"
    "SIGINT to a script's background job (`cmd &`): send SIGTERM.\n"
    "\n"
    "Progress: a bar on stderr when it is a terminal (loss = mean of the last 100 steps),\n"
    "otherwise one line per checkpoint on stdout, and between them one after the first step\n"
    "(where the first checkpoint is over a minute away) and one every 10 minutes; a summary at\n"
    "the end.\n";

// A learning rate Adam's float holds as a positive normal number (1e300 would be infinite, 1e-50
// zero). Judged as the float: FLT_MAX's nearest double written in the record reads back above it.
bool is_float_rate(double lr) {
    const float f = float(lr);
    return std::isfinite(f) && f >= FLT_MIN;
}

// The most synthetic samples a validation may take (--validation-samples, or a record's).
constexpr int max_validation_samples = 1 << 20;

// Without --validate-every: once an epoch (on --resume, of the recorded epoch length, unless the
// record holds the interval).
int64_t validation_interval(const Args& args, const TrainOptions& o) {
    return args.integer("--validate-every", o.validation_labels.empty() ? 0 : o.steps_per_epoch);
}

// The generator a resumed run continues with: the recorded one unless --config or another
// --preset is given (`t` is model.json's training record, `json` its path).
void adopt_recorded_generator(const Args& args, const nlohmann::json& t, const std::string& json, TrainOptions& o) {
    // The recorded generator names its preset: a --preset given is checked against it instead
    // (the same one continues the recorded generator: a --config's parameters with it were
    // refused as changed).
    const bool preset_is_recorded =
        args.has("--preset") && t.contains("preset") && t["preset"] == args.get("--preset", "");
    ISS_INPUT(!t.contains("generator") || t["generator"].is_object(), json,
              ": field 'training.generator' must be an object of generator parameters");
    if (!args.has("--config") && (!args.has("--preset") || preset_is_recorded)) {
        if (t.contains("generator")) {
            o.recorded_generator = t["generator"].dump();
            o.recorded_generator_source = json + " (training.generator)";
        } else {
            o.record_warnings.push_back(cat("train: ", json,
                                            " records no generator parameters (an older model): the preset's are "
                                            "used; give --config if the run had one"));
        }
    }
}

// --validate-every and --validation-samples without maps to validate on: refused.
void require_validation_maps_for_options(const Args& args, const TrainOptions& o, const std::string& why) {
    ISS_INPUT(!o.validation_labels.empty() || (!args.has("--validate-every") && !args.has("--validation-samples")),
              "train: --validate-every and --validation-samples need --validation-labels", why);
}

// The validation continues as it ran: on its maps given again, or else on those it records where
// they still are, unless --no-validation.
void adopt_recorded_validation(const Args& args, const nlohmann::json& t, const std::string& json, TrainOptions& o) {
    if (args.flag("--no-validation")) o.no_validation_reason = "--no-validation";
    const nlohmann::json validation = t.value("validation", nlohmann::json());
    if (!validation.is_null()) {
        ISS_INPUT(!validation.is_object() || !validation.contains("maps_path") || validation["maps_path"].is_string(),
                  json, ": field 'training.validation.maps_path' must be a path (a string), got ",
                  clipped(validation["maps_path"].dump(), 40));
        auto positive = [&](const char* key, int64_t most) {
            return validation.is_object() && validation.contains(key) && validation[key].is_number_integer() &&
                   validation[key].get<int64_t>() >= 1 && validation[key].get<int64_t>() <= most;
        };
        ISS_INPUT(positive("every", INT64_MAX) && positive("samples", max_validation_samples), json,
                  ": field 'training.validation' must hold 'every' (steps, at least 1) and 'samples' (1 to ",
                  max_validation_samples, "), integers; has ", clipped(validation.dump(), 80));
        // No --validation-labels: the maps the run validated on, where they still are (as --labels).
        if (o.validation_labels.empty() && !args.flag("--no-validation") && validation.contains("maps_path")) {
            const std::string recorded = validation["maps_path"].get<std::string>();
            try {
                volume_files(recorded);  // there, and holding maps
                o.validation_labels = recorded;
                o.validation_from_record = true;
            } catch (const InputError& e) {
                o.no_validation_reason = cat("the maps it records cannot be used: ", one_line(e.what()));
            }
        }
    }
    require_validation_maps_for_options(
        args, o,
        cat(" (", o.no_validation_reason.empty() ? cat(json, " records none to go on with") : o.no_validation_reason,
            ")"));
    o.validate_every = validation_interval(args, o);
    if (!o.validation_labels.empty() && !validation.is_null()) {
        if (!args.has("--validation-samples")) o.validation_samples = int(validation["samples"].get<int64_t>());
        if (!args.has("--validate-every")) o.validate_every = validation["every"].get<int64_t>();
    }
}

// `train --labels MAPS --model-dir DIR --resume` goes on as the run was started: every option
// that says what the network is or what it is trained on, when not given, is what model.json
// recorded (`saved`: the trainer reads it once the model directory is locked). Options given
// must still match it: the trainer checks. A field missing is an older record's (said where it
// matters); one of another type or out of the option's range is refused, naming it (a batch of
// 2^32 + 1 was read as 1, a negative rate skipped for the default).
void adopt_recorded_options(const Args& args, const ModelSpec& saved, TrainOptions& o) {
    const std::string weights = model_weights_in(o.model_dir);
    const std::string json = model_json_path(weights);
    const nlohmann::json& t = saved.training;
    auto integer = [&](const char* key, auto& field, const char* option, long long lo, long long hi) {
        if (!t.contains(key)) return;
        const nlohmann::json& v = t[key];
        ISS_INPUT(v.is_number_integer() && v >= lo && v <= hi, json, ": field 'training.", key,
                  "' must be an integer from ", lo, " to ", hi, ", got ", clipped(v.dump(), 40));
        if (!args.has(option)) field = std::remove_reference_t<decltype(field)>(v.get<long long>());
    };
    if (!args.has("--levels") && !args.has("--features")) {
        o.unet = saved.unet;  // convolutions per level and kernel too
    } else {
        if (!args.has("--levels")) o.unet.levels = saved.unet.levels;
        if (!args.has("--features")) o.unet.features = saved.unet.features;
    }
    if (t.contains("preset")) {
        ISS_INPUT(t["preset"].is_string(), json, ": field 'training.preset' must be a preset's name");
        o.recorded_preset = t["preset"];
    }
    if (t.contains("seed")) {  // any 64-bit value, as --seed
        const nlohmann::json& seed = t["seed"];
        ISS_INPUT(seed.is_number_unsigned() || (seed.is_number_integer() && seed >= 0), json,
                  ": field 'training.seed' must be an integer from 0 to 2^64 - 1, got ", clipped(seed.dump(), 40));
        if (!args.has("--seed")) o.seed = seed.get<uint64_t>();
    }
    integer("batch", o.batch, "--batch", 1, 64);
    integer("steps_per_epoch", o.steps_per_epoch, "--steps-per-epoch", 1, INT64_MAX);
    // The total the run was started with: a resumed run without --steps stops where it would have.
    if (!args.has("--steps") && !t.contains("steps"))
        o.record_warnings.push_back(cat("train: ", json,
                                        " records no --steps (an older model): training goes on to step ", o.steps,
                                        "; give --steps to stop sooner"));
    integer("steps", o.steps, "--steps", 1, INT64_MAX);
    integer("wl2_epochs", o.wl2_epochs, "--wl2-epochs", 0, INT64_MAX);
    integer("keep_every", o.keep_every, "--keep-every", 0, INT64_MAX);
    if (t.contains("crop")) {  // the crop itself (a --config's may be no cube)
        const nlohmann::json& crop = t["crop"];
        const bool three_sizes =
            crop.is_array() && crop.size() == 3 && std::all_of(crop.begin(), crop.end(), [](const nlohmann::json& n) {
                return n.is_number_integer() && n >= 1 && n <= max_crop_side;
            });
        ISS_INPUT(three_sizes, json, ": field 'training.crop' must be three voxel counts (1 to ", max_crop_side,
                  "), got ", clipped(crop.dump(), 40));
        if (!args.has("--shape")) o.recorded_crop = crop.get<std::array<int64_t, 3>>();
    }
    if (t.contains("lr")) {  // Adam's float, as --lr
        const nlohmann::json& lr = t["lr"];
        ISS_INPUT(lr.is_number() && is_float_rate(lr.get<double>()), json,
                  ": field 'training.lr' must be a positive number from ", FLT_MIN, " to ", FLT_MAX, ", got ",
                  clipped(lr.dump(), 40));
        if (!args.has("--lr")) o.lr = float(lr.get<double>());
    }
    if (t.contains("precision")) {
        const nlohmann::json& precision = t["precision"];
        ISS_INPUT(precision.is_string(), json, ": field 'training.precision' must be fp32 or bf16");
        const Precision p = parse_precision(precision.get<std::string>(), json + ": field 'training.precision'");
        if (!args.has("--precision")) o.precision = p;
    }
    if (o.labels.empty()) {  // no --labels: the maps the run was given, where they still are
        ISS_INPUT(!t.contains("maps_path") || t["maps_path"].is_string(), json,
                  ": field 'training.maps_path' must be a path (a string), got ", clipped(t["maps_path"].dump(), 40));
        ISS_INPUT(t.contains("maps_path"), json,
                  ": records no label maps' path (written before 2026-12-07, or a name of bytes JSON cannot ",
                  "hold): give --labels");
        o.labels = t["maps_path"].get<std::string>();
        std::error_code ec;
        const bool there = std::filesystem::exists(o.labels, ec);
        ISS_INPUT(there, json, ": the label maps it was trained on, ", o.labels,
                  ec ? cat(", cannot be reached (", ec.message(), ")")
                     : std::string(", are not there (moved, or on "
                                   "another machine)"),
                  ": give --labels");
    }
    adopt_recorded_generator(args, t, json, o);
    adopt_recorded_validation(args, t, json, o);
}

TrainOptions parse_options(const Args& args) {
    TrainOptions o;
    // A resume without --labels reads the maps its record names (adopt_recorded_options).
    o.labels = args.flag("--resume") ? args.get("--labels", "") : args.require("--labels");
    o.model_dir = args.require("--model-dir");
    o.preset = args.preset();
    o.config_path = args.get("--config", "");
    o.steps = args.integer("--steps", o.steps);
    o.steps_per_epoch = args.integer("--steps-per-epoch", o.steps_per_epoch);
    const double lr = args.number("--lr", o.lr);  // Adam's is a float: 1e300 would be infinite, 1e-50 zero
    ISS_INPUT(is_float_rate(lr), "train: --lr must be a positive number from ", FLT_MIN, " to ", FLT_MAX,
              " (a float's), got ", args.get("--lr", ""));
    o.lr = float(lr);
    o.batch = int(args.integer_in("--batch", o.batch, 1, 64));
    if (args.has("--shape")) o.shape = args.integer_in("--shape", 0, 1, max_crop_side);
    o.unet.levels = int(args.integer_in("--levels", o.unet.levels, 1, UNetConfig::max_levels));
    o.unet.features = int(args.integer_in("--features", o.unet.features, 1, UNetConfig::max_features));
    o.wl2_epochs = args.integer("--wl2-epochs", o.wl2_epochs);
    o.keep_every = args.integer("--keep-every", o.keep_every);
    o.resume = args.flag("--resume");
    o.seed = args.seed();
    o.device = parse_device(args.get("--device", "auto"));
    o.precision = parse_precision(args.get("--precision", "fp32"), "train: --precision");
    args.apply_threads();

    o.validation_labels = args.get("--validation-labels", "");
    ISS_INPUT(!args.flag("--no-validation") || (o.resume && o.validation_labels.empty() &&
                                                !args.has("--validate-every") && !args.has("--validation-samples")),
              "train: --no-validation is for a --resume that would validate on the maps its model records; it ",
              "takes no --validation-labels, --validate-every or --validation-samples");
    // A resume may validate on its record's maps: checked once they are adopted.
    if (!o.resume) require_validation_maps_for_options(args, o, "");
    o.validate_every = validation_interval(args, o);
    o.validation_samples =
        int(args.integer_in("--validation-samples", o.validation_samples, 1, max_validation_samples));
    if (o.resume)
        o.adopt_recorded = [args](const ModelSpec& saved, TrainOptions& options) {
            adopt_recorded_options(args, saved, options);
        };
    return o;
}

// What the progress display keeps between steps.
struct Progress {
    bool bar = false;
    int64_t total = 0;
    int batch = 1;
    std::deque<double> recent;  // the last (up to) 100 losses, for the bar
    double recent_sum = 0;
    double epoch_sum = 0;  // losses since the last checkpoint line
    int64_t epoch_steps = 0;
    StepReport last;
    double dice = -1;  // the latest validation, -1 before the first
    // Without a bar (a log file, a batch job), a line after the run's first step where the first
    // checkpoint line is over a minute away, and one every 10 minutes between checkpoint lines:
    // a CPU step of the defaults takes 16 s, and the first line came at step 3000, 13 hours in.
    int64_t steps_per_epoch = 1;
    bool first_step = true;
    std::chrono::steady_clock::time_point last_line = std::chrono::steady_clock::now();

    void step(const StepReport& r) {
        last = r;
        if (r.validation_dice >= 0) dice = r.validation_dice;
        recent.push_back(r.loss);
        recent_sum += r.loss;
        if (recent.size() > 100) {
            recent_sum -= recent.front();
            recent.pop_front();
        }
        epoch_sum += r.loss;
        ++epoch_steps;
        if (bar) {
            draw();
            return;
        }
        const auto now = std::chrono::steady_clock::now();
        const double rate = r.samples_per_second;
        const int64_t to_line = std::min(steps_per_epoch - r.step % steps_per_epoch, total - r.step);
        const bool slow_start = first_step && rate > 0 && double(to_line) * batch / rate > 60;
        first_step = false;
        if (!r.checkpoint && (slow_start || now - last_line > std::chrono::minutes(10))) {
            std::printf("%s\n", status().c_str());
            std::fflush(stdout);
            last_line = now;
        }
    }

    // "train [=====>   ] step 120/300  loss 0.8123  3.2 samples/s  ETA 0:56  dice 0.41"
    void draw() const {
        std::fprintf(stderr, "\rtrain [%s] %s ", progress_bar(double(last.step) / double(total), 30).c_str(),
                     status().c_str());
        std::fflush(stderr);
    }

    // "step 120/300  loss 0.8123  3.2 samples/s  ETA 0:56  dice 0.41": the bar's text, and a
    // log's line between checkpoints.
    std::string status() const {
        const double rate = last.samples_per_second;
        const std::string eta = rate > 0 ? duration_text(double(total - last.step) * batch / rate) : "?";
        std::string dice_text;
        if (dice >= 0) {
            char text[32];
            std::snprintf(text, sizeof text, "  dice %.2f", dice);
            dice_text = text;
        }
        char loss_text[32] = "-";
        if (!recent.empty()) std::snprintf(loss_text, sizeof loss_text, "%.4f", recent_sum / double(recent.size()));
        char text[160];
        std::snprintf(text, sizeof text, "step %lld/%lld  loss %s  %s samples/s  ETA %s%s", (long long)last.step,
                      (long long)total, loss_text, rate_text(rate).c_str(), eta.c_str(), dice_text.c_str());
        return text;
    }

    // "step 300/300 loss 0.5231 (mean of the epoch) 3.1 samples/s, checkpoint saved"
    void checkpoint_line(int64_t steps_per_epoch) {
        if (epoch_steps == 0) return;
        const std::string over =
            epoch_steps == steps_per_epoch ? "the epoch" : cat(epoch_steps, epoch_steps == 1 ? " step" : " steps");
        std::string dice_text;
        if (last.validation_dice >= 0) {
            char text[32];
            std::snprintf(text, sizeof text, " dice %.4f", last.validation_dice);
            dice_text = text;
        }
        std::printf("step %lld/%lld %s %.4f (mean of %s)%s %s samples/s, checkpoint saved\n", (long long)last.step,
                    (long long)total, last.weighted_l2 ? "weighted-L2 loss" : "loss", epoch_sum / double(epoch_steps),
                    over.c_str(), dice_text.c_str(), rate_text(last.samples_per_second).c_str());
        std::fflush(stdout);  // a log file or a pipe sees each epoch as it ends
        last_line = std::chrono::steady_clock::now();
    }

    void reset_epoch() {
        epoch_sum = 0;
        epoch_steps = 0;
    }
};

}  // namespace

int cmd_train(int argc, char** argv) {
    const Args args("train", argc, argv,
                    {"--labels",
                     "--model-dir",
                     "--preset",
                     "--config",
                     "--steps",
                     "--steps-per-epoch",
                     "--lr",
                     "--batch",
                     "--shape",
                     "--levels",
                     "--features",
                     "--wl2-epochs",
                     "--keep-every",
                     "--seed",
                     "--device",
                     "--precision",
                     "--threads",
                     "--validation-labels",
                     "--validate-every",
                     "--validation-samples"},
                    {"--resume", "--no-validation", "--help"});
    if (args.flag("--help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    args.reject_positional();
    // Reads and checks everything; throws InputError (exit 2) before a file is written.
    Trainer trainer(parse_options(args));
    const TrainOptions& options = trainer.options();  // on --resume, completed from model.json
    const int64_t first_step = trainer.step();
    std::printf("training on %s\n", trainer.maps_summary().c_str());
    if (first_step > 0 && first_step < options.steps) {
        std::printf("resuming %s at step %lld of %lld%s\n", options.model_dir.c_str(), (long long)first_step,
                    (long long)options.steps,
                    options.validation_from_record
                        ? cat(", validating on the maps it records (", options.validation_labels, ")").c_str()
                        : "");
        std::fflush(stdout);
    }

    Progress progress;
    progress.bar = ::isatty(::fileno(stderr)) != 0;
    progress.total = options.steps;
    progress.batch = options.batch;
    progress.steps_per_epoch = options.steps_per_epoch;
    progress.last.step = first_step;
    if (progress.bar) progress.draw();  // at once: a full-size first step takes a while on the CPU

    // Installed only now: a signal while the inputs load simply ends the process (the cleanup
    // handler, bin/main.cpp), as no step has run that a checkpoint would keep; a model directory
    // made for this run then stays, holding only the lock file, which a next run uses.
    install_stop_handlers();
    // What a second signal, which ends the run at once, leaves (it ended it without a word).
    auto farewell = [&](int64_t checkpoint) {
        set_signal_farewell(
            std::string(progress.bar ? "\n" : "") +  // below the bar, not after it
            (checkpoint > 0
                 ? cat("infant-synthseg train: ended at once by a second signal: the last checkpoint, of step ",
                       checkpoint, ", stays in ", options.model_dir, " (continue with --resume)")
                 : std::string("infant-synthseg train: ended at once by a second signal, before the first checkpoint: "
                               "nothing to resume from")));
    };
    farewell(first_step);
    const auto start = std::chrono::steady_clock::now();
    trainer.run(
        stop_flag(), [&](const StepReport& r) { progress.step(r); },
        [&](int64_t checkpoint) {
            farewell(checkpoint);
            // The checkpoint an interruption writes is reported once, below.
            if (!progress.bar && progress.last.checkpoint) progress.checkpoint_line(options.steps_per_epoch);
            if (progress.last.checkpoint) progress.reset_epoch();
        });
    if (progress.bar) std::fputc('\n', stderr);

    const int64_t step = trainer.step();
    if (step < options.steps) {
        std::printf("interrupted at step %lld: checkpoint saved in %s (continue with --resume)\n", (long long)step,
                    options.model_dir.c_str());
        // Not 0: the run did not reach --steps, and `train && predict`, or a script under `set -e`,
        // must not go on with a half-trained model (synth stops the same way).
        std::fflush(stdout);
        return 128 + stop_signal();
    }
    if (step == first_step) {
        std::printf("%s is already at step %lld: nothing to train (raise --steps to continue)\n",
                    options.model_dir.c_str(), (long long)step);
        return 0;
    }
    // The summary's loss: the mean of the last epoch's worth of steps, less noisy than one step,
    // of the last step's loss alone (a weighted L2 of ~25 averaged with Dice losses meant nothing).
    const std::vector<double>& losses = trainer.losses();
    const int64_t last_l2 = trainer.last_weighted_l2_step();
    const int64_t same_loss = step > last_l2 ? step - last_l2 : step;
    // This run's steps only: after a resume, the last epoch's line counts them so (it said "mean
    // of the last 60 steps" of a run of 36, beside its epoch's "mean of 36 steps").
    const size_t tail =
        std::min(losses.size(), size_t(std::min({options.steps_per_epoch, step - first_step, same_loss})));
    double tail_sum = 0;
    for (size_t i = losses.size() - tail; i < losses.size(); ++i) tail_sum += losses[i];
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("trained steps %lld to %lld in %s (%s samples/s); %s %.4f (%s)\n", (long long)first_step + 1,
                (long long)step, duration_text(seconds).c_str(), rate_text(progress.last.samples_per_second).c_str(),
                step > last_l2 ? "loss" : "weighted-L2 loss", tail > 0 ? tail_sum / double(tail) : 0.0,
                tail == 1 ? "the last step" : cat("mean of the last ", tail, " steps").c_str());
    std::printf("model: %s/model.safetensors + model.json; log: %s/training_log.csv; loss curve: %s/loss.png\n",
                options.model_dir.c_str(), options.model_dir.c_str(), options.model_dir.c_str());
    return 0;
}

}  // namespace iss::cli
