// Training (SPEC.md section 5): one process keeps the label maps, the generator and the
// network on the device; each step synthesises a batch, runs forward, loss, backward and Adam.
// Sample numbers are step * batch + b, so a run is a pure function of (seed, inputs, options)
// and resuming from a checkpoint repeats the uninterrupted run bit for bit.
//
// The model directory holds:
//   model.safetensors + model.json     the weights and their description (docs/FORMATS.md)
//   model.optimizer.safetensors        Adam's state and the step, for --resume
//   training_log.csv                   step, loss, loss_function, lr, seconds (one row per step)
//   validation.csv                     step, mean_dice, then one column per label (optional)
//   loss.png                           the loss curve
// all rewritten at every checkpoint (each epoch, at the end, and when interrupted).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/common/device.h"
#include "nn/checkpoint.h"
#include "nn/precision.h"
#include "nn/unet.h"
#include "synth/config.h"

namespace iss {

struct TrainOptions {
    std::string labels;      // a label map or a directory of them
    std::string model_dir;
    // --preset ("" for none: then a --config's, else recorded_preset, else the default).
    std::string preset;
    // A resumed model's preset: a --config naming another is refused as any change of preset is.
    std::string recorded_preset;
    std::string config_path;  // JSON overrides of the generator (optional)
    // Without config_path: the generator parameters a resumed model recorded (model.json's
    // training.generator, as JSON text), which `source` names in messages; empty: the preset's.
    std::string recorded_generator, recorded_generator_source;
    // Without shape: the crop a resumed model recorded (0s: none), which may be no cube.
    std::array<int64_t, 3> recorded_crop{0, 0, 0};
    int64_t steps = 900000;   // total: with resume, training continues until this step
    int64_t steps_per_epoch = 3000;
    float lr = 1e-4f;
    int batch = 1;
    int64_t shape = 0;        // requested crop per axis (clipped and rounded as SPEC 3.3); 0: the
                              // configuration's output_shape (160^3 in every preset)
    UNetConfig unet;          // levels and features from the command line
    int64_t wl2_epochs = 0;   // epochs of weighted-L2 pre-training before the Dice loss
    // Also keep the weights of every keep_every-th epoch's checkpoint, in kept_weights_folder
    // (0: only the latest checkpoint, which each one replaces).
    int64_t keep_every = 0;
    bool resume = false;
    uint64_t seed = 1;
    Device device;
    // Validation: Dice on a fixed set of synthetic samples from held-out maps, every N steps.
    std::string validation_labels;
    int64_t validate_every = 0;  // 0: never
    int validation_samples = 4;
    // On a resume: validation_labels are the record's own (no --validation-labels given), or why
    // the run validates on none (--no-validation, the recorded maps gone), for the warnings.
    bool validation_from_record = false;
    std::string no_validation_reason;
    // Synthesise the next batch in a second thread (own stream on CUDA) while a step trains:
    // -1 auto (on CUDA only: on the CPU the step already uses every core), 0 off, 1 on.
    int prefetch = -1;
    // The convolutions' arithmetic (nn/precision.h); bf16 runs fp32 where it is not native.
    Precision precision = Precision::fp32;
    // With resume: called with the model.json to resume, read once the model directory is locked
    // and a checkpoint a killed run left half replaced is put back, before anything reads these
    // options; it may take what the model recorded for options the user did not give
    // (`train --resume` repeats the run's options without them being given again).
    std::function<void(const ModelSpec& recorded, TrainOptions& options)> adopt_recorded;
    // What adopt_recorded, the record's completion and the checkpoint's loading say of an older
    // or damaged record (a gap filled, a table lost): warned once every input is checked and a
    // step is to run, so that a refusal stays one line.
    std::vector<std::string> record_warnings;
};

struct StepReport {
    int64_t step = 0;        // steps done so far (1-based after the first)
    double loss = 0;
    bool weighted_l2 = false;  // the loss is the pre-training's weighted L2, not soft Dice
    float lr = 0;
    double seconds = 0;  // training time of the model: the runs it resumes, then this one's since it began
    double samples_per_second = 0;
    bool checkpoint = false;  // an epoch ends here: a checkpoint is written after this step
    // Mean Dice when validated after this step (NaN where no structure was in any validation
    // sample), else -1.
    double validation_dice = -1;
};

class Trainer {
public:
    // Reads and checks everything (label maps, configuration, an existing model directory)
    // before any step: InputError naming the file and the problem.
    explicit Trainer(const TrainOptions& options);
    ~Trainer();

    // Trains until options.steps or until `stop` becomes true (checked after every step, after
    // on_step);
    // writes a checkpoint at every epoch end and when it stops. `on_step` sees every step;
    // `on_checkpoint` is told the step of each checkpoint once its files are written (so a
    // command can say "saved" truthfully).
    void run(const std::atomic<bool>& stop, const std::function<void(const StepReport&)>& on_step = {},
             const std::function<void(int64_t step)>& on_checkpoint = {});

    int64_t step() const;
    const std::vector<double>& losses() const;  // per step, from step 1 (resumed runs included)
    // The last step of the weighted-L2 pre-training (0 without one): the losses up to it are L2s.
    int64_t last_weighted_l2_step() const;
    // The training maps in one line: count, stored orientations, voxel size range, the crop.
    const std::string& maps_summary() const;
    // The options the run uses: those given, completed on --resume by what the model recorded
    // (its total --steps, epoch length, batch...).
    const TrainOptions& options() const;

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace iss
