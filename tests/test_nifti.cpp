// NIfTI reading and writing, and `infant-synthseg info`: round trips through our writer, every
// datatype in both byte orders and both versions through a test-only raw header writer, every
// kind of bad input (one InputError naming the file), the CLI's exit status and messages,
// agreement with nifti_tool, and the peer files of GOLDEN.md when they are present.
#include <gtest/gtest.h>
#include <nifti/nifti1.h>
#include <nifti/nifti2.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "io/nifti.h"
#include "io/npy.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using iss::test::run_command;
using iss::test::RunResult;
using iss::test::shell_quote;
using iss::test::TempDirTest;

namespace {

using Bytes = std::vector<unsigned char>;

// --- test-only raw file writer ----------------------------------------------------------------

template <class T>
void put(Bytes& buf, size_t offset, T value, bool swap) {
    unsigned char b[sizeof(T)];
    std::memcpy(b, &value, sizeof(T));
    if (swap) std::reverse(b, b + sizeof(T));
    std::memcpy(buf.data() + offset, b, sizeof(T));
}

template <class T>
Bytes encode(const std::vector<T>& values, bool swap) {
    Bytes out(values.size() * sizeof(T));
    for (size_t i = 0; i < values.size(); ++i) put(out, i * sizeof(T), values[i], swap);
    return out;
}

// Every field a test may want to get wrong. vox_offset < 0 means "right after the header".
struct RawSpec {
    int version = 1;
    bool big_endian = false;
    bool pair = false;  // ni1/ni2: header only, data in .img
    int64_t dim[8] = {3, 4, 3, 2, 1, 1, 1, 1};
    double pixdim[8] = {1, 1.5, 2, 2.5, 1, 1, 1, 1};
    int datatype = NIFTI_TYPE_FLOAT32;
    int bitpix = 32;
    double vox_offset = -1;
    double slope = 1, inter = 0;
    int qform_code = 0, sform_code = 2;
    int xyzt_units = NIFTI_UNITS_MM;
    double srow[3][4] = {{-1.5, 0, 0, 10}, {0, 2, 0, -20}, {0, 0, 2.5, 30}};
    double quatern[3] = {0, 0, 0}, qoffset[3] = {0, 0, 0};
    int32_t sizeof_hdr = 0;  // 0: the right one
    std::string magic;       // empty: the right one
    Bytes extension;         // after the 4-byte flag (must be a multiple of 16, flag set)
    Bytes data;
    Bytes trailing;
};

Bytes raw_header(const RawSpec& s) {
    const bool sw = s.big_endian;
    if (s.version == 1) {
        using H = nifti_1_header;
        Bytes b(348, 0);
        put<int32_t>(b, 0, s.sizeof_hdr ? s.sizeof_hdr : 348, sw);
        for (int i = 0; i < 8; ++i) {
            put<int16_t>(b, offsetof(H, dim) + 2 * i, int16_t(s.dim[i]), sw);
            put<float>(b, offsetof(H, pixdim) + 4 * i, float(s.pixdim[i]), sw);
        }
        put<int16_t>(b, offsetof(H, datatype), int16_t(s.datatype), sw);
        put<int16_t>(b, offsetof(H, bitpix), int16_t(s.bitpix), sw);
        const double off = s.vox_offset >= 0 ? s.vox_offset : (s.pair ? 0 : 352 + s.extension.size());
        put<float>(b, offsetof(H, vox_offset), float(off), sw);
        put<float>(b, offsetof(H, scl_slope), float(s.slope), sw);
        put<float>(b, offsetof(H, scl_inter), float(s.inter), sw);
        put<int16_t>(b, offsetof(H, qform_code), int16_t(s.qform_code), sw);
        put<int16_t>(b, offsetof(H, sform_code), int16_t(s.sform_code), sw);
        b[offsetof(H, xyzt_units)] = static_cast<unsigned char>(s.xyzt_units);
        for (int i = 0; i < 3; ++i) {
            put<float>(b, offsetof(H, quatern_b) + 4 * i, float(s.quatern[i]), sw);
            put<float>(b, offsetof(H, qoffset_x) + 4 * i, float(s.qoffset[i]), sw);
        }
        for (int c = 0; c < 4; ++c) {
            put<float>(b, offsetof(H, srow_x) + 4 * c, float(s.srow[0][c]), sw);
            put<float>(b, offsetof(H, srow_y) + 4 * c, float(s.srow[1][c]), sw);
            put<float>(b, offsetof(H, srow_z) + 4 * c, float(s.srow[2][c]), sw);
        }
        const std::string magic = s.magic.empty() ? std::string(s.pair ? "ni1" : "n+1", 4) : s.magic;
        std::memcpy(b.data() + offsetof(H, magic), magic.data(), std::min<size_t>(4, magic.size()));
        return b;
    }
    using H = nifti_2_header;
    Bytes b(540, 0);
    put<int32_t>(b, 0, s.sizeof_hdr ? s.sizeof_hdr : 540, sw);
    for (int i = 0; i < 8; ++i) {
        put<int64_t>(b, offsetof(H, dim) + 8 * i, s.dim[i], sw);
        put<double>(b, offsetof(H, pixdim) + 8 * i, s.pixdim[i], sw);
    }
    put<int16_t>(b, offsetof(H, datatype), int16_t(s.datatype), sw);
    put<int16_t>(b, offsetof(H, bitpix), int16_t(s.bitpix), sw);
    const double off = s.vox_offset >= 0 ? s.vox_offset : (s.pair ? 0 : 544 + s.extension.size());
    put<int64_t>(b, offsetof(H, vox_offset), int64_t(off), sw);
    put<double>(b, offsetof(H, scl_slope), s.slope, sw);
    put<double>(b, offsetof(H, scl_inter), s.inter, sw);
    put<int32_t>(b, offsetof(H, qform_code), s.qform_code, sw);
    put<int32_t>(b, offsetof(H, sform_code), s.sform_code, sw);
    put<int32_t>(b, offsetof(H, xyzt_units), s.xyzt_units, sw);
    for (int i = 0; i < 3; ++i) {
        put<double>(b, offsetof(H, quatern_b) + 8 * i, s.quatern[i], sw);
        put<double>(b, offsetof(H, qoffset_x) + 8 * i, s.qoffset[i], sw);
    }
    for (int c = 0; c < 4; ++c) {
        put<double>(b, offsetof(H, srow_x) + 8 * c, s.srow[0][c], sw);
        put<double>(b, offsetof(H, srow_y) + 8 * c, s.srow[1][c], sw);
        put<double>(b, offsetof(H, srow_z) + 8 * c, s.srow[2][c], sw);
    }
    const std::string magic =
        s.magic.empty() ? std::string(s.pair ? "ni2\0\r\n\032\n" : "n+2\0\r\n\032\n", 8) : s.magic;
    std::memcpy(b.data() + offsetof(H, magic), magic.data(), std::min<size_t>(8, magic.size()));
    return b;
}

void write_bytes(const std::string& path, const Bytes& bytes) {
    if (path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0) {
        gzFile f = gzopen(path.c_str(), "wb");
        ASSERT_NE(f, nullptr);
        if (!bytes.empty()) {
            ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
        }
        ASSERT_EQ(gzclose(f), Z_OK);
    } else {
        std::ofstream out(path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        ASSERT_TRUE(out.good());
    }
}

Bytes read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Writes a complete file (or a .hdr/.img pair) from a spec.
void write_raw(const std::string& path, const RawSpec& s) {
    Bytes file = raw_header(s);
    if (s.pair) {
        if (!s.extension.empty()) {  // in the .hdr after the flag, as nibabel writes a pair's
            const unsigned char flag[4] = {1, 0, 0, 0};
            file.insert(file.end(), flag, flag + 4);
            file.insert(file.end(), s.extension.begin(), s.extension.end());
        }
        write_bytes(path, file);
        Bytes img = s.data;
        img.insert(img.end(), s.trailing.begin(), s.trailing.end());
        std::string base = path.substr(0, path.rfind(".hdr"));
        write_bytes(base + ".img", img);
        return;
    }
    const unsigned char flag[4] = {static_cast<unsigned char>(s.extension.empty() ? 0 : 1), 0, 0, 0};
    file.insert(file.end(), flag, flag + 4);
    file.insert(file.end(), s.extension.begin(), s.extension.end());
    file.insert(file.end(), s.data.begin(), s.data.end());
    file.insert(file.end(), s.trailing.begin(), s.trailing.end());
    write_bytes(path, file);
}

// Expects one InputError whose message names `file` and contains `fragment`.
template <class F>
void expect_input_error(F&& f, const std::string& file, const std::string& fragment) {
    try {
        f();
        ADD_FAILURE() << "no error for " << file << " (expected '" << fragment << "')";
    } catch (const iss::InputError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(file), std::string::npos) << "message does not name the file: " << msg;
        EXPECT_NE(msg.find(fragment), std::string::npos) << "message lacks '" << fragment << "': " << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "not an InputError for " << file << ": " << e.what();
    }
}

void expect_bad(const std::string& file, const std::string& fragment) {
    expect_input_error([&] { iss::read_image(file); }, file, fragment);
}

iss::Grid test_grid(int nx = 4, int ny = 3, int nz = 2) {
    iss::Grid g;
    g.dim = {nx, ny, nz};
    g.affine = iss::Mat4::scaling(1.5, 2, 2.5);
    g.affine.m[0][3] = 10;
    g.affine.m[1][3] = -20;
    g.affine.m[2][3] = 30;
    return g;
}

// Posteriors-like values from 0 to 1, distinct voxel by voxel.
iss::Image ramp_image(const iss::Grid& g, int64_t frames) {
    iss::Image img(g, frames);
    for (size_t i = 0; i < img.data.size(); ++i) img.data[i] = float(i) / float(img.data.size());
    return img;
}

// A rotation about an oblique axis with anisotropic voxels and a flip: a rigid oblique affine.
iss::Mat4 oblique_affine() {
    const double a = 0.3, b = -0.2;
    iss::Mat4 rz, rx;
    rz.m[0][0] = std::cos(a), rz.m[0][1] = -std::sin(a), rz.m[1][0] = std::sin(a), rz.m[1][1] = std::cos(a);
    rx.m[1][1] = std::cos(b), rx.m[1][2] = -std::sin(b), rx.m[2][1] = std::sin(b), rx.m[2][2] = std::cos(b);
    iss::Mat4 m = rz * rx * iss::Mat4::scaling(-0.9, 1.1, 1.3);
    m.m[0][3] = 12.5, m.m[1][3] = -7.25, m.m[2][3] = 3;
    return m;
}

}  // namespace

// --- round trips through our writer -----------------------------------------------------------

class NiftiRoundTrip : public TempDirTest {};

TEST_F(NiftiRoundTrip, ImageFloatExactAndAffineKept) {
    for (const char* ext : {".nii", ".nii.gz"}) {
        iss::Image img(test_grid(), 1);
        img.grid.affine = oblique_affine();
        for (size_t i = 0; i < img.data.size(); ++i) img.data[i] = float(i) * 0.37f - 3.0f;
        const std::string file = path(std::string("img") + ext);
        iss::write_image(file, img);
        iss::VolumeHeader h;
        const iss::Image back = iss::read_image(file, &h);
        EXPECT_EQ(h.version, 1);
        EXPECT_EQ(h.datatype_name(), "float32");
        EXPECT_EQ(h.affine_source, "sform");
        EXPECT_GT(h.qform_code, 0) << "a rigid affine is also written as qform";
        EXPECT_EQ(back.grid.dim, img.grid.dim);
        EXPECT_EQ(back.data, img.data);
        EXPECT_TRUE(back.grid.affine.approx_equal(img.grid.affine, 1e-5));
    }
}

TEST_F(NiftiRoundTrip, QformAloneGivesTheSameAffine) {
    iss::Image img(test_grid(), 1, 1.0f);
    img.grid.affine = oblique_affine();
    const std::string file = path("q.nii");
    iss::write_image(file, img);
    // Zero the sform code so the reader must use the qform.
    Bytes bytes = read_bytes(file);
    put<int16_t>(bytes, offsetof(nifti_1_header, sform_code), 0, false);
    write_bytes(file, bytes);
    const iss::VolumeHeader h = iss::read_volume_header(file);
    EXPECT_EQ(h.affine_source, "qform");
    EXPECT_TRUE(h.affine.approx_equal(img.grid.affine, 1e-5));
}

TEST_F(NiftiRoundTrip, ShearedAffineHasNoQform) {
    iss::Image img(test_grid(), 1, 1.0f);
    img.grid.affine.m[0][1] = 0.4;  // shear: not a rotation with scaling
    const std::string file = path("shear.nii.gz");
    iss::write_image(file, img);
    const iss::VolumeHeader h = iss::read_volume_header(file);
    EXPECT_EQ(h.qform_code, 0);
    EXPECT_EQ(h.sform_code, 2);
    EXPECT_TRUE(h.affine.approx_equal(img.grid.affine, 1e-6));
}

TEST_F(NiftiRoundTrip, LabelsExactInSmallestType) {
    struct Case {
        int32_t lo, hi;
        const char* type;
    };
    for (const Case& c :
         {Case{0, 255, "uint8"}, Case{-1, 2, "int16"}, Case{0, 32767, "int16"}, Case{-32768, 5, "int16"},
          Case{0, 40000, "uint16"}, Case{0, 65535, "uint16"}, Case{0, 65536, "int32"}, Case{-1, 40000, "int32"},
          Case{std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(), "int32"}}) {
        iss::LabelMap labels(test_grid(), 1, 0);
        for (size_t i = 0; i < labels.data.size(); ++i) labels.data[i] = int32_t(i % 7);
        labels.data.front() = c.lo;
        labels.data.back() = c.hi;
        const std::string file = path(std::string("lab_") + c.type + ".nii.gz");
        iss::write_labels(file, labels);
        iss::VolumeHeader h;
        const iss::LabelMap back = iss::read_labels(file, &h);
        EXPECT_EQ(h.datatype_name(), c.type) << c.lo << ".." << c.hi;
        EXPECT_EQ(back.data, labels.data);
        EXPECT_TRUE(back.grid.same_as(labels.grid, 1e-5));
    }
}

TEST_F(NiftiRoundTrip, PosteriorsKeepFramesAndLikeHeader) {
    iss::Image post(test_grid(), 5);
    for (size_t i = 0; i < post.data.size(); ++i) post.data[i] = float(i % 10) / 10.0f;
    iss::VolumeHeader like;
    like.descrip = "from the input";
    like.xyzt_units = NIFTI_UNITS_MM | NIFTI_UNITS_SEC;
    like.dim[0] = 4;  // a 4-D file of one volume, its time step 2.5 s
    like.pixdim[4] = 2.5;
    like.sform_code = NIFTI_XFORM_SCANNER_ANAT;
    like.qform_code = NIFTI_XFORM_SCANNER_ANAT;
    const std::string file = path("post.nii");
    iss::write_posteriors(file, post, &like);
    iss::VolumeHeader h;
    const iss::Image back = iss::read_image(file, &h);
    EXPECT_EQ(h.dim[0], 4);
    EXPECT_EQ(h.dim[4], 5);
    EXPECT_EQ(back.frames, 5);
    EXPECT_EQ(back.data, post.data);
    EXPECT_EQ(h.descrip, "from the input");
    // The frames are labels: a time step and unit would show them as a time series.
    EXPECT_EQ(h.xyzt_units, NIFTI_UNITS_MM);
    EXPECT_EQ(h.pixdim[4], 1.0);
    EXPECT_EQ(h.sform_code, NIFTI_XFORM_SCANNER_ANAT);
}

TEST_F(NiftiRoundTrip, LargeDimWritesNifti2) {
    iss::Image img(test_grid(40000, 1, 1), 1);
    for (size_t i = 0; i < img.data.size(); ++i) img.data[i] = float(i);
    for (const char* ext : {".nii", ".nii.gz"}) {
        const std::string file = path(std::string("wide") + ext);
        iss::write_image(file, img);
        iss::VolumeHeader h;
        const iss::Image back = iss::read_image(file, &h);
        EXPECT_EQ(h.version, 2);
        EXPECT_EQ(h.vox_offset, 544);
        EXPECT_EQ(back.data, img.data);
        EXPECT_TRUE(back.grid.same_as(img.grid, 1e-9));
        if (ext == std::string(".nii")) {
            const Bytes head = read_bytes(file);
            EXPECT_EQ(std::memcmp(head.data() + 4, "n+2\0\r\n\032\n", 8), 0);
        }
    }
}

// A full disk (a link to /dev/full, which the writer writes directly): one error naming the
// file and the cause, for a small volume (the failure surfaces when the file is finished) and a
// large one (while writing: 20 MB, more than one batch of the gzip stream), compressed and not.
TEST_F(NiftiRoundTrip, FullDiskNamesTheFile) {
    if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no writable /dev/full here";
    for (const int64_t nx : {int64_t(8), int64_t(5000000)})
        for (const char* ext : {".nii", ".nii.gz"}) {
            const std::string file = path(iss::cat("full", nx, ext));
            std::filesystem::create_symlink("/dev/full", file);
            iss::Image img(test_grid(nx, 1, 1), 1);
            for (size_t i = 0; i < img.data.size(); ++i) img.data[i] = float(i % 1000);
            try {
                iss::write_image(file, img);
                ADD_FAILURE() << file << ": no error";
            } catch (const iss::Error& e) {
                const std::string message = e.what();
                EXPECT_NE(message.find(file), std::string::npos) << message;
                EXPECT_NE(message.find(std::strerror(ENOSPC)), std::string::npos) << message;
            }
        }
}

// --- every datatype, byte order and version through the raw writer ---------------------------

class NiftiRead : public TempDirTest {
protected:
    template <class T>
    void check_type(int datatype, std::vector<T> values, bool integer) {
        for (int version : {1, 2})
            for (bool big : {false, true})
                for (const char* ext : {".nii", ".nii.gz"}) {
                    RawSpec s;
                    s.version = version;
                    s.big_endian = big;
                    s.datatype = datatype;
                    s.bitpix = int(sizeof(T) * 8);
                    s.dim[1] = int64_t(values.size()), s.dim[2] = 1, s.dim[3] = 1;
                    s.data = encode(values, big);
                    const std::string file = path(iss::cat("t", datatype, "_v", version, big ? "_be" : "_le", ext));
                    write_raw(file, s);
                    SCOPED_TRACE(file);
                    iss::VolumeHeader h;
                    const iss::Volume<double> back = iss::read_image_f64(file, &h);
                    EXPECT_EQ(h.version, version);
                    EXPECT_EQ(h.byte_swapped, big);
                    ASSERT_EQ(back.data.size(), values.size());
                    for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(back.data[i], double(values[i])) << i;
                    iss::Mat4 expected = test_grid().affine;
                    expected.m[0][0] = -1.5;  // RawSpec's srow is LAS
                    EXPECT_TRUE(back.grid.affine.approx_equal(expected, 1e-9));
                    if (integer) {
                        const iss::LabelMap labels = iss::read_labels(file);
                        for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(labels.data[i], int32_t(values[i]));
                    }
                }
    }
};

TEST_F(NiftiRead, EveryDatatypeBothOrdersBothVersions) {
    check_type<uint8_t>(NIFTI_TYPE_UINT8, {0, 1, 127, 255}, true);
    check_type<int8_t>(NIFTI_TYPE_INT8, {-128, -1, 0, 127}, true);
    check_type<int16_t>(NIFTI_TYPE_INT16, {-32768, -2, 3, 32767}, true);
    check_type<uint16_t>(NIFTI_TYPE_UINT16, {0, 1, 40000, 65535}, true);
    check_type<int32_t>(NIFTI_TYPE_INT32, {std::numeric_limits<int32_t>::min(), -5, 6, 2147483647}, true);
    check_type<uint32_t>(NIFTI_TYPE_UINT32, {0, 7, 65536, 2147483647u}, true);
    check_type<int64_t>(NIFTI_TYPE_INT64, {-2147483648LL, -1, 0, 2147483647LL}, true);
    check_type<uint64_t>(NIFTI_TYPE_UINT64, {0, 1, 1000, 2147483647ULL}, true);
    check_type<float>(NIFTI_TYPE_FLOAT32, {-1.5f, 0.0f, 3.25f, 1e30f}, false);
    check_type<double>(NIFTI_TYPE_FLOAT64, {-1e-300, 0.0, 3.125, 1e300}, false);
}

TEST_F(NiftiRead, ScalingApplied) {
    RawSpec s;
    s.datatype = NIFTI_TYPE_INT16, s.bitpix = 16;
    s.dim[1] = 4, s.dim[2] = 1, s.dim[3] = 1;
    s.slope = 2, s.inter = -1;
    s.data = encode(std::vector<int16_t>{0, 1, 2, -3}, false);
    const std::string file = path("scaled.nii.gz");
    write_raw(file, s);
    EXPECT_EQ(iss::read_image(file).data, (std::vector<float>{-1, 1, 3, -7}));
    EXPECT_EQ(iss::read_labels(file).data, (std::vector<int32_t>{-1, 1, 3, -7}));
    // A slope of 0 means no scaling.
    s.slope = 0;
    write_raw(file, s);
    EXPECT_EQ(iss::read_image(file).data, (std::vector<float>{0, 1, 2, -3}));
}

TEST_F(NiftiRead, Float64BeyondFloatRangeReadsAsInfinity) {
    RawSpec s;
    s.datatype = NIFTI_TYPE_FLOAT64, s.bitpix = 64;
    s.dim[1] = 3, s.dim[2] = 1, s.dim[3] = 1;
    s.data = encode(std::vector<double>{1e300, -1e300, 0.5}, false);
    const std::string file = path("huge.nii");
    write_raw(file, s);
    testing::internal::CaptureStderr();
    const iss::Image img = iss::read_image(file);
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("huge.nii: 2 voxels lie beyond float32's range (3.40282e+38) and read as infinite"),
              std::string::npos)
        << err;
    EXPECT_EQ(img.data[0], INFINITY);
    EXPECT_EQ(img.data[1], -INFINITY);
    EXPECT_EQ(img.data[2], 0.5f);
    EXPECT_EQ(iss::read_image_f64(file).data[0], 1e300);
}

TEST_F(NiftiRead, NanScalingReadsUnscaledWithWarning) {
    for (int version : {1, 2}) {
        RawSpec s;
        s.version = version;
        s.dim[1] = 2, s.dim[2] = 1, s.dim[3] = 1;
        s.slope = std::nan("");
        s.inter = 4;
        s.data = encode(std::vector<float>{1.5f, -2}, false);
        const std::string file = path(iss::cat("nanscale", version, ".nii"));
        write_raw(file, s);
        ::testing::internal::CaptureStderr();
        const iss::Image img = iss::read_image(file);
        const std::string err = ::testing::internal::GetCapturedStderr();
        EXPECT_EQ(img.data, (std::vector<float>{1.5f, -2}));
        EXPECT_NE(err.find("warning: " + file + ": scl_slope nan is not finite; reading the data unscaled"),
                  std::string::npos)
            << err;
    }
}

// A slope with an intercept that is not finite, as nibabel writes a header whose scl_slope alone
// was set: the slope applies, as FSL and AFNI read it. Read unscaled, a label map stored as twice
// its labels held other structures.
TEST_F(NiftiRead, ASlopeBesideANanInterceptApplies) {
    RawSpec s;
    s.datatype = NIFTI_TYPE_INT16, s.bitpix = 16;
    s.dim[1] = 3, s.dim[2] = 1, s.dim[3] = 1;
    s.slope = 0.5, s.inter = std::nan("");
    s.data = encode(std::vector<int16_t>{0, 4, 82}, false);
    const std::string file = path("slope_only.nii.gz");
    write_raw(file, s);
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(iss::read_labels(file).data, (std::vector<int32_t>{0, 2, 41}));
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(err, "warning: " + file +
                       ": scl_inter nan is not finite; reading the data as scl_slope 0.5 times each value, as FSL and "
                       "AFNI read it (nibabel refuses the file)\n");
}

TEST_F(NiftiRead, LabelsRejectNonIntegersAndOutOfRange) {
    RawSpec s;
    s.dim[1] = 3, s.dim[2] = 1, s.dim[3] = 1;
    s.data = encode(std::vector<float>{1, 2.5f, 3}, false);
    const std::string frac = path("frac.nii");
    write_raw(frac, s);
    expect_input_error([&] { iss::read_labels(frac); }, frac, "2.5");
    // Every digit: float32 1.9999999 is not "2" in the message.
    s.data = encode(std::vector<float>{1, 1.9999999f, 3}, false);
    const std::string almost = path("almost.nii");
    write_raw(almost, s);
    expect_input_error([&] { iss::read_labels(almost); }, almost, "1.99999988");

    s.datatype = NIFTI_TYPE_UINT32, s.bitpix = 32;
    s.data = encode(std::vector<uint32_t>{1, 3000000000u, 3}, false);
    const std::string big = path("big.nii");
    write_raw(big, s);
    expect_input_error([&] { iss::read_labels(big); }, big, "3000000000");

    // Scaling applies first and must give integers.
    s.datatype = NIFTI_TYPE_INT16, s.bitpix = 16;
    s.slope = 0.5;
    s.data = encode(std::vector<int16_t>{2, 3, 4}, false);
    const std::string half = path("half.nii.gz");
    write_raw(half, s);
    expect_input_error([&] { iss::read_labels(half); }, half, "1.5");
}

TEST_F(NiftiRead, ExtensionAndTrailingBytesReadFine) {
    RawSpec s;
    s.dim[1] = 3, s.dim[2] = 1, s.dim[3] = 1;
    s.extension = Bytes(32, 0);
    put<int32_t>(s.extension, 0, 32, false);  // esize
    put<int32_t>(s.extension, 4, 4, false);   // ecode: AFNI's
    std::memcpy(s.extension.data() + 8, "a comment", 9);
    s.data = encode(std::vector<float>{7, 8, 9}, false);
    s.trailing = Bytes(100, 0xAB);
    for (const char* ext : {".nii", ".nii.gz"}) {
        const std::string file = path(std::string("ext") + ext);
        write_raw(file, s);
        iss::VolumeHeader h;
        testing::internal::CaptureStderr();
        EXPECT_EQ(iss::read_image(file, &h).data, (std::vector<float>{7, 8, 9}));
        EXPECT_EQ(testing::internal::GetCapturedStderr(), "") << "a well-formed extension is not worth a warning";
        EXPECT_EQ(h.vox_offset, 352 + 32);
    }
}

// An extension that claims more bytes than lie before vox_offset overlaps the voxel data: read
// from vox_offset as other readers do, with a warning naming the file.
TEST_F(NiftiRead, ExtensionRunningIntoTheDataIsAWarning) {
    RawSpec s;
    s.dim[1] = 3, s.dim[2] = 1, s.dim[3] = 1;
    s.extension = Bytes(32, 0);
    put<int32_t>(s.extension, 0, 48, false);  // esize: 16 bytes past vox_offset
    put<int32_t>(s.extension, 4, 4, false);
    s.data = encode(std::vector<float>{7, 8, 9}, false);
    const std::string file = path("overlap.nii");
    write_raw(file, s);
    testing::internal::CaptureStderr();
    EXPECT_EQ(iss::read_image(file).data, (std::vector<float>{7, 8, 9}));
    const std::string warning = testing::internal::GetCapturedStderr();
    EXPECT_NE(warning.find(file + ": the extension at byte 352 (48 bytes) runs past vox_offset 384"), std::string::npos)
        << warning;
}

// Posteriors record their frames' labels in a comment extension: read back as written, in
// NIfTI-1 and NIfTI-2 (a dim past 32767), plain and gzip; an MGH file and a file written
// without them have none. Other readers see an ordinary extension before the voxels.
TEST_F(NiftiRead, PosteriorsRecordTheirFramesLabels) {
    const std::vector<int32_t> labels{0, 24, 2};
    for (const iss::Grid& g : {test_grid(), test_grid(32768, 1, 1)}) {
        const iss::Image post = ramp_image(g, 3);
        for (const char* ending : {".nii", ".nii.gz"}) {
            const std::string file = path(iss::cat("post", g.dim[0], ending));
            iss::write_posteriors(file, post, nullptr, labels);
            iss::VolumeHeader h;
            testing::internal::CaptureStderr();
            EXPECT_EQ(iss::read_image(file, &h).data, post.data) << file;
            EXPECT_EQ(testing::internal::GetCapturedStderr(), "") << file;
            EXPECT_EQ(h.version, g.dim[0] > 32767 ? 2 : 1) << file;
            EXPECT_EQ(h.frame_labels, labels) << file;
            EXPECT_EQ(h.vox_offset, (h.version == 1 ? 352 : 544) + 64) << file << ": the record takes 64 bytes";
        }
    }
    iss::write_posteriors(path("plain.nii"), ramp_image(test_grid(), 3));
    EXPECT_TRUE(iss::read_volume_header(path("plain.nii")).frame_labels.empty());
    iss::write_posteriors(path("post.mgz"), ramp_image(test_grid(), 3), nullptr, labels);
    EXPECT_TRUE(iss::read_volume_header(path("post.mgz")).frame_labels.empty()) << "MGH has no place for them";
    EXPECT_THROW(iss::write_posteriors(path("two.nii"), ramp_image(test_grid(), 3), nullptr, {0, 1}), iss::Error);
}

// A record that does not fit its file is reported, naming the file, for a reader of posteriors
// to refuse (read_posteriors); the file itself still reads, as a segmentation saved with a
// posteriors' header would. A big-endian record is read in its byte order; another tool's
// comment, even one that mentions the key, is left alone.
TEST_F(NiftiRead, ABrokenFrameLabelsRecordIsReported) {
    auto comment = [](const std::string& text, bool big_endian) {
        Bytes e((8 + text.size() + 1 + 15) / 16 * 16, 0);
        put<int32_t>(e, 0, int32_t(e.size()), big_endian);
        put<int32_t>(e, 4, 6, big_endian);  // ecode: NIFTI_ECODE_COMMENT
        std::memcpy(e.data() + 8, text.data(), text.size());
        return e;
    };
    RawSpec s;
    s.dim[0] = 4, s.dim[1] = 2, s.dim[2] = 1, s.dim[3] = 1, s.dim[4] = 2;
    s.big_endian = true;
    s.data = encode(std::vector<float>{0.1f, 0.2f, 0.9f, 0.8f}, true);
    s.extension = comment(R"({"infant_synthseg_frame_labels": [3, 7]})", true);
    write_raw(path("big.nii"), s);
    EXPECT_EQ(iss::read_volume_header(path("big.nii")).frame_labels, (std::vector<int32_t>{3, 7}));
    for (const char* text : {"a comment naming no labels", R"(labels: "infant_synthseg_frame_labels")"}) {
        s.extension = comment(text, true);
        write_raw(path("other.nii"), s);
        const iss::VolumeHeader h = iss::read_volume_header(path("other.nii"));
        EXPECT_TRUE(h.frame_labels.empty() && h.frame_labels_problem.empty()) << text;
    }

    const std::map<std::string, std::string> broken{
        {R"({"infant_synthseg_frame_labels": [3]})", "lists 1 labels for 2 frames"},
        {R"({"infant_synthseg_frame_labels": [3, 3]})", "lists label 3 twice"},
        {R"({"infant_synthseg_frame_labels": [3, 2.5]})", "holds 2.5, not an integer label"},
        {R"({"infant_synthseg_frame_labels": [3, "7"]})", "holds string, not an integer label"},
        {R"({"infant_synthseg_frame_labels": [3, 4294967296]})", "holds 4294967296"},
        {R"({"infant_synthseg_frame_labels": [3, 18446744073709551615]})", "holds 18446744073709551615"},
        {R"({"infant_synthseg_frame_labels": [3, 7], "x": 1})", "is not {\"infant_synthseg_frame_labels\": [labels]}"},
        {R"({"infant_synthseg_frame_labels": 3})", "is not {"},
        {R"({"infant_synthseg_frame_labels": [3, 7], "infant_synthseg_frame_labels": [7, 3]})", "given twice"},
        {R"({"infant_synthseg_frame_labels": [3, 7)", "is not valid JSON"},
    };
    auto expect_problem = [&](const std::string& file, const std::string& fragment) {
        iss::VolumeHeader h;
        EXPECT_EQ(iss::read_image(file, &h).data.size(), 4u) << "the file still reads";
        EXPECT_TRUE(h.frame_labels.empty());
        EXPECT_NE(h.frame_labels_problem.find(file + ": its extension recording the frames' labels"), std::string::npos)
            << h.frame_labels_problem;
        EXPECT_NE(h.frame_labels_problem.find(fragment), std::string::npos) << h.frame_labels_problem;
    };
    for (const auto& [text, fragment] : broken) {
        SCOPED_TRACE(text);
        s.extension = comment(text, true);
        write_raw(path("broken.nii"), s);
        expect_problem(path("broken.nii"), fragment);
    }
    const Bytes one = comment(R"({"infant_synthseg_frame_labels": [3, 7]})", true);
    s.extension = one;
    s.extension.insert(s.extension.end(), one.begin(), one.end());
    write_raw(path("twice.nii"), s);
    EXPECT_NE(iss::read_volume_header(path("twice.nii"))
                  .frame_labels_problem.find(path("twice.nii") + ": two extensions record the frames' labels"),
              std::string::npos);

    // A pair keeps its extensions in the .hdr, after the flag (nibabel saves a pair so): the
    // record is read there too, and one cut short is a warning, as in a single file.
    s.pair = true;
    s.extension = one;
    write_raw(path("pair.hdr"), s);
    EXPECT_EQ(iss::read_volume_header(path("pair.hdr")).frame_labels, (std::vector<int32_t>{3, 7}));
    s.extension = comment(R"({"infant_synthseg_frame_labels": [3]})", true);
    write_raw(path("pair.hdr"), s);
    EXPECT_NE(iss::read_volume_header(path("pair.hdr")).frame_labels_problem.find("lists 1 labels for 2 frames"),
              std::string::npos);
    s.extension = one;
    put<int32_t>(s.extension, 0, int32_t(one.size()) + 16, true);  // claims 16 bytes past the file's end
    write_raw(path("pair.hdr"), s);
    testing::internal::CaptureStderr();
    EXPECT_TRUE(iss::read_volume_header(path("pair.hdr")).frame_labels.empty());
    const std::string warned = testing::internal::GetCapturedStderr();
    EXPECT_NE(warned.find(path("pair.hdr") + ": the extension at byte 352 (80 bytes) runs past the end of the file"),
              std::string::npos)
        << warned;
}

TEST_F(NiftiRead, HeaderImagePair) {
    for (int version : {1, 2}) {
        RawSpec s;
        s.version = version;
        s.pair = true;
        s.dim[1] = 3, s.dim[2] = 1, s.dim[3] = 1;
        s.data = encode(std::vector<float>{1, 2, 3}, true);
        s.big_endian = true;
        const std::string file = path(iss::cat("pair", version, ".hdr"));
        write_raw(file, s);
        iss::VolumeHeader h;
        EXPECT_EQ(iss::read_image(file, &h).data, (std::vector<float>{1, 2, 3}));
        EXPECT_FALSE(h.single_file);
    }
}

// NAME.HDR with NAME.IMG, as some scanners' exports name a pair.
TEST_F(NiftiRead, UpperCasePairReads) {
    RawSpec s;
    s.pair = true;
    s.dim[1] = 3, s.dim[2] = 1, s.dim[3] = 1;
    s.data = encode(std::vector<float>{1, 2, 3}, false);
    write_raw(path("lower.hdr"), s);
    std::filesystem::rename(path("lower.hdr"), path("UP.HDR"));
    std::filesystem::rename(path("lower.img"), path("UP.IMG"));
    EXPECT_EQ(iss::read_image(path("UP.HDR")).data, (std::vector<float>{1, 2, 3}));
    expect_input_error([&] { iss::read_image(path("UP.IMG")); }, path("UP.IMG"), "give its .hdr");
}

// A 100 um scan stored in metres has a determinant of 1e-12 before the conversion to mm: it is no
// less regular than one in mm (it was refused as singular).
TEST_F(NiftiRead, TinyVoxelsInMetresAreNotSingular) {
    RawSpec s;
    s.data = encode(std::vector<float>(24, 1.0f), false);
    s.xyzt_units = NIFTI_UNITS_METER;
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) s.srow[r][c] = r == c ? 1e-4 : 0.0;
    for (int i = 1; i <= 3; ++i) s.pixdim[i] = 1e-4;
    write_raw(path("tiny.nii"), s);
    iss::VolumeHeader h;
    const iss::Image image = iss::read_image(path("tiny.nii"), &h);
    EXPECT_NEAR(image.grid.affine.m[0][0], 0.1, 1e-6);  // stored as float32
    EXPECT_NEAR(h.pixdim[3], 0.1, 1e-6);
}

// A volume that cannot fit in memory is refused, naming the file, before it is allocated (a 1 MB
// gzip file can describe 1024^3 voxels).
TEST_F(NiftiRead, AVolumeBeyondMemoryIsRefusedBeforeAllocation) {
    iss::VolumeHeader h;
    h.data_path = "big.nii.gz";
    h.dim = {3, 1024, 1024, 1024, 1, 1, 1, 1};
    const size_t gib = size_t(1) << 30;
    EXPECT_NO_THROW(iss::require_memory_for_volume(h, 4, 64 * gib));
    expect_input_error([&] { iss::require_memory_for_volume(h, 8, 8 * gib); }, "big.nii.gz",
                       "voxels need 8589934592 bytes");
}

TEST_F(NiftiRead, AffinePrecedence) {
    RawSpec s;
    s.dim[1] = 2, s.dim[2] = 2, s.dim[3] = 2;
    s.data = encode(std::vector<float>(8, 1.0f), false);
    // qform only: 180 degrees about z (quaternion d = 1) gives LPS.
    s.sform_code = 0, s.qform_code = 1;
    s.quatern[2] = 1;
    s.qoffset[0] = 5;
    const std::string q = path("q.nii");
    write_raw(q, s);
    iss::VolumeHeader h = iss::read_volume_header(q);
    EXPECT_EQ(h.affine_source, "qform");
    EXPECT_EQ(iss::orientation_code(h.affine), "LPS");
    EXPECT_DOUBLE_EQ(h.affine.m[0][0], -1.5);
    EXPECT_DOUBLE_EQ(h.affine.m[0][3], 5);
    // qfac (pixdim[0]) -1 mirrors the third axis; 0 and 5 read as 1, as every reader does; -0.5
    // is refused: nifti_clib reads -1 and nibabel 1, mirror images (read as RAI, silently).
    for (const double qfac : {-1.0, 0.0, 5.0}) {
        s.pixdim[0] = qfac;
        write_raw(q, s);
        EXPECT_EQ(iss::orientation_code(iss::read_volume_header(q).affine), qfac < 0 ? "LPI" : "LPS") << qfac;
    }
    s.pixdim[0] = -0.5;
    write_raw(q, s);
    expect_input_error([&] { iss::read_volume_header(q); }, q,
                       "pixdim[0] (the qform's qfac) is -0.5, neither 1 nor -1");
    s.sform_code = 2;  // beside an sform: read by it, and the qform not passed on to outputs
    write_raw(q, s);
    const iss::VolumeHeader with_sform = iss::read_volume_header(q);
    EXPECT_EQ(with_sform.affine_source, "sform");
    EXPECT_FALSE(with_sform.qform_usable);
    // Both usable, in other voxel orders (sform LAS, qform LPS): read by the sform, and said,
    // since a tool reading the qform shows it otherwise. The same order (qform LAS: 180 degrees
    // about y, qfac -1) is not.
    s.pixdim[0] = 1;
    write_raw(q, s);
    auto warned = [&] {
        ::testing::internal::CaptureStderr();
        EXPECT_EQ(iss::orientation_code(iss::read_volume_header(q).affine), "LAS");
        return ::testing::internal::GetCapturedStderr();
    };
    EXPECT_NE(warned().find(q + ": its sform (LAS) and qform (LPS) disagree on the voxel order; the sform is read"),
              std::string::npos);
    s.quatern[1] = 1, s.quatern[2] = 0, s.pixdim[0] = -1;
    write_raw(q, s);
    EXPECT_EQ(warned(), "");
    // One transform at 45 degrees about z, stored twice with float noise either side of it: the
    // orders differ (RAS, ALS) but the transforms agree to 1e-5 mm, so nothing is said.
    {
        RawSpec r = s;
        r.pixdim[0] = 1;
        const double pi = std::acos(-1.0), sform_angle = (45 - 1e-4) * pi / 180, qform_angle = (45 + 1e-4) * pi / 180;
        const double size[3] = {1.5, 2, 2.5};
        const double column[3][3] = {{std::cos(sform_angle), std::sin(sform_angle), 0},
                                     {-std::sin(sform_angle), std::cos(sform_angle), 0},
                                     {0, 0, 1}};
        for (int row = 0; row < 3; ++row) {
            for (int c = 0; c < 3; ++c) r.srow[row][c] = column[c][row] * size[c];
            r.srow[row][3] = 0;
        }
        r.quatern[0] = 0, r.quatern[1] = 0, r.quatern[2] = std::sin(qform_angle / 2);
        r.qoffset[0] = r.qoffset[1] = r.qoffset[2] = 0;
        const std::string diagonal = path("diagonal.nii");
        write_raw(diagonal, r);
        ::testing::internal::CaptureStderr();
        const iss::VolumeHeader d = iss::read_volume_header(diagonal);
        EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
        EXPECT_EQ(iss::orientation_code(d.affine), "RAS");
        // In metres, 0.4 mm voxels mirrored differ by 0.0008 of the header's units: still said.
        RawSpec m = r;
        m.xyzt_units = NIFTI_UNITS_METER;
        for (int i = 1; i <= 3; ++i) m.pixdim[i] = 0.0004;
        for (int row = 0; row < 3; ++row)
            for (int c = 0; c < 4; ++c) m.srow[row][c] = row == c ? (row == 0 ? -0.0004 : 0.0004) : 0;
        m.quatern[2] = 0;
        const std::string metres = path("metres.nii");
        write_raw(metres, m);
        ::testing::internal::CaptureStderr();
        EXPECT_EQ(iss::orientation_code(iss::read_volume_header(metres).affine), "LAS");
        EXPECT_NE(::testing::internal::GetCapturedStderr().find("its sform (LAS) and qform (RAS) disagree"),
                  std::string::npos);
    }
    s.quatern[1] = 0, s.quatern[2] = 1;
    s.sform_code = 0, s.pixdim[0] = 1;
    // Neither: pixdim scaling, with a warning (left and right are a guess; nibabel guesses LAS).
    s.qform_code = 0;
    const std::string p = path("p.nii");
    write_raw(p, s);
    ::testing::internal::CaptureStderr();
    h = iss::read_volume_header(p);
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find(p + ": no qform or sform: its orientation is unknown, read as RAS"), std::string::npos) << err;
    EXPECT_EQ(h.affine_source, "pixdim");
    EXPECT_TRUE(h.affine.approx_equal(iss::Mat4::scaling(1.5, 2, 2.5), 1e-12));
}

TEST(NiftiOrientation, Codes) {
    EXPECT_EQ(iss::orientation_code(iss::Mat4::identity()), "RAS");
    EXPECT_EQ(iss::orientation_code(iss::Mat4::scaling(-1, 1, 1)), "LAS");
    iss::Mat4 lia;  // FreeSurfer conformed: x <- -i, y <- k, z <- -j
    lia.m[0][0] = -1, lia.m[1][1] = 0, lia.m[2][2] = 0, lia.m[1][2] = 1, lia.m[2][1] = -1;
    EXPECT_EQ(iss::orientation_code(lia), "LIA");
    EXPECT_EQ(iss::orientation_code(oblique_affine()), "LAS");
}

// --- bad input: one InputError naming the file --------------------------------------------------

class NiftiBadInput : public TempDirTest {
protected:
    RawSpec good() const {
        RawSpec s;
        s.data = encode(std::vector<float>(24, 1.0f), false);
        return s;
    }
    std::string write(const std::string& name, const RawSpec& s) {
        const std::string file = path(name);
        write_raw(file, s);
        return file;
    }
};

TEST_F(NiftiBadInput, NotAFile) {
    expect_bad(path("missing.nii"), "cannot open");
    fs::create_directories(path("dir.nii"));
    expect_bad(path("dir.nii"), "directory");
    write_bytes(path("empty.nii"), {});
    expect_bad(path("empty.nii"), "empty");
    write_bytes(path("empty.nii.gz"), {});
    expect_bad(path("empty.nii.gz"), "");
}

TEST_F(NiftiBadInput, Garbage) {
    Bytes junk(1000);
    for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<unsigned char>((i * 7919 + 13) % 251);
    write_bytes(path("junk.nii"), junk);
    expect_bad(path("junk.nii"), "sizeof_hdr");
    write_bytes(path("junk.nii.gz"), junk);
    expect_bad(path("junk.nii.gz"), "sizeof_hdr");
    // A .gz name with bytes that start like gzip but are not.
    Bytes fake = {0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    write_bytes(path("fake.nii"), fake);
    expect_bad(path("fake.nii"), "");
    // A table given as a volume is said to be text, on one line.
    const std::string table = "subject,2\n" + std::string(400, '1');
    write_bytes(path("table.nii"), Bytes(table.begin(), table.end()));
    expect_bad(path("table.nii"), "not a NIfTI file: it starts with text ('subject,...'), not a binary header");
}

TEST_F(NiftiBadInput, Truncated) {
    for (int version : {1, 2}) {
        RawSpec s = good();
        s.version = version;
        Bytes full = raw_header(s);
        full.insert(full.end(), 4, 0);
        full.insert(full.end(), s.data.begin(), s.data.end());
        // Plain: cut into the data, and into the header.
        const std::string cut = path(iss::cat("cut", version, ".nii"));
        write_bytes(cut, Bytes(full.begin(), full.end() - 10));
        expect_bad(cut, "truncated");
        const std::string cut_header = path(iss::cat("cuthdr", version, ".nii"));
        write_bytes(cut_header, Bytes(full.begin(), full.begin() + 200));
        expect_bad(cut_header, "truncated header");
        // Gzip of a short file: the read comes up short and says how much is missing.
        const std::string gz_short = path(iss::cat("short", version, ".nii.gz"));
        write_bytes(gz_short, Bytes(full.begin(), full.end() - 10));
        expect_bad(gz_short, "10 of 96 bytes");
        // A cut gzip stream.
        const std::string gz = path(iss::cat("full", version, ".nii.gz"));
        write_bytes(gz, full);
        Bytes comp = read_bytes(gz);
        const std::string gz_cut = path(iss::cat("gzcut", version, ".nii.gz"));
        write_bytes(gz_cut + ".tmp", Bytes(comp.begin(), comp.begin() + comp.size() / 2));
        fs::rename(gz_cut + ".tmp", gz_cut);
        expect_bad(gz_cut, "");
        // The stream's end is read: a changed CRC-32 is refused, and so is a stream cut before it.
        const std::string gz_check = path(iss::cat("gzcheck", version, ".nii.gz"));
        Bytes wrong_check = comp;
        wrong_check[comp.size() - 8] ^= 0x01;
        write_bytes(gz_check + ".tmp", wrong_check);
        fs::rename(gz_check + ".tmp", gz_check);
        expect_bad(gz_check, "incorrect data check");
        const std::string gz_unchecked = path(iss::cat("gzunchecked", version, ".nii.gz"));
        write_bytes(gz_unchecked + ".tmp", Bytes(comp.begin(), comp.end() - 8));
        fs::rename(gz_unchecked + ".tmp", gz_unchecked);
        expect_bad(gz_unchecked, "its gzip stream is cut short: it ends before its check (the CRC-32 of its data)");
    }
}

// A gzip stream's end read on a file of a scan's size, whose end zlib had not reached when the
// voxels were all read (gzread stopped there): a stream cut before its 8-byte trailer, or one
// byte of it, read as whole; a changed CRC-32 there passed where the input buffer ended before it.
TEST_F(NiftiBadInput, AGzipStreamsEndIsCheckedOnLargeFiles) {
    RawSpec s = good();
    s.datatype = NIFTI_TYPE_FLOAT32, s.bitpix = 32;
    s.dim[1] = 80, s.dim[2] = 80, s.dim[3] = 80;  // 2 MB of noise: about as much compressed
    std::vector<float> noise(80 * 80 * 80);
    uint32_t state = 12345;
    for (float& v : noise) v = float((state = state * 1664525u + 1013904223u) >> 8);
    s.data = encode(noise, false);
    const std::string whole = path("whole.nii.gz");
    write_raw(whole, s);
    const Bytes comp = read_bytes(whole);
    ASSERT_GT(comp.size(), size_t(1) << 20);
    EXPECT_EQ(iss::read_image(whole).data, noise);
    auto damaged = [&](const std::string& name, Bytes bytes) {
        write_bytes(path(name + ".tmp"), bytes);  // not .gz: the bytes as they are
        fs::rename(path(name + ".tmp"), path(name));
        return path(name);
    };
    for (const size_t cut : {size_t(8), size_t(3), size_t(1)})
        expect_bad(damaged(iss::cat("cut", cut, ".nii.gz"), Bytes(comp.begin(), comp.end() - ptrdiff_t(cut))),
                   "its gzip stream is cut short");
    for (const size_t from_end : {size_t(8), size_t(5), size_t(1)}) {  // the CRC-32, then the length
        Bytes flipped = comp;
        flipped[comp.size() - from_end] ^= 0x10;
        expect_bad(damaged(iss::cat("flip", from_end, ".nii.gz"), flipped),
                   from_end > 4 ? "incorrect data check" : "incorrect length check");
    }
    // Two members, and bytes after the last: read as one stream, the bytes ignored (as zlib's
    // gzread and nibabel read them).
    Bytes twice = comp;
    Bytes empty_member;
    {
        const std::string empty_gz = path("empty.gz");
        write_bytes(empty_gz, Bytes());
        empty_member = read_bytes(empty_gz);
    }
    twice.insert(twice.end(), empty_member.begin(), empty_member.end());
    twice.insert(twice.end(), 100, 0);
    EXPECT_EQ(iss::read_image(damaged("members.nii.gz", twice)).data, noise);
}

// The gzip reader's edges: a stream cut inside the header says so (it said "0 bytes"), a pair's
// .hdr.gz is read to its end too, a stray partial member after the data's is left (as gzread left
// it), and a pair's .img is raw whatever its first bytes (an int16 -29921 is the gzip magic).
TEST_F(NiftiBadInput, GzipHeadersPairsAndStrayMembers) {
    const std::string whole = write("whole.nii.gz", good());
    const Bytes comp = read_bytes(whole);
    auto raw_file = [&](const std::string& name, const Bytes& bytes) {
        write_bytes(path(name + ".tmp"), bytes);  // not .gz: the bytes as they are
        fs::rename(path(name + ".tmp"), path(name));
        return path(name);
    };
    expect_bad(raw_file("head.nii.gz", Bytes(comp.begin(), comp.begin() + 12)),
               "its gzip stream is cut short inside the header");
    Bytes stray = comp;
    stray.insert(stray.end(), {0x1f, 0x8b, 0x08});
    EXPECT_EQ(iss::read_image(raw_file("stray.nii.gz", stray)).data, iss::read_image(whole).data);
    // The same where the data's member is checked after the voxels are read (its end not yet
    // inflated then: bytes after the voxels inside it), with junk after a gzip magic behind it.
    RawSpec extra = good();
    extra.trailing = Bytes(16, 0);
    const Bytes extra_comp = read_bytes(write("extra.nii.gz", extra));
    for (const Bytes& tail : {Bytes{0x1f, 0x8b, 0x08}, Bytes{0x1f, 0x8b, 'G', 'A', 'R', 'B', 'A', 'G', 'E'}}) {
        Bytes with_tail = extra_comp;
        with_tail.insert(with_tail.end(), tail.begin(), tail.end());
        EXPECT_EQ(iss::read_image(raw_file("extra_stray.nii.gz", with_tail)).data, iss::read_image(whole).data);
    }

    RawSpec pair = good();
    pair.pair = true;
    const std::string hdr_gz = write("pair.hdr.gz", pair);
    EXPECT_EQ(iss::read_image(hdr_gz).data, iss::read_image(whole).data);
    const Bytes hdr = read_bytes(hdr_gz);
    fs::remove(hdr_gz);
    raw_file("pair.hdr.gz", Bytes(hdr.begin(), hdr.end() - 4));
    expect_bad(hdr_gz, "its gzip stream is cut short");

    pair.datatype = NIFTI_TYPE_INT16, pair.bitpix = 16;
    std::vector<int16_t> voxels(24, 7);
    voxels[0] = -29921;  // stored 1f 8b
    pair.data = encode(voxels, false);
    const std::string hdr_file = write("magic.hdr", pair);
    ASSERT_EQ(read_bytes(path("magic.img"))[0], 0x1f);
    EXPECT_EQ(iss::read_image(hdr_file).data[0], -29921.0f);
    // A compressed .img named .img (not of the raw size): still inflated, as gzread did.
    write_bytes(path("packed.img.gz"), pair.data);
    fs::copy_file(path("magic.hdr"), path("packed.hdr"));
    fs::rename(path("packed.img.gz"), path("packed.img"));
    EXPECT_EQ(iss::read_image(path("packed.hdr")).data, iss::read_image(hdr_file).data);
}

TEST_F(NiftiBadInput, MagicAndSizeofHdr) {
    RawSpec s = good();
    s.magic = std::string("abc\0", 4);
    expect_bad(write("magic.nii", s), "bad magic");
    s = good();
    s.magic = std::string("n+2\0", 4);  // NIfTI-2 magic in a NIfTI-1 header
    expect_bad(write("magic12.nii", s), "bad magic");
    s = good();
    s.magic = std::string(4, '\0');  // Analyze 7.5: named as such, not as bad magic '????'
    expect_bad(write("analyze.nii", s), "an Analyze 7.5 header (no NIfTI magic), which does not record left and right");
    s = good();
    s.version = 2;
    s.magic = std::string("n+2\0\n\n\032\n", 8);
    expect_bad(write("magic2.nii", s), "text mode");
    const std::vector<float> good_voxels = iss::read_image(write("good.nii", good())).data;
    s.magic = std::string("n+2\0\0\0\0\0", 8);  // a writer that left them zero: read, as nibabel does
    EXPECT_EQ(iss::read_image(write("magic2zero.nii", s)).data, good_voxels);
    // sizeof_hdr alone stored in the other byte order: dim[0] decides, as in nifti_clib.
    s = good();
    const std::string odd = write("sizeof_swapped.nii", s);
    Bytes bytes = read_bytes(odd);
    std::reverse(bytes.begin(), bytes.begin() + 4);
    write_bytes(odd, bytes);
    EXPECT_EQ(iss::read_image(odd).data, good_voxels);
    s = good();
    s.sizeof_hdr = 349;
    expect_bad(write("sizeof.nii", s), "sizeof_hdr is 349");
}

TEST_F(NiftiBadInput, HeaderWithoutImage) {
    RawSpec s = good();
    s.pair = true;
    const std::string file = path("lonely.hdr");
    write_bytes(file, raw_header(s));
    expect_bad(file, "lonely.img");
}

TEST_F(NiftiBadInput, Dims) {
    for (int version : {1, 2}) {
        RawSpec s = good();
        s.version = version;
        s.dim[2] = 0;
        expect_bad(write(iss::cat("zero", version, ".nii"), s), "dim[2] is 0");
        s = good();
        s.version = version;
        s.dim[3] = -2;
        expect_bad(write(iss::cat("neg", version, ".nii"), s), "dim[3] is -2");
        for (int d0 : {0, 8, -1}) {
            s = good();
            s.version = version;
            s.dim[0] = d0;
            expect_bad(write(iss::cat("d0_", d0, "_", version, ".nii"), s), iss::cat("dim[0] is ", d0));
        }
    }
    // Products that overflow int64 (NIfTI-2) and that pass 2^31 voxels (NIfTI-1).
    RawSpec s = good();
    s.version = 2;
    s.dim[0] = 4;
    for (int i = 1; i <= 4; ++i) s.dim[i] = int64_t(1) << 62;
    expect_bad(write("overflow.nii", s), "2^31");
    s = good();
    s.dim[0] = 7;
    for (int i = 1; i <= 7; ++i) s.dim[i] = 32767;
    expect_bad(write("overflow1.nii.gz", s), "2^31");
    // Within the voxel limit but over 8 GiB: 2^30 float64 voxels.
    s = good();
    s.version = 2;
    s.datatype = NIFTI_TYPE_FLOAT64, s.bitpix = 64;
    s.dim[0] = 3, s.dim[1] = 1024, s.dim[2] = 1024, s.dim[3] = 2048;
    expect_bad(write("toobig.nii", s), "8 GiB");
    // Within every limit, but a tiny .gz cannot hold 1 GiB: refused before allocating.
    s = good();
    s.datatype = NIFTI_TYPE_UINT8, s.bitpix = 8;
    s.dim[1] = 1024, s.dim[2] = 1024, s.dim[3] = 1024;
    expect_bad(write("bomb.nii.gz", s), "cannot hold");
    expect_bad(write("bomb.nii", s), "truncated");
}

TEST_F(NiftiBadInput, VoxOffset) {
    RawSpec s = good();
    s.vox_offset = 0;  // unset: readers disagree on where the data starts (nibabel 0, nifti_clib 348)
    expect_bad(write("zero.nii", s), "vox_offset is 0, so where the voxel data starts is unknown");
    s.vox_offset = 100;
    expect_bad(write("inside.nii", s), "vox_offset is 100");
    s.vox_offset = 348;  // inside the extension flag
    expect_bad(write("flag.nii", s), "vox_offset is 348");
    s.version = 2;
    s.vox_offset = 540;
    expect_bad(write("inside2.nii", s), "vox_offset is 540");
    s = good();
    s.vox_offset = 1e6;
    expect_bad(write("past.nii", s), "past the end");
    expect_bad(write("past.nii.gz", s), "");
    s.vox_offset = 352.5;
    expect_bad(write("frac.nii", s), "vox_offset");
}

TEST_F(NiftiBadInput, VoxelSize) {
    const double bad[] = {0.0, std::nan(""), -1.0, INFINITY};
    for (int version : {1, 2})
        for (int i = 0; i < 4; ++i) {
            RawSpec s = good();
            s.version = version;
            s.pixdim[2] = bad[i];
            // Without an sform the voxel size makes the grid (qform or pixdim alone): refused.
            s.sform_code = 0;
            for (const int qform : {0, 1}) {
                s.qform_code = qform;
                expect_bad(write(iss::cat("pixdim", i, "_", version, "_q", qform, ".nii"), s), "pixdim[2]");
            }
            // An sform does not use it (MATLAB's toolbox writes -1 for a flip): its own column
            // lengths are the voxel size, with a warning.
            s.sform_code = 2;
            const std::string file = write(iss::cat("pixdim", i, "_", version, "_s.nii"), s);
            testing::internal::CaptureStderr();
            const iss::VolumeHeader h = iss::read_volume_header(file);
            const std::string warned = testing::internal::GetCapturedStderr();
            EXPECT_NE(warned.find("taking the sform's instead"), std::string::npos) << warned;
            EXPECT_EQ(h.affine_source, "sform");
            EXPECT_DOUBLE_EQ(h.pixdim[1], 1.5);
            EXPECT_DOUBLE_EQ(h.pixdim[2], 2);
            EXPECT_DOUBLE_EQ(h.pixdim[3], 2.5);
        }
}

// A header in metres or microns: the grid is in mm (affine and voxel size), and an output made
// like it goes back to its units, so that it keeps the input's affine as the file states it.
// An output on its input's grid says where it is as the input said it: no transform when the
// input had none (every reader then falls back on pixdim alike for both; nibabel's fallback is
// not NIfTI's method 1), and the input's own qform when it disagrees with the sform.
TEST_F(NiftiRead, OutputsOnTheInputsGridKeepItsTransforms) {
    auto header_field = [](const Bytes& raw, size_t offset) {
        float v = 0;
        std::memcpy(&v, raw.data() + offset, 4);
        return v;
    };
    auto code = [](const Bytes& raw, size_t offset) {
        int16_t v = 0;
        std::memcpy(&v, raw.data() + offset, 2);
        return v;
    };
    RawSpec s;
    s.data = encode(std::vector<float>(24, 1.0f), false);
    s.sform_code = 0, s.qform_code = 0;
    write_raw(path("none.nii"), s);
    iss::VolumeHeader h;
    const iss::Image none = iss::read_image(path("none.nii"), &h);
    iss::write_image(path("none_out.nii"), none, &h);
    const Bytes none_out = read_bytes(path("none_out.nii"));
    EXPECT_EQ(code(none_out, offsetof(nifti_1_header, sform_code)), 0);
    EXPECT_EQ(code(none_out, offsetof(nifti_1_header, qform_code)), 0);
    EXPECT_EQ(header_field(none_out, offsetof(nifti_1_header, pixdim) + 8), 2.0f);
    EXPECT_TRUE(iss::read_volume_header(path("none_out.nii")).affine.approx_equal(h.affine, 1e-9));

    // A qform 5 mm and 180 degrees away from the sform: kept as stored.
    s.sform_code = 2, s.qform_code = 1;
    s.quatern[2] = 1;
    s.qoffset[0] = 5;
    write_raw(path("both.nii"), s);
    const iss::Image both = iss::read_image(path("both.nii"), &h);
    iss::write_image(path("both_out.nii"), both, &h);
    const Bytes both_out = read_bytes(path("both_out.nii"));
    EXPECT_EQ(code(both_out, offsetof(nifti_1_header, qform_code)), 1);
    EXPECT_EQ(header_field(both_out, offsetof(nifti_1_header, quatern_d)), 1.0f);
    EXPECT_EQ(header_field(both_out, offsetof(nifti_1_header, qoffset_x)), 5.0f);
    EXPECT_EQ(code(both_out, offsetof(nifti_1_header, sform_code)), 2);
    EXPECT_TRUE(iss::read_volume_header(path("both_out.nii")).affine.approx_equal(h.affine, 1e-9));

    // On another grid the input's transforms do not apply: the output's own affine, both codes.
    iss::Grid other = both.grid;
    other.dim[0] += 1;
    iss::write_image(path("other_out.nii"), iss::Image(other), &h);
    const Bytes other_out = read_bytes(path("other_out.nii"));
    EXPECT_EQ(header_field(other_out, offsetof(nifti_1_header, qoffset_x)), 10.0f);
    EXPECT_EQ(code(other_out, offsetof(nifti_1_header, qform_code)), 1);
}

// A 2-D scan's single-volume outputs on its grid are 2-D as nibabel writes them (dim[0] 2), so
// that a tool comparing shapes sees the same one; posteriors stay 4-D, another grid 3-D.
TEST_F(NiftiRead, A2DInputsOutputsOnItsGridAre2D) {
    RawSpec s;
    s.dim[0] = 2, s.dim[3] = 1;
    s.data = encode(std::vector<float>(12, 1.0f), false);
    write_raw(path("flat.nii"), s);
    iss::VolumeHeader h;
    const iss::Image flat = iss::read_image(path("flat.nii"), &h);
    ASSERT_EQ(h.dim[0], 2);
    iss::write_image(path("flat_image.nii"), flat, &h);
    iss::write_labels(path("flat_labels.nii.gz"), iss::LabelMap(flat.grid, 1), &h);
    for (const char* name : {"flat_image.nii", "flat_labels.nii.gz"}) {
        const iss::VolumeHeader out = iss::read_volume_header(path(name));
        EXPECT_EQ(out.dim[0], 2) << name;
        EXPECT_TRUE(out.grid().same_as(h.grid())) << name;
    }
    iss::write_posteriors(path("flat_post.nii"), iss::Image(flat.grid, 2), &h);
    EXPECT_EQ(iss::read_volume_header(path("flat_post.nii")).dim[0], 4);
    iss::Grid other = flat.grid;
    other.dim[2] = 2;
    iss::write_image(path("flat_other.nii"), iss::Image(other), &h);
    EXPECT_EQ(iss::read_volume_header(path("flat_other.nii")).dim[0], 3);
}

TEST_F(NiftiRead, SpatialUnitsAreConvertedToMillimetres) {
    for (const auto& [units, per_mm] : {std::pair{NIFTI_UNITS_METER, 1e-3}, std::pair{NIFTI_UNITS_MICRON, 1e3}}) {
        SCOPED_TRACE(units);
        RawSpec s;
        s.data = encode(std::vector<float>(24, 1.0f), false);
        iss::Mat4 in_mm;
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 4; ++c) in_mm.m[r][c] = s.srow[r][c];
        s.xyzt_units = units | NIFTI_UNITS_SEC;
        for (auto& row : s.srow)
            for (double& v : row) v *= per_mm;
        for (int i = 1; i <= 3; ++i) s.pixdim[i] *= per_mm;
        s.qform_code = 1;  // the qform (identity rotation, a zero offset) loses to the sform
        const std::string file = path(iss::cat("units", units, ".nii"));
        write_raw(file, s);
        iss::VolumeHeader h;
        const iss::Image image = iss::read_image(file, &h);
        EXPECT_TRUE(image.grid.affine.approx_equal(in_mm, 1e-4)) << "not in mm";
        EXPECT_NEAR(h.pixdim[2], 2, 1e-6);
        const std::string out = path(iss::cat("out", units, ".nii"));
        iss::write_image(out, image, &h);
        iss::VolumeHeader back;
        const iss::Image again = iss::read_image(out, &back);
        EXPECT_EQ(back.xyzt_units, units | NIFTI_UNITS_SEC);
        EXPECT_TRUE(again.grid.affine.approx_equal(image.grid.affine, 1e-6));
        const Bytes raw = read_bytes(out);
        float srow_x0 = 0, pixdim2 = 0;
        std::memcpy(&srow_x0, raw.data() + offsetof(nifti_1_header, srow_x), 4);
        std::memcpy(&pixdim2, raw.data() + offsetof(nifti_1_header, pixdim) + 8, 4);
        EXPECT_NEAR(srow_x0, -1.5 * per_mm, 1e-6 * per_mm) << "the output is not in the input's units";
        EXPECT_NEAR(pixdim2, 2 * per_mm, 1e-6 * per_mm);
    }
}

TEST_F(NiftiBadInput, Datatypes) {
    struct Case {
        int code, bitpix;
        const char* name;
        const char* hint;  // the step the message names
    };
    for (const Case& c : {Case{DT_BINARY, 1, "binary", "store it as uint8"},
                          Case{NIFTI_TYPE_COMPLEX64, 64, "complex64", "one real number a voxel (take the magnitude)"},
                          Case{NIFTI_TYPE_COMPLEX128, 128, "complex128", "take the magnitude"},
                          Case{NIFTI_TYPE_RGB24, 24, "rgb24", "one number a voxel (convert colour to grey)"},
                          Case{NIFTI_TYPE_RGBA32, 32, "rgba32", "convert colour to grey"},
                          Case{NIFTI_TYPE_FLOAT128, 128, "float128", "store it as float64"}}) {
        RawSpec s = good();
        s.datatype = c.code, s.bitpix = c.bitpix;
        expect_bad(write(std::string(c.name) + ".nii", s), std::string(c.name) + " (code");
        expect_bad(write(std::string(c.name) + ".nii", s), c.hint);
    }
    RawSpec s = good();
    s.datatype = 999;
    expect_bad(write("unknown.nii", s), "unknown datatype code 999");
    // A bitpix that disagrees with the datatype: read by the datatype (as nibabel and nifti_clib
    // do), with a warning.
    s = good();
    s.bitpix = 16;
    const std::string file = write("bitpix.nii", s);
    testing::internal::CaptureStderr();
    const iss::Image read = iss::read_image(file);
    const std::string warning = testing::internal::GetCapturedStderr();
    EXPECT_EQ(read.data.size(), size_t(4 * 3 * 2));
    EXPECT_NE(warning.find(file + ": bitpix is 16 but datatype float32 has 32 bits"), std::string::npos) << warning;
}

TEST_F(NiftiBadInput, TransformCodesAndAffine) {
    RawSpec s = good();
    s.sform_code = 9;
    expect_bad(write("sform.nii", s), "sform_code is 9");
    s = good();
    s.qform_code = -1;
    expect_bad(write("qform.nii", s), "qform_code is -1");
    s = good();
    s.srow[1][1] = 0;  // a voxel axis with no extent
    expect_bad(write("singular.nii", s), "singular");
    s = good();
    s.srow[0][3] = std::nan("");
    expect_bad(write("nanaffine.nii", s), "non-finite");
}

// --- writing failures leave nothing -------------------------------------------------------------

class NiftiWrite : public TempDirTest {};

TEST_F(NiftiWrite, FailureLeavesNothing) {
    const iss::Image img(test_grid(), 1, 2.0f);
    const std::string missing_dir = path("no-such-dir/out.nii.gz");
    expect_input_error([&] { iss::write_image(missing_dir, img); }, missing_dir, "cannot create");
    EXPECT_FALSE(fs::exists(path("no-such-dir")));
    // The target is a directory: refused before anything is written.
    fs::create_directories(path("taken.nii"));
    expect_input_error([&] { iss::write_image(path("taken.nii"), img); }, path("taken.nii"), "is a directory");
    std::vector<std::string> left;
    for (const auto& e : fs::directory_iterator(dir_)) left.push_back(e.path().filename().string());
    EXPECT_EQ(left, std::vector<std::string>{"taken.nii"});
    const std::string bad_ext = path("out.img");
    expect_input_error([&] { iss::write_image(bad_ext, img); }, bad_ext, ".nii");
    EXPECT_FALSE(fs::exists(bad_ext));
    // Values and dims that disagree are refused before anything is created.
    iss::Image broken(test_grid(), 1, 1.0f);
    broken.data.pop_back();
    expect_input_error([&] { iss::write_image(path("broken.nii"), broken); }, path("broken.nii"), "values");
    EXPECT_FALSE(fs::exists(path("broken.nii")));
}

TEST_F(NiftiWrite, OverwritesExistingFile) {
    const std::string file = path("x.nii");
    iss::write_image(file, iss::Image(test_grid(), 1, 1.0f));
    iss::write_image(file, iss::Image(test_grid(), 1, 3.0f));
    EXPECT_EQ(iss::read_image(file).data.front(), 3.0f);
}

// --- the command line -----------------------------------------------------------------------------

namespace {

// The value after "<key>:" on the first line that has it.
std::string line_value(const std::string& text, const std::string& key) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        const size_t at = line.find(key + ":");
        if (at != std::string::npos) {
            std::string v = line.substr(at + key.size() + 1);
            v.erase(0, v.find_first_not_of(' '));
            return v;
        }
    }
    return "";
}

}  // namespace

class CliInfo : public TempDirTest {
protected:
    RunResult info(const std::string& args) {
        return run_command(iss::test::cli_path() + " info " + args);
    }
};

TEST_F(CliInfo, GoodFile) {
    iss::LabelMap labels(test_grid(), 1, 0);
    for (size_t i = 0; i < labels.data.size(); ++i) labels.data[i] = int32_t(i % 3) * 10;
    const std::string file = path("labels.nii.gz");
    iss::write_labels(file, labels);
    const RunResult r = info(shell_quote(file));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(line_value(r.out, "dims"), "4 x 3 x 2");
    EXPECT_EQ(line_value(r.out, "voxel size"), "1.5 x 2 x 2.5 mm");
    EXPECT_EQ(line_value(r.out, "datatype"), "uint8");
    EXPECT_EQ(line_value(r.out, "orientation"), "RAS");
    EXPECT_EQ(line_value(r.out, "range"), "min 0, max 20");
    EXPECT_EQ(line_value(r.out, "labels"), "3");
    EXPECT_NE(r.out.find("    0 8\n    10 8\n    20 8\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("affine source: sform"), std::string::npos);
    EXPECT_NE(r.out.find("    1.500000     0.000000     0.000000    10.000000"), std::string::npos) << r.out;
}

// Posteriors that record their frames' labels say them.
TEST_F(CliInfo, RecordedFrameLabelsAreShown) {
    iss::write_posteriors(path("post.nii.gz"), ramp_image(test_grid(), 3), nullptr, {0, 41, 2});
    const RunResult r = info(shell_quote(path("post.nii.gz")));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(line_value(r.out, "frame labels"), "0,41,2 (recorded with the posteriors)");
    iss::write_posteriors(path("plain.nii.gz"), ramp_image(test_grid(), 3));
    EXPECT_EQ(info(shell_quote(path("plain.nii.gz"))).out.find("frame labels"), std::string::npos);
}

// "--" ends the options: a file whose name starts with "--" is read after it, as getopt has it.
TEST_F(CliInfo, ADoubleDashEndsTheOptions) {
    iss::write_labels(path("--odd.nii.gz"), iss::LabelMap(test_grid(), 1, 0));
    const RunResult r =
        run_command("cd " + shell_quote(dir_.string()) + " && " + iss::test::cli_path() + " info -- --odd.nii.gz");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(line_value(r.out, "dims"), "4 x 3 x 2");
    EXPECT_EQ(r.out.find("--:"), std::string::npos) << r.out;
    EXPECT_EQ(info("-- --help").status, 2) << "a file named --help, which is not there";
}

// The voxel size is the affine's (what every command works with); pixdim, where an sform says
// otherwise, is a note beside it.
TEST_F(CliInfo, VoxelSizeIsTheAffinesWithADisagreeingPixdimNoted) {
    RawSpec s;
    s.data = Bytes(24 * 4, 0);
    const std::string agree = path("agree.nii");
    s.pixdim[1] = 1.5;
    write_raw(agree, s);
    EXPECT_EQ(line_value(info(shell_quote(agree)).out, "voxel size"), "1.5 x 2 x 2.5 mm");
    const std::string differ = path("differ.nii");
    s.pixdim[1] = 1, s.pixdim[2] = 1, s.pixdim[3] = 1;
    write_raw(differ, s);
    EXPECT_EQ(line_value(info(shell_quote(differ)).out, "voxel size"),
              "1.5 x 2 x 2.5 mm (from the affine; pixdim says 1 x 1 x 1)");
}

TEST_F(CliInfo, NanCountAndNoLabelsForFractions) {
    iss::Image img(test_grid(), 1, 0.5f);
    img.data[3] = std::nanf("");
    img.data[4] = -2.25f;
    const std::string file = path("nan.nii");
    iss::write_image(file, img);
    const RunResult r = info(shell_quote(file));
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(line_value(r.out, "range"), "min -2.25, max 0.5");
    EXPECT_EQ(line_value(r.out, "NaN"), "1");
    EXPECT_EQ(r.out.find("labels:"), std::string::npos);
}

// An integer scan (int16, as most converters write T1s) has thousands of distinct values: their
// number, not 47,000 lines of them.
TEST_F(CliInfo, AnIntegerScanIsNotListedAsLabels) {
    iss::Grid g;
    g.dim = {20, 20, 20};
    iss::LabelMap scan(g);
    for (size_t v = 0; v < scan.data.size(); ++v) scan.data[v] = int32_t(v % 1500);
    const std::string file = path("int16.nii.gz");
    iss::write_labels(file, scan);
    const RunResult r = info(shell_quote(file));
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(line_value(r.out, "labels"), "1500 distinct values (an integer image, not a label map?): not listed");
    EXPECT_LT(std::count(r.out.begin(), r.out.end(), '\n'), 30) << r.out.substr(0, 2000);
}

TEST_F(CliInfo, BadFileExitsTwoAfterTheOthers) {
    const std::string good = path("good.nii");
    iss::write_image(good, iss::Image(test_grid(), 1, 1.0f));
    const std::string bad = path("bad.nii");
    write_bytes(bad, Bytes(400, 7));
    const RunResult r = info(shell_quote(bad) + " " + shell_quote(good));
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("error"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.out.find(good), std::string::npos) << "the good file is still shown";

    const RunResult missing = info(shell_quote(path("nope.nii")));
    EXPECT_EQ(missing.status, 2);
    EXPECT_NE(missing.err.find("nope.nii"), std::string::npos);
}

// priors' .npy files and a folder of scans are described (they were "not a NIfTI file: sizeof_hdr
// is 1297436307" and "no model.safetensors in it").
TEST_F(CliInfo, NpyFilesAndFoldersOfScansAreDescribed) {
    iss::write_npy(path("prior_means.npy"), {2, 3}, {0, 50.5, 80, 0, 5, 7.25});
    iss::write_npy_labels(path("prior_labels.npy"), {0, 41, 2});
    RunResult r = info(shell_quote(path("prior_means.npy")) + " " + shell_quote(path("prior_labels.npy")));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(line_value(r.out, "format"), "NumPy array (.npy), dtype <f8, shape (2, 3)");
    EXPECT_EQ(line_value(r.out, "range"), "[0, 80]");
    EXPECT_EQ(line_value(r.out, "priors of labels"), "0,41,2 (prior_labels.npy beside it)");
    EXPECT_NE(r.out.find("dtype <i4, shape (3,)\n  range: [0, 41]\n  labels: 0,41,2\n"), std::string::npos) << r.out;
    // A label list in another order than the frames --labels takes it in (merge, clean): both said
    // (not of a priors run's columns).
    const std::string frames_line =
        "as merge's and clean's --labels (distinct, in FreeSurfer's order; import orders them by --channel-order)";
    EXPECT_EQ(r.out.find(frames_line), std::string::npos) << r.out;
    iss::write_npy_labels(path("frames.npy"), {0, 41, 2});
    EXPECT_EQ(line_value(info(shell_quote(path("frames.npy"))).out, frames_line), "0,2,41");
    // SynthSeg's label files repeat values: said once, distinct, and no warning here.
    std::vector<double> repeated{0, 41, 41, 2, 3};
    iss::write_npy(path("repeated.npy"), {5}, repeated);
    const RunResult dup = info(shell_quote(path("repeated.npy")));
    EXPECT_EQ(dup.err, "");
    EXPECT_EQ(line_value(dup.out, frames_line), "0,2,3,41");
    iss::write_npy_labels(path("sorted.npy"), {0, 2, 41});
    EXPECT_EQ(info(shell_quote(path("sorted.npy"))).out.find(frames_line), std::string::npos) << "the same order";
    iss::write_npy_labels(path("prior_labels.npy"), {0, 41});
    r = info(shell_quote(path("prior_means.npy")));
    EXPECT_EQ(line_value(r.out, "priors of labels"),
              "not those of prior_labels.npy beside it (2 labels for 3 columns)");

    // A folder of priors' files, and one holding only another run's temporary and a folder.
    r = info(shell_quote(dir_.string()));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find(path("prior_labels.npy") + "\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(path("prior_means.npy") + "\n"), std::string::npos) << r.out;
    fs::create_directories(path("leftovers/x.nii"));
    std::ofstream(path("leftovers/a.nii.gz.tmp-1.nii.gz")) << "x";
    r = info(shell_quote(path("leftovers")) + " " + shell_quote(path("prior_means.npy")));
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find(path("leftovers") + ": no model.safetensors in it"), std::string::npos) << r.err;
    EXPECT_NE(r.out.find(path("prior_means.npy")), std::string::npos) << "the others are still printed";
    fs::create_directories(path("scans"));
    iss::write_image(path("scans/a.nii.gz"), iss::Image(test_grid(), 1, 1.0f));
    write_bytes(path("scans/b.nii"), Bytes(400, 7));
    iss::write_image(path("scans/c.mgz"), iss::Image(test_grid(), 1, 2.0f));
    r = info(shell_quote(path("scans")));
    EXPECT_EQ(r.status, 2) << "b.nii is bad";
    EXPECT_NE(r.out.find(path("scans/a.nii.gz") + "\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(path("scans/c.mgz") + "\n"), std::string::npos) << "each file said on its own: " << r.out;
    EXPECT_NE(r.err.find(path("scans/b.nii")), std::string::npos) << r.err;
}

TEST_F(CliInfo, HelpAndUsage) {
    RunResult r = info("--help");
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("usage: infant-synthseg info FILE..."), std::string::npos);
    r = info("");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("no input file"), std::string::npos);
    r = info("--bogus");
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--bogus"), std::string::npos);
    // "help CMD" is "CMD --help".
    r = run_command(iss::test::cli_path() + " help info");
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("usage: infant-synthseg info FILE..."), std::string::npos) << r.out;
}

// `info` and nifti_tool read the same dims, datatype and voxel size.
TEST_F(CliInfo, AgreesWithNiftiTool) {
    if (std::system("command -v nifti_tool >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "nifti_tool is not on PATH (Debian package nifti-bin)";
    std::vector<std::string> files;
    {
        iss::Image img(test_grid(5, 6, 7), 3, 1.0f);
        img.grid.affine = oblique_affine();
        files.push_back(path("a.nii.gz"));
        iss::write_image(files.back(), img);
        files.push_back(path("wide.nii"));
        iss::write_image(files.back(), iss::Image(test_grid(33000, 1, 2), 1, 1.0f));
        RawSpec s;
        s.big_endian = true;
        s.datatype = NIFTI_TYPE_INT16, s.bitpix = 16;
        s.data = encode(std::vector<int16_t>(24, 3), true);
        files.push_back(path("be.nii"));
        write_raw(files.back(), s);
        s.version = 2;
        files.push_back(path("be2.nii.gz"));
        write_raw(files.back(), s);
    }
    for (const std::string& file : files) {
        SCOPED_TRACE(file);
        const RunResult ours = info(shell_quote(file));
        ASSERT_EQ(ours.status, 0) << ours.err;
        auto tool_fields = [&](const std::string& mode) {
            const RunResult tool = run_command("nifti_tool " + mode + " -infiles " + shell_quote(file));
            EXPECT_EQ(tool.status, 0) << tool.err;
            // nifti_tool rows: "  name  offset  nvals  values...".
            std::map<std::string, std::vector<double>> fields;
            std::istringstream in(tool.out);
            std::string line;
            while (std::getline(in, line)) {
                std::istringstream row(line);
                std::string name;
                long offset, count;
                if (!(row >> name >> offset >> count)) continue;
                std::vector<double> values;
                double v;
                while (row >> v) values.push_back(v);
                fields[name] = values;
            }
            return fields;
        };
        // -disp_hdr shows a byte-swapped header as raw, unswapped bytes; -disp_nim decodes it.
        auto fields = tool_fields("-disp_hdr");
        const double sizeof_hdr = fields["sizeof_hdr"].empty() ? 0 : fields["sizeof_hdr"][0];
        if (sizeof_hdr != 348 && sizeof_hdr != 540) fields = tool_fields("-disp_nim");
        ASSERT_EQ(fields["dim"].size(), 8u);
        std::string dims;
        for (int i = 1; i <= int(fields["dim"][0]); ++i)
            dims += (i > 1 ? " x " : "") + std::to_string(int64_t(fields["dim"][i]));
        EXPECT_EQ(line_value(ours.out, "dims"), dims);
        EXPECT_EQ(line_value(ours.out, "datatype"), iss::nifti_datatype_name(int(fields["datatype"].at(0))));
        double px[3];
        ASSERT_EQ(std::sscanf(line_value(ours.out, "voxel size").c_str(), "%lf x %lf x %lf", &px[0], &px[1], &px[2]),
                  3);
        for (int i = 0; i < 3; ++i) EXPECT_NEAR(px[i], fields["pixdim"].at(i + 1), 1e-5 * fields["pixdim"][i + 1]);
    }
}

// --- peer files (GOLDEN.md) --------------------------------------------------------------------

TEST(NiftiPeer, GoldenValues) {
    const std::string root = iss::test::shared_dir() + "/data/nifti-peer";
    if (!fs::is_directory(root)) GTEST_SKIP() << root << " does not exist: peer NIfTI files not checked";
    struct Row {
        const char* file;
        std::vector<int64_t> shape;
        const char* dtype;
        bool big_endian;
        const char* source;
        const char* axcodes;
        double voxel[3];
        double sum, min, max;
        long long nans;
    };
    const Row rows[] = {
        {"nibabel/anatomical.nii", {33, 41, 25}, "int16", true, "sform", "LAS", {2, 2, 2}, 284166082, -610, 30393, 0},
        {"nibabel/functional.nii", {17, 21, 3, 20}, "int16", false, "sform", "LAS", {4, 4, 8}, 77913290.36, 629.826,
         5571.62, 0},
        {"nibabel/example4d.nii.gz", {128, 96, 24, 2}, "int16", false, "sform", "LAS", {2, 2, 2.2}, 101985356, 0, 1162,
         0},
        {"nibabel/example_nifti2.nii.gz", {32, 20, 12, 2}, "int16", false, "sform", "LAS", {2, 2, 2.2}, 6926802, 46,
         757, 0},
        {"nibabel/reoriented_anat_moved.nii", {21, 26, 22}, "float32", true, "sform", "RAS", {4, 4, 4}, 32739769.45, 0,
         21199.9, 0},
        {"nibabel/resampled_anat_moved.nii", {17, 21, 3}, "float32", true, "sform", "LAS", {4, 4, 8}, 7749957.099,
         409.3, 13361, 153},
        {"nibabel/someones_anatomy.nii.gz", {57, 67, 56}, "uint8", false, "sform", "RAS", {2.75, 2.75, 2.75},
         9834293.114, 6.67836, 96.5554, 0},
        {"nibabel/someones_epi.nii.gz", {53, 61, 33}, "uint8", false, "sform", "RAS", {3, 3, 3}, 4873536.847, 7.74255,
         103.767, 0},
        {"nibabel/standard.nii.gz", {4, 5, 7}, "uint8", false, "sform", "RAS", {1, 3, 2}, 7650, 0, 255, 0},
        {"balls1/T1.nii.gz", {80, 80, 10}, "int16", false, "qform", "LPS", {1.9118, 1.9118, 10}, 2032069.051, 0,
         2477.78, 0},
        {"balls1/T2_.nii.gz", {80, 80, 10, 2}, "int16", false, "qform", "LPS", {1.9118, 1.9118, 12.33}, 58087085.17,
         0, 22594.9, 0},
        {"balls1/fieldmap.nii.gz", {80, 80, 10}, "int16", false, "qform", "LPS", {1.9118, 1.9118, 12.33},
         -18138456.63, -500, 496.337, 0},
        {"../label-maps/synthseg_adult_training_seg_01.nii.gz", {256, 256, 256}, "float32", false, "sform", "LIA",
         {1, 1, 1}, 1494141766, 0, 530, 0},
    };
    for (const Row& row : rows) {
        const std::string file = root + "/" + row.file;
        SCOPED_TRACE(file);
        if (!fs::exists(file)) {
            ADD_FAILURE() << "peer file missing";
            continue;
        }
        iss::VolumeHeader h;
        const iss::Volume<double> vol = iss::read_image_f64(file, &h);
        std::vector<int64_t> shape(h.dim.begin() + 1, h.dim.begin() + 1 + h.dim[0]);
        EXPECT_EQ(shape, row.shape);
        EXPECT_EQ(h.datatype_name(), row.dtype);
        EXPECT_EQ(h.byte_swapped, row.big_endian);
        EXPECT_EQ(h.affine_source, row.source);
        EXPECT_EQ(iss::orientation_code(h.affine), row.axcodes);
        for (int i = 0; i < 3; ++i) EXPECT_NEAR(h.pixdim[i + 1], row.voxel[i], 1e-4) << "pixdim " << i + 1;
        double sum = 0, lo = INFINITY, hi = -INFINITY;
        long long nans = 0;
        for (const double v : vol.data) {
            if (std::isnan(v)) {
                ++nans;
                continue;
            }
            sum += v;
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        EXPECT_NEAR(sum, row.sum, 1e-6 * std::fabs(row.sum));
        // GOLDEN.md prints min/max to 6 significant digits.
        EXPECT_NEAR(lo, row.min, 1e-5 * std::max(1.0, std::fabs(row.min)));
        EXPECT_NEAR(hi, row.max, 1e-5 * std::max(1.0, std::fabs(row.max)));
        EXPECT_EQ(nans, row.nans);
        // Integer-valued ones also read as labels, exactly.
        if (row.file == std::string("../label-maps/synthseg_adult_training_seg_01.nii.gz")) {
            const iss::LabelMap labels = iss::read_labels(file);
            long long total = 0;
            for (int32_t v : labels.data) total += v;
            EXPECT_EQ(total, 1494141766LL);
        }
    }
}
