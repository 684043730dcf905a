// Model files (DESIGN.md, "Files users see"): a model is NAME.safetensors (every parameter and
// batch-norm statistic by name, float32) plus NAME.json beside it (architecture, label list,
// preprocessing, training provenance), so it is self-describing and readable from numpy or
// PyTorch. Optimizer state for resuming goes in a second safetensors file (Adam moments and
// step count). Loading checks names and shapes against the model and says exactly what does
// not match; nothing is loaded unless everything matches. Layout in docs/FORMATS.md.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/optimizer.h"
#include "nn/params.h"
#include "nn/unet.h"

namespace iss {

struct ModelSpec {
    UNetConfig unet;
    std::vector<int32_t> labels;       // segmentation label of each output channel
    nlohmann::json preprocessing = nlohmann::json::object();
    nlohmann::json training = nlohmann::json::object();
};

// "dir/model.safetensors" -> "dir/model.json".
std::string model_json_path(const std::string& weights_path);

// Writes the weights and the JSON (each through a temporary name).
void save_model(const std::string& weights_path, const ModelSpec& spec, ParamStore& params);

// Reads and checks the JSON beside the weights; InputError naming the file and field.
ModelSpec load_model_spec(const std::string& weights_path);

// Loads every parameter of `params` (declared by the model of the spec) from the weights file;
// InputError naming the file and each missing, extra or mis-shaped tensor.
void load_weights(const std::string& weights_path, ParamStore& params);

// Adam's moments and step count, plus caller metadata (e.g. the training step).
void save_optimizer(const std::string& path, ParamStore& params, const Adam& adam,
                    const std::map<std::string, std::string>& metadata = {});
// Returns the caller metadata saved with it.
std::map<std::string, std::string> load_optimizer(const std::string& path, ParamStore& params, Adam& adam);

nlohmann::json unet_config_to_json(const UNetConfig& config);
UNetConfig unet_config_from_json(const nlohmann::json& j, const std::string& source);

}  // namespace iss
