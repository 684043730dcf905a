#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>

#include "io/csv.h"
#include "io/file_util.h"
#include "io/json.h"  // parse_json
#include "io/plot.h"
#include "io/safetensors.h"  // crc32_of
#include "kernels/common/error.h"
#include "kernels/common/version.h"  // build_version
#include "nn/autograd.h"
#include "nn/checkpoint.h"
#include "nn/ops.h"
#include "nn/optimizer.h"
#include "nn/tensor.h"
#include "post/dice.h"
#include "post/prediction.h"  // label_list_text
#include "synth/generator.h"
#include "synth/labels.h"
#include "synth/sample_params.h"

namespace iss {

namespace {

// Segmentation labels no training map holds (the maps' ages may lack them; a config may name
// others): outputs learned only as absent, trained without a word.
void warn_of_labels_in_no_map(const std::vector<TrainingMap>& maps, const GeneratorConfig& config,
                              const std::string& labels) {
    const std::vector<int32_t> missing = segmentation_labels_in_no_map(maps, config);
    if (missing.empty()) return;
    const char* them = missing.size() > 1 ? "them" : "it";
    warning(cat("train: --labels ", labels, ": no map holds segmentation label", missing.size() > 1 ? "s " : " ",
                first_values(missing, 20), " (or a generation label learned as ", them, "): the network learns ", them,
                " only as absent; add maps that hold ", them, " unless no subject of these ages does"));
}

namespace fs = std::filesystem;

std::string join(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

// What a run holds (flock) while it writes the model directory.
const char* const lock_file_name = ".train.lock";
const char* const locked_text = "another train is writing this model directory";

// How the soft Dice of a batch is reduced (kernels/nn/loss.h), as model.json records it, and
// what a record from before the field means by its absence with batches of several.
const char* const dice_reduction = "the mean of each sample's per-label Dice";
const char* const pooled_dice = "the per-label Dice of the batch's pooled sums";

// 64 random bits in hex: unlike the seed, different for every run started.
std::string new_run_id() {
    std::random_device device;
    const uint64_t bits = (uint64_t(device()) << 32) ^ uint64_t(device());
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", (unsigned long long)bits);
    return text;
}

// Our writer's temporaries of checkpoint files in a model directory and its kept weights (a
// killed run's).
std::vector<std::pair<TemporaryName, fs::path>> checkpoint_temporaries(const std::string& model_dir) {
    std::vector<std::pair<TemporaryName, fs::path>> found;
    std::error_code ec;
    auto scan = [&](const std::string& dir, const std::function<bool(const std::string&)>& ours) {
        for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
            const std::optional<TemporaryName> t = temporary_name(entry.path().filename().string());
            if (t && entry.is_regular_file(ec) && ours(t->base)) found.emplace_back(*t, entry.path());
        }
    };
    scan(model_dir, [](const std::string& base) {
        return std::any_of(std::begin(checkpoint_files), std::end(checkpoint_files),
                           [&](const char* name) { return base == name; });
    });
    scan(kept_weights_in(model_dir), [](const std::string& base) { return is_kept_weights_name(base); });
    return found;
}

// What a run killed while it wrote a checkpoint left, made whole again before a resume reads it.
// Files being written (NAME.tmp-PID...) are removed. Earlier files kept aside until the
// checkpoint was done (NAME.tmp-PID-replaced) tell where the kill came: the set moves its files
// in order, weights first, and removes the kept ones in that order once all are moved. So with
// the weights' kept copy there, the previous checkpoint is whole once every kept file is put back
// (a kill while the files moved, or just after); without it, the new one is whole already (a
// kill while the kept files were removed), and the rest of them go. Returns the files put back
// (a copy still linked to its file, killed before the new one moved in, is only removed).
int tidy_interrupted_checkpoint(const std::string& model_dir) {
    std::error_code ec;
    std::map<fs::path, fs::path> kept;  // checkpoint file -> its earlier copy
    for (const auto& [t, path] : checkpoint_temporaries(model_dir)) {
        if (t.replaced)
            kept[path.parent_path() / t.base] = path;
        else
            fs::remove(path, ec);
    }
    // A copy still linked to its file (killed before the new one moved in) is that file already.
    const bool put_back = kept.count(fs::path(join(model_dir, checkpoint_files[0]))) > 0;
    int restored = 0;
    for (const auto& [target, copy] : kept) {
        if (put_back && !fs::equivalent(copy, target, ec)) {
            fs::rename(copy, target, ec);
            restored += ec ? 0 : 1;
        } else {
            fs::remove(copy, ec);
        }
    }
    return restored;
}

// One batch of synthetic samples on the device: images (B, D, H, W, 1) and class targets.
struct Batch {
    Shape5 shape;
    Buffer<float> image;
    Buffer<uint8_t> target;
};

// Synthesises batches in step order. On CUDA a producer thread with its own context (own
// stream) makes the next batch while the current step trains, handing batches over through two
// slots; each side finishes its stream before a hand-over, so no cross-stream events are
// needed. On the CPU the cores are already busy with the step, so batches are made inline
// (the threaded path can be forced, for tests).
class BatchSource {
public:
    BatchSource(DeviceContext& ctx, const GeneratorConfig& config, std::vector<TrainingMap> maps, uint64_t seed,
                int batch, bool threaded)
        : batch_(batch), threaded_(threaded) {
        if (threaded_) gen_ctx_ = std::make_unique<DeviceContext>(ctx.device());
        DeviceContext& gctx = threaded_ ? *gen_ctx_ : ctx;
        generator_ = std::make_unique<Generator>(gctx, config, std::move(maps), seed);
        // Every map gives the same crop (the trainer clips the config's to the smallest map's:
        // common_crop), so the batch shape is fixed; fill() checks each sample against it.
        const SampleParams& p = generator_->draw(0);
        shape_ = Shape5{batch, p.out_shape[2], p.out_shape[1], p.out_shape[0], 1};
        for (Batch& b : slots_) {
            b.shape = shape_;
            b.image = Buffer<float>(gctx, size_t(shape_.size()));
            b.target = Buffer<uint8_t>(gctx, size_t(shape_.voxels()));
        }
    }

    ~BatchSource() { stop_producer(); }

    const Shape5& shape() const { return shape_; }

    // The batch of `step`; valid until the next call. Steps must come in order.
    const Batch& next(int64_t step) {
        if (!threaded_) {
            fill(slots_[0], step);
            return slots_[0];
        }
        if (!producer_.joinable()) start_producer(step);
        std::unique_lock<std::mutex> lock(mutex_);
        if (consumed_ >= 0) {  // the previous batch is done with: its slot may be refilled
            ready_[size_t(consumed_ % 2)] = false;
            changed_.notify_all();
        }
        changed_.wait(lock, [&] { return ready_[size_t(step % 2)] || failure_; });
        if (failure_) std::rethrow_exception(failure_);
        consumed_ = step;
        return slots_[size_t(step % 2)];
    }

private:
    void fill(Batch& b, int64_t step) {
        DeviceContext& gctx = generator_->context();
        const int64_t voxels = shape_.voxels() / batch_;
        for (int i = 0; i < batch_; ++i) {
            const SampleParams& p = generator_->generate(uint32_t(step * batch_ + i));
            ISS_REQUIRE(p.out_shape[0] == shape_.w && p.out_shape[1] == shape_.h && p.out_shape[2] == shape_.d,
                        "batches: sample ", step * batch_ + i, " is ", dims_text(p.out_shape),
                        ", not the batch's crop");
            gctx.copy_on_device(b.image.data() + i * voxels, generator_->image(), size_t(voxels) * sizeof(float));
            gctx.copy_on_device(b.target.data() + i * voxels, generator_->target(), size_t(voxels));
        }
        gctx.synchronize();
    }

    void start_producer(int64_t first_step) {
        producer_ = std::thread([this, first_step] {
            try {
                generator_->context().make_current();
                for (int64_t step = first_step;; ++step) {
                    Batch* slot = nullptr;
                    {
                        std::unique_lock<std::mutex> lock(mutex_);
                        changed_.wait(lock, [&] { return quit_ || !ready_[size_t(step % 2)]; });
                        if (quit_) return;
                        slot = &slots_[size_t(step % 2)];
                    }
                    fill(*slot, step);
                    std::lock_guard<std::mutex> lock(mutex_);
                    ready_[size_t(step % 2)] = true;
                    changed_.notify_all();
                }
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex_);
                failure_ = std::current_exception();
                changed_.notify_all();
            }
        });
    }

    void stop_producer() {
        if (!producer_.joinable()) return;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            quit_ = true;
            changed_.notify_all();
        }
        producer_.join();
    }

    int batch_;
    bool threaded_;
    std::unique_ptr<DeviceContext> gen_ctx_;
    std::unique_ptr<Generator> generator_;
    Shape5 shape_;
    Batch slots_[2];
    std::thread producer_;
    std::mutex mutex_;
    std::condition_variable changed_;
    bool ready_[2] = {false, false};
    bool quit_ = false;
    int64_t consumed_ = -1;
    std::exception_ptr failure_;
};

// The step at which the loss turns from weighted L2 to Dice: --wl2-epochs x --steps-per-epoch,
// saturated (2^63 - 1 epochs overflowed into the Dice loss).
int64_t wl2_step_count(int64_t epochs, int64_t steps_per_epoch) {
    return epochs > std::numeric_limits<int64_t>::max() / steps_per_epoch ? std::numeric_limits<int64_t>::max()
                                                                          : epochs * steps_per_epoch;
}

struct LogRow {
    int64_t step;
    double loss;
    float lr;
    double seconds;
};

struct ValidationRow {
    int64_t step;
    double mean_dice;
    std::vector<double> dice;  // per segmentation label; NaN where absent from both
};

// Adds one sample's voxel counts per class to `overlaps`: argmax(probs), the target, and where
// the two agree (the hard Dice's terms).
void count_overlaps(const std::vector<float>& probs, const std::vector<uint8_t>& target, int64_t classes,
                    std::vector<Overlap>& overlaps) {
    for (size_t v = 0; v < target.size(); ++v) {
        const float* p = &probs[v * size_t(classes)];
        const size_t best = size_t(std::max_element(p, p + classes) - p);
        ++overlaps[best].pred;
        ++overlaps[target[v]].truth;
        if (best == target[v]) ++overlaps[best].both;
    }
}

}  // namespace

struct Trainer::State {
    TrainOptions options;
    DeviceContext ctx;
    Precision precision = Precision::fp32;  // what runs: options.precision where usable
    GeneratorConfig gen_config;
    ParamStore params;
    std::unique_ptr<UNet> net;
    Adam adam;
    ArenaAllocator arena;
    std::unique_ptr<BatchSource> batches;
    std::unique_ptr<BatchSource> validation;
    std::unique_ptr<PoolAllocator> validation_pool;  // kept: no device allocations per validation
    int64_t step = 0;
    int64_t checkpoint_step = -1;  // the step of the checkpoint in the model directory, -1: none yet
    std::vector<double> losses;
    std::vector<LogRow> log;
    std::vector<ValidationRow> validation_log;
    ModelSpec spec;
    std::string maps_summary;  // describe_training_maps of the training set
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    double seconds_before = 0;  // training time of the run(s) this one resumes
    // Identifies one training run (kept across resumes): every file of a checkpoint is stamped
    // with it and the step, so files of different checkpoints or runs are never mixed.
    std::string run_id;
    // Held while this run may write the model directory: a second train on it is refused.
    std::unique_ptr<DirectoryLock> lock;
    // The model directory when this run made it: removed again, with the pieces of a checkpoint,
    // if the run fails before its first whole checkpoint. Declared after the lock, so that it is
    // removed while the lock is still held.
    OutputDirectories made_model_dir;

    explicit State(const TrainOptions& o)
        : options(o), ctx(o.device), params(ctx), adam(AdamConfig{o.lr, 0.9f, 0.999f, 1e-7f}), arena(ctx) {}

    std::string weights_path() const { return model_weights_in(options.model_dir); }
    std::string optimizer_path() const { return join(options.model_dir, "model.optimizer.safetensors"); }
    std::string log_path() const { return join(options.model_dir, "training_log.csv"); }
    std::string validation_path() const { return join(options.model_dir, "validation.csv"); }
    // Steps 1 to this one train with the weighted-L2 loss, the later ones with soft Dice.
    int64_t last_wl2_step() const { return wl2_step_count(options.wl2_epochs, options.steps_per_epoch); }
    // Whether step `step` (1-based, as logged) trains with the weighted-L2 loss.
    bool weighted_l2_step(int64_t step) const { return step <= last_wl2_step(); }
    double elapsed() const {
        return seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }

    // `keep`: the weights go into kept_weights_folder too (--keep-every). A failed write (a full
    // disk) says what is kept: the checkpoint before, which a resume continues.
    void save_checkpoint(bool keep = false);
    void write_checkpoint(bool keep);
    // Error unless the model directory is still the one this run locked (moved or removed while
    // it trains, and perhaps another made under its name).
    void require_model_dir_in_place();
    bool moved_away = false;  // require_model_dir_in_place found it moved
    std::string kept_weights_path() const { return join(kept_weights_in(options.model_dir), kept_weights_name(step)); }
    void warn_of_changes(const ModelSpec& saved, const std::set<std::string>& changed,
                         const std::vector<TrainingMap>& maps, bool recorded_before_mm);
    void take_model_dir();
    // The checkpoint of `saved` (its model.json, read already): weights, optimizer, logs.
    void load_checkpoint(const ModelSpec& saved);
    double validate();
};

void Trainer::State::require_model_dir_in_place() {
    if (!lock) return;
    try {
        lock->require_in_place();
    } catch (const Error& e) {
        moved_away = true;
        // What it made is taken back only where it still is (OutputDirectories), not under the name.
        throw Error(cat(e.what(), ": the checkpoint of step ", step, " is not written",
                        checkpoint_step < 0
                            ? std::string(" (none was)")
                            : cat(" (step ", checkpoint_step, "'s is in that directory, if it still exists)")));
    }
}

void Trainer::State::save_checkpoint(bool keep) {
    // Into the directory this run locked, or nowhere: not into one made since under its name
    // (said as such, with what is where).
    require_model_dir_in_place();
    const std::string kept =
        checkpoint_step < 0
            ? std::string(": no checkpoint was written before, so the run leaves no model")
            : cat(": the checkpoint of step ", checkpoint_step, " is intact, and --resume continues from it (steps ",
                  checkpoint_step + 1, " to ", step, " are lost)");
    try {
        write_checkpoint(keep);
    } catch (const InputError& e) {
        throw InputError(cat(e.what(), kept));
    } catch (const Error& e) {
        if (moved_away) throw;  // require_model_dir_in_place said where things are
        throw Error(cat(e.what(), kept));
    } catch (const std::bad_alloc&) {
        // Where a run near its limit fails: said as the checkpoint's, with what is kept (it was
        // the bare out-of-memory line, after a whole epoch).
        throw Error(cat("out of memory writing the checkpoint of step ", step, " (the model's files and Adam's ",
                        "moments are copied to the host)", kept));
    }
}

void Trainer::State::write_checkpoint(bool keep) {
    // One set: every file written under a temporary name, then all moved into place; a failed
    // write (a full disk) or move leaves the previous checkpoint as it was. Only a kill while
    // they move can mix two: each file carries the step and the run, and a resume checks they agree.
    OutputSet files;
    ModelSpec stamped = spec;
    stamped.training["checkpoint"] = {{"step", step}, {"run_id", run_id}};
    const std::map<std::string, std::string> stamp{{"checkpoint_step", std::to_string(step)}, {"run_id", run_id}};
    write_model_files(files, weights_path(), stamped, params, stamp);
    // A kept epoch's weights and record, in the same set: predict and export take them as they
    // take the model (no optimizer state: they are not resumed).
    if (keep) {
        std::error_code ec;  // made with the model directory; again where removed since
        fs::create_directories(kept_weights_in(options.model_dir), ec);
        if (ec) throw Error(cat(kept_weights_in(options.model_dir), ": cannot make it: ", ec.message()));
        write_model_files(files, kept_weights_path(), stamped, params, stamp);
    }
    files.write(optimizer_path(), [&](const std::string& path) {
        save_optimizer(path, params, adam,
                       {{"step", std::to_string(step)}, {"seconds", csv_number(elapsed())}, {"run_id", run_id}});
    });
    // Losses print in their shortest exact form, so a resumed run continues the same sequence;
    // the loss column holds two functions when weighted-L2 steps came first, each row says which.
    CsvTable table{{"step", "loss", "loss_function", "lr", "seconds"}, {}, "", {}};
    for (const LogRow& r : log)
        table.rows.push_back({std::to_string(r.step), csv_number(r.loss),
                              weighted_l2_step(r.step) ? "weighted_l2" : "soft_dice", csv_float(r.lr),
                              csv_number(r.seconds)});
    files.write(log_path(), [&](const std::string& path) { write_csv(path, table); });
    // The curve shows one loss: soft Dice once it has begun (an L2 of ~25 beside Dice <= 1 would
    // flatten it), else the weighted L2.
    const bool dice_begun = !log.empty() && !weighted_l2_step(log.back().step);
    std::vector<double> steps, losses_so_far, validation_steps, validation_dice;
    for (const LogRow& r : log) {
        if (dice_begun && weighted_l2_step(r.step)) continue;
        steps.push_back(double(r.step));
        losses_so_far.push_back(r.loss);
    }
    if (!validation_log.empty()) {
        CsvTable v{{"step", "mean_dice"}, {}, "", {}};
        for (int32_t label : gen_config.segmentation_labels) v.columns.push_back(cat("dice_", label));
        for (const ValidationRow& r : validation_log) {
            std::vector<std::string> row{std::to_string(r.step), dice_field(r.mean_dice)};
            for (double d : r.dice) row.push_back(dice_field(d));
            v.rows.push_back(row);
            validation_steps.push_back(double(r.step));
            validation_dice.push_back(r.mean_dice);
        }
        files.write(validation_path(), [&](const std::string& path) { write_csv(path, v); });
    }
    files.write(join(options.model_dir, "loss.png"), [&](const std::string& path) {
        const std::string title = !dice_begun ? "training loss: weighted L2 (before soft Dice)"
                                  : last_wl2_step() > 0
                                      ? cat("training loss: soft Dice, after ", last_wl2_step(), " weighted-L2 steps")
                                      : "training loss: soft Dice";
        write_loss_curve(path, title, steps, losses_so_far, validation_steps, validation_dice);
    });
    try {
        files.commit();
    } catch (const Error&) {
        // A move that failed because the directory moved meanwhile is said as such ("loss.png:
        // cannot move the finished file into place" said nothing of it); the set takes back only
        // files that are still its own.
        require_model_dir_in_place();
        throw;
    }
    made_model_dir.keep();  // a model that resumes: it stays whatever happens next
    checkpoint_step = step;
}

// One file's checkpoint stamp: "step <n>, run <id>", or why there is none.
static std::string stamp_text(const std::map<std::string, std::string>& meta, const char* step_key) {
    const auto step = meta.find(step_key), run = meta.find("run_id");
    if (step == meta.end() || run == meta.end()) return "no checkpoint stamp";
    return cat("step ", step->second, ", run ", run->second);
}

void Trainer::State::load_checkpoint(const ModelSpec& saved) {
    const auto weights_meta = load_weights(weights_path(), params);
    const auto meta = load_optimizer(optimizer_path(), params, adam);
    const auto it = meta.find("step");
    ISS_INPUT(it != meta.end(), optimizer_path(), ": no training step in the metadata");
    step = csv_to_integer(it->second, optimizer_path() + " step");
    // Every file of the checkpoint must be of this step and this run.
    std::map<std::string, std::string> json_meta;
    if (const std::optional<DescriptionStamp> stamp = description_stamp(saved))
        json_meta = {{"checkpoint_step", stamp->step.dump()}, {"run_id", stamp->run}};
    const std::string weights = stamp_text(weights_meta, "checkpoint_step"), json = stamp_text(json_meta, "checkpoint_step"),
                      optimizer = stamp_text(meta, "step");
    ISS_INPUT(weights == json && weights == optimizer && weights != "no checkpoint stamp", options.model_dir,
              ": the checkpoint's files disagree (a run stopped while writing them, or a file came from another run): "
              "model.safetensors ", weights, "; model.json ", json, "; model.optimizer.safetensors ", optimizer,
              ". Resume from files of one checkpoint, or start a new --model-dir");
    // Adam's count sets its bias corrections: an edited one changes every update after the resume.
    // It restarts with the Dice loss after weighted-L2 steps; a build before 2026-12-06 carried it on.
    const int64_t wl2 = last_wl2_step(), adam_steps = adam.steps();
    const bool counted = adam_steps == step || (wl2 > 0 && step > wl2 && adam_steps == step - wl2);
    ISS_INPUT(
        counted, optimizer_path(), ": adam_step ", adam_steps, " where the checkpoint of step ", step, " has taken ",
        wl2 > 0 && step > wl2 ? cat(step - wl2, " (its Dice loss's, after ", wl2, " weighted-L2 steps)") : cat(step),
        ": the file is damaged or was edited; use an intact copy");
    run_id = meta.at("run_id");
    checkpoint_step = step;
    const auto secs = meta.find("seconds");
    if (secs != meta.end()) seconds_before = csv_to_number(secs->second, optimizer_path() + " seconds");
    // The logs up to the checkpoint (rows after it belong to steps that will run again).
    if (fs::exists(log_path())) {
        const CsvTable table = read_csv(log_path());
        const size_t c_step = table.column("step"), c_loss = table.column("loss"), c_lr = table.column("lr"),
                     c_seconds = table.column("seconds");
        for (size_t i = 0; i < table.rows.size(); ++i) {
            const std::vector<std::string>& row = table.rows[i];
            const std::string at = table.where(i);
            LogRow r{csv_to_integer(row[c_step], at), csv_to_number(row[c_loss], at),
                     float(csv_to_number(row[c_lr], at)), csv_to_number(row[c_seconds], at)};
            if (r.step > step) break;
            // Every step from 1, once: a row repeated or missing (an edit) went on into the new log.
            const int64_t expected = log.empty() ? 1 : log.back().step + 1;
            ISS_INPUT(r.step == expected, at, ": step ", r.step,
                      log.empty() ? std::string(" comes first") : cat(" follows step ", log.back().step),
                      " (rows repeated or missing): the log holds every step once, from 1 to the checkpoint's ", step,
                      ". Mend it, or start a new --model-dir");
            log.push_back(r);
            losses.push_back(r.loss);
        }
    }
    // The log is written after the weights and the optimizer: it must reach their step.
    const int64_t logged = log.empty() ? 0 : log.back().step;
    ISS_INPUT(logged == step, log_path(),
              fs::exists(log_path()) ? cat(": the training log ends at step ", logged) : std::string(": missing,"),
              " but the checkpoint is at step ", step,
              " (a run stopped while writing its checkpoint). Resume from files of one checkpoint, or start a "
              "new --model-dir");
    if (fs::exists(validation_path())) {
        const CsvTable table = read_csv(validation_path());
        // Checked now: the checkpoint after the next step rewrites it (a table of other columns
        // failed there, the step's work lost).
        const size_t columns = 2 + gen_config.segmentation_labels.size();
        ISS_INPUT(table.columns.size() == columns, validation_path(), ": ", table.columns.size(),
                  " columns, where the model's validation table has ", columns,
                  " (step, mean_dice and a Dice per label): not this model's");
        for (size_t i = 0; i < table.rows.size(); ++i) {
            const std::vector<std::string>& row = table.rows[i];
            const std::string at = table.where(i);
            ValidationRow r{csv_to_integer(row[0], at), dice_from_field(row[1], at), {}};
            if (r.step > step) break;
            ISS_INPUT(validation_log.empty() || r.step > validation_log.back().step, at, ": step ", r.step,
                      " follows step ", validation_log.back().step,
                      " (rows repeated or out of order): a validation's row comes after the one before. Mend it, or "
                      "start a new --model-dir");
            for (size_t c = 2; c < row.size(); ++c) r.dice.push_back(dice_from_field(row[c], at));
            validation_log.push_back(r);
        }
    } else if (const nlohmann::json v = saved.training.value("validation", nlohmann::json());
               v.is_object() && v.contains("every") && v["every"].is_number_integer() &&
               step >= v["every"].get<int64_t>()) {
        // Removed by hand (or lost): the next checkpoint writes a table of the new rows alone.
        options.record_warnings.push_back(cat("train: ", validation_path(),
                                              " is missing, though the model was validated every ", v["every"].dump(),
                                              " steps: its rows up to step ", step,
                                              " are lost, and the table starts again at the next "
                                              "validation"));
    }
}

namespace {

// A generator record written before a parameter existed, completed with the value its build drew
// with, so that a resume goes on drawing as the run began and a --config that changes such a
// parameter is refused like any other change (it was not compared). A parameter is added at the
// default that keeps the draws, so its preset's value, with two exceptions. A record from before
// full_resolution_probability (2026-12-05) with the random resolution on drew one value for all
// axes in the isotropic case and never the full resolution: it cannot go on. Until 2026-12-06
// the random resolution's bounds counted the maps' voxels (resolution_unit "voxel"), where they
// now count mm (where the random resolution was off the unit draws nothing). Whether the record
// is from before then: its build also applied the affine to the voxels of anisotropic maps.
bool complete_generator_record(nlohmann::json& training, const std::string& json, std::vector<std::string>& warnings) {
    if (!training.contains("generator") || !training["generator"].is_object()) return false;
    nlohmann::json& generator = training["generator"];
    const bool random_resolution = generator.value("randomise_resolution", nlohmann::json(false)) == true;
    ISS_INPUT(!random_resolution || generator.contains("full_resolution_probability"), json,
              ": was trained by an earlier build, whose random resolution drew otherwise; this build draws ",
              "as SynthSeg 2.0 does, so the run cannot go on as it began: resume it with the build that began it, ",
              "or start a new --model-dir");
    const bool before_mm = !generator.contains("resolution_unit");
    if (before_mm && random_resolution) {
        generator["resolution_unit"] = "voxel";
        warnings.push_back(cat(
            "train: ", json, " was written before resolution_unit: its random resolution's bounds count ",
            "the maps' voxels, and the run goes on so (a --config for it says \"resolution_unit\": ", "\"voxel\")"));
    }
    const bool before_twins = !generator.contains("lr_twins");
    const nlohmann::json preset = generator.value("preset", nlohmann::json());
    if (preset.is_string()) {
        const nlohmann::json defaults = parse_json(config_to_json(preset_config(preset.get<std::string>())), json);
        for (const auto& [name, value] : defaults.items())
            if (!generator.contains(name)) generator[name] = value;
    }
    // Before lr_twins (2026-12-07) a label in none of FreeSurfer's classes flipped as one on
    // neither side: declared so, the run goes on as it began (with flips on it was refused).
    if (before_twins && generator.contains("generation_labels") && generator["generation_labels"].is_array()) {
        nlohmann::json neither = nlohmann::json::array();
        for (const nlohmann::json& label : generator["generation_labels"])
            if (label.is_number_integer() && !labels::side_known(label.get<int32_t>()))
                neither.push_back({label, label});
        generator["lr_twins"] = neither;
    }
    return before_mm;
}

// A record written before "dice" (2026-12-06) completed with what its build computed: a batch of
// one, the same Dice; of several, the pooled one (a resume then records the change in its history).
void complete_dice_record(nlohmann::json& training) {
    if (!training.contains("dice"))
        training["dice"] = training.value("batch", nlohmann::json(1)) == 1 ? dice_reduction : pooled_dice;
}

// A resumed run continues the run its checkpoint records. What draws its samples and picks its
// loss must be the same: changed, the model went on training on other data while model.json
// named only the last run's settings. (A model.json from before a field was recorded is not
// checked on it; its generator parameters are completed as their build drew,
// complete_generator_record.)
void require_same_samples(const ModelSpec& saved, const ModelSpec& now, const std::string& json) {
    const nlohmann::json& was = saved.training;
    nlohmann::json is = now.training;  // a copy: a key it lacks reads as null
    // The step at which the loss turns from weighted L2 to Dice (the epoch length alone may change:
    // it spaces the checkpoints).
    auto wl2_steps = [](const nlohmann::json& t) -> nlohmann::json {
        if (!t.contains("wl2_epochs") || !t.contains("steps_per_epoch") || !t["wl2_epochs"].is_number_integer() ||
            !t["steps_per_epoch"].is_number_integer())
            return nullptr;
        const int64_t epochs = t["wl2_epochs"].get<int64_t>(), length = t["steps_per_epoch"].get<int64_t>();
        if (epochs < 0 || length < 1) return nullptr;
        return wl2_step_count(epochs, length);
    };
    if (!wl2_steps(was).is_null() && wl2_steps(was) != wl2_steps(is)) {
        // Said in the options' own numbers: a new --steps-per-epoch alone changed the product, and
        // "this run asks for 8" named an option the user never gave.
        auto options = [](const nlohmann::json& t, const char* between) {
            return cat("--wl2-epochs ", t.value("wl2_epochs", nlohmann::json()).dump(), between, "--steps-per-epoch ",
                       t.value("steps_per_epoch", nlohmann::json()).dump());
        };
        const int64_t steps = wl2_steps(was).get<int64_t>(), length = is.value("steps_per_epoch", int64_t(1));
        // Epochs that keep the steps with this run's length: only where the length is what changed.
        const bool other_length = is.value("steps_per_epoch", nlohmann::json()) != was["steps_per_epoch"];
        throw InputError(cat(json, ": was trained with the weighted-L2 loss for its first ", steps, " steps (",
                             options(was, " x "), "); this run's ", options(is, " x "), " makes ", wl2_steps(is).dump(),
                             ": a resumed run must train as the run it continues (give ",
                             steps == 0 ? std::string("--wl2-epochs 0") : options(was, " "),
                             other_length && steps > 0 && length > 0 && steps % length == 0
                                 ? cat(", or --wl2-epochs ", steps / length, " with this epoch length")
                                 : std::string(),
                             ", or start a new --model-dir)"));
    }
    for (const char* key : {"preset", "seed", "batch", "crop", "generator"}) {
        if (!was.contains(key) || was[key] == is[key]) continue;
        std::string what = cat(key, " ", was[key].dump(), ", this run asks for ", is[key].dump());
        if (std::string(key) == "generator" && was[key].is_object()) {  // name the first parameter that differs
            nlohmann::json names = is[key];
            names.update(was[key]);  // every name either has
            for (const auto& [name, ignored] : names.items()) {
                const std::string then = was[key].contains(name) ? was[key][name].dump() : "unset";
                const std::string now_value = is[key].contains(name) ? is[key][name].dump() : "unset";
                if (then != now_value) {
                    what = cat("the generator parameter '", name, "' ", clipped(then, 80), ", this run's is ",
                               clipped(now_value, 80));
                    break;
                }
            }
        }
        throw InputError(cat(json, ": was trained with ", what, "; a resumed run must draw its samples as the run it ",
                             "continues (start a new --model-dir to change it)"));
    }
}

// The training record of `saved`, with the build that ran its steps: a record from before
// training.build (2026-12-07) was written last by the build that trained its last steps.
nlohmann::json recorded_training(const ModelSpec& saved) {
    nlohmann::json training = saved.training;
    if (!training.contains("build") && !saved.written_by.empty()) training["build"] = saved.written_by;
    return training;
}

// What a resumed run records: the learning rate, precision, epoch length, the maps, the
// arithmetic (device, threads), the build, the Dice's reduction and the validation may change, each change
// kept in a history with the step it took effect; a validation recorded and not run now is kept;
// the voxel sizes the network has seen are those of both runs' maps. Returns the keys of
// `may_change` that changed, for the warnings that say so.
std::set<std::string> continue_record(const ModelSpec& saved, ModelSpec& now, int64_t step) {
    const nlohmann::json was = recorded_training(saved);
    // A run without --validation-labels keeps the validation on record, for the next to go on with
    // (not a change: the table stops, and goes on when the maps are given again).
    if (!now.training.contains("validation") && was.contains("validation"))
        now.training["validation"] = was["validation"];
    // One folder spelled otherwise (./maps/, ../maps from below it) is no change: the record
    // keeps the spelling it has.
    auto keep_spelling = [](const nlohmann::json& recorded, nlohmann::json& given) {
        std::error_code ec;
        if (recorded.is_string() && given.is_string() &&
            fs::equivalent(recorded.get<std::string>(), given.get<std::string>(), ec))
            given = recorded;
    };
    if (was.contains("maps_path") && now.training.contains("maps_path"))
        keep_spelling(was["maps_path"], now.training["maps_path"]);
    const nlohmann::json& was_validation = was.value("validation", nlohmann::json());
    nlohmann::json& now_validation = now.training["validation"];
    if (was_validation.is_object() && now_validation.is_object() && was_validation.contains("maps_path") &&
        now_validation.contains("maps_path"))
        keep_spelling(was_validation["maps_path"], now_validation["maps_path"]);
    if (now_validation.is_null()) now.training.erase("validation");
    nlohmann::json history = was.value("history", nlohmann::json::array());
    if (!history.is_array()) history = nlohmann::json::array();
    // maps_path too: a resume on other maps kept only their count and digest of the first ones.
    // build: model.json's written_by names the last build that wrote it; the history keeps each run's.
    static const char* const may_change[] = {"lr",        "precision",  "steps_per_epoch", "maps", "maps_digest",
                                             "maps_path", "arithmetic", "build",           "dice", "validation"};
    auto entry = [](int64_t from, const nlohmann::json& t) {
        nlohmann::json e = {{"from_step", from}};
        for (const char* key : may_change) e[key] = t.value(key, nlohmann::json());
        return e;
    };
    // A rate is Adam's float: records before 2026-12-06 kept its double's digits (9.99...97e-05).
    auto differs = [&](const char* key) {
        const nlohmann::json& a = was[key];
        nlohmann::json b = now.training.value(key, nlohmann::json());
        if (std::string(key) == "lr" && a.is_number() && b.is_number())
            return float(a.get<double>()) != float(b.get<double>());
        // A field an older record's object lacks (validation's maps_path, since 2026-12-07) is no change.
        if (a.is_object() && b.is_object())
            for (auto it = b.begin(); it != b.end();) it = a.contains(it.key()) ? std::next(it) : b.erase(it);
        return a != b;
    };
    std::set<std::string> changed;
    for (const char* key : may_change)
        if (was.contains(key) && differs(key)) changed.insert(key);
    // A key a record lacks is an older build's, not a change, but for the validation: none ran.
    if (!was.contains("validation") && now.training.contains("validation")) changed.insert("validation");
    if (!changed.empty()) {
        if (history.empty()) history.push_back(entry(0, was));  // what the steps before it ran with
        history.push_back(entry(step, now.training));
    }
    if (!history.empty()) now.training["history"] = history;
    // The sizes the steps before saw, in either form a record holds (older ones one size, which
    // a resume dropped); none recorded (all 0) widens nothing. load_model_spec checked them.
    const Preprocessing before = parse_preprocessing(saved, "the resumed model.json");
    nlohmann::json& range = now.preprocessing["voxel_size_range_mm"];
    if (before.voxel_max[0] > 0)
        for (size_t d = 0; d < 3; ++d) {
            range["min"][d] = std::min(range["min"][d].get<double>(), before.voxel_min[d]);
            range["max"][d] = std::max(range["max"][d].get<double>(), before.voxel_max[d]);
        }
    return changed;
}

// validation.csv continues across a resume only where the run validates the same samples: a
// resume without --validation-labels, or with other maps or another sample count, is said.
// `last_row` is the step of validation.csv's last row (a run before may have gone on without
// validating), `step` the checkpoint's; `options` say where the maps came from, or why none.
void warn_of_another_validation(const nlohmann::json& was, const nlohmann::json& now, const TrainOptions& options,
                                const std::string& json, int64_t last_row, int64_t step) {
    const nlohmann::json before = was.value("validation", nlohmann::json());
    if (!before.is_object()) return;
    const nlohmann::json after = now.value("validation", nlohmann::json());
    if (options.validation_labels.empty()) {
        warning(cat("train: ", json, " was validated every ", before.value("every", nlohmann::json()).dump(),
                    " steps; this run validates on none (",
                    options.no_validation_reason.empty() ? "no --validation-labels" : options.no_validation_reason,
                    "), so validation.csv and loss.png's Dice stop at step ", last_row,
                    options.no_validation_reason == "--no-validation" ? " (resume without it to go on)"
                                                                      : " (give --validation-labels to go on)"));
        return;
    }
    const std::string given = options.validation_from_record
                                  ? cat("the validation maps it records (", options.validation_labels, ")")
                                  : std::string("--validation-labels");
    if (before.value("every", nlohmann::json()) != after.value("every", nlohmann::json()))
        warning(cat("train: --validate-every ", after["every"].dump(), ": ", json, " was validated every ",
                    before.value("every", nlohmann::json()).dump(), " steps; validation.csv's rows after step ", step,
                    " come every ", after["every"].dump(), " (the history records it)"));
    // Other samples of the same maps: the option's doing, not the maps'.
    if (before.value("maps_digest", nlohmann::json()) == after.value("maps_digest", nlohmann::json()) &&
        before.value("samples", nlohmann::json()) != after.value("samples", nlohmann::json())) {
        warning(cat("train: --validation-samples ", after["samples"].dump(), ": ", json, " was validated on ",
                    before.value("samples", nlohmann::json()).dump(), " samples: validation.csv's rows after step ",
                    step, " measure another set than those before (the history records it)"));
        return;
    }
    for (const char* key : {"samples", "maps_digest"})
        if (before.value(key, nlohmann::json()) != after.value(key, nlohmann::json())) {
            warning(cat("train: ", given, ": not the validation ", json, " records (",
                        before.value("maps", nlohmann::json()).dump(), " maps, ",
                        before.value("samples", nlohmann::json()).dump(), " samples then; ", after["maps"].dump(),
                        " and ", after["samples"].dump(), " now, or their voxels differ): validation.csv's rows after ",
                        "step ", step, " measure another set than those before"));
            return;
        }
}

// The largest crop every map can give: a batch's one shape.
std::array<int64_t, 3> common_crop(const GeneratorConfig& config, const std::vector<TrainingMap>& maps) {
    std::array<int64_t, 3> common = crop_shape(config, maps.front().grid.dim);
    for (const TrainingMap& m : maps) {
        const auto c = crop_shape(config, m.grid.dim);
        for (size_t d = 0; d < 3; ++d) common[d] = std::min(common[d], c[d]);
    }
    return common;
}

// A training run's memory. The step: per voxel of a batch's crops, 8 bytes per class (the softmax
// and its gradient, fp32 in either precision) and, per level-0 feature, 34.6 bytes in fp32 (17.3
// in bf16) for a U-Net of 2 levels and a fifth more for a deeper one; then the weights with their
// gradients and Adam's two moments. The planned arena of measured steps (docs/PERFORMANCE.md,
// nineteenth session) was within 2.5% of its per-voxel term. Beside it (the step alone undercounted
// runs by 0.6-0.8 GB, twenty-ninth session): the label maps (a byte a voxel) and the generator's
// buffers (10 bytes a crop voxel, and a batch's image and targets, 5); a validation's forward
// (per voxel 8 bytes a class, and the network as predict counts it: network_bytes_to_segment); a checkpoint's
// host copy of Adam's moments (8 bytes a parameter); on the CPU the program itself (its
// libraries, oneDNN's kernels, the threads' stacks: 0.25 GB). A run past 80% of the device's memory
// is refused before anything is written: on the CPU it would be killed by the kernel's
// out-of-memory killer, part way into a step or at the first checkpoint and without a word.
void require_memory_to_train(const UNetConfig& unet, const std::array<int64_t, 3>& crop, int batch, Precision precision,
                             const DeviceContext& ctx, double maps_bytes, double validation_voxels) {
    const double crop_voxels = double(crop[0]) * double(crop[1]) * double(crop[2]), voxels = crop_voxels * batch;
    const double per_feature = (precision == Precision::bf16 ? 17.3 : 34.6) * (unet.levels > 2 ? 1.2 : 1.0);
    const double parameters = double(unet_parameter_count(unet));
    const double step = voxels * (8.0 * unet.classes + per_feature * unet.features) + 16.0 * parameters;
    const double generator = maps_bytes + 10.0 * crop_voxels + 5.0 * voxels;
    const double validation = validation_voxels > 0 ? validation_voxels * 8.0 * unet.classes +
                                                          network_bytes_to_segment(unet, precision, validation_voxels)
                                                    : 0.0;
    const double program = ctx.device().is_cuda() ? 0.0 : 0.25 * double(int64_t(1) << 30);
    const double bytes = step + generator + validation + 8.0 * parameters + program;
    const size_t capacity = ctx.memory_capacity();
    ISS_INPUT(fits_in_memory(bytes, capacity), "train: a step of --batch ", batch, " on ", dims_text(crop),
              " crops with ", unet.features, " features, ", unet.levels, " levels and ", unet.classes, " classes (",
              precision_name(precision), ") needs about ", gib_text(bytes), " GiB with the generator",
              validation > 0 ? ", the validation" : "", " and a checkpoint (the step ", gib_text(step),
              "), more than 80% of the ", gib_text(double(capacity)), " GiB ",
              ctx.device().is_cuda() ? ctx.device().name() + " has" : std::string("this process may use"),
              ": lower --batch, the crop (--shape) or --features");
}

}  // namespace

double Trainer::State::validate() {
    PoolAllocator& pool = *validation_pool;
    const int64_t classes = int64_t(gen_config.segmentation_labels.size());
    std::vector<Overlap> overlaps(static_cast<size_t>(classes));
    for (int i = 0; i < options.validation_samples; ++i) {
        const Batch& b = validation->next(i);
        Graph g(pool, params, false);
        g.set_precision(precision);
        Tensor x;
        x.data = const_cast<float*>(b.image.data());
        x.shape = b.shape;
        const Var probs = softmax(g, net->forward(g, g.input(x), false));
        std::vector<float> p(size_t(probs.value().size()));
        ctx.copy_to_host(p.data(), probs.data(), p.size() * sizeof(float));
        count_overlaps(p, b.target.download(), classes, overlaps);
    }
    ValidationRow row{step, 0, {}};
    int present = 0;
    for (int64_t c = 0; c < classes; ++c) {
        const double d = dice(overlaps[size_t(c)]);  // NaN where absent from both
        row.dice.push_back(d);
        // The mean is over the structures the truth holds: background left out, as `dice` and
        // SynthSeg's validation curves leave it out.
        if (gen_config.segmentation_labels[size_t(c)] != 0 && overlaps[size_t(c)].truth > 0) {
            row.mean_dice += d;
            ++present;
        }
    }
    row.mean_dice = present ? row.mean_dice / present : NAN;
    validation_log.push_back(row);
    return row.mean_dice;
}

// The model a --resume continues (`saved`, read from `json`) has the network and the labels
// asked for, and its optimizer state is there.
static void require_resumable(const ModelSpec& saved, const std::string& json, const std::string& optimizer,
                              const std::string& model_dir, const UNetConfig& unet,
                              const std::vector<int32_t>& labels) {
    const UNetConfig& a = saved.unet;
    ISS_INPUT(a.classes == unet.classes, json, ": has ", a.classes, " outputs (", label_list_text(saved.labels),
              "), the generator's segmentation_labels ", unet.classes, " (", label_list_text(labels), ")");
    ISS_INPUT(a.levels == unet.levels && a.features == unet.features && a.in_channels == unet.in_channels &&
                  a.kernel == unet.kernel && a.convs_per_level == unet.convs_per_level,
              json, ": holds a different architecture (levels ", a.levels, ", features ", a.features,
              ") than asked for (levels ", unet.levels, ", features ", unet.features, ")");
    ISS_INPUT(saved.labels == labels, json, ": its labels (", label_list_text(saved.labels),
              ") are not the generator's segmentation_labels (", label_list_text(labels), "), in channel order");
    ISS_INPUT(fs::exists(optimizer), optimizer,
              ": missing: cannot resume without Adam's state (a run killed while it wrote its first checkpoint ",
              "leaves this; the weights in ", model_dir, " still predict: train a new --model-dir to start again)");
}

// Validation maps that are training maps too (the same labels on the same grid, under any name)
// measure what was learned, not how it carries over: said, as a user gave both folders.
static void warn_of_validation_maps_trained_on(const std::vector<TrainingMap>& validation,
                                               const std::vector<TrainingMap>& training) {
    // Compared whole only where a fingerprint (dims and every 4099th voxel) agrees: a thousand maps
    // conformed to one grid would otherwise be compared pair by pair, megabytes each.
    auto fingerprint = [](const TrainingMap& m) {
        uint32_t crc = crc32_of(0, m.grid.dim.data(), sizeof m.grid.dim);
        for (size_t v = 0; v < m.generation.size(); v += 4099) crc = crc32_of(crc, &m.generation[v], 1);
        return crc;
    };
    std::multimap<uint32_t, const TrainingMap*> trained;
    for (const TrainingMap& t : training) trained.emplace(fingerprint(t), &t);
    std::vector<std::string> also_trained;
    for (const TrainingMap& v : validation) {
        const auto range = trained.equal_range(fingerprint(v));
        if (std::any_of(range.first, range.second, [&](const auto& t) {
                return t.second->grid.same_as(v.grid) && t.second->generation == v.generation;
            }))
            also_trained.push_back(v.name);
    }
    if (also_trained.empty()) return;
    const bool all = also_trained.size() == validation.size();
    warning(cat("train: ", all ? std::string("the") : cat(also_trained.size(), " of the ", validation.size()),
                " validation map", validation.size() > 1 ? "s (" : " (", also_trained.front(),
                also_trained.size() > 1 ? ", ..." : "",
                also_trained.size() > 1 ? ") are training maps" : ") is a training map",
                " too, the same labels on the same grid: ", also_trained.size() > 1 ? "their" : "its",
                " Dice is not that of maps held out"));
}

// Whether predict may average a scan's prediction with its mirror image's (labels::first_unmirrored):
// said where it may not (a model of one hemisphere, a structure learned as one side's).
static bool outputs_mirror(const GeneratorConfig& config) {
    const std::vector<int32_t> targets = target_labels(config);
    const labels::DeclaredTwins& declared = config.lr_twins;
    const int g = labels::first_unmirrored(config.generation_labels, targets, config.segmentation_labels, declared);
    if (g < 0) return true;
    const int32_t label = config.generation_labels[size_t(g)], twin = labels::lr_twin(label, declared);
    // One side's, with no mirror image among the generation labels (a twin unknown, or missing).
    auto one_sided = [&](int32_t l) {
        const int32_t mirror = labels::lr_twin(l, declared);
        return labels::lateral(l, declared) && (mirror == l || labels::index_of(config.generation_labels, mirror) < 0);
    };
    std::string why;
    if (!labels::side_known(label, declared)) {
        why = cat("generation label ", label, " is in none of FreeSurfer's classes and lr_twins does not declare its ",
                  "side");
    } else if (one_sided(label)) {
        // FreeSurfer's numbering is an assumption: another atlas's label of that number may have
        // no side, which lr_twins says. Every such label named: a lab's own protocol has several,
        // which naming the first alone had it find one run at a time.
        std::vector<int32_t> all;
        for (const int32_t other : config.generation_labels)
            if (one_sided(other)) all.push_back(other);
        const bool several = all.size() > 1;
        why = cat("generation label", several ? "s " : " ", first_values(all, 12), several ? " are" : " is",
                  " one side's", declared.empty() ? " as FreeSurfer numbers labels" : "", " and ",
                  several         ? std::string("their twins are not generation labels")
                  : twin == label ? std::string("its twin is not known")
                                  : cat("its twin ", twin, " is not a generation label"),
                  " (another atlas's label", several ? "s" : "", " of no side: lr_twins [[", label, ", ", label, "]",
                  several ? ", ..." : "", "] says so)");
    } else {  // what the flip makes of its target, against what its mirror image is learned as
        const std::vector<int32_t>& outputs = config.segmentation_labels;
        const int32_t target = targets[size_t(g)];
        const int t = labels::index_of(config.generation_labels, twin);
        const int32_t swapped =
            outputs[size_t(labels::twin_positions(outputs, declared)[size_t(labels::index_of(outputs, target))])];
        why = cat("generation label ", label, " is learned as ", target, ", so its mirror image",
                  twin != label ? cat(" (", twin, ")") : std::string(), " should be learned as ", swapped,
                  swapped != target                   ? cat(" (", target, "'s twin)")
                  : labels::lateral(target, declared) ? cat(" (", target, " has no twin among the outputs)")
                                                      : cat(" (", target, " has no side)"),
                  ", but is learned as ", targets[size_t(t)]);
    }
    warning(cat("train: ", why, ": the outputs do not swap as a left/right flip swaps the structures, so predict ",
                "segments with this model without averaging a scan with its mirror image"));
    return false;
}

// What model.json records: the network, its labels, what its input is (maps in the training
// frame, at every voxel size in `voxels`) and how it is trained.
static ModelSpec training_record(const TrainOptions& opt, const GeneratorConfig& config, const UNetConfig& unet,
                                 const std::vector<TrainingMap>& validation_maps, const std::vector<TrainingMap>& maps,
                                 const std::array<int64_t, 3>& crop, Precision precision,
                                 const std::string& arithmetic) {
    const VoxelSizeRange voxels = voxel_size_range(maps);
    ModelSpec spec;
    spec.unet = unet;
    spec.labels = config.segmentation_labels;
    spec.preprocessing = {{"orientation", training_frame},
                          {"voxel_size_range_mm",
                           {{"min", {voxels.min[0], voxels.min[1], voxels.min[2]}},
                            {"max", {voxels.max[0], voxels.max[1], voxels.max[2]}}}},
                          {"size_multiple", unet.reference_multiple()},
                          {"normalisation", "min-max to [0, 1]"},
                          {"input_channels", unet.in_channels},
                          {"flip_averaging", outputs_mirror(config)}};
    if (!config.lr_twins.empty()) spec.preprocessing["lr_twins"] = config.lr_twins;  // predict's mirror averaging
    spec.training = {{"preset", config.preset},
                     {"seed", opt.seed},
                     {"batch", opt.batch},
                     {"crop", {crop[0], crop[1], crop[2]}},
                     {"lr", std::stod(csv_float(opt.lr))},  // 1e-4, not the float's double's digits
                     {"steps", opt.steps},
                     {"steps_per_epoch", opt.steps_per_epoch},
                     {"wl2_epochs", opt.wl2_epochs},
                     {"keep_every", opt.keep_every},
                     {"adam_epsilon", "on the root of the uncorrected v (Keras)"},
                     {"dice", dice_reduction},
                     {"maps", int64_t(maps.size())},
                     {"maps_digest", maps_digest(maps)},
                     {"precision", precision_name(precision)},
                     {"arithmetic", arithmetic},
                     {"build", cat("infant-synthseg ", build_version())},
                     {"generator", nlohmann::json::parse(config_to_json(config))}};
    // The maps a resume without --labels reads: absolute, not normalised (".." after a link is
    // the link's parent, which lexical normalising got wrong). A name of bytes that are not UTF-8
    // cannot be JSON: then none is recorded, and such a resume asks for --labels.
    auto record_path = [](nlohmann::json& record, const std::string& given) {
        const std::string path = fs::absolute(given).string();
        if (is_json_text(path)) record["maps_path"] = path;
    };
    record_path(spec.training, opt.labels);
    // What validation.csv's rows measure, so that a resume can continue them.
    if (!validation_maps.empty()) {
        spec.training["validation"] = {{"every", opt.validate_every},
                                       {"samples", opt.validation_samples},
                                       {"maps", int64_t(validation_maps.size())},
                                       {"maps_digest", maps_digest(validation_maps)}};
        record_path(spec.training["validation"], opt.validation_labels);  // as the training maps'
    }
    return spec;
}

// The files of a checkpoint in a model directory ("model.safetensors, training_log.csv"), ""
// where there are none.
static std::string checkpoint_pieces(const std::string& dir) {
    std::string pieces;
    std::error_code ec;
    for (const char* name : checkpoint_files)
        if (fs::exists(join(dir, name), ec)) pieces += cat(pieces.empty() ? "" : ", ", name);
    return pieces;
}
// Said of files that are no whole checkpoint: neither a resume nor a new run takes them.
constexpr char pieces_advice[] =
    " (a run killed during its first checkpoint leaves such pieces, or they were kept by hand): remove them to "
    "train anew there, or choose another --model-dir";

// What a new run finds in its model directory, said after "already holds ": a model to resume,
// an imported one (weights and record, no training state: it predicts), or pieces; "" for none.
static std::string existing_model(const std::string& dir) {
    const std::string pieces = checkpoint_pieces(dir);
    std::error_code ec;
    if (pieces.empty()) {
        // Another run's kept weights: a new run's would replace those of its steps and sit
        // beside the rest, two runs in one folder.
        bool kept = false;  // a killed run's temporaries there are no weights: a new run removes them
        for (const fs::directory_entry& entry : fs::directory_iterator(kept_weights_in(dir), ec))
            kept |= is_kept_weights_name(entry.path().filename().string());
        return kept ? cat(kept_weights_folder, "/, another run's kept weights; choose another --model-dir, or move ",
                          "them")
                    : "";
    }
    auto has = [&](const char* name) { return fs::exists(join(dir, name), ec); };
    const bool weights = has("model.safetensors") && has("model.json");
    if (weights && has("model.optimizer.safetensors") && has("training_log.csv"))
        return cat("a model (", pieces, "); pass --resume to continue it, or choose another --model-dir");
    if (weights && !has("model.optimizer.safetensors"))
        return cat("a model (", pieces, ") without its training state: it predicts, but a run cannot continue it; ",
                   "choose another --model-dir, or remove them to train anew there");
    return cat(pieces, ", not a whole checkpoint", pieces_advice);
}

// One run at a time writes a model directory: two would overwrite each other's checkpoints.
static std::unique_ptr<DirectoryLock> lock_model_dir(const std::string& dir) {
    return std::make_unique<DirectoryLock>(dir, lock_file_name, locked_text);
}

// The parameters a --config file (read and checked already) gives itself, not from its preset;
// an empty object without one.
static nlohmann::json config_file_parameters(const std::string& config_path) {
    return config_path.empty() ? nlohmann::json::object() : parse_json(read_text_file(config_path), config_path);
}

// The generator's configuration and what it came from (for messages): a --config file, the one
// a resumed model recorded, or the preset.
static std::pair<GeneratorConfig, std::string> generator_config_for(const TrainOptions& opt) {
    PresetChoice choice{opt.preset};
    if (!opt.recorded_preset.empty()) choice.otherwise = opt.recorded_preset;
    if (!opt.config_path.empty()) return {load_config(choice, opt.config_path), opt.config_path};
    if (!opt.recorded_generator.empty())
        return {parse_config(choice, opt.recorded_generator, opt.recorded_generator_source),
                opt.recorded_generator_source};
    GeneratorConfig preset = preset_config(choice.base());
    const std::string source = cat("preset ", preset.preset);
    return {std::move(preset), source};
}

// What a --resume continues: the model directory's record, read once, after a checkpoint a killed
// run left half replaced is put back (where the directory is `locked`), with an older record's
// gaps completed and the options it records adopted into `options`; nullopt for a new run.
// `recorded_before_mm`: the record predates the random affine in mm (complete_generator_record).
static std::optional<ModelSpec> record_to_resume(const TrainOptions& given, bool locked, TrainOptions& options,
                                                 bool& recorded_before_mm) {
    if (!given.resume) return std::nullopt;
    if (locked) {
        const int put_back = tidy_interrupted_checkpoint(given.model_dir);
        if (put_back > 0)
            warning(cat(given.model_dir, ": a run was killed while it replaced its checkpoint: put back ", put_back,
                        " file", put_back > 1 ? "s" : "", " of the checkpoint before, which the resume continues"));
    }
    const std::string weights = model_weights_in(given.model_dir);
    const std::string pieces = checkpoint_pieces(given.model_dir);
    ISS_INPUT(fs::exists(model_json_path(weights)), given.model_dir, ": --resume, but there is no model.json to resume",
              pieces.empty() ? "" : cat("; it holds ", pieces, pieces_advice));
    ModelSpec saved = load_model_spec(weights);
    // Imported: no training state to go on from (it would be refused for its optimizer).
    ISS_INPUT(!saved.training.contains("imported_from"), model_json_path(weights), ": imported from ",
              saved.training["imported_from"].dump(), ", not trained here: there is no training state to resume",
              " (it predicts as it is; train a new --model-dir to train one here)");
    recorded_before_mm = complete_generator_record(saved.training, model_json_path(weights), options.record_warnings);
    complete_dice_record(saved.training);
    if (options.adopt_recorded) options.adopt_recorded(saved, options);
    return saved;
}

// The options' own bounds, checked before anything is read.
static void require_valid_options(const TrainOptions& opt) {
    ISS_INPUT(opt.steps >= 1, "train: --steps must be at least 1, got ", opt.steps);
    ISS_INPUT(opt.steps_per_epoch >= 1, "train: --steps-per-epoch must be at least 1, got ", opt.steps_per_epoch);
    ISS_INPUT(opt.batch >= 1 && opt.batch <= 64, "train: --batch must be 1 to 64, got ", opt.batch);
    ISS_INPUT(opt.lr > 0 && std::isfinite(opt.lr), "train: --lr must be a positive number");
    ISS_INPUT(opt.shape >= 0, "train: --shape must be at least 1 (or 0: the configuration's), got ", opt.shape);
    ISS_INPUT(opt.wl2_epochs >= 0, "train: --wl2-epochs must be >= 0");
    ISS_INPUT(opt.keep_every >= 0, "train: --keep-every must be >= 0 (0: the latest checkpoint alone), got ",
              opt.keep_every);
    // A model predict and --resume would refuse to read is not trained (4096 features were); on a
    // resume the levels are the record's where not given.
    ISS_INPUT(opt.unet.widest_supported(), "train: ", opt.unet.widest_problem(), ": lower --features or --levels");
}

// The generator's configuration for the run: preset, file overrides, then the options that
// belong to the network (the crop a multiple of 2^levels, as SPEC.md 3.3 says), validated.
// `use_recorded_crop`: the crop is the resumed record's.
static GeneratorConfig generator_config_to_train(const TrainOptions& opt, bool& use_recorded_crop) {
    auto [config, source] = generator_config_for(opt);
    const nlohmann::json given = config_file_parameters(opt.config_path);
    // The crop: --shape, else a --config's own output_shape, else on a resume the recorded one (a
    // --shape or a --config's that differs from it is refused, require_same_samples).
    use_recorded_crop = opt.shape == 0 && opt.recorded_crop[0] > 0 && !given.contains("output_shape");
    if (opt.shape > 0)
        config.output_shape = {opt.shape, opt.shape, opt.shape};
    else if (use_recorded_crop)
        config.output_shape = opt.recorded_crop;
    // The network's: a configuration's own (SynthSeg's output_div_by_n) is said to give way.
    if (given.contains("shape_multiple") && config.shape_multiple != opt.unet.reference_multiple())
        warning(cat("train: ", opt.config_path, ": shape_multiple ", config.shape_multiple,
                    " is ignored: the network's, ", opt.unet.reference_multiple(), " (2^", opt.unet.levels,
                    ", --levels), is used"));
    config.shape_multiple = opt.unet.reference_multiple();
    // The crop is rounded down to a multiple of 2^levels; a smaller one used to be raised silently
    // (to 256^3 for 8 levels, which then ran out of memory).
    for (const int64_t n : config.output_shape)
        ISS_INPUT(n >= config.shape_multiple,
                  "train: ", opt.shape > 0 ? cat("--shape ", opt.shape) : cat(source, ": output_shape ", n),
                  " is smaller than ", config.shape_multiple, ", the multiple a U-Net of ", opt.unet.levels,
                  " levels needs: ask for a larger crop or fewer --levels");
    validate_config(config, source);
    return std::move(config);  // a structured binding is not moved from implicitly
}

// Any file of a checkpoint counts (weights someone kept, an earlier run's logs): a new run would
// replace it, or leave it beside a model it does not belong to.
static void require_no_model(const std::string& dir) {
    const std::string held = existing_model(dir);
    ISS_INPUT(held.empty(), dir, ": already holds ", held);
}

// The crop every sample has, and where maps clipped the one `config` asks for, which (a folder
// with one small map gave small crops to all, unsaid): the first map to clip each axis.
static std::string crop_text(const GeneratorConfig& config, const std::vector<TrainingMap>& maps,
                             const std::array<int64_t, 3>& crop) {
    const std::array<int64_t, 3> asked = crop_shape(config, config.output_shape);
    std::vector<const TrainingMap*> clipping;
    for (size_t d = 0; d < 3; ++d) {
        if (crop[d] == asked[d]) continue;
        for (const TrainingMap& m : maps)
            if (crop_shape(config, m.grid.dim)[d] == crop[d]) {
                if (std::find(clipping.begin(), clipping.end(), &m) == clipping.end()) clipping.push_back(&m);
                break;
            }
    }
    std::string text = cat("crops of ", dims_text(crop), " voxels");
    for (size_t i = 0; i < clipping.size(); ++i)
        text += cat(i == 0 ? cat(", clipped from ", dims_text(asked), " by ") : std::string(" and "), clipping[i]->name,
                    " (", dims_text(clipping[i]->grid.dim), " voxels in ", training_frame, " order)");
    return text;
}

// What the maps give predict to go by: their voxel sizes, on a resume with those of the runs
// before (`spec`'s range, widened already), and the crop (crop_text).
static std::string summary_of_maps(const std::vector<TrainingMap>& maps, const ModelSpec& spec,
                                   const std::string& crop) {
    const VoxelSizeRange these = voxel_size_range(maps);
    VoxelSizeRange seen = these;
    const nlohmann::json& recorded_range = spec.preprocessing.at("voxel_size_range_mm");
    for (size_t d = 0; d < 3; ++d) {
        seen.min[d] = recorded_range["min"][d].get<double>();
        seen.max[d] = recorded_range["max"][d].get<double>();
    }
    const bool widened = seen.min != these.min || seen.max != these.max;
    return cat(describe_training_maps(maps),
               widened ? cat("; with the runs it continues ", voxel_size_text(seen)) : std::string(),
               " (predict resamples scans outside ", widened ? "that" : "this", " range); ", crop);
}

// What a resume that trains does otherwise than the run it continues (`saved`; `changed`, the
// record's keys continue_record found changed), said once every input is checked.
void Trainer::State::warn_of_changes(const ModelSpec& saved, const std::set<std::string>& changed,
                                     const std::vector<TrainingMap>& maps, bool recorded_before_mm) {
    const nlohmann::json was = recorded_training(saved);
    const std::string json = model_json_path(weights_path());
    // Other maps may continue a model (more subjects, another set), but the run is then not the
    // one it continues: said, and kept in the record's history.
    if (changed.count("maps_digest"))
        warning(cat("train: --labels ", options.labels, ": not the label maps ", json, " was trained on (",
                    was.value("maps", nlohmann::json()).dump(), " then, ", maps.size(),
                    " now, or their voxels or the order of their names differ): from step ", step,
                    " the samples are not the uninterrupted run's; its history records the change"));
    // The same samples summed in another order (threads, instruction set, GPU): the weights drift
    // from the uninterrupted run's in the last bits, then further.
    if (changed.count("arithmetic"))
        warning(cat("train: ", json, " was trained on ", was["arithmetic"].dump(), ", this run is on ",
                    spec.training["arithmetic"].dump(), ": the network's sums run in another order, so from step ",
                    step, " the weights do not repeat the uninterrupted run's bit for bit (the same device and ",
                    "--threads would); its history records the change"));
    // Another build may draw the samples otherwise (docs/PERFORMANCE.md records where one did).
    if (changed.count("build"))
        warning(cat("train: ", json, " was trained by ", was["build"].dump(), ", this run by ",
                    spec.training["build"].dump(), ": where the builds' generator or arithmetic differ, from step ",
                    step, " the run is not the uninterrupted one's; its history records the change"));
    const int64_t last_row = validation_log.empty() ? step : validation_log.back().step;
    warn_of_another_validation(was, spec.training, options, json, last_row, step);
    if (changed.count("dice"))
        warning(cat("train: ", json, " was trained with ", was.at("dice").dump(), "; this build averages each ",
                    "sample's Dice, as SynthSeg: from step ", step,
                    " the loss and its gradients are not the uninterrupted run's; its history records the change"));
    // Since 2026-12-07 Adam adds epsilon to the root of the uncorrected v, as Keras: a record
    // without the field is an earlier build's, which added it to the corrected one.
    if (!was.contains("adam_epsilon"))
        warning(cat("train: ", json, " was trained by an earlier build, whose Adam added epsilon to the root of the ",
                    "bias-corrected second moment (PyTorch's form); this one adds it as Keras does: from step ", step,
                    " the updates are not the uninterrupted run's (most for the smallest gradients, less as the ",
                    "steps grow)"));
    // Since 2026-12-06 the random affine acts in mm: on anisotropic voxels the samples changed.
    if (recorded_before_mm)
        for (const TrainingMap& m : maps) {
            const std::array<double, 3>& v = m.voxel_mm;
            if (v[0] == v[1] && v[1] == v[2]) continue;
            warning(cat("train: ", m.name, " has anisotropic voxels, on which the build that wrote ", json,
                        " applied the random affine to voxels (now to mm): from step ", step,
                        " the samples are not the uninterrupted run's"));
            break;
        }
}

// Makes the model directory where it is missing (owned, with the checkpoint's pieces, until the
// first checkpoint is whole) and locks it where it is not locked yet; a new run removes the
// temporaries a killed run left there.
void Trainer::State::take_model_dir() {
    made_model_dir.make(options.model_dir);
    if (options.keep_every > 0) made_model_dir.make(kept_weights_in(options.model_dir));
    made_model_dir.own_file(join(options.model_dir, lock_file_name));
    for (const char* name : checkpoint_files) made_model_dir.own_file(join(options.model_dir, name));
    if (!lock) {
        lock = lock_model_dir(options.model_dir);
        require_no_model(options.model_dir);  // another run may have made one since it was checked
    }
    // A resume: kept weights past its checkpoint are a killed run's, whose checkpoint was put
    // back; they belong to steps this model's history no longer has (the run keeps its own).
    if (options.resume) {
        const std::string folder = kept_weights_in(options.model_dir);
        std::error_code ec;
        std::vector<std::string> past;
        for (const std::string& name : kept_weights_files(folder, false))
            if (*kept_weights_step(name) > checkpoint_step && fs::remove(fs::path(folder) / name, ec))
                past.push_back(name);
        if (!past.empty())
            warning(cat(folder, ": removed ", past.size(), " kept file", past.size() > 1 ? "s" : "",
                        " of steps past the checkpoint of step ", checkpoint_step, " (", past.front(),
                        past.size() > 1 ? ", ..." : "", "), a killed run's whose checkpoint was put back"));
        return;
    }
    // A new model: a killed run's temporaries here belong to no checkpoint of it (a resume would
    // have taken a kept copy for this run's and put it back over its weights).
    int removed = 0;
    std::error_code ec;
    for (const auto& leftover : checkpoint_temporaries(options.model_dir)) removed += fs::remove(leftover.second, ec);
    if (removed > 0)
        warning(cat(options.model_dir, ": removed ", removed, " temporary file", removed > 1 ? "s" : "",
                    " a killed run left (NAME.tmp-PID...), which belong to no model"));
}

Trainer::Trainer(const TrainOptions& given) {
    ISS_INPUT(!given.model_dir.empty(), "train: --model-dir is required");
    // Another model's kept weights: a model trained there sits among files it does not own.
    std::error_code canonical_error;  // through links too (a link to mdl/weights was let in)
    const fs::path asked = fs::weakly_canonical(fs::absolute(given.model_dir), canonical_error);
    const fs::path in = (asked.has_filename() ? asked : asked.parent_path());
    ISS_INPUT(in.filename() != kept_weights_folder || !fs::exists(in.parent_path() / "model.json"),
              "train: --model-dir ", given.model_dir, " is the folder of the weights the model in ",
              in.parent_path().empty() ? "." : in.parent_path().string(), " keeps: choose another");
    // On --resume the model directory is locked before anything is read from it, and model.json
    // read, once, before the options it may complete are read.
    std::unique_ptr<DirectoryLock> lock;
    std::error_code ec;
    if (given.resume && fs::is_directory(given.model_dir, ec)) lock = lock_model_dir(given.model_dir);
    TrainOptions options = given;
    bool recorded_before_mm = false;
    const std::optional<ModelSpec> saved = record_to_resume(given, lock != nullptr, options, recorded_before_mm);
    state_ = std::make_unique<State>(options);
    State& s = *state_;
    s.lock = std::move(lock);
    const TrainOptions& opt = s.options;
    require_valid_options(opt);
    s.precision = usable_precision(s.ctx, opt.precision);
    bool use_recorded_crop = false;
    s.gen_config = generator_config_to_train(opt, use_recorded_crop);
    UNetConfig unet = opt.unet;
    unet.classes = int(s.gen_config.segmentation_labels.size());
    // Before the maps are read (a large set takes minutes): neither check needs them.
    const std::string json = model_json_path(s.weights_path());
    if (saved)
        require_resumable(*saved, json, s.optimizer_path(), opt.model_dir, unet, s.gen_config.segmentation_labels);

    // Every input read and checked before anything is written.
    std::vector<TrainingMap> maps = load_training_maps(volume_files(opt.labels), s.gen_config);
    std::vector<TrainingMap> validation_maps;
    if (!opt.validation_labels.empty()) {
        ISS_INPUT(opt.validate_every >= 1, "train: --validate-every must be >= 1 with --validation-labels");
        ISS_INPUT(opt.validation_samples >= 1, "train: --validation-samples must be >= 1");
        try {
            validation_maps = load_training_maps(volume_files(opt.validation_labels), s.gen_config);
        } catch (const InputError& e) {
            // Maps the user did not name this time: where they came from, and the way round them.
            if (!opt.validation_from_record) throw;
            throw InputError(cat(e.what(), " (a validation map ", model_json_path(s.weights_path()),
                                 " records; --no-validation resumes without validating)"));
        }
        warn_of_validation_maps_trained_on(validation_maps, maps);
    }
    // A batch needs one crop shape. The validation maps have their own (newborn maps checking a
    // model trained on 12-month ones give smaller crops; batch 1, so any shape runs).
    const std::array<int64_t, 3> common = common_crop(s.gen_config, maps);
    const std::string crops = crop_text(s.gen_config, maps, common);
    const bool a_map_too_small = std::any_of(maps.begin(), maps.end(), [&](const TrainingMap& m) {
        for (size_t d = 0; d < 3; ++d)
            if (m.grid.dim[d] < opt.recorded_crop[d]) return true;
        return false;
    });
    ISS_INPUT(!use_recorded_crop || !a_map_too_small || common == opt.recorded_crop, "train: --labels ", opt.labels,
              ": the model was trained on crops of ", dims_text(opt.recorded_crop),
              " voxels, which these maps cannot hold (the smallest gives ", dims_text(common),
              "): a resumed run draws its samples as the run it continues");
    GeneratorConfig validation_config = s.gen_config;
    if (!validation_maps.empty()) {  // at most the training crop: the field of view it learned
        validation_config.output_shape = common_crop(s.gen_config, validation_maps);
        for (size_t d = 0; d < 3; ++d)
            validation_config.output_shape[d] = std::min(validation_config.output_shape[d], common[d]);
    }
    s.gen_config.output_shape = common;
    double maps_bytes = 0, validation_voxels = 0;
    for (const TrainingMap& m : maps) maps_bytes += double(m.generation.size());
    if (!validation_maps.empty())
        validation_voxels = double(validation_config.output_shape[0]) * double(validation_config.output_shape[1]) *
                            double(validation_config.output_shape[2]);
    require_memory_to_train(unet, common, opt.batch, s.precision, s.ctx, maps_bytes, validation_voxels);

    // Every file a checkpoint writes is checked now, not at the first checkpoint an epoch later
    // (a directory of one of those names left a half-written model that would not resume).
    std::vector<NamedPath> inputs = config_inputs(opt.config_path);
    for (const TrainingMap& m : maps) inputs.push_back({m.name, "--labels"});
    for (const TrainingMap& m : validation_maps) inputs.push_back({m.name, "--validation-labels"});
    std::vector<NamedPath> outputs;
    for (const char* name : checkpoint_files) outputs.push_back({join(opt.model_dir, name), "--model-dir"});
    std::vector<std::string> folders{opt.model_dir};
    if (opt.keep_every > 0) {
        const std::string kept = kept_weights_in(opt.model_dir);
        ISS_INPUT(fs::is_directory(kept, ec) || !fs::exists(kept, ec), kept,
                  ": not a folder, where --keep-every keeps weights: move it");
        folders.push_back(kept);
    }
    check_outputs("train", inputs, outputs, folders);

    // Any other existing directory is locked once every input is checked (a refusal leaves no
    // lock file in it), and checked again under the lock (another run may have begun a model);
    // one that does not exist yet is locked once it is made (take_model_dir).
    if (!opt.resume) {
        // A run writing it is what to know first: its model is not to be resumed meanwhile.
        DirectoryLock::require_not_held(opt.model_dir, lock_file_name, locked_text);
        require_no_model(opt.model_dir);
    }
    if (!s.lock && fs::is_directory(opt.model_dir, ec)) {
        s.lock = lock_model_dir(opt.model_dir);
        if (!opt.resume) require_no_model(opt.model_dir);
    }
    s.net = std::make_unique<UNet>(unet, s.params);
    s.params.allocate();
    s.net->initialise(opt.seed);
    // The crop said once: a --shape or output_shape is clipped to the smallest map and rounded
    // down to the network's multiple.
    s.spec = training_record(opt, s.gen_config, unet, validation_maps, maps, common, s.precision,
                             arithmetic_identity(s.ctx));
    s.run_id = new_run_id();  // a resume takes the checkpoint's instead
    std::set<std::string> changed;  // in the record, since the run a resume continues
    if (saved) {
        require_same_samples(*saved, s.spec, json);
        s.load_checkpoint(*saved);
        ISS_INPUT(s.step <= opt.steps, opt.model_dir, ": the checkpoint is at step ", s.step, ", past --steps ",
                  opt.steps);
        changed = continue_record(*saved, s.spec, s.step);
    }
    // Said once every input is checked (a refusal is one line), and only where a step is to run
    // (a model already at --steps is told "nothing to train" and written no more).
    if (s.step < opt.steps) {
        for (const std::string& said : opt.record_warnings) warning(said);
        warn_of_labels_in_no_map(maps, s.gen_config, opt.labels);
        // Said when the model is made: a resume cannot change what it learns.
        const std::string folds =
            saved ? std::string() : folds_learned_as_background(maps, s.gen_config, cat("train: ", opt.config_path));
        if (!folds.empty()) warning(folds);
        if (opt.wl2_epochs > 0 && s.last_wl2_step() >= opt.steps)
            warning(cat("train: --wl2-epochs ", opt.wl2_epochs, " of --steps-per-epoch ", opt.steps_per_epoch, " are ",
                        s.last_wl2_step(), " weighted-L2 steps, all of the --steps ", opt.steps,
                        ": the soft Dice loss never runs"));
        if (saved) s.warn_of_changes(*saved, changed, maps, recorded_before_mm);
    }
    s.maps_summary = summary_of_maps(maps, s.spec, crops);

    s.take_model_dir();
    const bool threaded = opt.prefetch < 0 ? s.ctx.is_cuda() : opt.prefetch > 0;
    s.batches = std::make_unique<BatchSource>(s.ctx, s.gen_config, std::move(maps), opt.seed, opt.batch, threaded);
    if (!validation_maps.empty()) {
        // A fixed set: its own seed, sample numbers 0..n-1, generated again at every validation.
        s.validation = std::make_unique<BatchSource>(s.ctx, validation_config, std::move(validation_maps),
                                                     opt.seed ^ 0x9e3779b97f4a7c15ull, 1, false);
        s.validation_pool = std::make_unique<PoolAllocator>(s.ctx);
    }
}

Trainer::~Trainer() = default;

int64_t Trainer::step() const { return state_->step; }
const std::string& Trainer::maps_summary() const { return state_->maps_summary; }
const TrainOptions& Trainer::options() const {
    return state_->options;
}
const std::vector<double>& Trainer::losses() const { return state_->losses; }
int64_t Trainer::last_weighted_l2_step() const {
    return state_->last_wl2_step();
}

void Trainer::run(const std::atomic<bool>& stop, const std::function<void(const StepReport&)>& on_step,
                  const std::function<void(int64_t step)>& on_checkpoint) {
    State& s = *state_;
    const TrainOptions& opt = s.options;
    const int64_t wl2_steps = s.last_wl2_step();
    const int64_t first = s.step;
    const auto run_start = std::chrono::steady_clock::now();
    while (s.step < opt.steps) {
        // The Dice loss starts with a fresh Adam, as SynthSeg compiles its Dice model with a new
        // optimizer after the weighted-L2 pre-training: moments zero, bias corrections from t = 1.
        if (wl2_steps > 0 && s.step == wl2_steps) s.adam.reset(s.params);
        const Batch& batch = s.batches->next(s.step);
        s.arena.reset();
        Graph g(s.arena, s.params, true);
        g.set_precision(s.precision);
        Tensor x;
        x.data = const_cast<float*>(batch.image.data());
        x.shape = batch.shape;
        double loss = 0;
        {
            // The logits' handle ends here: during backward they live only if the loss saved them.
            const Var logits = s.net->forward(g, g.input(x), true);
            loss = s.weighted_l2_step(s.step + 1) ? wl2_loss(g, logits, batch.target.data())
                                                  : softmax_dice_loss(g, logits, batch.target.data()).loss;
        }
        // A diverged run stops before its NaN reaches the weights: the last checkpoint stays as it
        // was (finite, though a rate this large may have grown its weights already).
        if (!std::isfinite(loss))
            throw Error(cat("training diverged at step ", s.step + 1, ": the loss is ", loss, "; ",
                            s.checkpoint_step < 0
                                ? std::string("no checkpoint was written yet. Try a smaller --lr")
                                : cat("the checkpoint of step ", s.checkpoint_step, " in ", s.options.model_dir,
                                      " is kept: --resume with a smaller --lr continues it, unless its weights had "
                                      "grown already (then start again in a new --model-dir)")));
        s.params.zero_grads();
        g.backward();
        s.adam.step(s.params);
        s.ctx.synchronize();
        ++s.step;

        StepReport report;
        report.step = s.step;
        report.loss = loss;
        report.weighted_l2 = s.weighted_l2_step(s.step);
        report.lr = opt.lr;
        report.seconds = std::round(s.elapsed() * 1e6) / 1e6;  // microseconds: no float noise in the log
        const double run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
        report.samples_per_second = run_seconds > 0 ? double((s.step - first) * opt.batch) / run_seconds : 0;
        s.losses.push_back(loss);
        s.log.push_back({s.step, loss, opt.lr, report.seconds});
        // And at the last step: the model a run ends with is the one used (a pilot run of fewer
        // steps than --validate-every was never validated, without a word).
        if (s.validation && (s.step % opt.validate_every == 0 || s.step == opt.steps))
            report.validation_dice = s.validate();
        const bool epoch_end = s.step % opt.steps_per_epoch == 0 || s.step == opt.steps;
        report.checkpoint = epoch_end;
        if (on_step) on_step(report);
        const bool stopping = stop.load();  // after on_step, which may be what asks to stop
        if (epoch_end || stopping) {
            // Every keep_every-th epoch end, a stop or the last step there too; a checkpoint between
            // epoch ends (a stop's, a last step's) is not kept.
            const bool keep = opt.keep_every > 0 && s.step % opt.steps_per_epoch == 0 &&
                              (s.step / opt.steps_per_epoch) % opt.keep_every == 0;
            s.save_checkpoint(keep);
            if (on_checkpoint) on_checkpoint(s.step);
        }
        // A stop asked while the checkpoint was written has it already: no step more (with a
        // full-size model that step and a second checkpoint ate into a scheduler's grace period).
        if (stopping || (epoch_end && stop.load())) break;
    }
}

}  // namespace iss
