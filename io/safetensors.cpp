// safetensors reading and writing (see safetensors.h and docs/FORMATS.md). The reader checks
// the header length against the file before allocating, every header entry's fields and types,
// and that the tensors tile the data exactly (sorted by offset: each starts where the previous
// ended, the last ends at the end of the file), as the reference implementation requires.
#include "io/safetensors.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "io/file_util.h"
#include "io/json.h"
#include "kernels/common/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian, as is the host assumed");

namespace iss {
namespace {

using nlohmann::json;

constexpr uint64_t max_header_bytes = 100u << 20;  // the reference's limit: 100 MB
constexpr const char* metadata_key = "__metadata__";
// The metadata entry our writer adds: the CRC-32 of the data after the header, in hex, so that a
// damaged file (a flipped bit on a disk, a copy cut short and padded, an edit) is refused on
// reading rather than used; the header's own checks see only its structure. Files without it
// (other tools') are read unchecked, and the reader hands it to no caller.
constexpr const char* checksum_key = "data_crc32";

template <class T>
SafeTensor make_tensor(const std::string& name, const char* dtype, const std::vector<int64_t>& shape,
                       const std::vector<T>& values) {
    SafeTensor t{name, dtype, shape, std::vector<uint8_t>(values.size() * sizeof(T))};
    if (!values.empty()) std::memcpy(t.data.data(), values.data(), t.data.size());
    ISS_REQUIRE(int64_t(values.size()) == t.elements(), "safetensors tensor '", name, "': shape holds ", t.elements(),
                " elements, got ", values.size(), " values");
    return t;
}

template <class T>
std::vector<T> view_as(const SafeTensor& t, const char* dtype) {
    ISS_REQUIRE(t.dtype == dtype, "safetensors tensor '", t.name, "' is ", t.dtype, ", not ", dtype);
    ISS_REQUIRE(t.data.size() == size_t(t.elements()) * sizeof(T), "safetensors tensor '", t.name, "': ",
                t.data.size(), " bytes for ", t.elements(), " elements of ", dtype);
    std::vector<T> values(t.data.size() / sizeof(T));
    if (!values.empty()) std::memcpy(values.data(), t.data.data(), t.data.size());
    return values;
}

// Elements of `shape`, or -1 when a dim is negative or the count exceeds `limit`.
int64_t checked_elements(const std::vector<int64_t>& shape, int64_t limit) {
    int64_t count = 1;
    for (int64_t d : shape)
        if (d < 0) return -1;
    for (int64_t d : shape) {
        if (d == 0) return 0;
        if (count > limit / d) return -1;
        count *= d;
    }
    return count;
}

uint64_t read_le64(const unsigned char* b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | b[i];
    return v;
}

// The header's JSON; a tensor named twice is refused with every other repeated key.
json parse_header(const std::string& text, const std::string& path) {
    const json header = parse_json(text, path + ": the safetensors header");
    ISS_INPUT(header.is_object(), path, ": safetensors header is not a JSON object");
    return header;
}

struct Entry {
    SafeTensor tensor;
    uint64_t begin = 0, end = 0;
};

Entry parse_entry(const std::string& name, const json& info, uint64_t data_bytes, const std::string& path) {
    const std::string where = cat(path, ": tensor '", name, "'");
    ISS_INPUT(info.is_object(), where, ": entry is not a JSON object");
    for (const auto& field : info.items())
        ISS_INPUT(field.key() == "dtype" || field.key() == "shape" || field.key() == "data_offsets", where,
                  ": unexpected field '", field.key(), "'");
    ISS_INPUT(info.contains("dtype") && info["dtype"].is_string(), where, ": missing or non-string 'dtype'");
    ISS_INPUT(info.contains("shape") && info["shape"].is_array(), where, ": missing or non-array 'shape'");
    ISS_INPUT(info.contains("data_offsets") && info["data_offsets"].is_array() && info["data_offsets"].size() == 2,
              where, ": 'data_offsets' must be an array of two integers");
    Entry e;
    e.tensor.name = name;
    e.tensor.dtype = info["dtype"].get<std::string>();
    const size_t item = safetensors_dtype_size(e.tensor.dtype);
    ISS_INPUT(item > 0, where, ": unknown dtype '", e.tensor.dtype, "'");
    for (const json& d : info["shape"]) {
        ISS_INPUT(d.is_number_integer(), where, ": shape entries must be integers");
        ISS_INPUT(d.is_number_unsigned(), where, ": negative dimension ", d.dump());
        ISS_INPUT(d.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max()), where, ": dimension ",
                  d.dump(), " too large");
        e.tensor.shape.push_back(d.get<int64_t>());
    }
    for (const json& o : info["data_offsets"])
        ISS_INPUT(o.is_number_unsigned(), where, ": data offsets must be non-negative integers");
    e.begin = info["data_offsets"][0].get<uint64_t>();
    e.end = info["data_offsets"][1].get<uint64_t>();
    ISS_INPUT(e.begin <= e.end && e.end <= data_bytes, where, ": data offsets [", e.begin, ", ", e.end,
              "] outside the ", data_bytes, " bytes of data");
    const int64_t count = checked_elements(e.tensor.shape, std::numeric_limits<int64_t>::max() / int64_t(item));
    ISS_INPUT(count >= 0 && uint64_t(count) * item == e.end - e.begin, where, ": shape ", info["shape"].dump(), " of ",
              e.tensor.dtype, " needs ", count < 0 ? std::string("more") : std::to_string(uint64_t(count) * item),
              " bytes, data offsets give ", e.end - e.begin);
    return e;
}

}  // namespace

uint32_t crc32_of(uint32_t crc, const void* bytes, size_t n) {
    const auto* at = static_cast<const Bytef*>(bytes);
    while (n > 0) {  // zlib takes 32-bit lengths
        const uInt piece = uInt(std::min<size_t>(n, size_t(1) << 30));
        crc = uint32_t(::crc32(crc, at, piece));
        at += piece;
        n -= piece;
    }
    return crc;
}

std::string crc32_text(uint32_t crc) {
    char text[9];
    std::snprintf(text, sizeof text, "%08x", crc);
    return text;
}

bool is_crc32_text(const std::string& text) {
    return text.size() == 8 && std::all_of(text.begin(), text.end(),
                                           [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

size_t safetensors_dtype_size(const std::string& dtype) {
    static const std::map<std::string, size_t> sizes = {
        {"BOOL", 1}, {"U8", 1},   {"I8", 1},  {"I16", 2}, {"U16", 2}, {"F16", 2}, {"BF16", 2},
        {"I32", 4},  {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8}, {"F64", 8}};
    const auto it = sizes.find(dtype);
    return it == sizes.end() ? 0 : it->second;
}

int64_t SafeTensor::elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

SafeTensor SafeTensor::f32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& v) {
    return make_tensor(name, "F32", shape, v);
}
SafeTensor SafeTensor::f64(const std::string& name, const std::vector<int64_t>& shape, const std::vector<double>& v) {
    return make_tensor(name, "F64", shape, v);
}
SafeTensor SafeTensor::i32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int32_t>& v) {
    return make_tensor(name, "I32", shape, v);
}
SafeTensor SafeTensor::i64(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& v) {
    return make_tensor(name, "I64", shape, v);
}
SafeTensor SafeTensor::u8(const std::string& name, const std::vector<int64_t>& shape, const std::vector<uint8_t>& v) {
    return make_tensor(name, "U8", shape, v);
}
std::vector<float> SafeTensor::as_f32() const { return view_as<float>(*this, "F32"); }
std::vector<double> SafeTensor::as_f64() const { return view_as<double>(*this, "F64"); }
std::vector<int32_t> SafeTensor::as_i32() const { return view_as<int32_t>(*this, "I32"); }
std::vector<int64_t> SafeTensor::as_i64() const { return view_as<int64_t>(*this, "I64"); }

bool SafetensorsFile::contains(const std::string& name) const {
    return std::any_of(tensors.begin(), tensors.end(), [&](const SafeTensor& t) { return t.name == name; });
}

const SafeTensor& SafetensorsFile::at(const std::string& name) const {
    for (const SafeTensor& t : tensors)
        if (t.name == name) return t;
    throw InputError(cat(path.empty() ? std::string("safetensors") : path, ": no tensor named '", name, "'"));
}

void write_safetensors(const std::string& path, const std::vector<SafeTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    std::vector<const SafeTensor*> order;
    std::set<std::string> names;
    for (const SafeTensor& t : tensors) {
        ISS_REQUIRE(!t.name.empty() && t.name != metadata_key, "write_safetensors ", path, ": bad tensor name '",
                    t.name, "'");
        ISS_REQUIRE(names.insert(t.name).second, "write_safetensors ", path, ": tensor '", t.name, "' given twice");
        const size_t item = safetensors_dtype_size(t.dtype);
        ISS_REQUIRE(item > 0, "write_safetensors ", path, ": tensor '", t.name, "' has unknown dtype '", t.dtype, "'");
        const int64_t count = checked_elements(t.shape, std::numeric_limits<int64_t>::max() / int64_t(item));
        ISS_REQUIRE(count >= 0 && uint64_t(count) * item == t.data.size(), "write_safetensors ", path, ": tensor '",
                    t.name, "' holds ", t.data.size(), " bytes, its shape and dtype need ", uint64_t(count) * item);
        order.push_back(&t);
    }
    // Largest elements first, then by name: stable, and every tensor aligned to its element size.
    std::sort(order.begin(), order.end(), [](const SafeTensor* a, const SafeTensor* b) {
        const size_t sa = safetensors_dtype_size(a->dtype), sb = safetensors_dtype_size(b->dtype);
        return sa != sb ? sa > sb : a->name < b->name;
    });

    ISS_REQUIRE(!metadata.count(checksum_key), "write_safetensors ", path, ": metadata '", checksum_key,
                "' is the writer's own");
    uint32_t crc = 0u;
    for (const SafeTensor* t : order) crc = crc32_of(crc, t->data.data(), t->data.size());
    json header = json::object();
    header[metadata_key] = metadata;
    header[metadata_key][checksum_key] = crc32_text(crc);
    uint64_t offset = 0;
    for (const SafeTensor* t : order) {
        header[t->name] = {{"dtype", t->dtype},
                           {"shape", t->shape},
                           {"data_offsets", {offset, offset + uint64_t(t->data.size())}}};
        offset += t->data.size();
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const json::exception& e) {  // names or metadata that are not valid UTF-8
        throw Error(cat("write_safetensors ", path, ": cannot encode the header: ", e.what()));
    }
    text.append((8 - text.size() % 8) % 8, ' ');  // as the reference: data starts 8-aligned
    unsigned char length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(uint64_t(text.size()) >> (8 * i));

    AtomicWriter out(path);
    out.write(length, sizeof length);
    out.write(text.data(), text.size());
    for (const SafeTensor* t : order) out.write(t->data.data(), t->data.size());
    out.commit();
}

SafetensorsFile read_safetensors(const std::string& path, bool header_only) {
    require_regular_file(path);
    std::ifstream in(path, std::ios::binary);
    ISS_INPUT(in, path, ": cannot open: ", std::strerror(errno));
    in.seekg(0, std::ios::end);
    const std::streamoff file_size = in.tellg();
    in.seekg(0, std::ios::beg);
    ISS_INPUT(file_size >= 8, path, ": ", file_size, " bytes is too short for a safetensors file (8-byte header length)");
    unsigned char length_bytes[8];
    in.read(reinterpret_cast<char*>(length_bytes), 8);
    ISS_INPUT(in.gcount() == 8, path, ": cannot read the safetensors header length");
    const uint64_t header_bytes = read_le64(length_bytes);
    ISS_INPUT(header_bytes < max_header_bytes, path, ": safetensors header length ", header_bytes,
              " is implausible (limit 100 MB): not a safetensors file?");
    ISS_INPUT(header_bytes <= uint64_t(file_size) - 8, path, ": safetensors header length ", header_bytes,
              " exceeds the ", file_size - 8, " bytes after it: truncated file?");
    std::string text(header_bytes, '\0');
    in.read(text.data(), std::streamsize(header_bytes));
    ISS_INPUT(in.gcount() == std::streamsize(header_bytes), path, ": cannot read the safetensors header");
    ISS_INPUT(!text.empty() && text[0] == '{', path, ": safetensors header does not start with '{'");
    const json header = parse_header(text, path);

    const uint64_t data_bytes = uint64_t(file_size) - 8 - header_bytes;
    SafetensorsFile file;
    file.path = path;
    std::vector<Entry> entries;
    for (const auto& item : header.items()) {
        if (item.key() == metadata_key) {
            ISS_INPUT(item.value().is_object(), path, ": '__metadata__' is not a JSON object");
            for (const auto& m : item.value().items()) {
                ISS_INPUT(m.value().is_string(), path, ": metadata '", m.key(), "' is not a string");
                file.metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        entries.push_back(parse_entry(item.key(), item.value(), data_bytes, path));
    }
    // The tensors must tile the data: sorted by offset, each starts where the previous ended.
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t expected = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
        const Entry& e = entries[i];
        ISS_INPUT(e.begin >= expected, path, ": tensors '", entries[i - 1].tensor.name, "' and '", e.tensor.name,
                  "' overlap (bytes ", e.begin, " to ", expected, ")");
        ISS_INPUT(e.begin == expected, path, ": gap in the data before tensor '", e.tensor.name, "' (bytes ", expected,
                  " to ", e.begin, ")");
        expected = e.end;
    }
    ISS_INPUT(expected == data_bytes, path, ": ", data_bytes - expected, " bytes after the last tensor's data");
    if (header_only) {
        for (Entry& e : entries) file.tensors.push_back(std::move(e.tensor));
        return file;
    }

    std::vector<uint8_t> data(data_bytes);
    in.read(reinterpret_cast<char*>(data.data()), std::streamsize(data_bytes));
    ISS_INPUT(in.gcount() == std::streamsize(data_bytes), path, ": cannot read the ", data_bytes, " bytes of data");
    if (const auto stated = file.metadata.find(checksum_key); stated != file.metadata.end()) {
        const std::string& text = stated->second;
        ISS_INPUT(is_crc32_text(text), path, ": its metadata's ", checksum_key, " is '", clipped(text, 16),
                  "', not 8 lowercase hex digits as our writer puts it (remove it to read the file unchecked)");
        const std::string found = crc32_text(crc32_of(0u, data.data(), data.size()));
        ISS_INPUT(found == stated->second, path, ": its data does not match the checksum it was written with (",
                  checksum_key, " ", clipped(stated->second, 16), ", the data's ", found,
                  "): the file is damaged (a disk error, a copy cut short, an edit); use an intact copy (a "
                  "file edited on purpose: remove data_crc32 from its metadata)");
        file.metadata.erase(stated);
    }
    for (Entry& e : entries) {
        e.tensor.data.assign(data.begin() + std::ptrdiff_t(e.begin), data.begin() + std::ptrdiff_t(e.end));
        file.tensors.push_back(std::move(e.tensor));
    }
    return file;
}

}  // namespace iss
