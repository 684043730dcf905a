#include "nn/checkpoint.h"

#include <fstream>

#include "io/file_util.h"
#include "io/safetensors.h"
#include "kernels/common/error.h"

namespace iss {
namespace {

constexpr const char* model_format = "infant-synthseg-model";
constexpr int model_format_version = 1;

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// Every parameter's values, from one download per flat buffer.
std::vector<SafeTensor> parameter_tensors(ParamStore& params) {
    DeviceContext& ctx = params.context();
    std::vector<float> values(size_t(params.trainable_span())), state(size_t(params.state_span()));
    if (!values.empty()) ctx.copy_to_host(values.data(), params.values(), values.size() * sizeof(float));
    if (!state.empty()) ctx.copy_to_host(state.data(), params.state(), state.size() * sizeof(float));
    std::vector<SafeTensor> tensors;
    for (const ParamInfo& info : params.infos()) {
        const std::vector<float>& source = info.trainable ? values : state;
        tensors.push_back(SafeTensor::f32(info.name, info.shape,
                                          std::vector<float>(source.begin() + info.offset,
                                                             source.begin() + info.offset + info.count)));
    }
    return tensors;
}

template <class T>
T json_field(const nlohmann::json& j, const char* key, const std::string& source) {
    ISS_INPUT(j.is_object() && j.contains(key), source, ": missing field '", key, "'");
    try {
        return j.at(key).get<T>();
    } catch (const nlohmann::json::exception&) {
        throw InputError(cat(source, ": field '", key, "' has the wrong type"));
    }
}

}  // namespace

std::string model_json_path(const std::string& weights_path) {
    const std::string suffix = ".safetensors";
    ISS_INPUT(ends_with(weights_path, suffix), weights_path, ": a model's weights file must end in .safetensors");
    return weights_path.substr(0, weights_path.size() - suffix.size()) + ".json";
}

nlohmann::json unet_config_to_json(const UNetConfig& c) {
    return {{"type", "unet3d"},
            {"levels", c.levels},
            {"features", c.features},
            {"convs_per_level", c.convs_per_level},
            {"kernel", c.kernel},
            {"in_channels", c.in_channels},
            {"classes", c.classes},
            {"activation", "elu"},
            {"elu_alpha", c.elu_alpha},
            {"batch_norm", {{"momentum", c.bn_momentum}, {"epsilon", c.bn_epsilon}}},
            {"layout", "activations NDHWC; convolution weights (out, kd, kh, kw, in): "
                       "for PyTorch's Conv3d use weight.permute(0, 4, 1, 2, 3)"}};
}

UNetConfig unet_config_from_json(const nlohmann::json& j, const std::string& source) {
    ISS_INPUT(json_field<std::string>(j, "type", source) == "unet3d", source, ": architecture type must be unet3d");
    UNetConfig c;
    c.levels = json_field<int>(j, "levels", source);
    c.features = json_field<int>(j, "features", source);
    c.convs_per_level = json_field<int>(j, "convs_per_level", source);
    c.kernel = json_field<int>(j, "kernel", source);
    c.in_channels = json_field<int>(j, "in_channels", source);
    c.classes = json_field<int>(j, "classes", source);
    c.elu_alpha = json_field<float>(j, "elu_alpha", source);
    const nlohmann::json bn = json_field<nlohmann::json>(j, "batch_norm", source);
    c.bn_momentum = json_field<float>(bn, "momentum", source);
    c.bn_epsilon = json_field<float>(bn, "epsilon", source);
    return c;
}

void save_model(const std::string& weights_path, const ModelSpec& spec, ParamStore& params) {
    const std::string json_path = model_json_path(weights_path);
    ISS_REQUIRE(int64_t(spec.labels.size()) == spec.unet.classes, "model has ", spec.unet.classes,
                " classes but ", spec.labels.size(), " labels");
    nlohmann::json j = {{"format", model_format},
                        {"version", model_format_version},
                        {"architecture", unet_config_to_json(spec.unet)},
                        {"labels", spec.labels},
                        {"preprocessing", spec.preprocessing},
                        {"training", spec.training},
                        {"parameters", {{"trainable", params.trainable_count()}, {"state", params.state_count()}}}};
    write_safetensors(weights_path, parameter_tensors(params), {{"format", model_format}});
    const std::string text = j.dump(2) + "\n";
    AtomicWriter out(json_path);
    out.write(text.data(), text.size());
    out.commit();
}

ModelSpec load_model_spec(const std::string& weights_path) {
    const std::string path = model_json_path(weights_path);
    require_regular_file(path);
    std::ifstream in(path);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        throw InputError(cat(path, ": not valid JSON: ", e.what()));
    }
    ISS_INPUT(j.is_object() && j.value("format", "") == model_format, path, ": not an Infant-SynthSeg model description");
    ISS_INPUT(json_field<int>(j, "version", path) == model_format_version, path, ": model format version ",
              j["version"], " is not supported (expected ", model_format_version, ")");
    ModelSpec spec;
    spec.unet = unet_config_from_json(json_field<nlohmann::json>(j, "architecture", path), path);
    spec.labels = json_field<std::vector<int32_t>>(j, "labels", path);
    ISS_INPUT(int64_t(spec.labels.size()) == spec.unet.classes, path, ": ", spec.labels.size(), " labels for ",
              spec.unet.classes, " output classes");
    spec.preprocessing = j.value("preprocessing", nlohmann::json::object());
    spec.training = j.value("training", nlohmann::json::object());
    return spec;
}

void load_weights(const std::string& weights_path, ParamStore& params) {
    const SafetensorsFile file = read_safetensors(weights_path);
    std::vector<std::string> problems;
    std::map<std::string, const SafeTensor*> by_name;
    for (const SafeTensor& t : file.tensors) by_name[t.name] = &t;
    for (const ParamInfo& info : params.infos()) {
        const auto it = by_name.find(info.name);
        if (it == by_name.end()) {
            problems.push_back(cat("missing tensor ", info.name, " ", shape_text(info.shape)));
            continue;
        }
        const SafeTensor& t = *it->second;
        if (t.dtype != "F32") problems.push_back(cat(info.name, " is ", t.dtype, ", expected F32"));
        else if (t.shape != info.shape)
            problems.push_back(cat(info.name, " has shape ", shape_text(t.shape), ", the model expects ",
                                   shape_text(info.shape)));
        by_name.erase(it);
    }
    for (const auto& [name, t] : by_name) problems.push_back(cat("unexpected tensor ", name, " ", shape_text(t->shape)));
    if (!problems.empty()) {
        std::string message = cat(weights_path, ": does not match the model (", problems.size(), " problem",
                                  problems.size() > 1 ? "s" : "", "): ");
        for (size_t i = 0; i < problems.size() && i < 8; ++i) message += (i ? "; " : "") + problems[i];
        if (problems.size() > 8) message += "; ...";
        throw InputError(message);
    }
    // Everything matches: assemble the flat buffers on the host, then one upload each.
    std::vector<float> values(size_t(params.trainable_span())), state(size_t(params.state_span()));
    for (const ParamInfo& info : params.infos()) {
        const std::vector<float> v = file.at(info.name).as_f32();
        std::copy(v.begin(), v.end(), (info.trainable ? values : state).begin() + info.offset);
    }
    DeviceContext& ctx = params.context();
    if (!values.empty()) ctx.copy_to_device(params.values(), values.data(), values.size() * sizeof(float));
    if (!state.empty()) ctx.copy_to_device(params.state(), state.data(), state.size() * sizeof(float));
}

void save_optimizer(const std::string& path, ParamStore& params, const Adam& adam,
                    const std::map<std::string, std::string>& metadata) {
    const size_t n = size_t(params.trainable_count());
    const std::vector<float> m = params.download_packed(params.adam_m()), v = params.download_packed(params.adam_v());
    std::map<std::string, std::string> meta = metadata;
    meta["format"] = "infant-synthseg-optimizer";
    meta["adam_step"] = std::to_string(adam.steps());
    write_safetensors(path, {SafeTensor::f32("adam.m", {int64_t(n)}, m), SafeTensor::f32("adam.v", {int64_t(n)}, v)},
                      meta);
}

std::map<std::string, std::string> load_optimizer(const std::string& path, ParamStore& params, Adam& adam) {
    const SafetensorsFile file = read_safetensors(path);
    const auto format = file.metadata.find("format");
    ISS_INPUT(format != file.metadata.end() && format->second == "infant-synthseg-optimizer", path,
              ": not an Infant-SynthSeg optimizer state");
    const int64_t n = params.trainable_count();
    for (const char* name : {"adam.m", "adam.v"})
        ISS_INPUT(file.contains(name) && file.at(name).dtype == "F32" &&
                      file.at(name).shape == std::vector<int64_t>{n},
                  path, ": tensor ", name, " must be F32 of shape [", n, "] for this model");
    const auto step = file.metadata.find("adam_step");
    ISS_INPUT(step != file.metadata.end(), path, ": no adam_step in the metadata");
    int64_t steps = 0;
    try {
        steps = std::stoll(step->second);
    } catch (const std::exception&) {
        throw InputError(cat(path, ": adam_step '", step->second, "' is not a number"));
    }
    const std::vector<float> m = file.at("adam.m").as_f32(), v = file.at("adam.v").as_f32();
    params.upload_packed(params.adam_m(), m);
    params.upload_packed(params.adam_v(), v);
    adam.set_steps(steps);
    std::map<std::string, std::string> meta = file.metadata;
    meta.erase("format");
    meta.erase("adam_step");
    return meta;
}

}  // namespace iss
