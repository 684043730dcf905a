// Training through the Trainer: resuming (after --steps or an interruption) repeats the
// uninterrupted run exactly, the prefetching thread changes nothing, a tiny model learns
// phantom anatomy, and bad input is refused before any step.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>

#include "io/csv.h"
#include "io/nifti.h"
#include "io/resample.h"
#include "kernels/common/error.h"
#include "synth/phantom.h"
#include "tests/backends.h"
#include "tests/test_util.h"
#include "train/trainer.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

// A 2-level, 4-feature U-Net on 32^3 crops, on the CPU: seconds per run.
TrainOptions tiny_options(const std::string& labels, const std::string& model_dir, int64_t steps) {
    TrainOptions o;
    o.labels = labels;
    o.model_dir = model_dir;
    o.steps = steps;
    o.steps_per_epoch = 3;
    o.shape = 32;
    o.unet.levels = 2;
    o.unet.features = 4;
    o.lr = 1e-3f;
    o.seed = 5;
    o.device = Device{};
    return o;
}

// One directory for the suite with a newborn phantom (the smallest, quickest to deform).
class Train : public test::TempDirTest {
protected:
    static void SetUpTestSuite() {
        maps_ = test::unique_temp_dir("train-maps");
        write_labels((maps_ / "phantom_0mo.nii.gz").string(), make_phantom(0, 1));
    }
    static void TearDownTestSuite() {
        std::error_code ec;
        fs::remove_all(maps_, ec);
    }

    TrainOptions tiny(const std::string& model_dir, int64_t steps) const {
        return tiny_options(maps_.string(), model_dir, steps);
    }

    static std::vector<double> train(const TrainOptions& o, int64_t stop_after = -1) {
        Trainer trainer(o);
        std::atomic<bool> stop{false};
        trainer.run(stop, [&](const StepReport& r) {
            if (r.step == stop_after) stop = true;
        });
        return trainer.losses();
    }

    static fs::path maps_;
};

fs::path Train::maps_;

TEST_F(Train, ResumeAfterStepsOrInterruptionRepeatsTheUninterruptedRun) {
    const std::vector<double> straight = train(tiny(path("straight"), 7));
    ASSERT_EQ(straight.size(), 7u);
    for (double l : straight) ASSERT_TRUE(std::isfinite(l));

    // Stopped by --steps at 4, then resumed to 7.
    train(tiny(path("by_steps"), 4));
    TrainOptions more = tiny(path("by_steps"), 7);
    more.resume = true;
    EXPECT_EQ(train(more), straight);

    // Interrupted (as by SIGINT) after step 2: a checkpoint at 2, then resumed to 7.
    const std::vector<double> first = train(tiny(path("interrupted"), 7), 2);
    EXPECT_EQ(first.size(), 2u);
    EXPECT_TRUE(fs::exists(path("interrupted/model.safetensors")));
    TrainOptions rest = tiny(path("interrupted"), 7);
    rest.resume = true;
    EXPECT_EQ(train(rest), straight);
    // The files a user expects.
    for (const char* f : {"model.json", "model.optimizer.safetensors", "training_log.csv"})
        EXPECT_TRUE(fs::exists(path(std::string("interrupted/") + f))) << f;
}

TEST_F(Train, PrefetchThreadGivesTheSameRun) {
    TrainOptions inline_run = tiny(path("inline"), 4);
    inline_run.prefetch = 0;
    TrainOptions threaded = tiny(path("threaded"), 4);
    threaded.prefetch = 1;
    EXPECT_EQ(train(threaded), train(inline_run));
}

// Two steps on each backend, with the generator inline and in the prefetch thread (on CUDA: its
// own context and stream): the two give the same losses bit for bit, and on CUDA the first
// step's loss is the CPU's within the convolutions' tolerance (1e-4; the second step follows
// one Adam update, where near-zero gradients may take the other sign: 1e-2).
class TrainOnDevice : public test::BackendTest {};

TEST_P(TrainOnDevice, TwoStepsWithAndWithoutPrefetchAgree) {
    const fs::path dir = test::unique_temp_dir(std::string("train-device-") + (on_cuda() ? "cuda" : "cpu"));
    fs::create_directories(dir / "maps");
    write_labels((dir / "maps" / "phantom.nii.gz").string(), make_phantom(0, 1));
    auto run = [&](const std::string& name, Backend backend, int prefetch) {
        TrainOptions o = tiny_options((dir / "maps").string(), (dir / name).string(), 2);
        o.device = Device{backend, 0};
        o.prefetch = prefetch;
        Trainer trainer(o);
        std::atomic<bool> stop{false};
        trainer.run(stop);
        return trainer.losses();
    };
    const std::vector<double> inline_run = run("inline", GetParam(), 0);
    ASSERT_EQ(inline_run.size(), 2u);
    for (double l : inline_run) EXPECT_TRUE(std::isfinite(l));
    EXPECT_EQ(run("prefetch", GetParam(), 1), inline_run);
    EXPECT_TRUE(fs::exists(dir / "prefetch" / "model.safetensors"));
    if (on_cuda()) {
        const std::vector<double> cpu = run("cpu", Backend::cpu, 0);
        EXPECT_NEAR(inline_run[0], cpu[0], 1e-4);
        EXPECT_NEAR(inline_run[1], cpu[1], 1e-2);
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
}

ISS_INSTANTIATE_BACKENDS(TrainOnDevice);

// End to end: a tiny U-Net trained for 300 steps on one newborn phantom (at 2 mm, with the
// segmentation reduced to background, left/right white matter, cortex and ventricles) reaches
// a mean Dice of 0.15 on synthetic samples of a held-out phantom (another seed). Predicting
// background everywhere scores about 0.08 there (background Dice ~0.55, the rest 0); this run
// measured about 0.25 (28 s on 2 cores).
TEST_F(Train, TinyModelLearnsPhantomAnatomy) {
    DeviceContext cpu;
    auto at_2mm = [&](const LabelMap& m) {
        Grid g;
        g.dim = {m.nx() / 2, m.ny() / 2, m.nz() / 2};
        g.affine = m.grid.affine * Mat4::scaling(2, 2, 2);
        return resample_labels(cpu, m, g);
    };
    fs::create_directories(path("maps"));
    fs::create_directories(path("held_out"));
    write_labels(path("maps/p1.nii.gz"), at_2mm(make_phantom(0, 1)));
    write_labels(path("held_out/p2.nii.gz"), at_2mm(make_phantom(0, 2)));
    std::FILE* f = std::fopen(path("seg7.json").c_str(), "w");
    std::fputs(R"({"segmentation_labels": [0, 2, 3, 4, 41, 42, 43]})", f);
    std::fclose(f);
    TrainOptions o;
    o.labels = path("maps");
    o.model_dir = path("model");
    o.config_path = path("seg7.json");
    o.steps = 300;
    o.steps_per_epoch = 300;
    o.shape = 48;
    o.unet.levels = 3;
    o.unet.features = 8;
    o.lr = 3e-3f;
    o.validation_labels = path("held_out");
    o.validate_every = 300;
    o.validation_samples = 2;
    const std::vector<double> losses = train(o);
    const CsvTable validation = read_csv(path("model/validation.csv"));
    ASSERT_EQ(validation.rows.size(), 1u);
    const double dice = csv_to_number(validation.rows[0][validation.column("mean_dice")], "mean_dice");
    EXPECT_GT(dice, 0.15) << "held-out mean Dice after 300 steps";
    double early = 0, late = 0;
    for (int i = 0; i < 50; ++i) {
        early += losses[size_t(i)] / 50;
        late += losses[losses.size() - 1 - size_t(i)] / 50;
    }
    EXPECT_LT(late, early - 0.2) << "the training loss should fall";
    EXPECT_TRUE(fs::exists(path("model/loss.png")));
}

TEST_F(Train, BadInputIsRefusedBeforeAnyStep) {
    auto expect_refused = [&](const TrainOptions& o, const std::string& fragment) {
        try {
            Trainer t(o);
            FAIL() << "accepted; expected an error about " << fragment;
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
        }
    };
    fs::create_directories(path("empty"));
    TrainOptions o = tiny(path("m1"), 2);
    o.labels = path("empty");
    expect_refused(o, "no NIfTI files");
    EXPECT_FALSE(fs::exists(path("m1"))) << "the model directory was created for a failed start";

    // A map with a label outside the preset.
    LabelMap bad = make_phantom(0, 2);
    bad.data[bad.data.size() / 2] = 99;
    fs::create_directories(path("bad_maps"));
    write_labels(path("bad_maps/bad.nii.gz"), bad);
    o = tiny(path("m2"), 2);
    o.labels = path("bad_maps");
    expect_refused(o, "label value 99");

    // A model directory holding another architecture.
    train(tiny(path("existing"), 1));
    TrainOptions other = tiny(path("existing"), 3);
    other.unet.features = 6;
    other.resume = true;
    expect_refused(other, "different architecture");
    expect_refused(tiny(path("existing"), 3), "already holds a model");
    TrainOptions nothing = tiny(path("nothing"), 3);
    nothing.resume = true;
    expect_refused(nothing, "no model.json");
    TrainOptions zero = tiny(path("m3"), 0);
    expect_refused(zero, "--steps");
}

}  // namespace
}  // namespace iss
