// The fuzz targets' bodies, one per reader of untrusted files: each takes arbitrary bytes, hands
// them to the reader as a file would, and returns normally when the reader either accepts them or
// refuses them with iss::Error (InputError is the expected refusal). Anything else — a crash, a
// sanitizer report, another exception, a huge allocation — is a finding.
//
// The same bodies run under libFuzzer (fuzz/fuzz_main.cpp, `make fuzz`) and over the committed
// seeds and regression files in the normal test suite (tests/test_fuzz_regressions.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace iss::fuzz {

using Target = void (*)(const uint8_t* data, size_t size);

// NIfTI-1/-2 single files, plain or gzip (chosen by the gzip magic), read as an image and as labels.
void nifti(const uint8_t* data, size_t size);
// FreeSurfer's MGH, plain (.mgh) or gzip (.mgz, chosen by the gzip magic), as an image and as labels.
void mgh(const uint8_t* data, size_t size);
// NumPy .npy.
void npy(const uint8_t* data, size_t size);
// safetensors.
void safetensors(const uint8_t* data, size_t size);
// A model description (model.json) without its weights.
void model_json(const uint8_t* data, size_t size);
// The generator's JSON configuration.
void generator_config(const uint8_t* data, size_t size);
// A Keras file of the U-Net: HDF5, or a `.keras` archive (a zip holding HDF5).
void keras_hdf5(const uint8_t* data, size_t size);
// A zip archive (the `.keras` container) in this process, every member read: the archive reader
// alone, whose coverage keras_hdf5's child process hides from libFuzzer.
void zip(const uint8_t* data, size_t size);
// A CSV table (the training log read on --resume).
void csv(const uint8_t* data, size_t size);

struct NamedTarget {
    const char* name;
    Target run;
};
// Every target, by the name of its folder under fuzz/seeds and fuzz/regressions.
const std::vector<NamedTarget>& all_targets();

}  // namespace iss::fuzz
