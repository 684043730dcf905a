#include "io/hdf5.h"

#include <hdf5.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

#include "io/file_util.h"
#include "kernels/common/error.h"

namespace iss {
namespace {

// Bounds for what an attribute or dataset of a weights file may claim before we allocate.
constexpr int64_t kMaxStrings = 1 << 20;     // names in one attribute
constexpr size_t kMaxStringBytes = 1 << 16;  // one fixed-length string
constexpr int64_t kMaxAttributeBytes = int64_t(64) << 20;
constexpr int64_t kMaxDatasetElements = int64_t(1) << 31;
constexpr int kMaxRank = 8;

// HDF5 prints its error stack to stderr by default; we report errors ourselves.
void silence_hdf5() {
    static std::once_flag once;
    std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

// Closes an HDF5 identifier when it goes out of scope.
class Id {
public:
    Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
    ~Id() {
        if (id_ >= 0) close_(id_);
    }
    Id(Id&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
    Id(const Id&) = delete;
    Id& operator=(const Id&) = delete;
    Id& operator=(Id&&) = delete;
    hid_t get() const { return id_; }
    bool ok() const { return id_ >= 0; }

private:
    hid_t id_;
    herr_t (*close_)(hid_t);
};

// Whether every link along an absolute path exists (H5Lexists fails on a missing parent).
bool path_exists(hid_t file, const std::string& name) {
    if (name == "/") return true;
    size_t pos = 0;
    while (pos != std::string::npos) {
        pos = name.find('/', pos + 1);
        const std::string prefix = name.substr(0, pos);
        if (prefix.empty() || prefix == "/") continue;
        if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    }
    return true;
}

H5I_type_t object_type(hid_t file, const std::string& name) {
    if (!path_exists(file, name)) return H5I_BADID;
    Id object(H5Oopen(file, name.c_str(), H5P_DEFAULT), H5Oclose);
    return object.ok() ? H5Iget_type(object.get()) : H5I_BADID;
}

std::string type_name(hid_t type) {
    const size_t size = H5Tget_size(type);
    switch (H5Tget_class(type)) {
        case H5T_FLOAT: return cat("float", size * 8);
        case H5T_INTEGER: return cat(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", size * 8);
        case H5T_STRING: return "string";
        default: return "another type";
    }
}

// The number of elements of a simple (or scalar) dataspace, with its dims; -1 otherwise.
int64_t extent(hid_t space, std::vector<int64_t>* shape) {
    const H5S_class_t kind = H5Sget_simple_extent_type(space);
    if (kind == H5S_NULL) return 0;
    if (kind == H5S_SCALAR) return 1;
    const int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0 || rank > kMaxRank) return -1;
    hsize_t dims[kMaxRank] = {};
    if (H5Sget_simple_extent_dims(space, dims, nullptr) < 0) return -1;
    int64_t count = 1;
    for (int d = 0; d < rank; ++d) {
        if (dims[d] > hsize_t(kMaxDatasetElements)) return -1;
        if (shape) shape->push_back(int64_t(dims[d]));
        count *= int64_t(dims[d]);
        if (count > kMaxDatasetElements) return -1;
    }
    return count;
}

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

// libhdf5 1.10 walks a global heap collection (where variable-length strings live) object by
// object without checking that each step moves on or stays inside the collection: a free-space
// object of 0 bytes makes it loop forever on the first variable-length read, and an object that
// reaches past the collection makes it copy from beyond its buffer (fuzz_keras_hdf5 found both,
// docs/RELIABILITY.md). So every collection in the file (signature "GCOL", version 1) is walked
// here first, as that library walks it, and a file with a walk that would not end, or with an
// object outside its collection, is refused. Bytes past the end of the file read as zeros, as they do
// for libhdf5's POSIX driver.
class GlobalHeapCheck {
public:
    GlobalHeapCheck(const std::string& path, size_t length_bytes) : path_(path), length_bytes_(length_bytes) {}

    void run() {
        std::FILE* raw = std::fopen(path_.c_str(), "rb");
        ISS_INPUT(raw != nullptr, path_, ": cannot open (missing or unreadable)");
        file_.reset(raw);
        std::fseek(raw, 0, SEEK_END);
        file_size_ = uint64_t(std::max<long>(std::ftell(raw), 0));
        // Scan in blocks that overlap by the signature's length less one.
        constexpr size_t kBlock = size_t(1) << 20;
        std::vector<uint8_t> block;
        for (uint64_t start = 0; start < file_size_; start += kBlock) {
            block = bytes_at(start, kBlock + 3);
            for (size_t i = 0; i + 5 <= block.size() && i < kBlock; ++i)
                if (block[i] == 'G' && std::memcmp(&block[i], "GCOL", 4) == 0 && block[i + 4] == 1)
                    walk(start + i);
        }
    }

private:
    struct Close {
        void operator()(std::FILE* f) const { std::fclose(f); }
    };

    // `count` bytes from `offset`, those past the end of the file as zeros.
    std::vector<uint8_t> bytes_at(uint64_t offset, size_t count) {
        std::vector<uint8_t> bytes(count, 0);
        if (offset >= file_size_) return bytes;
        const size_t available = size_t(std::min<uint64_t>(count, file_size_ - offset));
        std::fseek(file_.get(), long(offset), SEEK_SET);
        const size_t got = std::fread(bytes.data(), 1, available, file_.get());
        (void)got;  // a short read leaves zeros, which the walk treats as libhdf5 would
        return bytes;
    }

    uint64_t length_at(const uint8_t* p) const {
        uint64_t v = 0;
        for (size_t b = 0; b < length_bytes_; ++b) v |= uint64_t(p[b]) << (8 * b);
        return v;
    }

    // The collection's header: signature, version, 3 reserved bytes, its size in bytes (the
    // header included); then objects: index (2 bytes), reference count (2), reserved (4), size.
    void walk(uint64_t offset) {
        const size_t header = 8 + length_bytes_, object_header = 8 + length_bytes_;
        const uint64_t size = length_at(bytes_at(offset + 8, length_bytes_).data());
        // Only what the file holds (and one object header of zeros past it) can be read; a walk
        // that reaches the zeros stops there, on an object that does not move it on.
        const uint64_t readable = std::min<uint64_t>(size, file_size_ - offset + object_header);
        const std::vector<uint8_t> chunk = bytes_at(offset, size_t(readable));
        uint64_t at = header;
        while (at < size) {
            if (at + object_header > size) return;  // a tail too small for an object: free space
            ISS_INPUT(at + object_header <= readable, path_, ": global heap collection at byte ", offset,
                      " runs past the end of the file");
            const uint8_t* object = chunk.data() + at;
            const unsigned index = unsigned(object[0]) | unsigned(object[1]) << 8;
            const uint64_t object_size = length_at(object + 8);
            // An object (its header, data and padding to 8 bytes; the free-space object, index 0,
            // counts its header in its size) must lie inside its collection and move the walk on:
            // libhdf5 copies a string's bytes from it without checking (fuzz_keras_hdf5 found one
            // reaching past the collection).
            const uint64_t room = size - at;
            const bool fits = index > 0 ? object_size <= room - object_header &&
                                              object_header + ((object_size + 7) & ~uint64_t(7)) <= room
                                        : object_size > 0 && object_size <= room;
            ISS_INPUT(fits, path_, ": global heap collection at byte ", offset, " is damaged (an object of ",
                      object_size, " bytes at byte ", at, " of ", size, ")");
            at += index > 0 ? object_header + ((object_size + 7) & ~uint64_t(7)) : object_size;
        }
    }

    std::string path_;
    size_t length_bytes_;
    std::unique_ptr<std::FILE, Close> file_;
    uint64_t file_size_ = 0;
};

}  // namespace

// --- reading -----------------------------------------------------------------------------------

Hdf5Reader::Hdf5Reader(const std::string& path) : path_(path) {
    silence_hdf5();
    require_regular_file(path);  // a FIFO would block HDF5's first read forever
    const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
    ISS_INPUT(is_hdf5 >= 0, path, ": cannot open (missing or unreadable)");
    ISS_INPUT(is_hdf5 > 0, path, ": not an HDF5 file");
    file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    ISS_INPUT(file_ >= 0, path, ": cannot open as HDF5 (damaged or truncated?)");
    try {
        size_t length_bytes = 8;  // the file's "size of lengths"
        Id create(H5Fget_create_plist(file_), H5Pclose);
        ISS_INPUT(create.ok() && H5Pget_sizes(create.get(), nullptr, &length_bytes) >= 0 &&
                      (length_bytes == 2 || length_bytes == 4 || length_bytes == 8),
                  path, ": cannot open as HDF5 (damaged superblock)");
        GlobalHeapCheck(path, length_bytes).run();
    } catch (...) {
        H5Fclose(file_);  // the destructor does not run for a constructor that throws
        throw;
    }
}

Hdf5Reader::~Hdf5Reader() {
    if (file_ >= 0) H5Fclose(file_);
}

bool Hdf5Reader::has_group(const std::string& name) const {
    return object_type(file_, name) == H5I_GROUP;
}

bool Hdf5Reader::has_dataset(const std::string& name) const {
    return object_type(file_, name) == H5I_DATASET;
}

bool Hdf5Reader::has_attribute(const std::string& object, const std::string& name) const {
    if (object_type(file_, object) == H5I_BADID) return false;
    return H5Aexists_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> Hdf5Reader::string_list(const std::string& object, const std::string& name) const {
    const std::string where = cat(path_, ": attribute '", name, "' of ", object);
    ISS_INPUT(has_attribute(object, name), path_, ": no attribute '", name, "' on ", object);
    Id attribute(H5Aopen_by_name(file_, object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    ISS_INPUT(attribute.ok(), where, ": cannot be opened");
    Id type(H5Aget_type(attribute.get()), H5Tclose);
    Id space(H5Aget_space(attribute.get()), H5Sclose);
    ISS_INPUT(type.ok() && space.ok(), where, ": unreadable");
    std::vector<int64_t> shape;
    const int64_t count = extent(space.get(), &shape);
    ISS_INPUT(count >= 0 && shape.size() <= 1, where, ": expected a list of names");
    if (count == 0) return {};  // an empty list of any type
    ISS_INPUT(H5Tget_class(type.get()) == H5T_STRING, where, ": expected strings, found ", type_name(type.get()));
    ISS_INPUT(count <= kMaxStrings, where, ": ", count, " names is more than a weights file holds");

    std::vector<std::string> values;
    values.reserve(size_t(count));
    if (H5Tis_variable_str(type.get()) > 0) {
        Id memory(H5Tcopy(H5T_C_S1), H5Tclose);
        H5Tset_size(memory.get(), H5T_VARIABLE);
        H5Tset_cset(memory.get(), H5Tget_cset(type.get()));
        std::vector<char*> pointers(size_t(count), nullptr);
        ISS_INPUT(H5Aread(attribute.get(), memory.get(), pointers.data()) >= 0, where, ": cannot be read");
        for (char* p : pointers) values.emplace_back(p ? std::string(p, strnlen(p, kMaxStringBytes)) : std::string());
#if H5_VERSION_GE(1, 12, 0)
        H5Treclaim(memory.get(), space.get(), H5P_DEFAULT, pointers.data());
#else
        H5Dvlen_reclaim(memory.get(), space.get(), H5P_DEFAULT, pointers.data());
#endif
        return values;
    }
    const size_t size = H5Tget_size(type.get());
    ISS_INPUT(size >= 1 && size <= kMaxStringBytes && int64_t(size) * count <= kMaxAttributeBytes, where,
              ": strings of ", size, " bytes are more than a weights file holds");
    Id memory(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory.get(), size);
    H5Tset_strpad(memory.get(), H5T_STR_NULLPAD);
    std::vector<char> buffer(size * size_t(count), '\0');
    ISS_INPUT(H5Aread(attribute.get(), memory.get(), buffer.data()) >= 0, where, ": cannot be read");
    for (int64_t i = 0; i < count; ++i) {
        const char* p = buffer.data() + size_t(i) * size;
        values.emplace_back(p, strnlen(p, size));
    }
    return values;
}

Hdf5Reader::DatasetInfo Hdf5Reader::dataset_info(const std::string& name) const {
    ISS_INPUT(has_dataset(name), path_, ": no dataset ", name);
    Id dataset(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
    ISS_INPUT(dataset.ok(), path_, ": dataset ", name, " cannot be opened");
    Id type(H5Dget_type(dataset.get()), H5Tclose);
    Id space(H5Dget_space(dataset.get()), H5Sclose);
    ISS_INPUT(type.ok() && space.ok(), path_, ": dataset ", name, " is unreadable");
    DatasetInfo info;
    ISS_INPUT(extent(space.get(), &info.shape) >= 0, path_, ": dataset ", name, " has an unsupported shape");
    info.type = type_name(type.get());
    info.float32 = H5Tget_class(type.get()) == H5T_FLOAT && H5Tget_size(type.get()) == 4;
    return info;
}

std::vector<float> Hdf5Reader::read_f32(const std::string& name, const std::vector<int64_t>& shape) const {
    const DatasetInfo info = dataset_info(name);
    ISS_INPUT(info.float32, path_, ": dataset ", name, " holds ", info.type, ", expected float32");
    ISS_INPUT(info.shape == shape, path_, ": dataset ", name, " has shape ", shape_text(info.shape), ", expected ",
              shape_text(shape));
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    if (count == 0) return {};
    Id dataset(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
    ISS_INPUT(dataset.ok(), path_, ": dataset ", name, " cannot be opened");
    // The data must fit in the file (uncompressed), or in a plausible compression of it, before
    // we allocate for it: dims alone prove nothing.
    hsize_t file_bytes = 0;
    H5Fget_filesize(file_, &file_bytes);
    Id plist(H5Dget_create_plist(dataset.get()), H5Pclose);
    const bool contiguous = plist.ok() && H5Pget_layout(plist.get()) != H5D_CHUNKED;
    const double claimed = 4.0 * double(count), limit = double(file_bytes) * (contiguous ? 1.0 : 1024.0);
    ISS_INPUT(claimed <= limit, path_, ": dataset ", name, " claims ", count, " values, more than the file holds");
    std::vector<float> data(static_cast<size_t>(count));
    ISS_INPUT(H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()) >= 0, path_,
              ": dataset ", name, " cannot be read (truncated or damaged file?)");
    return data;
}

// --- writing -----------------------------------------------------------------------------------

namespace {

void check(herr_t status, const std::string& path, const std::string& what) {
    if (status < 0) throw Error(cat(path, ": HDF5 could not ", what));
}

// Link creation that makes missing groups above the new object.
Id intermediate_groups() {
    Id plist(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
    H5Pset_create_intermediate_group(plist.get(), 1);
    return plist;
}

}  // namespace

Hdf5Writer::Hdf5Writer(const std::string& path) : path_(path) {
    silence_hdf5();
    file_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file_ < 0) throw Error(cat(path, ": cannot create the HDF5 file"));
}

Hdf5Writer::~Hdf5Writer() {
    if (file_ >= 0) H5Fclose(file_);
}

void Hdf5Writer::group(const std::string& name) {
    if (object_type(file_, name) == H5I_GROUP) return;
    const Id links = intermediate_groups();
    Id group(H5Gcreate2(file_, name.c_str(), links.get(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    check(group.ok() ? 0 : -1, path_, cat("create group ", name));
}

void Hdf5Writer::string_list(const std::string& object, const std::string& name,
                             const std::vector<std::string>& values) {
    size_t longest = 1;
    for (const std::string& v : values) longest = std::max(longest, v.size());
    Id type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type.get(), longest);
    H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
    const hsize_t dims[1] = {hsize_t(values.size())};
    Id space(H5Screate_simple(1, dims, nullptr), H5Sclose);
    Id attribute(H5Acreate_by_name(file_, object.c_str(), name.c_str(), type.get(), space.get(), H5P_DEFAULT,
                                   H5P_DEFAULT, H5P_DEFAULT),
                 H5Aclose);
    check(attribute.ok() ? 0 : -1, path_, cat("create attribute ", name, " on ", object));
    std::vector<char> buffer(longest * std::max<size_t>(values.size(), 1), '\0');
    for (size_t i = 0; i < values.size(); ++i)
        std::memcpy(buffer.data() + i * longest, values[i].data(), values[i].size());
    check(H5Awrite(attribute.get(), type.get(), buffer.data()), path_, cat("write attribute ", name, " on ", object));
}

void Hdf5Writer::string_attribute(const std::string& object, const std::string& name, const std::string& value) {
    Id type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type.get(), std::max<size_t>(value.size(), 1));
    H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
    Id space(H5Screate(H5S_SCALAR), H5Sclose);
    Id attribute(H5Acreate_by_name(file_, object.c_str(), name.c_str(), type.get(), space.get(), H5P_DEFAULT,
                                   H5P_DEFAULT, H5P_DEFAULT),
                 H5Aclose);
    check(attribute.ok() ? 0 : -1, path_, cat("create attribute ", name, " on ", object));
    std::vector<char> buffer(std::max<size_t>(value.size(), 1), '\0');
    std::memcpy(buffer.data(), value.data(), value.size());
    check(H5Awrite(attribute.get(), type.get(), buffer.data()), path_, cat("write attribute ", name, " on ", object));
}

namespace {

// One dataset of `file_type` from host values of `memory_type`.
void write_dataset(hid_t file, const std::string& path, const std::string& name, const std::vector<int64_t>& shape,
                   const void* data, size_t count, hid_t file_type, hid_t memory_type) {
    ISS_REQUIRE(!shape.empty() && int(shape.size()) <= kMaxRank, "dataset ", name, ": rank ", shape.size());
    std::vector<hsize_t> dims;
    int64_t expected = 1;
    for (int64_t d : shape) {
        dims.push_back(hsize_t(d));
        expected *= d;
    }
    ISS_REQUIRE(expected == int64_t(count), "dataset ", name, ": ", count, " values for shape ", shape_text(shape));
    Id space(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
    const Id links = intermediate_groups();
    Id dataset(H5Dcreate2(file, name.c_str(), file_type, space.get(), links.get(), H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
    check(dataset.ok() ? 0 : -1, path, cat("create dataset ", name));
    if (count > 0)
        check(H5Dwrite(dataset.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), path,
              cat("write dataset ", name));
}

}  // namespace

void Hdf5Writer::dataset_f32(const std::string& name, const std::vector<int64_t>& shape,
                             const std::vector<float>& data) {
    write_dataset(file_, path_, name, shape, data.data(), data.size(), H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
}

void Hdf5Writer::dataset_f64(const std::string& name, const std::vector<int64_t>& shape,
                             const std::vector<double>& data) {
    write_dataset(file_, path_, name, shape, data.data(), data.size(), H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE);
}

void Hdf5Writer::close() {
    if (file_ < 0) return;
    const herr_t flushed = H5Fflush(file_, H5F_SCOPE_GLOBAL);
    const herr_t closed = H5Fclose(file_);
    file_ = -1;
    check(flushed < 0 ? flushed : closed, path_, "write the file (disk full?)");
}

}  // namespace iss
