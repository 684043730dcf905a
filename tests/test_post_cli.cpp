// The merge, clean and dice commands, run as a program on small hand-made files: what they
// write (values, frame counts, CSV fields and the warning for one-sided structures), and bad
// input: mismatched grids, wrong frame counts, a 4-D file where a 3-D one is expected, missing
// or unpaired files each exit 2 with one line naming the file, leaving nothing in the output
// directory.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "io/csv.h"
#include "io/nifti.h"
#include "io/npy.h"
#include "io/orientation.h"
#include "post/prediction.h"
#include "synth/labels.h"
#include "test_util.h"
#include "tests/small_model.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

using test::RunResult;
using test::shell_quote;

Grid small_grid(int64_t nz = 2) {
    Grid g;
    g.dim = {4, 3, nz};
    g.affine = Mat4::scaling(1.2, 1.2, 1.5);
    return g;
}

int file_count(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return 0;
    return int(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}));
}

class PostCli : public test::TempDirTest {
protected:
    void SetUp() override {
        TempDirTest::SetUp();
        fs::create_directories(dir_ / "out");
    }
    std::string q(const std::string& name) const { return shell_quote(path(name)); }
    std::string out(const std::string& name) const { return shell_quote((dir_ / "out" / name).string()); }
    static RunResult run(const std::string& command, const std::string& args) {
        return test::run_command(test::cli_path() + " " + command + " " + args);
    }
    // Exit 2, one line on stderr containing `fragment`, nothing in out/.
    void expect_bad(const std::string& command, const std::string& args, const std::string& fragment) {
        SCOPED_TRACE(command + " " + args);
        const RunResult r = run(command, args);
        EXPECT_EQ(r.status, 2) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_NE(r.err.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << r.err;
        EXPECT_EQ(file_count(dir_ / "out"), 0);
    }
};

// ---------------------------------------------------------------------------------------
// merge

class MergeCli : public PostCli {
protected:
    // Three frames (labels 0, 2, 3). T1 is confident (0.9) in its label on the first half of
    // the voxels and unsure (0.5) elsewhere; T2 is 0.7 everywhere, and 0.9 on voxel 1 (a tie).
    void SetUp() override {
        PostCli::SetUp();
        const Grid g = small_grid();
        const int64_t n = g.voxels();
        LabelMap s1(g, 1, 2), s2(g, 1, 3);
        Image p1(g, 3, 0.05f), p2(g, 3, 0.1f);
        for (int64_t v = 0; v < n; ++v) {
            p1.data[size_t(n + v)] = v < n / 2 ? 0.9f : 0.5f;
            p2.data[size_t(2 * n + v)] = v == 1 ? 0.9f : 0.7f;
        }
        write_labels(path("t1_seg.nii.gz"), s1);
        write_posteriors(path("t1_post.nii.gz"), p1);
        write_labels(path("t2_seg.nii.gz"), s2);
        write_posteriors(path("t2_post.nii.gz"), p2);
    }
    std::string inputs() const {
        return "--t1-seg " + q("t1_seg.nii.gz") + " --t1-post " + q("t1_post.nii.gz") + " --t2-seg " +
               q("t2_seg.nii.gz") + " --t2-post " + q("t2_post.nii.gz");
    }
    std::string outputs() const { return " --o-seg " + out("seg.nii.gz") + " --o-post " + out("post.nii.gz"); }
};

TEST_F(MergeCli, WritesMergedSegmentationAndPosteriors) {
    const RunResult r = run("merge", inputs() + outputs() + " --labels 0,2,3");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("merged"), std::string::npos) << r.out;
    VolumeHeader h;
    const LabelMap seg = read_labels((dir_ / "out" / "seg.nii.gz").string(), &h);
    const Image post = read_image((dir_ / "out" / "post.nii.gz").string());
    const int64_t n = seg.grid.voxels();
    EXPECT_TRUE(seg.grid.same_as(small_grid()));
    ASSERT_EQ(post.frames, 3);
    for (int64_t v = 0; v < n; ++v) {
        EXPECT_EQ(seg.data[size_t(v)], v < n / 2 && v != 1 ? 2 : 3) << "voxel " << v << " (voxel 1 ties: T2)";
        EXPECT_EQ(post.data[size_t(v)], 0.1f);
        EXPECT_EQ(post.data[size_t(n + v)], v < n / 2 ? 0.9f : 0.5f);
        EXPECT_EQ(post.data[size_t(2 * n + v)], v == 1 ? 0.9f : 0.7f);
    }
}

// A model's folder or its model.json names the frames' labels as the model wrote them.
TEST_F(MergeCli, LabelsFromAModelsFolder) {
    test::write_small_model(path("model"), 11, 1, {0, 2, 3});
    std::ofstream(dir_ / "other.json") << R"({"labels": [0, 2, 3]})";
    expect_bad("merge", inputs() + outputs() + " --labels " + q("other.json"),
               "other.json: not an Infant-SynthSeg model description");
    const RunResult listed = run("merge", inputs() + outputs() + " --labels 0,2,3");
    ASSERT_EQ(listed.status, 0) << listed.err;
    const std::string expected = test::read_text((dir_ / "out" / "post.nii.gz").string());
    for (const std::string& labels : {path("model"), path("model/model.json")}) {
        fs::remove(dir_ / "out" / "post.nii.gz");
        const RunResult r = run("merge", inputs() + outputs() + " --labels " + shell_quote(labels));
        ASSERT_EQ(r.status, 0) << labels << ": " << r.err;
        EXPECT_TRUE(test::read_text((dir_ / "out" / "post.nii.gz").string()) == expected) << labels;
    }
}

// The T2 prediction of the T1's grid stored in other voxel orders (its segmentation LIA, its
// posteriors PSR) is reordered: the same merge, on the T1's grid. (It was refused as another grid.)
TEST_F(MergeCli, FilesOfTheGridInAnotherVoxelOrderAreReordered) {
    ASSERT_EQ(run("merge", inputs() + outputs() + " --labels 0,2,3").status, 0);
    const LabelMap want_seg = read_labels((dir_ / "out" / "seg.nii.gz").string());
    const Image want_post = read_image((dir_ / "out" / "post.nii.gz").string());
    write_labels(path("t2_seg.nii.gz"), reorient(read_labels(path("t2_seg.nii.gz")), "LIA"));
    write_posteriors(path("t2_post.nii.gz"), reorient(read_image(path("t2_post.nii.gz")), "PSR"));
    fs::remove_all(dir_ / "out");
    fs::create_directories(dir_ / "out");
    const RunResult r = run("merge", inputs() + outputs() + " --labels 0,2,3");
    ASSERT_EQ(r.status, 0) << r.err;
    const LabelMap seg = read_labels((dir_ / "out" / "seg.nii.gz").string());
    EXPECT_TRUE(seg.grid.same_as(small_grid()));
    EXPECT_EQ(seg.data, want_seg.data);
    EXPECT_EQ(read_image((dir_ / "out" / "post.nii.gz").string()).data, want_post.data);
}

// T2 posteriors in another label order (a model trained with another list) are read in T1's
// order: the same merge as with T2's frames in T1's order, whether the order is given
// (--t1-labels/--t2-labels) or recorded in the file. The merged posteriors record T1's order.
TEST_F(MergeCli, T2PosteriorsInAnotherOrderAreReadInT1sOrder) {
    ASSERT_EQ(run("merge", inputs() + outputs() + " --labels 0,2,3").status, 0);
    const Image want_post = read_image((dir_ / "out" / "post.nii.gz").string());
    const LabelMap want_seg = read_labels((dir_ / "out" / "seg.nii.gz").string());
    // T2's frames as labels 3, 0, 2.
    const Image t2 = read_image(path("t2_post.nii.gz"));
    const int64_t n = t2.grid.voxels();
    Image shuffled = t2;
    for (const auto& [to, from] : {std::pair{0, 2}, std::pair{1, 0}, std::pair{2, 1}})
        std::copy_n(t2.data.begin() + from * n, n, shuffled.data.begin() + to * n);
    write_posteriors(path("t2_shuffled.nii.gz"), shuffled);
    write_posteriors(path("t2_recorded.nii.gz"), shuffled, nullptr, {3, 0, 2});
    write_posteriors(path("t1_recorded.nii.gz"), read_image(path("t1_post.nii.gz")), nullptr, {0, 2, 3});
    auto with = [&](const std::string& t1_post, const std::string& t2_post) {
        std::string args = inputs();
        args.replace(args.find(q("t1_post.nii.gz")), q("t1_post.nii.gz").size(), q(t1_post));
        args.replace(args.find(q("t2_post.nii.gz")), q("t2_post.nii.gz").size(), q(t2_post));
        return args + outputs();
    };
    for (const std::string& args :
         {with("t1_post.nii.gz", "t2_shuffled.nii.gz") + " --t2-labels 3,0,2 --labels 0,2,3",
          with("t1_post.nii.gz", "t2_shuffled.nii.gz") + " --t1-labels 0,2,3 --t2-labels 3,0,2",
          with("t1_recorded.nii.gz", "t2_recorded.nii.gz")}) {
        SCOPED_TRACE(args);
        fs::remove_all(dir_ / "out");
        fs::create_directories(dir_ / "out");
        const RunResult r = run("merge", args);
        ASSERT_EQ(r.status, 0) << r.err;
        VolumeHeader h;
        EXPECT_EQ(read_image((dir_ / "out" / "post.nii.gz").string(), &h).data, want_post.data);
        EXPECT_EQ(h.frame_labels, (std::vector<int32_t>{0, 2, 3}));
        EXPECT_EQ(read_labels((dir_ / "out" / "seg.nii.gz").string()).data, want_seg.data);
    }

    fs::remove_all(dir_ / "out");
    fs::create_directories(dir_ / "out");
    expect_bad("merge", with("t1_post.nii.gz", "t2_shuffled.nii.gz") + " --labels 0,2,3 --t2-labels 0,3,4",
               "t2_shuffled.nii.gz has a frame for label 4 (--t2-labels) and " + path("t1_post.nii.gz") +
                   " has none (--labels): the two posteriors must hold the same labels");
    expect_bad("merge",
               with("t1_post.nii.gz", "t2_shuffled.nii.gz") + " --labels 0,2,x --t1-labels 0,2,3 --t2-labels 3,0,2",
               "error: --labels is for a side without its own --t1-labels or --t2-labels; both are given");
    expect_bad("merge", with("t1_recorded.nii.gz", "t2_recorded.nii.gz") + " --t2-labels 0,2,3",
               "t2_recorded.nii.gz: its frames are labels 3,0,2 (recorded when it was written) but --t2-labels says "
               "0,2,3");
    // T2's frames read in another order than they are: refused, where they were read as other
    // structures (SynthSeg's ascending files under --labels synthseg, FreeSurfer's order).
    expect_bad("merge", with("t1_post.nii.gz", "t2_shuffled.nii.gz") + " --labels 0,2,3",
               "t2_shuffled.nii.gz: its frames, read as --labels (0, 2, 3) in that order, agree with " +
                   path("t2_seg.nii.gz") + " at only 0% of its labelled voxels: the frames are in another order");
    // The advice names the side's option (it said --labels, which would change both sides).
    expect_bad("merge", with("t1_post.nii.gz", "t2_shuffled.nii.gz") + " --labels 0,2,3",
               "ascending label order: give --t2-labels as that list) or belong to another segmentation");
    expect_bad("merge", with("t1_post.nii.gz", "t2_shuffled.nii.gz") + " --labels 0,2,3,4",
               "t1_post.nii.gz: 3 posterior frames but --labels has 4 labels (one frame per label expected): give "
               "--t1-labels the labels of the model that wrote it");
    // A recorded file needs no option, and one given for the other side only is that side's.
    ASSERT_EQ(run("merge", with("t1_post.nii.gz", "t2_recorded.nii.gz") + " --t1-labels 0,2,3").status, 0);
}

// The T1's files given for the T2 too (a copied command line): the merge is the T1's, exit 0,
// and a warning says so.
TEST_F(MergeCli, TheSamePredictionTwiceIsWarnedOf) {
    std::string args = inputs();
    args.replace(args.find(q("t2_seg.nii.gz")), q("t2_seg.nii.gz").size(), q("t1_seg.nii.gz"));
    args.replace(args.find(q("t2_post.nii.gz")), q("t2_post.nii.gz").size(), q("t1_post.nii.gz"));
    const RunResult twice = run("merge", args + outputs() + " --labels 0,2,3");
    ASSERT_EQ(twice.status, 0) << twice.err;
    EXPECT_NE(twice.err.find("warning: merge: " + path("t1_seg.nii.gz") + " and " + path("t1_post.nii.gz") +
                             " hold the same prediction as "),
              std::string::npos)
        << twice.err;
    const RunResult two = run(
        "merge", inputs() + " --o-seg " + out("seg2.nii.gz") + " --o-post " + out("post2.nii.gz") + " --labels 0,2,3");
    ASSERT_EQ(two.status, 0) << two.err;
    EXPECT_EQ(two.err.find("warning"), std::string::npos) << two.err;
}

TEST_F(MergeCli, BadInputExitsTwoAndWritesNothing) {
    // Another command's output option: the ones it starts are named.
    expect_bad("merge", inputs() + " --o " + out("seg.nii.gz"),
               "unknown option --o (did you mean --o-post or --o-seg?)");
    expect_bad("merge", inputs() + outputs(), "t1_post.nii.gz: 3 posterior frames but the infant segmentation list");
    expect_bad("merge", inputs() + outputs() + " --labels 0,2", "t1_post.nii.gz: 3 posterior frames but --labels");

    // T2 on another grid: dims, then only the affine.
    write_labels(path("t2_dims.nii.gz"), LabelMap(small_grid(3)));
    std::string args = inputs() + outputs() + " --labels 0,2,3";
    std::string bad = args;
    bad.replace(bad.find(q("t2_seg.nii.gz")), q("t2_seg.nii.gz").size(), q("t2_dims.nii.gz"));
    expect_bad("merge", bad, "t2_dims.nii.gz: not on the voxel grid of " + path("t1_seg.nii.gz") + ": dims 4x3x3");
    expect_bad("merge", bad,
               "; merge compares the two predictions voxel by voxel: predict the T2 scan again with --like and "
               "the T1 scan");
    Grid shifted = small_grid();
    shifted.affine.m[1][3] = 0.01;
    Image moved(shifted, 3, 0.2f);
    write_posteriors(path("t2_moved.nii.gz"), moved);
    bad = args;
    bad.replace(bad.find(q("t2_post.nii.gz")), q("t2_post.nii.gz").size(), q("t2_moved.nii.gz"));
    expect_bad("merge", bad,
               "t2_moved.nii.gz: not on the voxel grid of " + path("t1_seg.nii.gz") + ": shifted by 0.01 mm");

    // A posteriors file given as the segmentation; a missing file; a bad output name.
    bad = args;
    bad.replace(bad.find(q("t1_seg.nii.gz")), q("t1_seg.nii.gz").size(), q("t2_post.nii.gz"));
    expect_bad("merge", bad, "t2_post.nii.gz: a 4-D volume with 3 frames where a 3-D segmentation is expected");
    bad = args;
    bad.replace(bad.find(q("t2_seg.nii.gz")), q("t2_seg.nii.gz").size(), q("missing.nii.gz"));
    expect_bad("merge", bad, path("missing.nii.gz"));
    expect_bad("merge", inputs() + " --o-seg " + out("seg.nii.gz") + " --o-post " + out("post.img") + " --labels 0,2,3",
               "--o-post");
    expect_bad("merge", inputs() + " --o-seg " + out("seg.nii.gz"), "--o-post is required");
    expect_bad("merge", inputs() + " --o-seg " + out("s.nii") + " --o-post " + out("s.nii") + " --labels 0,2,3",
               "is the same file as the output --o-seg");
    expect_bad("merge", inputs() + outputs() + " --labels 0,2,x", "--labels: expected comma-separated integer labels");
}

TEST_F(MergeCli, HelpNamesEveryOption) {
    const RunResult r = run("merge", "--help");
    EXPECT_EQ(r.status, 0);
    for (const char* word : {"--t1-seg", "--t1-post", "--t2-seg", "--t2-post", "--o-seg", "--o-post", "--labels",
                             "ties go to T2", "element-wise maximum"})
        EXPECT_NE(r.out.find(word), std::string::npos) << word;
}

// ---------------------------------------------------------------------------------------
// clean

class CleanCli : public PostCli {};

TEST_F(CleanCli, FoldsRelabelsIslandsAndWritesFoldedPosteriors) {
    // 6x6x1 on the default 34-label list: label 2 with a 21 patch, a row of 41 with a 61 voxel,
    // and a lone 4 inside the 2s (the largest 4 is the block at i >= 4, j >= 4).
    Grid g;
    g.dim = {6, 6, 1};
    LabelMap seg(g, 1, 2);
    for (int i = 0; i < 6; ++i) seg.at(i, 0, 0) = 41;
    seg.at(3, 0, 0) = 61;
    seg.at(1, 2, 0) = 21;
    seg.at(2, 3, 0) = 4;
    for (int j = 4; j < 6; ++j)
        for (int i = 4; i < 6; ++i) seg.at(i, j, 0) = 4;
    seg.at(0, 5, 0) = 7;  // a lone 7, folded only with --merge-cerebellum
    const std::vector<int32_t>& list = labels::segmentation_labels();
    const int64_t n = g.voxels();
    Image post(g, int64_t(list.size()), 0.01f);
    auto frame = [&](int32_t label) { return size_t(labels::index_of(list, label)) * size_t(n); };
    for (int64_t v = 0; v < n; ++v) post.data[frame(seg.data[size_t(v)]) + size_t(v)] = 0.8f;
    write_labels(path("seg.nii.gz"), seg);
    write_posteriors(path("post.nii.gz"), post);

    const RunResult r = run("clean", "--seg " + q("seg.nii.gz") + " --post " + q("post.nii.gz") + " --o " +
                                         out("clean.nii.gz") + " --o-post " + out("clean_post.nii.gz"));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("folded 2 voxels; 1 island of 1 voxel relabelled from their neighbours (1 changed label, "),
              std::string::npos)
        << r.out;
    LabelMap want = seg;
    want.at(3, 0, 0) = 41;
    want.at(1, 2, 0) = 2;
    want.at(2, 3, 0) = 2;
    EXPECT_EQ(read_labels((dir_ / "out" / "clean.nii.gz").string()).data, want.data);
    const Image folded = read_image((dir_ / "out" / "clean_post.nii.gz").string());
    ASSERT_EQ(folded.frames, 34);
    const size_t v21 = size_t(seg.index(1, 2, 0));
    EXPECT_FLOAT_EQ(folded.data[frame(2) + v21], 0.81f);
    EXPECT_EQ(folded.data[frame(21) + v21], 0.0f);

    // As the published island_processing.py relabels: the same here (the lone 4 has 2s alone
    // around it), and the file says how it was made.
    const RunResult published = run("clean", "--seg " + q("seg.nii.gz") + " --post " + q("post.nii.gz") + " --o " +
                                                 q("published.nii.gz") + " --published-islands");
    ASSERT_EQ(published.status, 0) << published.err;
    EXPECT_EQ(read_labels(path("published.nii.gz")).data, want.data);
    EXPECT_NE(read_volume_header(path("published.nii.gz")).descrip.find("clean, published islands < 15"),
              std::string::npos)
        << read_volume_header(path("published.nii.gz")).descrip;

    // The cleaned segmentation's volumes: voxel counts of the labels that stay after folding (a
    // merge's posteriors are maxima, whose sums overstate), as predict --vol lays them out.
    const RunResult v = run("clean", "--seg " + q("seg.nii.gz") + " --post " + q("post.nii.gz") + " --o " +
                                         out("clean2.nii.gz") + " --vol " + out("volumes.csv"));
    ASSERT_EQ(v.status, 0) << v.err;
    const CsvTable volumes = read_csv((dir_ / "out" / "volumes.csv").string());
    ASSERT_EQ(volumes.rows.size(), 1u);
    EXPECT_EQ(volumes.columns.size(), 1u + 33u - 3u + 1u) << "the folded 21, 61 and 170 are not columns";
    auto volume_of = [&](const std::string& column) {
        const auto at = std::find(volumes.columns.begin(), volumes.columns.end(), column);
        return at == volumes.columns.end() ? std::string("none")
                                           : volumes.rows[0][size_t(at - volumes.columns.begin())];
    };
    EXPECT_EQ(volumes.rows[0][0], "seg");
    const int64_t twos = std::count(want.data.begin(), want.data.end(), 2);
    EXPECT_EQ(volume_of("2"), std::to_string(twos));
    EXPECT_EQ(volume_of("41"), "6");
    EXPECT_EQ(volume_of("4"), "4");
    EXPECT_EQ(volume_of("21"), "none");
    EXPECT_EQ(volume_of("total"), "36");
    // A segmentation predict wrote into a folder: its row named as predict --vol names it, so
    // that the two tables join by subject (it was "sub01_synthseg").
    fs::copy_file(dir_ / "seg.nii.gz", dir_ / "sub01_synthseg.nii.gz");
    ASSERT_EQ(run("clean", "--seg " + q("sub01_synthseg.nii.gz") + " --post " + q("post.nii.gz") + " --o " +
                               q("sub01_clean.nii.gz") + " --vol " + q("sub01.csv"))
                  .status,
              0);
    EXPECT_EQ(read_csv((dir_ / "sub01.csv").string()).rows.at(0).at(0), "sub01");
    // A loop over subjects with one table keeps the last subject's row alone: said. The same
    // subject's table again is no news.
    fs::copy_file(dir_ / "seg.nii.gz", dir_ / "sub02_synthseg.nii.gz");
    const RunResult looped = run("clean", "--seg " + q("sub02_synthseg.nii.gz") + " --post " + q("post.nii.gz") +
                                              " --o " + q("sub02_clean.nii.gz") + " --vol " + q("sub01.csv"));
    ASSERT_EQ(looped.status, 0) << looped.err;
    EXPECT_EQ(looped.err, "warning: clean: " + path("sub01.csv") +
                              " held the volumes of 1 other subject (sub01), now replaced: a table holds one "
                              "segmentation's volumes (give each subject a table of its own)\n");
    const RunResult same_subject = run("clean", "--seg " + q("sub02_synthseg.nii.gz") + " --post " + q("post.nii.gz") +
                                                    " --o " + q("sub02_clean.nii.gz") + " --vol " + q("sub01.csv"));
    EXPECT_EQ(same_subject.err, "");
    const RunResult image = run("clean", "--seg " + q("seg.nii.gz") + " --post " + q("post.nii.gz") + " --o " +
                                             out("c3.nii.gz") + " --vol " + out("volumes.nii.gz"));
    EXPECT_EQ(image.status, 2);
    EXPECT_NE(image.err.find("volumes.nii.gz: the volumes are CSV text, not an image"), std::string::npos) << image.err;
    EXPECT_FALSE(fs::exists(dir_ / "out" / "c3.nii.gz"));

    const RunResult c = run("clean", "--seg " + q("seg.nii.gz") + " --post " + q("post.nii.gz") + " --o " +
                                         out("cereb.nii") + " --merge-cerebellum --island-threshold 1");
    ASSERT_EQ(c.status, 0) << c.err;
    EXPECT_NE(c.out.find("folded 3 voxels; 0 islands"), std::string::npos) << c.out;
    const LabelMap cereb = read_labels((dir_ / "out" / "cereb.nii").string());
    EXPECT_EQ(cereb.at(0, 5, 0), 8);
    EXPECT_EQ(cereb.at(2, 3, 0), 4) << "threshold 1 keeps every component";
    EXPECT_EQ(file_count(dir_ / "out"), 5) << "no --o-post, no posteriors file (clean, its posteriors, clean2 and "
                                              "volumes.csv before it)";

    // A merge's maxima need not sum to 1: folded, 0.8 + 0.7 is written as 1, which clean reads
    // again (it wrote 1.5, which it then refused).
    post.data[frame(2) + v21] = 0.7f;
    write_posteriors(path("merged_post.nii.gz"), post);
    const RunResult m = run("clean", "--seg " + q("seg.nii.gz") + " --post " + q("merged_post.nii.gz") + " --o " +
                                         out("m.nii.gz") + " --o-post " + out("m_post.nii.gz"));
    ASSERT_EQ(m.status, 0) << m.err;
    EXPECT_EQ(read_image((dir_ / "out" / "m_post.nii.gz").string()).data[frame(2) + v21], 1.0f);
    const RunResult again =
        run("clean", "--seg " + out("m.nii.gz") + " --post " + out("m_post.nii.gz") + " --o " + out("again.nii.gz"));
    EXPECT_EQ(again.status, 0) << again.err;
}

// Another protocol's 21 (a lab's right thalamus) was folded into its 2 without a word, and a list
// with 21 but no 2 could not be cleaned at all: said, and --no-fold cleans the islands alone.
TEST_F(CleanCli, AnotherProtocolsLabelsAreFoldedOnlyAsAsked) {
    Grid g;
    g.dim = {6, 6, 1};
    LabelMap seg(g, 1, 1);
    for (int i = 0; i < 6; ++i) seg.at(i, 5, 0) = 21;
    seg.at(2, 2, 0) = 2;  // an island of 2 inside 1, and the largest 2 at the corner
    seg.at(0, 0, 0) = 2, seg.at(1, 0, 0) = 2;
    const std::vector<int32_t> list{0, 1, 2, 21};
    Image post(g, 4, 0.01f);
    const int64_t n = g.voxels();
    for (int64_t v = 0; v < n; ++v)
        post.data[size_t(labels::index_of(list, seg.data[size_t(v)])) * size_t(n) + size_t(v)] = 0.8f;
    write_labels(path("lab_seg.nii.gz"), seg);
    write_posteriors(path("lab_post.nii.gz"), post, nullptr, list);
    const std::string inputs = "--seg " + q("lab_seg.nii.gz") + " --post " + q("lab_post.nii.gz");

    const RunResult folded = run("clean", inputs + " --o " + q("folded.nii.gz"));
    ASSERT_EQ(folded.status, 0) << folded.err;
    EXPECT_NE(folded.err.find("warning: clean: folds 21 -> 2 as the infant protocol numbers its labels, but "),
              std::string::npos)
        << folded.err;
    const RunResult kept = run("clean", inputs + " --o " + q("kept.nii.gz") + " --no-fold");
    ASSERT_EQ(kept.status, 0) << kept.err;
    EXPECT_EQ(kept.err, "");
    LabelMap want = seg;
    want.at(2, 2, 0) = 1;  // the island alone changed
    EXPECT_EQ(read_labels(path("kept.nii.gz")).data, want.data);
    // 21 without 2: refused with the way out; --no-fold cleans it.
    Image two(g, 3, 0.0f);
    for (int64_t v = 0; v < n; ++v) two.data[size_t(seg.data[size_t(v)] == 21 ? 2 : 0) * size_t(n) + size_t(v)] = 1;
    LabelMap no_two(g, 1, 0);
    for (int64_t v = 0; v < n; ++v) no_two.data[size_t(v)] = seg.data[size_t(v)] == 21 ? 21 : 0;
    write_labels(path("no2_seg.nii.gz"), no_two);
    write_posteriors(path("no2_post.nii.gz"), two, nullptr, {0, 5, 21});
    const std::string no2 = "--seg " + q("no2_seg.nii.gz") + " --post " + q("no2_post.nii.gz");
    expect_bad("clean", no2 + " --o " + out("x.nii.gz"),
               "has label 21 but not 2, which clean folds it into (--no-fold for a protocol whose 21 is a structure");
    expect_bad("clean", no2 + " --o " + out("y.nii.gz") + " --no-fold --merge-cerebellum",
               "--merge-cerebellum folds, and --no-fold folds nothing");
    EXPECT_EQ(run("clean", no2 + " --o " + q("x.nii.gz") + " --no-fold").status, 0);

    // `map` with one-hot posteriors over `frames`, cleaned with --merge-cerebellum.
    auto clean_merging_cerebellum = [&](const std::string& name, const LabelMap& map,
                                        const std::vector<int32_t>& frames) {
        Image one_hot(g, int64_t(frames.size()), 0.0f);
        for (int64_t v = 0; v < n; ++v)
            one_hot.data[size_t(labels::index_of(frames, map.data[size_t(v)])) * size_t(n) + size_t(v)] = 1;
        write_labels(path(name + "_seg.nii.gz"), map);
        write_posteriors(path(name + "_post.nii.gz"), one_hot, nullptr, frames);
        return run("clean", "--seg " + q(name + "_seg.nii.gz") + " --post " + q(name + "_post.nii.gz") + " --o " +
                                q(name + "_clean.nii.gz") + " --merge-cerebellum");
    };
    // A 9-tissue protocol's 7 (deep grey matter) into its 8 (brainstem) under --merge-cerebellum:
    // said too (it was folded without a word, its column gone from --vol).
    LabelMap tissue(g, 1, 1);
    for (int i = 0; i < 6; ++i) tissue.at(i, 5, 0) = 7;
    tissue.at(0, 0, 0) = 8;
    const RunResult merged = clean_merging_cerebellum("tissue", tissue, {0, 1, 7, 8});
    ASSERT_EQ(merged.status, 0) << merged.err;
    EXPECT_EQ(merged.err.rfind("warning: clean: --merge-cerebellum folds 7 -> 8 as FreeSurfer numbers the cerebellum, "
                               "but the list (",
                               0),
              0u)
        << merged.err;
    EXPECT_NE(merged.err.find(") has neither 46 nor 47, the other side's: for a protocol whose 7 and 8 are other "
                              "structures leave out --merge-cerebellum\n"),
              std::string::npos)
        << merged.err;
    EXPECT_EQ(std::count(merged.err.begin(), merged.err.end(), '\n'), 1) << merged.err;
    // A FreeSurfer list with labels the infant protocol lacks (aseg's corpus callosum) is not another
    // protocol's cerebellum.
    LabelMap aseg = tissue;
    for (int32_t& v : aseg.data) v = v == 1 ? 251 : v;
    const RunResult fs = clean_merging_cerebellum("aseg", aseg, {0, 7, 8, 46, 47, 251});
    ASSERT_EQ(fs.status, 0) << fs.err;
    EXPECT_EQ(fs.err, "");
    // A protocol of its own holding 21 (and 7 and 46): every fold made is named, the cerebellum's
    // too, and the way out is one clean accepts.
    const RunResult mixed = clean_merging_cerebellum("own", seg, {0, 1, 2, 7, 8, 21, 46, 47});
    ASSERT_EQ(mixed.status, 0) << mixed.err;
    EXPECT_NE(mixed.err.find("warning: clean: folds 21 -> 2 as the infant protocol numbers its labels (and 7 -> 8, "
                             "46 -> 47 as FreeSurfer numbers the cerebellum), but the list ("),
              std::string::npos)
        << mixed.err;
    EXPECT_NE(mixed.err.find("give --no-fold without --merge-cerebellum\n"), std::string::npos) << mixed.err;
    EXPECT_EQ(std::count(mixed.err.begin(), mixed.err.end(), '\n'), 1) << mixed.err;
    // Infant labels alone, 7 and 8 without 46 and 47: the cerebellum's warning, not lost to the
    // infant folds made.
    LabelMap left_only = seg;
    for (int32_t& v : left_only.data) v = v == 1 ? 8 : v;
    const RunResult left = clean_merging_cerebellum("left", left_only, {0, 2, 7, 8, 21});
    ASSERT_EQ(left.status, 0) << left.err;
    EXPECT_NE(left.err.find("has neither 46 nor 47"), std::string::npos) << left.err;

    // A segmentation all background: its --vol row is left empty, said (its zeros read as a brain
    // of none in a cohort's table).
    LabelMap none(g, 1, 0);
    Image none_post(g, 4, 0.0f);
    std::fill(none_post.data.begin(), none_post.data.begin() + n, 1.0f);
    write_labels(path("none_seg.nii.gz"), none);
    write_posteriors(path("none_post.nii.gz"), none_post, nullptr, list);
    const RunResult empty = run("clean", "--seg " + q("none_seg.nii.gz") + " --post " + q("none_post.nii.gz") +
                                             " --o " + q("none_clean.nii.gz") + " --vol " + q("none.csv"));
    ASSERT_EQ(empty.status, 0) << empty.err;
    EXPECT_NE(empty.err.find("the segmentation is all background: its --vol row is left empty"), std::string::npos)
        << empty.err;
    const CsvTable none_table = read_csv(path("none.csv"));
    ASSERT_EQ(none_table.rows.size(), 1u);
    EXPECT_EQ(none_table.rows[0].back(), "");
}

// predict records its model's labels with the posteriors, in the model's channel order, and
// merge and clean take them from there: two models with their own label orders need no --labels.
TEST_F(CleanCli, PredictMergeAndCleanCarryTheLabelsOfEveryFrame) {
    const std::vector<int32_t> t1_labels{0, 2, 3, 41, 42}, t2_labels{0, 41, 3, 42, 2};
    test::write_small_model(path("t1_model"), 11, 1, t1_labels);
    test::write_small_model(path("t2_model"), 12, 1, t2_labels);
    Grid g;
    g.dim = {10, 12, 9};
    g.affine = Mat4::scaling(1.2, 1.0, 1.4);
    Image scan(g, 1);
    for (size_t i = 0; i < scan.data.size(); ++i) scan.data[i] = float((i * 37) % 101);
    write_image(path("scan.nii.gz"), scan);
    for (const char* side : {"t1", "t2"}) {
        const RunResult r =
            run("predict", cat("--i ", q("scan.nii.gz"), " --model ", q(cat(side, "_model")), " --o ",
                               q(cat(side, "_seg.nii.gz")), " --post ", q(cat(side, "_post.nii.gz")), " --device cpu"));
        ASSERT_EQ(r.status, 0) << r.err;
    }
    EXPECT_EQ(read_volume_header(path("t2_post.nii.gz")).frame_labels, t2_labels);
    // An MGH file has no place for them: predict says which list to give instead.
    const RunResult mgh = run("predict", "--i " + q("scan.nii.gz") + " --model " + q("t2_model") + " --o " +
                                             q("mgh_seg.mgz") + " --post " + q("mgh_post.mgz") + " --device cpu");
    ASSERT_EQ(mgh.status, 0) << mgh.err;
    EXPECT_NE(mgh.err.find("warning: " + path("mgh_post.mgz") +
                           ": an MGH file cannot record the posteriors' labels, and this model's are not the infant "
                           "list: give merge and clean --labels 0,41,3,42,2"),
              std::string::npos)
        << mgh.err;
    const RunResult merged = run("merge", "--t1-seg " + q("t1_seg.nii.gz") + " --t1-post " + q("t1_post.nii.gz") +
                                              " --t2-seg " + q("t2_seg.nii.gz") + " --t2-post " + q("t2_post.nii.gz") +
                                              " --o-seg " + q("m_seg.nii.gz") + " --o-post " + q("m_post.nii.gz"));
    ASSERT_EQ(merged.status, 0) << merged.err;
    // Label by label, the merged posterior is the larger of the two models'.
    VolumeHeader h1, h2, hm;
    const Image p1 = read_image(path("t1_post.nii.gz"), &h1), p2 = read_image(path("t2_post.nii.gz"), &h2);
    const Image pm = read_image(path("m_post.nii.gz"), &hm);
    EXPECT_EQ(hm.frame_labels, t1_labels);
    const int64_t n = g.voxels();
    for (size_t k = 0; k < t1_labels.size(); ++k) {
        const int64_t k2 = labels::index_of(t2_labels, t1_labels[k]);
        for (int64_t v = 0; v < n; ++v)
            ASSERT_EQ(pm.data[size_t(int64_t(k) * n + v)],
                      std::max(p1.data[size_t(int64_t(k) * n + v)], p2.data[size_t(k2 * n + v)]))
                << "label " << t1_labels[k] << " voxel " << v;
    }
    const RunResult cleaned = run("clean", "--seg " + q("m_seg.nii.gz") + " --post " + q("m_post.nii.gz") + " --o " +
                                               q("clean.nii.gz") + " --o-post " + q("clean_post.nii.gz"));
    ASSERT_EQ(cleaned.status, 0) << cleaned.err;
    EXPECT_EQ(read_volume_header(path("clean_post.nii.gz")).frame_labels, t1_labels);
    // The recorded labels stand against a --labels that would read the frames as others.
    expect_bad("clean",
               "--seg " + q("m_seg.nii.gz") + " --post " + q("m_post.nii.gz") + " --o " + out("c.nii.gz") +
                   " --labels 0,41,3,42,2",
               "m_post.nii.gz: its frames are labels 0,2,3,41,42 (recorded when it was written) but --labels says "
               "0,41,3,42,2");
}

// A record that no longer fits its file is refused where the frames' labels are needed (the
// posteriors), and does not stop the file being read as a segmentation (one saved from a
// posteriors file's header keeps its record).
TEST_F(CleanCli, ABrokenRecordIsRefusedInPosteriorsOnly) {
    const Grid g = small_grid();
    auto rewrite = [&](const std::string& name, const std::string& from, const std::string& to) {
        std::string bytes = test::read_text(path(name));
        const size_t at = bytes.find(from);
        ASSERT_NE(at, std::string::npos) << name;
        bytes.replace(at, from.size(), to);
        std::ofstream(path(name), std::ios::binary) << bytes;
    };
    write_posteriors(path("post.nii"), Image(g, 3, 0.3f), nullptr, {0, 2, 3});
    write_posteriors(path("seg.nii"), Image(g, 1, 2.0f), nullptr, {0});
    rewrite("seg.nii", "[0]}", "[0,}");  // broken JSON
    const std::string args = "--seg " + q("seg.nii") + " --post " + q("post.nii") + " --o " + out("c.nii.gz");
    const RunResult r = run("clean", args);
    ASSERT_EQ(r.status, 0) << r.err;
    fs::remove(dir_ / "out" / "c.nii.gz");
    rewrite("post.nii", "[0,2,3]", "[0,2,2]");
    expect_bad("clean", args, path("post.nii") + ": its extension recording the frames' labels lists label 2 twice");
}

TEST_F(CleanCli, BadInputExitsTwoAndWritesNothing) {
    const Grid g = small_grid();
    write_labels(path("seg.nii.gz"), LabelMap(g, 1, 2));
    write_posteriors(path("post3.nii.gz"), Image(g, 3, 0.3f));
    write_posteriors(path("post_other.nii.gz"), Image(small_grid(3), 3, 0.3f));
    LabelMap odd(g, 1, 2);
    odd.data[0] = 9;
    write_labels(path("odd.nii.gz"), odd);
    const std::string o = " --o " + out("c.nii.gz") + " --o-post " + out("p.nii.gz");
    // Frames whose largest is another label than the segmentation's everywhere: another order.
    Image reordered(g, 3, 0.1f);
    for (int64_t v = 0; v < g.voxels(); ++v) reordered.data[size_t(2 * g.voxels() + v)] = 0.8f;
    write_posteriors(path("post_reordered.nii.gz"), reordered);
    expect_bad("clean", "--seg " + q("seg.nii.gz") + " --post " + q("post_reordered.nii.gz") + o + " --labels 0,2,3",
               "post_reordered.nii.gz: its frames, read as --labels (0, 2, 3) in that order, agree with " +
                   path("seg.nii.gz") + " at only 0% of its labelled voxels");
    // A .npy's labels are taken in FreeSurfer's order, not the file's (0,3,2): the list read is said.
    write_npy_labels(path("frames.npy"), {0, 3, 2});
    expect_bad(
        "clean",
        "--seg " + q("seg.nii.gz") + " --post " + q("post_reordered.nii.gz") + o + " --labels " + q("frames.npy"),
        "post_reordered.nii.gz: its frames, read as " + path("frames.npy") + " (0, 2, 3) in that order");
    expect_bad("clean", "--seg " + q("seg.nii.gz") + " --post " + q("post3.nii.gz") + " --out " + out("c.nii.gz"),
               "unknown option --out (did you mean --o?)");
    expect_bad("clean", "--seg " + q("seg.nii.gz") + " --post " + q("post3.nii.gz") + o,
               "post3.nii.gz: 3 posterior frames but the infant segmentation list has 34 labels");
    expect_bad("clean", "--seg " + q("seg.nii.gz") + " --post " + q("post_other.nii.gz") + o + " --labels 0,2,3",
               "post_other.nii.gz: not on the voxel grid of " + path("seg.nii.gz"));
    expect_bad("clean", "--seg " + q("post3.nii.gz") + " --post " + q("post3.nii.gz") + o + " --labels 0,2,3",
               "post3.nii.gz: a 4-D volume");
    expect_bad("clean", "--seg " + q("odd.nii.gz") + " --post " + q("post3.nii.gz") + o + " --labels 0,2,3",
               "odd.nii.gz: label 9 has no posterior frame in --labels");
    expect_bad("clean", "--seg " + q("nope.nii.gz") + " --post " + q("post3.nii.gz") + o + " --labels 0,2,3",
               "nope.nii.gz");
    expect_bad("clean", "--seg " + q("seg.nii.gz") + " --post " + q("post3.nii.gz") + o + " --labels 0,2,61",
               "--labels has label 61 but not 41");
    expect_bad(
        "clean",
        "--seg " + q("seg.nii.gz") + " --post " + q("post3.nii.gz") + o + " --labels 0,2,3 --island-threshold -1",
        "--island-threshold");
    expect_bad("clean", "--seg " + q("seg.nii.gz") + " --post " + q("post3.nii.gz") + " --o " + out("c.txt"), "--o");
}

TEST_F(CleanCli, HelpNamesEveryOption) {
    const RunResult r = run("clean", "--help");
    EXPECT_EQ(r.status, 0);
    for (const char* word : {"--seg", "--post", "--o FILE", "--o-post", "--island-threshold", "--merge-cerebellum",
                             "--labels", "21 -> 2", "61 -> 41", "170 -> 16", "7 -> 8", "46 -> 47", "default 15"})
        EXPECT_NE(r.out.find(word), std::string::npos) << word;
}

// ---------------------------------------------------------------------------------------
// dice

class DiceCli : public PostCli {
protected:
    void SetUp() override {
        PostCli::SetUp();
        fs::create_directories(dir_ / "pred");
        fs::create_directories(dir_ / "gt");
        // a: label 1 overlaps 3 of 4 (0.75), label 2 predicted only; b: identical maps.
        write_labels(path("pred/a.nii.gz"), row({1, 1, 1, 1, 2, 2, 0, 0}));
        write_labels(path("gt/a.nii.gz"), row({0, 1, 1, 1, 1, 0, 0, 0}));
        write_labels(path("pred/b.nii.gz"), row({1, 1, 0, 0, 2, 2, 0, 0}));
        write_labels(path("gt/b.nii.gz"), row({1, 1, 0, 0, 2, 2, 0, 0}));
    }
    static LabelMap row(const std::vector<int32_t>& values) {
        Grid g;
        g.dim = {int64_t(values.size()), 1, 1};
        LabelMap m(g);
        m.data = values;
        return m;
    }
};

TEST_F(DiceCli, DirectoriesPairedByNameWithMeanRow) {
    const std::string csv = (dir_ / "out" / "dice.csv").string();
    const RunResult r = run("dice", "--pred " + q("pred") + " --gt " + q("gt") + " --out " + shell_quote(csv));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(
        r.err.find("dice: a label is in one of the two files only, and scores 0 there: 2 (1 of 2 subjects; first a: "
                   "not in the ground truth)"),
        std::string::npos)
        << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one warning: " << r.err;
    const CsvTable t = read_csv(csv);
    EXPECT_EQ(t.columns, (std::vector<std::string>{"subject", "dice_1", "dice_2"}));
    ASSERT_EQ(t.rows.size(), 3u);
    EXPECT_EQ(t.rows[0], (std::vector<std::string>{"a", "0.75", "0"}));
    EXPECT_EQ(t.rows[1], (std::vector<std::string>{"b", "1", "1"}));
    EXPECT_EQ(t.rows[2], (std::vector<std::string>{"mean", "0.875", "0.5"}));

    // One pair of files, a listed structure absent from both (empty), background listed.
    const RunResult f = run("dice", "--pred " + q("pred/a.nii.gz") + " --gt " + q("gt/a.nii.gz") +
                                        " --labels 0,1,3 --out " + shell_quote(csv));
    ASSERT_EQ(f.status, 0) << f.err;
    EXPECT_EQ(f.err, "warning: dice: label 2 in the files is not in --labels: scored as background\n")
        << "2 is not listed: it counts as background, said";
    const CsvTable one = read_csv(csv);
    EXPECT_EQ(one.columns, (std::vector<std::string>{"subject", "dice_0", "dice_1", "dice_3"}));
    ASSERT_EQ(one.rows.size(), 2u);
    EXPECT_EQ(one.rows[0], (std::vector<std::string>{"a", "0.75", "0.75", ""}));
    EXPECT_EQ(one.rows[1], (std::vector<std::string>{"mean", "0.75", "0.75", ""}));

    // The prediction stored in another voxel order (the same places): the same scores.
    write_labels(path("a_lia.nii.gz"), reorient(read_labels(path("pred/a.nii.gz")), "LIA"));
    const RunResult l = run("dice", "--pred " + q("a_lia.nii.gz") + " --gt " + q("gt/a.nii.gz") +
                                        " --labels 0,1,3 --out " + shell_quote(csv));
    ASSERT_EQ(l.status, 0) << l.err;
    EXPECT_EQ(read_csv(csv).rows[0], (std::vector<std::string>{"a_lia", "0.75", "0.75", ""}));
    // A named list holds the background as a network's output: its structures are scored, not it.
    write_npy_labels(path("frames.npy"), {0, 3, 1});
    const RunResult named = run("dice", "--pred " + q("pred/a.nii.gz") + " --gt " + q("gt/a.nii.gz") + " --labels " +
                                            q("frames.npy") + " --out " + shell_quote(csv));
    ASSERT_EQ(named.status, 0) << named.err;
    EXPECT_EQ(read_csv(csv).columns, (std::vector<std::string>{"subject", "dice_3", "dice_1"}));

    // The folder predict writes (NAME_synthseg.nii.gz) beside ground truths named like the
    // scans, in either NIfTI ending: paired by subject, named as predict --vol names them.
    fs::create_directories(dir_ / "predicted");
    fs::copy_file(path("pred/a.nii.gz"), path("predicted/a_synthseg.nii.gz"));
    write_labels(path("predicted/b_synthseg.nii"), read_labels(path("pred/b.nii.gz")));
    write_posteriors(path("predicted/a_posteriors.nii.gz"), Image(row({0}).grid, 3, 0.5f));  // --post there too
    const RunResult p = run("dice", "--pred " + q("predicted") + " --gt " + q("gt") + " --out " + shell_quote(csv));
    ASSERT_EQ(p.status, 0) << p.err;
    const CsvTable by_subject = read_csv(csv);
    ASSERT_EQ(by_subject.rows.size(), 3u);
    EXPECT_EQ(by_subject.rows[0], t.rows[0]);
    EXPECT_EQ(by_subject.rows[1], t.rows[1]);
    // The scans there too (predict --o into the scans' folder): left out, with a note, where they
    // were taken for predictions of subjects a_synthseg and b_synthseg had none of.
    for (const char* scan : {"a.nii.gz", "b.nii.gz"})
        fs::copy_file(path(cat("gt/", scan)), path(cat("predicted/", scan)));
    const RunResult beside =
        run("dice", "--pred " + q("predicted") + " --gt " + q("gt") + " --out " + shell_quote(csv));
    ASSERT_EQ(beside.status, 0) << beside.err;
    EXPECT_NE(beside.err.find(path("predicted") + ": 2 scan(s) beside their NAME_synthseg segmentation left out"),
              std::string::npos)
        << beside.err;
    EXPECT_EQ(read_csv(csv).rows, by_subject.rows);
    for (const char* scan : {"a.nii.gz", "b.nii.gz"}) fs::remove(path(cat("predicted/", scan)));
    // Ground truth is never left out as a scan: a prediction among it is refused, not scored
    // against the other folder's.
    fs::copy_file(path("predicted/a_synthseg.nii.gz"), path("gt/a_synthseg.nii.gz"));
    const RunResult mixed = run("dice", "--pred " + q("predicted") + " --gt " + q("gt") + " --out " + shell_quote(csv));
    EXPECT_EQ(mixed.status, 2) << mixed.err;
    EXPECT_NE(mixed.err.find("no prediction for subject a_synthseg"), std::string::npos) << mixed.err;
    fs::remove(path("gt/a_synthseg.nii.gz"));

    // Two folders predict wrote (one model against another): paired by their own names.
    fs::copy(dir_ / "predicted", dir_ / "predicted2");
    const RunResult two = run("dice", "--pred " + q("predicted2") + " --gt " + q("predicted") + " --out " +
                                          shell_quote(csv));
    ASSERT_EQ(two.status, 0) << two.err;
    const CsvTable same = read_csv(csv);
    ASSERT_EQ(same.rows.size(), 3u);
    EXPECT_EQ(same.rows[0], (std::vector<std::string>{"a_synthseg", "1", "1"}));

    // A cleaned prediction (21, 61 and 170 folded) against ground truth that holds them: --fold
    // folds both, as clean does, where a perfect prediction scored 2/3 and 0s.
    write_labels(path("cleaned.nii.gz"), row({0, 2, 2, 41, 16}));
    write_labels(path("truth.nii.gz"), row({0, 21, 2, 61, 170}));
    const std::string pair =
        "--pred " + q("cleaned.nii.gz") + " --gt " + q("truth.nii.gz") + " --out " + shell_quote(csv);
    const RunResult unfolded = run("dice", pair);
    ASSERT_EQ(unfolded.status, 0) << unfolded.err;
    EXPECT_EQ(read_csv(csv).rows[0],
              (std::vector<std::string>{"cleaned", "0.6666666666666666", "0", "0", "0", "0", "0"}));
    EXPECT_NE(unfolded.err.find("warning: dice: the ground truth holds 21, 61, 170 and the prediction none of them, "
                                "as a cleaned prediction (clean folds 21, 61 and 170 into 2, 41 and 16; with "
                                "--merge-cerebellum 7 and 46 into 8 and 47): --fold folds both files alike"),
              std::string::npos)
        << unfolded.err;
    const RunResult folded = run("dice", pair + " --fold");
    ASSERT_EQ(folded.status, 0) << folded.err;
    EXPECT_EQ(folded.err, "") << "nothing to say once folded";
    EXPECT_EQ(read_csv(csv).columns, (std::vector<std::string>{"subject", "dice_2", "dice_16", "dice_41"}));
    EXPECT_EQ(read_csv(csv).rows[0], (std::vector<std::string>{"cleaned", "1", "1", "1"}));
    EXPECT_NE(run("dice", pair + " --merge-cerebellum").err.find("--merge-cerebellum folds with --fold"),
              std::string::npos);
    // A prediction that holds 21 and 61 but missed 170 is no cleaned one: --fold would hide the miss.
    write_labels(path("missed.nii.gz"), row({0, 21, 2, 61, 16}));
    const RunResult missed =
        run("dice", "--pred " + q("missed.nii.gz") + " --gt " + q("truth.nii.gz") + " --out " + shell_quote(csv));
    ASSERT_EQ(missed.status, 0) << missed.err;
    EXPECT_EQ(missed.err.find("--fold folds both files alike"), std::string::npos) << missed.err;
    // Cleaned with --merge-cerebellum, scored with --fold alone: said too.
    write_labels(path("cerebellum.nii.gz"), row({0, 8, 8, 47, 2}));
    write_labels(path("cerebellum_truth.nii.gz"), row({0, 7, 8, 46, 2}));
    const RunResult cerebellum =
        run("dice", "--pred " + q("cerebellum.nii.gz") + " --gt " + q("cerebellum_truth.nii.gz") + " --out " +
                        shell_quote(csv) + " --fold");
    ASSERT_EQ(cerebellum.status, 0) << cerebellum.err;
    EXPECT_NE(cerebellum.err.find("warning: dice: the ground truth holds 7, 46 and the prediction none of them, as a "
                                  "prediction cleaned with --merge-cerebellum (7 and 46 into 8 and 47): "
                                  "--merge-cerebellum folds them too"),
              std::string::npos)
        << cerebellum.err;
    // Cleaned with --merge-cerebellum, scored with neither: both folds named at once.
    const RunResult neither = run("dice", "--pred " + q("cerebellum.nii.gz") + " --gt " + q("cerebellum_truth.nii.gz") +
                                              " --out " + shell_quote(csv));
    ASSERT_EQ(neither.status, 0) << neither.err;
    EXPECT_NE(neither.err.find("): --fold --merge-cerebellum folds both files alike"), std::string::npos)
        << neither.err;
}

// A folder whose rerun failed on a scan keeps the earlier run's output for it, from another model:
// the mean averaged the two in without a word. What made each prediction is in its descrip.
TEST_F(DiceCli, PredictionsMadeOtherwiseAreSaid) {
    set_output_description("infant-synthseg 1a2b3c4 predict, model weights 5e6f7a8b model-t2");
    write_labels(path("pred/a.nii.gz"), row({1, 1, 1, 1, 2, 2, 0, 0}));
    set_output_description("infant-synthseg 0f0f0f0 predict, model weights 11112222 model-t1");
    write_labels(path("pred/b.nii.gz"), row({1, 1, 0, 0, 2, 2, 0, 0}));
    set_output_description("");
    const RunResult r = run("dice", "--pred " + q("pred") + " --gt " + q("gt") + " --out " + out("dice.csv"));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("warning: dice: the predictions were made 2 ways (b.nii.gz: predict, model weights 11112222; "
                         "a.nii.gz: predict, model weights 5e6f7a8b): does the folder mix runs?"),
              std::string::npos)
        << r.err;
    // One model from a copy of its folder, by a build of a longer version (the field cut at 79
    // bytes elsewhere): one way.
    set_output_description("infant-synthseg v1.0-12-g0f0f0f0-dirty predict, model weights 5e6f7a8b scratch/model-t2");
    write_labels(path("pred/b.nii.gz"), row({1, 1, 0, 0, 2, 2, 0, 0}));
    set_output_description("");
    const RunResult same = run("dice", "--pred " + q("pred") + " --gt " + q("gt") + " --out " + out("dice.csv"));
    ASSERT_EQ(same.status, 0) << same.err;
    EXPECT_EQ(same.err.find("ways"), std::string::npos) << same.err;
}

// A table output replaces only a table of its kind (or an empty file): a typo's path to a study's
// spreadsheet replaced it without a word.
TEST_F(DiceCli, AFileThatIsNoDiceTableIsNotReplaced) {
    const std::string study = "subject,age_months,sex\n\"sub 01\",1,F\n";
    std::ofstream(path("study.csv")) << study;
    const RunResult r = run("dice", "--pred " + q("pred") + " --gt " + q("gt") + " --out " + q("study.csv"));
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("dice: error: --out " + path("study.csv") +
                         ": a file that is not a Dice table is there (its first "
                         "line: 'subject,age_months,sex'), which this would replace: name another, or remove it "
                         "first"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(test::read_text(path("study.csv")), study);
    // A Dice table, and an empty file, are replaced.
    ASSERT_EQ(run("dice", "--pred " + q("pred") + " --gt " + q("gt") + " --out " + q("dice.csv")).status, 0);
    EXPECT_EQ(run("dice", "--pred " + q("pred") + " --gt " + q("gt") + " --out " + q("dice.csv")).status, 0);
    std::ofstream(path("empty.csv")).close();
    EXPECT_EQ(run("dice", "--pred " + q("pred") + " --gt " + q("gt") + " --out " + q("empty.csv")).status, 0);
    std::ofstream(path("blank.csv")) << "\n";  // echo > blank.csv
    EXPECT_EQ(run("dice", "--pred " + q("pred") + " --gt " + q("gt") + " --out " + q("blank.csv")).status, 0);
    std::ofstream(path("bom.csv")) << "\xEF\xBB\xBFsubject,dice_1\r\na,1\r\n";  // saved again by a spreadsheet
    EXPECT_EQ(run("dice", "--pred " + q("pred") + " --gt " + q("gt") + " --out " + q("bom.csv")).status, 0);
    // Files of no structure: a table of the subject column alone, which a second run replaces.
    write_labels(path("none_a.nii.gz"), row({0, 0, 0, 0, 0, 0, 0, 0}));
    const std::string nothing = "--pred " + q("none_a.nii.gz") + " --gt " + q("none_a.nii.gz") + " --out ";
    ASSERT_EQ(run("dice", nothing + q("nothing.csv")).status, 0);
    EXPECT_EQ(run("dice", nothing + q("nothing.csv")).status, 0) << test::read_text(path("nothing.csv"));
    // A volumes table is no Dice table.
    std::ofstream(path("volumes.csv")) << "subject,2,41,total\na,1,2,3\n";
    EXPECT_EQ(run("dice", "--pred " + q("pred") + " --gt " + q("gt") + " --out " + q("volumes.csv")).status, 2);
}

TEST_F(DiceCli, BadInputExitsTwoAndWritesNothing) {
    const std::string o = " --out " + out("dice.csv");
    write_labels(path("extra.nii.gz"), row({0, 1}));
    fs::create_directories(dir_ / "gt2");
    fs::copy_file(path("gt/a.nii.gz"), path("gt2/a.nii.gz"));
    expect_bad("dice", "--pred " + q("pred") + " --gt " + q("gt2") + o, path("pred/b.nii.gz") + ": no ground truth");
    fs::copy_file(path("gt/b.nii.gz"), path("gt2/b.nii.gz"));
    fs::copy_file(path("gt/b.nii.gz"), path("gt2/c.nii.gz"));
    expect_bad("dice", "--pred " + q("pred") + " --gt " + q("gt2") + o, path("gt2/c.nii.gz") + ": no prediction");
    write_labels(path("gt2/c.nii"), row({0, 1}));
    expect_bad("dice", "--pred " + q("pred") + " --gt " + q("gt2") + o, "c.nii and c.nii.gz are one subject's");
    expect_bad("dice", "--pred " + q("pred/a.nii.gz") + " --gt " + q("extra.nii.gz") + o,
               path("pred/a.nii.gz") + ": not on the voxel grid of " + path("extra.nii.gz") + ": dims 8x1x1 vs 2x1x1");
    // Same dims, but stored in the other left-right order (a LAS file against a RAS one): the
    // voxels are not the same places, so no Dice.
    LabelMap mirrored = read_labels(path("gt/a.nii.gz"));
    mirrored.grid.affine = mirrored.grid.affine * Mat4::scaling(-1, 1, 1);
    write_labels(path("mirrored.nii.gz"), mirrored);
    expect_bad("dice", "--pred " + q("pred/a.nii.gz") + " --gt " + q("mirrored.nii.gz") + o,
               path("pred/a.nii.gz") + ": not on the voxel grid of " + path("mirrored.nii.gz") + ": shifted by 7 mm");
    Image four(row({0, 1, 1, 0, 0, 0, 0, 0}).grid, 2, 1.0f);
    write_image(path("four.nii.gz"), four);
    expect_bad("dice", "--pred " + q("four.nii.gz") + " --gt " + q("gt/a.nii.gz") + o, "four.nii.gz: a 4-D volume");
    expect_bad("dice", "--pred " + q("pred/zz.nii.gz") + " --gt " + q("gt/a.nii.gz") + o, "zz.nii.gz");
    expect_bad("dice", "--pred " + q("pred") + " --gt " + q("gt/a.nii.gz") + o, "both be files or both");
    // A subject named as the table's mean row: two rows "mean" for whoever indexes by subject.
    fs::copy_file(path("pred/a.nii.gz"), path("mean.nii.gz"));
    expect_bad("dice", "--pred " + q("mean.nii.gz") + " --gt " + q("gt/a.nii.gz") + o,
               path("mean.nii.gz") + ": subject 'mean' shares its name with the table's last row");
    expect_bad("dice", "--pred " + q("pred") + " --gt " + q("gt"), "--out is required");
    expect_bad("dice", "--pred " + q("pred") + " --gt " + q("gt") + " --out " + out("dice.nii.gz"),
               "the table is CSV text, not an image");
    // A doubled option with two values is refused, not resolved to the last: here that would
    // score the prediction against itself.
    expect_bad("dice", "--pred " + q("pred/a.nii.gz") + " --gt " + q("gt/a.nii.gz") + " --gt=" + q("pred/a.nii.gz") + o,
               "error: --gt given twice (" + path("gt/a.nii.gz") + ", then " + path("pred/a.nii.gz") +
                   "): give it once");
    const RunResult same = run("dice", "--pred " + q("pred/a.nii.gz") + " --gt " + q("gt/a.nii.gz") + " --gt " +
                                           q("gt/a.nii.gz") + o);
    EXPECT_EQ(same.status, 0) << "the same value twice is no conflict: " << same.err;
}

TEST_F(DiceCli, HelpNamesEveryOption) {
    const RunResult r = run("dice", "--help");
    EXPECT_EQ(r.status, 0);
    for (const char* word : {"--pred", "--gt", "--out", "--labels", "dice_<label>", "mean", "empty"})
        EXPECT_NE(r.out.find(word), std::string::npos) << word;
}

}  // namespace
}  // namespace iss
