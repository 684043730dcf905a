// A small U-Net saved as a model directory (model.safetensors + model.json), and a small scan,
// for the tests that run commands on a model: 3 levels, 3 features, labels {0, 2, 3, 41, 42}
// unless others are asked for,
// Glorot weights of a fixed seed, RAS frame, no voxel size (scans keep theirs).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "io/nifti.h"
#include "nn/checkpoint.h"
#include "nn/params.h"
#include "nn/unet.h"

namespace iss::test {

inline void write_small_model(const std::string& dir, uint64_t seed = 11, int in_channels = 1,
                              const std::vector<int32_t>& labels = {0, 2, 3, 41, 42}) {
    DeviceContext cpu;
    ModelSpec spec;
    spec.unet.in_channels = in_channels;
    spec.unet.levels = 3;
    spec.unet.features = 3;
    spec.unet.classes = int(labels.size());
    spec.labels = labels;
    spec.preprocessing = {
        {"orientation", "RAS"}, {"size_multiple", spec.unet.reference_multiple()}, {"voxel_size_mm", nullptr}};
    ParamStore params(cpu);
    UNet net(spec.unet, params);
    params.allocate();
    net.initialise(seed);
    std::filesystem::create_directories(dir);
    save_model(dir + "/model.safetensors", spec, params);
}

// A 12x14x10 scan of 1.5 mm voxels with varied intensities.
inline void write_small_scan(const std::string& file) {
    Grid g;
    g.dim = {12, 14, 10};
    g.affine = Mat4::scaling(1.5, 1.5, 1.5);
    Image scan(g);
    for (size_t v = 0; v < scan.data.size(); ++v) scan.data[v] = float((v * 7919) % 101);
    write_image(file, scan);
}

}  // namespace iss::test
