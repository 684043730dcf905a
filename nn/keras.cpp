#include "nn/keras.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "io/file_util.h"
#include "io/hdf5.h"
#include "io/isolate.h"
#include "io/json.h"
#include "io/zip.h"
#include "kernels/common/error.h"

namespace iss {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}

// The U-Nets an import may hold: what Reader::infer refuses past, and what decode checks again
// in the reader process's reply, so that every size is bounded before anything is allocated.
constexpr int max_layer_index = 64;  // so at most 65 convolutions a level
constexpr int max_in_channels = 16;
constexpr int max_classes = 255;
constexpr int64_t max_parameters = int64_t(1) << 28;

// An index as Keras names layers, at `text[at]`: decimal digits without a sign, a space or a
// leading 0 ("03" is no layer's), at most max_layer_index; -1 otherwise. `at` moves past the digits.
int index_at(const std::string& text, size_t& at) {
    const size_t start = at;
    int value = 0;
    while (at < text.size() && at - start < 3 && text[at] >= '0' && text[at] <= '9')
        value = 10 * value + (text[at++] - '0');
    const bool digits = at > start && (at - start == 1 || text[start] != '0');
    return digits && value <= max_layer_index ? value : -1;
}

// "unet_conv_downarm_3_1" -> {3, 1} when `name` is exactly `prefix` + "A_B"; {-1, -1} otherwise.
std::pair<int, int> two_indices(const std::string& name, const std::string& prefix) {
    if (!starts_with(name, prefix)) return {-1, -1};
    size_t at = prefix.size();
    const int a = index_at(name, at);
    if (a < 0 || at >= name.size() || name[at] != '_') return {-1, -1};
    const int b = index_at(name, ++at);
    return b >= 0 && at == name.size() ? std::pair{a, b} : std::pair{-1, -1};
}

int one_index(const std::string& name, const std::string& prefix) {
    if (!starts_with(name, prefix)) return -1;
    size_t at = prefix.size();
    const int a = index_at(name, at);
    return a >= 0 && at == name.size() ? a : -1;
}

// The Keras layer names of each part of our U-Net (ext/neuron's `unet` naming: decoder
// convolutions are numbered on from the levels, their batch norms from 0).
std::string down_conv(int level, int conv) {
    return cat("unet_conv_downarm_", level, "_", conv);
}
std::string down_bn(int level) {
    return cat("unet_bn_down_", level);
}
std::string up_conv(int levels, int step, int conv) {
    return cat("unet_conv_uparm_", levels + step, "_", conv);
}
std::string up_bn(int step) {
    return cat("unet_bn_up_", step);
}
const char* const likelihood = "unet_likelihood";
// ext/neuron's batch norm (Keras' default epsilon; its ELU is Keras' "elu", alpha 1).
constexpr double kNeuronEpsilon = 1e-3;

// A model's JSON config, as a whole-model file's attribute or an archive's config.json.
constexpr size_t kMaxConfigBytes = size_t(64) << 20;
// An archive's metadata.json, which holds our model.json under this key when we wrote it.
constexpr size_t kMaxMetadataBytes = size_t(4) << 20;

const char* const bn_weights[4] = {"gamma:0", "beta:0", "moving_mean:0", "moving_variance:0"};
const char* const bn_params[4] = {"gamma", "beta", "running_mean", "running_var"};

// One Keras layer with weights and the parameters of ours it fills.
struct LayerMap {
    std::string keras;  // layer name
    std::string ours;   // parameter prefix: "enc0.conv1", "dec2.bn", "head"
    bool batch_norm = false;
    int64_t in_c = 0, out_c = 0, kernel = 0;  // convolutions
};

// One layer of the U-Net as ext/neuron's `unet` builds it.
struct KerasLayer {
    std::string name;
    std::string kind;                 // its Keras class
    std::vector<std::string> inputs;  // the layers whose outputs it takes, in order
    int64_t channels = 0;             // of its output
    int weights = -1;                 // its index in KerasLayout::weighted; -1: it holds none
};

// The U-Net as Keras holds it: every layer in the model's order (the weights-only file's list,
// a `.keras` archive's config.json), and the weighted ones with the parameters of ours they fill.
struct KerasLayout {
    std::vector<KerasLayer> layers;
    std::vector<LayerMap> weighted;
};

KerasLayout layout_of(const UNetConfig& u) {
    KerasLayout k;
    const int L = u.levels;
    auto add = [&](const std::string& name, const char* kind, std::vector<std::string> inputs, int64_t channels) {
        k.layers.push_back({name, kind, std::move(inputs), channels});
        return name;
    };
    // A layer with weights: the last weighted entry's.
    auto add_weighted = [&](const char* kind, std::vector<std::string> inputs) {
        const LayerMap& w = k.weighted.back();
        k.layers.push_back({w.keras, kind, std::move(inputs), w.out_c, int(k.weighted.size()) - 1});
        return w.keras;
    };
    auto convolutions = [&](int level, std::string input, int64_t in_c, auto name_of, const std::string& ours) {
        for (int c = 0; c < u.convs_per_level; ++c) {
            k.weighted.push_back({name_of(c), cat(ours, ".conv", c), false, in_c, u.features_at(level), u.kernel});
            input = add_weighted("Conv3D", {input});
            in_c = u.features_at(level);
        }
        return input;
    };
    std::string previous = add("unet_input", "InputLayer", {}, u.in_channels);
    std::vector<std::string> skips;  // each level's last convolution, before its batch norm
    for (int l = 0; l < L; ++l) {
        const int64_t in_c = l == 0 ? u.in_channels : u.features_at(l - 1);
        previous = convolutions(
            l, previous, in_c, [&](int c) { return down_conv(l, c); }, cat("enc", l));
        skips.push_back(previous);
        k.weighted.push_back({down_bn(l), cat("enc", l, ".bn"), true, 0, u.features_at(l), 0});
        previous = add_weighted("BatchNormalization", {previous});
        if (l < L - 1) previous = add(cat("unet_maxpool_", l), "MaxPooling3D", {previous}, u.features_at(l));
    }
    for (int i = 0; i < L - 1; ++i) {
        const int l = L - 2 - i;
        const std::string up = add(cat("unet_up_", L + i), "UpSampling3D", {previous}, u.features_at(l + 1));
        previous = add(cat("unet_merge_", L + i), "Concatenate", {skips[size_t(l)], up},
                       u.features_at(l) + u.features_at(l + 1));
        previous = convolutions(
            l, previous, u.features_at(l) + u.features_at(l + 1), [&](int c) { return up_conv(L, i, c); },
            cat("dec", l));
        k.weighted.push_back({up_bn(i), cat("dec", l, ".bn"), true, 0, u.features_at(l), 0});
        previous = add_weighted("BatchNormalization", {previous});
    }
    k.weighted.push_back({likelihood, "head", false, u.features_at(0), u.classes, 1});
    previous = add_weighted("Conv3D", {previous});
    add("unet_prediction", "Activation", {previous}, u.classes);
    return k;
}

// Parameters in all, from the layer shapes alone (nothing allocated).
int64_t parameters_of_layout(const UNetConfig& u) {
    int64_t total = 0;
    for (const LayerMap& layer : layout_of(u).weighted)
        total += layer.batch_norm ? 4 * layer.out_c
                                  : layer.out_c * (layer.kernel * layer.kernel * layer.kernel * layer.in_c + 1);
    return total;
}

// Keras kernel (kx, ky, kz, in, out) <-> ours (out, kz, ky, kx, in), either way.
enum class Direction { from_keras, to_keras };
std::vector<float> transpose_kernel(const std::vector<float>& src, int64_t k, int64_t in, int64_t out, Direction d) {
    std::vector<float> dst(src.size());
    for (int64_t x = 0; x < k; ++x)
        for (int64_t y = 0; y < k; ++y)
            for (int64_t z = 0; z < k; ++z)
                for (int64_t i = 0; i < in; ++i)
                    for (int64_t o = 0; o < out; ++o) {
                        const size_t keras = size_t((((x * k + y) * k + z) * in + i) * out + o);
                        const size_t ours = size_t((((o * k + z) * k + y) * k + x) * in + i);
                        if (d == Direction::from_keras)
                            dst[ours] = src[keras];
                        else
                            dst[keras] = src[ours];
                    }
    return dst;
}

// Layer names of the U-Net that hold no weights: accepted and ignored.
bool weightless_unet_layer(const std::string& name) {
    return name == "unet_input" || name == "unet_prediction" || one_index(name, "unet_maxpool_") >= 0 ||
           one_index(name, "unet_up_") >= 0 || one_index(name, "unet_merge_") >= 0;
}

// The layer list of a model's JSON config (a whole model's model_config, a `.keras` archive's
// config.json: {"config": {"layers": [...]}}); `where` names it in messages.
nlohmann::json config_layers(const std::string& text, const std::string& where) {
    nlohmann::json config = parse_json(text, where);
    const bool listed = config.is_object() && config.contains("config") && config["config"].is_object() &&
                        config["config"].contains("layers") && config["config"]["layers"].is_array();
    ISS_INPUT(listed, where, " holds no layer list");
    return std::move(config["config"]["layers"]);
}

// Keras' naming.to_snake_case, which names a layer's group in a Keras 3 weights file after its
// class: "Conv3D" -> "conv3d", "BatchNormalization" -> "batch_normalization".
std::string snake_case(const std::string& class_name) {
    static const std::regex non_word("[^A-Za-z0-9_]+"), word("(.)([A-Z][a-z]+)"), lower_upper("([a-z])([A-Z])");
    std::string name = std::regex_replace(class_name, non_word, "");
    name = std::regex_replace(std::regex_replace(name, word, "$1_$2"), lower_upper, "$1_$2");
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    return name;
}

// The groups Keras 3's saving_lib gives a model's layers in a weights file, from their classes in
// the model's layer order: the class in snake case, the second of a class with "_1" and so on.
std::vector<std::string> keras3_group_names(const std::vector<std::string>& kinds) {
    std::vector<std::string> groups;
    std::map<std::string, int> used;
    for (const std::string& kind : kinds) {
        const std::string group = snake_case(kind);
        const auto seen = used.find(group);
        groups.push_back(seen == used.end() ? group : cat(group, "_", ++seen->second));
        if (seen == used.end()) used[group] = 0;
    }
    return groups;
}

// Keras 3.0 to 3.5 wrote no layer names into a weights file, so a layer's group is found from
// config.json's list, which is in the model's layer order (keras3_group_names). Group name ->
// layer name.
std::map<std::string, std::string> keras3_groups_by_class(const nlohmann::json& layers) {
    std::vector<std::string> kinds, names;
    for (const nlohmann::json& layer : layers) {
        const auto kind = layer.is_object() ? layer.find("class_name") : layer.end();
        const auto config = layer.is_object() ? layer.find("config") : layer.end();
        if (kind == layer.end() || !kind->is_string() || config == layer.end() || !config->is_object()) continue;
        const auto name = config->find("name");
        if (name == config->end() || !name->is_string()) continue;
        kinds.push_back(kind->get<std::string>());
        names.push_back(name->get<std::string>());
    }
    std::map<std::string, std::string> by_group;
    const std::vector<std::string> groups = keras3_group_names(kinds);
    for (size_t i = 0; i < groups.size(); ++i) by_group[groups[i]] = names[i];
    return by_group;
}

// What a `.keras` archive (Keras 3's saving_lib) holds besides its weights file: the model's
// config's layer list (config.json) and the Keras release that saved it (metadata.json).
struct ArchiveText {
    nlohmann::json layers;
    std::string config_where, keras_version;
    std::string description;  // metadata.json's keras_record_key object, as text ("" when absent)
};

// Reads one weights file's U-Net: the layer list first, the architecture from the shapes, then
// every dataset checked against that architecture.
class Reader {
public:
    explicit Reader(const Hdf5Reader& file, const ArchiveText* archive = nullptr)
        : file_(file), path_(file.path()), archive_(archive) {
        root_ = file_.has_group("/model_weights") ? "/model_weights" : "";
        const std::string object = root_.empty() ? "/" : root_;
        const bool listed = file_.has_attribute(object, "layer_names") || file_.has_attribute(object, "layer_names0");
        if (!listed && root_.empty() && file_.has_group("/layers")) {
            read_keras3_layers();
            return;
        }
        ISS_INPUT(listed, path_, ": not a Keras weights file (no 'layer_names' attribute",
                  root_.empty() ? "" : " in /model_weights", ")");
        layers_ = name_list(object, "layer_names");
    }

    KerasUNet read() {
        KerasUNet model;
        model.layout = archive_        ? "Keras 3 archive"
                       : keras3_       ? "Keras 3 weights"
                       : root_.empty() ? "weights only"
                                       : "whole model";
        // Keras 3's weights files record no version (its archives do, beside them).
        model.keras_version = archive_ ? archive_->keras_version : keras3_ ? keras3_release_unrecorded : "unknown";
        model.description = archive_ ? archive_->description : recorded_description();
        if (!archive_ && file_.has_attribute("/", "keras_version")) {
            const std::vector<std::string> v = file_.string_list("/", "keras_version");
            if (v.size() == 1) model.keras_version = v[0];
        }
        model.unet = infer();
        const KerasLayout layout = layout_of(model.unet);
        require_only_layout_layers(layout);
        if (keras3_) require_keras3_positions(layout);
        if (archive_)
            check_model_config(layout, archive_->layers, archive_->config_where);
        else if (!root_.empty() && file_.has_attribute("/", "model_config"))
            check_model_config(layout, config_layers(model_config_attribute(), path_ + ": model_config"),
                               path_ + ": model_config");
        for (const LayerMap& layer : layout.weighted) read_layer(layer, model.tensors);
        return model;
    }

private:
    // Keras 3's save_weights (`.weights.h5`): no layer list, a group per layer under /layers
    // named after its class (conv3d, conv3d_1, ...), whose `vars` group holds the layer's name as
    // an attribute (Keras 3.6 on) and its weights as datasets 0, 1, ... in the layer's order.
    // Without that attribute, an archive's config.json gives the name (keras3_groups_by_class).
    void read_keras3_layers() {
        keras3_ = true;
        std::map<std::string, std::string> by_class;
        if (archive_) by_class = keras3_groups_by_class(archive_->layers);
        // A U-Net has a few dozen layers; a training model around it a few more.
        for (const std::string& member : file_.group_members("/layers", 1024)) {
            const std::string vars = "/layers/" + member + "/vars";
            ISS_INPUT(file_.has_group(vars), path_, ": Keras 3 layer group ", member, " has no vars group");
            std::string name;
            if (file_.has_attribute(vars, "name")) {
                const std::vector<std::string> names = file_.string_list(vars, "name");
                ISS_INPUT(names.size() == 1 && !names[0].empty(), path_, ": Keras 3 layer group ", member,
                          " has an empty or listed 'name'");
                name = names[0];
                // Keras loads an archive's groups by config.json's layer order, not by this name.
                const auto listed = by_class.find(member);
                ISS_INPUT(!archive_ || listed == by_class.end() || listed->second == name, path_,
                          ": Keras 3 layer group ", member, " is named ", name, " but holds layer ", listed->second,
                          "'s weights by its position in config.json, which is how Keras loads them");
            } else {
                const auto it = by_class.find(member);
                if (it == by_class.end())
                    throw InputError(cat(path_, ": Keras 3 layer group ", member, " names no layer",
                                         archive_ ? ", and config.json lists no layer that Keras would save under that "
                                                    "name"
                                                  : " (no 'name' attribute on its vars group: Keras 3.0 to 3.5 wrote "
                                                    "none; the model's .keras archive reads, or save the weights "
                                                    "again with Keras 3.6 or later)"));
                name = it->second;
            }
            ISS_INPUT(keras3_groups_.emplace(name, member).second, path_, ": two layers are named ", name);
            layers_.push_back(name);
        }
    }

    // A name list as Keras writes it: one attribute, or, past 64 KB, split into NAME0, NAME1, ...
    // (save_attributes_to_hdf5_group).
    std::vector<std::string> name_list(const std::string& object, const std::string& name) const {
        if (file_.has_attribute(object, name)) return file_.string_list(object, name);
        std::vector<std::string> all;
        for (int part = 0; file_.has_attribute(object, cat(name, part)); ++part) {
            ISS_INPUT(part < 1024, path_, ": attribute '", name, "' of ", object, " is split into too many parts");
            for (std::string& n : file_.string_list(object, cat(name, part))) all.push_back(std::move(n));
        }
        return all;
    }

    // Every U-Net layer in the file is one the inferred architecture has: a weighted layer it
    // does not have (a third decoder convolution, a batch norm past the last level) would
    // otherwise be dropped without a word.
    // And a U-Net layer that holds no weights in ours (pooling, upsampling, a merge) holds none in
    // the file: a transposed convolution named unet_up_2 would otherwise have its weights unread.
    void require_only_layout_layers(const KerasLayout& layout) const {
        std::map<std::string, bool> weighted;
        for (const KerasLayer& layer : layout.layers) weighted[layer.name] = layer.weights >= 0;
        for (const std::string& name : layers_) {
            if (!starts_with(name, "unet_")) continue;  // a training model's other layers
            const auto known = weighted.find(name);
            ISS_INPUT(weightless_unet_layer(name) || known != weighted.end(), path_, ": layer ", name,
                      " is not part of the U-Net its other layers describe (", layout_text(layout), ")");
            const bool weightless = known == weighted.end() || !known->second;
            if (weightless && (!keras3_ || keras3_groups_.count(name)) && file_.has_group(group(name)))
                weight_names(name, {});
        }
    }

    // Keras 3 loads a weights file by position: a layer's weights are those of the group its
    // class and rank among that class's layers name (the third Conv3D's, conv3d_2), whatever the
    // group's 'name' attribute says. Where that name is ours to go by, the U-Net's layers of each
    // class must stand in their groups in the U-Net's order (a training model's other layers may
    // come between), or the file holds what Keras would load into other layers: a converter's or
    // an edit's file, refused rather than read into another network than Keras'. Only layers with
    // weights: where a weightless one stands loads nothing (and its class may be another than
    // ours: ext/neuron's unet_prediction is a Lambda, saved as `lambda`).
    void require_keras3_positions(const KerasLayout& layout) const {
        static const std::regex ranked("(.*)_([0-9]+)");
        std::map<std::string, std::pair<long long, std::string>> last;  // class -> the rank and layer before
        for (const KerasLayer& layer : layout.layers) {
            if (layer.weights < 0) continue;
            const auto found = keras3_groups_.find(layer.name);
            if (found == keras3_groups_.end()) continue;
            const std::string& member = found->second;
            std::smatch m;
            const bool numbered = std::regex_match(member, m, ranked);
            const std::string kind = numbered ? m[1].str() : member, expected = snake_case(layer.kind);
            const long long rank = numbered ? std::stoll(m[2].str().substr(0, 9)) : 0;
            ISS_INPUT(kind == expected, path_, ": Keras 3 layer group ", member, " is named ", layer.name,
                      ", a layer of class ", layer.kind, ", whose weights Keras reads from a group ", expected, "...",
                      " (by position, not by name)");
            const auto before = last.find(kind);
            if (before != last.end())
                ISS_INPUT(rank > before->second.first, path_, ": Keras 3 layer groups ",
                          before->second.first == 0 ? kind : cat(kind, "_", before->second.first), " and ", member,
                          " are named ", before->second.second, " and ", layer.name,
                          ", layers the U-Net has in the other order: Keras loads weights by their group's position, "
                          "not its name, so it would read them into other layers (a converted or edited file?)");
            last[kind] = {rank, layer.name};
        }
    }

    static std::string layout_text(const KerasLayout& layout) {
        int convs = 0, norms = 0;
        for (const LayerMap& l : layout.weighted) (l.batch_norm ? norms : convs) += 1;
        return cat(convs, " convolutions and ", norms, " batch norms");
    }

    // A whole model says how its layers compute; a weights-only file cannot, and is taken to be
    // ext/neuron's U-Net as SynthSeg builds it (ELU, batch norm epsilon 1e-3, softmax). Every
    // U-Net layer of model_config must compute what our U-Net computes, or the file is refused:
    // a ReLU model run with ELU gives other labels without any error.
    // `layers`: config_layers of the config; `where` names it in messages ("FILE: model_config",
    // "FILE: config.json").
    void check_model_config(const KerasLayout& layout, const nlohmann::json& layers, const std::string& where) const {
        std::map<std::string, const KerasLayer*> ours;
        for (const KerasLayer& l : layout.layers) ours[l.name] = &l;
        auto listed = [&](const std::function<bool(const std::string&)>& named) {
            return std::any_of(layers.begin(), layers.end(),
                               [&](const nlohmann::json& layer) { return named(name_of(layer)); });
        };
        // A model that has its own input layer is the U-Net alone: its first convolution must
        // take that input too. Without one, a training checkpoint feeds it the synthetic image.
        const bool own_input = listed([](const std::string& n) { return n == "unet_input"; });
        for (const nlohmann::json& layer : layers) {
            const std::string name = name_of(layer);
            if (!starts_with(name, "unet_")) continue;  // another model's layer (training checkpoints)
            const std::string kind = text_of(layer, "class_name"), shown = clipped(name);
            const std::string why = layer_difference(kind, name, layer["config"]);
            ISS_INPUT(why.empty(), where, ": layer ", shown, " (", clipped(kind), ") ", why,
                      "; this program's U-Net computes only what ext/neuron's SynthSeg U-Net does");
            const auto it = ours.find(name);
            ISS_INPUT(it != ours.end(), where, ": layer ", shown, " is not part of the U-Net its weights describe");
            if (kind == "Conv3D" || kind == "BatchNormalization")
                ISS_INPUT(it->second->weights >= 0, where, ": layer ", shown, " holds no weights in the file");
            check_inputs(*it->second, layer, own_input, where);
        }
        // Without its softmax the model gives logits, which Keras would output as they are (a config
        // that lists no U-Net layer says nothing either way).
        ISS_INPUT(!listed([](const std::string& n) { return starts_with(n, "unet_"); }) ||
                      listed([](const std::string& n) { return n == "unet_prediction"; }),
                  where,
                  ": no layer unet_prediction: ext/neuron's U-Net ends in a softmax, and this model gives its logits");
    }

    // A config layer's name ("" when it has no config object or no name).
    static std::string name_of(const nlohmann::json& layer) {
        const auto config = layer.is_object() ? layer.find("config") : layer.end();
        return config != layer.end() && config->is_object() ? text_of(*config, "name") : std::string();
    }

    // A layer must take the inputs ext/neuron's U-Net gives it, in that order (the skip before
    // the upsampled path in a merge; each level's skip from its last convolution, before the
    // batch norm): the same layers wired otherwise compute something else. The first convolution
    // of a model without `own_input` may take anything (a training checkpoint's synthetic image),
    // and a layer without an `inbound_nodes` key states nothing to compare.
    static void check_inputs(const KerasLayer& ours, const nlohmann::json& layer, bool own_input,
                             const std::string& where) {
        const auto nodes = layer.find("inbound_nodes");
        if (nodes == layer.end() || (!own_input && ours.inputs == std::vector<std::string>{"unet_input"})) return;
        ISS_INPUT(nodes->is_array() && nodes->size() <= 1, where, ": layer ", ours.name, " is called ",
                  nodes->is_array() ? cat(nodes->size(), " times") : std::string("in a form Keras does not write"),
                  "; in ext/neuron's U-Net each layer is called once");
        const std::vector<std::string> theirs = inbound_layers(*nodes);
        auto listed = [](const std::vector<std::string>& names) {
            std::string text;
            for (const std::string& n : names) text += (text.empty() ? "" : ", ") + clipped(n);
            return text.empty() ? std::string("nothing") : text;
        };
        ISS_INPUT(theirs == ours.inputs, where, ": layer ", ours.name, " takes ", listed(theirs),
                  "; in ext/neuron's U-Net it takes ", listed(ours.inputs));
    }

    // The layers whose outputs a layer takes, as Keras 2 ([[["name", 0, 0, {}], ...]]) and Keras 3
    // ([{"args": [tensor or [tensors]], "kwargs": {}}]) write its one inbound node (at most one:
    // check_inputs); a node in another form gives "(unreadable)".
    static std::vector<std::string> inbound_layers(const nlohmann::json& nodes) {
        const std::vector<std::string> unreadable{"(unreadable)"};
        if (nodes.empty()) return {};
        const nlohmann::json& node = nodes[0];
        nlohmann::json sources;
        if (node.is_array()) {
            sources = node;  // Keras 2: [name, node index, tensor index, kwargs] per input
        } else if (node.is_object() && node.contains("args") && node["args"].is_array() && node["args"].size() == 1) {
            const nlohmann::json& args = node["args"][0];
            sources = args.is_array() ? args : nlohmann::json::array({args});
        } else {
            return unreadable;
        }
        std::vector<std::string> names;
        for (const nlohmann::json& source : sources) {
            const nlohmann::json* history = &source;  // Keras 2's list, or Keras 3's tensor's keras_history
            if (source.is_object()) {
                const auto config = source.find("config");
                if (config == source.end() || !config->is_object() || !config->contains("keras_history"))
                    return unreadable;
                history = &(*config)["keras_history"];
            }
            if (!history->is_array() || history->empty() || !(*history)[0].is_string()) return unreadable;
            names.push_back((*history)[0].get<std::string>());
        }
        return names;
    }

    // The model.json our Keras 2 export records (write_keras_unet): one attribute or its parts,
    // "" in a file of another's. Passed on unchecked, as an archive's.
    std::string recorded_description() const {
        std::string text;
        for (const std::string& part : name_list("/", keras_record_key)) {
            text += part;
            ISS_INPUT(text.size() <= kMaxMetadataBytes, path_, ": attribute ", keras_record_key, " is larger than ",
                      kMaxMetadataBytes >> 20, " MB");
        }
        return text;
    }

    std::string model_config_attribute() const {
        const std::vector<std::string> text = file_.string_list("/", "model_config", kMaxConfigBytes, 1);
        ISS_INPUT(text.size() == 1, path_, ": attribute 'model_config' is not one string");
        return text[0];
    }

    static std::string text_of(const nlohmann::json& object, const char* key) {
        const auto it = object.find(key);
        return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
    }

    // An activation as Keras serialises it: "elu", or {"class_name": ..., "config": {"name": ...}}.
    static std::string activation_of(const nlohmann::json& c) {
        const auto it = c.find("activation");
        if (it == c.end()) return "linear";
        if (it->is_string()) return it->get<std::string>();
        if (it->is_object() && it->contains("config") && (*it)["config"].is_object())
            return text_of((*it)["config"], "name");
        return "?";
    }

    // Whether a list option equals `value` on every axis (absent: Keras' default, taken as equal).
    static bool all_equal(const nlohmann::json& c, const char* key, int value) {
        const auto it = c.find(key);
        if (it == c.end() || it->is_null()) return true;
        if (it->is_number_integer()) return it->get<int>() == value;
        if (!it->is_array()) return false;
        for (const nlohmann::json& v : *it)
            if (!v.is_number_integer() || v.get<int>() != value) return false;
        return true;
    }

    static bool channel_axis(const nlohmann::json& c) {
        const auto it = c.find("axis");
        if (it == c.end()) return true;
        const nlohmann::json& a = it->is_array() && it->size() == 1 ? (*it)[0] : *it;
        return a.is_number_integer() && (a.get<int>() == -1 || a.get<int>() == 4);
    }

    // "" when the layer computes what ours does; otherwise what differs.
    static std::string layer_difference(const std::string& kind, const std::string& name, const nlohmann::json& c) {
        const std::string data_format = text_of(c, "data_format");
        if (!data_format.empty() && data_format != "channels_last") return cat("has data_format ", data_format);
        if (kind == "InputLayer" || kind == "MaxPooling3D" || kind == "UpSampling3D" || kind == "Concatenate") {
            if (kind == "MaxPooling3D" && !(all_equal(c, "pool_size", 2) && all_equal(c, "strides", 2)))
                return "is not a 2x2x2 pooling of stride 2";
            if (kind == "UpSampling3D" && !all_equal(c, "size", 2)) return "does not upsample by 2";
            if (kind == "Concatenate" && !channel_axis(c)) return "does not concatenate channels";
            return "";
        }
        if (kind == "Conv3D") {
            const std::string want = name == likelihood ? "linear" : "elu";
            if (activation_of(c) != want) return cat("has activation ", activation_of(c), ", not ", want);
            if (!all_equal(c, "strides", 1) || !all_equal(c, "dilation_rate", 1) || !all_equal(c, "groups", 1))
                return "is strided, dilated or grouped";
            if (c.contains("use_bias") && c["use_bias"] != true) return "has no bias";
            if (name != likelihood && text_of(c, "padding") != "same") return "does not pad 'same'";
            return "";
        }
        if (kind == "BatchNormalization") {
            const auto eps = c.find("epsilon");
            if (eps != c.end() && !(eps->is_number() && std::fabs(eps->get<double>() - kNeuronEpsilon) <= 1e-9))
                return cat("has epsilon ", eps->dump(), ", not 0.001");
            if ((c.contains("center") && c["center"] != true) || (c.contains("scale") && c["scale"] != true))
                return "has no beta or no gamma";
            if (!channel_axis(c)) return "does not normalise the channels";
            return "";
        }
        if (name == "unet_prediction") {
            if (kind == "Activation") return activation_of(c) == "softmax" ? "" : cat("is ", activation_of(c));
            if (kind == "Softmax") return channel_axis(c) ? "" : "is a softmax over another axis";
            if (kind == "Lambda") return lambda_is_softmax(c) ? "" : "is a Lambda that does not apply a softmax";
        }
        return "is a layer type this program does not build";
    }

    // ext/neuron's output is Lambda(lambda x: keras.activations.softmax(x, axis=...)), stored as
    // base64 of the marshalled Python code, whose names include "softmax": Keras 2 writes
    // [code, defaults, closure], Keras 3 {"class_name": "__lambda__", "config": {"code": ...}};
    // a named function is stored as its name.
    static bool lambda_is_softmax(const nlohmann::json& c) {
        const auto it = c.find("function");
        if (it == c.end()) return false;
        auto names_softmax = [](const std::string& s) { return s.find("softmax") != std::string::npos; };
        if (it->is_string()) return names_softmax(it->get<std::string>());
        if (it->is_array() && !it->empty() && (*it)[0].is_string())
            return names_softmax(base64_decode((*it)[0].get<std::string>()));
        if (it->is_object() && it->contains("config") && (*it)["config"].is_object()) {
            const std::string code = text_of((*it)["config"], "code");
            return !code.empty() && names_softmax(base64_decode(code));
        }
        return false;
    }

    static std::string base64_decode(const std::string& text) {
        std::string out;
        uint32_t bits = 0;
        int count = 0;
        for (const char ch : text) {
            int v;
            if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
            else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
            else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
            else if (ch == '+') v = 62;
            else if (ch == '/') v = 63;
            else continue;  // line breaks and padding
            bits = (bits << 6) | uint32_t(v);
            count += 6;
            if (count >= 8) {
                count -= 8;
                out.push_back(char((bits >> count) & 0xff));
            }
        }
        return out;
    }

    // The architecture from the names and the shapes of the first convolution and the head.
    UNetConfig infer() {
        std::set<std::pair<int, int>> down;
        std::set<int> bn_down;
        for (const std::string& name : layers_) {
            // SynthSeg 2.0's files hold a cascade whose answer comes from the later networks.
            ISS_INPUT(!starts_with(name, "unet2_") && !starts_with(name, "l2l_"), path_, ": layer ", name,
                      " belongs to SynthSeg 2.0's cascade (a denoiser and a second U-Net after the first): its "
                      "segmentation is not the first U-Net's, and this program builds only that one");
            ISS_INPUT(!starts_with(name, "unet_parc_"), path_, ": layer ", name,
                      " belongs to SynthSeg 2.0's parcellation network, which this program does not build");
            if (!starts_with(name, "unet_")) continue;  // another model's layer (training checkpoints)
            const auto d = two_indices(name, "unet_conv_downarm_");
            if (d.first >= 0) {
                down.insert(d);
                continue;
            }
            if (one_index(name, "unet_bn_down_") >= 0) {
                bn_down.insert(one_index(name, "unet_bn_down_"));
                continue;
            }
            if (two_indices(name, "unet_conv_uparm_").first >= 0 || one_index(name, "unet_bn_up_") >= 0 ||
                name == likelihood || weightless_unet_layer(name))
                continue;
            throw InputError(cat(path_, ": layer ", name,
                                 " is not part of the U-Net this program builds (residual, dropout and other "
                                 "variants are not supported)"));
        }
        ISS_INPUT(!down.empty(), path_, ": holds no U-Net layers (unet_conv_downarm_*): not a SynthSeg-family model");
        UNetConfig u;
        u.levels = down.rbegin()->first + 1;
        u.convs_per_level = 0;
        while (down.count({0, u.convs_per_level})) ++u.convs_per_level;
        // A layer missing from the grid of levels and convolutions is often one renamed or added
        // past it (unet_conv_downarm_1_5): named too, as the file's own.
        std::string beyond;
        for (const auto& [l, c] : down)
            if (c >= u.convs_per_level) beyond += cat(beyond.empty() ? "" : ", ", down_conv(l, c));
        for (int l = 0; l < u.levels; ++l)
            for (int c = 0; c < u.convs_per_level; ++c)
                ISS_INPUT(down.count({l, c}), path_, ": missing layer ", down_conv(l, c),
                          beyond.empty()
                              ? cat(" (level 0 has ", u.convs_per_level, " convolutions, as every level must)")
                              : cat(" (the file holds ", clipped(beyond, 200), ", past the ", u.convs_per_level,
                                    " convolutions level 0 has)"));
        ISS_INPUT(int(down.size()) == u.levels * u.convs_per_level, path_,
                  ": the encoder levels have different numbers of convolutions");
        ISS_INPUT(!bn_down.empty(), path_,
                  ": no batch normalisation layers (unet_bn_down_*): this program's U-Net has one per level");
        ISS_INPUT(u.levels <= UNetConfig::max_levels, path_, ": ", u.levels, " levels; at most ",
                  UNetConfig::max_levels, " are supported");

        const std::vector<int64_t> first = kernel_shape(down_conv(0, 0));
        u.kernel = int(first[0]);
        ISS_INPUT(first[0] == first[1] && first[1] == first[2] && UNetConfig::supported_kernel(u.kernel), path_,
                  ": layer ", down_conv(0, 0), " has a ", first[0], "x", first[1], "x", first[2],
                  " kernel; 3x3x3 or 1x1x1 expected");
        ISS_INPUT(first[3] >= 1 && first[3] <= max_in_channels, path_, ": layer ", down_conv(0, 0), " takes ", first[3],
                  " input channels (1 to ", max_in_channels, " supported)");
        ISS_INPUT(first[4] >= 1 && first[4] <= UNetConfig::max_features, path_, ": layer ", down_conv(0, 0), " has ",
                  first[4], " features (1 to ", UNetConfig::max_features, " supported)");
        u.in_channels = int(first[3]);
        u.features = int(first[4]);
        if (u.levels > 1) {
            const std::vector<int64_t> second = kernel_shape(down_conv(1, 0));
            ISS_INPUT(second[4] == 2 * first[4], path_, ": layer ", down_conv(1, 0), " has ", second[4],
                      " features after ", first[4], " at level 0: this program's U-Net doubles the features per level");
        }
        const std::vector<int64_t> head = kernel_shape(likelihood);
        ISS_INPUT(head[4] >= 2 && head[4] <= max_classes, path_, ": layer ", likelihood, " has ", head[4],
                  " outputs (2 to ", max_classes, " labels supported)");
        u.classes = int(head[4]);
        ISS_INPUT(u.widest_supported(), path_, ": ", u.widest_problem());
        // Parameters in all, from the dims checked so far, before anything is read.
        const int64_t total = parameters_of_layout(u);
        ISS_INPUT(total <= max_parameters, path_, ": a U-Net of ", total, " parameters is larger than supported");
        return u;
    }

    std::string group(const std::string& layer) const {
        if (!keras3_) return root_ + "/" + layer;
        const auto it = keras3_groups_.find(layer);
        ISS_INPUT(it != keras3_groups_.end(), path_, ": missing layer ", layer);
        return "/layers/" + it->second + "/vars";
    }

    // The layer's weight names, which must be those expected (by suffix), in that order; in a
    // Keras 3 file, where weights are numbered, as many as expected.
    std::vector<std::string> weight_names(const std::string& layer, const std::vector<std::string>& suffixes) const {
        ISS_INPUT(std::find(layers_.begin(), layers_.end(), layer) != layers_.end(), path_, ": missing layer ", layer);
        ISS_INPUT(file_.has_group(group(layer)), path_, ": layer ", layer, " is listed but its group is missing");
        std::string expected = suffixes.empty() ? "none" : "";
        for (const std::string& s : suffixes) expected += (expected.empty() ? "" : ", ") + s;
        if (keras3_) {
            std::vector<std::string> numbered;
            while (numbered.size() <= suffixes.size() && file_.has_dataset(cat(group(layer), "/", numbered.size())))
                numbered.push_back(std::to_string(numbered.size()));
            const std::string held = numbered.size() <= suffixes.size() ? cat(numbered.size(), " weights")
                                     : suffixes.empty()                 ? std::string("weights")
                                                        : cat("more than ", suffixes.size(), " weights");
            ISS_INPUT(numbered.size() == suffixes.size(), path_, ": layer ", layer, " holds ", held, "; expected ",
                      expected);
            return numbered;
        }
        const std::vector<std::string> names = name_list(group(layer), "weight_names");
        // tf-keras writes "layer/kernel:0", Keras 3's legacy HDF5 "layer/kernel".
        auto without_index = [](const std::string& n) { return ends_with(n, ":0") ? n.substr(0, n.size() - 2) : n; };
        bool ok = names.size() == suffixes.size();
        for (size_t i = 0; ok && i < names.size(); ++i)
            ok = ends_with(without_index(names[i]), "/" + without_index(suffixes[i]));
        ISS_INPUT(ok, path_, ": layer ", layer, " holds ", names.size(), " weights; expected ", expected);
        return names;
    }

    std::vector<int64_t> kernel_shape(const std::string& layer) const {
        const std::vector<std::string> names = weight_names(layer, {"kernel:0", "bias:0"});
        const Hdf5Reader::DatasetInfo info = file_.dataset_info(group(layer) + "/" + names[0]);
        ISS_INPUT(info.shape.size() == 5, path_, ": layer ", layer, " has a kernel of rank ", info.shape.size(),
                  "; a 3-D convolution's is 5");
        return info.shape;
    }

    void read_layer(const LayerMap& layer, std::map<std::string, std::vector<float>>& tensors) const {
        if (layer.batch_norm) {
            const std::vector<std::string> names =
                weight_names(layer.keras, {bn_weights[0], bn_weights[1], bn_weights[2], bn_weights[3]});
            for (int w = 0; w < 4; ++w)  // the fourth is the moving variance
                tensors[layer.ours + "." + bn_params[w]] = read(layer.keras, names[size_t(w)], {layer.out_c}, w == 3);
            return;
        }
        const std::vector<std::string> names = weight_names(layer.keras, {"kernel:0", "bias:0"});
        const int64_t k = layer.kernel;
        const std::vector<float> kernel = read(layer.keras, names[0], {k, k, k, layer.in_c, layer.out_c});
        tensors[layer.ours + ".weight"] = transpose_kernel(kernel, k, layer.in_c, layer.out_c, Direction::from_keras);
        tensors[layer.ours + ".bias"] = read(layer.keras, names[1], {layer.out_c});
    }

    // One dataset, whose values must be usable (as the safetensors loader requires).
    std::vector<float> read(const std::string& layer, const std::string& weight, const std::vector<int64_t>& shape,
                            bool is_variance = false) const {
        std::vector<float> values = file_.read_f32(group(layer) + "/" + weight, shape);
        require_usable_parameter(values, cat(path_, ": dataset ", group(layer), "/", weight), is_variance);
        return values;
    }

    const Hdf5Reader& file_;
    std::string path_;
    const ArchiveText* archive_;  // for a `.keras` archive's weights
    std::string root_;  // "" (weights only) or "/model_weights"
    std::vector<std::string> layers_;
    bool keras3_ = false;  // Keras 3's save_weights layout
    std::map<std::string, std::string> keras3_groups_;  // there: layer name -> its group under /layers
};

// The model as the reader process sends it (io/isolate.h): the architecture and the two texts,
// then every tensor of layout_of(unet), in order, as raw floats.
class Bytes {
public:
    void reserve(size_t bytes) { data_.reserve(bytes); }
    void put(int32_t v) { data_.append(reinterpret_cast<const char*>(&v), sizeof v); }
    void put(const std::string& s) {
        put(int32_t(s.size()));
        data_ += s;
    }
    void put(const std::vector<float>& v) { data_.append(reinterpret_cast<const char*>(v.data()), v.size() * 4); }
    std::string take() { return std::move(data_); }

private:
    std::string data_;
};

class Unpack {
public:
    Unpack(const std::string& data, const std::string& path) : data_(data), path_(path) {}
    int32_t integer() {
        int32_t v;
        std::memcpy(&v, need(sizeof v), sizeof v);
        return v;
    }
    std::string text(int32_t max_bytes = 4096) {
        const int32_t n = integer();
        ISS_INPUT(n >= 0 && n <= max_bytes, path_,
                  ": the HDF5 reader process sent a malformed model (a damaged file?)");
        return std::string(need(size_t(n)), size_t(n));
    }
    std::vector<float> floats(int64_t count) {
        const char* bytes = need(size_t(count) * 4);  // checked before allocating
        std::vector<float> v(static_cast<size_t>(count));
        std::memcpy(v.data(), bytes, v.size() * 4);
        return v;
    }
    bool done() const { return at_ == data_.size(); }

private:
    const char* need(size_t bytes) {
        ISS_INPUT(bytes <= data_.size() - at_, path_,
                  ": the HDF5 reader process sent a malformed model (a damaged file?)");
        const char* p = data_.data() + at_;
        at_ += bytes;
        return p;
    }
    const std::string& data_;
    const std::string& path_;
    size_t at_ = 0;
};

std::string encode(const KerasUNet& m) {
    Bytes b;
    b.reserve(size_t(unet_parameter_count(m.unet)) * 4 + m.description.size() + 1024);
    for (int v : {m.unet.levels, m.unet.features, m.unet.convs_per_level, m.unet.kernel, m.unet.in_channels,
                  m.unet.classes})
        b.put(int32_t(v));
    b.put(m.layout);
    b.put(m.keras_version);
    b.put(m.description);
    for (const LayerMap& layer : layout_of(m.unet).weighted) {
        if (layer.batch_norm)
            for (const char* p : bn_params) b.put(m.tensors.at(layer.ours + "." + p));
        else {
            b.put(m.tensors.at(layer.ours + ".weight"));
            b.put(m.tensors.at(layer.ours + ".bias"));
        }
    }
    return b.take();
}

KerasUNet decode(const std::string& data, const std::string& path) {
    Unpack in(data, path);
    KerasUNet m;
    UNetConfig& u = m.unet;
    u.levels = in.integer();
    u.features = in.integer();
    u.convs_per_level = in.integer();
    u.kernel = in.integer();
    u.in_channels = in.integer();
    u.classes = in.integer();
    // The ranges Reader::infer allows, so that the sizes below are bounded before allocating.
    const bool plausible = u.levels >= 1 && u.levels <= UNetConfig::max_levels && u.features >= 1 &&
                           u.features <= UNetConfig::max_features && u.widest_supported() && u.convs_per_level >= 1 &&
                           u.convs_per_level <= max_layer_index + 1 && UNetConfig::supported_kernel(u.kernel) &&
                           u.in_channels >= 1 && u.in_channels <= max_in_channels && u.classes >= 2 &&
                           u.classes <= max_classes && parameters_of_layout(u) <= max_parameters;
    ISS_INPUT(plausible, path, ": the HDF5 reader process sent a malformed model (a damaged file?)");
    m.layout = in.text();
    m.keras_version = in.text();
    m.description = in.text(int32_t(kMaxMetadataBytes));
    for (const LayerMap& layer : layout_of(u).weighted) {
        if (layer.batch_norm)
            for (const char* p : bn_params) m.tensors[layer.ours + "." + p] = in.floats(layer.out_c);
        else {
            const int64_t k = layer.kernel;
            m.tensors[layer.ours + ".weight"] = in.floats(layer.out_c * k * k * k * layer.in_c);
            m.tensors[layer.ours + ".bias"] = in.floats(layer.out_c);
        }
    }
    ISS_INPUT(in.done(), path, ": the HDF5 reader process sent a malformed model (a damaged file?)");
    return m;
}

// A Keras HDF5 file, or a `.keras` archive (a zip, whatever its name says): its config.json,
// metadata.json and model.weights.h5, read from memory.
KerasUNet read_keras_file(const std::string& path) {
    if (!looks_like_zip(path)) {
        const Hdf5Reader file(path);
        return Reader(file).read();
    }
    const ZipReader zip(path);
    const char* const weights = "model.weights.h5";
    ISS_INPUT(zip.find(weights) || !zip.find("model.weights.npz"), path,
              ": a .keras archive with its weights as model.weights.npz; save it again in Keras' default format "
              "(model.weights.h5)");
    ISS_INPUT(zip.find(weights) && zip.find("config.json"), path, ": a zip archive without ",
              zip.find(weights) ? "config.json" : weights, ": not a Keras 3 .keras model");
    ArchiveText text;
    text.config_where = path + ": config.json";
    const std::vector<uint8_t> config = zip.read("config.json", kMaxConfigBytes);
    text.layers = config_layers(std::string(config.begin(), config.end()), text.config_where);
    text.keras_version = keras3_release_unrecorded;
    if (zip.find("metadata.json")) {
        const std::vector<uint8_t> bytes = zip.read("metadata.json", kMaxMetadataBytes);
        const nlohmann::json metadata = parse_json(std::string(bytes.begin(), bytes.end()), path + ": metadata.json");
        ISS_INPUT(metadata.is_object(), path, ": metadata.json is not a JSON object");
        const auto version = metadata.find("keras_version");
        if (version != metadata.end()) {
            const std::string* release = version->get_ptr<const std::string*>();
            ISS_INPUT(release && !release->empty() && release->size() <= 64 &&
                          std::all_of(release->begin(), release->end(), [](char c) { return c > 0x20 && c < 0x7f; }),
                      path, ": metadata.json's keras_version is not a release name");
            text.keras_version = *release;
        }
        // Passed on unchecked (keras_model_spec checks it when it is used: not with --labels).
        const auto description = metadata.find(keras_record_key);
        if (description != metadata.end()) {
            text.description = description->dump();
            ISS_INPUT(text.description.size() <= kMaxMetadataBytes, path, ": metadata.json's ", keras_record_key,
                      " is larger than ", kMaxMetadataBytes >> 20, " MB");
        }
    }
    // The parameters a U-Net may have (infer's bound, 2^28 floats: 1 GB) and the file's structure.
    const Hdf5Reader file(cat(path, ": ", weights), zip.read(weights, (uint64_t(1) << 30) + (uint64_t(64) << 20)));
    return Reader(file, &text).read();
}

}  // namespace

void require_neuron_arithmetic(const UNetConfig& u, const std::string& source) {
    ISS_INPUT(std::fabs(double(u.bn_epsilon) - kNeuronEpsilon) <= 1e-9 && u.elu_alpha == 1.0f, source,
              ": batch norm epsilon ", u.bn_epsilon, " and ELU alpha ", u.elu_alpha,
              ": a Keras export is ext/neuron's U-Net, whose are 0.001 and 1");
}

bool is_keras_model_path(const std::string& path) {
    std::error_code ec;  // a model directory may be named so (import --out m.h5 made one)
    return (ends_with_ignoring_case(path, ".h5") || ends_with_ignoring_case(path, ".keras")) &&
           !std::filesystem::is_directory(path, ec);
}

KerasUNet read_keras_unet(const std::string& path, unsigned timeout_seconds) {
    require_regular_file(path);
    // libhdf5 in a process of its own (io/isolate.h): a crash or hang inside it on a damaged file
    // is a refused file, not a dead command. A published model reads in well under a second.
    return decode(run_isolated([&] { return encode(read_keras_file(path)); }, timeout_seconds, path), path);
}

void load_keras_tensors(const KerasUNet& model, ParamStore& params) {
    for (size_t p = 0; p < params.infos().size(); ++p) {
        const ParamInfo& info = params.infos()[p];
        const auto it = model.tensors.find(info.name);
        ISS_REQUIRE(it != model.tensors.end() && int64_t(it->second.size()) == info.count,
                    "Keras import: no tensor for parameter ", info.name);
        params.upload(Param{int(p)}, it->second);
    }
}

namespace {

// Our parameters by name, downloaded as a writer asks for them.
class ParamValues {
public:
    explicit ParamValues(ParamStore& params) : params_(params) {
        for (size_t p = 0; p < params.infos().size(); ++p) by_name_[params.infos()[p].name] = Param{int(p)};
    }
    std::vector<float> operator()(const std::string& name) const {
        const auto it = by_name_.find(name);
        ISS_REQUIRE(it != by_name_.end(), "Keras export: the model has no parameter ", name);
        return params_.download(it->second);
    }

private:
    ParamStore& params_;
    std::map<std::string, Param> by_name_;
};

// One weight of a Keras layer, in Keras' layout.
struct KerasWeight {
    std::string name;  // Keras 2's: "kernel:0", "gamma:0", ...
    std::vector<int64_t> shape;
    std::vector<float> values;
};

// A weighted layer's weights in Keras' order: a convolution's kernel and bias, a batch norm's
// gamma, beta, moving mean and moving variance.
std::vector<KerasWeight> keras_weights(const LayerMap& layer, const ParamValues& values) {
    if (layer.batch_norm) {
        std::vector<KerasWeight> weights;
        for (int w = 0; w < 4; ++w)
            weights.push_back({bn_weights[w], {layer.out_c}, values(layer.ours + "." + bn_params[w])});
        return weights;
    }
    const int64_t k = layer.kernel;
    return {{"kernel:0",
             {k, k, k, layer.in_c, layer.out_c},
             transpose_kernel(values(layer.ours + ".weight"), k, layer.in_c, layer.out_c, Direction::to_keras)},
            {"bias:0", {layer.out_c}, values(layer.ours + ".bias")}};
}

// config.json of a `.keras` archive: the Functional model layer by layer, as Keras 3 serialises
// it (from 3.0 on: a dtype as a name, no per-release extras), with ext/neuron's layer options
// (its pooling pads 'same', its 1x1x1 head 'valid'). Its softmax is Keras' Activation rather than
// ext/neuron's Lambda, which Keras would refuse to load without safe_mode=False.
nlohmann::json keras3_model_config(const UNetConfig& u, const KerasLayout& layout) {
    using nlohmann::json;
    const json any = nullptr;
    auto shape = [&](int64_t c) { return json::array({any, any, any, any, c}); };
    auto triple = [](int v) { return json::array({v, v, v}); };
    std::map<std::string, int64_t> channels;  // of the layers so far, which feed the next ones
    json layers = json::array();
    for (const KerasLayer& layer : layout.layers) {
        channels[layer.name] = layer.channels;
        json config = {{"name", layer.name}, {"trainable", true}, {"dtype", "float32"}};
        if (layer.kind == "InputLayer") {
            config = {
                {"batch_shape", shape(layer.channels)}, {"dtype", "float32"}, {"sparse", false}, {"name", layer.name}};
        } else if (layer.kind == "Conv3D") {
            const bool head = layer.name == likelihood;
            config.update({{"filters", layer.channels},
                           {"kernel_size", triple(head ? 1 : u.kernel)},
                           {"strides", triple(1)},
                           {"padding", head ? "valid" : "same"},
                           {"data_format", "channels_last"},
                           {"dilation_rate", triple(1)},
                           {"groups", 1},
                           {"activation", head ? "linear" : "elu"},
                           {"use_bias", true}});
        } else if (layer.kind == "BatchNormalization") {
            config.update({{"axis", -1},
                           {"momentum", json_float(u.bn_momentum)},
                           {"epsilon", kNeuronEpsilon},
                           {"center", true},
                           {"scale", true}});
        } else if (layer.kind == "MaxPooling3D") {
            config.update({{"pool_size", triple(2)},
                           {"padding", "same"},
                           {"strides", triple(2)},
                           {"data_format", "channels_last"}});
        } else if (layer.kind == "UpSampling3D") {
            config.update({{"size", triple(2)}, {"data_format", "channels_last"}});
        } else if (layer.kind == "Concatenate") {
            config.update({{"axis", -1}});
        } else {
            ISS_REQUIRE(layer.kind == "Activation", "Keras export: no configuration for a ", layer.kind);
            config.update({{"activation", "softmax"}});
        }
        json tensors = json::array(), input_shapes = json::array();
        for (const std::string& input : layer.inputs) {
            tensors.push_back({{"class_name", "__keras_tensor__"},
                               {"config",
                                {{"shape", shape(channels.at(input))},
                                 {"dtype", "float32"},
                                 {"keras_history", json::array({input, 0, 0})}}}});
            input_shapes.push_back(shape(channels.at(input)));
        }
        json entry = {{"module", "keras.layers"}, {"class_name", layer.kind}, {"config", config},
                      {"registered_name", any},   {"name", layer.name},       {"inbound_nodes", json::array()}};
        if (!layer.inputs.empty()) {
            // A merge takes its inputs as one list argument; the other layers one tensor.
            const bool merge = layer.inputs.size() > 1;
            // Keras 3.15 records no build for the layers whose building does nothing.
            if (layer.kind != "MaxPooling3D" && layer.kind != "Activation")
                entry["build_config"] = {{"input_shape", merge ? input_shapes : input_shapes[0]}};
            entry["inbound_nodes"].push_back(
                {{"args", json::array({merge ? tensors : tensors[0]})}, {"kwargs", json::object()}});
        }
        layers.push_back(entry);
    }
    const std::string& output = layout.layers.back().name;
    return {{"module", "keras.src.models.functional"},
            {"class_name", "Functional"},
            {"config",
             {{"name", "unet"},
              {"trainable", true},
              {"layers", layers},
              {"input_layers", json::array({"unet_input", 0, 0})},
              {"output_layers", json::array({output, 0, 0})}}},
            {"registered_name", "Functional"},
            {"build_config", {{"input_shape", any}}}};
}

}  // namespace

void write_keras_unet(const std::string& path, const ModelSpec& spec, ParamStore& params) {
    require_neuron_arithmetic(spec.unet, path);
    const KerasLayout layout = layout_of(spec.unet);
    const ParamValues values(params);
    Hdf5Writer file(path);
    std::vector<std::string> layer_names;
    for (const KerasLayer& layer : layout.layers) layer_names.push_back(layer.name);
    file.string_list("/", "layer_names", layer_names);
    file.string_attribute("/", "backend", "tensorflow");
    file.string_attribute("/", "keras_version", "2.2.4");
    // HDF5 keeps an attribute within 64 KB: a longer record goes in parts NAME0, NAME1, ..., as
    // Keras splits its own long lists (read back by name_list).
    const std::string record = model_description(spec, params).dump();
    ISS_INPUT(record.size() <= kMaxMetadataBytes, path, ": the model's description (model.json) is larger than ",
              kMaxMetadataBytes >> 20, " MB, which import would refuse");
    constexpr size_t part_bytes = 60000;
    if (record.size() <= part_bytes)
        file.string_attribute("/", keras_record_key, record);
    else
        for (size_t p = 0; p * part_bytes < record.size(); ++p)
            file.string_attribute("/", cat(keras_record_key, p), record.substr(p * part_bytes, part_bytes));
    for (const KerasLayer& layer : layout.layers) {
        const std::string group = "/" + layer.name;
        file.group(group);
        std::vector<std::string> names;
        if (layer.weights >= 0)
            for (const KerasWeight& w : keras_weights(layout.weighted[size_t(layer.weights)], values)) {
                names.push_back(layer.name + "/" + w.name);
                file.dataset_f32(group + "/" + names.back(), w.shape, w.values);
            }
        file.string_list(group, "weight_names", names);
    }
    file.close();
}

void write_keras_archive(const std::string& path, const ModelSpec& spec, ParamStore& params) {
    require_neuron_arithmetic(spec.unet, path);
    const KerasLayout layout = layout_of(spec.unet);
    const ParamValues values(params);
    // Keras 3's weights file: a group per layer, named after its class, whose `vars` group holds
    // the layer's name and its weights numbered in the layer's order; the model's own under /vars.
    Hdf5Writer weights(cat(path, ": model.weights.h5"));
    weights.group("/vars");
    weights.utf8_attribute("/vars", "name", "unet");
    std::vector<std::string> kinds;
    for (const KerasLayer& layer : layout.layers) kinds.push_back(layer.kind);
    const std::vector<std::string> groups = keras3_group_names(kinds);
    for (size_t i = 0; i < layout.layers.size(); ++i) {
        const KerasLayer& layer = layout.layers[i];
        const std::string vars = "/layers/" + groups[i] + "/vars";
        weights.group(vars);
        weights.utf8_attribute(vars, "name", layer.name);
        if (layer.weights < 0) continue;
        const std::vector<KerasWeight> list = keras_weights(layout.weighted[size_t(layer.weights)], values);
        for (size_t w = 0; w < list.size(); ++w) weights.dataset_f32(cat(vars, "/", w), list[w].shape, list[w].values);
    }
    // Keras reads no release from metadata.json; ours is there for import and predict.
    const nlohmann::json metadata = {{"keras_version", "3"}, {keras_record_key, model_description(spec, params)}};
    const std::string config = keras3_model_config(spec.unet, layout).dump(), about = metadata.dump();
    write_zip(path, {{"metadata.json", {about.begin(), about.end()}},
                     {"config.json", {config.begin(), config.end()}},
                     {"model.weights.h5", weights.image()}});
}

}  // namespace iss
