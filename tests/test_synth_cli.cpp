// The `synth` command, run as a program on a 1-month phantom: the files it writes (image range
// and type, label set, geometry), the preview's size, byte-identical output for a seed,
// --print-config as JSON, and every kind of bad input: exit 2, one line naming the problem,
// nothing written to --out.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <png.h>
#include <sys/file.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "io/nifti.h"
#include "io/npy.h"
#include "synth/config.h"
#include "synth/generator.h"
#include "synth/labels.h"
#include "synth/phantom.h"
#include "test_util.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

using test::read_text;
using test::RunResult;
using test::shell_quote;

int file_count(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return 0;
    return int(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}));
}

// One directory for the whole suite, holding the phantom map every test reads; each test also has
// a fresh directory of its own (dir_).
class SynthCli : public test::TempDirTest {
protected:
    static void SetUpTestSuite() {
        root_ = test::unique_temp_dir("synth-cli");
        fs::create_directories(root_ / "maps");
        // 126x142x116 at 1 month: --shape 64 gives 64^3 crops, quick on the CPU.
        write_labels((root_ / "maps" / "phantom.nii.gz").string(), make_phantom(1, 1));
    }
    static void TearDownTestSuite() {
        std::error_code ec;
        fs::remove_all(root_, ec);
    }
    static std::string map_file() { return (root_ / "maps" / "phantom.nii.gz").string(); }

    static RunResult synth(const std::string& args) {
        return test::run_command(test::cli_path() + " synth " + args);
    }

    // Exit 2, one line on stderr containing `fragment`, and `out` left without files.
    void expect_bad(const std::string& args, const std::string& fragment) {
        SCOPED_TRACE(args);
        const fs::path out = dir_ / "out";
        fs::remove_all(out);
        fs::create_directories(out);
        const RunResult r = synth(args + " --out " + shell_quote(out.string()));
        EXPECT_EQ(r.status, 2) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_NE(r.err.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << r.err;
        EXPECT_EQ(file_count(out), 0);
    }

    static fs::path root_;
};

fs::path SynthCli::root_;

TEST_F(SynthCli, WritesImagesLabelsAndPreview) {
    const std::string out = path("out");
    const RunResult r = synth("--labels " + shell_quote(map_file()) + " --out " + shell_quote(out) +
                              " --count 2 --shape 64 --preview --device cpu");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("wrote 2 samples of 64x64x64 to " + out), std::string::npos) << r.out;
    EXPECT_EQ(file_count(out), 5) << "two images, two label maps, the preview";

    const std::vector<int32_t> seg = preset_config("infant-t1").segmentation_labels;
    for (const char* n : {"0000", "0001"}) {
        SCOPED_TRACE(n);
        VolumeHeader h;
        const Image image = read_image(out + "/image_" + n + ".nii.gz", &h);
        EXPECT_EQ(h.datatype_name(), "float32");
        EXPECT_EQ(image.grid.dim, (std::array<int64_t, 3>{64, 64, 64}));
        for (double s : image.grid.voxel_size()) EXPECT_NEAR(s, 1.0, 1e-6);
        const auto [lo, hi] = std::minmax_element(image.data.begin(), image.data.end());
        EXPECT_GE(*lo, 0.0f);
        EXPECT_LE(*hi, 1.0f);
        EXPECT_GT(*hi, *lo) << "a flat image";

        const LabelMap labels = read_labels(out + "/labels_" + n + ".nii.gz");
        EXPECT_TRUE(labels.grid.same_as(image.grid)) << "labels and image on one grid";
        const std::set<int32_t> present(labels.data.begin(), labels.data.end());
        for (int32_t v : present) EXPECT_NE(std::find(seg.begin(), seg.end(), v), seg.end()) << "label " << v;
        EXPECT_GE(present.size(), 5u) << "a crop of the brain shows several structures";
    }

    // Two rows of six 64x64 slices with 4-pixel gaps.
    png_image png{};
    png.version = PNG_IMAGE_VERSION;
    ASSERT_TRUE(png_image_begin_read_from_file(&png, (out + "/preview.png").c_str())) << png.message;
    EXPECT_EQ(png.width, 4u + 6 * (64 + 4));
    EXPECT_EQ(png.height, 4u + 2 * (64 + 4));
    png_image_free(&png);
}

TEST_F(SynthCli, SameSeedGivesIdenticalFiles) {
    const std::string args = "--labels " + shell_quote(map_file()) + " --count 2 --shape 64 --seed 5 --preview";
    ASSERT_EQ(synth(args + " --out " + shell_quote(path("a"))).status, 0);
    ASSERT_EQ(synth(args + " --out " + shell_quote(path("b"))).status, 0);
    for (const char* name : {"image_0000.nii.gz", "image_0001.nii.gz", "labels_0000.nii.gz", "labels_0001.nii.gz",
                             "preview.png"}) {
        const std::string a = read_text(dir_ / "a" / name), b = read_text(dir_ / "b" / name);
        EXPECT_FALSE(a.empty()) << name;
        EXPECT_TRUE(a == b) << name << " differs between two runs with the same seed";
    }
    const RunResult c =
        synth("--labels " + shell_quote(map_file()) + " --count 1 --shape 64 --seed 6 --out " + shell_quote(path("c")));
    ASSERT_EQ(c.status, 0);
    EXPECT_FALSE(read_text(dir_ / "a" / "image_0000.nii.gz") == read_text(dir_ / "c" / "image_0000.nii.gz"))
        << "another seed, another image";
    // Any sample made again alone: sample 1 of the run, under its own number.
    const RunResult alone = synth("--labels " + shell_quote(map_file()) +
                                  " --first 1 --count 1 --shape 64 --seed 5 --out " + shell_quote(path("d")));
    ASSERT_EQ(alone.status, 0) << alone.err;
    EXPECT_EQ(file_count(dir_ / "d"), 2);
    for (const char* name : {"image_0001.nii.gz", "labels_0001.nii.gz"})
        EXPECT_TRUE(read_text(dir_ / "a" / name) == read_text(dir_ / "d" / name)) << name;
    // Into the first run's folder: what this run does not write stays, and is said to.
    const RunResult again = synth("--labels " + shell_quote(map_file()) +
                                  " --first 1 --count 1 --shape 64 --seed 5 --out " + shell_quote(path("a")));
    ASSERT_EQ(again.status, 0) << again.err;
    EXPECT_NE(again.err.find("warning: synth: " + path("a") +
                             " holds 3 files this run does not write (image_0000.nii.gz, ...), from another run"),
              std::string::npos)
        << again.err;
    EXPECT_EQ(file_count(dir_ / "a"), 5);
    EXPECT_EQ(alone.err, "") << "a new folder: nothing to say";
    // Samples other runs were writing are named (a killed run's were left, unsaid, run after run),
    // not removed: a run on another host or in another container may be writing them now.
    const std::string killed = "image_0007.nii.gz.tmp-123.nii.gz.tmp-123";
    const std::string writing = "labels_0008.nii.gz.tmp-456.nii.gz";
    for (const std::string& name : {killed, writing}) std::ofstream(dir_ / "a" / name) << "x";
    const RunResult told = synth("--labels " + shell_quote(map_file()) +
                                 " --first 1 --count 1 --shape 64 --seed 5 --out " + shell_quote(path("a")));
    ASSERT_EQ(told.status, 0) << told.err;
    EXPECT_NE(told.err.find("warning: synth: " + path("a") + " holds 2 files other runs were writing or kept aside (" +
                            killed + ", " + writing +
                            "): a killed run's, or one writing there now; once no run writes there, remove them (an "
                            "earlier file kept aside, NAME.tmp-PID-replaced, is NAME as it was before that run: rename "
                            "it elsewhere to keep it)"),
              std::string::npos)
        << told.err;
    EXPECT_TRUE(fs::exists(dir_ / "a" / killed) && fs::exists(dir_ / "a" / writing));
    EXPECT_EQ(synth("--labels " + shell_quote(map_file()) + " --first -1 --out " + shell_quote(path("e"))).status, 2);
    EXPECT_EQ(synth("--labels " + shell_quote(map_file()) + " --first 4294967295 --count 2 --out " +
                    shell_quote(path("e")))
                  .status,
              2);
}

// Two runs of other samples writing one folder at once mixed their files, a pair's image from one
// and its labels from the other, both exiting 0: the second is refused while the first holds its
// lock. (Runs of the same samples may share it: SharedFolderLock's test.)
TEST_F(SynthCli, ARunOfOtherSamplesWritingTheFolderIsRefused) {
    const fs::path out = dir_ / "shared";
    fs::create_directories(out);
    const std::string other = (out / ".synth-00000000.lock").string();
    const int held = ::open(other.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    ASSERT_GE(held, 0);
    ASSERT_EQ(::flock(held, LOCK_SH), 0);
    const std::string args =
        "--labels " + shell_quote(map_file()) + " --count 1 --shape 64 --out " + shell_quote(out.string());
    const RunResult refused = synth(args);
    EXPECT_EQ(refused.status, 2) << refused.err;
    EXPECT_NE(refused.err.find(out.string() +
                               ": another synth run of other samples (its configuration, seed or label "
                               "maps) is writing here: give this run an --out of its own (lock " +
                               other + ")"),
              std::string::npos)
        << refused.err;
    EXPECT_EQ(file_count(out), 1) << "nothing written, its own lock removed";
    ::close(held);
    const RunResult after = synth(args);
    EXPECT_EQ(after.status, 0) << after.err;
    EXPECT_EQ(file_count(out), 3) << "the pair, and the other run's lock file (this run's is removed)";
}

// --profile prints a row per generator stage and per step outside it, and writes the files a
// run without it writes.
TEST_F(SynthCli, ProfileTimesEveryStageAndChangesNoFile) {
    const std::string args = "--labels " + shell_quote(map_file()) + " --count 2 --shape 64 --device cpu";
    ASSERT_EQ(synth(args + " --out " + shell_quote(path("plain"))).status, 0);
    const RunResult r = synth(args + " --profile --out " + shell_quote(path("profiled")));
    ASSERT_EQ(r.status, 0) << r.err;
    for (const char* name : {"image_0000.nii.gz", "image_0001.nii.gz", "labels_0000.nii.gz", "labels_0001.nii.gz"})
        EXPECT_TRUE(read_text(dir_ / "plain" / name) == read_text(dir_ / "profiled" / name)) << name;
    EXPECT_NE(r.out.find("mean of 2 (cpu, "), std::string::npos) << r.out;
    for (const char* row : {"draw", "velocity", "deform", "gmm", "blur", "resolution", "bias", "normalise",
                            "generator", "to host", "write", "total"})
        EXPECT_NE(r.out.find("\n  " + std::string(row) + " "), std::string::npos) << row << " in:\n" << r.out;
    EXPECT_EQ(synth(args + " --out " + shell_quote(path("plain2"))).out.find("generator"), std::string::npos)
        << "no table without --profile";
}

TEST_F(SynthCli, DirectoryOfMaps) {
    fs::create_directories(dir_ / "maps");
    fs::copy_file(map_file(), dir_ / "maps" / "b.nii.gz");
    write_labels(path("maps/a.nii"), make_phantom(0, 2));
    std::ofstream(dir_ / "maps" / "notes.txt") << "not a map\n";
    std::ofstream(dir_ / "maps" / "c.nii.gz.tmp-77.nii.gz") << "a killed run's half map";
    const RunResult r =
        synth("--labels " + shell_quote(path("maps")) + " --out " + shell_quote(path("out")) + " --count 3 --shape 70");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(file_count(dir_ / "out"), 6);
    // A crop that is no multiple of shape_multiple is said to be rounded down (it was, unsaid).
    EXPECT_NE(r.err.find("warning: synth: --shape 70 is not a multiple of shape_multiple 32: crops are rounded down "
                         "to one (64), as well as clipped to each map"),
              std::string::npos)
        << r.err;
    // The folder is listed once, for the output check and the maps alike: the temporary said once.
    const size_t said = r.err.find("c.nii.gz.tmp-77.nii.gz: an unfinished output");
    EXPECT_NE(said, std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("c.nii.gz.tmp-77.nii.gz", said + 1), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("crops are clipped to maps"), std::string::npos) << "every map holds 64^3: " << r.err;

    // A map smaller than the crop gives smaller files: said, naming it (only "several shapes"
    // in the last line before).
    fs::create_directories(dir_ / "two");
    fs::copy_file(map_file(), dir_ / "two" / "big.nii.gz");
    const LabelMap whole = make_phantom(0, 3);
    Grid corner = whole.grid;  // the phantom's first 40 voxels along x: a 40-voxel crop clipped to 32
    corner.dim[0] = 40;
    LabelMap small(corner, 1, 0);
    for (int64_t k = 0; k < corner.dim[2]; ++k)
        for (int64_t j = 0; j < corner.dim[1]; ++j)
            for (int64_t i = 0; i < 40; ++i) small.at(i, j, k) = whole.at(i + 40, j, k);
    write_labels(path("two/small.nii.gz"), small);
    const RunResult c =
        synth("--labels " + shell_quote(path("two")) + " --out " + shell_quote(path("out2")) + " --count 1 --shape 64");
    ASSERT_EQ(c.status, 0) << c.err;
    EXPECT_NE(c.err.find("warning: synth: the 64x64x64 crops are clipped to maps smaller along an axis: 1 of the 2 "
                         "maps, whose samples are smaller (" +
                         path("two/small.nii.gz") + ": "),
              std::string::npos)
        << c.err;
    // Crops of one shape are not (the last line names it): a map alone, smaller than the default.
    const RunResult alone = synth("--labels " + shell_quote(path("two/small.nii.gz")) + " --out " +
                                  shell_quote(path("out3")) + " --count 1");
    ASSERT_EQ(alone.status, 0) << alone.err;
    EXPECT_EQ(alone.err.find("clipped"), std::string::npos) << alone.err;
}

TEST_F(SynthCli, PrintConfigIsJson) {
    const RunResult r = synth("--print-config");
    ASSERT_EQ(r.status, 0) << r.err;
    const nlohmann::json config = nlohmann::json::parse(r.out);
    EXPECT_EQ(config.at("preset"), "infant-t1");
    EXPECT_EQ(config.at("segmentation_labels").size(), 34u);
    EXPECT_EQ(config.at("prior_means").size(), 2 * config.at("generation_labels").size());
    EXPECT_EQ(config.at("flip_probability"), 0.0);
    for (const char* key : {"output_shape", "nonlin_std", "bias_field_std", "gamma_std", "fused_classes"})
        EXPECT_TRUE(config.contains(key)) << key;

    const RunResult s = synth("--print-config --preset synthseg --shape 64");
    ASSERT_EQ(s.status, 0) << s.err;
    const nlohmann::json synthseg = nlohmann::json::parse(s.out);
    EXPECT_EQ(synthseg.at("preset"), "synthseg");
    EXPECT_EQ(synthseg.at("flip_probability"), 0.5);
    EXPECT_EQ(synthseg.at("output_shape"), nlohmann::json::array({64, 64, 64}));

    std::ofstream(path("override.json")) << R"({"gamma_std": 0.25})";
    const RunResult o = synth("--print-config --preset infant-t2 --config " + shell_quote(path("override.json")));
    ASSERT_EQ(o.status, 0) << o.err;
    const nlohmann::json t2 = nlohmann::json::parse(o.out);
    EXPECT_EQ(t2.at("preset"), "infant-t2");
    EXPECT_EQ(t2.at("gamma_std"), 0.25);
    // The file's preset, with no --preset or the same one.
    std::ofstream(path("synthseg.json")) << R"({"preset": "synthseg"})";
    for (const char* preset : {"", " --preset synthseg"}) {
        const RunResult f =
            synth(std::string("--print-config --config ") + shell_quote(path("synthseg.json")) + preset);
        ASSERT_EQ(f.status, 0) << f.err;
        EXPECT_EQ(nlohmann::json::parse(f.out).at("preset"), "synthseg");
    }
}

TEST_F(SynthCli, HelpDescribesEveryOptionAndPreset) {
    const RunResult r = synth("--help");
    EXPECT_EQ(r.status, 0);
    for (const char* word : {"--labels", "--out", "--count", "--seed", "--preset", "--config", "--shape", "--device",
                             "--preview", "--profile", "--print-config", "infant-t1", "infant-t2", "synthseg",
                             "first 8"})
        EXPECT_NE(r.out.find(word), std::string::npos) << word;
}

// Priors of all zeros for a structure, as priors writes a label found in no subject: the samples
// drawn from them paint it black, which a configuration using those files did without a word.
TEST_F(SynthCli, PriorsOfAllZerosForAStructureAreWarnedOf) {
    const std::string file = path("c.json");
    auto warned = [&](const std::string& priors) {
        return test::stderr_of([&] {
            parse_config(PresetChoice{},
                         R"({"generation_labels": [0, 2, 41, 3], "segmentation_labels": [0, 2, 3, 41],
                             "fused_classes": [], "prior_means": )" +
                             priors + R"(, "prior_stds": [[0, 5, 5, 0], [0, 1, 1, 0]]})",
                         file);
        });
    };
    EXPECT_EQ(warned("[[0, 100, 110, 0], [0, 10, 10, 0]]"),
              "warning: " + file +
                  ": the priors of 1 label (3) are all 0, as priors writes a label found in no subject: a sample "
                  "drawn from the priors paints it black wherever a map holds it; estimate it from subjects that "
                  "hold it\n");
    EXPECT_EQ(warned("[[0, 100, 110, 60], [0, 10, 10, 0]]"), "") << "a mean: estimated";
    // Means centred below 0 are drawn below 0 mostly, and taken as 0 there: black too.
    EXPECT_EQ(warned("[[0, -100, -110, 60], [0, 10, 10, 0]]"),
              "warning: " + file +
                  ": the priors of 2 labels (2, 41) centre their mean or their spread below 0, where a draw is taken "
                  "as 0: most samples drawn from the priors paint them black or flat (priors are intensities of "
                  "[0, 255], as the priors command writes them)\n");
}

// The labels the infant protocol folds into a structure (21 into 2, ...) learned as background
// while the structure is learned, where the maps hold them: a segmentation_labels subset did that
// without a word (the demo taught half of a newborn's white matter as background).
TEST_F(SynthCli, FoldedLabelsLearnedAsBackgroundBesideTheirStructureAreWarnedOf) {
    const std::string file = path("c.json");
    LabelMap without_extras = make_phantom(1, 1);  // the 1-month phantom holds 21, 61 and 170
    for (int32_t& label : without_extras.data) label = label == 21 ? 2 : label == 61 ? 41 : label == 170 ? 16 : label;
    write_labels(path("adult_like.nii.gz"), without_extras);
    auto warned = [&](const std::string& text, const std::string& map = map_file()) {
        const GeneratorConfig config = parse_config(PresetChoice{}, text, file);
        return folds_learned_as_background(load_training_maps({map}, config), config, "synth: " + file);
    };
    EXPECT_EQ(warned(R"({"segmentation_labels": [0, 2, 3, 7, 8, 16, 41, 42, 47]})"),
              "synth: " + file +
                  ": the maps hold generation labels 21, 61, 170 (which clean folds into 2, 41, 16), learned as "
                  "background while 2, 41, 16 are learned: give output_labels (a target for each generation label) to "
                  "learn them as those, or list them in segmentation_labels");
    EXPECT_EQ(warned(R"({"segmentation_labels": [0, 2, 3, 21, 41, 61, 16]})"),
              "synth: " + file +
                  ": the maps hold generation label 170 (which clean folds into 16), learned as background while 16 is "
                  "learned: give output_labels (a target for each generation label) to learn it as that structure, or "
                  "list it in segmentation_labels");
    EXPECT_EQ(warned(R"({"segmentation_labels": [0, 2, 3, 41, 42]})", path("adult_like.nii.gz")), "")
        << "maps without them (an adult's)";
    EXPECT_EQ(warned(R"({"segmentation_labels": [0, 3, 42, 8, 47]})"), "") << "white matter itself left out";
    EXPECT_EQ(warned("{}"), "") << "the preset's lists";
    // Learned as something, by the user's own targets: no warning.
    std::vector<int32_t> targets;
    for (const int32_t label : labels::generation_labels()) targets.push_back(label == 21 ? 2 : label == 61 ? 41 : 0);
    targets[labels::index_of(labels::generation_labels(), 2)] = 2;
    targets[labels::index_of(labels::generation_labels(), 41)] = 41;
    EXPECT_EQ(warned(nlohmann::json{{"output_labels", targets}}.dump()), "");
    targets[labels::index_of(labels::generation_labels(), 21)] = 0;  // even as background, given so
    EXPECT_EQ(warned(nlohmann::json{{"output_labels", targets}}.dump()), "");
    // What synth says.
    std::ofstream(file) << R"({"segmentation_labels": [0, 2, 3, 21, 41, 61, 16]})";
    const RunResult r = synth("--labels " + shell_quote(map_file()) + " --config " + shell_quote(file) +
                              " --count 1 --shape 32 --out " + shell_quote(path("out")));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("warning: synth: " + file + ": the maps hold generation label 170"), std::string::npos)
        << r.err;
}

// A SynthSeg user's configuration: its label files as they ship (.npy), its per-label
// segmentation list as output_labels (the network's outputs then the labels it holds, in
// SynthSeg's channel order), and its parameter names met with what stands for them here.
TEST_F(SynthCli, SynthSegsLabelFilesAndNamesAreUnderstood) {
    const std::vector<double> generation{0, 24, 507, 2, 3, 4, 17, 25, 41, 42, 43, 53, 57};  // its tutorial's
    const std::vector<double> learned_as{0, 24, 0, 2, 3, 4, 17, 2, 41, 42, 43, 53, 41};
    write_npy(path("generation_labels.npy"), {13}, generation);
    write_npy(path("segmentation_labels.npy"), {13}, learned_as);
    const std::string file = path("c.json");
    auto parse = [&](const std::string& text) { return parse_config(PresetChoice{}, text, file); };
    // The refusal of a configuration's text, which names `named` first (the configuration).
    auto refusal = [&](const std::string& text, const std::string& named = "") {
        return test::refusal_of(named.empty() ? file : named, [&] { parse(text); });
    };
    const GeneratorConfig config = parse(R"({"preset": "synthseg", "generation_labels": "generation_labels.npy",
        "output_labels": "segmentation_labels.npy"})");
    EXPECT_EQ(config.generation_labels, (std::vector<int32_t>{0, 24, 507, 2, 3, 4, 17, 25, 41, 42, 43, 53, 57}));
    EXPECT_EQ(config.output_labels, (std::vector<int32_t>{0, 24, 0, 2, 3, 4, 17, 2, 41, 42, 43, 53, 41}));
    // Unsided, left, right: CSF before white matter.
    EXPECT_EQ(config.segmentation_labels, (std::vector<int32_t>{0, 24, 2, 3, 4, 17, 41, 42, 43, 53}));
    EXPECT_EQ(target_labels(config), config.output_labels);
    // A label in none of FreeSurfer's classes: ascending.
    EXPECT_EQ(parse(R"({"preset": "synthseg", "generation_labels": [0, 41, 2, 99], "output_labels": [0, 41, 2, 99],
                        "lr_twins": [[99, 99]]})")
                  .segmentation_labels,
              (std::vector<int32_t>{0, 2, 41, 99}));

    EXPECT_EQ(refusal(R"({"preset": "synthseg", "generation_labels": "generation_labels.npy",
        "segmentation_labels": "segmentation_labels.npy"})"),
              file +
                  ": segmentation_labels has duplicates (one network output per label); a target for each "
                  "generation label (SynthSeg's segmentation_labels.npy) goes in output_labels");
    // With flips on, any targets: the generator flips the generation labels, the targets follow
    // them (whether predict may average a scan with its mirror image is model.json's, below).
    for (const char* flipped :
         {R"({"preset": "synthseg", "generation_labels": [0, 2, 3, 41, 42],
        "output_labels": [0, 2, 2, 41, 43]})",
          R"({"preset": "synthseg", "generation_labels": [0, 2, 24, 41], "output_labels": [0, 2, 2, 41]})",
          R"({"preset": "synthseg", "generation_labels": [0, 2, 41], "output_labels": [0, 2, 2]})"})
        EXPECT_EQ(parse(flipped).flip_probability, 0.5) << flipped;
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "generation_labels": [2, 0, 41], "segmentation_labels": [0, 2, 41]})"),
              file + ": generation_labels must start with 0, the background, starts with 2");
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "generation_labels": [0, 2, 41], "segmentation_labels": [2, 41]})"),
              file +
                  ": generation label 0 is learned as background (label 0), which is not one of "
                  "segmentation_labels (list 0 there, or the label itself)");
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "max_res_iso": 4})"),
              file +
                  ": unknown parameter 'max_res_iso' (see 'infant-synthseg synth --print-config' for the names); "
                  "here max_isotropic (mm)");
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "n_neutral_labels": 18})"),
              file +
                  ": unknown parameter 'n_neutral_labels' (see 'infant-synthseg synth --print-config' for the "
                  "names); not needed here: left and right labels are known by their values (FreeSurfer's), in any "
                  "order");
    // What a file with its own generation labels leaves to its preset is of the preset's labels.
    EXPECT_EQ(refusal(R"({"generation_labels": [0, 2, 41], "segmentation_labels": [0, 2, 41]})"),
              file +
                  ": fused class label 21 of preset infant-t1 is not one of this file's generation_labels: give "
                  "fused_classes ([] for none)");
    EXPECT_EQ(refusal(R"({"preset": "infant-t1", "generation_labels": [0, 2, 41]})"),
              file +
                  ": segmentation label 14 of preset infant-t1 is not one of this file's generation_labels: give "
                  "segmentation_labels, or output_labels");
    EXPECT_EQ(refusal(R"({"flip_probability": 1.5})"),
              file + ": flip_probability must be a probability in [0, 1], is 1.5");
    // Its priors are the preset's of each label, by value: the T1 priors of 2 and 41 in any order.
    const GeneratorConfig infant = preset_config("infant-t1");
    const GeneratorConfig reordered = parse(R"({"generation_labels": [0, 41, 2], "segmentation_labels": [0, 2, 41],
        "fused_classes": []})");
    const size_t n = infant.generation_labels.size();
    for (const auto& [k, label] : std::vector<std::pair<size_t, int32_t>>{{0, 0}, {1, 41}, {2, 2}}) {
        const size_t at = size_t(labels::index_of(infant.generation_labels, label));
        EXPECT_EQ(reordered.prior_means[k], infant.prior_means[at]) << label;
        EXPECT_EQ(reordered.prior_means[3 + k], infant.prior_means[n + at]) << label;
        EXPECT_EQ(reordered.prior_stds[k], infant.prior_stds[at]) << label;
        EXPECT_EQ(reordered.prior_stds[3 + k], infant.prior_stds[n + at]) << label;
    }
    EXPECT_EQ(refusal(R"({"generation_labels": [0, 2, 41, 502], "segmentation_labels": [0, 2, 41],
        "fused_classes": []})"),
              file +
                  ": generation label 502 has no prior_means in preset 'infant-t1', whose priors are of its own "
                  "labels: give prior_means and prior_stds (priors estimates them; [] for random contrasts), or "
                  "start from preset synthseg");
    // All 43 reversed (the lengths match, so columns were taken for labels silently), and with
    // prior_stds given: it stays as given, prior_means follows the labels.
    std::vector<int32_t> reversed(infant.generation_labels.rbegin(), infant.generation_labels.rend() - 1);
    reversed.insert(reversed.begin(), 0);
    std::vector<double> stds(2 * n, 7.0);
    const GeneratorConfig all = parse(cat(R"({"generation_labels": )", nlohmann::json(reversed).dump(),
                                          R"(, "prior_stds": )", nlohmann::json(stds).dump(), "}"));
    for (size_t k = 0; k < n; ++k) {
        const size_t at = size_t(labels::index_of(infant.generation_labels, reversed[k]));
        ASSERT_EQ(all.prior_means[k], infant.prior_means[at]) << reversed[k];
        ASSERT_EQ(all.prior_means[n + k], infant.prior_means[n + at]) << reversed[k];
    }
    EXPECT_EQ(all.prior_stds, stds);
    // A label no list may hold is named as such, not as one without priors.
    EXPECT_EQ(refusal(R"({"generation_labels": [0, -2, 41], "segmentation_labels": [0, 41], "fused_classes": []})"),
              file + ": generation_labels: -2 is not a label (an integer from 0 to 65535)");
    // Labels a model records (0 to 65535), two outputs at least, the background learned as such.
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "generation_labels": [0, 2, 41], "output_labels": [0, 2, 70000]})"),
              file + ": output_labels: 70000 is not a label (an integer from 0 to 65535)");
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "generation_labels": [0, -2, 41], "segmentation_labels": [0, 41]})"),
              file + ": generation_labels: -2 is not a label (an integer from 0 to 65535)");
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "generation_labels": [0, 2, 41], "output_labels": [0, 0, 0]})"),
              file +
                  ": segmentation_labels must hold 2 to 255 labels (the background and a structure at least), "
                  "has 1");
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "generation_labels": [0, 2, 41], "output_labels": [24, 2, 41]})"),
              file + ": generation label 0, the background, is learned as 24; it must be learned as background (0)");
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "generation_labels": "nowhere.npy"})"),
              file + ": parameter 'generation_labels': " + path("nowhere.npy") +
                  ": cannot open: No such file or "
                  "directory");
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "output_labels": ""})"),
              file + ": parameter 'output_labels' names no file");
    write_npy(path("table.npy"), {2, 2}, {0, 2, 0, 41});
    write_npy(path("fractions.npy"), {2}, {0, 2.5});
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "generation_labels": "table.npy"})", path("table.npy")),
              path("table.npy") + ": generation_labels must be a list of labels (one dimension), has 2 dimensions");
    EXPECT_EQ(refusal(R"({"preset": "synthseg", "output_labels": "fractions.npy"})", path("fractions.npy")),
              path("fractions.npy") + ": output_labels holds 2.5 at 1: not a label (an integer from 0 to 65535)");
}

TEST_F(SynthCli, BadInputExitsTwoAndWritesNothing) {
    const std::string map = " --labels " + shell_quote(map_file());
    expect_bad("--labels " + shell_quote(path("missing.nii.gz")), "missing.nii.gz");
    fs::create_directories(dir_ / "empty");
    std::ofstream(dir_ / "empty" / "readme.txt") << "no maps here\n";
    expect_bad("--labels " + shell_quote(path("empty")), path("empty") + ": no volume files");

    // A directory with one good map and one with a label outside the generation list: the bad
    // one is found before the first sample is written.
    fs::create_directories(dir_ / "mixed");
    fs::copy_file(map_file(), dir_ / "mixed" / "a_good.nii.gz");
    LabelMap bad = make_phantom(0, 3);
    bad.data[bad.data.size() / 2] = 999;
    write_labels(path("mixed/b_bad.nii.gz"), bad);
    expect_bad("--labels " + shell_quote(path("mixed")) + " --shape 64", "b_bad.nii.gz");
    expect_bad("--labels " + shell_quote(path("mixed")) + " --shape 64", "999");
    // Every value outside the list is named at once (an adult SynthSeg map has a dozen).
    bad.data[bad.data.size() / 3] = 511;
    write_labels(path("mixed/b_bad.nii.gz"), bad);
    expect_bad("--labels " + shell_quote(path("mixed")) + " --shape 64",
               "is not one of the 43 generation_labels (preset 'infant-t1', or a --config's own list) (2 such values: "
               "511, 999); a --config whose generation_labels list them");
    // A value no --config can list is told to be relabelled (a --config listing 70000 is refused).
    bad.data[bad.data.size() / 4] = 70000;
    write_labels(path("mixed/b_bad.nii.gz"), bad);
    expect_bad("--labels " + shell_quote(path("mixed")) + " --shape 64",
               "(3 such values: 511, 999, 70000); labels are integers from 0 to 65535: relabel the map");
    // An intensity image's hundreds of values: the first 20 (its line listed 290).
    for (int32_t v = 0; v < 25; ++v) bad.data[size_t(v)] = 300 + v;
    write_labels(path("mixed/b_bad.nii.gz"), bad);
    expect_bad("--labels " + shell_quote(path("mixed")) + " --shape 64",
               "(28 such values: 300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, "
               "317, 318, 319, ...); labels are integers");
    // One subject stored twice would be drawn twice as often: refused as dice and priors do.
    fs::create_directories(dir_ / "twice");
    write_labels(path("twice/a.nii"), make_phantom(0, 3));
    write_labels(path("twice/a.nii.gz"), make_phantom(0, 3));
    expect_bad("--labels " + shell_quote(path("twice")) + " --shape 64",
               "a.nii and a.nii.gz are one subject's: keep one");
    // Voxel sizes a model cannot record (mm stated for metres): refused before a model holds them.
    LabelMap tiny = make_phantom(0, 3);
    tiny.grid.affine = Mat4::scaling(0.002, 0.002, 0.002);
    write_labels(path("tiny_mm.nii.gz"), tiny);
    expect_bad("--labels " + shell_quote(path("tiny_mm.nii.gz")),
               "tiny_mm.nii.gz: voxels of 0.002 x 0.002 x 0.002 mm, outside 0.01 to 100 mm: the header's units are "
               "likely wrong");

    expect_bad(map + " --preset infant-t3", "unknown preset 'infant-t3'");
    std::ofstream(path("unknown_key.json")) << R"({"gamma_stdev": 0.3})";
    expect_bad(map + " --config " + shell_quote(path("unknown_key.json")), "gamma_stdev");
    // JSON would keep the last of two values given one key; which was meant is the user's to say.
    std::ofstream(path("twice.json")) << R"({"gamma_std": 0.1, "nonlin_std": 2, "gamma_std": 0.2})";
    expect_bad(map + " --config " + shell_quote(path("twice.json")),
               path("twice.json") + ": key 'gamma_std' is given twice in one object");
    std::ofstream(path("synthseg.json")) << R"({"preset": "synthseg", "gamma_std": 0.2})";
    expect_bad(map + " --preset infant-t2 --config " + shell_quote(path("synthseg.json")),
               path("synthseg.json") + ": its \"preset\" is synthseg but --preset is infant-t2: give the preset once");
    std::ofstream(path("prior_shape.json")) << R"({"prior_means": [1, 2, 3]})";
    expect_bad(map + " --config " + shell_quote(path("prior_shape.json")), "prior_means");
    // Types checked before the JSON library converts (an out-of-range number was undefined
    // behaviour there: a fuzzing finding).
    std::ofstream(path("huge_label.json")) << R"({"segmentation_labels": [0, 2, 888888888888888888888888841]})";
    expect_bad(map + " --config " + shell_quote(path("huge_label.json")),
               "parameter 'segmentation_labels[2]' must be an integer");
    std::ofstream(path("string_number.json")) << R"({"flip_probability": "0.5"})";
    expect_bad(map + " --config " + shell_quote(path("string_number.json")),
               "parameter 'flip_probability' must be a number");
    // Lists of a fixed length; labels one output each; a blur window the kernels hold (a larger
    // one failed inside the generator with exit 1, naming neither the file nor the parameter).
    const std::vector<std::pair<std::string, std::string>> bad_values = {
        {R"({"output_shape": [32]})", "parameter 'output_shape' must be a list of 3 values"},
        {R"({"random_mean": [10, 20, 30]})", "parameter 'random_mean' must be a list of 2 values"},
        {R"({"segmentation_labels": [0, 2, 2]})", "segmentation_labels has duplicates"},
        {R"({"blur_sigma": 13})",
         "blur_sigma 13 and blur_range 1.03 ask for a blur of up to 17 voxels each side; at most 16"},
        {R"({"blur_sigma": 1e30})", "blur_sigma 1e+30 and blur_range 1.03 ask for a blur of up to"},
        {R"({"randomise_resolution": true, "resolution_unit": "voxel", "max_isotropic": 16,
             "anisotropic_probability": 0, "blur_range": 1.5})",
         "blur_sigma 0.5 and blur_range 1.5 with max_isotropic 16 / max_anisotropic 8 voxels ask for a blur of up to "
         "22 voxels each side; at most 16"},
        {R"({"resolution_unit": "inch"})", "resolution_unit must be \"mm\" or \"voxel\", is \"inch\""},
        {R"({"max_anisotropic": 80})", "max_isotropic and max_anisotropic must be in (0, 64] mm, are 4 and 80"},
        {R"({"randomise_resolution": true, "blur_range": 20})",
         "blur_range 20 leaves the random resolution no room: its blur's window holds 0.88 voxels of resolution, the "
         "full resolution's 1"},
        {R"({"prior_means": []})",
         "prior_means and prior_stds go together (both [] for random contrasts); prior_means is empty"},
        {R"({"resolution_unit": "voxel", "max_isotropic": 0.5})",
         "max_isotropic and max_anisotropic must be in [1, 64] voxels, are 0.5 and 8"}};
    for (size_t i = 0; i < bad_values.size(); ++i) {
        const std::string file = path("bad_value_" + std::to_string(i) + ".json");
        std::ofstream(file) << bad_values[i].first;
        expect_bad(map + " --config " + shell_quote(file), file + ": " + bad_values[i].second);
    }
    // In mm the window depends on the map's voxels: refused naming the map.
    std::ofstream(path("wide_mm.json")) << R"({"randomise_resolution": true, "max_isotropic": 16,
        "anisotropic_probability": 0, "blur_range": 1.5})";
    const RunResult wide = synth(map + " --config " + shell_quote(path("wide_mm.json")) + " --shape 64 --out " +
                                 shell_quote(path("wide_out")));
    EXPECT_EQ(wide.status, 0) << wide.err;
    EXPECT_NE(wide.err.find(map_file() + ": voxels of 1 mm, finer than the random resolution's blur reaches at 16 mm "
                                         "(the kernels' 16 taps each side hold 11.7333 voxels): resolutions there are "
                                         "drawn up to that many of their voxels"),
              std::string::npos)
        << wide.err;
    // A bound that cannot be drawn does not count: no anisotropic draws, a large max_anisotropic.
    std::ofstream(path("iso_only.json")) << R"({"randomise_resolution": true, "anisotropic_probability": 0,
        "max_anisotropic": 16, "blur_range": 1.5})";
    const RunResult iso = synth(map + " --config " + shell_quote(path("iso_only.json")) + " --shape 64 --out " +
                                shell_quote(path("iso_out")));
    EXPECT_EQ(iso.status, 0) << iso.err;
    std::ofstream(path("preset_list.json")) << R"({"preset": [32, 32, 32]})";  // found by fuzz_generator_config
    expect_bad(map + " --config " + shell_quote(path("preset_list.json")), "parameter 'preset' must be a preset's name");
    expect_bad(map + " --count 0", "--count");
    expect_bad(map + " --count -3", "--count");
    expect_bad(map + " --count two", "--count");
    expect_bad(map + " --shape 0", "--shape");
    expect_bad(map + " --seed -1", "--seed");
    expect_bad(map + " --seed 9223372036854775808",
               "--seed 9223372036854775808 is out of range (the most is 2^63 - 1)");
    expect_bad(map + " --device tpu", "tpu");
    expect_bad(map + " stray", "stray");
    expect_bad("--count 1", "--labels");
    // A padded crop larger than memory: refused before anything is written.
    std::ofstream(path("pad.json")) << R"({"pad_when_smaller": true})";
    expect_bad(map + " --config " + shell_quote(path("pad.json")) + " --shape 4096", "smaller shape");
    // Beyond any crop: refused as such (100000 ran out of memory sizing the bias field, exit 1;
    // near 2^31 the sizes overflowed, an internal error).
    expect_bad(map + " --config " + shell_quote(path("pad.json")) + " --shape 100000",
               "--shape must be 1 to 4096, got 100000");
    std::ofstream(path("huge.json")) << R"({"pad_when_smaller": true, "output_shape": [2147483647, 2147483647, 64]})";
    expect_bad(map + " --config " + shell_quote(path("huge.json")),
               "huge.json: output_shape entries must be 1 to 4096, one is 2147483647");

    // --out missing, or not creatable: nothing appears.
    const RunResult r = synth("--labels " + shell_quote(map_file()));
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--out"), std::string::npos) << r.err;
    std::ofstream(path("a_file")) << "x";
    const RunResult f =
        synth("--labels " + shell_quote(map_file()) + " --shape 64 --out " + shell_quote(path("a_file/sub")));
    EXPECT_EQ(f.status, 2);
    EXPECT_NE(f.err.find(path("a_file/sub")), std::string::npos) << f.err;
    const RunResult g = synth("--labels " + shell_quote(path("missing")) + " --out " + shell_quote(path("never")));
    EXPECT_EQ(g.status, 2);
    EXPECT_FALSE(fs::exists(path("never"))) << "the output directory is created only after the inputs are read";
}

}  // namespace
}  // namespace iss
