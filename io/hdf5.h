// HDF5 files through the HDF Group's C library, confined to io/hdf5.cpp: nothing else in the
// project sees an HDF5 type. Only what Keras weight files need: groups and their members,
// string-list and string attributes, and float32 datasets.
//
// Reading treats the file as untrusted: every object is looked up before it is opened, every
// attribute's and dataset's type, rank and dims are checked before anything is allocated, and
// sizes are bounded, so a hostile or truncated file gives an InputError naming the file and the
// object, never a huge allocation or HDF5's own error stack on stderr.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace iss {

class Hdf5Reader {
public:
    // InputError when the file cannot be opened or is not HDF5.
    explicit Hdf5Reader(const std::string& path);
    // The same for a file held in memory (a member of an archive), named `name` in messages.
    Hdf5Reader(const std::string& name, std::vector<uint8_t> image);
    ~Hdf5Reader();
    Hdf5Reader(const Hdf5Reader&) = delete;
    Hdf5Reader& operator=(const Hdf5Reader&) = delete;

    const std::string& path() const { return path_; }

    // Object names are absolute HDF5 paths ("/model_weights/unet_likelihood"). A name whose
    // intermediate groups do not exist is simply absent.
    bool has_group(const std::string& name) const;
    bool has_dataset(const std::string& name) const;
    bool has_attribute(const std::string& object, const std::string& name) const;

    // An attribute holding strings (fixed-length or variable-length, scalar or 1-D, any
    // character set); an empty attribute of any type is an empty list (tf-keras writes a layer
    // without weights so). More than `max_count` strings, a string longer than `max_bytes`, or
    // more than 64 MB in all is bad input, refused before anything is read.
    static constexpr size_t max_name_bytes = 1 << 16;
    static constexpr int64_t max_names = 1 << 20;
    std::vector<std::string> string_list(const std::string& object, const std::string& name,
                                         size_t max_bytes = max_name_bytes, int64_t max_count = max_names) const;

    // The names of a group's members (groups, datasets, links), in name order. More than
    // `max_count`, or a name longer than max_name_bytes, is bad input.
    std::vector<std::string> group_members(const std::string& group, int64_t max_count) const;

    // The dims of a dataset, and whether it holds 32-bit floats.
    struct DatasetInfo {
        std::vector<int64_t> shape;
        bool float32 = false;
        std::string type;  // for messages: "float32", "float64", "int32", "string", ...
    };
    DatasetInfo dataset_info(const std::string& name) const;

    // A float32 dataset of exactly `shape`, in C order; InputError naming it otherwise, when
    // its data cannot be read (a truncated file), when its storage was never allocated or
    // misses chunks (what an interrupted h5py or Keras save leaves: HDF5 would give fill
    // values), when it lives in external files or is virtual, and when it needs a filter this
    // build of HDF5 lacks.
    std::vector<float> read_f32(const std::string& name, const std::vector<int64_t>& shape) const;

private:
    void finish_open();
    void require_stored_data(int64_t dataset, const std::string& name, const std::vector<int64_t>& shape) const;

    std::string path_;
    std::vector<uint8_t> image_;  // the file, when read from memory
    int64_t file_ = -1;  // hid_t
    size_t address_bytes_ = 8, length_bytes_ = 8;  // the file's sizes of addresses and lengths
    // The global heap collections that variable-length strings refer to, checked before
    // libhdf5 follows a reference (io/hdf5.cpp).
    class Heaps;
    std::unique_ptr<Heaps> heaps_;
};

// Writes a new HDF5 file at `path`: built in memory, then written whole by close() through a
// temporary name (AtomicWriter), replacing a file there, or handed over by image() (then `path`
// only names it in messages). Failures are iss::Error (exit 1): they
// are not bad input.
class Hdf5Writer {
public:
    explicit Hdf5Writer(const std::string& path);
    ~Hdf5Writer();
    Hdf5Writer(const Hdf5Writer&) = delete;
    Hdf5Writer& operator=(const Hdf5Writer&) = delete;

    // A group, with any missing groups above it.
    void group(const std::string& name);
    // A 1-D attribute of fixed-length, null-padded byte strings (what Keras 2.2 wrote, and what
    // every Keras version reads), or a scalar one.
    void string_list(const std::string& object, const std::string& name, const std::vector<std::string>& values);
    void string_attribute(const std::string& object, const std::string& name, const std::string& value);
    // A scalar variable-length UTF-8 string attribute: what h5py writes for a Python str (Keras 3
    // names its layers so).
    void utf8_attribute(const std::string& object, const std::string& name, const std::string& value);
    // A little-endian float32 dataset (any missing groups above it are created).
    void dataset_f32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& data);
    // The same in float64 (no weights file of ours has one: the tests write wrong-dtype files).
    void dataset_f64(const std::string& name, const std::vector<int64_t>& shape, const std::vector<double>& data);
    // A float32 dataset created and never written, as an interrupted save leaves one (tests).
    void dataset_f32_unwritten(const std::string& name, const std::vector<int64_t>& shape);
    // Writes the file; the destructor, without close(), writes nothing.
    void close();
    // Finishes the file in memory and returns its bytes instead (a member of an archive); the
    // writer is then closed and writes nothing.
    std::vector<uint8_t> image();

private:
    std::string path_;
    int64_t file_ = -1;  // hid_t
};

}  // namespace iss
