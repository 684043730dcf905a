// Prior estimation (SPEC.md section 7), against values worked out by hand:
//   PriorsEstimate  the statistics on vectors: NumPy's percentile, median and scaled MAD, the
//                   2-98% rescaling on a ramp, per-label and fused-class measurement, the
//                   across-subject mean and population std, absent labels;
//   PriorsFiles     pairing by file name, grid and dimension checks, and a round trip: subjects
//                   painted with a known normal per label give back that contrast;
//   PriorsCli       the `priors` command: the .npy files it writes, its table and warning, and
//                   bad input (exit 2, one line, nothing written).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "io/nifti.h"
#include "io/npy.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "synth/config.h"
#include "synth/infant_priors.h"
#include "synth/labels.h"
#include "synth/priors_estimate.h"
#include "test_util.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

// Population mean and std, written out again here so the test does not trust the code it tests.
void mean_std(const std::vector<double>& x, double& mean, double& std) {
    mean = 0;
    for (const double v : x) mean += v / double(x.size());
    std = 0;
    for (const double v : x) std += (v - mean) * (v - mean) / double(x.size());
    std = std::sqrt(std);
}

PriorsOptions options_for(std::vector<int32_t> labels, bool classes = false) {
    PriorsOptions o;
    o.labels = std::move(labels);
    o.classes = classes;
    return o;
}

TEST(PriorsEstimate, PercentileMedianAndMadAsNumpy) {
    // np.percentile(range(1, 11), [2, 98]) = [1.18, 9.82]; order of the input must not matter.
    std::vector<double> v = {7, 3, 10, 1, 5, 9, 2, 8, 4, 6};
    EXPECT_NEAR(percentile(v, 2), 1.18, 1e-12);
    EXPECT_NEAR(percentile(v, 98), 9.82, 1e-12);
    EXPECT_EQ(percentile(v, 0), 1);
    EXPECT_EQ(percentile(v, 100), 10);
    std::vector<double> odd = {5, 1, 4}, even = {4, 1, 3, 2}, one = {7};
    EXPECT_EQ(median_of(odd), 4);
    EXPECT_EQ(median_of(even), 2.5);
    EXPECT_EQ(median_of(one), 7);
    // {1, 2, 3, 4, 100}: median 3, |x - 3| = {2, 1, 0, 1, 97}, their median 1.
    std::vector<double> skewed = {100, 2, 4, 1, 3};
    const double med = median_of(skewed);
    EXPECT_EQ(med, 3);
    EXPECT_EQ(scaled_mad(skewed, med), 1.4826);
    std::vector<double> none;
    EXPECT_THROW(percentile(none, 50), Error);
    EXPECT_THROW(median_of(none), Error);
}

TEST(PriorsEstimate, RescaleClipsAtPositivePercentilesOfARamp) {
    // 0, 1, ..., 100: the zero is not positive, so the percentiles are of 1..100 (n = 100):
    // 2% at position 1.98 -> 2.98, 98% at position 97.02 -> 98.02.
    std::vector<double> ramp;
    for (int i = 0; i <= 100; ++i) ramp.push_back(i);
    ramp.push_back(NAN);
    ramp.push_back(INFINITY);  // no intensity either: not among the percentiles' values
    rescale_intensities(ramp, "ramp");
    const double lo = 2.98, hi = 98.02;
    EXPECT_EQ(ramp[0], 0);  // below lo: clipped to lo, then 0
    EXPECT_EQ(ramp[2], 0);
    EXPECT_NEAR(ramp[3], (3 - lo) / (hi - lo) * 255, 1e-9);
    EXPECT_NEAR(ramp[50], (50 - lo) / (hi - lo) * 255, 1e-9);
    EXPECT_NEAR(ramp[98], (98 - lo) / (hi - lo) * 255, 1e-9);
    EXPECT_EQ(ramp[99], 255);  // above hi: clipped
    EXPECT_EQ(ramp[100], 255);
    EXPECT_TRUE(std::isnan(ramp[101]));
    EXPECT_TRUE(std::isinf(ramp[102]));

    std::vector<double> flat = {0, 5, 5, 5};  // lo == hi: zeros, as the reference, and a warning
    testing::internal::CaptureStderr();
    rescale_intensities(flat, "flat.nii.gz");
    const std::string warned = testing::internal::GetCapturedStderr();
    EXPECT_NE(warned.find("flat.nii.gz: its positive intensities have no spread"), std::string::npos) << warned;
    for (const double v : flat) EXPECT_EQ(v, 0);
    std::vector<double> dark = {0, -1, 0};
    try {
        rescale_intensities(dark, "dark.nii.gz");
        FAIL() << "no positive intensity accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("dark.nii.gz"), std::string::npos) << e.what();
    }
}

TEST(PriorsEstimate, ConstantAndKnownRegionsPerLabel) {
    // Label 2 constant 40, label 3 the values {10, 20, 30, 40, 90}, label 5 not in the list,
    // label 4 listed but absent. NaN and infinite voxels are ignored.
    const std::vector<int32_t> labels = {2, 2, 2, 3, 3, 3, 3, 3, 5, 2, 3, 3};
    const std::vector<double> image = {40, 40, 40, 20, 90, 10, 40, 30, 7, NAN, INFINITY, -INFINITY};
    const SubjectStats s = measure_subject(image, labels, options_for({3, 4, 2}));
    ASSERT_EQ(s.median.size(), 3u);
    EXPECT_EQ(s.median[0], 30);
    EXPECT_EQ(s.spread[0], 1.4826 * 10);  // |x - 30| = {10, 60, 20, 10, 0}: median 10
    EXPECT_EQ(s.voxels[0], 5);
    EXPECT_EQ(s.voxels[1], 0);
    EXPECT_EQ(s.median[1], 0);
    EXPECT_EQ(s.median[2], 40);
    EXPECT_EQ(s.spread[2], 0);
    EXPECT_EQ(s.voxels[2], 3);
}

TEST(PriorsEstimate, StructuresCountOnlyTheirPositiveIntensities) {
    // As the reference's keep_strictly_positive: the voxels the rescaling clipped to 0 leave
    // the structures' statistics, except the first listed label's (the background). Label 3's
    // voxels are all 0, so it is absent in this subject.
    const std::vector<int32_t> labels = {0, 0, 0, 2, 2, 2, 2, 2, 2, 3, 3};
    const std::vector<double> image = {0, 0, 5, 0, 0, 0, 50, 60, 70, 0, 0};
    const SubjectStats s = measure_subject(image, labels, options_for({0, 2, 3}));
    EXPECT_EQ(s.median, (std::vector<double>{0, 60, 0}));
    EXPECT_EQ(s.voxels, (std::vector<int64_t>{3, 3, 0}));
    EXPECT_EQ(s.spread[1], 1.4826 * 10);
    // Fused: the background group is the first listed label's; 41's zeros leave the pool.
    const std::vector<int32_t> fused_labels = {2, 2, 41, 41};
    const std::vector<double> fused_image = {0, 10, 0, 30};
    const SubjectStats pooled = measure_subject(fused_image, fused_labels, options_for({2, 41}, true));
    EXPECT_EQ(pooled.median, (std::vector<double>{5, 5}));  // 2 leads the list: {0, 0, 10, 30}
    EXPECT_EQ(pooled.voxels, (std::vector<int64_t>{4, 4}));
    const SubjectStats behind = measure_subject(fused_image, fused_labels, options_for({0, 2, 41}, true));
    EXPECT_EQ(behind.median, (std::vector<double>{0, 20, 20}));
    EXPECT_EQ(behind.voxels, (std::vector<int64_t>{0, 2, 2}));
}

TEST(PriorsEstimate, FusedClassesPoolTheirLabels) {
    // (2, 21, 41, 61): 2 holds {10, 10}, 41 holds {30, 30, 30}; pooled median 30 written at
    // both columns (21 and 61 are not in the list). (16, 170): 170 alone holds {50}.
    // 3 is its own class.
    const std::vector<int32_t> labels = {2, 2, 41, 41, 41, 170, 3};
    const std::vector<double> image = {10, 10, 30, 30, 30, 50, 60};
    const std::vector<int32_t> list = {41, 3, 16, 2, 170};
    const SubjectStats pooled = measure_subject(image, labels, options_for(list, true));
    EXPECT_EQ(pooled.median, (std::vector<double>{30, 60, 50, 30, 50}));
    EXPECT_EQ(pooled.voxels, (std::vector<int64_t>{5, 1, 1, 5, 1}));
    EXPECT_EQ(pooled.spread[0], 0);  // |x - 30| = {20, 20, 0, 0, 0}
    const SubjectStats separate = measure_subject(image, labels, options_for(list, false));
    EXPECT_EQ(separate.median, (std::vector<double>{30, 60, 0, 10, 50}));
    EXPECT_EQ(separate.voxels[2], 0);
    // A label twice would leave one of its columns silently empty.
    EXPECT_THROW(measure_subject(image, labels, options_for({2, 3, 2})), Error);
}

TEST(PriorsEstimate, AcrossSubjectsMeanAndPopulationStd) {
    // Label 2 in all three subjects (medians 10, 20, 60; spreads 1, 2, 6); label 3 in the
    // first and third only (medians 100, 140); label 4 in none; label 5 in one.
    auto subject = [](double m2, double s2, int64_t n3, double m3, double m5) {
        SubjectStats s;
        s.median = {m2, m3, 0, m5};
        s.spread = {s2, m3 / 10, 0, 3};
        s.voxels = {10, n3, 0, m5 > 0 ? 4 : 0};
        return s;
    };
    const std::vector<SubjectStats> subjects = {subject(10, 1, 8, 100, 0), subject(20, 2, 0, 0, 0),
                                                subject(60, 6, 8, 140, 70)};
    const EstimatedPriors p = combine_subjects(subjects, options_for({2, 3, 4, 5}));
    ASSERT_EQ(p.means.size(), 8u);
    double mean, std;
    mean_std({10, 20, 60}, mean, std);
    EXPECT_NEAR(p.means[0], 30, 1e-12);
    EXPECT_NEAR(p.means[4 + 0], std::sqrt(1400.0 / 3), 1e-12);  // ddof 0, not 1
    EXPECT_NEAR(p.means[4 + 0], std, 1e-12);
    EXPECT_NEAR(p.stds[0], 3, 1e-12);
    EXPECT_NEAR(p.stds[4 + 0], std::sqrt(14.0 / 3), 1e-12);
    // The subject without label 3 is ignored, not counted as a zero.
    EXPECT_NEAR(p.means[1], 120, 1e-12);
    EXPECT_NEAR(p.means[4 + 1], 20, 1e-12);
    EXPECT_NEAR(p.stds[1], 12, 1e-12);
    EXPECT_NEAR(p.stds[4 + 1], 2, 1e-12);
    // Absent everywhere: zeros, and named.
    EXPECT_EQ(p.means[2], 0);
    EXPECT_EQ(p.means[4 + 2], 0);
    EXPECT_EQ(p.stds[2], 0);
    EXPECT_EQ(p.stds[4 + 2], 0);
    EXPECT_EQ(p.absent, (std::vector<int32_t>{4}));
    // One subject: the std is 0.
    EXPECT_EQ(p.means[3], 70);
    EXPECT_EQ(p.means[4 + 3], 0);
    EXPECT_EQ(p.stds[4 + 3], 0);
    EXPECT_EQ(p.subjects, (std::vector<int>{3, 2, 0, 1}));
}

// A 10x10x10 subject in slabs along k, 100 voxels each: slab 0 background (intensity 0), slab 1
// label 24 at 20 and slab 9 label 77 at 230, so that the 2nd and 98th percentiles of the 900
// positive voxels are exactly 20 and 230 and a value v rescales to (v - 20) / 210 * 255.
// `slabs` gives the label and value of slabs 2..8 (value < 0: half the slab at -value, half
// at -value + 20).
struct Slab {
    int32_t label;
    double value;
};

double rescaled(double v) {
    return (v - 20) / 210 * 255;
}

void write_subject(const std::string& image_path, const std::string& labels_path, const std::vector<Slab>& slabs) {
    Grid grid;
    grid.dim = {10, 10, 10};
    Image image(grid);
    LabelMap labels(grid);
    for (int64_t k = 0; k < 10; ++k) {
        Slab s = k == 0 ? Slab{0, 0} : k == 1 ? Slab{24, 20} : k == 9 ? Slab{77, 230} : slabs.at(size_t(k - 2));
        for (int64_t j = 0; j < 10; ++j)
            for (int64_t i = 0; i < 10; ++i) {
                labels.at(i, j, k) = s.label;
                image.at(i, j, k) = float(s.value >= 0 ? s.value : -s.value + (j < 5 ? 0 : 20));
            }
    }
    write_image(image_path, image);
    write_labels(labels_path, labels);
}

class PriorsFiles : public test::TempDirTest {
protected:
    void SetUp() override {
        test::TempDirTest::SetUp();
        fs::create_directories(dir_ / "images");
        fs::create_directories(dir_ / "labels");
    }
    std::string image(const std::string& name) const { return (dir_ / "images" / name).string(); }
    std::string label_map(const std::string& name) const { return (dir_ / "labels" / name).string(); }
    void subject(const std::string& name, const std::vector<Slab>& slabs) {
        write_subject(image(name), label_map(name), slabs);
    }
    // The InputError's message, which must name `file`.
    template <class F>
    void expect_input_error(F&& call, const std::string& file, const std::string& fragment) {
        try {
            call();
            ADD_FAILURE() << "no InputError";
        } catch (const InputError& e) {
            const std::string what = e.what();
            EXPECT_NE(what.find(file), std::string::npos) << what;
            EXPECT_NE(what.find(fragment), std::string::npos) << what;
        }
    }
};

const std::vector<Slab> plain = {{2, 50}, {3, 60}, {4, 70}, {10, 80}, {11, 90}, {16, 100}, {170, 110}};

TEST_F(PriorsFiles, PairsByNameAndNamesTheFileWithoutAPartner) {
    subject("b.nii.gz", plain);
    subject("a.nii", plain);
    const std::vector<SubjectFiles> pairs = pair_subject_files((dir_ / "images").string(), (dir_ / "labels").string());
    ASSERT_EQ(pairs.size(), 2u);
    EXPECT_EQ(pairs[0].image, image("a.nii"));
    EXPECT_EQ(pairs[0].labels, label_map("a.nii"));
    EXPECT_EQ(pairs[1].labels, label_map("b.nii.gz"));

    fs::copy_file(image("a.nii"), image("c.nii"));
    expect_input_error([&] { pair_subject_files((dir_ / "images").string(), (dir_ / "labels").string()); },
                       image("c.nii"), "no label map");
    fs::remove(image("c.nii"));
    fs::copy_file(label_map("a.nii"), label_map("d.nii"));
    expect_input_error([&] { pair_subject_files((dir_ / "images").string(), (dir_ / "labels").string()); },
                       label_map("d.nii"), "no image");
    fs::remove(label_map("d.nii"));

    // A subject is the name without .nii / .nii.gz: a.nii.gz pairs with a.nii, two of one
    // subject in a folder are refused.
    fs::rename(label_map("a.nii"), label_map("a.nii.gz"));
    EXPECT_EQ(pair_subject_files((dir_ / "images").string(), (dir_ / "labels").string())[0].labels,
              label_map("a.nii.gz"));
    fs::copy_file(image("a.nii"), image("a.nii.gz"));
    expect_input_error([&] { pair_subject_files((dir_ / "images").string(), (dir_ / "labels").string()); },
                       "a.nii and a.nii.gz", "are one subject's");
    // Two files are one subject whatever their names; a file and a folder are refused.
    const std::vector<SubjectFiles> one = pair_subject_files(image("b.nii.gz"), label_map("a.nii.gz"));
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].image, image("b.nii.gz"));
    EXPECT_EQ(one[0].labels, label_map("a.nii.gz"));
    expect_input_error([&] { pair_subject_files(image("b.nii.gz"), (dir_ / "labels").string()); }, "--images",
                       "both be folders or both files");
    expect_input_error([&] { pair_subject_files(image("typo.nii.gz"), label_map("a.nii.gz")); }, image("typo.nii.gz"),
                       "cannot open");
}

TEST_F(PriorsFiles, GridMismatchAndFourDimensionalImagesAreInputErrors) {
    const PriorsOptions options = options_for(labels::generation_labels());
    subject("s.nii.gz", plain);
    Grid small;
    small.dim = {10, 10, 9};
    write_labels(label_map("s.nii.gz"), LabelMap(small));
    expect_input_error(
        [&] {
            measure_subject_files({image("s.nii.gz"), label_map("s.nii.gz")}, options);
        },
        label_map("s.nii.gz"), "dims differ (10x10x10 vs 10x10x9)");

    Grid shifted;
    shifted.dim = {10, 10, 10};
    shifted.affine.m[0][3] = 1;  // same dims, origin 1 mm apart
    write_labels(label_map("s.nii.gz"), LabelMap(shifted));
    expect_input_error(
        [&] {
            measure_subject_files({image("s.nii.gz"), label_map("s.nii.gz")}, options);
        },
        label_map("s.nii.gz"), "affines differ");

    subject("s.nii.gz", plain);
    Grid grid;
    grid.dim = {10, 10, 10};
    write_image(image("s.nii.gz"), Image(grid, 2, 1.0f));
    expect_input_error(
        [&] {
            measure_subject_files({image("s.nii.gz"), label_map("s.nii.gz")}, options);
        },
        image("s.nii.gz"), "expected a 3-D image, found 2 volumes");
}

// An image and its label map may store one grid in different voxel orders (a LIA image beside a
// RAS map): both are brought to RAS before their grids are compared, and the priors are those of
// the pair stored alike.
TEST_F(PriorsFiles, ImageAndLabelsMayStoreOneGridInDifferentVoxelOrders) {
    const PriorsOptions options = options_for(labels::generation_labels());
    subject("s.nii.gz", {{2, 50}, {3, 60}, {10, -100}, {11, 90}, {16, 100}, {170, 110}, {4, 70}});
    const std::vector<SubjectFiles> pairs{{image("s.nii.gz"), label_map("s.nii.gz")}};
    const EstimatedPriors alike = estimate_priors(pairs, options);
    write_image(image("s.nii.gz"), reorient(read_image(image("s.nii.gz")), "LIA"));
    const EstimatedPriors mixed = estimate_priors(pairs, options);
    EXPECT_EQ(mixed.means, alike.means);
    EXPECT_EQ(mixed.stds, alike.stds);
}

TEST_F(PriorsFiles, ConstantSubjectsGiveExactPriors) {
    // Label 2 at 50, 80, 140 in three subjects; label 3 missing from the second; label 10
    // half 100, half 120 (median 110, MAD 10) in the first.
    subject("s1.nii.gz", {{2, 50}, {3, 60}, {10, -100}, {11, 90}, {16, 100}, {170, 110}, {4, 70}});
    subject("s2.nii.gz", {{2, 80}, {4, 60}, {10, 80}, {11, 90}, {16, 100}, {170, 110}, {4, 70}});
    subject("s3.nii.gz", {{2, 140}, {3, 90}, {10, 80}, {11, 90}, {16, 100}, {170, 110}, {4, 70}});
    const PriorsOptions options = options_for(labels::generation_labels());
    const EstimatedPriors p =
        estimate_priors(pair_subject_files((dir_ / "images").string(), (dir_ / "labels").string()), options);
    const size_t n = 43;
    auto col = [](int32_t label) { return size_t(labels::index_of(labels::generation_labels(), label)); };
    double mean, std;
    mean_std({rescaled(50), rescaled(80), rescaled(140)}, mean, std);
    EXPECT_NEAR(p.means[col(2)], mean, 1e-9);
    EXPECT_NEAR(p.means[n + col(2)], std, 1e-9);
    EXPECT_EQ(p.stds[col(2)], 0);
    mean_std({rescaled(60), rescaled(90)}, mean, std);
    EXPECT_NEAR(p.means[col(3)], mean, 1e-9);
    EXPECT_NEAR(p.means[n + col(3)], std, 1e-9);
    EXPECT_EQ(p.subjects[col(3)], 2);
    // Label 10: medians rescaled(110), rescaled(80), rescaled(80); spreads 1.4826 * 10 * 255 / 210, 0, 0.
    mean_std({rescaled(110), rescaled(80), rescaled(80)}, mean, std);
    EXPECT_NEAR(p.means[col(10)], mean, 1e-9);
    EXPECT_NEAR(p.stds[col(10)], 1.4826 * 10 * 255 / 210 / 3, 1e-9);
    // The floor label, clipped to 0 everywhere, counts as absent as in the reference; the
    // background keeps its zeros.
    EXPECT_EQ(p.subjects[col(24)], 0);
    EXPECT_EQ(p.means[col(24)], 0);
    EXPECT_EQ(p.means[col(77)], 255);
    EXPECT_EQ(p.subjects[col(0)], 3);
    EXPECT_EQ(p.means[col(0)], 0);
    EXPECT_EQ(p.absent.size(), 43u - 9u);  // present: 0 2 3 4 10 11 16 77 170
}

TEST_F(PriorsFiles, RoundTripOfAKnownContrast) {
    // Three subjects painted with a normal per label from a fixed RNG: label L has mean
    // mu_L + 10 * subject and std sigma_L, clamped to [20, 230] (at least 4 sigma away, so the
    // median and MAD barely move) inside a floor and a ceiling that fix the rescaling. The
    // estimate must give back mean(mu_L + 10 s) and sigma_L in rescaled units; the median of
    // 20000 normal draws has a std of about 1.25 sigma / sqrt(20000) = 0.009 sigma and the
    // scaled MAD about 0.012 sigma, so 0.06 sigma is over 5 of those.
    const std::vector<int32_t> painted = {2, 3, 4, 10, 11, 16, 170};
    const std::vector<double> mu = {80, 120, 160, 100, 140, 90, 130}, sigma = {8, 5, 10, 6, 4, 9, 7};
    Grid grid;
    grid.dim = {100, 20, 100};  // slabs of 10 k-planes along k, 20000 voxels each
    std::mt19937_64 rng(12345);
    for (int s = 0; s < 3; ++s) {
        Image img(grid);
        LabelMap map(grid);
        for (int64_t k = 0; k < 100; ++k) {
            const int slab = int(k / 10);  // 0 background, 1 floor, 2..8 painted, 9 ceiling
            for (int64_t j = 0; j < 20; ++j)
                for (int64_t i = 0; i < 100; ++i) {
                    double v = 0;
                    int32_t label = 0;
                    if (slab == 1) label = 24, v = 20;
                    if (slab == 9) label = 77, v = 230;
                    if (slab >= 2 && slab <= 8) {
                        const size_t l = size_t(slab - 2);
                        label = painted[l];
                        v = std::clamp(std::normal_distribution<double>(mu[l] + 10 * s, sigma[l])(rng), 20.0, 230.0);
                    }
                    map.at(i, j, k) = label;
                    img.at(i, j, k) = float(v);
                }
        }
        const std::string name = "s" + std::to_string(s) + ".nii.gz";
        write_image(image(name), img);
        write_labels(label_map(name), map);
    }
    const std::vector<int32_t> list = {0, 2, 3, 4, 10, 11, 16, 170};
    const EstimatedPriors p =
        estimate_priors(pair_subject_files((dir_ / "images").string(), (dir_ / "labels").string()), options_for(list));
    const double scale = 255.0 / 210;
    for (size_t l = 0; l < painted.size(); ++l) {
        SCOPED_TRACE(painted[l]);
        const size_t c = l + 1, n = list.size();
        EXPECT_NEAR(p.means[c], rescaled(mu[l] + 10), 0.06 * sigma[l] * scale);
        EXPECT_NEAR(p.means[n + c], 10 * std::sqrt(2.0 / 3) * scale, 0.06 * sigma[l] * scale);  // 0, 10, 20
        EXPECT_NEAR(p.stds[c], sigma[l] * scale, 0.06 * sigma[l] * scale);
        EXPECT_LT(p.stds[n + c], 0.06 * sigma[l] * scale);
    }
}

class PriorsCli : public PriorsFiles {
protected:
    test::RunResult priors(const std::string& args) {
        return test::run_command(test::cli_path() + " priors --images " +
                                 test::shell_quote((dir_ / "images").string()) + " --labels " +
                                 test::shell_quote((dir_ / "labels").string()) + " " + args);
    }
    std::string out() const { return (dir_ / "out").string(); }
    // Exit 2, one line on stderr containing `fragment`, and no --out directory.
    void expect_bad(const std::string& args, const std::string& fragment) {
        SCOPED_TRACE(args);
        const test::RunResult r = priors(args + " --out " + test::shell_quote(out()));
        EXPECT_EQ(r.status, 2) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_NE(r.err.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << r.err;
        EXPECT_FALSE(fs::exists(out()));
    }
};

TEST_F(PriorsCli, WritesTwoNpyFilesOfShapeTwoBy43) {
    subject("s1.nii.gz", {{2, 50}, {3, 60}, {4, 70}, {10, 80}, {11, 90}, {16, 100}, {170, 110}});
    subject("s2.nii.gz", {{2, 80}, {3, 60}, {4, 70}, {10, 80}, {11, 90}, {16, 100}, {170, 110}});
    const test::RunResult r = priors("--out " + test::shell_quote(out()));
    ASSERT_EQ(r.status, 0) << r.err;
    const NpyArray means = read_npy(out() + "/prior_means.npy");
    const NpyArray stds = read_npy(out() + "/prior_stds.npy");
    EXPECT_EQ(means.shape, (std::vector<int64_t>{2, 43}));
    EXPECT_EQ(stds.shape, (std::vector<int64_t>{2, 43}));
    EXPECT_EQ(means.dtype, "<f8");
    const size_t c2 = size_t(labels::index_of(labels::generation_labels(), 2));
    EXPECT_NEAR(means.values[c2], (rescaled(50) + rescaled(80)) / 2, 1e-9);
    EXPECT_NEAR(means.values[43 + c2], (rescaled(80) - rescaled(50)) / 2, 1e-9);
    // The table: a header and one row per label; the warning names the absent labels.
    EXPECT_NE(r.out.find("mean of medians"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("wrote prior_means.npy and prior_stds.npy (2 x 43) and prior_labels.npy from 2 subjects"),
              std::string::npos)
        << r.out;
    EXPECT_EQ(read_npy_labels(out() + "/prior_labels.npy"), labels::generation_labels());
    EXPECT_EQ(read_npy(out() + "/prior_labels.npy").dtype, "<i4");
    EXPECT_NE(r.err.find("warning: priors: labels 14 15 24 85 172 5 7 8 12"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

    // Usable as a synth --config's priors: the .npy files by path (beside the configuration),
    // or their rows as nested lists.
    std::ofstream(dir_ / "by_path.json")
        << R"({"prior_means": "out/prior_means.npy", "prior_stds": "out/prior_stds.npy"})";
    const GeneratorConfig by_path = load_config({"infant-t1"}, (dir_ / "by_path.json").string());
    EXPECT_EQ(by_path.prior_means, means.values);
    EXPECT_EQ(by_path.prior_stds, stds.values);
    nlohmann::json nested = {{"prior_means", {std::vector<double>(means.values.begin(), means.values.begin() + 43),
                                              std::vector<double>(means.values.begin() + 43, means.values.end())}}};
    std::ofstream(dir_ / "nested.json") << nested.dump();
    EXPECT_EQ(load_config({"infant-t1"}, (dir_ / "nested.json").string()).prior_means, means.values);
    std::ofstream(dir_ / "row.json") << R"({"prior_means": [1, 2, 3]})";
    try {
        load_config({"infant-t1"}, (dir_ / "row.json").string());
        FAIL() << "3 prior values accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("prior_means must have shape (2, 43) (a .npy file"), std::string::npos)
            << e.what();
    }
    // A NaN in the file is named where it is (not as a null in the configuration); a negative
    // spread in a second row is no standard deviation.
    std::vector<double> broken = means.values;
    broken[3] = std::nan("");
    write_npy((dir_ / "nan.npy").string(), {2, 43}, broken);
    std::ofstream(dir_ / "nan.json") << R"({"prior_means": "nan.npy"})";
    EXPECT_EQ(test::refusal_of((dir_ / "nan.npy").string(),
                               [&] { load_config({"infant-t1"}, (dir_ / "nan.json").string()); }),
              (dir_ / "nan.npy").string() + ": prior_means holds nan at row 0, column 3: not a finite number");
    broken = stds.values;
    broken[43 + 5] = -1;
    write_npy((dir_ / "negative.npy").string(), {2, 43}, broken);
    std::ofstream(dir_ / "negative.json") << R"({"prior_stds": "negative.npy"})";
    EXPECT_EQ(
        test::refusal_of((dir_ / "negative.json").string(),
                         [&] { load_config({"infant-t1"}, (dir_ / "negative.json").string()); }),
        (dir_ / "negative.json").string() + ": prior_stds holds -1 at row 1, column 5: a standard deviation is >= 0");
}

// --classes pools the infant protocol's classes: a list of another protocol's labels holding two
// of one class (its 2 and 21) is said.
TEST_F(PriorsCli, ClassesOfAnotherProtocolAreSaid) {
    subject("s1.nii.gz", {{2, 50}, {21, 60}, {1, 70}, {1, 70}, {2, 50}, {21, 60}, {1, 70}});
    const test::RunResult r = priors("--out " + test::shell_quote(out()) + " --labels-list 0,1,2,21 --classes");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("warning: priors: --classes pools (2,21) as the infant protocol's fused classes, but "
                         "--labels-list has labels its generation list has not"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.out.find(" from 1 subject (fused classes pooled) to "), std::string::npos) << r.out;
}

// Without --labels-list, labels the generation list lacks (a lab's cortical parcels) are said:
// no prior is measured for them.
TEST_F(PriorsCli, LabelsTheDefaultListLacksAreSaid) {
    subject("s1.nii.gz", {{2, 50}, {1000, 60}, {2, 50}, {41, 70}, {3, 80}, {3, 80}, {41, 70}});
    const test::RunResult r = priors("--out " + test::shell_quote(out()));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("s1.nii.gz: 11% of its labelled voxels hold 1 value not in the label list (1000), which no "
                         "prior is measured for (--labels-list to list them)\n"),
              std::string::npos)
        << r.err;
}

TEST_F(PriorsCli, LabelListAndClasses) {
    subject("s1.nii.gz", {{2, 50}, {41, 60}, {41, 70}, {3, 80}, {16, 100}, {16, 100}, {170, 110}});
    const test::RunResult r = priors("--out " + test::shell_quote(out()) + " --labels-list 41,2,3,170,16 --classes");
    ASSERT_EQ(r.status, 0) << r.err;
    // Every listed label present; the first, 41, is taken as the background, and said so; the
    // fixture's 24 and 77, left out of the list given, go unsaid (each subject was warned).
    EXPECT_EQ(r.err,
              "warning: priors: label 41 is listed first, so it is taken as the background, as the "
              "reference takes its first label: its zeros count (list 0 first otherwise)\n");

    const NpyArray means = read_npy(out() + "/prior_means.npy");
    ASSERT_EQ(means.shape, (std::vector<int64_t>{2, 5}));
    // (2, 41) pooled: 100 at 50, 100 at 60, 100 at 70 -> 60 at both columns; (16, 170): 100.
    EXPECT_NEAR(means.values[0], rescaled(60), 1e-9);
    EXPECT_NEAR(means.values[1], rescaled(60), 1e-9);
    EXPECT_NEAR(means.values[2], rescaled(80), 1e-9);
    EXPECT_NEAR(means.values[3], rescaled(100), 1e-9);
    EXPECT_NEAR(means.values[4], rescaled(100), 1e-9);
}

// Priors of a label list in another order than the generation labels' are taken by label: synth
// painted label 2 with label 14's estimate (the .npy files held no labels, so their columns were
// read in generation_labels' order), saying only that the wrong labels had zero priors.
TEST_F(PriorsCli, AConfigTakesEachLabelsOwnColumn) {
    subject("s1.nii.gz", plain);
    subject("s2.nii.gz", {{2, 80}, {3, 65}, {4, 75}, {10, 85}, {11, 95}, {16, 105}, {170, 115}});
    ASSERT_EQ(priors("--out " + test::shell_quote(out())).status, 0);
    const NpyArray in_order = read_npy(out() + "/prior_means.npy");
    std::vector<int32_t> reversed = labels::generation_labels();
    std::reverse(reversed.begin() + 1, reversed.end());  // the background first still
    std::string list;
    for (const int32_t label : reversed) list += cat(list.empty() ? "" : ",", label);
    const std::string other = (dir_ / "reversed").string();
    ASSERT_EQ(priors("--out " + test::shell_quote(other) + " --labels-list " + list).status, 0);
    EXPECT_NE(read_npy(other + "/prior_means.npy").values, in_order.values);
    std::ofstream(dir_ / "reversed.json")
        << R"({"prior_means": "reversed/prior_means.npy", "prior_stds": "reversed/prior_stds.npy"})";
    const GeneratorConfig by_label = load_config({"infant-t1"}, (dir_ / "reversed.json").string());
    EXPECT_EQ(by_label.prior_means, in_order.values);
    EXPECT_EQ(by_label.prior_stds, read_npy(out() + "/prior_stds.npy").values);
    // A list without a generation label, or of another length than the files' columns: named.
    const std::string some = (dir_ / "some").string();
    ASSERT_EQ(priors("--out " + test::shell_quote(some) + " --labels-list 0,2,3,4").status, 0);
    std::ofstream(dir_ / "some.json")
        << R"({"prior_means": "some/prior_means.npy", "prior_stds": "some/prior_stds.npy"})";
    EXPECT_EQ(test::refusal_of(some, [&] { load_config({"infant-t1"}, (dir_ / "some.json").string()); }),
              some + "/prior_means.npy: prior_means has no column for generation label 14 (" + some +
                  "/prior_labels.npy lists its columns' labels): estimate the priors with it in --labels-list");
    // A generation label no map can hold is named as such, before the priors' columns (it was
    // said as a label to estimate priors for, which `priors` refuses).
    std::ofstream(dir_ / "negative.json") << R"({"prior_means": "some/prior_means.npy", "prior_stds": )"
                                          << R"("some/prior_stds.npy", "generation_labels": [0, 2, 3, -9], )"
                                          << R"("segmentation_labels": [0, 2, 3], "fused_classes": []})";
    const std::string negative = test::refusal_of(
        (dir_ / "negative.json").string(), [&] { load_config({"infant-t1"}, (dir_ / "negative.json").string()); });
    EXPECT_NE(negative.find("generation_labels: -9 is not a label"), std::string::npos) << negative;
    EXPECT_EQ(negative.find("no column"), std::string::npos) << negative;
    write_npy_labels(some + "/prior_labels.npy", {0, 2, 3});
    EXPECT_EQ(test::refusal_of(some, [&] { load_config({"infant-t1"}, (dir_ / "some.json").string()); }),
              some + "/prior_labels.npy: lists 3 labels, but " + some +
                  "/prior_means.npy (prior_means) has 4 columns: not its labels");
    // Through links, the list beside the files they lead to (a link to a reordered run fell back
    // to column order); means with a list and spreads without one are refused (two orders at once).
    fs::create_directories(dir_ / "linked");
    for (const char* name : {"prior_means.npy", "prior_stds.npy"})
        fs::create_symlink(fs::path(other) / name, dir_ / "linked" / name);
    std::ofstream(dir_ / "linked.json")
        << R"({"prior_means": "linked/prior_means.npy", "prior_stds": "linked/prior_stds.npy"})";
    EXPECT_EQ(load_config({"infant-t1"}, (dir_ / "linked.json").string()).prior_means, in_order.values);
    fs::create_directories(dir_ / "unlisted");
    fs::copy_file(other + "/prior_stds.npy", dir_ / "unlisted" / "prior_stds.npy");
    std::ofstream(dir_ / "mixed.json")
        << R"({"prior_means": "reversed/prior_means.npy", "prior_stds": "unlisted/prior_stds.npy"})";
    EXPECT_EQ(test::refusal_of((dir_ / "mixed.json").string(),
                               [&] { load_config({"infant-t1"}, (dir_ / "mixed.json").string()); }),
              (dir_ / "mixed.json").string() + ": " + (dir_ / "reversed/prior_means.npy").string() +
                  " has its columns' labels (" + other + "/prior_labels.npy) but " +
                  (dir_ / "unlisted/prior_stds.npy").string() +
                  " has none beside it: give both files of one priors run");
    // A list beside the links is theirs where none is beside the files they lead to; two that
    // differ are refused; a list naming a label twice or a value no label is, too.
    fs::create_directories(dir_ / "copied");
    fs::create_directories(dir_ / "relinked");
    for (const char* name : {"prior_means.npy", "prior_stds.npy"}) {
        fs::copy_file(fs::path(other) / name, dir_ / "copied" / name);
        fs::create_symlink(dir_ / "copied" / name, dir_ / "relinked" / name);
    }
    fs::copy_file(other + "/prior_labels.npy", dir_ / "relinked" / "prior_labels.npy");
    std::ofstream(dir_ / "relinked.json")
        << R"({"prior_means": "relinked/prior_means.npy", "prior_stds": "relinked/prior_stds.npy"})";
    EXPECT_EQ(load_config({"infant-t1"}, (dir_ / "relinked.json").string()).prior_means, in_order.values);
    write_npy_labels((dir_ / "copied" / "prior_labels.npy").string(), labels::generation_labels());
    EXPECT_EQ(test::refusal_of((dir_ / "relinked.json").string(),
                               [&] { load_config({"infant-t1"}, (dir_ / "relinked.json").string()); }),
              (dir_ / "relinked.json").string() + ": parameter 'prior_means': " +
                  (dir_ / "relinked/prior_means.npy").string() + ": " + (dir_ / "relinked/prior_labels.npy").string() +
                  " and " + (dir_ / "copied/prior_labels.npy").string() +
                  " (beside the file it leads to) list its columns' labels differently");
    fs::remove(dir_ / "copied" / "prior_labels.npy");
    std::vector<int32_t> twice = reversed;
    twice[2] = twice[1];
    write_npy_labels((dir_ / "relinked" / "prior_labels.npy").string(), twice);
    EXPECT_NE(test::refusal_of((dir_ / "relinked.json").string(),
                               [&] { load_config({"infant-t1"}, (dir_ / "relinked.json").string()); })
                  .find("relinked/prior_labels.npy: label " + std::to_string(twice[1]) + " is listed twice"),
              std::string::npos);
    // Files without a list (SynthSeg's, or moved away from theirs) are read column by column.
    fs::remove(other + "/prior_labels.npy");
    EXPECT_EQ(load_config({"infant-t1"}, (dir_ / "reversed.json").string()).prior_means,
              read_npy(other + "/prior_means.npy").values);
}

// The published infant priors list no labels beside them; their columns are the infant presets'
// generation labels, which a configuration listing those labels in another order (or some of
// them) used to take column by column: every structure painted with another's contrast.
TEST_F(PriorsCli, ThePublishedPriorsAreTakenByLabelInAnyOrder) {
    const infant_priors::Priors published = infant_priors::t2();
    const int64_t n = int64_t(labels::generation_labels().size());
    write_npy((dir_ / "t2_prior_means.npy").string(), {2, n}, published.means);
    write_npy((dir_ / "t2_prior_stds.npy").string(), {2, n}, published.stds);
    std::vector<int32_t> reordered = labels::generation_labels();
    std::reverse(reordered.begin() + 1, reordered.end());  // the background first still
    const nlohmann::json config = {
        {"prior_means", "t2_prior_means.npy"}, {"prior_stds", "t2_prior_stds.npy"}, {"generation_labels", reordered}};
    std::ofstream(dir_ / "reordered.json") << config.dump();
    const GeneratorConfig loaded = load_config({"infant-t2"}, (dir_ / "reordered.json").string());
    ASSERT_EQ(loaded.generation_labels, reordered);
    for (const int32_t label : {2, 14, 41, 77}) {
        const size_t own = size_t(labels::index_of(labels::generation_labels(), label)),
                     here = size_t(labels::index_of(reordered, label));
        EXPECT_EQ(loaded.prior_means[here], published.means[own]) << "label " << label;
        EXPECT_EQ(loaded.prior_means[size_t(n) + here], published.means[size_t(n) + own]) << "label " << label;
        EXPECT_EQ(loaded.prior_stds[here], published.stds[own]) << "label " << label;
    }
    // A float32 copy (np.float32 of the files) is the published priors too.
    std::vector<double> as_float32 = published.means;
    for (double& v : as_float32) v = double(float(v));
    write_npy((dir_ / "t2_prior_means.npy").string(), {2, n}, as_float32);
    EXPECT_EQ(load_config({"infant-t2"}, (dir_ / "reordered.json").string())
                  .prior_means[size_t(labels::index_of(reordered, 2))],
              as_float32[size_t(labels::index_of(labels::generation_labels(), 2))]);
    // A file of other values, without its list, under the presets' labels reordered: taken
    // column by column, and warned of (the published files' trap, for a file of the same order).
    std::vector<double> own = published.means;
    for (double& v : own) v *= 1.1;
    write_npy((dir_ / "t2_prior_means.npy").string(), {2, n}, own);
    const std::string warned = test::stderr_of([&] { load_config({"infant-t2"}, (dir_ / "reordered.json").string()); });
    EXPECT_NE(warned.find("t2_prior_means.npy lists no labels (no prior_labels.npy beside it): its columns are taken "
                          "in generation_labels' order, which reorders the infant presets' labels"),
              std::string::npos)
        << warned;
    write_npy((dir_ / "t2_prior_means.npy").string(), {2, n}, published.means);
    // A label the published files have no column for is named, with what to do.
    std::vector<int32_t> other = labels::generation_labels();
    other.back() = 999;
    std::ofstream(dir_ / "other.json") << nlohmann::json{
        {"prior_means", "t2_prior_means.npy"},
        {"prior_stds", "t2_prior_stds.npy"},
        {"generation_labels", other}}.dump();
    const std::string refusal = test::refusal_of((dir_ / "t2_prior_means.npy").string(),
                                                 [&] { load_config({"infant-t2"}, (dir_ / "other.json").string()); });
    EXPECT_NE(refusal.find("no column for generation label 999 (the published infant priors"), std::string::npos)
        << refusal;
}

// Label maps whose voxels mostly hold values the list leaves out (an image given as the labels)
// are warned of, naming a few; the priors are still written.
TEST_F(PriorsCli, ALabelMapOfMostlyUnlistedValuesIsWarnedOf) {
    Grid grid;
    grid.dim = {10, 10, 10};
    Image scan(grid);
    LabelMap like_an_image(grid);
    for (int64_t v = 0; v < 1000; ++v) {
        scan.data[size_t(v)] = float(v % 7 == 0 ? 2 : 3);
        like_an_image.data[size_t(v)] = int32_t(100 + v % 400);
    }
    write_image(image("s1.nii.gz"), scan);
    write_labels(label_map("s1.nii.gz"), like_an_image);
    const test::RunResult r = priors("--out " + test::shell_quote(out()));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("warning: " + label_map("s1.nii.gz") +
                         ": 99% of its labelled voxels hold 398 values not in the label list (100, 101, 102, 103, "
                         "104, ...): is it a label map of these labels? (--images and --labels swapped?)"),
              std::string::npos)
        << r.err;
    // A list given leaves labels out on purpose, but an image's hundreds of values are still said.
    const test::RunResult listed = priors("--out " + test::shell_quote(out() + "/listed") + " --labels-list 0,100");
    EXPECT_EQ(listed.status, 0) << listed.err;
    EXPECT_NE(listed.err.find("(--images and --labels swapped?)"), std::string::npos) << listed.err;
    // dHCP's labels are 87 dense numbers: a list of 20 of them leaves most voxels out on purpose,
    // and its scan holds more values than its labels.
    LabelMap dense(grid);
    Image scan_of_many(grid);
    for (int64_t v = 0; v < 1000; ++v) {
        dense.data[size_t(v)] = int32_t(1 + v % 87);
        scan_of_many.data[size_t(v)] = float(v);
    }
    write_image(image("s1.nii.gz"), scan_of_many);
    write_labels(label_map("s1.nii.gz"), dense);
    std::string twenty = "0";
    for (int l = 1; l <= 20; ++l) twenty += "," + std::to_string(l);
    const test::RunResult dhcp = priors("--out " + test::shell_quote(out() + "/dhcp") + " --labels-list " + twenty);
    EXPECT_EQ(dhcp.status, 0) << dhcp.err;
    EXPECT_EQ(dhcp.err.find("not in the label list"), std::string::npos) << dhcp.err;
}

TEST_F(PriorsCli, BadInputExitsTwoAndWritesNothing) {
    subject("s1.nii.gz", plain);
    fs::copy_file(image("s1.nii.gz"), image("s2.nii.gz"));
    expect_bad("", image("s2.nii.gz") + ": no label map of the same name");
    fs::remove(image("s2.nii.gz"));
    expect_bad("--labels-list 2,x", "expected comma-separated integer labels, got 'x'");
    expect_bad("--labels-list 2,3,2", "label 2 is listed twice");
    expect_bad("--labels-list 0,-2,41", "--labels-list: -2 is not a label (an integer from 0 to 65535)");
    expect_bad("--labels-list 0,70000,41", "--labels-list: 70000 is not a label");
    expect_bad("--labels-list labels.nii.gz", "--labels-list: labels.nii.gz is a volume, not a label list");
    expect_bad("--labels-list 2,", "got ''");
    expect_bad("--labels-list 0", "--labels-list: lists label 0 alone: list the background first");
    // Subjects in which no listed structure is measured: priors of zeros alone are refused (after
    // the warning that the maps hold mostly other labels).
    const test::RunResult unmeasured = priors("--labels-list 0,7,8 --out " + test::shell_quote(out()));
    EXPECT_EQ(unmeasured.status, 2) << unmeasured.err;
    EXPECT_NE(unmeasured.err.find("error: " + (dir_ / "images").string() +
                                  ": no structure of the label list was measured in any of its 1 subject"),
              std::string::npos)
        << unmeasured.err;
    EXPECT_FALSE(fs::exists(out()));
    Grid grid;
    grid.dim = {10, 10, 10};
    write_image(image("s1.nii.gz"), Image(grid, 3, 1.0f));
    expect_bad("", image("s1.nii.gz") + ": expected a 3-D image, found 3 volumes");
    subject("s1.nii.gz", plain);
    grid.dim = {10, 9, 10};
    write_labels(label_map("s1.nii.gz"), LabelMap(grid));
    expect_bad("", "dims differ (10x10x10 vs 10x9x10)");
    const test::RunResult r = test::run_command(test::cli_path() + " priors --images x");
    EXPECT_EQ(r.status, 2);
}

}  // namespace
}  // namespace iss
