// .npy reading/writing, exact reorientation, and the JSON reader's repeated keys.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <string>
#include <utility>

#include "io/json.h"
#include "io/npy.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "test_util.h"

namespace iss {
namespace {

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

class Npy : public test::TempDirTest {};

// A .npy file written by hand: magic, version 1.0, header dict, then raw little-endian data.
std::string npy_bytes(const std::string& dict, const std::string& data) {
    std::string header = dict;
    while ((10 + header.size() + 1) % 64) header += ' ';
    header += '\n';
    std::string out("\x93NUMPY\x01\x00", 8);
    out += char(header.size() & 0xff);
    out += char(header.size() >> 8);
    return out + header + data;
}

TEST_F(Npy, RoundTripFloat64) {
    const std::string file = path("round.npy");
    std::vector<double> values(2 * 43);
    for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(double(i)) * 100;
    write_npy(file, {2, 43}, values);
    const NpyArray back = read_npy(file);
    EXPECT_EQ(back.shape, (std::vector<int64_t>{2, 43}));
    EXPECT_EQ(back.dtype, "<f8");
    EXPECT_EQ(back.values, values);
    write_npy(file, {5}, {1, 2, 3, 4, 5});
    EXPECT_EQ(read_npy(file).shape, (std::vector<int64_t>{5}));
}

TEST_F(Npy, ReadsOtherDtypesAndBigEndian) {
    const std::string file = path("types.npy");
    const int32_t ints[3] = {-7, 0, 123456};
    write_bytes(file, npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }",
                                std::string(reinterpret_cast<const char*>(ints), sizeof ints)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{-7, 0, 123456}));

    const float floats[2] = {1.5f, -2.25f};
    write_bytes(file, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }",
                                std::string(reinterpret_cast<const char*>(floats), sizeof floats)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{1.5, -2.25}));

    const int64_t longs[2] = {int64_t(1) << 40, -3};
    write_bytes(file, npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
                                std::string(reinterpret_cast<const char*>(longs), sizeof longs)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{double(int64_t(1) << 40), -3}));

    // Label lists saved as small integer types (numpy's '|' marks a single byte's no byte order).
    write_bytes(file,
                npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", std::string("\x00\x02\xff", 3)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{0, 2, 255}));
    write_bytes(file,
                npy_bytes("{'descr': '|i1', 'fortran_order': False, 'shape': (2,), }", std::string("\x80\x7f", 2)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{-128, 127}));
    write_bytes(file, npy_bytes("{'descr': '>i2', 'fortran_order': False, 'shape': (2,), }",
                                std::string("\xff\xfe\x01\x00", 4)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{-2, 256}));
    write_bytes(file,
                npy_bytes("{'descr': '<u2', 'fortran_order': False, 'shape': (1,), }", std::string("\x10\x27", 2)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{10000}));
    write_bytes(file, npy_bytes("{'descr': '<u4', 'fortran_order': False, 'shape': (1,), }",
                                std::string("\xff\xff\xff\xff", 4)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{4294967295.0}));
    write_bytes(file, npy_bytes("{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }",
                                std::string("\x01\0\0\0\0\0\0\x80", 8)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{9223372036854775809.0}));

    // Fortran order (np.save of a transposed array): the same array, read in C order.
    const double by_column[6] = {1, 4, 2, 5, 3, 6};  // [[1, 2, 3], [4, 5, 6]], first axis fastest
    write_bytes(file, npy_bytes("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                                std::string(reinterpret_cast<const char*>(by_column), sizeof by_column)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{1, 2, 3, 4, 5, 6}));
    EXPECT_EQ(read_npy(file).shape, (std::vector<int64_t>{2, 3}));
    const int16_t cube[8] = {0, 4, 2, 6, 1, 5, 3, 7};  // C order value at (i, j, k) is 4i + 2j + k
    write_bytes(file, npy_bytes("{'descr': '<i2', 'fortran_order': True, 'shape': (2, 2, 2), }",
                                std::string(reinterpret_cast<const char*>(cube), sizeof cube)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7}));

    // 1.0 as a big-endian float64.
    write_bytes(file, npy_bytes("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }",
                                std::string("\x3f\xf0\x00\x00\x00\x00\x00\x00", 8)));
    EXPECT_EQ(read_npy(file).values, (std::vector<double>{1.0}));
}

// Label lists: any integer that fits int32 (a label list given as text takes the same), repeats
// kept for the caller; a value that is not one is named as written, as is a shape that is not a
// list.
TEST_F(Npy, LabelListsTakeEveryInt32AndNameTheValueThatIsNot) {
    const std::string file = path("labels.npy");
    write_npy(file, {4}, {0, 70000, -3, 70000});
    EXPECT_EQ(read_npy_labels(file), (std::vector<int32_t>{0, 70000, -3, 70000}));
    auto error_of = [&](const std::vector<int64_t>& shape, const std::vector<double>& values) {
        write_npy(file, shape, values);
        try {
            read_npy_labels(file);
        } catch (const InputError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    const std::string not_int32 = file + ": label 2147483648 is not an integer that fits int32";
    EXPECT_NE(error_of({2}, {2, 2147483648.0}).find(not_int32), std::string::npos);
    EXPECT_NE(error_of({2}, {2, 1073741824.5}).find(file + ": label 1073741824.5 is not"), std::string::npos);
    EXPECT_NE(error_of({2}, {2, std::nan("")}).find(file + ": label nan is not"), std::string::npos);
    EXPECT_NE(error_of({1}, {-INFINITY}).find(file + ": label -inf is not"), std::string::npos);
    EXPECT_NE(
        error_of({2, 2}, {0, 2, 3, 4}).find(file + ": expected a list of labels (a 1-D array), found shape (2, 2)"),
        std::string::npos);
    EXPECT_NE(error_of({0}, {}).find("found shape (0,)"), std::string::npos) << "no label";
}

void expect_input_error(const std::string& path, const std::string& fragment) {
    try {
        read_npy(path);
        FAIL() << "expected an error mentioning '" << fragment << "'";
    } catch (const InputError& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find(path), std::string::npos) << message;
        EXPECT_NE(message.find(fragment), std::string::npos) << message;
    }
}

TEST_F(Npy, BadInputNamesFileAndProblem) {
    const std::string file = path("bad.npy");
    expect_input_error(path("missing.npy"), "cannot open");
    expect_input_error(::testing::TempDir(), "directory");
    write_bytes(file, "");
    expect_input_error(file, "not a .npy");
    write_bytes(file, "garbage bytes that are not numpy");
    expect_input_error(file, "not a .npy");
    write_bytes(file, npy_bytes("{'descr': '<f8', 'fortran_order': 1, 'shape': (2, 2), }", std::string(32, '\0')));
    expect_input_error(file, "bad fortran_order 1");
    write_bytes(file, npy_bytes("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", std::string(16, '\0')));
    expect_input_error(file, "unsupported dtype");
    write_bytes(file, npy_bytes("{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }", std::string(1, '\0')));
    expect_input_error(file, "unsupported dtype");
    write_bytes(file, npy_bytes("{'descr': '<u16', 'fortran_order': False, 'shape': (1,), }", std::string(16, '\0')));
    expect_input_error(file, "unsupported dtype");
    write_bytes(file, npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 43), }", std::string(100, '\0')));
    expect_input_error(file, "truncated");
    // A header claiming 12.8 GB in a file of 8 data bytes: refused before allocating (fuzz_npy).
    write_bytes(file, npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (40000, 40000), }", std::string(8, '\0')));
    expect_input_error(file, "the shape needs 12800000000 bytes, the file holds 8");
}

TEST_F(Npy, PublishedInfantPriorsWhenSharedDataExists) {
    const std::string dir = test::shared_dir() + "/data/priors";
    struct stat info {};
    if (::stat(dir.c_str(), &info) != 0) GTEST_SKIP() << dir << " not found: published priors check skipped";
    // Spot values from SPEC.md (rounded to 0.1): T1 means row 0, index 3 (brainstem) = 204.9;
    // T2 means row 0, index 4 (CSF) = 255.0; T1 stds row 1, index 42 = 5.5.
    const NpyArray t1_means = read_npy(dir + "/t1_prior_means.npy");
    ASSERT_EQ(t1_means.shape, (std::vector<int64_t>{2, 43}));
    EXPECT_NEAR(t1_means.values[3], 204.9, 0.05);
    EXPECT_NEAR(read_npy(dir + "/t2_prior_means.npy").values[4], 255.0, 0.05);
    EXPECT_NEAR(read_npy(dir + "/t1_prior_stds.npy").values[43 + 42], 5.5, 0.05);
}

// A volume whose value at each voxel is unique, with an affine of the given orientation.
Volume<int32_t> oriented_volume(const std::string& code) {
    Grid grid;
    grid.dim = {5, 6, 7};
    const AxisMap map = axis_map_between("RAS", code);  // voxel axis a of `code` is world axis map.axis[a]
    Mat4 affine;
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) affine.m[r][c] = 0;
    const double sizes[3] = {1.0, 1.5, 2.5};
    for (int a = 0; a < 3; ++a) affine.m[map.axis[size_t(a)]][a] = map.flip[size_t(a)] ? -sizes[a] : sizes[a];
    affine.m[0][3] = -10;
    affine.m[1][3] = 20;
    affine.m[2][3] = 5;
    grid.affine = affine;
    Volume<int32_t> v(grid);
    for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = int32_t(i) * 7 + 1;
    return v;
}

// A key given twice in one object, at any depth, is refused; the same key in two objects is not.
TEST(ParseJson, AKeyTwiceInOneObjectIsRefused) {
    const nlohmann::json parsed = parse_json(R"({"a": {"k": 1}, "b": [{"k": 2}, {"k": 3}], "k": 4})", "t.json");
    EXPECT_EQ(parsed["b"][1]["k"], 3);
    EXPECT_EQ(test::refusal_of("t.json", [] { parse_json(R"({"a": 1, "b": {"k": [1], "k": [2]}})", "t.json"); }),
              "t.json: key 'k' is given twice in one object");
    EXPECT_EQ(test::refusal_of("t.json", [] { parse_json(R"([{"x": 1, "y": 2, "x": 1}])", "t.json"); }),
              "t.json: key 'x' is given twice in one object");
    EXPECT_EQ(test::refusal_of("t.json", [] { parse_json(R"({"": 1, "": 2})", "t.json"); }),
              "t.json: key '' is given twice in one object");
    EXPECT_NE(test::refusal_of("t.json", [] { parse_json(std::string("\x1f\x8b\x08\0", 4), "t.json"); })
                  .find("t.json is a binary file (a volume, a model?), not JSON text"),
              std::string::npos);
    EXPECT_NE(test::refusal_of("t.json", [] { parse_json(std::string("\xff\xfe{\0}\0", 6), "t.json"); })
                  .find("t.json is UTF-16 text (as Windows PowerShell's > writes it): save it as UTF-8"),
              std::string::npos);
    const std::string cut = test::refusal_of("t.json", [] { parse_json(R"({"a": )", "t.json"); });
    EXPECT_NE(cut.find("t.json is not valid JSON: parse error at line 1, column 7"), std::string::npos) << cut;
    EXPECT_EQ(cut.find("[json."), std::string::npos) << "the library's tag is not the user's business: " << cut;
}

// Values nested past max_json_depth are refused as they are read: 200,000 brackets in a
// model.json crashed the program (copying or printing such a value recurses), without a message.
TEST(ParseJson, ValuesNestedTooDeepAreRefused) {
    auto nested = [](int depth) { return R"({"a": )" + std::string(depth, '[') + std::string(depth, ']') + "}"; };
    EXPECT_NO_THROW(parse_json(nested(max_json_depth - 1), "t.json"));
    for (const int depth : {max_json_depth + 1, 200000})
        EXPECT_EQ(test::refusal_of("t.json", [&] { parse_json(nested(depth), "t.json"); }),
                  "t.json: values nested more than 128 deep: not a file this program writes or reads");
}

TEST(Orientation, CodesOfAffines) {
    EXPECT_EQ(orientation_code(Mat4::identity()), "RAS");
    EXPECT_EQ(orientation_code(Mat4::scaling(-2, 2, 2)), "LAS");
    Mat4 lia;  // x -> -R, y -> -S, z -> +A: FreeSurfer's conformed space
    lia.m[0][0] = -1; lia.m[0][1] = 0; lia.m[0][2] = 0;
    lia.m[1][0] = 0;  lia.m[1][1] = 0; lia.m[1][2] = 1;
    lia.m[2][0] = 0;  lia.m[2][1] = -1; lia.m[2][2] = 0;
    EXPECT_EQ(orientation_code(lia), "LIA");
    // An oblique scan (20 degrees about z) still reads as its nearest axes.
    const double c = std::cos(0.349), s = std::sin(0.349);
    Mat4 oblique;
    oblique.m[0][0] = c; oblique.m[0][1] = -s;
    oblique.m[1][0] = s; oblique.m[1][1] = c;
    EXPECT_EQ(orientation_code(oblique), "RAS");
    for (const char* code : {"RAS", "LPI", "SAR", "IPL", "ASL", "PIR"})
        EXPECT_EQ(orientation_code(oriented_volume(code).grid.affine), code);
}

TEST(Orientation, ReorientKeepsWorldPositionsAndRoundTrips) {
    const char* codes[] = {"LIA", "LAS", "RAS", "LPS", "PSR", "IRA", "SPL"};
    for (const char* code : codes) {
        const Volume<int32_t> in = oriented_volume(code);
        const Volume<int32_t> ras = reorient(in, "RAS");
        ASSERT_EQ(orientation_code(ras.grid.affine), "RAS") << code;
        const Mat4 ras_inverse = ras.grid.affine.inverse();
        for (int64_t k = 0; k < in.nz(); ++k)
            for (int64_t j = 0; j < in.ny(); ++j)
                for (int64_t i = 0; i < in.nx(); ++i) {
                    const auto world = in.grid.affine.apply(double(i), double(j), double(k));
                    const auto v = ras_inverse.apply(world[0], world[1], world[2]);
                    const int64_t oi = std::llround(v[0]), oj = std::llround(v[1]), ok = std::llround(v[2]);
                    ASSERT_NEAR(v[0], double(oi), 1e-9);
                    ASSERT_EQ(ras.at(oi, oj, ok), in.at(i, j, k)) << code << " at " << i << "," << j << "," << k;
                }
        const Volume<int32_t> back = reorient(ras, code);
        EXPECT_EQ(back.grid.dim, in.grid.dim) << code;
        EXPECT_TRUE(back.grid.affine.approx_equal(in.grid.affine, 1e-12)) << code;
        EXPECT_EQ(back.data, in.data) << code;
    }
}

// Every one of the 48 orientations, on a grid larger than the copy's tiles and not a multiple
// of them, two frames: each output voxel holds the input voxel the AxisMap names.
TEST(Orientation, ReorientMatchesTheAxisMapInEveryOrientation) {
    const char* letters[3][2] = {{"R", "L"}, {"A", "P"}, {"S", "I"}};
    const int permutations[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    Volume<float> in(Grid{}, 2);
    in.grid.dim = {37, 19, 45};
    in.data.resize(size_t(in.grid.voxels() * 2));
    for (size_t v = 0; v < in.data.size(); ++v) in.data[v] = float(v);
    int tested = 0;
    for (const auto& perm : permutations)
        for (int signs = 0; signs < 8; ++signs) {
            std::string code;
            for (int a = 0; a < 3; ++a) code += letters[perm[a]][(signs >> a) & 1];
            const Volume<float> out = reorient(in, code);
            const AxisMap map = axis_map_between("RAS", code);
            ASSERT_EQ(out.frames, 2);
            for (int64_t t = 0; t < 2; ++t)
                for (int64_t k = 0; k < out.nz(); ++k)
                    for (int64_t j = 0; j < out.ny(); ++j)
                        for (int64_t i = 0; i < out.nx(); ++i) {
                            const int64_t o[3] = {i, j, k};
                            int64_t q[3];
                            for (int a = 0; a < 3; ++a) {
                                const int b = map.axis[size_t(a)];
                                q[b] = map.flip[size_t(a)] ? in.grid.dim[size_t(b)] - 1 - o[a] : o[a];
                            }
                            ASSERT_EQ(out.at(i, j, k, t), in.at(q[0], q[1], q[2], t))
                                << code << " at " << i << "," << j << "," << k << " frame " << t;
                        }
            ++tested;
        }
    EXPECT_EQ(tested, 48);
}

// A volume handed over (an rvalue) comes back without a copy where it already has the asked
// orientation, and otherwise as the copying reorient makes it.
TEST(Orientation, AHandedOverVolumeIsMovedWhereNothingChanges) {
    for (const char* code : {"RAS", "LIA", "LAS"}) {
        Volume<int32_t> in = oriented_volume(code);
        const Volume<int32_t> copied = reorient(in, "LAS");
        const int32_t* storage = in.data.data();
        const Volume<int32_t> moved = reorient(std::move(in), "LAS");
        EXPECT_EQ(moved.data, copied.data) << code;
        EXPECT_EQ(moved.grid.dim, copied.grid.dim) << code;
        EXPECT_TRUE(moved.grid.affine.approx_equal(copied.grid.affine, 0)) << code;
        EXPECT_EQ(moved.data.data() == storage, std::string(code) == "LAS") << code;
    }
}

// One grid stored in each of the 48 voxel orders, with two axes at exactly 45 degrees (a float32
// sform holds cos and sin of 45 degrees as one number): the assignment of axes ties there, and
// the tie is broken by the axes' directions, not their order or sign, so every stored order's
// code reorders it onto the same grid (a scan with two voxel axes swapped was segmented turned
// by 90 degrees, and so differently). reordered_onto matches the axes' directions too. Another
// grid is left as it is.
TEST(Orientation, ReorderedOntoFindsTheGridAtFortyFiveDegrees) {
    const double c = double(float(std::sqrt(0.5)));
    Volume<int32_t> a = oriented_volume("RAS");
    Mat4 rotation = Mat4::identity();
    rotation.m[0][0] = c, rotation.m[0][1] = -c;
    rotation.m[1][0] = c, rotation.m[1][1] = c;
    a.grid.affine = rotation * a.grid.affine;
    const int permutations[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (const auto& perm : permutations)
        for (int flips = 0; flips < 8; ++flips) {
            AxisMap map;
            for (int d = 0; d < 3; ++d) {
                map.axis[size_t(d)] = perm[d];
                map.flip[size_t(d)] = (flips >> d) & 1;
            }
            const Volume<int32_t> stored = reorient(a, map);
            const std::string code = orientation_code(stored.grid.affine);
            EXPECT_TRUE(a.grid.same_as(reoriented_grid(stored.grid, orientation_code(a.grid.affine))))
                << "stored " << code;
            EXPECT_EQ(reorient(stored, "RAS").data, reorient(a, "RAS").data) << "stored " << code;
            const Volume<int32_t> back = reordered_onto(Volume<int32_t>(stored), a.grid);
            ASSERT_TRUE(back.grid.same_as(a.grid)) << "stored " << code;
            EXPECT_EQ(back.data, a.data) << "stored " << code;
        }
    Volume<int32_t> other = a;
    other.grid.affine.m[0][3] += 5;
    const Volume<int32_t> left = reordered_onto(Volume<int32_t>(other), a.grid);
    EXPECT_TRUE(left.grid.same_as(other.grid));
    EXPECT_EQ(left.data, other.data);
}

TEST(Orientation, BadCodesAreInputErrors) {
    EXPECT_THROW(axis_map_between("RAS", "RAR"), InputError);
    EXPECT_THROW(axis_map_between("RAS", "XYZ"), InputError);
    EXPECT_THROW(axis_map_between("RA", "RAS"), InputError);
}

}  // namespace
}  // namespace iss
