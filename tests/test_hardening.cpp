// Flags and inputs a hostile but realistic user gives the commands: each is refused with exit 2
// and one line naming the problem (or, for --threads, bounded with a warning), never a crash, a
// hang or an allocation the machine cannot make. Commands that could block run under `timeout`.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "io/nifti.h"
#include "io/npy.h"
#include "kernels/common/error.h"
#include "synth/phantom.h"
#include "tests/small_model.h"
#include "tests/test_util.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

class Hardening : public test::TempDirTest {
protected:
    void SetUp() override {
        TempDirTest::SetUp();
        test::write_small_scan(path("scan.nii.gz"));
        test::write_small_model(path("model"));
    }
    std::string q(const std::string& name) const { return test::shell_quote(path(name)); }
    static test::RunResult run(const std::string& args) {
        return test::run_command("timeout 60 " + test::cli_path() + " " + args);
    }
    // `environment`: an assignment put before the command.
    static test::RunResult run_with(const std::string& environment, const std::string& args) {
        return test::run_command(environment + " timeout 60 " + test::cli_path() + " " + args);
    }
    void expect_bad(const std::string& args, const std::string& fragment) {
        SCOPED_TRACE(args);
        const test::RunResult r = run(args);
        EXPECT_EQ(r.status, 2) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
    }
};

// The bound --threads and OMP_NUM_THREADS are held to: 4 per hardware thread this process may
// use (more only cost time and memory; a few more let a run go on on a smaller machine).
std::string thread_bound() {
    cpu_set_t allowed;
    EXPECT_EQ(::sched_getaffinity(0, sizeof allowed, &allowed), 0);
    return std::to_string(4 * CPU_COUNT(&allowed));
}

// OMP_NUM_THREADS past the machine is bounded as --threads is (100000 crashed every command
// that runs threads, with no message).
TEST_F(Hardening, OmpNumThreadsIsBoundedToTheMachine) {
    write_labels(path("map.nii.gz"), make_phantom(0, 1));
    const test::RunResult r = test::run_command("OMP_NUM_THREADS=100000 " + test::cli_path() + " synth --labels " +
                                                q("map.nii.gz") + " --out " + q("s") + " --shape 32 --device cpu");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("warning: OMP_NUM_THREADS asks for "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("; using " + thread_bound() + "\n"), std::string::npos) << r.err;
    // --threads decides where it is given: no word of OMP_NUM_THREADS.
    const test::RunResult given = test::run_command("OMP_NUM_THREADS=100000 " + test::cli_path() + " train --labels " +
                                                    q("map.nii.gz") + " --model-dir " + q("m") + " --threads 1 " +
                                                    "--shape 32 --levels 2 --features 4 --steps 1 --device cpu");
    EXPECT_EQ(given.status, 0) << given.err;
    EXPECT_EQ(given.err.find("OMP_NUM_THREADS"), std::string::npos) << given.err;
}

// Every help text fits a 92-column terminal (the usage lines of predict and train ran past it).
TEST_F(Hardening, HelpTextsFitIn92Columns) {
    for (const char* command :
         {"", "clean", "dice", "export", "import", "info", "merge", "phantom", "predict", "priors", "synth", "train"}) {
        SCOPED_TRACE(command);
        const test::RunResult r = run(std::string(command) + " --help");
        ASSERT_EQ(r.status, 0) << r.err;
        std::istringstream lines(r.out);
        for (std::string line; std::getline(lines, line);) EXPECT_LE(line.size(), 92u) << line;
    }
}

TEST_F(Hardening, ThreadsAreBoundedToTheMachine) {
    const test::RunResult r = run("predict --device cpu --threads 100000 --model " + q("model") + " --i " +
                                  q("scan.nii.gz") + " --o " + q("seg.nii.gz"));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("warning: predict: --threads 100000: at most 4 per hardware thread of this machine; using " +
                         thread_bound() + "\n"),
              std::string::npos)
        << r.err;
    EXPECT_TRUE(fs::exists(path("seg.nii.gz")));
    // Within the bound, more threads than the machine has are what was asked for: no warning.
    const test::RunResult more = run("predict --device cpu --threads " + thread_bound() + " --model " + q("model") +
                                     " --i " + q("scan.nii.gz") + " --o " + q("seg2.nii.gz"));
    EXPECT_EQ(more.status, 0) << more.err;
    EXPECT_EQ(more.err.find("--threads"), std::string::npos) << more.err;
}

TEST_F(Hardening, FifosAreRefusedNotReadForever) {
    ASSERT_EQ(::mkfifo(path("fifo.safetensors").c_str(), 0600), 0);
    ASSERT_EQ(::mkfifo(path("fifo.json").c_str(), 0600), 0);
    ASSERT_EQ(::mkfifo(path("fifo.npy").c_str(), 0600), 0);
    ASSERT_EQ(::mkfifo(path("fifo.h5").c_str(), 0600), 0);
    const std::string predict = "predict --device cpu --i " + q("scan.nii.gz") + " --o " + q("seg.nii.gz");
    expect_bad(predict + " --model " + q("fifo.safetensors"), "is not a regular file");
    expect_bad(predict + " --model " + q("fifo.h5") + " --labels infant", "is not a regular file");
    write_labels(path("map.nii.gz"), make_phantom(0, 1));
    expect_bad("synth --labels " + q("map.nii.gz") + " --out " + q("out") + " --config " + q("fifo.json"),
               "is not a regular file");
    fs::create_directories(path("images"));
    fs::create_directories(path("maps"));
    expect_bad("priors --images " + q("images") + " --labels " + q("maps") + " --out " + q("out") +
                   " --labels-list " + q("fifo.npy"),
               "is not a regular file");
}

TEST_F(Hardening, SizesFromAHeaderAreCheckedBeforeAllocating) {
    // 1000 mm voxels, and a model trained at 1 mm: 12 km of field of view at 1 mm.
    Grid g;
    g.dim = {12, 14, 10};
    g.affine = Mat4::scaling(1000, 1000, 1000);
    write_image(path("huge_voxels.nii.gz"), Image(g, 1, 1.0f));
    nlohmann::json record = nlohmann::json::parse(test::read_text(path("model/model.json")));
    record["preprocessing"]["voxel_size_mm"] = {1, 1, 1};
    test::write_edited_record(path("model/model.json"), record);
    expect_bad("predict --device cpu --model " + q("model") + " --i " + q("huge_voxels.nii.gz") + " --o " +
                   q("seg.nii.gz"),
               "huge_voxels.nii.gz: segmenting it on a grid of 12000x14000x10000 voxels");
    EXPECT_FALSE(fs::exists(path("seg.nii.gz")));
}

TEST_F(Hardening, TrainRefusesACropTheNetworkCannotUse) {
    write_labels(path("map.nii.gz"), make_phantom(0, 1));
    expect_bad("train --device cpu --labels " + q("map.nii.gz") + " --model-dir " + q("m") +
                   " --shape 8 --levels 5 --steps 1",
               "--shape 8 is smaller than 32");
    EXPECT_FALSE(fs::exists(path("m")));
}

// A map thinner than the crop's multiple along an axis (thick slices, a slab): the crop would
// repeat its last slice, so synth and train refuse it, naming the axis; a smaller multiple works.
TEST_F(Hardening, ThinMapsAreRefusedNotFilledWithTheirLastSlice) {
    Grid g;
    g.dim = {40, 44, 14};
    g.affine = Mat4::scaling(1, 1, 3);
    LabelMap thin(g);
    for (size_t v = 0; v < thin.data.size(); ++v) thin.data[v] = (v % 40 > 8 && v % 40 < 30) ? 2 : 0;
    write_labels(path("thin.nii.gz"), thin);
    expect_bad("synth --device cpu --shape 32 --labels " + q("thin.nii.gz") + " --out " + q("s"),
               "thin.nii.gz: 40x44x14 voxels (in RAS order) cannot hold a crop of 32 voxels along z");
    expect_bad("train --device cpu --shape 32 --levels 5 --steps 1 --labels " + q("thin.nii.gz") + " --model-dir " +
                   q("m"),
               "cannot hold a crop of 32 voxels along z");
    EXPECT_FALSE(fs::exists(path("s")));
    EXPECT_FALSE(fs::exists(path("m")));
    std::ofstream(path("multiple2.json")) << R"({"shape_multiple": 2})";
    const test::RunResult r = run("synth --device cpu --shape 32 --labels " + q("thin.nii.gz") + " --config " +
                                  q("multiple2.json") + " --out " + q("s"));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(read_labels(path("s/labels_0000.nii.gz")).grid.dim, (std::array<int64_t, 3>{32, 32, 14}));
    // A map of background only (a blank file, a mask of zeros): refused too.
    write_labels(path("blank.nii.gz"), LabelMap(Grid{{40, 40, 40}, Mat4::identity()}));
    expect_bad("synth --device cpu --shape 32 --labels " + q("blank.nii.gz") + " --out " + q("b"),
               "blank.nii.gz: the label map holds only background (label 0)");
    EXPECT_FALSE(fs::exists(path("b")));
}

// predict's outputs are NIfTI or MGH files: another name (seg.img, a .txt) is refused before the
// network runs; several --i on different grids name the one that differs.
TEST_F(Hardening, PredictNamesItsOutputsAndChannels) {
    const std::string predict = "predict --device cpu --model " + q("model") + " --i " + q("scan.nii.gz");
    expect_bad(predict + " --o " + q("seg.img"), "--o: '" + path("seg.img") + "' is not a NIfTI or MGH name");
    expect_bad(predict + " --o " + q("seg.nii.gz") + " --post " + q("post.txt"), "--post: '");
    expect_bad(predict + " --o " + q("seg.nii.gz") + " --resample " + q("r.hdr"), "--resample: '");
    EXPECT_FALSE(fs::exists(path("seg.img")));
    EXPECT_FALSE(fs::exists(path("seg.nii.gz")));
    Grid g;
    g.dim = {12, 14, 9};
    g.affine = Mat4::scaling(1.5, 1.5, 1.5);
    write_image(path("t2_other_grid.nii.gz"), Image(g, 1, 1.0f));
    expect_bad(predict + " --i " + q("t2_other_grid.nii.gz") + " --o " + q("seg.nii.gz"),
               "--i given 2 times (the channels of one subject), but " + path("model") + " takes 1 image");
    test::write_small_model(path("two_channels"), 11, 2);
    expect_bad("predict --device cpu --model " + q("two_channels") + " --i " + q("scan.nii.gz") + " --i " +
                   q("t2_other_grid.nii.gz") + " --o " + q("seg.nii.gz"),
               "t2_other_grid.nii.gz: not on the voxel grid of " + path("scan.nii.gz") + ": dims 12x14x9 vs 12x14x10");
    // Both channels' files are named in the line that says what was done.
    write_image(path("t2.nii.gz"), read_image(path("scan.nii.gz")));
    const test::RunResult two =
        test::run_command(test::cli_path() + " predict --device cpu --model " + q("two_channels") + " --i " +
                          q("scan.nii.gz") + " --i " + q("t2.nii.gz") + " --o " + q("seg2.nii.gz"));
    ASSERT_EQ(two.status, 0) << two.err;
    EXPECT_NE(two.out.find(path("scan.nii.gz") + " + " + path("t2.nii.gz") + " -> " + path("seg2.nii.gz")),
              std::string::npos)
        << two.out;
}

TEST_F(Hardening, MessagesNameTheProblem) {
    expect_bad("predict --device cpu --model " + q("no_such_model") + " --i " + q("scan.nii.gz") + " --o " +
                   q("seg.nii.gz"),
               "no_such_model: no such model");
    LabelMap seg(Grid{});
    write_labels(path("seg.nii.gz"), seg);
    write_image(path("post.nii.gz"), Image(Grid{}, 34, 0.5f));
    expect_bad(
        "clean --seg " + q("seg.nii.gz") + " --post " + q("post.nii.gz") + " --o " + q("c.nii.gz") + " --labels ''",
        "option --labels has an empty value");
    // An unknown command is one line too (it was followed by the 18 lines of the usage).
    expect_bad("frobnicate --i x", "infant-synthseg: unknown command 'frobnicate' (the commands: clean, dice,");
    expect_bad("help frobnicate", "unknown command 'frobnicate'");
    // An empty output (an unset shell variable) did the work, then failed naming no file.
    expect_bad("dice --pred " + q("seg.nii.gz") + " --gt " + q("seg.nii.gz") + " --out=",
               "option --out has an empty value");
    // A name with a line break (from a file's own text, or a path) stays on the message's line.
    expect_bad("info " + q("two\nlines.nii.gz"), "two\\x0alines.nii.gz");
    // Bytes that are not UTF-8 (a damaged file's text) are escaped too; a Unicode name is kept.
    expect_bad("info " + q("caf\xe9.nii.gz"), "caf\\xe9.nii.gz");
    expect_bad("info " + q("caf\xc3\xa9.nii.gz"), "caf\xc3\xa9.nii.gz: cannot open");
    expect_bad("info " + q("half\xc3.nii.gz"), "half\\xc3.nii.gz");
}

// one_line: every well-formed UTF-8 sequence kept, and each byte of a malformed one escaped
// (overlong, surrogate, past U+10FFFF, cut short), so that the message is valid text.
TEST(OneLine, KeepsUtf8AndEscapesTheRest) {
    EXPECT_EQ(one_line("a\tb"), "a\\x09b");
    EXPECT_EQ(one_line("\xce\xbc \xe2\x82\xac \xf0\x9f\x98\x80"), "\xce\xbc \xe2\x82\xac \xf0\x9f\x98\x80");
    EXPECT_EQ(one_line("\xc0\xaf"), "\\xc0\\xaf");                    // overlong '/'
    EXPECT_EQ(one_line("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // a surrogate
    EXPECT_EQ(one_line("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // past U+10FFFF
    EXPECT_EQ(one_line("\xe2\x82"), "\\xe2\\x82");                    // cut short
    EXPECT_EQ(one_line("\x7f\xff"), "\\x7f\\xff");
    // Well-formed, but a line break or a terminal's or the text direction's control: escaped.
    EXPECT_EQ(one_line("a\xc2\x85"
                       "b"),
              "a\\xc2\\x85"
              "b");  // NEL
    EXPECT_EQ(one_line("\xc2\x9b"
                       "31m"),
              "\\xc2\\x9b"
              "31m");                                                       // CSI
    EXPECT_EQ(one_line("\xe2\x80\xa8"), "\\xe2\\x80\\xa8");                 // line separator
    EXPECT_EQ(one_line("\xe2\x80\xae"), "\\xe2\\x80\\xae");                 // right-to-left override
    EXPECT_EQ(one_line("\xe2\x81\xa6"), "\\xe2\\x81\\xa6");                 // left-to-right isolate
    EXPECT_EQ(one_line("\xe2\x80\xa7 \xc2\xa0"), "\xe2\x80\xa7 \xc2\xa0");  // their neighbours kept
}

// clipped: a file's long name or value cut for a message, saying that it was.
TEST(Clipped, CutsPastTheLimitAndSaysSo) {
    EXPECT_EQ(clipped(std::string(100, 'a')), std::string(100, 'a'));
    EXPECT_EQ(clipped(std::string(101, 'a')), std::string(100, 'a') + "...");
    EXPECT_EQ(clipped("abcdef", 3), "abc...");
}

TEST_F(Hardening, MergeChecksLabelsAndPosteriors) {
    Grid g;
    g.dim = {4, 3, 2};
    LabelMap seg(g);
    seg.data[5] = 2;
    write_labels(path("seg.nii.gz"), seg);
    LabelMap other = seg;
    other.data[7] = 17;  // no frame for 17 in the list 0,2,3
    write_labels(path("seg17.nii.gz"), other);
    Image post(g, 3, 0.3f);
    write_image(path("post.nii.gz"), post);
    post.data[4] = std::nanf("");
    write_image(path("post_nan.nii.gz"), post);
    post.data[4] = -0.5f;
    write_image(path("post_negative.nii.gz"), post);
    auto merge = [&](const std::string& t2_seg, const std::string& t2_post) {
        return "merge --labels 0,2,3 --t1-seg " + q("seg.nii.gz") + " --t1-post " + q("post.nii.gz") + " --t2-seg " +
               q(t2_seg) + " --t2-post " + q(t2_post) + " --o-seg " + q("m.nii.gz") + " --o-post " + q("mp.nii.gz");
    };
    expect_bad(merge("seg17.nii.gz", "post.nii.gz"), "seg17.nii.gz: label 17 has no posterior frame");
    expect_bad(merge("seg.nii.gz", "post_nan.nii.gz"), "post_nan.nii.gz: posterior nan");
    expect_bad(merge("seg.nii.gz", "post_negative.nii.gz"), "post_negative.nii.gz: posterior -0.5");
    EXPECT_FALSE(fs::exists(path("m.nii.gz")));
}

// The readers' own tests (test_nifti.cpp) cover each malformation; this checks that every
// command reading a NIfTI file passes the refusal on as one line naming the file, exit 2, and
// writes nothing.
TEST_F(Hardening, EveryCommandNamesACorruptNiftiFile) {
    std::ifstream in(path("scan.nii.gz"), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(path("cut.nii.gz"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    std::ofstream(path("noise.nii"), std::ios::binary) << std::string(400, '\x5a');
    write_labels(path("map.nii.gz"), make_phantom(0, 1));
    fs::create_directories(path("maps"));
    fs::copy_file(path("cut.nii.gz"), path("maps/a.nii.gz"));
    fs::create_directories(path("images"));
    write_image(path("images/a.nii.gz"), read_image(path("scan.nii.gz")));
    write_image(path("post.nii.gz"), Image(read_labels(path("map.nii.gz")).grid, 34, 0.5f));
    const std::vector<std::pair<std::string, std::string>> runs = {
        {"predict --device cpu --model " + q("model") + " --i " + q("cut.nii.gz") + " --o " + q("out.nii.gz"),
         "cut.nii.gz"},
        {"predict --device cpu --model " + q("model") + " --i " + q("noise.nii") + " --o " + q("out.nii.gz"),
         "noise.nii"},
        {"synth --labels " + q("cut.nii.gz") + " --out " + q("out"), "cut.nii.gz"},
        {"train --device cpu --labels " + q("noise.nii") + " --model-dir " + q("out") + " --steps 1", "noise.nii"},
        {"priors --images " + q("images") + " --labels " + q("maps") + " --out " + q("out"), "a.nii.gz"},
        {"clean --seg " + q("cut.nii.gz") + " --post " + q("post.nii.gz") + " --o " + q("out.nii.gz"), "cut.nii.gz"},
        {"clean --seg " + q("map.nii.gz") + " --post " + q("noise.nii") + " --o " + q("out.nii.gz"), "noise.nii"},
        {"merge --t1-seg " + q("map.nii.gz") + " --t1-post " + q("post.nii.gz") + " --t2-seg " + q("cut.nii.gz") +
             " --t2-post " + q("post.nii.gz") + " --o-seg " + q("out.nii.gz") + " --o-post " + q("out_post.nii.gz"),
         "cut.nii.gz"},
        {"dice --pred " + q("noise.nii") + " --gt " + q("map.nii.gz") + " --out " + q("out.csv"), "noise.nii"},
    };
    for (const auto& [args, file] : runs) {
        expect_bad(args, file + ": ");
        EXPECT_FALSE(fs::exists(path("out.nii.gz")) || fs::exists(path("out")) || fs::exists(path("out.csv")) ||
                     fs::exists(path("out_post.nii.gz")))
            << args;
    }
}

TEST_F(Hardening, ABadTrainingLogOnResumeIsNamed) {
    write_labels(path("map.nii.gz"), make_phantom(2, 1));
    const std::string train = "train --device cpu --labels " + q("map.nii.gz") + " --model-dir " + q("m") +
                              " --shape 32 --levels 2 --features 2 --steps-per-epoch 1 --steps ";
    ASSERT_EQ(run(train + "1").status, 0);
    std::ofstream(path("m/training_log.csv")) << "when,what\n1,2\n";
    expect_bad(train + "2 --resume", path("m/training_log.csv") + ": no CSV column 'step'");
}

// A value left out ("--model-dir $DIR --resume" with DIR unset) took the next option for it: a
// model was made in ./--resume, exit 0. Integers with blanks, and "-" for an output, likewise.
TEST_F(Hardening, AnOptionIsNoOtherOptionsValue) {
    expect_bad("phantom --age-months 1 --out --seed 3",
               "error: option --out needs a value, but is followed by the option --seed (an empty shell variable?)");
    expect_bad("predict --i " + q("scan.nii.gz") + " --model " + q("model") + " --o --no-flip",
               "option --o needs a value, but is followed by the option --no-flip");
    expect_bad("phantom --age-months 1 --out " + q("p.nii.gz") + " --seed ' 5'", "option --seed expects an integer");
    expect_bad("dice --pred " + q("scan.nii.gz") + " --gt " + q("scan.nii.gz") + " --out -",
               "--out -: for standard output give /dev/stdout");
}

// A result printed to standard output that could not be written is a failure (info > file on a
// full disk was an empty file and exit 0); report lines lost beside outputs written are a
// warning. A standard stream closed at the start is no file's descriptor (TrainCli's lock test).
TEST_F(Hardening, StandardOutputThatCannotBeWrittenIsAFailure) {
    const test::RunResult full = run("info " + q("scan.nii.gz") + " > /dev/full");
    EXPECT_EQ(full.status, 1) << full.err;
    EXPECT_NE(full.err.find("infant-synthseg info: error: standard output: "), std::string::npos) << full.err;
    EXPECT_EQ(run("--help > /dev/full").status, 1);
    EXPECT_EQ(run("info " + q("scan.nii.gz") + " >&-").status, 1);
    const test::RunResult report = run("phantom --age-months 1 --out " + q("p.nii.gz") + " > /dev/full");
    EXPECT_EQ(report.status, 0) << report.err;
    EXPECT_NE(report.err.find("warning: phantom: standard output: "), std::string::npos) << report.err;
    EXPECT_EQ(read_labels(path("p.nii.gz")).frames, 1);
    const test::RunResult closed = run("phantom --age-months 1 --out " + q("q.nii.gz") + " >&-");
    EXPECT_EQ(closed.status, 0) << closed.err;
    EXPECT_EQ(closed.err, "");
}

// A working directory removed under the shell: one line before any work (train failed with an
// internal error, synth said its folder was no folder, predict ran, then failed to write).
TEST_F(Hardening, ARemovedWorkingDirectoryIsSaid) {
    fs::create_directories(path("gone"));
    const test::RunResult r = test::run_command("cd " + q("gone") + " && rmdir " + q("gone") + " && " +
                                                test::cli_path() + " phantom --age-months 1 --out p.nii.gz");
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("infant-synthseg phantom: error: the working directory was removed"), std::string::npos)
        << r.err;
    // A relative name without a dot (synth's folder) too; absolute paths alone, and --help, need none.
    write_labels(path("map.nii.gz"), make_phantom(2, 1));
    fs::create_directories(path("gone"));
    const test::RunResult dotless =
        test::run_command("cd " + q("gone") + " && rmdir " + q("gone") + " && " + test::cli_path() +
                          " synth --labels " + q("map.nii.gz") + " --out samples --count 1 --shape 32 --device cpu");
    EXPECT_EQ(dotless.status, 2) << dotless.err;
    EXPECT_NE(dotless.err.find("the working directory was removed"), std::string::npos) << dotless.err;
    fs::create_directories(path("gone"));
    const test::RunResult absolute =
        test::run_command("cd " + q("gone") + " && rmdir " + q("gone") + " && " + test::cli_path() +
                          " phantom --age-months 1 --out " + q("a.nii.gz"));
    EXPECT_EQ(absolute.status, 0) << absolute.err;
    fs::create_directories(path("gone"));
    EXPECT_EQ(
        test::run_command("cd " + q("gone") + " && rmdir " + q("gone") + " && " + test::cli_path() + " phantom --help")
            .status,
        0);
}

// ../new is made as mkdir -p makes it (it was "no such directory"); new/.. is still refused.
TEST_F(Hardening, AnOutputFolderAboveTheWorkingDirectoryIsMade) {
    fs::create_directories(path("sub"));
    const test::RunResult r = test::run_command("cd " + q("sub") + " && " + test::cli_path() +
                                                " phantom --age-months 1 --out ../made/p.nii.gz");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(path("made/p.nii.gz")));
    expect_bad("phantom --age-months 1 --out " + q("new/../p.nii.gz"), "new/..");
    EXPECT_FALSE(fs::exists(path("new")));
}

// Weights finite but too large for float sums: NaN posteriors, which the argmax took for
// background and --vol wrote as "nan", exit 0.
TEST_F(Hardening, ANetworkWhoseOutputIsNotANumberIsRefused) {
    {
        DeviceContext cpu;
        ModelSpec spec;
        spec.unet.levels = 3;
        spec.unet.features = 3;
        spec.unet.classes = 5;
        spec.labels = {0, 2, 3, 41, 42};
        spec.preprocessing = {
            {"orientation", "RAS"}, {"size_multiple", spec.unet.reference_multiple()}, {"voxel_size_mm", nullptr}};
        ParamStore params(cpu);
        UNet net(spec.unet, params);
        params.allocate();
        net.initialise(3);
        float* values = params.values();
        for (int64_t i = 0; i < params.trainable_span(); ++i) values[i] = values[i] < 0 ? -3e38f : 3e38f;
        fs::create_directories(path("huge"));
        save_model(path("huge/model.safetensors"), spec, params);
    }
    expect_bad("predict --i " + q("scan.nii.gz") + " --o " + q("seg.nii.gz") + " --vol " + q("vol.csv") + " --model " +
                   q("huge"),
               path("huge") + ": the network's output on " + path("scan.nii.gz") + " is not a number (NaN)");
    EXPECT_FALSE(fs::exists(path("seg.nii.gz")) || fs::exists(path("vol.csv")));
    // A folder: a model that has segmented nothing stops at its first failure, not a scan a time.
    fs::create_directories(path("two"));
    fs::copy_file(path("scan.nii.gz"), path("two/a.nii.gz"));
    fs::copy_file(path("scan.nii.gz"), path("two/b.nii.gz"));
    const test::RunResult folder = run("predict --i " + q("two") + " --o " + q("segs") + " --model " + q("huge"));
    EXPECT_EQ(folder.status, 2) << folder.err;
    EXPECT_NE(folder.err.find("error: the 1 scan after it is not tried: the model has segmented none"),
              std::string::npos)
        << folder.err;
}

// OMP_NUM_THREADS that OpenMP cannot read is said by the command too; what it reads is not.
TEST_F(Hardening, AnUnreadableOmpNumThreadsIsSaid) {
    const test::RunResult odd = run_with("OMP_NUM_THREADS=abc", "info " + q("scan.nii.gz"));
    EXPECT_EQ(odd.status, 0) << odd.err;
    EXPECT_NE(odd.err.find("warning: OMP_NUM_THREADS='abc' is not a number of threads: "), std::string::npos)
        << odd.err;
    for (const char* fine : {"' 3'", "01", "+1", "2,1"}) {
        const test::RunResult r = run_with(std::string("OMP_NUM_THREADS=") + fine, "info " + q("scan.nii.gz"));
        EXPECT_EQ(r.err.find("is not a number of threads"), std::string::npos) << fine << ": " << r.err;
    }
}

// 99% of the voxels one value: --clip-percentiles' range was empty, and every voxel 0.
TEST_F(Hardening, PercentilesOfOneValueFallBackToTheRange) {
    Image scan = read_image(path("scan.nii.gz"));
    std::fill(scan.data.begin(), scan.data.end(), 0.0f);
    for (int i = 0; i < 5; ++i) scan.data[size_t(100 * i + 7)] = float(10 + i);
    write_image(path("sparse.nii.gz"), scan);
    const test::RunResult r = run("predict --i " + q("sparse.nii.gz") + " --o " + q("seg.nii.gz") + " --resample " +
                                  q("seen.nii.gz") + " --model " + q("model") + " --clip-percentiles");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("its 0.5% and 99.5% quantiles are both 0 (99% of its voxels one value): normalised between "
                         "its minimum and maximum instead"),
              std::string::npos)
        << r.err;
    const Image seen = read_image(path("seen.nii.gz"));
    EXPECT_EQ(*std::max_element(seen.data.begin(), seen.data.end()), 1.0f);
}

// A description of a network far larger than its weights (a sparse file of the right size, its
// header another network's): refused from the header, before the 24 GB were allocated (under an
// address-space limit that allocation was "out of memory", exit 1, naming no file).
TEST_F(Hardening, WeightsAreCheckedBeforeTheNetworkIsAllocated) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space: no run fits under ulimit -v";
#endif
    nlohmann::json record = nlohmann::json::parse(test::read_text(path("model/model.json")));
    record["architecture"]["levels"] = 8;
    record["architecture"]["features"] = 32;
    record["architecture"]["convs_per_level"] = 8;
    record["preprocessing"]["size_multiple"] = 256;
    test::write_edited_record(path("model/model.json"), record);
    UNetConfig config;
    config.levels = 8;
    config.features = 32;
    config.convs_per_level = 8;
    config.classes = 5;
    fs::resize_file(path("model/model.safetensors"), uintmax_t(4) * uintmax_t(unet_parameter_count(config)) + 4096);
    const test::RunResult r =
        test::run_command("ulimit -v 4000000; " + test::cli_path() + " predict --i " + q("scan.nii.gz") + " --o " +
                          q("seg.nii.gz") + " --model " + q("model"));
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find(path("model/model.safetensors") + ": "), std::string::npos) << r.err;
}

// Scans of two sizes in one folder: the engines built for the first size are dropped for the
// second and built again for the first, which then segments as before.
TEST_F(Hardening, AFolderOfTwoSizesSegmentsEachAsAlone) {
    fs::create_directories(path("scans"));
    fs::copy_file(path("scan.nii.gz"), path("scans/a.nii.gz"));
    Image other = read_image(path("scan.nii.gz"));
    other.grid.dim = {20, 14, 10};
    other.data.assign(size_t(other.grid.voxels()), 0.0f);
    for (size_t v = 0; v < other.data.size(); ++v) other.data[v] = float((v * 37) % 101);
    write_image(path("scans/b.nii.gz"), other);
    fs::copy_file(path("scan.nii.gz"), path("scans/c.nii.gz"));
    ASSERT_EQ(run("predict --i " + q("scans") + " --o " + q("segs") + " --model " + q("model")).status, 0);
    ASSERT_EQ(run("predict --i " + q("scan.nii.gz") + " --o " + q("alone.nii.gz") + " --model " + q("model")).status,
              0);
    const LabelMap alone = read_labels(path("alone.nii.gz"));
    for (const char* name : {"segs/a_synthseg.nii.gz", "segs/c_synthseg.nii.gz"})
        EXPECT_EQ(read_labels(path(name)).data, alone.data) << name;
}

// What made a file is in its header: the program, its build, the command and its particulars;
// and info shows the weights' checksum, equal for equal weights whatever their files' run_id.
TEST_F(Hardening, OutputsSayWhatMadeThem) {
    ASSERT_EQ(run("phantom --age-months 1 --seed 4 --out " + q("p.nii.gz")).status, 0);
    const std::string phantom = read_volume_header(path("p.nii.gz")).descrip;
    EXPECT_EQ(phantom.rfind("infant-synthseg ", 0), 0u) << phantom;
    EXPECT_NE(phantom.find(" phantom, age 1 month, seed 4"), std::string::npos) << phantom;
    ASSERT_EQ(run("predict --i " + q("scan.nii.gz") + " --o " + q("seg.nii.gz") + " --model " + q("model")).status, 0);
    const std::string seg = read_volume_header(path("seg.nii.gz")).descrip;
    EXPECT_NE(seg.find(" predict, model weights "), std::string::npos) << seg;
    EXPECT_EQ(seg.substr(seg.size() - 6), " model") << seg;
    const test::RunResult info = run("info " + q("model"));
    EXPECT_NE(info.out.find("weights' data_crc32: "), std::string::npos) << info.out;
}

// A folder's file names are anyone's: one holding a newline or a terminal's escape is shown
// escaped on standard output, as in messages (it split the report line, or steered the terminal).
TEST_F(Hardening, NamesFromAFolderAreShownEscaped) {
    fs::create_directories(path("odd"));
    fs::copy_file(path("scan.nii.gz"), path("odd") + "/new\nline\x1b[31m.nii.gz");
    const test::RunResult info = run("info " + q("odd"));
    EXPECT_EQ(info.status, 0) << info.err;
    EXPECT_NE(info.out.find("new\\x0aline\\x1b[31m.nii.gz\n"), std::string::npos) << info.out;
    const test::RunResult predict = run("predict --i " + q("odd") + " --o " + q("segs") + " --model " + q("model"));
    EXPECT_EQ(predict.status, 0) << predict.err;
    EXPECT_NE(predict.out.find("new\\x0aline\\x1b[31m.nii.gz -> "), std::string::npos) << predict.out;
    EXPECT_EQ(predict.out.find('\x1b'), std::string::npos);
}

}  // namespace
}  // namespace iss
