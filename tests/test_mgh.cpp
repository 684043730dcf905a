// FreeSurfer's MGH files (.mgz, .mgh), read as nibabel reads them: the fixtures of
// tests/data/mgh (make_mgh_fixtures.py) against nibabel's shape, affine and voxels
// (golden.json), the commands taking them wherever they take a NIfTI input, and damaged headers
// refused.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/file_util.h"
#include "io/nifti.h"
#include "kernels/common/error.h"
#include "tests/small_model.h"
#include "tests/test_util.h"
#include "tests/zlib_util.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

std::string mgh_fixture(const std::string& name) {
    const char* source = std::getenv("INFANT_SOURCE_DIR");
    return source && *source ? cat(source, "/tests/data/mgh/", name) : "";
}

#define REQUIRE_FIXTURES()                  \
    if (mgh_fixture("golden.json").empty()) \
    GTEST_SKIP() << "INFANT_SOURCE_DIR unset (ctest sets it): tests/data/mgh not read"

TEST(Mgh, FixturesReadAsNibabelReadsThem) {
    REQUIRE_FIXTURES();
    const nlohmann::json golden = nlohmann::json::parse(test::read_text(mgh_fixture("golden.json")));
    ASSERT_EQ(golden.size(), 5u);
    for (const auto& [name, g] : golden.items()) {
        SCOPED_TRACE(name);
        VolumeHeader h;
        const Volume<double> image = read_image_f64(mgh_fixture(name), &h);
        EXPECT_EQ(h.format, VolumeFormat::mgh);
        const std::vector<int64_t> shape = g["shape"].get<std::vector<int64_t>>();
        for (int a = 0; a < 3; ++a) EXPECT_EQ(image.grid.dim[size_t(a)], shape[size_t(a)]);
        EXPECT_EQ(image.frames, shape.size() == 4 ? shape[3] : 1);
        for (int r = 0; r < 4; ++r)
            for (int c = 0; c < 4; ++c)
                EXPECT_NEAR(image.grid.affine.m[r][c], g["affine"][size_t(r)][size_t(c)].get<double>(), 1e-9)
                    << "affine[" << r << "][" << c << "]";
        const std::vector<double> voxels = g["voxels"].get<std::vector<double>>();
        EXPECT_EQ(image.data, voxels);
        if (h.integer_type()) {
            const LabelMap labels = read_labels(mgh_fixture(name));
            EXPECT_TRUE(std::equal(labels.data.begin(), labels.data.end(), voxels.begin(),
                                   [](int32_t a, double b) { return double(a) == b; }));
        }
    }
}

// What we write is what nibabel writes (header, voxels, footer) for the same voxels and grid:
// the label fixtures, written again as .mgh, against their inflated bytes. Byte for byte but
// for the grid's floats (bytes 30 to 89), which we compute from the float-rounded affine we read
// and nibabel from the double one it was given: there within a few units in the last place.
TEST(Mgh, WrittenAsNibabelWritesThem) {
    REQUIRE_FIXTURES();
    const fs::path dir = test::unique_temp_dir("mgh-bytes");
    for (const char* name : {"labels_lia_uchar.mgz", "short.mgz"}) {
        const std::string out = (dir / "again.mgh").string();
        write_labels(out, read_labels(mgh_fixture(name)));
        const std::vector<uint8_t> ours = test::read_bytes(out),
                                   theirs = test::gunzip(test::read_bytes(mgh_fixture(name)));
        ASSERT_EQ(ours.size(), theirs.size()) << name;
        for (size_t at = 0; at < ours.size(); ++at) {
            if (at < 30 || at >= 90) {
                EXPECT_EQ(ours[at], theirs[at]) << name << ": byte " << at;
                continue;
            }
            if ((at - 30) % 4 != 0) continue;
            auto big_endian_float = [&](const std::vector<uint8_t>& b) {
                const uint32_t bits =
                    uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | b[at + 3];
                float f;
                std::memcpy(&f, &bits, 4);
                return f;
            };
            EXPECT_NEAR(big_endian_float(ours), big_endian_float(theirs), 1e-6) << name << ": the float at byte " << at;
        }
    }
    fs::remove_all(dir);
}

// A header's fields, big-endian, in an uncompressed copy of frames_int32.mgh.
class MghDamage : public test::TempDirTest {
protected:
    void SetUp() override {
        test::TempDirTest::SetUp();
        if (mgh_fixture("golden.json").empty()) GTEST_SKIP() << "INFANT_SOURCE_DIR unset: tests/data/mgh not read";
        good_ = test::read_bytes(mgh_fixture("frames_int32.mgh"));
    }
    static void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
        for (int i = 0; i < 4; ++i) b[at + size_t(i)] = uint8_t(v >> (24 - 8 * i));
    }
    std::string refusal(const std::string& name, const std::vector<uint8_t>& bytes) {
        test::write_bytes(path(name), bytes);
        return test::refusal_of(path(name), [&] { read_image(path(name)); });
    }
    std::vector<uint8_t> good_;
};

TEST_F(MghDamage, EachIsRefusedNamingTheFile) {
    std::vector<uint8_t> b = good_;
    put32(b, 0, 2);
    EXPECT_NE(refusal("version.mgh", b).find("not an MGH file: version is 2"), std::string::npos);
    b = good_;
    put32(b, 8, 0);  // height
    EXPECT_NE(refusal("height.mgh", b).find("MGH dimension 2 is 0"), std::string::npos);
    b = good_;
    put32(b, 20, 2);  // MRI_LONG
    EXPECT_NE(refusal("type.mgh", b).find("MGH data type 2 is not one nibabel reads"), std::string::npos);
    b = good_;
    b[28] = b[29] = 0;  // goodRASFlag
    EXPECT_NE(refusal("ras.mgh", b).find("goodRASFlag is 0"), std::string::npos);
    b[28] = b[29] = 0xff;  // -1: nibabel reads the stored grid, FreeSurfer its default
    EXPECT_NE(refusal("ras-negative.mgh", b).find("goodRASFlag is -1"), std::string::npos);
    b = good_;
    put32(b, 34, 0x7fc00000);  // the second voxel size: NaN
    EXPECT_NE(refusal("nan.mgh", b).find("MGH voxel size 2 is nan"), std::string::npos);
    b = good_;
    for (size_t at = 42; at < 54; at += 4) put32(b, at, 0);  // the first axis's direction
    EXPECT_NE(refusal("singular.mgh", b).find("MGH affine is singular"), std::string::npos);
    b = good_;
    for (size_t at = 4; at < 16; at += 4) put32(b, at, 4096);  // 2^36 voxels
    EXPECT_NE(refusal("huge.mgh", b).find("dims ask for more than 2^31 voxels, the limit"), std::string::npos);
    b = good_;
    b.resize(284 + 10);
    EXPECT_NE(refusal("truncated.mgh", b)
                  .find("truncated: the header needs 476 bytes (the 284-byte MGH header + 192 of voxel data)"),
              std::string::npos);
    // A .mgz of a few hundred bytes whose header claims 400 MB: refused before any allocation.
    b = good_;
    b.resize(284);
    for (size_t at = 4; at < 16; at += 4) put32(b, at, at == 12 ? 100 : 1000);
    put32(b, 16, 1);
    EXPECT_NE(refusal("claims.mgz", test::deflated(b, 16 + MAX_WBITS))
                  .find("bytes cannot hold the 400000284 bytes the header describes"),
              std::string::npos);
    // A NIfTI file named .mgz.
    write_labels(path("nifti.nii"), read_labels(mgh_fixture("short.mgz")));
    EXPECT_NE(refusal("nifti.mgz", test::read_bytes(path("nifti.nii"))).find("it is a NIfTI file: name it .nii"),
              std::string::npos);
    EXPECT_NE(refusal("short.mgh", {good_.begin(), good_.begin() + 50}).find("too short to be an MGH file"),
              std::string::npos);
    EXPECT_NE(refusal("empty.mgz", {}).find("file is empty"), std::string::npos);
}

// Wherever a NIfTI input is taken, an MGH one is: a folder's scans by name, predict (its
// outputs NIfTI on the scan's own grid), dice against the same labels as NIfTI.
class MghCli : public test::TempDirTest {
protected:
    void SetUp() override {
        test::TempDirTest::SetUp();
        if (mgh_fixture("golden.json").empty()) GTEST_SKIP() << "INFANT_SOURCE_DIR unset: tests/data/mgh not read";
    }
    static test::RunResult run(const std::string& args) { return test::run_command(test::cli_path() + " " + args); }
    std::string q(const std::string& name) const { return test::shell_quote(path(name)); }
};

TEST_F(MghCli, FoldersPredictAndDiceTakeMghFiles) {
    fs::create_directories(path("scans"));
    fs::copy_file(mgh_fixture("oblique_float.mgz"), path("scans/a.MGZ"));
    fs::copy_file(mgh_fixture("short.mgz"), path("scans/b.mgz"));
    EXPECT_EQ(volume_files(path("scans")), (std::vector<std::string>{path("scans/a.MGZ"), path("scans/b.mgz")}));
    EXPECT_EQ(volume_stem(path("scans/a.MGZ")), "a");

    test::write_small_model(path("model"));
    const test::RunResult predicted =
        run("predict --device cpu --i " + q("scans") + " --o " + q("segs") + " --model " + q("model"));
    ASSERT_EQ(predicted.status, 0) << predicted.err;
    for (const char* subject : {"a", "b"}) {  // MGH scans' outputs are MGH, as SynthSeg names them
        const Grid in = read_volume_header(path(cat("scans/", subject, subject[0] == 'a' ? ".MGZ" : ".mgz"))).grid();
        const LabelMap seg = read_labels(path(cat("segs/", subject, "_synthseg.mgz")));
        EXPECT_EQ(seg.grid.dim, in.dim) << subject;
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 4; ++c) EXPECT_NEAR(seg.grid.affine.m[r][c], in.affine.m[r][c], 1e-6) << subject;
    }

    // One subject as .mgz and .nii.gz: its outputs would be mixed up (dice, --vol), so refused.
    fs::create_directories(path("dup"));
    fs::copy_file(mgh_fixture("short.mgz"), path("dup/s.mgz"));
    write_image(path("dup/s.nii.gz"), read_image(mgh_fixture("short.mgz")));
    const test::RunResult dup =
        run("predict --device cpu --i " + q("dup") + " --o " + q("dup-segs") + " --model " + q("model"));
    EXPECT_EQ(dup.status, 2);
    EXPECT_NE(dup.err.find("would both be written as s_synthseg: rename one"), std::string::npos) << dup.err;

    const LabelMap truth = read_labels(mgh_fixture("labels_lia_uchar.mgz"));
    write_labels(path("truth.nii.gz"), truth);
    const test::RunResult dice = run("dice --pred " + test::shell_quote(mgh_fixture("labels_lia_uchar.mgz")) +
                                     " --gt " + q("truth.nii.gz") + " --out " + q("dice.csv"));
    ASSERT_EQ(dice.status, 0) << dice.err;
    const std::string table = test::read_text(path("dice.csv"));
    EXPECT_NE(table.find("1,1,1,1"), std::string::npos) << table;

    // Outputs named .mgz / .mgh are MGH: the same labels as the NIfTI one, on the scan's grid.
    const test::RunResult written = run("predict --device cpu --i " + q("scans/b.mgz") + " --o " + q("seg.mgz") +
                                        " --post " + q("post.mgh") + " --model " + q("model"));
    ASSERT_EQ(written.status, 0) << written.err;
    VolumeHeader h;
    const LabelMap seg = read_labels(path("seg.mgz"), &h);
    EXPECT_EQ(h.format, VolumeFormat::mgh);
    EXPECT_EQ(seg.data, read_labels(path("segs/b_synthseg.mgz")).data);
    EXPECT_TRUE(seg.grid.same_as(read_volume_header(path("scans/b.mgz")).grid()));
    EXPECT_EQ(read_image(path("post.mgh")).frames, 5);
}

TEST_F(MghCli, InfoSaysWhatTheFileIs) {
    const test::RunResult r = run("info " + test::shell_quote(mgh_fixture("labels_lia_uchar.mgz")));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("format: MGH (FreeSurfer), big-endian"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("orientation: LIA"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("affine source: the MGH header"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("labels: 5"), std::string::npos) << r.out;
}

// An input that stores no orientation (a NIfTI file without qform or sform): a NIfTI output on
// its grid states none either, so that every reader places the two alike; an MGH one cannot.
TEST(Mgh, NoOutputStatesAnOrientationItsInputLeftOut) {
    const fs::path dir = test::unique_temp_dir("mgh-unstated");
    LabelMap labels(Grid{{4, 3, 2}, Mat4::scaling(1.5, 2, 3)});
    labels.data[3] = 2;
    const std::string plain = (dir / "plain.nii").string();
    write_labels(plain, labels);
    std::vector<uint8_t> bytes = test::read_bytes(plain);
    bytes[252] = bytes[253] = bytes[254] = bytes[255] = 0;  // qform_code, sform_code (NIfTI-1)
    test::write_bytes(plain, bytes);
    VolumeHeader h;
    const LabelMap read = read_labels(plain, &h);
    ASSERT_EQ(h.affine_source, "pixdim");
    const std::string out = (dir / "out.mgz").string();
    EXPECT_NE(test::refusal_of(out, [&] { write_labels(out, read, &h); }).find("stores no orientation"),
              std::string::npos);
    EXPECT_FALSE(fs::exists(out));
    write_labels((dir / "out.nii.gz").string(), read, &h);  // NIfTI: states none
    EXPECT_EQ(read_volume_header((dir / "out.nii.gz").string()).affine_source, "pixdim");
    fs::remove_all(dir);
}

// Written and read back: the voxels exactly (each type write_labels chooses, and float), the
// grid to float precision (MGH stores it as floats), frames kept.
TEST(Mgh, WrittenFilesReadBack) {
    const fs::path dir = test::unique_temp_dir("mgh-write");
    Grid g;
    g.dim = {5, 4, 3};
    g.affine = Mat4::identity();
    const double c = std::cos(0.4), s = std::sin(0.4);
    const double rows[3][4] = {{1.2 * c, -0.9 * s, 0, 10.25}, {1.2 * s, 0.9 * c, 0, -7.5}, {0, 0, 2.0, 30}};
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 4; ++k) g.affine.m[r][k] = rows[r][k];
    for (const int32_t scale : {1, 200, 100000}) {  // uint8, int16, int32
        LabelMap labels(g);
        for (size_t v = 0; v < labels.data.size(); ++v) labels.data[v] = int32_t(v % 7) * scale - (scale > 1 ? 3 : 0);
        for (const char* ending : {".mgz", ".mgh", ".MGZ"}) {
            const std::string file = (dir / cat("labels_", scale, ending)).string();
            write_labels(file, labels);
            const LabelMap back = read_labels(file);
            EXPECT_EQ(back.data, labels.data) << file;
            EXPECT_TRUE(back.grid.same_as(g)) << file;
            for (int r = 0; r < 3; ++r)
                for (int k = 0; k < 4; ++k) EXPECT_NEAR(back.grid.affine.m[r][k], g.affine.m[r][k], 1e-5) << file;
        }
    }
    Image posteriors(g, 3);
    for (size_t v = 0; v < posteriors.data.size(); ++v) posteriors.data[v] = float(v) / 7.0f - 2.5f;
    write_posteriors((dir / "post.mgz").string(), posteriors);
    const Image back = read_image((dir / "post.mgz").string());
    EXPECT_EQ(back.frames, 3);
    EXPECT_EQ(back.data, posteriors.data);
    const auto gzip = [](const fs::path& file) { return file_prefix(file.string(), 2) == "\x1f\x8b"; };
    EXPECT_TRUE(gzip(dir / "post.mgz"));
    EXPECT_TRUE(gzip(dir / "labels_1.MGZ"));
    EXPECT_FALSE(gzip(dir / "labels_1.mgh"));
    fs::remove_all(dir);
}

}  // namespace
}  // namespace iss
