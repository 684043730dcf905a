// A small U-Net saved as a model directory (model.safetensors + model.json), for the tests that
// run commands on a model: 3 levels, 3 features, labels {0, 2, 3, 41, 42}, Glorot weights of a
// fixed seed, RAS frame.
#pragma once

#include <filesystem>
#include <string>

#include "nn/checkpoint.h"
#include "nn/params.h"
#include "nn/unet.h"

namespace iss::test {

inline void write_small_model(const std::string& dir, uint64_t seed = 11) {
    DeviceContext cpu;
    ModelSpec spec;
    spec.unet.levels = 3;
    spec.unet.features = 3;
    spec.unet.classes = 5;
    spec.labels = {0, 2, 3, 41, 42};
    spec.preprocessing = {{"orientation", "RAS"}, {"size_multiple", 4}, {"voxel_size_mm", nullptr}};
    ParamStore params(cpu);
    UNet net(spec.unet, params);
    params.allocate();
    net.initialise(seed);
    std::filesystem::create_directories(dir);
    save_model(dir + "/model.safetensors", spec, params);
}

}  // namespace iss::test
