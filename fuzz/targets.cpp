#include "fuzz/targets.h"

#include <unistd.h>

#include <cstdio>

#include "io/csv.h"
#include "io/nifti.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "io/zip.h"
#include "kernels/common/error.h"
#include "nn/checkpoint.h"
#include "nn/keras.h"
#include "synth/config.h"

namespace iss::fuzz {
namespace {

// The bytes as a file of this process with the given ending, removed when done.
class InputFile {
public:
    InputFile(const uint8_t* data, size_t size, const std::string& ending)
        : path_("/tmp/iss-fuzz-" + std::to_string(::getpid()) + ending) {
        FILE* f = std::fopen(path_.c_str(), "wb");
        if (!f) throw std::runtime_error("cannot write " + path_);
        if (size > 0) std::fwrite(data, 1, size, f);
        std::fclose(f);
    }
    ~InputFile() { std::remove(path_.c_str()); }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// Runs a reader; iss::Error (bad input refused) is the expected way to say no. Warnings are
// off while it runs (the readers would warn on most of what a fuzzer makes), and back as they
// were after: the seed test runs these bodies in the test binary, whose later tests expect them.
template <class Reader>
void refuse_or_accept(Reader&& read) {
    struct Quiet {
        bool was = set_warnings_enabled(false);
        ~Quiet() { set_warnings_enabled(was); }
    } quiet;
    try {
        read();
    } catch (const Error&) {
    }
}

}  // namespace

void nifti(const uint8_t* data, size_t size) {
    const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    const InputFile file(data, size, gzip ? ".nii.gz" : ".nii");
    refuse_or_accept([&] { read_image(file.path()); });
    refuse_or_accept([&] { read_labels(file.path()); });
}

void mgh(const uint8_t* data, size_t size) {
    const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    const InputFile file(data, size, gzip ? ".mgz" : ".mgh");
    refuse_or_accept([&] { read_image(file.path()); });
    refuse_or_accept([&] { read_labels(file.path()); });
}

void npy(const uint8_t* data, size_t size) {
    const InputFile file(data, size, ".npy");
    refuse_or_accept([&] { read_npy(file.path()); });
}

void safetensors(const uint8_t* data, size_t size) {
    const InputFile file(data, size, ".safetensors");
    refuse_or_accept([&] {
        const SafetensorsFile f = read_safetensors(file.path());
        for (const SafeTensor& t : f.tensors)
            if (t.dtype == "F32") t.as_f32();
    });
}

void model_json(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    refuse_or_accept([&] {
        const ModelSpec spec = parse_model_description(text, "model.json");
        unet_parameter_count(spec.unet);  // what load_model_spec computes next
    });
}

void generator_config(const uint8_t* data, size_t size) {
    const InputFile file(data, size, ".json");
    refuse_or_accept([&] { load_config(PresetChoice{}, file.path()); });
}

void keras_hdf5(const uint8_t* data, size_t size) {
    const InputFile file(data, size, ".h5");
    // The reader runs in a child process (io/isolate.h), whose coverage libFuzzer does not see:
    // this target checks the isolation and the decoding of what the child sends. A hang in the
    // child is a refused file after 5 s, before libFuzzer's 10 s limit.
    refuse_or_accept([&] { read_keras_unet(file.path(), 5); });
}

void zip(const uint8_t* data, size_t size) {
    const InputFile file(data, size, ".keras");
    refuse_or_accept([&] {
        const ZipReader archive(file.path());
        for (const ZipReader::Member& m : archive.members()) refuse_or_accept([&] { archive.read(m.name, 1 << 20); });
    });
}

void csv(const uint8_t* data, size_t size) {
    const InputFile file(data, size, ".csv");
    refuse_or_accept([&] {
        const CsvTable t = read_csv(file.path());
        t.column("step");
    });
}

const std::vector<NamedTarget>& all_targets() {
    static const std::vector<NamedTarget> targets = {
        {"nifti", nifti},
        {"mgh", mgh},
        {"npy", npy},
        {"safetensors", safetensors},
        {"model_json", model_json},
        {"generator_config", generator_config},
        {"keras_hdf5", keras_hdf5},
        {"zip", zip},
        {"csv", csv},
    };
    return targets;
}

}  // namespace iss::fuzz
