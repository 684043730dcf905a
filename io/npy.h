// NumPy .npy files (format versions 1.0, 2.0 and 3.0): the infant intensity priors are
// float64 arrays of shape (2, n_labels). Read: float64, float32 and every integer type (a label
// list may be uint8), little or big endian, C order; values come back as double. Write: float64
// (priors) or int32 (label lists), C order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace iss {

struct NpyArray {
    std::vector<int64_t> shape;
    std::string dtype;  // as stored, e.g. "<f8"
    std::vector<double> values;

    int64_t size() const;
};

// Throws InputError naming the file: not a .npy, unsupported dtype, Fortran order, truncated.
NpyArray read_npy(const std::string& path);

// A label list from a .npy file: a 1-D array whose every value is an integer that fits int32
// (any dtype), in file order, repeats kept. InputError naming the file and the first value that
// is not, or an array of another shape, with no value or with more than max_npy_labels.
constexpr int64_t max_npy_labels = 65536;
std::vector<int32_t> read_npy_labels(const std::string& path);

// Writes float64 ("<f8") through a temporary name.
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<double>& values);
// A label list as a 1-D int32 ("<i4") array, as SynthSeg's generation_labels.npy.
void write_npy_labels(const std::string& path, const std::vector<int32_t>& labels);

}  // namespace iss
