// Training through the Trainer: resuming (after --steps or an interruption) repeats the
// uninterrupted run exactly, the prefetching thread changes nothing, a tiny model learns
// phantom anatomy, and bad input is refused before any step.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "io/csv.h"
#include "io/nifti.h"
#include "io/orientation.h"
#include "io/resample.h"
#include "io/safetensors.h"
#include "kernels/common/error.h"
#include "kernels/common/version.h"
#include "nn/checkpoint.h"
#include "post/dice.h"
#include "predict/predictor.h"
#include "synth/generator.h"
#include "synth/labels.h"
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

    // A phantom at 2 mm (a quarter of the voxels: quick to train on).
    static LabelMap at_2mm(const LabelMap& m) {
        DeviceContext cpu;
        Grid g;
        g.dim = {m.nx() / 2, m.ny() / 2, m.nz() / 2};
        g.affine = m.grid.affine * Mat4::scaling(2, 2, 2);
        return resample_labels(cpu, m, g);
    }

    // seg7.json: the generator segments seven labels (background, white matter, cortex and
    // lateral ventricle on each side), which a tiny network learns in a few hundred steps.
    std::string seven_labels_config() const {
        std::FILE* f = std::fopen(path("seg7.json").c_str(), "w");
        std::fputs(R"({"segmentation_labels": [0, 2, 3, 4, 41, 42, 43]})", f);
        std::fclose(f);
        return path("seg7.json");
    }

    // The learning tests' run on maps/ (2 mm phantoms, seven labels, 48^3 crops, a small
    // network, a high learning rate), for `steps`.
    TrainOptions phantom_options(int64_t steps) const {
        TrainOptions o;
        o.labels = path("maps");
        o.model_dir = path("model");
        o.config_path = seven_labels_config();
        o.steps = steps;
        o.steps_per_epoch = steps;
        o.shape = 48;
        o.unet.levels = 3;
        o.unet.features = 8;
        o.lr = 3e-3f;
        return o;
    }

    // The learning check, the same in every precision: a tiny U-Net trained for 450 steps on two
    // newborn phantoms (at 2 mm, stored LAS and PSR as real maps may be) reaches a mean Dice of
    // 0.10 over the structures (background left out) on synthetic samples of a held-out phantom
    // (another seed, stored LAS, in held_out/), and its training loss falls by 0.2. Predicting
    // background everywhere scores 0 there. The bits follow the thread count: over 1 and 2 threads
    // and both precisions the held-out Dice ranged 0.19-0.29 (with background in the mean, as it
    // was counted before, 0.27-0.35; at 300 steps that was 0.14-0.28, the model's spread, not the
    // 2 validation samples': 8 samples gave the same).
    void expect_learns_phantom_anatomy(Precision precision) {
        fs::create_directories(path("maps"));
        fs::create_directories(path("held_out"));
        write_labels(path("maps/p1.nii.gz"), reorient(at_2mm(make_phantom(0, 1)), "LAS"));
        write_labels(path("maps/p3.nii.gz"), reorient(at_2mm(make_phantom(0, 4)), "PSR"));
        write_labels(path("held_out/p2.nii.gz"), reorient(at_2mm(make_phantom(0, 2)), "LAS"));
        TrainOptions o = phantom_options(450);
        o.precision = precision;
        o.validation_labels = path("held_out");
        o.validate_every = o.steps;
        o.validation_samples = 2;
        const std::vector<double> losses = train(o);
        const CsvTable validation = read_csv(path("model/validation.csv"));
        ASSERT_EQ(validation.rows.size(), 1u);
        const double dice = csv_to_number(validation.rows[0][validation.column("mean_dice")], "mean_dice");
        EXPECT_GT(dice, 0.10) << "held-out mean Dice after 450 steps";
        double early = 0, late = 0;
        for (int i = 0; i < 50; ++i) {
            early += losses[size_t(i)] / 50;
            late += losses[losses.size() - 1 - size_t(i)] / 50;
        }
        std::printf("%s training: held-out mean Dice %.3f; mean loss of the first 50 steps %.3f, of the last 50 %.3f\n",
                    precision_name(precision), dice, early, late);
        EXPECT_LT(late, early - 0.2) << "the training loss should fall";
        EXPECT_TRUE(fs::exists(path("model/loss.png")));
    }

    static fs::path maps_;
};

fs::path Train::maps_;

// bf16 keeps determinism: the same run twice gives the same losses, bit for bit, and resuming
// repeats the uninterrupted run (bf16 activations and gradients, fp32 weights and Adam).
TEST_F(Train, Bf16RunsRepeatBitForBit) {
    DeviceContext cpu;
    if (!bf16_is_native(cpu)) GTEST_SKIP() << "bf16 is not native on this CPU: bf16 training not run";
    auto bf16 = [&](const std::string& dir, int64_t steps) {
        TrainOptions o = tiny(path(dir), steps);
        o.precision = Precision::bf16;
        return o;
    };
    const std::vector<double> first = train(bf16("a", 5));
    ASSERT_EQ(first.size(), 5u);
    EXPECT_EQ(train(bf16("b", 5)), first);
    train(bf16("c", 3));
    TrainOptions rest = bf16("c", 5);
    rest.resume = true;
    EXPECT_EQ(train(rest), first);
    // And it is not the fp32 run.
    EXPECT_NE(train(tiny(path("d"), 5)), first);
}

TEST_F(Train, ResumeAfterStepsOrInterruptionRepeatsTheUninterruptedRun) {
    const std::vector<double> straight = train(tiny(path("straight"), 7));
    ASSERT_EQ(straight.size(), 7u);
    for (double l : straight) ASSERT_TRUE(std::isfinite(l));

    // Stopped by --steps at 4, then resumed to 7.
    train(tiny(path("by_steps"), 4));
    TrainOptions more = tiny(path("by_steps"), 7);
    more.resume = true;
    EXPECT_EQ(train(more), straight);

    // Interrupted (as by SIGINT) after step 2: a checkpoint at 2, then resumed to 7. A killed
    // run's temporary file is removed by the resume (a user's own file of a similar name stays).
    const std::vector<double> first = train(tiny(path("interrupted"), 7), 2);
    EXPECT_EQ(first.size(), 2u);
    EXPECT_TRUE(fs::exists(path("interrupted/model.safetensors")));
    std::FILE* stale = std::fopen(path("interrupted/model.json.tmp-4242").c_str(), "w");
    std::fclose(stale);
    std::FILE* theirs = std::fopen(path("interrupted/notes.txt.tmp-1").c_str(), "w");
    std::fclose(theirs);
    TrainOptions rest = tiny(path("interrupted"), 7);
    rest.resume = true;
    EXPECT_EQ(train(rest), straight);
    EXPECT_FALSE(fs::exists(path("interrupted/model.json.tmp-4242")));
    EXPECT_TRUE(fs::exists(path("interrupted/notes.txt.tmp-1")));
    // The files a user expects.
    for (const char* f : {"model.json", "model.optimizer.safetensors", "training_log.csv"})
        EXPECT_TRUE(fs::exists(path(std::string("interrupted/") + f))) << f;
}

// After the weighted-L2 steps the Dice loss starts with a fresh Adam (SynthSeg compiles its Dice
// model with a new optimizer): its step count starts again, and a run stopped exactly at the
// switch resumes into the uninterrupted run.
TEST_F(Train, TheDiceLossStartsWithAFreshAdam) {
    TrainOptions o = tiny(path("wl2_straight"), 5);
    o.wl2_epochs = 1;  // 3 steps of weighted L2 (steps_per_epoch 3), then 2 of Dice
    const std::vector<double> straight = train(o);
    ASSERT_EQ(straight.size(), 5u);
    auto adam_step = [&](const std::string& dir) {
        return read_safetensors(path(dir + "/model.optimizer.safetensors")).metadata.at("adam_step");
    };
    EXPECT_EQ(adam_step("wl2_straight"), "2");
    // The log says which loss each row holds (an L2 of ~25 sat unmarked beside Dice losses <= 1).
    const CsvTable log = read_csv(path("wl2_straight/training_log.csv"));
    const size_t function = log.column("loss_function");
    ASSERT_EQ(log.rows.size(), 5u);
    for (size_t i = 0; i < 5; ++i)
        EXPECT_EQ(log.rows[i][function], i < 3 ? "weighted_l2" : "soft_dice") << "step " << i + 1;
    TrainOptions first = o;
    first.model_dir = path("wl2_resumed");
    first.steps = 3;
    // A run of weighted-L2 steps only is said (one ran to its end without a Dice step, unsaid).
    ::testing::internal::CaptureStderr();
    train(first);
    EXPECT_NE(::testing::internal::GetCapturedStderr().find(
                  "--wl2-epochs 1 of --steps-per-epoch 3 are 3 weighted-L2 steps, all of the --steps 3: the soft "
                  "Dice loss never runs"),
              std::string::npos);
    EXPECT_EQ(adam_step("wl2_resumed"), "3") << "the weighted-L2 steps' own count";
    // One Dice step after the switch, fresh moments are one gradient's: m = (1 - b1) g and
    // v = (1 - b2) g^2, so m^2 / v = 0.01 / 0.001 = 10 wherever g != 0 (carried moments are not).
    TrainOptions one = o;
    one.model_dir = path("wl2_one");
    one.steps = 4;
    train(one);
    const SafetensorsFile state = read_safetensors(path("wl2_one/model.optimizer.safetensors"));
    const std::vector<float> m = state.at("adam.m").as_f32(), v = state.at("adam.v").as_f32();
    int64_t moved = 0;
    for (size_t i = 0; i < m.size(); ++i)
        if (v[i] > 1e-30f) {
            ++moved;
            ASSERT_NEAR(double(m[i]) * m[i] / v[i], 10.0, 1e-3) << "parameter " << i;
        }
    EXPECT_GT(moved, 0);
    TrainOptions rest = o;
    rest.model_dir = path("wl2_resumed");
    rest.resume = true;
    EXPECT_EQ(train(rest), straight);
}

// The same map stored RAS and LAS trains the same model (the same losses and weights, bit for
// bit): training sees every map in the RAS frame. Both models then segment a scan (itself stored
// LAS) identically in world space.
TEST_F(Train, StoredVoxelOrderDoesNotChangeTheModel) {
    fs::create_directories(path("las"));
    write_labels(path("las/phantom_0mo.nii.gz"), reorient(read_labels((maps_ / "phantom_0mo.nii.gz").string()), "LAS"));
    const std::vector<double> ras_losses = train(tiny(path("ras_model"), 3));
    const std::vector<double> las_losses = train(tiny_options(path("las"), path("las_model"), 3));
    EXPECT_EQ(las_losses, ras_losses);
    // The same tensors (the files differ only in their run stamps).
    const SafetensorsFile las = read_safetensors(path("las_model/model.safetensors"));
    const SafetensorsFile ras = read_safetensors(path("ras_model/model.safetensors"));
    ASSERT_EQ(las.tensors.size(), ras.tensors.size());
    for (const SafeTensor& t : las.tensors) EXPECT_EQ(t.as_f32(), ras.at(t.name).as_f32()) << t.name;

    // A scan of another phantom at 2 mm, segmented at its own resolution (quicker).
    const LabelMap one_mm = make_phantom(0, 2);
    Grid coarse;
    coarse.dim = {one_mm.nx() / 2, one_mm.ny() / 2, one_mm.nz() / 2};
    coarse.affine = one_mm.grid.affine * Mat4::scaling(2, 2, 2);
    DeviceContext cpu;
    const LabelMap anatomy = resample_labels(cpu, one_mm, coarse);
    Image scan(anatomy.grid);
    for (size_t v = 0; v < scan.data.size(); ++v) scan.data[v] = float(anatomy.data[v] % 7) * 20.0f;
    const Image scan_las = reorient(scan, "LAS");
    PredictOptions options;
    options.resample_to_model = false;
    const Segmentation a = Predictor(path("ras_model"), options).predict(scan_las, "scan");
    const Segmentation b = Predictor(path("las_model"), options).predict(scan_las, "scan");
    EXPECT_GT(std::count_if(a.segmentation.data.begin(), a.segmentation.data.end(), [](int32_t l) { return l != 0; }), 0);
    EXPECT_EQ(a.segmentation.data, b.segmentation.data);
}

// model.json says what the network saw: the RAS frame and the range of the maps' voxel sizes
// (here a 1 mm map and one at 2 x 1 x 1.5 mm), and train's summary line says it too.
TEST_F(Train, RecordsTheFrameAndTheVoxelSizeRange) {
    fs::create_directories(path("mixed"));
    const LabelMap one_mm = make_phantom(0, 1);
    write_labels(path("mixed/a.nii.gz"), reorient(one_mm, "PSR"));
    DeviceContext cpu;
    Grid coarse;
    coarse.dim = {one_mm.nx() / 2, one_mm.ny(), one_mm.nz() * 2 / 3};
    coarse.affine = one_mm.grid.affine * Mat4::scaling(2, 1, 1.5);
    write_labels(path("mixed/b.nii.gz"), reorient(resample_labels(cpu, one_mm, coarse), "LIA"));
    Trainer trainer(tiny_options(path("mixed"), path("mixed_model"), 1));
    EXPECT_NE(trainer.maps_summary().find("2 label maps (stored LIA: 1, PSR: 1), brought to RAS"), std::string::npos)
        << trainer.maps_summary();
    EXPECT_NE(trainer.maps_summary().find("voxel size 1-2 x 1 x 1-1.5 mm"), std::string::npos) << trainer.maps_summary();
    // A crop one map clips is said with that map (all samples take the smallest map's crop).
    TrainOptions larger = tiny_options(path("mixed"), path("mixed_larger"), 1);
    larger.shape = 64;
    const std::string summary = Trainer(larger).maps_summary();
    EXPECT_NE(summary.find(cat("crops of 60x64x64 voxels, clipped from 64x64x64 by ", path("mixed/b.nii.gz"),
                               " (60x136x74 voxels in RAS order)")),
              std::string::npos)
        << summary;
    std::atomic<bool> stop{false};
    trainer.run(stop);
    const ModelSpec spec = load_model_spec(path("mixed_model/model.safetensors"));
    EXPECT_EQ(spec.preprocessing["orientation"], "RAS");
    // Scans are padded as the crops were rounded: to 2^levels (SPEC.md 3.3, 6.2).
    EXPECT_EQ(spec.preprocessing["size_multiple"], spec.unet.reference_multiple());
    EXPECT_EQ(spec.unet.reference_multiple(), 2 * spec.unet.size_multiple());
    const nlohmann::json json = nlohmann::json::parse(test::read_text(path("mixed_model/model.json")));
    EXPECT_EQ(json["written_by"], std::string("infant-synthseg ") + build_version()) << "the code that made it";
    const auto& range = spec.preprocessing["voxel_size_range_mm"];
    for (int d = 0; d < 3; ++d) {
        EXPECT_NEAR(range["min"][size_t(d)].get<double>(), 1.0, 1e-9) << d;
        EXPECT_NEAR(range["max"][size_t(d)].get<double>(), (std::array<double, 3>{2, 1, 1.5})[size_t(d)], 1e-9) << d;
    }
    EXPECT_FALSE(spec.preprocessing.contains("voxel_size_mm"));
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

// bf16 on each backend where it is native, with 8 features so that on CUDA the U-Net's inner
// convolutions run cuDNN's bf16 configuration (nn/conv_cudnn.cpp): two steps repeat bit for bit,
// and the first step's loss (before any update) is the same backend's fp32 loss within bf16's
// rounding through the network (measured on the CPU: 8e-6; bound 1e-3).
TEST_P(TrainOnDevice, Bf16StepsRepeatAndFollowFp32) {
    if (!bf16_is_native(ctx())) GTEST_SKIP() << "bf16 is not native on this device: bf16 training not run";
    const fs::path dir = test::unique_temp_dir(std::string("train-bf16-") + (on_cuda() ? "cuda" : "cpu"));
    fs::create_directories(dir / "maps");
    write_labels((dir / "maps" / "phantom.nii.gz").string(), make_phantom(0, 1));
    auto run = [&](const std::string& name, Precision precision) {
        TrainOptions o = tiny_options((dir / "maps").string(), (dir / name).string(), 2);
        o.device = Device{GetParam(), 0};
        o.unet.features = 8;
        o.precision = precision;
        Trainer trainer(o);
        std::atomic<bool> stop{false};
        trainer.run(stop);
        return trainer.losses();
    };
    const std::vector<double> bf16 = run("bf16", Precision::bf16);
    ASSERT_EQ(bf16.size(), 2u);
    for (double l : bf16) EXPECT_TRUE(std::isfinite(l));
    EXPECT_EQ(run("bf16-again", Precision::bf16), bf16);
    const std::vector<double> fp32 = run("fp32", Precision::fp32);
    std::printf("first step's loss on %s: bf16 %.6f, fp32 %.6f\n", on_cuda() ? "cuda" : "cpu", bf16[0], fp32[0]);
    EXPECT_NEAR(bf16[0], fp32[0], 1e-3);
    EXPECT_NE(bf16[0], fp32[0]) << "bf16 ran as fp32";
    std::error_code ec;
    fs::remove_all(dir, ec);
}

ISS_INSTANTIATE_BACKENDS(TrainOnDevice);

// End to end: the learning check in fp32 (expect_learns_phantom_anatomy; the segmentation
// reduced to background, left/right white matter, cortex and ventricles).
// Then left and right: `predict` on a synthetic scan of the held-out map, the scan itself stored
// LAS, puts the sided structures on their own sides: they score at least as well as on the same
// scan with its header edited to RAS (what the network would see had training used the stored
// voxel order: the world mirrored), and comparing each with its twin scores near zero. Measured
// (32 s on 2 cores): held-out mean Dice 0.2+, sided Dice 0.236 with the true header, 0.013 with
// the edited one, 0.013 with the sides swapped. With the maps fed in their stored voxel order (the
// bug this guards against) the test fails: the header-edited scan scored better (0.323 vs 0.303).
TEST_F(Train, TinyModelLearnsPhantomAnatomy) {
    DeviceContext cpu;
    expect_learns_phantom_anatomy(Precision::fp32);
    if (HasFatalFailure()) return;

    // A synthetic scan of the held-out map and its truth (in the training frame), then the scan
    // stored LAS with a true header, and the same voxels with the header edited to RAS.
    GeneratorConfig config = load_config({"infant-t1"}, path("seg7.json"));
    config.output_shape = {48, 48, 48};
    Generator gen(cpu, config, {make_training_map(read_labels(path("held_out/p2.nii.gz")), config, "p2")}, 11);
    gen.generate(0);
    const LabelMap truth = gen.labels_host();
    const Image scan_las = reorient(gen.image_host(), "LAS");
    Image scan_edited = scan_las;
    scan_edited.grid.affine = Mat4::scaling(2, 2, 2);
    Predictor predictor(path("model"), PredictOptions{});
    const LabelMap seg = reorient(predictor.predict(scan_las, "scan_las").segmentation, "RAS");
    const LabelMap seg_edited = predictor.predict(scan_edited, "scan_edited").segmentation;  // LAS voxel order
    const LabelMap truth_las = reorient(truth, "LAS");
    LabelMap seg_swapped = seg;
    for (int32_t& l : seg_swapped.data) l = labels::lr_twin(l);
    const std::vector<int32_t> sided{2, 3, 41, 42};  // white matter and cortex, left and right
    auto mean_sided_dice = [&](const LabelMap& pred, const LabelMap& reference) {
        const auto overlaps = label_overlaps(pred, reference);
        double sum = 0;
        for (int32_t l : sided) sum += overlaps.count(l) ? iss::dice(overlaps.at(l)) : 0.0;
        return sum / double(sided.size());
    };
    const double correct = mean_sided_dice(seg, truth);
    const double edited = mean_sided_dice(seg_edited, truth_las);
    const double swapped = mean_sided_dice(seg_swapped, truth);
    EXPECT_GE(correct, edited) << "sided structures: true header " << correct << ", header edited to RAS " << edited;
    EXPECT_GT(correct, 0.12) << "sided structures found where they are";
    EXPECT_LT(swapped, 0.25 * correct) << "left scored against right: " << swapped << " (sides right: " << correct
                                       << ")";
    std::printf("sided Dice: true header %.3f, header edited %.3f, sides swapped %.3f\n", correct, edited, swapped);

    // The same model in bf16 (where it is native): nearly every voxel labelled as in fp32.
    PredictOptions bf16;
    bf16.precision = Precision::bf16;
    if (bf16_is_native(cpu)) {
        const LabelMap seg_bf16 = reorient(Predictor(path("model"), bf16).predict(scan_las, "scan_las").segmentation, "RAS");
        size_t same = 0;
        for (size_t v = 0; v < seg.data.size(); ++v) same += seg.data[v] == seg_bf16.data[v];
        const double agreement = double(same) / double(seg.data.size());
        EXPECT_GT(agreement, 0.97) << "bf16 and fp32 segmentations of one scan";
        std::printf("bf16 predict: %.4f of the voxels labelled as in fp32\n", agreement);
    }
}

// Training in bf16 (where it is native) passes the same learning check with the same bounds as
// fp32 (issue 12), and model.json says it ran in bf16.
TEST_F(Train, Bf16TrainingLearnsAndIsRecorded) {
    DeviceContext cpu;
    if (!bf16_is_native(cpu)) GTEST_SKIP() << "bf16 is not native on this CPU: bf16 training not run";
    expect_learns_phantom_anatomy(Precision::bf16);
    if (HasFatalFailure()) return;
    EXPECT_EQ(load_model_spec(path("model/model.safetensors")).training.value("precision", ""), "bf16");
    // The weights are fp32 whatever the arithmetic: the bf16-trained model predicts in fp32,
    // finding structures, and nearly as it does in bf16.
    const GeneratorConfig config = load_config({"infant-t1"}, path("seg7.json"));
    Generator gen(cpu, config, {make_training_map(read_labels(path("maps/p1.nii.gz")), config, "p1")}, 5);
    gen.generate(0);
    const Image scan = gen.image_host();
    PredictOptions bf16;
    bf16.precision = Precision::bf16;
    const LabelMap in_fp32 = Predictor(path("model"), PredictOptions{}).predict(scan, "scan").segmentation;
    const LabelMap in_bf16 = Predictor(path("model"), bf16).predict(scan, "scan").segmentation;
    size_t same = 0, foreground = 0;
    for (size_t v = 0; v < in_fp32.data.size(); ++v) {
        same += in_fp32.data[v] == in_bf16.data[v];
        foreground += in_fp32.data[v] != 0;
    }
    EXPECT_GT(foreground, in_fp32.data.size() / 20) << "the fp32 prediction finds the brain";
    EXPECT_GT(double(same) / double(in_fp32.data.size()), 0.97) << "fp32 and bf16 predictions of one model";
}

// A resumed run continues the samples of the run it resumes: another preset, generator
// parameter, seed, batch, crop or weighted-L2 schedule is refused, naming what differs; the
// learning rate, precision and epoch length may change, each rate or precision change kept in
// model.json's history after the rate the run began with; new maps widen the recorded voxel
// sizes rather than replace them.
TEST_F(Train, ResumeKeepsWhatDrawsTheSamplesAndRecordsWhatChanged) {
    train(tiny(path("first"), 2));
    auto expect_refused = [&](TrainOptions o, const std::string& fragment) {
        o.resume = true;
        try {
            Trainer t(o);
            FAIL() << "resumed with a change; expected an error about " << fragment;
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
        }
    };
    std::FILE* f = std::fopen(path("blur.json").c_str(), "w");
    std::fputs(R"({"blur_range": 1.5})", f);
    std::fclose(f);
    const std::vector<std::pair<std::function<void(TrainOptions&)>, std::string>> changes = {
        {[](TrainOptions& o) { o.preset = "infant-t2"; },
         "was trained with preset \"infant-t1\", this run asks for \"infant-t2\""},
        {[](TrainOptions& o) { o.seed = 7; }, "was trained with seed 5"},
        {[](TrainOptions& o) { o.batch = 2; }, "batch 1"},
        {[](TrainOptions& o) { o.shape = 64; }, "crop [32,32,32]"},
        {[](TrainOptions& o) { o.wl2_epochs = 1; }, "weighted-L2 loss for its first 0 steps"},
        {[&](TrainOptions& o) { o.config_path = path("blur.json"); }, "the generator parameter 'blur_range' 1.03"}};
    for (const auto& [change, fragment] : changes) {
        TrainOptions o = tiny(path("first"), 4);
        change(o);
        expect_refused(o, fragment);
    }

    // The learning rate changes, and the epoch length (without a weighted-L2 schedule it only
    // spaces the checkpoints): the run goes on, and model.json says from which step.
    TrainOptions o = tiny(path("first"), 3);
    o.resume = true;
    o.lr = 1e-4f;
    o.steps_per_epoch = 1;
    train(o);
    const ModelSpec spec = load_model_spec(path("first/model.safetensors"));
    ASSERT_TRUE(spec.training.contains("history")) << spec.training.dump();
    ASSERT_EQ(spec.training["history"].size(), 2u);
    EXPECT_EQ(spec.training["history"][0]["from_step"], 0);
    EXPECT_NEAR(spec.training["history"][0]["lr"].get<double>(), 1e-3, 1e-9) << "the rate of the first steps";
    EXPECT_EQ(spec.training["history"][1]["from_step"], 2);
    EXPECT_NEAR(spec.training["history"][1]["lr"].get<double>(), 1e-4, 1e-9);
    EXPECT_EQ(spec.training["history"][0]["steps_per_epoch"], tiny(path("first"), 2).steps_per_epoch)
        << "the epoch length is recorded too";
    EXPECT_EQ(spec.training["history"][1]["steps_per_epoch"], 1);
    EXPECT_EQ(spec.training["generator"]["preset"], "infant-t1") << "the generator parameters are recorded";

    // Resumed to `steps` on maps of 2 mm voxels: the record then says the network has seen
    // `smallest` to 2 mm.
    fs::create_directories(path("coarse"));
    write_labels(path("coarse/p.nii.gz"), at_2mm(make_phantom(0, 1)));
    auto expect_sizes_after_coarse_resume = [&](int steps, double smallest) {
        TrainOptions coarse = tiny_options(path("coarse"), path("first"), steps);
        coarse.resume = true;
        coarse.lr = 1e-4f;
        train(coarse);
        const ModelSpec resumed = load_model_spec(path("first/model.safetensors"));
        const nlohmann::json& range = resumed.preprocessing["voxel_size_range_mm"];
        for (size_t d = 0; d < 3; ++d) {
            EXPECT_NEAR(range["min"][d].get<double>(), smallest, 1e-9) << d;
            EXPECT_NEAR(range["max"][d].get<double>(), 2.0, 1e-9) << d;
        }
    };
    expect_sizes_after_coarse_resume(4, 1.0);  // after 1 mm maps: both

    // An older record's one size (voxel_size_mm) counts as well (a resume dropped it).
    nlohmann::json older = nlohmann::json::parse(test::read_text(path("first/model.json")));
    older["preprocessing"].erase("voxel_size_range_mm");
    older["preprocessing"]["voxel_size_mm"] = {0.5, 0.5, 0.5};
    test::write_edited_record(path("first/model.json"), older);
    expect_sizes_after_coarse_resume(5, 0.5);
}

// Validation maps smaller than the training crop (newborn maps checking a model trained on
// older ones) are cropped on their own: every validation sample has the validation maps' common
// crop. (They took the training crop's shape from their first sample and read the others as
// that many voxels.) A configuration's output_shape is the crop when --shape is not given, and a
// weighted-L2 schedule too long to count in steps stays weighted L2.
TEST_F(Train, ValidationMapsHaveTheirOwnCropAndTheConfigurationItsShape) {
    fs::create_directories(path("val"));
    const LabelMap whole = read_labels((maps_ / "phantom_0mo.nii.gz").string());
    Grid g = whole.grid;
    g.dim = {20, 24, 20};
    const int64_t x0 = whole.nx() / 2 - 10, y0 = whole.ny() / 2 - 12, z0 = whole.nz() / 2 - 10;
    Mat4 shift;
    shift.m[0][3] = double(x0), shift.m[1][3] = double(y0), shift.m[2][3] = double(z0);
    g.affine = whole.grid.affine * shift;
    LabelMap small(g);
    for (int64_t k = 0; k < 20; ++k)
        for (int64_t j = 0; j < 24; ++j)
            for (int64_t i = 0; i < 20; ++i) small.at(i, j, k) = whole.at(x0 + i, y0 + j, z0 + k);
    write_labels(path("val/a_small.nii.gz"), small);
    write_labels(path("val/b_whole.nii.gz"), whole);
    TrainOptions o = tiny(path("validated"), 2);
    o.validation_labels = path("val");
    o.validate_every = 2;
    o.validation_samples = 4;
    train(o);
    const CsvTable validation = read_csv(path("validated/validation.csv"));
    ASSERT_EQ(validation.rows.size(), 1u);

    std::FILE* f = std::fopen(path("shape.json").c_str(), "w");
    std::fputs(R"({"output_shape": [40, 32, 36]})", f);
    std::fclose(f);
    o = tiny(path("configured"), 1);
    o.shape = 0;
    o.config_path = path("shape.json");
    train(o);
    EXPECT_EQ(load_model_spec(path("configured/model.safetensors")).training["crop"],
              nlohmann::json::array({40, 32, 36}));

    o = tiny(path("wl2"), 1);
    o.wl2_epochs = std::numeric_limits<int64_t>::max();
    EXPECT_GT(train(o).front(), 1.0) << "a Dice loss (at most 1): the schedule overflowed";
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
    expect_refused(o, "no volume files");
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

    // A configuration's crop below the preset's multiple (32) but not below the network's: fine.
    std::ofstream(path("small_crop.json")) << R"({"output_shape": [16, 16, 16]})";
    TrainOptions small = tiny(path("m5"), 1);
    small.config_path = path("small_crop.json");
    small.shape = 0;
    ASSERT_LE(small.unet.reference_multiple(), 16);
    EXPECT_NO_THROW(Trainer{small});

    // A checkpoint's file name taken by a directory: refused now, not at the first checkpoint
    // an epoch later, which left a half-written model.
    fs::create_directories(path("m4/training_log.csv"));
    expect_refused(tiny(path("m4"), 2), "training_log.csv");
    EXPECT_EQ(std::distance(fs::directory_iterator(path("m4")), fs::directory_iterator()), 1);

    // A second train on a model directory another one is writing (the lock is per open file, so
    // a second Trainer in this process is refused as another process would be).
    {
        Trainer writing(tiny(path("busy"), 2));
        expect_refused(tiny(path("busy"), 2), "another train is writing this model directory (process ");
        TrainOptions resume = tiny(path("existing"), 3);
        resume.resume = true;
        int adopted = 0;
        resume.adopt_recorded = [&adopted](const ModelSpec& recorded, TrainOptions&) {
            adopted += int(recorded.labels.size());
        };
        Trainer resuming(resume);
        EXPECT_GT(adopted, 0) << "the recorded model handed to the options";
        adopted = 0;
        expect_refused(resume, "another train is writing this model directory");
        EXPECT_EQ(adopted, 0) << "a model another train is writing is locked before it is read";
        // A new run there is told of the run writing it first (it was told to pass --resume).
        expect_refused(tiny(path("existing"), 3), "existing: another train is writing this model directory (process ");
    }
    TrainOptions after = tiny(path("existing"), 3);
    after.resume = true;
    EXPECT_NO_THROW(Trainer{after}) << "the lock goes with the run that held it";

    // Adam's moments are checked as the weights are: a negative second moment would put NaN
    // into the weights at the first step, and into the checkpoint after it.
    fs::copy(path("existing"), path("tampered"));
    const SafetensorsFile optimizer = read_safetensors(path("tampered/model.optimizer.safetensors"));
    std::vector<SafeTensor> tensors = optimizer.tensors;
    for (SafeTensor& t : tensors)
        if (t.name == "adam.v") {
            std::vector<float> v = t.as_f32();
            v[3] = -1.0f;
            t = SafeTensor::f32(t.name, t.shape, v);
        }
    write_safetensors(path("tampered/model.optimizer.safetensors"), tensors, optimizer.metadata);
    TrainOptions tampered = tiny(path("tampered"), 3);
    tampered.resume = true;
    expect_refused(tampered, "adam.v holds the negative variance -1 at element 3");
}

}  // namespace
}  // namespace iss
