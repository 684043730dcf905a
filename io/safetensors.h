// The safetensors format (huggingface/safetensors), in which models are saved (DESIGN.md,
// "Files users see"; layout in docs/FORMATS.md): 8 bytes little-endian header length N,
// N bytes of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
// "__metadata__": {string: string}} padded with spaces to a multiple of 8, then the data,
// offsets relative to its start. Tensors are raw little-endian, C order.
//
// The writer goes through a temporary name (no partial file on failure) and orders tensors
// by element size, largest first, then by name: the order is stable whatever the caller's,
// and every tensor starts at a multiple of its element size (the header keeps the data
// 8-aligned), as the reference implementation arranges it.
// The reader validates everything before returning anything; errors are iss::InputError
// naming the file and the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace iss {

// Size in bytes of one element of a safetensors dtype ("F32", "I64", ...); 0 if unknown.
// Known: BOOL U8 I8 I16 U16 F16 BF16 I32 U32 F32 I64 U64 F64.
size_t safetensors_dtype_size(const std::string& dtype);

struct SafeTensor {
    std::string name;
    std::string dtype;           // "F32", "F64", "I32", "I64", "U8", ...
    std::vector<int64_t> shape;  // empty: a scalar (one element)
    std::vector<uint8_t> data;   // element count * dtype size bytes, little-endian

    int64_t elements() const;

    // Builders and typed views for the common dtypes; the views check dtype and size.
    static SafeTensor f32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values);
    static SafeTensor f64(const std::string& name, const std::vector<int64_t>& shape, const std::vector<double>& values);
    static SafeTensor i32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int32_t>& values);
    static SafeTensor i64(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& values);
    static SafeTensor u8(const std::string& name, const std::vector<int64_t>& shape, const std::vector<uint8_t>& values);
    std::vector<float> as_f32() const;
    std::vector<double> as_f64() const;
    std::vector<int32_t> as_i32() const;
    std::vector<int64_t> as_i64() const;
};

struct SafetensorsFile {
    std::vector<SafeTensor> tensors;  // in the order of their data in the file
    std::map<std::string, std::string> metadata;

    // The tensor called `name`; InputError naming it (and `path`, when given) if absent.
    const SafeTensor& at(const std::string& name) const;
    bool contains(const std::string& name) const;
    std::string path;  // the file it was read from
};

// Preconditions (iss::Error, nothing written): unique non-empty names other than
// "__metadata__", known dtypes, non-negative dims, data size = elements * dtype size.
void write_safetensors(const std::string& path, const std::vector<SafeTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// `header_only`: the tensors' names, dtypes and shapes (their data empty) and the metadata, the
// header checked as for a whole read and the data's size against it, but the data not read (what a
// caller checks before it allocates for them).
SafetensorsFile read_safetensors(const std::string& path, bool header_only = false);

// zlib's CRC-32 (Python's zlib.crc32) of `n` bytes, continuing `crc` (0 to start), and one as
// our files state it: 8 lowercase hex digits (data_crc32 here, model.json's record_crc32).
uint32_t crc32_of(uint32_t crc, const void* bytes, size_t n);
std::string crc32_text(uint32_t crc);
// Whether `text` is as crc32_text writes a CRC.
bool is_crc32_text(const std::string& text);

}  // namespace iss
