#include "io/npy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "io/csv.h"  // csv_number: a label as it is written
#include "io/file_util.h"
#include "io/volume.h"  // shape_text
#include "kernels/common/error.h"

namespace iss {
namespace {

constexpr char npy_magic[] = "\x93NUMPY";
constexpr size_t npy_magic_size = 6;

// The value text after `'key':` in the header dict, up to the next top-level comma or brace.
std::string dict_value(const std::string& header, const std::string& key, const std::string& path) {
    const size_t at = header.find("'" + key + "'");
    ISS_INPUT(at != std::string::npos, path, ": .npy header has no '", key, "' entry");
    size_t begin = header.find(':', at);
    ISS_INPUT(begin != std::string::npos, path, ": malformed .npy header");
    ++begin;
    while (begin < header.size() && header[begin] == ' ') ++begin;
    size_t end = begin;
    if (begin < header.size() && header[begin] == '(') {
        end = header.find(')', begin);
        ISS_INPUT(end != std::string::npos, path, ": malformed shape in .npy header");
        return header.substr(begin, end - begin + 1);
    }
    while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
    std::string value = header.substr(begin, end - begin);
    while (!value.empty() && value.back() == ' ') value.pop_back();
    return value;
}

std::vector<int64_t> parse_shape(const std::string& text, const std::string& path) {
    std::vector<int64_t> shape;
    size_t pos = 1;  // after '('
    while (pos < text.size()) {
        while (pos < text.size() && (text[pos] == ' ' || text[pos] == ',')) ++pos;
        if (pos >= text.size() || text[pos] == ')') break;
        size_t end = pos;
        while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
        ISS_INPUT(end > pos && end - pos < 18, path, ": bad shape ", text, " in .npy header");
        shape.push_back(std::stoll(text.substr(pos, end - pos)));
        pos = end;
    }
    return shape;
}

template <class T>
T load_value(const char* bytes, bool swap) {
    char buffer[sizeof(T)];
    std::memcpy(buffer, bytes, sizeof(T));
    if (swap) std::reverse(buffer, buffer + sizeof(T));
    T value;
    std::memcpy(&value, buffer, sizeof(T));
    return value;
}

// One element of dtype `kind` (the code without its byte order: "f8", "u1", ...) at p, widened
// to double; 0 and false for a kind not read.
bool load_element(const std::string& kind, const char* p, bool swap, double* value) {
    if (kind == "f8")
        *value = load_value<double>(p, swap);
    else if (kind == "f4")
        *value = load_value<float>(p, swap);
    else if (kind == "i1")
        *value = load_value<int8_t>(p, swap);
    else if (kind == "i2")
        *value = load_value<int16_t>(p, swap);
    else if (kind == "i4")
        *value = load_value<int32_t>(p, swap);
    else if (kind == "i8")
        *value = double(load_value<int64_t>(p, swap));
    else if (kind == "u1")
        *value = load_value<uint8_t>(p, swap);
    else if (kind == "u2")
        *value = load_value<uint16_t>(p, swap);
    else if (kind == "u4")
        *value = load_value<uint32_t>(p, swap);
    else if (kind == "u8")
        *value = double(load_value<uint64_t>(p, swap));
    else
        return false;
    return true;
}

}  // namespace

int64_t NpyArray::size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

namespace {

// A Fortran-order array's values (first axis fastest) in C order (last axis fastest).
std::vector<double> c_order_of(const std::vector<double>& fortran, const std::vector<int64_t>& shape) {
    std::vector<double> c(fortran.size());
    std::vector<int64_t> index(shape.size(), 0);  // of value i in C order
    for (size_t i = 0; i < c.size(); ++i) {
        int64_t at = 0;
        for (size_t k = shape.size(); k-- > 0;) at = at * shape[k] + index[k];
        c[i] = fortran[size_t(at)];
        for (size_t k = shape.size(); k-- > 0;) {
            if (++index[k] < shape[k]) break;
            index[k] = 0;
        }
    }
    return c;
}

}  // namespace

NpyArray read_npy(const std::string& path) {
    require_regular_file(path);
    std::ifstream in(path, std::ios::binary);
    ISS_INPUT(in, path, ": cannot open: ", std::strerror(errno));
    char preamble[10] = {};
    in.read(preamble, sizeof preamble);
    ISS_INPUT(in.gcount() == sizeof preamble && std::memcmp(preamble, npy_magic, npy_magic_size) == 0, path,
              ": not a .npy file (bad magic)");
    const int major = static_cast<unsigned char>(preamble[6]);
    ISS_INPUT(major >= 1 && major <= 3, path, ": unsupported .npy format version ", major);
    uint32_t header_len = uint8_t(preamble[8]) | uint32_t(uint8_t(preamble[9])) << 8;
    if (major >= 2) {
        char more[2] = {};
        in.read(more, 2);
        ISS_INPUT(in.gcount() == 2, path, ": truncated .npy header");
        header_len |= uint32_t(uint8_t(more[0])) << 16 | uint32_t(uint8_t(more[1])) << 24;
    }
    ISS_INPUT(header_len < (1u << 20), path, ": .npy header of ", header_len, " bytes is implausibly long");
    std::string header(header_len, '\0');
    in.read(header.data(), header_len);
    ISS_INPUT(in.gcount() == std::streamsize(header_len), path, ": truncated .npy header");

    NpyArray array;
    std::string descr = dict_value(header, "descr", path);
    ISS_INPUT(descr.size() >= 2 && (descr.front() == '\'' || descr.front() == '"'), path, ": bad dtype ", descr);
    array.dtype = descr.substr(1, descr.size() - 2);
    const std::string fortran = dict_value(header, "fortran_order", path);
    ISS_INPUT(fortran == "False" || fortran == "True", path, ": bad fortran_order ", fortran);
    array.shape = parse_shape(dict_value(header, "shape", path), path);

    // A byte order ('|' for single bytes, which have none), then a kind load_element reads (tried
    // on zero bytes: the list of kinds is written once, there).
    const std::string& dt = array.dtype;
    const bool ordered = dt.size() == 3 && std::string("<>=|").find(dt[0]) != std::string::npos;
    const std::string kind = ordered ? dt.substr(1) : "";
    double probe = 0;
    const char zeros[8] = {};
    ISS_INPUT(load_element(kind, zeros, false, &probe), path, ": unsupported dtype '", dt,
              "' (expected a float of 32 or 64 bits or an integer type)");
    const bool swap = dt[0] == '>';
    const size_t item = size_t(kind[1] - '0');

    int64_t count = 1;
    for (int64_t d : array.shape) {
        ISS_INPUT(d >= 0 && (d == 0 || count <= (int64_t(1) << 31) / std::max<int64_t>(d, 1)), path,
                  ": array too large");
        count *= d;
    }
    // The shape is checked against the bytes the file holds before anything that size is
    // allocated (a header can claim gigabytes in a file of a few hundred bytes).
    const std::streamoff data_start = in.tellg();
    in.seekg(0, std::ios::end);
    const std::streamoff available = in.tellg() - data_start;
    in.seekg(data_start);
    const size_t bytes = size_t(count) * item;
    ISS_INPUT(in && std::streamoff(bytes) <= available, path, ": truncated .npy data: the shape needs ", bytes,
              " bytes, the file holds ", std::max<std::streamoff>(available, 0));
    std::vector<char> raw(bytes);
    in.read(raw.data(), std::streamsize(raw.size()));
    // Checked above; only a file that shrinks while being read gets here short.
    if (in.gcount() != std::streamsize(raw.size())) throw Error(cat(path, ": read failed (did the file change?)"));

    array.values.resize(size_t(count));
    for (int64_t i = 0; i < count; ++i) {
        const char* p = raw.data() + size_t(i) * item;
        load_element(kind, p, swap, &array.values[size_t(i)]);
    }
    // np.save writes a transposed or column-indexed array (m[:, order]) in Fortran order, first axis
    // fastest, and np.load reads it as the same array.
    if (fortran == "True") array.values = c_order_of(array.values, array.shape);
    return array;
}

std::vector<int32_t> read_npy_labels(const std::string& path) {
    const NpyArray a = read_npy(path);
    ISS_INPUT(a.shape.size() == 1 && a.size() >= 1, path, ": expected a list of labels (a 1-D array), found shape ",
              shape_text(a.shape));
    ISS_INPUT(a.size() <= max_npy_labels, path, ": ", a.size(), " values, more than a label list holds (",
              max_npy_labels, ")");
    std::vector<int32_t> labels;
    for (const double v : a.values) {
        ISS_INPUT(v == std::floor(v) && v >= INT32_MIN && v <= INT32_MAX, path, ": label ", csv_number(v),
                  " is not an integer that fits int32");
        labels.push_back(int32_t(v));
    }
    return labels;
}

namespace {

// `count` values of `value_bytes` each, of NumPy type `descr`, in the host's (little-endian) order.
void write_npy_values(const std::string& path, const char* descr, const std::vector<int64_t>& shape, const void* values,
                      size_t count, size_t value_bytes) {
    int64_t held = 1;
    for (int64_t d : shape) held *= d;
    ISS_REQUIRE(held == int64_t(count), "write_npy ", path, ": shape holds ", held, " values, got ", count);
    std::string dict = cat("{'descr': '", descr, "', 'fortran_order': False, 'shape': ", shape_text(shape), ", }");
    // Pad with spaces so that magic + version + length + header is a multiple of 64 bytes.
    const size_t unpadded = npy_magic_size + 2 + 2 + dict.size() + 1;
    dict.append((64 - unpadded % 64) % 64, ' ');
    dict += '\n';
    const char version[2] = {1, 0};
    const uint16_t length = uint16_t(dict.size());
    const char length_bytes[2] = {char(length & 0xff), char(length >> 8)};

    AtomicWriter out(path);
    out.write(npy_magic, npy_magic_size);
    out.write(version, 2);
    out.write(length_bytes, 2);
    out.write(dict.data(), dict.size());
    out.write(values, count * value_bytes);  // little-endian host (x86, arm64)
    out.commit();
}

}  // namespace

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<double>& values) {
    write_npy_values(path, "<f8", shape, values.data(), values.size(), sizeof(double));
}

void write_npy_labels(const std::string& path, const std::vector<int32_t>& labels) {
    write_npy_values(path, "<i4", {int64_t(labels.size())}, labels.data(), labels.size(), sizeof(int32_t));
}

}  // namespace iss
