// Prediction (predict/predictor.h and the predict command) with a small untrained model: the
// geometry round trips (any orientation in, the same world-space answer out), resampling to
// the model's voxel size (only outside its trained range) and back, the flip augmentation's
// symmetry in any model frame, volumes in mm^3, the largest-component rule, and bad input file
// by file.
#include <gtest/gtest.h>
#include <nifti/nifti1.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/csv.h"
#include "io/nifti.h"
#include "io/orientation.h"
#include "io/resample.h"
#include "kernels/common/error.h"
#include "kernels/common/philox.h"
#include "kernels/synth/blur.h"
#include "nn/checkpoint.h"
#include "post/components.h"
#include "predict/postprocess.h"
#include "predict/predictor.h"
#include "synth/labels.h"
#include "tests/backends.h"
#include "tests/small_model.h"
#include "tests/test_util.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

// A 2-level, 4-feature U-Net with the 34 infant labels, Glorot-initialised, saved in `dir`:
// untrained, but every geometric property of the pipeline shows on it.
// `background_bias` raises the background logit, so that foreground breaks into pieces.
std::string make_test_model(const fs::path& dir, int in_channels = 1, double voxel = 1.0, float background_bias = 0,
                            int features = 4) {
    DeviceContext ctx;
    ModelSpec spec;
    spec.unet.levels = 2;
    spec.unet.features = features;
    spec.unet.in_channels = in_channels;
    spec.unet.classes = int(labels::segmentation_labels().size());
    spec.labels = labels::segmentation_labels();
    spec.preprocessing = {{"orientation", "RAS"}, {"voxel_size_mm", {voxel, voxel, voxel}}, {"size_multiple", 2}};
    ParamStore params(ctx);
    UNet net(spec.unet, params);
    params.allocate();
    net.initialise(3);
    for (size_t p = 0; p < params.infos().size(); ++p)
        if (params.infos()[p].name == "head.bias") {
            std::vector<float> bias(size_t(spec.unet.classes), 0.0f);
            bias[0] = background_bias;
            params.upload(Param{int(p)}, bias);
        }
    const std::string file = (dir / ("model_" + std::to_string(in_channels) + ".safetensors")).string();
    save_model(file, spec, params);
    return file;
}

// A smooth random image: a few blobs, so the untrained network gives a varied labelling.
Image test_image(const Grid& grid) {
    Image im(grid);
    for (int64_t k = 0; k < im.nz(); ++k)
        for (int64_t j = 0; j < im.ny(); ++j)
            for (int64_t i = 0; i < im.nx(); ++i) {
                float u[4];
                random_uniform4(RandomKey{9, 0, 0}, uint64_t(im.index(i, j, k)), u);
                im.at(i, j, k) = float(100 * std::sin(0.3 * i) * std::cos(0.2 * j + 0.1 * k) + 20 * u[0]);
            }
    return im;
}

Grid grid(std::array<int64_t, 3> dim, const Mat4& affine) {
    Grid g;
    g.dim = dim;
    g.affine = affine;
    return g;
}

// Sets preprocessing.KEY in a model's JSON (value null: removes it).
void set_preprocessing(const std::string& model_file, const std::string& key, const nlohmann::json& value) {
    const std::string json_file = model_json_path(model_file);
    nlohmann::json j = nlohmann::json::parse(test::read_text(json_file));
    if (value.is_null())
        j["preprocessing"].erase(key);
    else
        j["preprocessing"][key] = value;
    test::write_edited_record(json_file, j);
}

class Predict : public test::TempDirTest {
protected:
    std::string make_model(int in_channels = 1, double voxel = 1.0, float background_bias = 0) {
        return make_test_model(dir_, in_channels, voxel, background_bias);
    }
};

TEST_F(Predict, OutputsOnTheInputGridWithTheLargestComponentOnly) {
    Predictor predictor(make_model(), PredictOptions{});
    Mat4 affine = Mat4::scaling(1, 1, 1);
    affine.m[0][3] = -10;
    const Image image = test_image(grid({19, 22, 17}, affine));
    const Segmentation out = predictor.predict(image, "scan.nii.gz");
    EXPECT_EQ(out.segmentation.grid.dim, image.grid.dim);
    EXPECT_TRUE(out.segmentation.grid.affine.approx_equal(image.grid.affine, 1e-9));
    EXPECT_EQ(out.posteriors.frames, 34);
    EXPECT_EQ(out.posteriors.grid.dim, image.grid.dim);
    // Posteriors are probabilities (the smoothing loses a little mass at the volume's border).
    const int64_t n = image.grid.voxels();
    const int64_t centre = image.index(9, 11, 8);
    double sum = 0;
    for (int64_t k = 0; k < 34; ++k) sum += out.posteriors.data[size_t(k * n + centre)];
    EXPECT_NEAR(sum, 1.0, 1e-5);
}

// A model with one side's label but not its twin (the left hemisphere's white matter, 2, without
// 41): the mirrored scan's left white matter is the scan's right one, which no channel holds, so
// the flip averaging is off, said once. (It averaged channel 2 with itself: the right side's
// probability copied onto the left.)
TEST_F(Predict, AModelWithASideLabelButNotItsTwinIsNotFlipAveraged) {
    test::write_small_model(path("left_only"), 11, 1, {0, 2, 3, 4, 17});
    const Image image = test_image(grid({19, 22, 17}, Mat4::identity()));
    ::testing::internal::CaptureStderr();
    Predictor asked_to_flip(path("left_only"), PredictOptions{});
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find(": label 2 is one side's, and its twin 41 is not an output: the scans are segmented without the "
                       "left/right flip averaging (as with --no-flip)"),
              std::string::npos)
        << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    PredictOptions no_flip;
    no_flip.flip = false;
    Predictor unflipped(path("left_only"), no_flip);
    const std::vector<float> alone = unflipped.predict(image, "scan").posteriors.data;
    EXPECT_EQ(asked_to_flip.predict(image, "scan").posteriors.data, alone);

    // What a model trained here records decides: the same outputs with the hemispheres merged
    // (41 learned as 2) mirror, and are averaged without a word; outputs that do not mirror are not.
    auto recording = [&](bool mirrors) {
        set_preprocessing(path("left_only/model.safetensors"), "flip_averaging", mirrors);
        ::testing::internal::CaptureStderr();
        Predictor p(path("left_only"), PredictOptions{});
        return std::pair{::testing::internal::GetCapturedStderr(), p.predict(image, "scan").posteriors.data};
    };
    const auto [merged_err, merged] = recording(true);
    EXPECT_EQ(merged_err, "");
    EXPECT_NE(merged, alone) << "not averaged with the mirror image";
    const auto [unmirrored_err, unmirrored] = recording(false);
    EXPECT_NE(unmirrored_err.find("its outputs do not swap as a left/right flip swaps the structures (its record's "
                                  "flip_averaging): the scans are segmented without the left/right flip averaging"),
              std::string::npos)
        << unmirrored_err;
    EXPECT_EQ(unmirrored, alone);
}

TEST_F(Predict, SegmentationIsTheLargestForegroundComponentOfTheArgmax) {
    // A model biased towards background, so the argmax's foreground falls into several pieces.
    Predictor predictor(make_model(1, 1.0, 0.05f), PredictOptions{});
    const Image image = test_image(grid({19, 22, 17}, Mat4::identity()));
    const Segmentation out = predictor.predict(image, "scan.nii.gz");
    const int64_t n = image.grid.voxels();
    LabelMap argmax(image.grid);
    for (int64_t v = 0; v < n; ++v) {
        int64_t best = 0;
        for (int64_t c = 1; c < 34; ++c)
            if (out.posteriors.data[size_t(c * n + v)] > out.posteriors.data[size_t(best * n + v)]) best = c;
        argmax.data[size_t(v)] = predictor.labels()[size_t(best)];
    }
    LabelMap foreground = argmax;
    for (int32_t& v : foreground.data) v = v != 0;
    const Components pieces = connected_components(foreground);
    ASSERT_GT(pieces.count(), 1) << "the test needs a fragmented foreground to mean anything";
    const Mask kept = largest_foreground_component(argmax);
    int64_t kept_voxels = 0;
    for (int64_t v = 0; v < n; ++v) {
        ASSERT_EQ(out.segmentation.data[size_t(v)], kept.data[size_t(v)] ? argmax.data[size_t(v)] : 0) << "voxel " << v;
        kept_voxels += kept.data[size_t(v)];
    }
    EXPECT_GT(kept_voxels, 0);
    EXPECT_LT(kept_voxels, n) << "background must remain";
}

// The whole pipeline on each backend against the CPU: a CUDA predict gives the CPU's
// posteriors within the convolution's tolerance (docs/KERNELS.md: 1e-4 of the largest |output|
// per layer; posteriors are in [0, 1], so 1e-3 after two levels and the smoothing), and the same
// segmentation but for argmax ties. On the CPU it checks that a second run repeats the first.
// Slabs of 16 rows (the scan is 32 deep once padded), and the whole volume at once: its more than
// 16 rows come through CUDA's 16-row host buffer (UNet::predict) in two pieces.
class PredictOnDevice : public test::BackendTest {};

// Voxels whose label differs between two segmentations of one scan.
int64_t labelled_differently(const Segmentation& a, const Segmentation& b) {
    int64_t differ = 0;
    for (size_t v = 0; v < a.segmentation.data.size(); ++v) differ += a.segmentation.data[v] != b.segmentation.data[v];
    return differ;
}

TEST_P(PredictOnDevice, MatchesTheCpu) {
    const fs::path dir = test::unique_temp_dir(std::string("predict-device-") + (on_cuda() ? "cuda" : "cpu"));
    const std::string model = make_test_model(dir, 1, 1.0, 0.5f);
    const Image image = test_image(grid({18, 20, 21}, Mat4::scaling(1, 1, 1.2)));
    PredictOptions on_cpu;
    const Segmentation want = Predictor(model, on_cpu).predict(image, "scan");
    for (const int64_t slab_depth : {int64_t(16), int64_t(0)}) {
        SCOPED_TRACE(slab_depth ? "slabs" : "whole volume");
        PredictOptions on_device;
        on_device.device = Device{GetParam(), 0};
        on_device.slab_depth = slab_depth;
        const Segmentation got = Predictor(model, on_device).predict(image, "scan");
        ASSERT_EQ(got.posteriors.data.size(), want.posteriors.data.size());
        EXPECT_TRUE(test::all_near(got.posteriors.data, want.posteriors.data, 1e-3));
        EXPECT_LE(labelled_differently(got, want), int64_t(got.segmentation.data.size()) / 1000);
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
}

// bf16 on each backend where it is native, with 8 features so that on CUDA the U-Net's inner
// convolutions run cuDNN's bf16 configuration (channel counts multiples of 8) and its first layer
// and head the bf16 values on TF32 (nn/conv_cudnn.cpp): a second run repeats the first bit for
// bit, the posteriors are the same backend's fp32 ones within bf16's rounding through the
// network (measured on the CPU: at most 3e-5; bound 2e-3, room for CUDA's second rounding of
// each inner forward), and nearly every voxel is labelled
// as in fp32.
TEST_P(PredictOnDevice, Bf16RepeatsAndFollowsFp32) {
    if (!bf16_is_native(ctx())) GTEST_SKIP() << "bf16 is not native on this device: bf16 predict not run";
    const fs::path dir = test::unique_temp_dir(std::string("predict-bf16-") + (on_cuda() ? "cuda" : "cpu"));
    const std::string model = make_test_model(dir, 1, 1.0, 0.5f, /*features=*/8);
    const Image image = test_image(grid({18, 20, 21}, Mat4::scaling(1, 1, 1.2)));
    PredictOptions fp32;
    fp32.device = Device{GetParam(), 0};
    PredictOptions bf16 = fp32;
    bf16.precision = Precision::bf16;
    const Segmentation want = Predictor(model, fp32).predict(image, "scan");
    const Segmentation got = Predictor(model, bf16).predict(image, "scan");
    EXPECT_EQ(Predictor(model, bf16).predict(image, "scan").posteriors.data, got.posteriors.data) << "bf16 repeats";
    ASSERT_EQ(got.posteriors.data.size(), want.posteriors.data.size());
    double largest = 0;
    for (size_t i = 0; i < got.posteriors.data.size(); ++i)
        largest = std::max(largest, double(std::fabs(got.posteriors.data[i] - want.posteriors.data[i])));
    std::printf("bf16 against fp32 posteriors on %s: largest difference %.5f\n", on_cuda() ? "cuda" : "cpu", largest);
    EXPECT_LT(largest, 2e-3);
    EXPECT_GT(largest, 0.0) << "bf16 ran as fp32";
    EXPECT_LE(labelled_differently(got, want), int64_t(got.segmentation.data.size()) / 100);
    std::error_code ec;
    fs::remove_all(dir, ec);
}

ISS_INSTANTIATE_BACKENDS(PredictOnDevice);

TEST_F(Predict, AnyOrientationGivesTheSameWorldSpaceSegmentation) {
    Predictor predictor(make_model(), PredictOptions{});
    Mat4 affine = Mat4::scaling(1, 1, 1);
    affine.m[1][3] = 7;
    const Image ras = test_image(grid({18, 20, 16}, affine));
    const LabelMap reference = predictor.predict(ras, "ras.nii.gz").segmentation;
    for (const char* code : {"LAS", "LIA", "PSR"}) {
        const Image other = reorient(ras, code);
        ASSERT_EQ(orientation_code(other.grid.affine), code);
        const LabelMap seg = predictor.predict(other, std::string(code) + ".nii.gz").segmentation;
        EXPECT_TRUE(seg.grid.affine.approx_equal(other.grid.affine, 1e-9)) << code;
        const LabelMap back = reorient(seg, "RAS");
        EXPECT_EQ(back.data, reference.data) << code << ": the segmentation moved in world space";
    }
}

// predict --like: a T2 segmented onto its T1's grid (another voxel order, size and field of view,
// co-registered by the headers) holds the posteriors the T2's own grid would hold, resampled
// through world coordinates; the T1's voxels past the T2's field of view hold no evidence
// (posteriors 0, label 0), which merge then leaves to the T1.
TEST_F(Predict, OntoAnotherScansGridIsTheOwnPosteriorsResampledThroughWorldSpace) {
    Predictor predictor(make_model(), PredictOptions{});
    Mat4 scan_affine = Mat4::scaling(1, 1, 1);
    scan_affine.m[1][3] = 7;
    const Image scan = test_image(grid({18, 20, 16}, scan_affine));
    Mat4 onto_affine = Mat4::scaling(-1.25, 1.1, 0.9);  // LAS, 25 mm wide from x = 21 down to x = -4
    onto_affine.m[0][3] = 21;
    onto_affine.m[1][3] = 5;
    const Grid onto = grid({21, 22, 20}, onto_affine);
    const Segmentation own = predictor.predict(scan, "t2.nii.gz");
    const Segmentation like = predictor.predict(scan, "t2.nii.gz", &onto);
    EXPECT_EQ(like.segmentation.grid.dim, onto.dim);
    EXPECT_TRUE(like.segmentation.grid.affine.approx_equal(onto.affine, 0));
    EXPECT_EQ(like.posteriors.grid.dim, onto.dim);
    ASSERT_EQ(like.posteriors.frames, own.posteriors.frames);

    DeviceContext cpu;
    const Image expected = resample_image(cpu, own.posteriors, onto, Interp::linear, OutOfBounds::clamp);
    const Mat4 to_scan = scan.grid.affine.inverse() * onto.affine;
    const int64_t n = onto.voxels(), classes = like.posteriors.frames;
    int64_t outside = 0, differ = 0;
    for (int64_t k = 0; k < onto.dim[2]; ++k)
        for (int64_t j = 0; j < onto.dim[1]; ++j)
            for (int64_t i = 0; i < onto.dim[0]; ++i) {
                const int64_t v = (k * onto.dim[1] + j) * onto.dim[0] + i;
                const std::array<double, 3> p = to_scan.apply(double(i), double(j), double(k));
                bool out = false;
                for (size_t d = 0; d < 3; ++d) out = out || p[d] < -0.5 || p[d] > double(scan.grid.dim[d]) - 0.5;
                outside += out;
                double largest = 0;
                int64_t best = 0;
                for (int64_t c = 0; c < classes; ++c) {
                    const float got = like.posteriors.data[size_t(c * n + v)];
                    differ += std::abs(got - (out ? 0.0f : expected.data[size_t(c * n + v)])) > 1e-5f;
                    if (got > largest) largest = got, best = c;
                }
                const int32_t label = like.segmentation.data[size_t(v)];
                if (out) {
                    EXPECT_EQ(label, 0) << i << "," << j << "," << k << " lies outside the scan";
                } else if (label != 0) {  // outside the largest component: background
                    EXPECT_EQ(label, predictor.labels()[size_t(best)]) << i << "," << j << "," << k;
                }
            }
    EXPECT_EQ(differ, 0) << "posteriors other than the scan's own resampled onto the grid";
    EXPECT_GT(outside, n / 10) << "the test's grids should overlap in part";
    EXPECT_LT(outside, n / 2);
    EXPECT_DOUBLE_EQ(like.outside_field_of_view, double(outside) / double(n));
    EXPECT_GT(std::count_if(like.segmentation.data.begin(), like.segmentation.data.end(), [](int32_t l) { return l; }),
              0);

    // Grids that do not meet: the headers do not co-register the scans.
    Mat4 far = onto_affine;
    far.m[2][3] = 500;
    const Grid elsewhere = grid(onto.dim, far);
    EXPECT_NE(test::refusal_of("t2.nii.gz", [&] { predictor.predict(scan, "t2.nii.gz", &elsewhere); })
                  .find("its field of view and the grid of --like do not overlap in world coordinates"),
              std::string::npos);
}

// The command: the T2's outputs on the T1's grid and header, which merge then takes beside the
// T1's; one scan only, and the T1 is an input no output may replace.
TEST_F(Predict, CommandLikeWritesOnTheOtherScansGridForMerge) {
    const std::string model = make_model();
    Mat4 t1_affine = Mat4::scaling(-1.1, 1, 1.2);  // LAS, as infant data are stored
    t1_affine.m[0][3] = 20;
    write_image(path("t1.nii.gz"), test_image(grid({17, 20, 14}, t1_affine)));
    write_image(path("t2.nii.gz"), test_image(grid({20, 22, 18}, Mat4::scaling(1, 1, 1))));
    const std::string q_model = test::shell_quote(model), cli = test::cli_path() + " ";
    auto run = [&](const std::string& options) { return test::run_command(cli + options); };
    auto quoted = [&](const char* name) { return test::shell_quote(path(name)); };
    const test::RunResult t1 = run("predict --i " + quoted("t1.nii.gz") + " --o " + quoted("t1_seg.nii.gz") +
                                   " --post " + quoted("t1_post.nii.gz") + " --model " + q_model + " --device cpu");
    ASSERT_EQ(t1.status, 0) << t1.err;
    const test::RunResult t2 = run("predict --i " + quoted("t2.nii.gz") + " --like " + quoted("t1.nii.gz") + " --o " +
                                   quoted("t2_seg.nii.gz") + " --post " + quoted("t2_post.nii.gz") + " --vol " +
                                   quoted("t2_vol.csv") + " --model " + q_model + " --device cpu");
    ASSERT_EQ(t2.status, 0) << t2.err;
    const VolumeHeader t1_header = read_volume_header(path("t1.nii.gz"));
    for (const char* output : {"t2_seg.nii.gz", "t2_post.nii.gz"}) {
        const VolumeHeader h = read_volume_header(path(output));
        EXPECT_EQ(h.grid().dim, t1_header.grid().dim) << output;
        EXPECT_TRUE(h.affine.approx_equal(t1_header.affine, 1e-6)) << output;
        EXPECT_EQ(h.sform_code, t1_header.sform_code) << output;
    }
    EXPECT_EQ(read_csv(path("t2_vol.csv")).rows.size(), 1u);
    const test::RunResult merged =
        run("merge --t1-seg " + quoted("t1_seg.nii.gz") + " --t1-post " + quoted("t1_post.nii.gz") + " --t2-seg " +
            quoted("t2_seg.nii.gz") + " --t2-post " + quoted("t2_post.nii.gz") + " --o-seg " + quoted("m_seg.nii.gz") +
            " --o-post " + quoted("m_post.nii.gz"));
    EXPECT_EQ(merged.status, 0) << merged.err;

    const test::RunResult over = run("predict --i " + quoted("t2.nii.gz") + " --like " + quoted("t1.nii.gz") + " --o " +
                                     quoted("t1.nii.gz") + " --model " + q_model);
    EXPECT_EQ(over.status, 2) << over.err;
    EXPECT_NE(over.err.find("t1.nii.gz"), std::string::npos) << over.err;
    // A like file whose header places it nowhere (qform and sform codes 0): no world coordinates.
    write_image(path("nowhere.nii"), test_image(grid({17, 20, 14}, t1_affine)));
    {
        std::fstream f(path("nowhere.nii"), std::ios::in | std::ios::out | std::ios::binary);
        const char zeros[4] = {0, 0, 0, 0};
        f.seekp(252);  // qform_code, sform_code (int16 each)
        f.write(zeros, 4);
    }
    const test::RunResult nowhere = run("predict --i " + quoted("t2.nii.gz") + " --like " + quoted("nowhere.nii") +
                                        " --o " + quoted("n_seg.nii.gz") + " --model " + q_model);
    EXPECT_EQ(nowhere.status, 2) << nowhere.err;
    EXPECT_NE(nowhere.err.find("nowhere.nii: its header holds neither a qform nor an sform"), std::string::npos)
        << nowhere.err;
    EXPECT_FALSE(fs::exists(path("n_seg.nii.gz")));
    fs::create_directories(path("scans"));
    const test::RunResult folder = run("predict --i " + quoted("scans") + " --like " + quoted("t1.nii.gz") + " --o " +
                                       quoted("segs") + " --model " + q_model);
    EXPECT_EQ(folder.status, 2);
    EXPECT_NE(folder.err.find("--like puts one scan's outputs on another file's grid: give --i a file"),
              std::string::npos)
        << folder.err;
}

// predict --preview shows the scan in RAS: the picture of one scan stored RAS and stored LIA (the
// same world) is the same picture (the segmentation is the same in world space, above).
TEST_F(Predict, PreviewIsTheSamePictureWhateverTheVoxelOrder) {
    const std::string model = make_model();
    const Image ras = test_image(grid({18, 20, 16}, Mat4::scaling(1, 1, 1.5)));
    write_image(path("ras.nii.gz"), ras);
    write_image(path("lia.nii.gz"), reorient(ras, "LIA"));
    for (const char* name : {"ras", "lia"}) {
        const std::string n = name;
        const test::RunResult r = test::run_command(
            test::cli_path() + " predict --device cpu --model " + test::shell_quote(model) + " --i " +
            test::shell_quote(path(n + ".nii.gz")) + " --o " + test::shell_quote(path(n + "_seg.nii.gz")) +
            " --preview " + test::shell_quote(path(n + ".png")));
        ASSERT_EQ(r.status, 0) << r.err;
    }
    EXPECT_EQ(orientation_code(read_labels(path("lia_seg.nii.gz")).grid.affine), "LIA");
    EXPECT_TRUE(test::read_text(path("ras.png")) == test::read_text(path("lia.png")))
        << "the LIA scan's panels are other planes";
}

// Values near a float's limits (a fill of -3.4e38 outside the head, a scaling of 1e36) made the
// min-max range infinite and every posterior NaN, exit 0. And a range a few voxels set squeezes
// the rest into a sliver of [0, 1], which segments as nothing: said, with the option that helps.
TEST_F(Predict, ARangeSetByAFewVoxelsIsSaidAndAFloatsLimitsNormalise) {
    Predictor predictor(make_model(), PredictOptions{});
    const Image scan = test_image(grid({18, 20, 16}, Mat4::identity()));
    auto warnings = [&](Predictor& p, const Image& image, Segmentation* out = nullptr) {
        testing::internal::CaptureStderr();
        const Segmentation s = p.predict(image, "scan.nii.gz");
        if (out) *out = s;
        return testing::internal::GetCapturedStderr();
    };
    EXPECT_EQ(warnings(predictor, scan), "");

    Image extreme = scan;
    extreme.data[0] = -FLT_MAX;
    extreme.data[1] = FLT_MAX;
    Segmentation got;
    const std::string said = warnings(predictor, extreme, &got);
    for (const float p : got.posteriors.data) ASSERT_TRUE(std::isfinite(p)) << "a range past a float's";
    EXPECT_NE(
        said.find(
            "scan.nii.gz: 98% of its voxels between its lowest and highest normalise into [0.4995, 0.5005] of "
            "[0, 1]: voxels far brighter or darker than the rest (a hot spot, a fill value) set its min-max range; "
            "--clip-percentiles"),
        std::string::npos)
        << said;

    Image hot = scan;
    hot.data[100] = 20 * *std::max_element(scan.data.begin(), scan.data.end());
    EXPECT_NE(warnings(predictor, hot)
                  .find("scan.nii.gz: 98% of its voxels between its lowest and highest normalise "
                        "into [0.0"),
              std::string::npos);
    // A fill of -3.4e38 outside the head puts the head at the top of the range, 1 - 1e-36: what
    // float rounds to 1 is told apart in double.
    Image filled = scan;
    std::fill(filled.data.begin(), filled.data.begin() + filled.data.size() / 3, -FLT_MAX);
    EXPECT_NE(warnings(predictor, filled).find("normalise into [0.9995, 1] of [0, 1]"), std::string::npos);
    PredictOptions clipping;
    clipping.clip_percentiles = true;
    Predictor clipped(make_model(), clipping);
    EXPECT_EQ(warnings(clipped, hot), "") << "the option that fixes it";
}

// NaN or infinite voxels (a registration tool's output outside its mask) are the image's lowest
// value, with a warning, wherever they lie: a NaN that was not the first voxel used to pass the
// normalisation's min/max and come out as NaN posteriors. An image of no finite value is bad input.
TEST_F(Predict, NonFiniteVoxelsAreTheLowestValue) {
    Predictor predictor(make_model(), PredictOptions{});
    const Image clean = test_image(grid({18, 20, 16}, Mat4::identity()));
    const float low = *std::min_element(clean.data.begin(), clean.data.end());
    Image marked = clean, replaced = clean;
    for (const int64_t v : {int64_t(0), int64_t(777), int64_t(3000)}) {
        marked.data[size_t(v)] = v == 777 ? INFINITY : NAN;
        replaced.data[size_t(v)] = low;
    }
    marked.data[1] = -INFINITY;
    replaced.data[1] = low;
    const Segmentation want = predictor.predict(replaced, "replaced.nii.gz");
    for (const bool nan_first : {true, false}) {
        Image input = marked;
        if (!nan_first) input.data[0] = clean.data[0], input.data[200] = NAN;
        Image expected_input = replaced;
        if (!nan_first) expected_input.data[0] = clean.data[0], expected_input.data[200] = low;
        testing::internal::CaptureStderr();
        const Segmentation got = predictor.predict(input, "masked.nii.gz");
        const std::string warned = testing::internal::GetCapturedStderr();
        EXPECT_NE(warned.find("masked.nii.gz: 4 voxels are NaN or infinite"), std::string::npos) << warned;
        for (const float p : got.posteriors.data) ASSERT_TRUE(std::isfinite(p)) << "NaN first: " << nan_first;
        const Segmentation ref = nan_first ? want : predictor.predict(expected_input, "replaced.nii.gz");
        EXPECT_EQ(got.segmentation.data, ref.segmentation.data);
        EXPECT_EQ(got.posteriors.data, ref.posteriors.data);
    }
    Image none(clean.grid, 1, NAN);
    EXPECT_THROW(
        {
            try {
                predictor.predict(none, "all_nan.nii.gz");
            } catch (const InputError& e) {
                EXPECT_NE(std::string(e.what()).find("all_nan.nii.gz: the image holds no finite value"),
                          std::string::npos);
                throw;
            }
        },
        InputError);
}

TEST_F(Predict, ResamplesOnlyScansOutsideTheTrainedVoxelSizeRange) {
    const std::string model = make_model();
    set_preprocessing(model, "voxel_size_mm", nullptr);
    set_preprocessing(model, "voxel_size_range_mm", {{"min", {1, 1, 1}}, {"max", {2, 2, 2}}});
    Predictor predictor(model, PredictOptions{});
    const Segmentation inside = predictor.predict(test_image(grid({10, 12, 9}, Mat4::scaling(1.5, 1.0, 2.0))), "in");
    const auto seen = inside.resampled.grid.voxel_size();
    for (int d = 0; d < 3; ++d) EXPECT_NEAR(seen[size_t(d)], (std::array<double, 3>{1.5, 1.0, 2.0})[size_t(d)], 1e-9);
    EXPECT_EQ(inside.segmentation.grid.dim, (std::array<int64_t, 3>{10, 12, 9}));

    const Image outside_scan = test_image(grid({8, 12, 30}, Mat4::scaling(3.0, 1.5, 0.5)));
    const Segmentation outside = predictor.predict(outside_scan, "out");
    const auto v = outside.resampled.grid.voxel_size();
    EXPECT_NEAR(v[0], 2.0, 0.05) << "3 mm is above the range: the upper bound";
    EXPECT_NEAR(v[1], 1.5, 1e-9) << "inside the range: kept";
    EXPECT_NEAR(v[2], 1.0, 0.05) << "0.5 mm is below the range: the lower bound";
    EXPECT_TRUE(outside.segmentation.grid.same_as(outside_scan.grid));
}

// The image as the network saw it (--resample), on another grid, keeps the scan's transform codes
// (scanner anatomical here): it was written with code 2 (aligned), as if registered elsewhere.
TEST_F(Predict, TheResampledImageKeepsTheScansTransformCodes) {
    const std::string model = make_model();
    set_preprocessing(model, "voxel_size_mm", nullptr);
    set_preprocessing(model, "voxel_size_range_mm", {{"min", {2, 2, 2}}, {"max", {2, 2, 2}}});
    write_image(path("plain.nii.gz"), test_image(grid({20, 18, 16}, Mat4::scaling(1, 1, 1))));
    VolumeHeader scanner = read_volume_header(path("plain.nii.gz"));
    scanner.sform_code = NIFTI_XFORM_SCANNER_ANAT;
    scanner.qform_code = NIFTI_XFORM_SCANNER_ANAT;
    write_image(path("scan.nii.gz"), read_image(path("plain.nii.gz")), &scanner);
    const test::RunResult r =
        test::run_command(test::cli_path() + " predict --device cpu --model " + test::shell_quote(model) + " --i " +
                          test::shell_quote(path("scan.nii.gz")) + " --o " + test::shell_quote(path("seg.nii.gz")) +
                          " --resample " + test::shell_quote(path("res.nii.gz")));
    ASSERT_EQ(r.status, 0) << r.err;
    const VolumeHeader res = read_volume_header(path("res.nii.gz"));
    EXPECT_NEAR(res.grid().voxel_size()[0], 2.0, 1e-6) << "another grid";
    EXPECT_EQ(res.sform_code, NIFTI_XFORM_SCANNER_ANAT);
    EXPECT_EQ(res.qform_code, NIFTI_XFORM_SCANNER_ANAT);
}

// The flip augmentation mirrors the left-right axis of the model's frame, wherever that axis is
// in the frame's voxel order: predicting the world-mirrored scan gives the world-mirrored
// segmentation with left and right swapped, for frames RAS, LIA (SynthSeg 1.0's) and ARS.
TEST_F(Predict, FlipAugmentationMirrorsTheFramesLeftRightAxis) {
    const Image image = test_image(grid({16, 18, 14}, Mat4::scaling(1.0, 1.1, 0.9)));
    Image mirrored = image;
    for (int64_t k = 0; k < image.nz(); ++k)
        for (int64_t j = 0; j < image.ny(); ++j)
            for (int64_t i = 0; i < image.nx(); ++i) mirrored.at(i, j, k) = image.at(image.nx() - 1 - i, j, k);
    for (const char* frame : {"RAS", "LIA", "ARS"}) {
        const std::string model = make_model();
        set_preprocessing(model, "orientation", frame);
        Predictor predictor(model, PredictOptions{});
        const LabelMap a = predictor.predict(image, "a").segmentation;
        const LabelMap b = predictor.predict(mirrored, "b").segmentation;
        int64_t differ = 0;
        for (int64_t k = 0; k < image.nz(); ++k)
            for (int64_t j = 0; j < image.ny(); ++j)
                for (int64_t i = 0; i < image.nx(); ++i)
                    differ += b.at(i, j, k) != labels::lr_twin(a.at(image.nx() - 1 - i, j, k));
        // Only float ties in the argmax (sums in another order) may differ.
        EXPECT_LE(differ, image.grid.voxels() / 1000) << frame;
    }
    const std::string bad = make_model();
    set_preprocessing(bad, "orientation", "XYZ");
    try {
        Predictor p(bad, PredictOptions{});
        ADD_FAILURE() << "accepted orientation XYZ";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("model_1.json: field 'preprocessing.orientation'"), std::string::npos)
            << e.what();
    }
}

// An atlas's own numbers declare their sides in the record (preprocessing.lr_twins): the mirror
// averaging pairs declared twins' channels, so the world-mirrored scan's posteriors are the
// scan's mirrored with the twins swapped. (Read as FreeSurfer's numbers, 101 and 102 have no
// side: each channel was averaged with its own mirror image, the left cortex with the right.)
TEST_F(Predict, FlipAveragingPairsTheRecordsDeclaredTwins) {
    const std::vector<int32_t> outputs = {0, 2, 41, 101, 102, 300};
    test::write_small_model(path("atlas"), 11, 1, outputs);
    const std::string model = path("atlas/model.safetensors");
    set_preprocessing(model, "flip_averaging", true);
    const Image image = test_image(grid({16, 16, 8}, Mat4::scaling(1.0, 1.1, 0.9)));
    Image mirrored = image;
    for (int64_t k = 0; k < image.nz(); ++k)
        for (int64_t j = 0; j < image.ny(); ++j)
            for (int64_t i = 0; i < image.nx(); ++i) mirrored.at(i, j, k) = image.at(image.nx() - 1 - i, j, k);
    // The largest difference between the mirrored scan's posteriors and the scan's mirrored,
    // channels paired by `declared`.
    auto mirror_error = [&](const labels::DeclaredTwins& declared) {
        const Image a = Predictor(path("atlas"), PredictOptions{}).predict(image, "a").posteriors;
        const Image b = Predictor(path("atlas"), PredictOptions{}).predict(mirrored, "b").posteriors;
        const int64_t n = image.grid.voxels();
        const std::vector<int> twin = labels::twin_positions(outputs, declared);
        double worst = 0;
        for (size_t c = 0; c < outputs.size(); ++c)
            for (int64_t k = 0; k < image.nz(); ++k)
                for (int64_t j = 0; j < image.ny(); ++j)
                    for (int64_t i = 0; i < image.nx(); ++i) {
                        const float pa = a.data[size_t(int64_t(c) * n + image.index(image.nx() - 1 - i, j, k))];
                        const float pb = b.data[size_t(int64_t(twin[c]) * n + image.index(i, j, k))];
                        worst = std::max(worst, double(std::fabs(pa - pb)));
                    }
        return worst;
    };
    const labels::DeclaredTwins declared = {{101, 102}, {300, 300}};
    set_preprocessing(model, "lr_twins", {{101, 102}, {300, 300}});
    EXPECT_LT(mirror_error(declared), 1e-5);
    set_preprocessing(model, "lr_twins", nullptr);
    EXPECT_GT(mirror_error(declared), 1e-3) << "averaged without the declared sides";
}

// The mirrored scan's probabilities are averaged in slab by slab as the network hands them
// over: in slabs of 4 rows they give the whole-volume pass's posteriors (within the
// convolutions' tolerance), with the left-right axis across the rows (RAS), along them (ARS) and
// along the slabs' own axis, where a slab's rows mirror onto another slab's (ASR).
TEST_F(Predict, FlipAveragedSlabBySlabGivesTheWholeVolumesPosteriors) {
    const Image image = test_image(grid({16, 18, 14}, Mat4::scaling(1.0, 1.1, 0.9)));
    for (const char* frame : {"RAS", "ARS", "ASR"}) {
        const std::string model = make_model();
        set_preprocessing(model, "orientation", frame);
        PredictOptions whole, slabs;
        whole.slab_depth = 0;
        slabs.slab_depth = 4;
        const Image a = Predictor(model, whole).predict(image, "whole").posteriors;
        const Image b = Predictor(model, slabs).predict(image, "slabs").posteriors;
        EXPECT_TRUE(test::all_near(b.data, a.data, 1e-4)) << frame;
    }
}

// Before a scan is resampled to coarser voxels, each axis it coarsens is blurred as SynthSeg's
// resample_volume blurs it (scipy's gaussian_filter, sigma 0.25 / factor of its voxels, taps to
// 4 sigma, mirrored at the faces): an impulse gives the Gaussian's taps, and its mirror image at
// a face; an axis not coarsened is left alone, in every frame. (Checked against scipy through
// predict --resample: 1e-6.)
TEST(Resample, AxesCoarsenedAreBlurredFirstAsSynthSegsResampleVolume) {
    Grid g;
    g.dim = {21, 9, 5};
    g.affine = Mat4::scaling(0.4, 1.0, 3.0);
    Image impulses(g, 2);
    impulses.at(10, 4, 2, 0) = 1;
    impulses.at(0, 4, 2, 1) = 1;
    const Image b = blurred_for_downsampling(impulses, {1.0, 1.0, 1.0});
    const double sigma = 0.25 / 0.4;  // x: factor 0.4; y and z are not coarsened
    const int radius = int(4 * sigma + 0.5);
    auto tap = [&](int t) {
        double sum = 0;
        for (int u = -radius; u <= radius; ++u) sum += std::exp(-0.5 * u * u / (sigma * sigma));
        return std::abs(t) <= radius ? std::exp(-0.5 * t * t / (sigma * sigma)) / sum : 0.0;
    };
    for (int64_t k = 0; k < g.dim[2]; ++k)
        for (int64_t j = 0; j < g.dim[1]; ++j)
            for (int i = 0; i < int(g.dim[0]); ++i) {
                const bool row = j == 4 && k == 2;
                EXPECT_NEAR(b.at(i, j, k, 0), row ? tap(i - 10) : 0.0, 1e-7) << i << " " << j << " " << k;
                EXPECT_NEAR(b.at(i, j, k, 1), row ? tap(i) + tap(i + 1) : 0.0, 1e-7) << i << " " << j << " " << k;
            }
    EXPECT_EQ(blurred_for_downsampling(impulses, {0.4, 0.5, 3.0}).data, impulses.data) << "nothing coarsened";

    // Voxels 1000 times finer than the target (a header in micrometres): sigma 4 voxels, 33
    // taps, mirrored as often as the 21-voxel line needs (sigma 625 took minutes on a head).
    const Image far = blurred_for_downsampling(impulses, {400.0, 1.0, 3.0});
    const double wide = 4.0;
    auto wide_tap = [&](int t) {
        double sum = 0;
        for (int u = -16; u <= 16; ++u) sum += std::exp(-0.5 * u * u / (wide * wide));
        return std::abs(t) <= 16 ? std::exp(-0.5 * t * t / (wide * wide)) / sum : 0.0;
    };
    for (int i = 0; i < 21; ++i) {
        double expected = 0;  // the taps whose mirrored position is the impulse's, voxel 10
        for (int t = -16; t <= 16; ++t) {
            const int p = i + t, q = p < 0 ? -p - 1 : (p >= 21 ? 41 - p : p);
            if (q == 10) expected += wide_tap(t);
        }
        EXPECT_NEAR(far.at(i, 4, 2, 0), expected, 1e-7) << i;
    }
}

// A scan finer than the model's voxels: its noise is averaged as the scan is resampled (the
// network saw every 2.5th voxel of a 0.4 mm T2's, and white matter's Dice fell from 0.58 to 0.43
// in a helper's test). Stripes of one 0.25 mm voxel, the finest there are, read as their mean, as
// a flat side of that mean reads (sampled alone, every 4th voxel, they read as their bright half).
TEST_F(Predict, AFineScansStripesReadAsTheirMeanAfterResampling) {
    Predictor predictor(make_model(1, 1.0), PredictOptions{});
    Image scan(grid({63, 12, 12}, Mat4::scaling(0.25, 1, 1)));
    for (int64_t k = 0; k < 12; ++k)
        for (int64_t j = 0; j < 12; ++j)
            for (int64_t i = 0; i < 63; ++i)
                scan.at(i, j, k) = (j < 6 ? (i % 2 ? 100.0f : 0.0f) : 50.0f) + (k >= 6 ? 1000.0f : 0.0f);
    const Image seen = predictor.predict(scan, "fine").resampled;
    ASSERT_EQ(seen.grid.dim, (std::array<int64_t, 3>{16, 12, 12}));
    for (int64_t i = 2; i < 14; ++i)  // away from the faces
        EXPECT_NEAR(seen.at(i, 2, 2), seen.at(i, 9, 2), 0.002) << i << " (of the normalised range, 1050 wide)";
}

TEST_F(Predict, ResamplesToTheModelVoxelSizeAndBack) {
    Predictor predictor(make_model(1, 1.0), PredictOptions{});
    const Image image = test_image(grid({10, 12, 9}, Mat4::scaling(2, 2, 2.5)));
    const Segmentation out = predictor.predict(image, "low_res.nii.gz");
    EXPECT_EQ(out.segmentation.grid.dim, image.grid.dim);
    EXPECT_EQ(out.resampled.grid.dim, (std::array<int64_t, 3>{20, 24, 23}));
    EXPECT_NEAR(out.resampled.grid.voxel_size()[2], 1.0, 1e-9);
}

// A scan of the size multiple (no padding): its faces are the padded volume's, where the
// smoothing took zeros; every voxel's posteriors still sum to 1 (they summed to 0.89 on a face,
// 0.71 in a corner, and the volumes of structures touching the field of view fell short).
TEST_F(Predict, PosteriorsSumToOneUpToTheFaces) {
    Predictor predictor(make_model(), PredictOptions{});
    const Segmentation s = predictor.predict(test_image(grid({16, 12, 10}, Mat4::identity())), "scan");
    const int64_t n = s.posteriors.grid.voxels();
    for (int64_t v = 0; v < n; ++v) {
        double sum = 0;
        for (int64_t c = 0; c < s.posteriors.frames; ++c) sum += s.posteriors.data[size_t(c * n + v)];
        ASSERT_NEAR(sum, 1.0, 1e-5) << "voxel " << v;
    }
}

// A sheared grid (an affine registration's sform): a voxel's volume is |det|, not the product
// of its columns' lengths (2 mm^3 here, where the lengths multiply to 2.24).
TEST(PosteriorVolumes, AShearedVoxelHoldsItsDeterminantsVolume) {
    Grid sheared;
    sheared.dim = {2, 2, 1};
    sheared.affine = Mat4::scaling(1.0, 1.0, -2.0);
    sheared.affine.m[0][1] = 0.5;
    Image posteriors(sheared, 2);
    std::fill(posteriors.data.begin() + 4, posteriors.data.end(), 0.25f);
    EXPECT_DOUBLE_EQ(sheared.voxel_volume(), 2.0);
    EXPECT_EQ(posterior_volumes_mm3(posteriors, {0, 17}), (std::vector<double>{0.0, 2.0}));
}

TEST_F(Predict, VolumesAreThePosteriorsTimesTheVoxelVolume) {
    PredictOptions options;
    options.resample_to_model = false;
    Predictor predictor(make_model(), options);
    const Image image = test_image(grid({12, 14, 10}, Mat4::scaling(1.5, 1.0, 2.0)));
    const Segmentation out = predictor.predict(image, "aniso.nii.gz");
    const int64_t n = image.grid.voxels();
    for (size_t c = 1; c < 34; ++c) {
        double sum = 0;
        for (int64_t v = 0; v < n; ++v) sum += out.posteriors.data[c * size_t(n) + size_t(v)];
        EXPECT_NEAR(out.volumes_mm3[c], sum * 3.0, 1e-3) << "label " << predictor.labels()[c];
    }
    EXPECT_EQ(out.volumes_mm3[0], 0.0) << "background has no volume";

    // Without the posteriors kept (predict without --post): the same segmentation and the same
    // volumes, bit for bit, and no posteriors. The scan is stored LPI so that the posteriors
    // would have to be reoriented.
    const Image lpi = reorient(image, "LPI");
    options.keep_posteriors = false;
    const Segmentation kept = predictor.predict(lpi, "lpi.nii.gz");
    const Segmentation lean = Predictor(make_model(), options).predict(lpi, "lpi.nii.gz");
    EXPECT_EQ(lean.segmentation.data, kept.segmentation.data);
    EXPECT_EQ(lean.volumes_mm3, kept.volumes_mm3);
    EXPECT_TRUE(lean.posteriors.data.empty()) << "posteriors made though not asked for";
    EXPECT_EQ(kept.posteriors.grid.dim, lpi.grid.dim);
}

TEST_F(Predict, PercentileClippingIgnoresOutliers) {
    // One hot voxel squashes a plain min-max normalisation; clipping the 0.5/99.5 percentiles
    // keeps the rest of the image spread over [0, 1].
    Image image = test_image(grid({16, 16, 16}, Mat4::identity()));
    image.at(3, 4, 5) = 1e6f;
    auto median_of = [](std::vector<float> v) {
        std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(v.size() / 2), v.end());
        return v[v.size() / 2];
    };
    PredictOptions plain, clipped;
    clipped.clip_percentiles = true;
    const std::string model = make_model();
    const float squashed = median_of(Predictor(model, plain).predict(image, "hot").resampled.data);
    const Image spread = Predictor(model, clipped).predict(image, "hot").resampled;
    EXPECT_LT(squashed, 1e-3f);
    EXPECT_GT(median_of(spread.data), 0.2f);
    EXPECT_EQ(*std::max_element(spread.data.begin(), spread.data.end()), 1.0f);
    EXPECT_EQ(*std::min_element(spread.data.begin(), spread.data.end()), 0.0f);
}

// On the CPU the posteriors are smoothed in place (ring of saved rows, the last pass straight
// into the cropped output); on a GPU by three ping-pong passes of blur_axis. Same bits.
// The in-place CPU smoothing gives blur_separable's bits; within a voxel of the padded volume's
// faces (where the blur took zeros) each voxel is then divided by its sum over the classes.
TEST(PredictPost, InPlaceSmoothingGivesThePassesBits) {
    DeviceContext cpu;
    const std::array<int64_t, 3> padded{7, 6, 5}, before{1, 0, 2};
    Grid grid;
    grid.dim = {5, 6, 2};
    const int64_t classes = 3, n = padded[0] * padded[1] * padded[2] * classes;
    std::vector<float> probs(static_cast<size_t>(n));
    for (int64_t e = 0; e < n; ++e) probs[size_t(e)] = float((e * 7919) % 101) / 101.0f;
    std::vector<float> a = probs, b(probs.size());
    const float* src = blur_separable(cpu, a.data(), b.data(), padded, classes, {0.5, 0.5, 0.5}, {1, 1, 1});
    std::vector<float> in_place = probs;
    const Image got = smooth_and_crop_posteriors(cpu, in_place.data(), padded, before, grid, classes);
    ASSERT_EQ(got.frames, classes);
    for (int64_t c = 0; c < classes; ++c)
        for (int64_t k = 0; k < grid.dim[2]; ++k)
            for (int64_t j = 0; j < grid.dim[1]; ++j)
                for (int64_t i = 0; i < grid.dim[0]; ++i) {
                    const int64_t pi = i + before[0], pj = j + before[1], pk = k + before[2];
                    const float* voxel = src + size_t(((pk * padded[1] + pj) * padded[0] + pi) * classes);
                    float want = voxel[c];
                    const bool near_face = pi < 1 || pj < 1 || pk < 1 || pi >= padded[0] - 1 || pj >= padded[1] - 1 ||
                                           pk >= padded[2] - 1;
                    if (near_face) {
                        double sum = 0;
                        for (int64_t q = 0; q < classes; ++q) sum += voxel[q];
                        want = float(double(want) / sum);
                    }
                    const float have = got.at(i, j, k, c);
                    ASSERT_EQ(std::memcmp(&have, &want, sizeof(float)), 0) << i << "," << j << "," << k << " channel " << c;
                }
}

// The memory check counts the posteriors on the scan's own grid when they are resampled back: a
// 512^3 scan of 0.25 mm voxels segmented at 1 mm (128^3) needs about 35 GiB there, which the
// model's grid alone (about 0.8 GiB) did not show.
// A folder's scans of other shapes: what a scan's network holds is what it holds alone, not what
// a larger scan before it left (the convolutions' shared workspace stayed at the largest scan's
// size; bf16's conversions use it on every CPU, fp32's on some).
TEST_F(Predict, AScanAfterALargerOneHoldsWhatItHoldsAlone) {
    const std::string model = make_test_model(dir_, 1, 1.0, 0, 16);
    const Image large = test_image(grid({40, 44, 36}, Mat4::identity()));
    const Image small = test_image(grid({18, 20, 16}, Mat4::identity()));
    PredictOptions options;
    options.slab_depth = 0;
    options.precision = Precision::bf16;  // its conversions use the workspace on any CPU
    Predictor alone(model, options), after(model, options);
    const size_t small_alone = alone.predict(small, "small.nii.gz").network_peak_bytes;
    const size_t large_bytes = after.predict(large, "large.nii.gz").network_peak_bytes;
    ASSERT_GT(large_bytes, small_alone);
    EXPECT_EQ(after.predict(small, "small.nii.gz").network_peak_bytes, small_alone);
}

namespace {

SegmentationSizes sizes_of(const std::array<int64_t, 3>& work, const std::array<int64_t, 3>& own, bool resampled,
                           double network_bytes = 0) {
    SegmentationSizes sizes;
    sizes.scan.dim = own;
    sizes.work.dim = work;
    sizes.own.dim = own;
    sizes.resampled = resampled;
    sizes.channels = 1;
    sizes.classes = 34;
    sizes.network_bytes = network_bytes;
    return sizes;
}

}  // namespace

TEST(PredictMemory, CountsThePosteriorsBackOnTheScansGrid) {
    const size_t host = size_t(24) << 30;
    EXPECT_NO_THROW(require_memory_to_segment("fine.nii.gz", sizes_of({128, 128, 128}, {512, 512, 512}, false), host));
    try {
        require_memory_to_segment("fine.nii.gz", sizes_of({128, 128, 128}, {512, 512, 512}, true), host);
        FAIL() << "34 GiB accepted on a 24 GiB machine";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("fine.nii.gz: segmenting it on a grid of 128x128x128 voxels (resampled to "
                                             "the model's voxel size; its posteriors then back on its 512x512x512) "
                                             "needs about 35.8 GiB (0 of them the network's), more than 80% of the "
                                             "24 GiB this process may use"),
                  std::string::npos)
            << e.what();
    }
}

// The network's own memory counts: the default network (24 features, 5 levels) on a 150x170x140
// scan needs about 1 GB beside the volumes' 1.5 GB (a run peaked at 2.58 GB), which a 2 GiB
// container's check admitted without it.
TEST(PredictMemory, CountsTheNetworksPeak) {
    UNetConfig unet;
    unet.levels = 5;
    unet.features = 24;
    unet.classes = 34;
    const double padded = 160.0 * 192 * 160;  // Predict/cpu/155x175x149: 1008 MB fp32, 702 MB bf16
    EXPECT_NEAR(network_bytes_to_segment(unet, Precision::fp32, padded) / 1e6, 1008, 150);
    EXPECT_NEAR(network_bytes_to_segment(unet, Precision::bf16, padded) / 1e6, 702, 100);
    const double network = network_bytes_to_segment(unet, Precision::fp32, 160.0 * 192 * 160);
    const size_t two_gib = size_t(2) << 30;
    EXPECT_NO_THROW(
        require_memory_to_segment("scan.nii.gz", sizes_of({150, 170, 140}, {150, 170, 140}, false), two_gib));
    EXPECT_THROW(
        require_memory_to_segment("scan.nii.gz", sizes_of({150, 170, 140}, {150, 170, 140}, false, network), two_gib),
        InputError);
}

// The network's probabilities are on the padded grid: a 97^3 scan's are 128^3 (a run peaked at
// 700 MB against an estimate of 451 MB that counted them unpadded), and a model's size multiple
// of 256 makes a 30x34x28 scan's 2.3 GB.
TEST(PredictMemory, CountsThePaddedGrid) {
    SegmentationSizes sizes = sizes_of({30, 34, 28}, {30, 34, 28}, false);
    const size_t one_gib = size_t(1) << 30;
    EXPECT_NO_THROW(require_memory_to_segment("scan.nii.gz", sizes, one_gib));
    sizes.padded_voxels = 256.0 * 256 * 256;
    try {
        require_memory_to_segment("scan.nii.gz", sizes, one_gib);
        FAIL() << "256^3 probabilities of 34 classes (2.1 GiB) accepted in 1 GiB";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("scan.nii.gz: segmenting it on a grid of 30x34x28 voxels needs about 2.2 "
                                             "GiB"),
                  std::string::npos)
            << e.what();
    }
    // With flip averaging, the mirrored copy of the padded image too (3% more here).
    // The image padded and the probabilities (4 + 34 * 4 bytes a padded voxel); the scan, its
    // copy, its normalised copy and two volumes of posteriors (12 + 2 * 34 * 4 a voxel).
    const double unflipped = 256.0 * 256 * 256 * 140 + 30 * 34 * 28 * 284;
    const size_t just_enough = size_t(unflipped / 0.79);  // the check admits 80% of it
    EXPECT_NO_THROW(require_memory_to_segment("scan.nii.gz", sizes, just_enough));
    sizes.flip = true;
    EXPECT_THROW(require_memory_to_segment("scan.nii.gz", sizes, just_enough), InputError);
}

// A shell's `ulimit -v` bounds what the process may allocate, whatever RAM the machine has free:
// the check reads it (a predict under prlimit --as refused nothing and failed after 10 s, its
// message blaming the machine).
TEST_F(Predict, AnAddressSpaceLimitIsTheMemoryItMayUse) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space: no run fits under ulimit -v";
#else
    const std::string model = make_model();
    write_image(path("scan.nii.gz"), Image(grid({160, 160, 160}, Mat4::identity()), 1, 1.0f));
    const test::RunResult r = test::run_command(
        "ulimit -v 2097152 && " + test::cli_path() + " predict --i " + test::shell_quote(path("scan.nii.gz")) +
        " --o " + test::shell_quote(path("seg.nii.gz")) + " --model " + test::shell_quote(model) + " --device cpu");
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("more than 80% of the 2 GiB this process may use"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(path("seg.nii.gz")));
#endif
}

// A header in the wrong units (microns for mm) makes a head a fraction of a millimetre across, which
// resamples to a few voxels and segments as nothing: said, not only "the image is constant".
TEST(PredictGeometry, AScanNotHeadSizedIsAWarning) {
    Grid head;
    head.dim = {160, 192, 160};
    auto warned = [](const Grid& g) { return test::stderr_of([&] { warn_if_not_head_sized(g, "scan.nii.gz"); }); };
    EXPECT_EQ(warned(head), "");
    Grid microns = head;
    microns.affine = Mat4::scaling(0.001, 0.001, 0.001);
    const std::string err = warned(microns);
    EXPECT_NE(err.find("scan.nii.gz: its field of view is at most 0.192 mm across, not a head's"), std::string::npos)
        << err;
    Grid metres = head;
    metres.affine = Mat4::scaling(1000, 1000, 1000);
    EXPECT_NE(warned(metres).find("xyzt_units"), std::string::npos);
    // A 2-D file, or a slab of two slices, segmented by a 3-D model without a word before.
    Grid slice = head;
    slice.dim = {86, 94, 1};
    EXPECT_NE(warned(slice).find("scan.nii.gz: 86x94x1 voxels, one slice along an axis: the model segments volumes"),
              std::string::npos);
    slice.dim = {86, 2, 78};
    EXPECT_NE(warned(slice).find("86x2x78 voxels, two slices along an axis"), std::string::npos);
}

// A scan of at most 64 whole-number values (a label map, a mask) is warned of; 65 (an int16 or
// uint8 scan has hundreds) and fractions are not, nor a constant image (it has its own warning);
// NaN padding does not hide a label map.
TEST(PredictGeometry, AScanOfFewWholeNumbersIsWarnedOfAsALabelMap) {
    Grid g;
    g.dim = {100, 2, 1};
    auto warned = [](const Image& image) {
        return test::stderr_of([&] { warn_if_a_label_map(image, "scan.nii.gz"); });
    };
    Image image(g);
    for (size_t v = 0; v < image.data.size(); ++v) image.data[v] = float(v % 64) * 3;
    image.data[0] = NAN;
    EXPECT_NE(warned(image).find("scan.nii.gz: only 64 distinct values, all whole numbers, as a label map"),
              std::string::npos);
    for (size_t v = 0; v < image.data.size(); ++v) image.data[v] = float(v % 65) * 3;
    EXPECT_EQ(warned(image), "");
    for (size_t v = 0; v < image.data.size(); ++v) image.data[v] = float(v % 3) + (v == 7 ? 0.5f : 0.0f);
    EXPECT_EQ(warned(image), "");
    EXPECT_EQ(warned(Image(g, 1, 4.0f)), "");
}

TEST(PredictGeometry, ASegmentationOfBackgroundAloneIsWarnedOf) {
    Grid g;
    g.dim = {4, 3, 2};
    auto warned = [](const LabelMap& seg, const Image& image) {
        return test::stderr_of([&] { warn_if_no_structure(seg, image, "scan.nii.gz"); });
    };
    Image image(g);
    image.data[5] = 0.25f;
    LabelMap seg(g);
    EXPECT_NE(warned(seg, image).find("scan.nii.gz: no structure found, the segmentation is all background"),
              std::string::npos);
    EXPECT_NE(warned(seg, image).find("--clip-percentiles"), std::string::npos);
    seg.data[7] = 2;
    EXPECT_EQ(warned(seg, image), "");
    EXPECT_EQ(warned(LabelMap(g), Image(g)), "") << "a constant image has its own warning";
}

// The .hdr/.img pair of a single-file NIfTI-1 `nii`, as SPM and older tools store scans: its
// header with the pair's magic and vox_offset 0 in STEM.hdr, its voxels in STEM.img.
void split_into_pair(const std::string& nii, const std::string& stem) {
    const std::string bytes = test::read_text(nii);
    float offset = 0;
    std::memcpy(&offset, bytes.data() + 108, sizeof offset);
    std::string header = bytes.substr(0, 348);
    const float zero = 0;
    std::memcpy(&header[108], &zero, sizeof zero);
    std::memcpy(&header[344], "ni1\0", 4);
    std::ofstream(stem + ".hdr", std::ios::binary) << header;
    std::ofstream(stem + ".img", std::ios::binary) << bytes.substr(size_t(offset));
}

// A folder of pairs is a folder of scans (each listed once, by its .hdr): the outputs are those of
// the same scans as .nii files, named NAME_synthseg.nii.gz; a pair is never an output's format.
TEST_F(Predict, AFolderOfHdrImgPairsIsSegmentedAsItsNiftiFiles) {
    const std::string model = make_model();
    fs::create_directories(path("single"));
    fs::create_directories(path("pairs"));
    for (const char* name : {"a", "b"}) {
        const std::string nii = path(cat("single/", name, ".nii"));
        write_image(nii, test_image(grid({12, 12, 10}, Mat4::scaling(-1.0, 1.0, 1.2))));
        split_into_pair(nii, path(cat("pairs/", name)));
    }
    EXPECT_EQ(volume_files(path("pairs")), (std::vector<std::string>{path("pairs/a.hdr"), path("pairs/b.hdr")}));
    const std::string run = test::cli_path() + " predict --device cpu --model " + test::shell_quote(model) + " --i ";
    for (const char* folder : {"single", "pairs"}) {
        const test::RunResult r = test::run_command(run + test::shell_quote(path(folder)) + " --o " +
                                                    test::shell_quote(path(cat(folder, "_out"))));
        ASSERT_EQ(r.status, 0) << r.err;
    }
    for (const char* name : {"a", "b"}) {
        VolumeHeader h;
        const LabelMap from_pair = read_labels(path(cat("pairs_out/", name, "_synthseg.nii.gz")), &h);
        EXPECT_EQ(from_pair.data, read_labels(path(cat("single_out/", name, "_synthseg.nii.gz"))).data) << name;
        EXPECT_TRUE(h.grid().same_as(read_volume_header(path(cat("pairs/", name, ".hdr"))).grid())) << name;
    }
    const test::RunResult to_pair =
        test::run_command(run + test::shell_quote(path("pairs/a.hdr")) + " --o " + test::shell_quote(path("seg.hdr")));
    EXPECT_EQ(to_pair.status, 2);
    EXPECT_NE(to_pair.err.find("is not a NIfTI or MGH name (.nii, .nii.gz, .mgz or .mgh): a NIfTI pair (.hdr and .img) "
                               "is read, never written"),
              std::string::npos)
        << to_pair.err;
}

// A folder read and written by predict: hidden files (macOS's ._NAME) and predict's own outputs
// are not scans, so a second run works as the first; two scans that would write one output
// name are refused naming both; a NIfTI name for a folder's outputs and a picture not named
// .png are refused before any work. A constant image is segmented with a warning.
TEST_F(Predict, CommandFoldersSkipHiddenFilesAndTheirOwnOutputs) {
    const std::string model = make_model();
    fs::create_directories(path("f"));
    write_image(path("f/s.nii.gz"), test_image(grid({12, 12, 10}, Mat4::identity())));
    std::ofstream(path("f/._s.nii.gz")) << "AppleDouble, not NIfTI";
    const std::string run = test::cli_path() + " predict --device cpu --model " + test::shell_quote(model) +
                            " --i " + test::shell_quote(path("f")) + " --o " + test::shell_quote(path("f")) +
                            " --post " + test::shell_quote(path("f"));
    const test::RunResult first = test::run_command(run);
    ASSERT_EQ(first.status, 0) << first.err;
    EXPECT_TRUE(fs::exists(path("f/s_synthseg.nii.gz")));
    const test::RunResult again = test::run_command(run);
    ASSERT_EQ(again.status, 0) << again.err;
    EXPECT_NE(again.err.find("2 file(s) named as predict's outputs"), std::string::npos) << again.err;
    EXPECT_FALSE(fs::exists(path("f/s_synthseg_synthseg.nii.gz")));
    // Outputs named the README's way (t1_seg, t1_post): the posteriors are known by the labels
    // their frames record and left out; the segmentation is segmented, with a warning.
    fs::copy_file(path("f/s_posteriors.nii.gz"), path("f/s_post.nii.gz"));
    fs::copy_file(path("f/s_synthseg.nii.gz"), path("f/s_seg.nii.gz"));
    const test::RunResult named = test::run_command(run);
    ASSERT_EQ(named.status, 0) << named.err;
    EXPECT_NE(
        named.err.find(path("f/s_post.nii.gz") + " holds posteriors (its frames record their labels): not segmented"),
        std::string::npos)
        << named.err;
    EXPECT_FALSE(fs::exists(path("f/s_post_synthseg.nii.gz")));
    EXPECT_NE(named.err.find(path("f/s_seg.nii.gz") + ": only "), std::string::npos) << named.err;
    EXPECT_NE(named.err.find(" distinct values, all whole numbers, as a label map or a mask holds"), std::string::npos)
        << named.err;
    EXPECT_EQ(named.err.find(path("f/s.nii.gz") + ": only "), std::string::npos) << "the scan is not a label map";
    const test::RunResult one_post = test::run_command(
        test::cli_path() + " predict --device cpu --model " + test::shell_quote(model) + " --i " +
        test::shell_quote(path("f/s_post.nii.gz")) + " --o " + test::shell_quote(path("post_seg.nii.gz")));
    EXPECT_EQ(one_post.status, 2);
    EXPECT_NE(one_post.err.find("s_post.nii.gz: posteriors ("), std::string::npos) << one_post.err;
    fs::create_directories(path("posts"));
    fs::copy_file(path("f/s_post.nii.gz"), path("posts/s_post.nii.gz"));
    const test::RunResult only_posts =
        test::run_command(test::cli_path() + " predict --device cpu --model " + test::shell_quote(model) + " --i " +
                          test::shell_quote(path("posts")) + " --o " + test::shell_quote(path("posts_out")));
    EXPECT_EQ(only_posts.status, 2);
    EXPECT_NE(only_posts.err.find("no scans, only posteriors an earlier run wrote (1)"), std::string::npos)
        << only_posts.err;
    EXPECT_FALSE(fs::exists(path("posts_out"))) << "the folder made for the outputs is taken back";
    fs::remove(path("f/s_post.nii.gz"));
    fs::remove(path("f/s_seg.nii.gz"));
    for (const char* made : {"f/s_seg_synthseg.nii.gz", "f/s_seg_posteriors.nii.gz"}) fs::remove(path(made));

    fs::create_directories(path("dup"));
    write_image(path("dup/b.nii"), test_image(grid({12, 12, 10}, Mat4::identity())));
    write_image(path("dup/b.nii.gz"), test_image(grid({12, 12, 10}, Mat4::identity())));
    const std::string base = test::cli_path() + " predict --device cpu --model " + test::shell_quote(model) + " --i ";
    test::RunResult r =
        test::run_command(base + test::shell_quote(path("dup")) + " --o " + test::shell_quote(path("o")));
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find(path("dup/b.nii") + " and " + path("dup/b.nii.gz") + " would both be written as"),
              std::string::npos)
        << r.err;
    r = test::run_command(base + test::shell_quote(path("f")) + " --o " + test::shell_quote(path("o")) + " --post " +
                          test::shell_quote(path("p.nii.gz")));
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("with a folder of scans, --post names a folder"), std::string::npos) << r.err;
    r = test::run_command(base + test::shell_quote(path("f/s.nii.gz")) + " --o " + test::shell_quote(path("s.nii.gz")) +
                          " --preview " + test::shell_quote(path("p.jpg")));
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("the picture is a PNG"), std::string::npos) << r.err;
    r = test::run_command(base + test::shell_quote(path("f/s.nii.gz")) + " --o " + test::shell_quote(path("s.nii.gz")) +
                          " --vol " + test::shell_quote(path("v.nii")));
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("the volumes are CSV text, not an image"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(path("o")));
    EXPECT_FALSE(fs::exists(path("s.nii.gz")));

    Predictor predictor(model, PredictOptions{});
    testing::internal::CaptureStderr();
    predictor.predict(Image(grid({12, 12, 10}, Mat4::identity()), 1, 7.0f), "blank.nii.gz");
    const std::string warned = testing::internal::GetCapturedStderr();
    EXPECT_NE(warned.find("blank.nii.gz: the image is constant (7)"), std::string::npos) << warned;
    // Constant only once resampled (voxels in micrometres read as mm: two voxels at the model's
    // size): said so, not of the scan, which is not constant.
    Predictor at_1mm(make_model(1, 1.0), PredictOptions{});
    testing::internal::CaptureStderr();
    at_1mm.predict(test_image(grid({40, 40, 40}, Mat4::scaling(0.001, 0.001, 0.001))), "micrometres.nii.gz");
    const std::string resampled = testing::internal::GetCapturedStderr();
    EXPECT_NE(resampled.find("micrometres.nii.gz: the image resampled to the model's voxel size (1x1x1 voxels) is "
                             "constant ("),
              std::string::npos)
        << resampled;
}

TEST_F(Predict, BadInputIsNamed) {
    Predictor predictor(make_model(), PredictOptions{});
    const Image image4d(grid({8, 8, 8}, Mat4::identity()), 2);
    try {
        predictor.predict(image4d, "four_d.nii.gz");
        FAIL() << "4-D accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("four_d.nii.gz"), std::string::npos) << e.what();
    }
    // A 2-channel model (T1 and T2) given one volume.
    Predictor two_channels(make_model(2), PredictOptions{});
    try {
        two_channels.predict(test_image(grid({8, 8, 8}, Mat4::identity())), "t1_only.nii.gz");
        FAIL() << "one channel accepted by a 2-channel model";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("t1_only.nii.gz: the model takes 2 channels"), std::string::npos)
            << e.what();
    }
    EXPECT_THROW(Predictor(path("missing.safetensors"), PredictOptions{}), InputError);
}

// A 2-channel model: each channel normalised on its own (scaling one channel changes nothing),
// and the channels matter (swapping them changes the result).
TEST_F(Predict, TwoChannelModelNormalisesEachChannelOnItsOwn) {
    Predictor predictor(make_model(2, 1.0, 0.05f), PredictOptions{});
    const Grid g = grid({14, 16, 12}, Mat4::scaling(1, 1, 1));
    const Image t1 = test_image(g);
    Image stacked(g, 2), scaled(g, 2), swapped(g, 2);
    const size_t n = size_t(g.voxels());
    for (size_t v = 0; v < n; ++v) {
        const float second = std::cos(0.1f * float(v % 17)) * t1.data[v];
        stacked.data[v] = t1.data[v];
        stacked.data[n + v] = second;
        scaled.data[v] = 1000.0f * t1.data[v] + 5.0f;
        scaled.data[n + v] = second;
        swapped.data[v] = second;
        swapped.data[n + v] = t1.data[v];
    }
    const Segmentation a = predictor.predict(stacked, "stacked");
    const Segmentation b = predictor.predict(scaled, "scaled");
    EXPECT_TRUE(test::all_near(b.posteriors.data, a.posteriors.data, 1e-5));
    EXPECT_NE(predictor.predict(swapped, "swapped").posteriors.data, a.posteriors.data);
    EXPECT_EQ(a.resampled.frames, 2);
}

// A scan segmented as all background has no volumes: its row's cells are empty (its soft volumes,
// some 20 mL of posterior mass, read as a small brain in a cohort's table). And --vol replaces
// only a volumes table: a study's spreadsheet named by a typo stays.
TEST_F(Predict, ABlankScanHasAnEmptyVolumesRow) {
    const std::string model = make_model();
    fs::create_directories(path("scans"));
    write_image(path("scans/blank.nii.gz"), Image(grid({12, 12, 10}, Mat4::identity()), 1, 0.0f));
    write_image(path("scans/head.nii.gz"), test_image(grid({12, 12, 10}, Mat4::identity())));
    const std::string command = test::cli_path() + " predict --i " + test::shell_quote(path("scans")) + " --o " +
                                test::shell_quote(path("out")) + " --model " + test::shell_quote(model) +
                                " --device cpu --vol ";
    const test::RunResult r = test::run_command(command + test::shell_quote(path("vol.csv")));
    ASSERT_EQ(r.status, 0) << r.err;
    const CsvTable vol = read_csv(path("vol.csv"));
    ASSERT_EQ(vol.rows.size(), 2u);
    int segmented = 0;  // rows of a scan with a structure: both kinds of row must be met
    for (const std::vector<std::string>& row : vol.rows) {
        const LabelMap seg = read_labels(path("out/" + row.front() + "_synthseg.nii.gz"));
        const bool any = std::any_of(seg.data.begin(), seg.data.end(), [](int32_t v) { return v != 0; });
        segmented += any;
        ASSERT_EQ(row.size(), vol.columns.size());
        for (size_t c = 1; c < row.size(); ++c) EXPECT_EQ(row[c].empty(), !any) << row.front() << " " << c;
    }
    EXPECT_EQ(segmented, 1) << "the head scan segmented, the blank one not";
    EXPECT_EQ(vol.rows[0].front(), "blank");
    EXPECT_EQ(vol.rows[0].back(), "") << "the blank scan: no volumes";

    const std::string study = "subject,age_months\nsub01,3\n";
    std::ofstream(path("study.csv")) << study;
    const test::RunResult typo = test::run_command(command + test::shell_quote(path("study.csv")));
    EXPECT_EQ(typo.status, 2) << typo.err;
    EXPECT_NE(
        typo.err.find("predict: error: --vol " + path("study.csv") + ": a file that is not a volumes table is there"),
        std::string::npos)
        << typo.err;
    EXPECT_EQ(test::read_text(path("study.csv")), study);
}

TEST_F(Predict, CommandProcessesAFolderFileByFile) {
    const std::string model = make_model();
    fs::create_directories(path("in"));
    write_image(path("in/a.nii.gz"), test_image(grid({12, 12, 10}, Mat4::identity())));
    write_image(path("in/b.nii.gz"), test_image(grid({10, 14, 12}, Mat4::scaling(-1, 1, 1))));
    write_image(path("in/c_4d.nii.gz"), Image(grid({6, 6, 6}, Mat4::identity()), 2, 1.0f));
    const test::RunResult r = test::run_command(test::cli_path() + " predict --i " +
                                                test::shell_quote(path("in")) + " --o " + test::shell_quote(path("out")) +
                                                " --model " + test::shell_quote(model) + " --post " +
                                                test::shell_quote(path("post")) + " --vol " +
                                                test::shell_quote(path("vol.csv")) + " --device cpu");
    EXPECT_EQ(r.status, 2) << "one input was bad: " << r.err;
    EXPECT_NE(r.err.find("c_4d.nii.gz"), std::string::npos) << r.err;
    for (const char* f : {"out/a_synthseg.nii.gz", "out/b_synthseg.nii.gz", "post/a_posteriors.nii.gz"})
        EXPECT_TRUE(fs::exists(path(f))) << f;
    EXPECT_FALSE(fs::exists(path("out/c_4d_synthseg.nii.gz")));
    // Each file written is announced with its output; the skipped one is not.
    EXPECT_NE(r.out.find("a.nii.gz -> " + path("out/a_synthseg.nii.gz")), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("b.nii.gz -> "), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("c_4d"), std::string::npos) << r.out;
    const CsvTable vol = read_csv(path("vol.csv"));
    EXPECT_EQ(vol.rows.size(), 2u);
    EXPECT_EQ(vol.columns.front(), "subject");
    EXPECT_EQ(vol.columns.back(), "total");
    EXPECT_EQ(vol.columns.size(), 1u + 33u + 1u);
    const LabelMap b = read_labels(path("out/b_synthseg.nii.gz"));
    EXPECT_EQ(b.grid.dim, (std::array<int64_t, 3>{10, 14, 12}));
    EXPECT_EQ(orientation_code(b.grid.affine), "LAS");

    // A signal (here as b's output is moved into place) ends the run at once, saying how far it
    // got (it said nothing, a folder's run in a scheduler's log looking as one still running).
    const test::RunResult stopped = test::run_command(
        "INFANT_SIGNAL_AT=" + test::shell_quote(path("stopped/b_synthseg.nii.gz")) + " " + test::cli_path() +
        " predict --i " + test::shell_quote(path("in")) + " --o " + test::shell_quote(path("stopped")) + " --vol " +
        test::shell_quote(path("stopped.csv")) + " --model " + test::shell_quote(model) + " --device cpu");
    EXPECT_EQ(stopped.status, 143) << "ended by SIGTERM (as the shell reports it): " << stopped.err;
    EXPECT_NE(stopped.err.find("infant-synthseg predict: ended by a signal at scan 2 of 3: the scans segmented before "
                               "it are written whole, it whole or not at all, the rest not, nor the --vol table; what "
                               "an earlier run wrote there stays as it was\n"),
              std::string::npos)
        << stopped.err;
    EXPECT_FALSE(fs::exists(path("stopped.csv")));
    EXPECT_TRUE(fs::exists(path("stopped/a_synthseg.nii.gz")));
    EXPECT_FALSE(fs::exists(path("stopped/b_synthseg.nii.gz")));

    // Run again with b broken: the outputs the first run wrote for b stay, and the error says so.
    std::ofstream(path("in/b.nii.gz")) << "no longer a NIfTI file";
    const test::RunResult again = test::run_command(test::cli_path() + " predict --i " +
                                                    test::shell_quote(path("in")) + " --o " +
                                                    test::shell_quote(path("out")) + " --model " +
                                                    test::shell_quote(model) + " --device cpu");
    EXPECT_EQ(again.status, 2) << again.err;
    EXPECT_NE(again.err.find("b.nii.gz: "), std::string::npos) << again.err;
    EXPECT_NE(again.err.find("(skipped; an earlier run's outputs for it stay)"), std::string::npos) << again.err;
    EXPECT_TRUE(read_labels(path("out/b_synthseg.nii.gz")).data == b.data) << "b's earlier outputs changed";

    // A folder whose every scan is refused: exit 2 and none of the folders predict made stays.
    fs::create_directories(path("bad"));
    std::ofstream(path("bad/x.nii.gz")) << "not a NIfTI file";
    const test::RunResult none =
        test::run_command(test::cli_path() + " predict --i " + test::shell_quote(path("bad")) + " --o " +
                          test::shell_quote(path("new/seg")) + " --post " + test::shell_quote(path("new-post")) +
                          " --model " + test::shell_quote(model) + " --device cpu");
    EXPECT_EQ(none.status, 2) << none.err;
    EXPECT_FALSE(fs::exists(path("new"))) << "an empty output tree left";
    EXPECT_FALSE(fs::exists(path("new-post")));
}

}  // namespace
}  // namespace iss
