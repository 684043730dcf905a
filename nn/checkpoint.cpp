#include "nn/checkpoint.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <thread>

#include "io/file_util.h"
#include "io/json.h"
#include "io/orientation.h"
#include "io/safetensors.h"
#include "io/volume.h"  // is_label_value
#include "kernels/common/device.h"  // fits_in_memory, gib_text, host_memory_bytes
#include "kernels/common/error.h"
#include "kernels/common/version.h"

namespace iss {
namespace {

constexpr const char* model_format = "infant-synthseg-model";
constexpr int model_format_version = 1;

// A tensor's shape as the safetensors header writes it: "[3, 3, 3, 1, 24]".
std::string tensor_shape_text(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// Every parameter's values, from one download per flat buffer.
// A float32 tensor of `count` values that `fill` writes in place: a checkpoint holds one host
// copy of what it writes, not two (a training run's peak is there).
SafeTensor f32_tensor(const std::string& name, std::vector<int64_t> shape, int64_t count,
                      const std::function<void(float*)>& fill) {
    SafeTensor t{name, "F32", std::move(shape), std::vector<uint8_t>(size_t(count) * sizeof(float))};
    fill(reinterpret_cast<float*>(t.data.data()));
    return t;
}

std::vector<SafeTensor> parameter_tensors(ParamStore& params) {
    DeviceContext& ctx = params.context();
    std::vector<SafeTensor> tensors;
    for (const ParamInfo& info : params.infos()) {
        const float* source = (info.trainable ? params.values() : params.state()) + info.offset;
        tensors.push_back(f32_tensor(info.name, info.shape, info.count, [&](float* out) {
            if (info.count > 0) ctx.copy_to_host(out, source, size_t(info.count) * sizeof(float));
        }));
    }
    return tensors;
}

// Typed fields of model.json: InputError naming the file and the field (a dotted path) when
// absent, of another type, or out of range. Integers must be JSON integers (2.5 or "2" is not 2).
const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& source,
                            const std::string& where) {
    ISS_INPUT(j.is_object() && j.contains(key), source, ": missing field '", where, key, "'");
    return j.at(key);
}

int64_t integer_field(const nlohmann::json& j, const char* key, const std::string& source, const std::string& where,
                      int64_t low, int64_t high) {
    const nlohmann::json& v = field(j, key, source, where);
    ISS_INPUT(v.is_number_integer(), source, ": field '", where, key, "' must be an integer, got ", v.dump());
    const int64_t n = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : v.get<int64_t>();
    ISS_INPUT(n >= low && n <= high, source, ": field '", where, key, "' = ", n, " is out of range [", low, ", ", high,
              "]");
    return n;
}

double number_field(const nlohmann::json& j, const char* key, const std::string& source, const std::string& where,
                    double low, double high) {
    const nlohmann::json& v = field(j, key, source, where);
    ISS_INPUT(v.is_number(), source, ": field '", where, key, "' must be a number, got ", v.dump());
    const double x = v.get<double>();
    ISS_INPUT(std::isfinite(x) && x >= low && x <= high, source, ": field '", where, key, "' = ", x,
              " is out of range [", low, ", ", high, "]");
    return x;
}

std::string string_field(const nlohmann::json& j, const char* key, const std::string& source, const std::string& where,
                         const std::vector<std::string>& allowed = {}) {
    const nlohmann::json& v = field(j, key, source, where);
    ISS_INPUT(v.is_string(), source, ": field '", where, key, "' must be a string, got ", v.dump());
    const std::string s = v.get<std::string>();
    if (!allowed.empty()) {
        std::string list;
        for (const std::string& a : allowed) list += (list.empty() ? "\"" : ", \"") + a + "\"";
        ISS_INPUT(std::find(allowed.begin(), allowed.end(), s) != allowed.end(), source, ": field '", where, key,
                  "' = \"", s, "\" is not one of ", list);
    }
    return s;
}

std::array<double, 3> voxel_sizes(const nlohmann::json& v, const std::string& source, const std::string& name) {
    ISS_INPUT(v.is_array() && v.size() == 3, source, ": field '", name, "' must be 3 voxel sizes in mm");
    std::array<double, 3> out{};
    for (size_t d = 0; d < 3; ++d) {
        ISS_INPUT(v[d].is_number() && std::isfinite(v[d].get<double>()) && v[d].get<double>() >= min_model_voxel_mm &&
                      v[d].get<double>() <= max_model_voxel_mm,
                  source, ": field '", name, "' must hold voxel sizes from ", min_model_voxel_mm, " to ",
                  max_model_voxel_mm, " mm, got ", v.dump());
        out[d] = v[d].get<double>();
    }
    return out;
}

// The text record_crc32 is the CRC of (docs/FORMATS.md): compact JSON, keys sorted, strings as
// JSON escapes them, and every number by its value, an integral one within 2^53 as an integer
// and any other as printf's %.17g (a value that is not finite as null, as JSON writes it): a
// reformatter that keeps the values keeps the CRC (jq writes 1.0 as 1, Python 1e-05 as 1e-05).
void append_canonical(const nlohmann::json& j, std::string& out) {
    if (j.is_object() || j.is_array()) {
        out += j.is_object() ? '{' : '[';
        bool first = true;
        for (auto it = j.begin(); it != j.end(); ++it) {  // an object's keys in byte order
            if (!first) out += ',';
            first = false;
            if (j.is_object()) out += nlohmann::json(it.key()).dump() + ':';
            append_canonical(*it, out);
        }
        out += j.is_object() ? '}' : ']';
    } else if (j.is_number()) {
        const double v = j.get<double>();
        char text[32];
        if (!std::isfinite(v))
            out += "null";
        else if (std::nearbyint(v) == v && std::fabs(v) <= 9007199254740992.0)
            out += std::to_string(int64_t(v));
        else
            out += std::string(text, size_t(std::snprintf(text, sizeof text, "%.17g", v)));
    } else {
        out += j.dump();
    }
}

// model.json's CRC-32 of its other fields: an edit by mistake (labels 2 and 41 swapped, a frame,
// a voxel size) is refused where predict would segment with it without a word; the weights'
// data_crc32 does not cover it.
constexpr const char* record_checksum_key = "record_crc32";
std::string record_checksum(const nlohmann::json& fields) {
    std::string text;
    append_canonical(fields, text);
    return crc32_text(crc32_of(0, text.data(), text.size()));
}

// Why the weights (their metadata) and the description are not one checkpoint's; "" where they
// are, or where either lacks train's stamp.
std::string checkpoint_mismatch(const ModelSpec& spec, const std::map<std::string, std::string>& weights_metadata,
                                const std::string& weights_path) {
    const std::optional<DescriptionStamp> stamp = description_stamp(spec);
    const auto step = weights_metadata.find("checkpoint_step"), run = weights_metadata.find("run_id");
    if (!stamp || step == weights_metadata.end() || run == weights_metadata.end()) return "";
    if (stamp->step.dump() == step->second && stamp->run == run->second) return "";
    return cat(weights_path, ": its weights are of step ", step->second, " (run ", run->second, ") but ",
               model_json_path(weights_path), " describes step ", stamp->step.dump(), " (run ", stamp->run,
               "): give the two files of one checkpoint");
}

}  // namespace

std::optional<DescriptionStamp> description_stamp(const ModelSpec& spec) {
    const nlohmann::json stamp = spec.training.value("checkpoint", nlohmann::json());
    if (!stamp.is_object() || !stamp.contains("step") || !stamp.contains("run_id")) return std::nullopt;
    const nlohmann::json& run = stamp["run_id"];
    return DescriptionStamp{stamp["step"], run.is_string() ? run.get<std::string>() : run.dump()};
}

std::string model_weights_in(const std::string& dir) {
    return (std::filesystem::path(dir) / checkpoint_files[0]).string();
}

std::string kept_weights_in(const std::string& model_dir) {
    return (std::filesystem::path(model_dir) / kept_weights_folder).string();
}

std::string kept_weights_name(int64_t step) {
    char name[40];
    std::snprintf(name, sizeof name, "step_%07lld.safetensors", (long long)step);
    return name;
}

std::optional<int64_t> kept_weights_step(const std::string& name, bool weights) {
    const std::string ending = ends_with(name, ".safetensors") ? ".safetensors"
                               : ends_with(name, ".json")      ? ".json"
                                                               : "";
    if (ending.empty() || (weights && ending != ".safetensors") || name.rfind("step_", 0) != 0) return std::nullopt;
    const std::string digits = name.substr(5, name.size() - 5 - ending.size());
    if (digits.empty() || digits.size() > 18 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;  // 18 digits at most: the step fits 64 bits
    return std::stoll(digits);
}

std::vector<std::string> kept_weights_files(const std::string& folder, bool weights) {
    std::vector<std::pair<int64_t, std::string>> by_step;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
        const std::string name = entry.path().filename().string();
        if (const std::optional<int64_t> step = kept_weights_step(name, weights)) by_step.emplace_back(*step, name);
    }
    // By step, not by name: past 9,999,999 steps the names have more digits.
    std::sort(by_step.begin(), by_step.end());
    std::vector<std::string> kept;
    for (auto& [step, name] : by_step) kept.push_back(std::move(name));
    return kept;
}

std::map<std::string, std::string> load_checkpoint_weights(const std::string& weights_path, ModelSpec& spec,
                                                           ParamStore& params) {
    std::map<std::string, std::string> metadata = load_weights(weights_path, params);
    // A second from the first mismatch, however long a read takes (a large model on a slow disk).
    const auto first_mismatch = std::chrono::steady_clock::now();
    for (std::string mismatch; !(mismatch = checkpoint_mismatch(spec, metadata, weights_path)).empty();) {
        if (std::chrono::steady_clock::now() - first_mismatch > std::chrono::seconds(1)) throw InputError(mismatch);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        ModelSpec again = load_model_spec(weights_path);
        // Another network under the name: not a checkpoint being replaced, and `params` is not its.
        if (unet_config_to_json(again.unet) != unet_config_to_json(spec.unet)) throw InputError(mismatch);
        spec = std::move(again);
        // The description (small) is read again while it is behind the weights (train moves the
        // weights first); the weights (a model's megabytes) only where they are the ones behind.
        const std::optional<DescriptionStamp> stamp = description_stamp(spec);
        const bool description_behind = stamp && stamp->step.is_number_integer() &&
                                        stamp->step.get<int64_t>() < std::atoll(metadata["checkpoint_step"].c_str());
        if (!description_behind && !checkpoint_mismatch(spec, metadata, weights_path).empty())
            metadata = load_weights(weights_path, params);
    }
    return metadata;
}

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
            {"elu_alpha", json_float(c.elu_alpha)},
            {"batch_norm", {{"momentum", json_float(c.bn_momentum)}, {"epsilon", json_float(c.bn_epsilon)}}},
            {"layout",
             "activations NDHWC; convolution weights (out, kd, kh, kw, in): "
             "for PyTorch's Conv3d use weight.permute(0, 4, 1, 2, 3)"}};
}

UNetConfig unet_config_from_json(const nlohmann::json& j, const std::string& source) {
    const std::string at = "architecture.";
    ISS_INPUT(j.is_object(), source, ": field 'architecture' must be an object");
    string_field(j, "type", source, at, {"unet3d"});
    string_field(j, "activation", source, at, {"elu"});
    UNetConfig c;
    c.levels = int(integer_field(j, "levels", source, at, 1, UNetConfig::max_levels));
    c.features = int(integer_field(j, "features", source, at, 1, UNetConfig::max_features));
    c.convs_per_level = int(integer_field(j, "convs_per_level", source, at, 1, 8));
    c.kernel = int(integer_field(j, "kernel", source, at, 1, 3));
    ISS_INPUT(UNetConfig::supported_kernel(c.kernel), source, ": field 'architecture.kernel' must be 1 or 3, got ",
              c.kernel);
    c.in_channels = int(integer_field(j, "in_channels", source, at, 1, 16));
    c.classes = int(integer_field(j, "classes", source, at, 2, 255));
    c.elu_alpha = float(number_field(j, "elu_alpha", source, at, 1e-3, 10));
    const nlohmann::json& bn = field(j, "batch_norm", source, at);
    c.bn_momentum = float(number_field(bn, "momentum", source, at + "batch_norm.", 0, 1));
    c.bn_epsilon = float(number_field(bn, "epsilon", source, at + "batch_norm.", 1e-12, 1));
    ISS_INPUT(c.widest_supported(), source, ": ", c.widest_problem());
    return c;
}

Preprocessing parse_preprocessing(const ModelSpec& spec, const std::string& source) {
    const nlohmann::json& j = spec.preprocessing;
    const std::string at = "preprocessing.";
    ISS_INPUT(j.is_object() && !j.empty(), source, ": missing field 'preprocessing'");
    Preprocessing p;
    p.frame = string_field(j, "orientation", source, at);
    require_orientation_code(p.frame, cat(source, ": field 'preprocessing.orientation'"));
    const int64_t network = spec.unet.size_multiple();
    p.size_multiple = integer_field(j, "size_multiple", source, at, 1, 256);
    ISS_INPUT(p.size_multiple % network == 0, source, ": field 'preprocessing.size_multiple' = ", p.size_multiple,
              " is not a multiple of the network's ", network);
    if (j.contains("normalisation")) string_field(j, "normalisation", source, at, {"min-max to [0, 1]"});
    if (j.contains("input_channels"))
        integer_field(j, "input_channels", source, at, spec.unet.in_channels, spec.unet.in_channels);
    if (j.contains("flip_averaging")) {
        ISS_INPUT(j["flip_averaging"].is_boolean(), source,
                  ": field 'preprocessing.flip_averaging' must be true or false");
        p.flip_averaging = j["flip_averaging"].get<bool>();
    }
    if (j.contains("lr_twins")) {
        const nlohmann::json& twins = j["lr_twins"];
        ISS_INPUT(twins.is_array() && twins.size() <= 65536, source,
                  ": field 'preprocessing.lr_twins' must be a list of [left, right] label pairs");
        for (const nlohmann::json& pair : twins) {
            ISS_INPUT(
                pair.is_array() && pair.size() == 2 && pair[0].is_number_integer() && pair[1].is_number_integer() &&
                    is_label_value(pair[0].get<int64_t>()) && is_label_value(pair[1].get<int64_t>()),
                source, ": field 'preprocessing.lr_twins' holds ", clipped(pair.dump(), 40), ": not a pair of labels");
            p.lr_twins.push_back({pair[0].get<int32_t>(), pair[1].get<int32_t>()});
        }
    }
    // The voxel sizes the network has seen: a range, one size, or null (explicitly none).
    if (j.contains("voxel_size_range_mm")) {
        const nlohmann::json& range = j["voxel_size_range_mm"];
        ISS_INPUT(range.is_object() && range.contains("min") && range.contains("max"), source,
                  ": field 'preprocessing.voxel_size_range_mm' must hold \"min\" and \"max\"");
        p.voxel_min = voxel_sizes(range["min"], source, at + "voxel_size_range_mm.min");
        p.voxel_max = voxel_sizes(range["max"], source, at + "voxel_size_range_mm.max");
        for (size_t d = 0; d < 3; ++d)
            ISS_INPUT(p.voxel_min[d] <= p.voxel_max[d], source,
                      ": field 'preprocessing.voxel_size_range_mm': min above max");
    } else {
        ISS_INPUT(j.contains("voxel_size_mm"), source,
                  ": missing field 'preprocessing.voxel_size_range_mm' (or 'voxel_size_mm', null for none)");
        if (!j["voxel_size_mm"].is_null())
            p.voxel_min = p.voxel_max = voxel_sizes(j["voxel_size_mm"], source, at + "voxel_size_mm");
    }
    return p;
}

void save_model(const std::string& weights_path, const ModelSpec& spec, ParamStore& params,
                const std::map<std::string, std::string>& metadata) {
    OutputSet files;
    write_model_files(files, weights_path, spec, params, metadata);
    files.commit();
}

nlohmann::json model_description(const ModelSpec& spec, const ParamStore& params) {
    ISS_REQUIRE(int64_t(spec.labels.size()) == spec.unet.classes, "model has ", spec.unet.classes,
                " classes but ", spec.labels.size(), " labels");
    nlohmann::json j = {{"format", model_format},
                        {"version", model_format_version},
                        {"architecture", unet_config_to_json(spec.unet)},
                        {"labels", spec.labels},
                        {"preprocessing", spec.preprocessing},
                        {"training", spec.training},
                        {"parameters", {{"trainable", params.trainable_count()}, {"state", params.state_count()}}},
                        {"written_by", cat("infant-synthseg ", build_version())}};
    j[record_checksum_key] = record_checksum(j);
    return j;
}

void write_model_files(OutputSet& files, const std::string& weights_path, const ModelSpec& spec, ParamStore& params,
                       const std::map<std::string, std::string>& metadata) {
    const nlohmann::json j = model_description(spec, params);
    std::map<std::string, std::string> meta = metadata;
    meta["format"] = model_format;
    files.write(weights_path,
                [&](const std::string& path) { write_safetensors(path, parameter_tensors(params), meta); });
    const std::string text = j.dump(2) + "\n";
    files.write(model_json_path(weights_path), [&](const std::string& path) {
        AtomicWriter out(path);
        out.write(text.data(), text.size());
        out.commit();
    });
}

ModelSpec load_model_spec(const std::string& weights_path) {
    const std::string path = model_json_path(weights_path);
    ModelSpec spec = parse_model_description(read_text_file(path), path);
    // The network the description asks for must be in the weights file before anything is
    // allocated for it: its size proves the parameter count (float32 each).
    require_regular_file(weights_path);
    std::error_code ec;
    const uintmax_t bytes = std::filesystem::file_size(weights_path, ec);
    const int64_t parameters = unet_parameter_count(spec.unet);
    ISS_INPUT(!ec && double(bytes) >= 4.0 * double(parameters), weights_path, ": ", bytes,
              " bytes cannot hold the ", parameters, " parameters ", path, " describes");
    return spec;
}

ModelSpec parse_model_description(const std::string& text, const std::string& path) {
    nlohmann::json j = parse_json(text, path);
    ISS_INPUT(j.is_object() && j.contains("format") && j["format"] == model_format, path,
              ": not an Infant-SynthSeg model description");
    const int64_t version = integer_field(j, "version", path, "", 0, INT32_MAX);
    ISS_INPUT(version == model_format_version, path, ": model format version ", version, " is not supported (expected ",
              model_format_version, ")");
    if (j.contains(record_checksum_key)) {
        const nlohmann::json stated = j[record_checksum_key];
        ISS_INPUT(stated.is_string() && is_crc32_text(stated.get<std::string>()), path, ": its ", record_checksum_key,
                  " is ", clipped(stated.dump(), 16), ", not 8 lowercase hex digits as our writer puts it (remove it ",
                  "to read the record unchecked)");
        j.erase(record_checksum_key);
        const std::string found = record_checksum(j);
        ISS_INPUT(found == stated.get<std::string>(), path, ": its fields are not those it was written with (",
                  record_checksum_key, " ", stated.get<std::string>(), ", the fields' ", found,
                  "): the file is damaged or a value was edited (labels, frame or voxel sizes edited by mistake ",
                  "segment wrongly without a word; reformatting keeps it valid); use an intact copy (a record ",
                  "edited on purpose: remove its ", record_checksum_key, ")");
    }
    ModelSpec spec;
    spec.unet = unet_config_from_json(field(j, "architecture", path, ""), path);
    const nlohmann::json& labels = field(j, "labels", path, "");
    ISS_INPUT(labels.is_array() && int64_t(labels.size()) == spec.unet.classes, path, ": field 'labels' must list ",
              spec.unet.classes, " labels, one per output class");
    for (const nlohmann::json& l : labels) {
        ISS_INPUT(l.is_number_integer() && is_label_value(double(l.get<int64_t>())), path,
                  ": field 'labels': ", l.dump(), " is ", not_a_label);
        const int32_t label = int32_t(l.get<int64_t>());
        ISS_INPUT(std::find(spec.labels.begin(), spec.labels.end(), label) == spec.labels.end(), path,
                  ": field 'labels': ", label, " is listed twice");
        spec.labels.push_back(label);
    }
    spec.preprocessing = field(j, "preprocessing", path, "");
    parse_preprocessing(spec, path);
    if (j.contains("training")) {
        ISS_INPUT(j["training"].is_object(), path, ": field 'training' must be an object");
        spec.training = j["training"];
    }
    if (j.contains("written_by") && j["written_by"].is_string()) spec.written_by = j["written_by"].get<std::string>();
    return spec;
}

namespace {

// InputError naming `weights_path` unless `file` holds exactly `params`' tensors, each F32 of its shape.
void require_tensors_of(const SafetensorsFile& file, const ParamStore& params, const std::string& weights_path) {
    std::vector<std::string> problems;
    std::map<std::string, const SafeTensor*> by_name;
    for (const SafeTensor& t : file.tensors) by_name[t.name] = &t;
    for (const ParamInfo& info : params.infos()) {
        const auto it = by_name.find(info.name);
        if (it == by_name.end()) {
            problems.push_back(cat("missing tensor ", info.name, " ", tensor_shape_text(info.shape)));
            continue;
        }
        const SafeTensor& t = *it->second;
        if (t.dtype != "F32") problems.push_back(cat(info.name, " is ", t.dtype, ", expected F32"));
        else if (t.shape != info.shape)
            problems.push_back(cat(info.name, " has shape ", tensor_shape_text(t.shape), ", the model expects ",
                                   tensor_shape_text(info.shape)));
        by_name.erase(it);
    }
    for (const auto& [name, t] : by_name)
        problems.push_back(cat("unexpected tensor ", name, " ", tensor_shape_text(t->shape)));
    if (!problems.empty()) {
        std::string message = cat(weights_path, ": does not match the model (", problems.size(), " problem",
                                  problems.size() > 1 ? "s" : "", "): ");
        for (size_t i = 0; i < problems.size() && i < 8; ++i) message += (i ? "; " : "") + problems[i];
        if (problems.size() > 8) message += "; ...";
        throw InputError(message);
    }
}

}  // namespace

std::string weights_data_crc32(const std::string& weights_path) {
    const std::map<std::string, std::string> metadata = read_safetensors(weights_path, true).metadata;
    const auto crc = metadata.find("data_crc32");
    return crc == metadata.end() ? "" : crc->second;
}

void require_loadable_weights(const std::string& weights_path, const ParamStore& params) {
    require_tensors_of(read_safetensors(weights_path, true), params, weights_path);
    // Read whole, assembled on the host, then held where the network runs: three copies in host
    // memory on the CPU, two on a GPU (whose own memory the network's checks count).
    const double copies = params.context().is_cuda() ? 2.0 : 3.0;
    const double bytes = copies * 4.0 * double(params.trainable_span() + params.state_span());
    const size_t host = host_memory_bytes();
    ISS_INPUT(fits_in_memory(bytes, host), weights_path, ": a network of ",
              params.trainable_count() + params.state_count(), " parameters needs about ", gib_text(bytes),
              " GiB to load, more than 80% of the ", gib_text(double(host)), " GiB this process may use");
}

std::map<std::string, std::string> load_weights(const std::string& weights_path, ParamStore& params) {
    const SafetensorsFile file = read_safetensors(weights_path);
    require_tensors_of(file, params, weights_path);
    // Everything matches: assemble the flat buffers on the host, then one upload each.
    std::vector<float> values(size_t(params.trainable_span())), state(size_t(params.state_span()));
    for (const ParamInfo& info : params.infos()) {
        const std::vector<float> v = file.at(info.name).as_f32();
        require_usable_parameter(v, cat(weights_path, ": tensor ", info.name), ends_with(info.name, ".running_var"));
        std::copy(v.begin(), v.end(), (info.trainable ? values : state).begin() + info.offset);
    }
    DeviceContext& ctx = params.context();
    if (!values.empty()) ctx.copy_to_device(params.values(), values.data(), values.size() * sizeof(float));
    if (!state.empty()) ctx.copy_to_device(params.state(), state.data(), state.size() * sizeof(float));
    return file.metadata;
}

void save_optimizer(const std::string& path, ParamStore& params, const Adam& adam,
                    const std::map<std::string, std::string>& metadata) {
    const int64_t n = params.trainable_count();
    std::map<std::string, std::string> meta = metadata;
    meta["format"] = "infant-synthseg-optimizer";
    meta["adam_step"] = std::to_string(adam.steps());
    std::vector<SafeTensor> moments;
    for (const std::pair<const char*, const float*>& moment :
         {std::pair<const char*, const float*>{"adam.m", params.adam_m()}, {"adam.v", params.adam_v()}}) {
        const float* flat = moment.second;  // a structured binding cannot be captured in C++17
        moments.push_back(
            f32_tensor(moment.first, {n}, n, [&](float* out) { params.download_packed_into(flat, out); }));
    }
    write_safetensors(path, moments, meta);
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
    // Digits only, as save_optimizer writes them (std::stoll also takes " 3" and "-1").
    const std::string& text = step->second;
    const bool digits = !text.empty() && text.size() <= 18 && text.find_first_not_of("0123456789") == std::string::npos;
    const int64_t steps = digits ? std::stoll(text) : -1;
    ISS_INPUT(steps >= 0, path, ": adam_step '", clipped(step->second, 40), "' is not a step count");
    const std::vector<float> m = file.at("adam.m").as_f32(), v = file.at("adam.v").as_f32();
    // A NaN moment, or a negative second one (its square root), would reach the weights at the
    // first step, and the checkpoint after it.
    require_usable_parameter(m, cat(path, ": tensor adam.m"), false);
    require_usable_parameter(v, cat(path, ": tensor adam.v"), true);
    params.upload_packed(params.adam_m(), m);
    params.upload_packed(params.adam_v(), v);
    adam.set_steps(steps);
    std::map<std::string, std::string> meta = file.metadata;
    meta.erase("format");
    meta.erase("adam_step");
    return meta;
}

}  // namespace iss
