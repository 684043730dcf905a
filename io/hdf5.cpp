#include "io/hdf5.h"

#include <hdf5.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "io/file_util.h"
#include "io/volume.h"  // shape_text
#include "kernels/common/error.h"

namespace iss {
namespace {

// Bounds for what an attribute or dataset of a weights file may claim before we allocate.
constexpr int64_t kMaxAttributeBytes = int64_t(64) << 20;  // all the strings of one attribute
constexpr int64_t kMaxDatasetElements = int64_t(1) << 31;
constexpr int kMaxRank = 8;


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

// Variable-length strings live in global heap collections, and libhdf5 1.10 trusts them: it
// walks a collection object by object without checking that each step moves on or stays inside
// it (a free-space object of 0 bytes: an endless loop), copies an object's bytes into a buffer
// sized by the string's length without comparing the two, and looks an object up by an index it
// never bounds (fuzz_keras_hdf5 found the loop, the overrun and a wild read;
// docs/RELIABILITY.md). So before libhdf5 reads a variable-length string attribute, its raw heap
// references (length, collection address, object index) are read without following them
// (keep_raw_references below), each collection they name is walked here as that library walks
// it, and every reference must name an object of exactly its length.
//
// The file layouts (HDF5 file format, "Global Heap"): a collection is "GCOL", version 1, three
// reserved bytes, its size in bytes (header included); then objects: index (2 bytes), reference
// count (2), reserved (4), size, data padded to 8 bytes; index 0 is the free space, whose size
// counts its header. A reference is a length (4 bytes), the collection's address, an index (4).
// Lengths and addresses are 8 bytes here: files with other sizes are refused for these strings.
}  // namespace

class Hdf5Reader::Heaps {
public:
    // The file's bytes: `image` when the file was opened from memory, else the file at `path`.
    Heaps(const std::string& path, const std::vector<uint8_t>* image, uint64_t base)
        : path_(path), image_(image), base_(base), file_size_(image ? image->size() : 0) {}

    // Throws InputError unless object `index` of the collection at `address` holds `length`
    // bytes.
    void check(uint64_t address, uint32_t index, uint32_t length, const std::string& where) {
        const std::map<uint32_t, uint64_t>& objects = collection(address, where);
        const auto it = objects.find(index);
        ISS_INPUT(index > 0 && it != objects.end(), where, ": refers to object ", index,
                  " of the global heap collection at byte ", address, ", which has no such object");
        ISS_INPUT(it->second == length, where, ": a string of ", length, " bytes stored in an object of ", it->second,
                  " bytes (damaged global heap)");
    }

private:
    static constexpr uint64_t kHeader = 16, kObjectHeader = 16;

    // The objects (index -> data bytes) of the collection at `address`, walked once.
    const std::map<uint32_t, uint64_t>& collection(uint64_t address, const std::string& where) {
        const auto known = collections_.find(address);
        if (known != collections_.end()) return known->second;
        if (!image_ && !file_) {
            std::FILE* raw = std::fopen(path_.c_str(), "rb");
            ISS_INPUT(raw != nullptr, path_, ": cannot open (missing or unreadable)");
            file_.reset(raw);
            std::fseek(raw, 0, SEEK_END);
            file_size_ = uint64_t(std::max<long>(std::ftell(raw), 0));
        }
        const std::string at_text = cat(where, ": global heap collection at byte ", address);
        ISS_INPUT(address <= file_size_ && base_ <= file_size_ - address && file_size_ - base_ - address >= kHeader,
                  at_text, " lies outside the file");
        const uint64_t offset = base_ + address;
        const std::vector<uint8_t> header = bytes_at(offset, kHeader);
        ISS_INPUT(std::memcmp(header.data(), "GCOL", 4) == 0 && header[4] == 1, at_text, " is not one");
        const uint64_t size = little_endian(&header[8]);
        ISS_INPUT(size >= kHeader && size <= file_size_ - offset, at_text, " claims ", size,
                  " bytes, more than the file holds");
        const std::vector<uint8_t> chunk = bytes_at(offset, size_t(size));
        std::map<uint32_t, uint64_t> objects;
        uint64_t at = kHeader;
        while (at < size) {
            if (at + kObjectHeader > size) break;  // a tail too small for an object: free space
            const uint8_t* object = chunk.data() + at;
            const uint32_t index = uint32_t(object[0]) | uint32_t(object[1]) << 8;
            const uint64_t object_size = little_endian(object + 8);
            // An object's step (header, data, padding to 8; the free space, index 0, counts its
            // header in its size) must move the walk on and stay inside the collection. The data
            // size is bounded first, so the padding cannot wrap round.
            const uint64_t room = size - at;
            const bool bounded = index > 0 ? object_size <= room - kObjectHeader : object_size > 0;
            const uint64_t step = index > 0 ? kObjectHeader + ((object_size + 7) & ~uint64_t(7)) : object_size;
            ISS_INPUT(bounded && step <= room, at_text, " is damaged (an object of ", object_size, " bytes at byte ",
                      at, " of ", size, ")");
            if (index > 0) objects[index] = object_size;
            at += step;
        }
        return collections_.emplace(address, std::move(objects)).first->second;
    }

    std::vector<uint8_t> bytes_at(uint64_t offset, size_t count) {
        if (image_)
            return std::vector<uint8_t>(image_->begin() + ptrdiff_t(offset),
                                        image_->begin() + ptrdiff_t(offset + count));
        std::vector<uint8_t> bytes(count, 0);
        std::fseek(file_.get(), long(offset), SEEK_SET);
        ISS_INPUT(std::fread(bytes.data(), 1, count, file_.get()) == count, path_, ": cannot be read at byte ",
                  offset);
        return bytes;
    }

    static uint64_t little_endian(const uint8_t* p) {
        uint64_t v = 0;
        for (int b = 0; b < 8; ++b) v |= uint64_t(p[b]) << (8 * b);
        return v;
    }

    struct Close {
        void operator()(std::FILE* f) const { std::fclose(f); }
    };
    std::string path_;
    const std::vector<uint8_t>* image_;
    uint64_t base_;  // where addresses count from (after a user block)
    std::unique_ptr<std::FILE, Close> file_;
    uint64_t file_size_;
    std::map<uint64_t, std::map<uint32_t, uint64_t>> collections_;
};

namespace {

// A variable-length string's stored reference, as raw bytes: an opaque type of this tag, which
// the conversion below fills without touching the heap.
constexpr const char* kRawReferenceTag = "infant-synthseg raw heap reference";
constexpr size_t kReferenceBytes = 16;

// A conversion from variable-length strings to kRawReferenceTag: libhdf5 hands it an attribute's
// elements as stored in the file (reference by reference, 16 bytes each), which it leaves as
// they are. Registered once; it declines every other pair of types.
herr_t keep_raw_references(hid_t source, hid_t destination, H5T_cdata_t* cdata, size_t, size_t, size_t, void*,
                           void*, hid_t) {
    if (cdata->command != H5T_CONV_INIT) return 0;
    if (H5Tget_class(source) != H5T_STRING || H5Tis_variable_str(source) <= 0) return -1;
    if (H5Tget_class(destination) != H5T_OPAQUE || H5Tget_size(destination) != kReferenceBytes) return -1;
    char* tag = H5Tget_tag(destination);
    const bool ours = tag && std::strcmp(tag, kRawReferenceTag) == 0;
    H5free_memory(tag);
    return ours ? 0 : -1;
}

// HDF5's signature at the start of the superblock, which lies at byte 0 or after a user block of
// 512, 1024, 2048, ... bytes (where H5Fis_hdf5 looks for it).
bool has_hdf5_signature(const std::vector<uint8_t>& image) {
    static const uint8_t signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    for (uint64_t at = 0; at + sizeof signature <= image.size(); at = at == 0 ? 512 : 2 * at)
        if (std::memcmp(image.data() + at, signature, sizeof signature) == 0) return true;
    return false;
}

// File image callbacks under which libhdf5 reads an image in place: every buffer it would
// allocate for the image (in the property lists, in the core driver) is the image itself, and
// nothing is copied or freed. The image outlives the property list and the file (it is the
// reader's member, and the file is read only). As the HDF Group's H5LTopen_file_image does with
// H5LT_FILE_IMAGE_DONT_COPY | H5LT_FILE_IMAGE_DONT_RELEASE, without its reference counts.
H5FD_file_image_callbacks_t borrowed_image_callbacks(std::vector<uint8_t>* image) {
    H5FD_file_image_callbacks_t c{};
    c.image_malloc = [](size_t size, H5FD_file_image_op_t, void* udata) -> void* {
        auto* bytes = static_cast<std::vector<uint8_t>*>(udata);
        return size == bytes->size() ? bytes->data() : nullptr;
    };
    c.image_memcpy = [](void* dest, const void* src, size_t, H5FD_file_image_op_t, void*) -> void* {
        return dest == src ? dest : nullptr;  // the same image: nothing to copy
    };
    c.image_realloc = [](void*, size_t, H5FD_file_image_op_t, void*) -> void* { return nullptr; };  // read only
    c.image_free = [](void*, H5FD_file_image_op_t, void*) -> herr_t { return 0; };
    c.udata_copy = [](void* udata) -> void* { return udata; };
    c.udata_free = [](void*) -> herr_t { return 0; };
    c.udata = image;
    return c;
}

// Once per process: HDF5 prints its error stack to stderr by default (we report errors
// ourselves), and the raw reference conversion is registered.
void init_hdf5() {
    static std::once_flag once;
    std::call_once(once, [] {
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
        Id any_string(H5Tcopy(H5T_C_S1), H5Tclose);
        H5Tset_size(any_string.get(), H5T_VARIABLE);
        Id raw(H5Tcreate(H5T_OPAQUE, kReferenceBytes), H5Tclose);
        H5Tset_tag(raw.get(), kRawReferenceTag);
        H5Tregister(H5T_PERS_SOFT, "raw heap references", any_string.get(), raw.get(), keep_raw_references);
    });
}

}  // namespace

// --- reading -----------------------------------------------------------------------------------


Hdf5Reader::Hdf5Reader(const std::string& path) : path_(path) {
    init_hdf5();
    require_regular_file(path);  // a FIFO would block HDF5's first read forever
    const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
    ISS_INPUT(is_hdf5 >= 0, path, ": cannot open (missing or unreadable)");
    ISS_INPUT(is_hdf5 > 0, path, ": not an HDF5 file");
    file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    finish_open();
}

Hdf5Reader::Hdf5Reader(const std::string& name, std::vector<uint8_t> image) : path_(name), image_(std::move(image)) {
    init_hdf5();
    ISS_INPUT(has_hdf5_signature(image_), name, ": not an HDF5 file");
    // libhdf5's core driver on the image itself (borrowed_image_callbacks), without a file
    // behind it. The driver makes sure no file of the name exists by opening it, so the name is
    // one that cannot be opened (ENOTDIR); it must also differ from every other image open, which
    // the driver tells apart by name.
    static std::atomic<uint64_t> images{0};
    const std::string image_name = cat("/dev/null/infant-synthseg-image-", images++);
    H5FD_file_image_callbacks_t callbacks = borrowed_image_callbacks(&image_);
    Id access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    const bool set = access.ok() && H5Pset_fapl_core(access.get(), 1 << 20, 0) >= 0 &&
                     H5Pset_file_image_callbacks(access.get(), &callbacks) >= 0 &&
                     H5Pset_file_image(access.get(), image_.data(), image_.size()) >= 0;
    ISS_REQUIRE(set, path_, ": libhdf5 cannot set up reading it from memory");
    file_ = H5Fopen(image_name.c_str(), H5F_ACC_RDONLY, access.get());
    finish_open();
}

void Hdf5Reader::finish_open() {
    ISS_INPUT(file_ >= 0, path_, ": cannot open as HDF5 (damaged or truncated?)");
    // Where the file's addresses count from, and their sizes (for the raw heap references).
    Id create(H5Fget_create_plist(file_), H5Pclose);
    hsize_t user_block = 0;
    const bool sizes_known = create.ok() && H5Pget_userblock(create.get(), &user_block) >= 0 &&
                             H5Pget_sizes(create.get(), &address_bytes_, &length_bytes_) >= 0;
    if (!sizes_known) {
        H5Fclose(file_);  // the destructor does not run for a constructor that throws
        throw InputError(cat(path_, ": cannot open as HDF5 (damaged superblock)"));
    }
    heaps_ = std::make_unique<Heaps>(path_, image_.empty() ? nullptr : &image_, uint64_t(user_block));
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

std::vector<std::string> Hdf5Reader::group_members(const std::string& group, int64_t max_count) const {
    const std::string where = cat(path_, ": group ", group);
    ISS_INPUT(has_group(group), path_, ": no group ", group);
    Id g(H5Gopen2(file_, group.c_str(), H5P_DEFAULT), H5Gclose);
    H5G_info_t info{};
    ISS_INPUT(g.ok() && H5Gget_info(g.get(), &info) >= 0, where, ": unreadable");
    ISS_INPUT(info.nlinks <= hsize_t(max_count), where, ": holds ", info.nlinks, " members, expected at most ",
              max_count);
    // One pass over the links (asking for them one by one by index made libhdf5 sort a dense
    // group's names again for each: seconds for a few thousand), stopped at the first name too
    // long or past the count.
    struct Listing {
        std::vector<std::string> names;
        size_t max_count;
        bool bad_name = false;
    } listing{{}, size_t(max_count)};
    const auto collect = [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
        Listing& l = *static_cast<Listing*>(data);
        const size_t length = strnlen(name, max_name_bytes + 1);
        if (length == 0 || length > max_name_bytes) {
            l.bad_name = true;
            return 1;
        }
        l.names.emplace_back(name, length);
        return l.names.size() > l.max_count ? 1 : 0;
    };
    hsize_t next = 0;
    const herr_t status = H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, &next, collect, &listing);
    ISS_INPUT(status >= 0, where, ": its members cannot be listed (damaged)");
    ISS_INPUT(!listing.bad_name, where, ": member ", listing.names.size(), " has an empty or too long name");
    ISS_INPUT(listing.names.size() <= size_t(max_count), where, ": holds more than ", max_count, " members");
    return listing.names;
}

std::vector<std::string> Hdf5Reader::string_list(const std::string& object, const std::string& name,
                                                 size_t max_bytes, int64_t max_count) const {
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
    ISS_INPUT(count <= max_count, where, ": holds ", count, " strings, expected at most ", max_count);
    const bool variable = H5Tis_variable_str(type.get()) > 0;
    // Variable-length strings are read through raw heap references (Hdf5Reader::Heaps above).
    ISS_INPUT(!variable || (address_bytes_ == 8 && length_bytes_ == 8), where,
              ": variable-length strings in a file of ", address_bytes_, "-byte addresses and ", length_bytes_,
              "-byte lengths are not supported");
    // libhdf5 copies count x element bytes out of the attribute's stored data without comparing
    // the two (fuzz_keras_hdf5: a read past the buffer).
    const size_t element = variable ? kReferenceBytes : H5Tget_size(type.get());
    ISS_INPUT(H5Aget_storage_size(attribute.get()) == hsize_t(count) * element, where, ": holds ",
              H5Aget_storage_size(attribute.get()), " bytes for ", count, " names of ", element, " bytes (damaged)");

    std::vector<std::string> values;
    values.reserve(size_t(count));
    if (variable) {
        // Every reference checked before libhdf5 follows one (Hdf5Reader::Heaps above).
        {
            Id raw(H5Tcreate(H5T_OPAQUE, kReferenceBytes), H5Tclose);
            H5Tset_tag(raw.get(), kRawReferenceTag);
            std::vector<uint8_t> references(kReferenceBytes * size_t(count));
            ISS_INPUT(H5Aread(attribute.get(), raw.get(), references.data()) >= 0, where, ": cannot be read");
            // libhdf5 copies each reference's object: many references to one large object
            // would multiply it, so the total is bounded, not only each string.
            int64_t total = 0;
            for (int64_t i = 0; i < count; ++i) {
                const uint8_t* r = references.data() + kReferenceBytes * size_t(i);
                uint32_t length, index;
                uint64_t address;
                std::memcpy(&length, r, 4);  // little-endian in the file, as on every host we build for
                std::memcpy(&address, r + 4, 8);
                std::memcpy(&index, r + 12, 4);
                if (length == 0 && address == 0) continue;  // a null string: no heap object
                ISS_INPUT(length <= max_bytes, where, ": a string of ", length, " bytes is more than expected");
                total += int64_t(length);
                ISS_INPUT(total <= kMaxAttributeBytes, where, ": its strings hold more than ", kMaxAttributeBytes,
                          " bytes in all");
                heaps_->check(address, index, length, where);
            }
        }
        Id memory(H5Tcopy(H5T_C_S1), H5Tclose);
        H5Tset_size(memory.get(), H5T_VARIABLE);
        H5Tset_cset(memory.get(), H5Tget_cset(type.get()));
        std::vector<char*> pointers(size_t(count), nullptr);
        ISS_INPUT(H5Aread(attribute.get(), memory.get(), pointers.data()) >= 0, where, ": cannot be read");
        for (char* p : pointers) values.emplace_back(p ? std::string(p, strnlen(p, max_bytes)) : std::string());
#if H5_VERSION_GE(1, 12, 0)
        H5Treclaim(memory.get(), space.get(), H5P_DEFAULT, pointers.data());
#else
        H5Dvlen_reclaim(memory.get(), space.get(), H5P_DEFAULT, pointers.data());
#endif
        return values;
    }
    const size_t size = H5Tget_size(type.get());
    ISS_INPUT(size >= 1 && size <= max_bytes && int64_t(size) * count <= kMaxAttributeBytes, where,
              ": strings of ", size, " bytes are more than expected");
    Id memory(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory.get(), size);
    H5Tset_strpad(memory.get(), H5T_STR_NULLPAD);
    H5Tset_cset(memory.get(), H5Tget_cset(type.get()));  // h5py writes UTF-8 ones too
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

// Before we allocate for a dataset, its data must be in the file: dims alone prove nothing, and
// HDF5 reads what was never written (an interrupted save) as fill values without a word.
void Hdf5Reader::require_stored_data(int64_t dataset, const std::string& name,
                                     const std::vector<int64_t>& shape) const {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    const std::string where = cat(path_, ": dataset ", name);
    Id plist(H5Dget_create_plist(dataset), H5Pclose);
    ISS_INPUT(plist.ok(), where, " is unreadable");
    // Data in other files: libhdf5 would open whatever path the file names (a FIFO blocks it).
    const H5D_layout_t layout = H5Pget_layout(plist.get());
    ISS_INPUT(layout != H5D_VIRTUAL && H5Pget_external_count(plist.get()) == 0, where,
              " keeps its data in other files (external or virtual storage), which is not read");
    const int filters = H5Pget_nfilters(plist.get());
    ISS_INPUT(filters >= 0 && filters <= 32, where, " is unreadable (its filter list is damaged)");
    for (int f = 0; f < filters; ++f) {
        unsigned flags = 0, config = 0;
        size_t values = 0;
        char filter_name[64] = {};
        const H5Z_filter_t id = H5Pget_filter2(plist.get(), unsigned(f), &flags, &values, nullptr,
                                               sizeof filter_name, filter_name, &config);
        ISS_INPUT(id >= 0, where, " is unreadable (its filter list is damaged)");
        ISS_INPUT(H5Zfilter_avail(id) > 0, where, " is compressed with HDF5 filter ", int(id),
                  filter_name[0] ? cat(" (", filter_name, ")") : std::string(),
                  ", which this build of HDF5 cannot decode: rewrite it with gzip or none (h5repack -f NONE)");
    }
    const hsize_t stored = H5Dget_storage_size(dataset);
    ISS_INPUT(stored > 0, where, " has no storage (never written: an interrupted save?)");
    hsize_t file_bytes = 0;
    H5Fget_filesize(file_, &file_bytes);
    ISS_INPUT(stored <= file_bytes, where, " claims ", stored, " stored bytes, more than the file holds");
    const double claimed = 4.0 * double(count);
    if (layout != H5D_CHUNKED) {
        ISS_INPUT(double(stored) >= claimed, where, " stores ", stored, " bytes for ", count, " values");
        return;
    }
    // Chunked: every chunk written, and no more than a plausible compression of what is stored
    // (deflate gives at most about 1032:1, on constant data).
    ISS_INPUT(claimed <= 2048.0 * double(stored), where, " claims ", count, " values from ", stored,
              " stored bytes, more than any compression gives");
    hsize_t chunk[kMaxRank] = {};
    const int rank = H5Pget_chunk(plist.get(), kMaxRank, chunk);
    ISS_INPUT(rank == int(shape.size()), where, " is unreadable (its chunk shape is damaged)");
    hsize_t expected = 1;
    for (int d = 0; d < rank; ++d) {
        ISS_INPUT(chunk[d] >= 1, where, " is unreadable (its chunk shape is damaged)");
        expected *= (hsize_t(shape[size_t(d)]) + chunk[d] - 1) / chunk[d];
    }
    Id space(H5Dget_space(dataset), H5Sclose);
    hsize_t written = 0;
    ISS_INPUT(space.ok() && H5Dget_num_chunks(dataset, space.get(), &written) >= 0, where,
              " is unreadable (its chunk index is damaged)");
    ISS_INPUT(written == expected, where, " stores ", written, " of its ", expected,
              " chunks (never completely written: an interrupted save?)");
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
    require_stored_data(dataset.get(), name, shape);
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
// Creation properties of a group or dataset (`kind`) without modification times, which libhdf5
// would otherwise store in each object (h5py does not): the same weights give the same bytes.
Id untimed(hid_t kind) {
    Id plist(H5Pcreate(kind), H5Pclose);
    H5Pset_obj_track_times(plist.get(), 0);
    return plist;
}

// The group `name` (absolute) and every missing group above it, each untimed (libhdf5's own
// intermediate groups would carry times).
void create_groups(hid_t file, const std::string& path, std::string name) {
    while (name.size() > 1 && name.back() == '/') name.pop_back();
    ISS_REQUIRE(!name.empty() && name[0] == '/', path, ": HDF5 object names here are absolute, got '", name, "'");
    if (name == "/" || object_type(file, name) == H5I_GROUP) return;
    const size_t parent = name.rfind('/');
    if (parent > 0) create_groups(file, path, name.substr(0, parent));
    const Id properties = untimed(H5P_GROUP_CREATE);
    Id group(H5Gcreate2(file, name.c_str(), H5P_DEFAULT, properties.get(), H5P_DEFAULT), H5Gclose);
    check(group.ok() ? 0 : -1, path, cat("create group ", name));
}

}  // namespace

Hdf5Writer::Hdf5Writer(const std::string& path) : path_(path) {
    init_hdf5();
    // In memory (the core driver, no backing store): HDF5 never holds a half-written file on
    // disk. One whose close failed on a full disk stayed open in HDF5 and crashed its clean-up
    // at exit (exit 139).
    Id access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    check(access.ok() && H5Pset_fapl_core(access.get(), 1 << 20, 0) >= 0 ? 0 : -1, path_, "set up the file image");
    file_ = H5Fcreate(cat(path, " (in memory)").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get());
    if (file_ < 0) throw Error(cat(path, ": cannot create the HDF5 file in memory"));
}

Hdf5Writer::~Hdf5Writer() {
    if (file_ >= 0) H5Fclose(file_);
}

void Hdf5Writer::group(const std::string& name) {
    create_groups(file_, path_, name);
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

namespace {

// A scalar attribute of `type` holding `value` (the layout `type` says).
void write_scalar_attribute(hid_t file, const std::string& path, const std::string& object, const std::string& name,
                            hid_t type, const void* value) {
    Id space(H5Screate(H5S_SCALAR), H5Sclose);
    Id attribute(
        H5Acreate_by_name(file, object.c_str(), name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
        H5Aclose);
    check(attribute.ok() ? 0 : -1, path, cat("create attribute ", name, " on ", object));
    check(H5Awrite(attribute.get(), type, value), path, cat("write attribute ", name, " on ", object));
}

}  // namespace

void Hdf5Writer::string_attribute(const std::string& object, const std::string& name, const std::string& value) {
    Id type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type.get(), std::max<size_t>(value.size(), 1));
    H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
    std::vector<char> buffer(std::max<size_t>(value.size(), 1), '\0');
    std::memcpy(buffer.data(), value.data(), value.size());
    write_scalar_attribute(file_, path_, object, name, type.get(), buffer.data());
}

void Hdf5Writer::utf8_attribute(const std::string& object, const std::string& name, const std::string& value) {
    Id type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type.get(), H5T_VARIABLE);
    H5Tset_cset(type.get(), H5T_CSET_UTF8);
    const char* text = value.c_str();  // a variable-length string is written from its pointer
    write_scalar_attribute(file_, path_, object, name, type.get(), &text);
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
    ISS_REQUIRE(!name.empty() && name[0] == '/', path, ": HDF5 object names here are absolute, got '", name, "'");
    const size_t parent = name.rfind('/');
    if (parent > 0) create_groups(file, path, name.substr(0, parent));
    const Id properties = untimed(H5P_DATASET_CREATE);
    Id dataset(H5Dcreate2(file, name.c_str(), file_type, space.get(), H5P_DEFAULT, properties.get(), H5P_DEFAULT),
               H5Dclose);
    check(dataset.ok() ? 0 : -1, path, cat("create dataset ", name));
    if (count > 0 && data)
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

void Hdf5Writer::dataset_f32_unwritten(const std::string& name, const std::vector<int64_t>& shape) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    write_dataset(file_, path_, name, shape, nullptr, size_t(count), H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
}

std::vector<uint8_t> Hdf5Writer::image() {
    ISS_REQUIRE(file_ >= 0, path_, ": the HDF5 file was finished already");
    const herr_t flushed = H5Fflush(file_, H5F_SCOPE_GLOBAL);
    const ssize_t bytes = flushed < 0 ? -1 : H5Fget_file_image(file_, nullptr, 0);
    std::vector<uint8_t> image(size_t(std::max<ssize_t>(bytes, 0)));
    const ssize_t copied = bytes <= 0 ? -1 : H5Fget_file_image(file_, image.data(), image.size());
    const herr_t closed = H5Fclose(file_);
    file_ = -1;
    check(bytes > 0 && copied == bytes && closed >= 0 ? 0 : -1, path_, "finish the file image");
    return image;
}

void Hdf5Writer::close() {
    if (file_ < 0) return;
    const std::vector<uint8_t> bytes = image();
    // Through a temporary name, renamed when whole: a full disk is an error naming `path_`.
    AtomicWriter out(path_);
    out.write(bytes.data(), bytes.size());
    out.commit();
}

}  // namespace iss
