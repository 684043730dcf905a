// safetensors: round trips, the exact bytes we write, a file written by hand per the format
// description (so other readers' files read back), every malformed-file check, and no partial
// file when a write fails. Optional cross-check with the Python package when it is installed.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "io/safetensors.h"
#include "kernels/common/error.h"
#include "tests/test_util.h"

namespace iss {
namespace {

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

bool exists(const std::string& path) {
    struct stat info {};
    return ::stat(path.c_str(), &info) == 0;
}

std::string le64(uint64_t v) {
    std::string b(8, '\0');
    for (int i = 0; i < 8; ++i) b[size_t(i)] = char((v >> (8 * i)) & 0xff);
    return b;
}

// A safetensors file by hand: length, header text as given (no padding added), data.
std::string file_bytes(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

// Each test's files live in a directory of its own, removed after it.
class Safetensors : public test::TempDirTest {
protected:
    std::string temp_file(const std::string& name) const { return path(name); }
};

void expect_input_error(const std::string& path, const std::string& fragment) {
    try {
        read_safetensors(path);
        ADD_FAILURE() << "no error reading " << path << " (expected one mentioning '" << fragment << "')";
    } catch (const InputError& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find(path), std::string::npos) << "message does not name the file: " << message;
        EXPECT_NE(message.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << message;
    }
}

TEST_F(Safetensors, RoundTripOfSeveralDtypesAndMetadata) {
    const std::string path = temp_file("round.safetensors");
    std::vector<float> weights(2 * 3 * 4);
    for (size_t i = 0; i < weights.size(); ++i) weights[i] = float(i) * 0.25f - 3.0f;
    const std::vector<SafeTensor> tensors = {
        SafeTensor::u8("labels", {5}, {0, 2, 4, 41, 255}),
        SafeTensor::f32("conv0.weight", {2, 3, 4}, weights),
        SafeTensor::f64("scale", {}, {3.141592653589793}),
        SafeTensor::i32("offsets", {2, 2}, {-1, 0, 7, 2147483647}),
        SafeTensor::i64("step", {1}, {900000}),
        SafeTensor::f32("empty", {0, 3}, {}),
    };
    const std::map<std::string, std::string> metadata = {{"format", "infant-synthseg"}, {"labels", "[0, 2, 4]"}};
    write_safetensors(path, tensors, metadata);
    const SafetensorsFile file = read_safetensors(path);
    EXPECT_EQ(file.metadata, metadata);
    ASSERT_EQ(file.tensors.size(), tensors.size());
    for (const SafeTensor& want : tensors) {
        const SafeTensor& got = file.at(want.name);
        EXPECT_EQ(got.dtype, want.dtype) << want.name;
        EXPECT_EQ(got.shape, want.shape) << want.name;
        EXPECT_EQ(got.data, want.data) << want.name;
    }
    EXPECT_EQ(file.at("conv0.weight").as_f32(), weights);
    EXPECT_EQ(file.at("step").as_i64(), std::vector<int64_t>{900000});
    EXPECT_THROW(file.at("conv0.weight").as_f64(), Error);
    EXPECT_THROW(file.at("missing"), InputError);
    // Stable order: largest elements first, then by name, whatever the order given.
    std::vector<std::string> names;
    for (const SafeTensor& t : file.tensors) names.push_back(t.name);
    EXPECT_EQ(names, (std::vector<std::string>{"scale", "step", "conv0.weight", "empty", "offsets", "labels"}));
    std::vector<SafeTensor> reversed(tensors.rbegin(), tensors.rend());
    const std::string again = temp_file("again.safetensors");
    write_safetensors(again, reversed, metadata);
    EXPECT_EQ(read_bytes(again), read_bytes(path));
}

TEST_F(Safetensors, WritesTheDocumentedBytes) {
    // One F32 tensor [1.5, -2] and one metadata entry: the length, the compact JSON (keys
    // sorted; the writer's own entry the data's CRC-32, Python's zlib.crc32) padded with spaces
    // to a multiple of 8, then the data.
    const std::string path = temp_file("bytes.safetensors");
    write_safetensors(path, {SafeTensor::f32("w", {2}, {1.5f, -2.0f})}, {{"k", "v"}});
    std::string header =
        R"({"__metadata__":{"data_crc32":"ccdf2c3a","k":"v"},"w":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}})";
    while (header.size() % 8) header += ' ';
    const std::string data("\x00\x00\xc0\x3f\x00\x00\x00\xc0", 8);
    EXPECT_EQ(read_bytes(path), file_bytes(header, data));
}

// A file damaged after writing (a flipped bit, an edit of a value) passed every structural check
// and was used: its data's checksum now refuses it; a file without one (another writer's) reads.
TEST_F(Safetensors, DamagedDataIsRefusedByItsChecksum) {
    const std::string path = temp_file("damaged.safetensors");
    write_safetensors(path, {SafeTensor::f32("w", {4}, {1.0f, 2.0f, 3.0f, 4.0f})}, {{"k", "v"}});
    std::string bytes = read_bytes(path);
    EXPECT_EQ(read_safetensors(path).metadata, (std::map<std::string, std::string>{{"k", "v"}}))
        << "the checksum is the reader's, not the caller's";
    // A checksum that is no CRC-32 of ours is bad metadata, not damaged data.
    std::string upper = bytes;
    const size_t at = upper.find("\"data_crc32\":\"") + 14;
    for (size_t i = at; i < at + 8; ++i) upper[i] = char(std::toupper(upper[i]));
    write_bytes(path, upper);
    EXPECT_NE(test::refusal_of(path, [&] { read_safetensors(path); }).find(": its metadata's data_crc32 is '"),
              std::string::npos);
    bytes[bytes.size() - 3] ^= 0x10;  // a bit of the last value
    write_bytes(path, bytes);
    EXPECT_NE(test::refusal_of(path, [&] { read_safetensors(path); })
                  .find(path + ": its data does not match the checksum it was written with (data_crc32 "),
              std::string::npos);
}

TEST_F(Safetensors, ReadsAFileWrittenByHand) {
    // As another writer might produce it: tensors not in our order, no padding, a scalar,
    // metadata last, spaces inside the JSON.
    const std::string header =
        R"({"b": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}, )"
        R"("a": {"dtype":"F32","shape":[1,2],"data_offsets":[8,16]},"s":{"dtype":"U8","shape":[],"data_offsets":[16,17]},)"
        R"("__metadata__": {"format": "pt"}})";
    const std::string data = std::string("\x07\x00\x00\x00\xfd\xff\xff\xff", 8) +  // int32 7, -3
                             std::string("\x00\x00\xc0\x3f\x00\x00\x00\xc0", 8) +  // float 1.5, -2
                             std::string("\x2a", 1);                                // uint8 42
    const std::string path = temp_file("hand.safetensors");
    write_bytes(path, file_bytes(header, data));
    const SafetensorsFile file = read_safetensors(path);
    ASSERT_EQ(file.tensors.size(), 3u);
    EXPECT_EQ(file.tensors[0].name, "b");  // in the order of the data
    EXPECT_EQ(file.at("b").as_i32(), (std::vector<int32_t>{7, -3}));
    EXPECT_EQ(file.at("a").as_f32(), (std::vector<float>{1.5f, -2.0f}));
    EXPECT_EQ(file.at("a").shape, (std::vector<int64_t>{1, 2}));
    EXPECT_TRUE(file.at("s").shape.empty());
    EXPECT_EQ(file.at("s").data, std::vector<uint8_t>{42});
    EXPECT_EQ(file.metadata.at("format"), "pt");
}

TEST_F(Safetensors, RejectsMalformedFiles) {
    const std::string path = temp_file("bad.safetensors");
    const std::string good_header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    const std::string data(8, '\x01');
    write_bytes(path, file_bytes(good_header, data));
    ASSERT_NO_THROW(read_safetensors(path));

    write_bytes(path, "\x10\x00\x00");
    expect_input_error(path, "too short");
    write_bytes(path, le64(1000) + good_header + data);
    expect_input_error(path, "exceeds");
    write_bytes(path, le64(uint64_t(1) << 40) + good_header + data);
    expect_input_error(path, "implausible");
    write_bytes(path, file_bytes(good_header, data).substr(0, 8 + good_header.size() + 5));  // truncated data
    expect_input_error(path, "outside");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", data));
    expect_input_error(path, "not valid JSON");
    write_bytes(path, file_bytes(R"(["a"])", data));
    expect_input_error(path, "does not start with '{'");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", data));
    expect_input_error(path, "unknown dtype 'F17'");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}})", data));
    expect_input_error(path, "outside");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data));
    expect_input_error(path, "needs 12 bytes");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data));
    expect_input_error(path, "negative dimension");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data));
    expect_input_error(path, "needs more bytes");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", data));
    expect_input_error(path, "data_offsets");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", data));
    expect_input_error(path, "shape");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", data));
    expect_input_error(path, "unexpected field 'x'");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                 R"("b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                                 std::string(6, '\0')));
    expect_input_error(path, "overlap");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data));
    expect_input_error(path, "gap");
    write_bytes(path, file_bytes(good_header, data + "xx"));
    expect_input_error(path, "after the last tensor");
    write_bytes(path, file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                 R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                 data));
    expect_input_error(path, "twice");
    write_bytes(path, file_bytes(R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data));
    expect_input_error(path, "metadata 'k'");
    expect_input_error(temp_file("missing.safetensors"), "cannot open");
}

TEST_F(Safetensors, FailedWriteLeavesNoFile) {
    const std::string dir = temp_file("no_such_dir");
    const std::string path = dir + "/model.safetensors";
    EXPECT_THROW(write_safetensors(path, {SafeTensor::f32("w", {1}, {1.0f})}), InputError);
    EXPECT_FALSE(exists(dir));
    // A precondition failure (data size does not match the shape) writes nothing either.
    const std::string target = temp_file("bad_tensor.safetensors");
    SafeTensor bad = SafeTensor::f32("w", {2}, {1.0f, 2.0f});
    bad.shape = {3};
    EXPECT_THROW(write_safetensors(target, {bad}), Error);
    EXPECT_FALSE(exists(target));
    EXPECT_THROW(write_safetensors(target, {SafeTensor::u8("w", {1}, {1}), SafeTensor::u8("w", {1}, {2})}), Error);
    EXPECT_FALSE(exists(target));
}

TEST_F(Safetensors, CrossCheckWithPythonPackage) {
    if (std::system("python3 -c 'import numpy, safetensors' >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "python3 with numpy and the safetensors package is not available; cross-check skipped";
    const std::string ours = temp_file("ours.safetensors"), theirs = temp_file("theirs.safetensors");
    write_safetensors(ours, {SafeTensor::f32("w", {2, 2}, {1.0f, 2.0f, 3.0f, 4.5f}), SafeTensor::i64("n", {1}, {-7})},
                      {{"k", "v"}});
    const std::string script =
        "import numpy as np, sys\n"
        "from safetensors.numpy import load_file, save_file\n"
        "d = load_file(sys.argv[1])\n"
        "assert d['w'].dtype == np.float32 and d['w'].shape == (2, 2) and d['w'][1, 1] == 4.5\n"
        "assert d['n'].dtype == np.int64 and d['n'][0] == -7\n"
        "save_file({'x': np.arange(6, dtype=np.float64).reshape(3, 2), 'y': np.array([9], dtype=np.uint8)}, "
        "sys.argv[2], metadata={'m': 'n'})\n";
    const std::string script_path = temp_file("check.py");
    write_bytes(script_path, script);
    ASSERT_EQ(std::system(("python3 " + script_path + " " + ours + " " + theirs).c_str()), 0);
    const SafetensorsFile file = read_safetensors(theirs);
    EXPECT_EQ(file.at("x").as_f64(), (std::vector<double>{0, 1, 2, 3, 4, 5}));
    EXPECT_EQ(file.at("x").shape, (std::vector<int64_t>{3, 2}));
    EXPECT_EQ(file.at("y").data, std::vector<uint8_t>{9});
    EXPECT_EQ(file.metadata.at("m"), "n");
}

}  // namespace
}  // namespace iss
