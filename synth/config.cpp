#include "synth/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "io/file_util.h"
#include "io/json.h"
#include "io/npy.h"
#include "io/volume.h"  // is_label_value
#include "kernels/common/error.h"
#include "kernels/synth/blur.h"
#include "synth/infant_priors.h"
#include "synth/labels.h"

namespace iss {

// Field list in one place: JSON names equal the C++ names.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(
    GeneratorConfig, preset, generation_labels, segmentation_labels, output_labels, fused_classes, lr_twins,
    use_generation_classes, prior_means, prior_stds, mix_prior_and_random, random_mean, random_std, output_shape,
    shape_multiple, pad_when_smaller, scaling_bounds, rotation_bounds, shearing_bounds, translation_bounds, nonlin_std,
    nonlin_shape_factor, integration_steps, rescale_velocity, flip_probability, blur_sigma, blur_range,
    background_reset_probability, randomise_resolution, max_isotropic, max_anisotropic, resolution_unit,
    anisotropic_probability, full_resolution_probability, randomise_thickness, bias_field_std, bias_shape_factor,
    clip_max, gamma_std)

namespace {

// A value given for a parameter has the type of the preset's (recursively, lists element by
// element), and numbers fit what they are converted to: the JSON library's conversion of an
// out-of-range number is undefined behaviour, so nothing reaches it unchecked.
void check_type(const nlohmann::json& value, const nlohmann::json& like, const std::string& source,
                const std::string& name) {
    auto wrong = [&](const char* expected) {
        throw InputError(
            cat(source, ": parameter '", name, "' must be ", expected, ", got ", clipped(value.dump(), 80)));
    };
    if (like.is_number_integer()) {
        if (!value.is_number_integer()) wrong("an integer");
        const bool fits = value.is_number_unsigned() ? value.get<uint64_t>() <= uint64_t(INT32_MAX)
                                                     : value.get<int64_t>() >= INT32_MIN && value.get<int64_t>() <= INT32_MAX;
        if (!fits) wrong("an integer of at most 2^31");
    } else if (like.is_number()) {
        if (!value.is_number()) wrong("a number");
        if (!(std::fabs(value.get<double>()) <= 1e30)) wrong("a finite number of at most 1e30");
    } else if (like.is_boolean()) {
        if (!value.is_boolean()) wrong("true or false");
    } else if (like.is_string()) {
        if (!value.is_string()) wrong("a string");
    } else if (like.is_array()) {
        if (!value.is_array()) wrong("a list");
        if (value.size() > 4096) wrong("a list of at most 4096 values");
        for (size_t i = 0; i < value.size(); ++i)
            check_type(value[i], like.empty() ? nlohmann::json() : like[0], source, cat(name, "[", i, "]"));
    }
}

}  // namespace

GeneratorConfig preset_config(const std::string& name) {
    GeneratorConfig config;
    config.preset = name;
    config.generation_labels = labels::generation_labels();
    config.segmentation_labels = labels::segmentation_labels();
    if (name == "infant-t1" || name == "infant-t2") {
        const infant_priors::Priors priors = name == "infant-t1" ? infant_priors::t1() : infant_priors::t2();
        config.prior_means = priors.means;
        config.prior_stds = priors.stds;
        config.fused_classes = labels::fused_classes();
        return config;
    }
    if (name == "synthseg") {
        // SynthSeg: every class from U(25, 225) / U(5, 25), no fused classes, random flips.
        config.mix_prior_and_random = false;
        config.use_generation_classes = 0;
        config.flip_probability = 0.5;
        return config;
    }
    throw InputError(cat("unknown preset '", name, "' (known: infant-t1, infant-t2, synthseg)"));
}

namespace {

// The parameters a configuration may give as a .npy file's path, as SynthSeg ships them.
constexpr const char* npy_parameters[] = {"prior_means", "prior_stds", "generation_labels", "segmentation_labels",
                                          "output_labels"};

// A .npy path as a configuration names it: a relative one is beside the configuration.
std::string beside_config(const std::string& named, const std::string& json_path) {
    const std::filesystem::path file = named;
    return file.is_relative() ? (std::filesystem::path(json_path).parent_path() / file).string() : named;
}

// The .npy file a parameter names (beside the configuration); its refusals name the parameter.
NpyArray config_npy(const nlohmann::json& value, const std::string& json_path, const std::string& key,
                    std::string& file) {
    ISS_INPUT(!value.get<std::string>().empty(), json_path, ": parameter '", key, "' names no file");
    file = beside_config(value.get<std::string>(), json_path);
    try {
        return read_npy(file);
    } catch (const InputError& e) {
        throw InputError(cat(json_path, ": parameter '", key, "': ", e.what()));
    }
}

// prior_labels.npy in the folder of `file`.
std::string list_in_folder_of(const std::string& file) {
    return (std::filesystem::path(file).parent_path() / prior_labels_file_name).string();
}

// A prior file's columns' labels (prior_labels.npy beside it, as `priors` writes it); empty where
// there is none.
std::vector<int32_t> prior_column_labels(const std::string& prior_file) {
    const std::string listed = prior_labels_beside(prior_file);
    std::error_code ec;
    if (!std::filesystem::exists(listed, ec)) return {};
    // Where the file is a link, a list beside it and another beside what it leads to must agree.
    const std::string beside_target = list_in_folder_of(resolve_links(prior_file));
    const std::vector<int32_t> labels = read_npy_labels(listed);
    if (beside_target != listed && std::filesystem::exists(beside_target, ec))
        ISS_INPUT(read_npy_labels(beside_target) == labels, prior_file, ": ", listed, " and ", beside_target,
                  " (beside the file it leads to) list its columns' labels differently");
    require_distinct_labels(labels, listed);
    return labels;
}

// prior_means / prior_stds as priors writes them or a user has them at hand: a (2, n) .npy file
// (a path relative to the configuration's folder), a nested [[means], [stds]] list, or the 2n
// values row by row; given back as the last.
nlohmann::json flat_priors(const nlohmann::json& value, const std::string& json_path, const std::string& key) {
    if (value.is_string()) {
        std::string file;
        const NpyArray a = config_npy(value, json_path, key, file);
        ISS_INPUT(a.shape.size() == 2 && a.shape[0] == 2, file, ": ", key,
                  " must be an array of shape (2, n_labels), as priors writes it");
        for (size_t i = 0; i < a.values.size(); ++i)
            ISS_INPUT(std::isfinite(a.values[i]), file, ": ", key, " holds ", a.values[i], " at row ",
                      i / size_t(a.shape[1]), ", column ", i % size_t(a.shape[1]), ": not a finite number");
        return a.values;
    }
    if (!value.is_array() || value.size() != 2 || !value[0].is_array() || !value[1].is_array()) return value;
    ISS_INPUT(value[0].size() == value[1].size(), json_path, ": parameter '", key, "' has rows of ", value[0].size(),
              " and ", value[1].size(), " values");
    nlohmann::json flat = nlohmann::json::array();
    for (const nlohmann::json& row : value)
        for (const nlohmann::json& v : row) flat.push_back(v);
    return flat;
}

// A label list given as a .npy file (SynthSeg's generation_labels.npy, segmentation_labels.npy):
// its values, whole numbers, as a list; any other value as it is.
nlohmann::json label_list(const nlohmann::json& value, const std::string& json_path, const std::string& key) {
    if (!value.is_string()) return value;
    std::string file;
    const NpyArray a = config_npy(value, json_path, key, file);
    ISS_INPUT(a.shape.size() == 1, file, ": ", key, " must be a list of labels (one dimension), has ", a.shape.size(),
              " dimensions");
    nlohmann::json labels = nlohmann::json::array();
    for (size_t i = 0; i < a.values.size(); ++i) {
        const double v = a.values[i];
        ISS_INPUT(is_label_value(v), file, ": ", key, " holds ", v, " at ", i, ": ", not_a_label);
        labels.push_back(int32_t(v));
    }
    return labels;
}

// SynthSeg's parameters that are not ours, and what takes their place here.
std::string synthseg_equivalent(const std::string& name) {
    static const std::pair<const char*, const char*> equivalents[] = {
        {"n_neutral_labels",
         "not needed here: left and right labels are known by their values (FreeSurfer's), in any "
         "order"},
        {"generation_classes",
         "here fused_classes lists the groups of labels that share a Gaussian, used with "
         "probability use_generation_classes"},
        {"flipping", "here flip_probability (0 for none)"},
        {"prior_distributions", "here uniform unless prior_means and prior_stds are given"},
        {"randomise_res", "here randomise_resolution"},
        {"max_res_iso", "here max_isotropic (mm)"},
        {"max_res_aniso", "here max_anisotropic (mm)"},
        {"nonlin_scale", "here nonlin_shape_factor"},
        {"bias_scale", "here bias_shape_factor"},
        {"output_div_by_n", "here shape_multiple (train sets it from --levels)"},
        {"prob_iso", "here 1 - anisotropic_probability"},
        {"prob_min", "here full_resolution_probability"},
    };
    for (const auto& [theirs, ours] : equivalents)
        if (name == theirs) return cat("; ", ours);
    return "";
}
}  // namespace

std::vector<NamedPath> config_inputs(const std::string& json_path) {
    if (json_path.empty()) return {};
    std::vector<NamedPath> files{{json_path, "--config"}};
    const nlohmann::json overrides = parse_json(read_text_file(json_path), json_path);
    for (const char* key : npy_parameters)
        if (overrides.is_object() && overrides.contains(key) && overrides[key].is_string()) {
            const std::string file = beside_config(overrides[key].get<std::string>(), json_path);
            files.push_back({file, cat("--config's ", key)});
            if (std::string(key).rfind("prior_", 0) != 0) continue;
            const std::string listed = prior_labels_beside(file);
            std::error_code ec;
            if (std::filesystem::exists(listed, ec))
                files.push_back({listed, cat("--config's ", key, " (its ", prior_labels_file_name, ")")});
        }
    return files;
}

std::string prior_labels_beside(const std::string& prior_file) {
    const std::string named = list_in_folder_of(prior_file);
    std::error_code ec;
    return std::filesystem::exists(named, ec) ? named : list_in_folder_of(resolve_links(prior_file));
}

GeneratorConfig load_config(const PresetChoice& preset, const std::string& json_path) {
    return parse_config(preset, read_text_file(json_path), json_path);
}

namespace {

// A prior file's columns (`values`: its two rows, `listed` labels a row) as the configuration's
// generation labels' (2, n): each label's own column, found by value. InputError naming the file
// where its list does not fit it or lacks a generation label. `published`: the file is one of the
// published infant priors, whose columns are the preset's generation labels (no list beside it).
std::vector<double> prior_columns_by_label(const std::vector<double>& values, const std::vector<int32_t>& listed,
                                           const std::vector<int32_t>& generation_labels, const std::string& file,
                                           const std::string& key, bool published) {
    const std::string list_file = prior_labels_beside(file);
    ISS_INPUT(values.size() == 2 * listed.size(), list_file, ": lists ", listed.size(), " labels, but ", file, " (",
              key, ") has ", values.size() / 2, " columns: not its labels");
    const size_t n = generation_labels.size(), m = listed.size();
    std::vector<double> by_label(2 * n);
    for (size_t g = 0; g < n; ++g) {
        // -9 or 70000 was said as a label the priors lack, which `priors` refuses to estimate.
        if (!is_label_value(generation_labels[g])) continue;  // validate_config names it
        const int at = labels::index_of(listed, generation_labels[g]);
        ISS_INPUT(at >= 0, file, ": ", key, " has no column for generation label ", generation_labels[g],
                  published ? cat(" (the published infant priors have the ", m,
                                  " generation labels of the infant presets): give its priors in a file of your own")
                            : cat(" (", list_file, " lists its columns' labels): estimate the priors with it in ",
                                  "--labels-list"));
        by_label[g] = values[size_t(at)];
        by_label[n + g] = values[m + size_t(at)];
    }
    return by_label;
}

// Whether `values` are one of the published infant priors' arrays (t1/t2_prior_means.npy,
// _stds.npy), or a copy in float32 or rounded to 3 decimals (each value within 0.1%): they list no
// labels, and their columns are the infant presets' generation labels, so a configuration listing
// those labels in another order takes each label's own column.
bool are_published_priors(const std::vector<double>& values) {
    auto near = [](const std::vector<double>& a, const std::vector<double>& b) {
        if (a.size() != b.size()) return false;
        for (size_t i = 0; i < a.size(); ++i)
            if (!(std::fabs(a[i] - b[i]) <= 1e-3 * std::max(1.0, std::fabs(b[i])))) return false;
        return true;
    };
    for (const infant_priors::Priors& p : {infant_priors::t1(), infant_priors::t2()})
        if (near(values, p.means) || near(values, p.stds)) return true;
    return false;
}

// A file that lists its own generation labels, given what it left to its preset (`base`): the
// preset's priors are columns of the preset's list, so each label keeps its own, found by value
// (in the preset's order they would be other labels'); the preset's segmentation labels and
// fused classes must be among the file's labels, else the file must give its own.
void fit_preset_to_own_labels(GeneratorConfig& config, const GeneratorConfig& base, const nlohmann::json& overrides,
                              const std::string& json_path) {
    const size_t n = config.generation_labels.size(), preset_n = base.generation_labels.size();
    for (const auto& [key, prior, preset_prior] : {std::tuple{"prior_means", &config.prior_means, &base.prior_means},
                                                   {"prior_stds", &config.prior_stds, &base.prior_stds}}) {
        if (overrides.contains(key) || preset_prior->empty()) continue;
        std::vector<double> by_label(2 * n);
        for (size_t k = 0; k < n; ++k) {
            const int32_t label = config.generation_labels[k];
            if (!is_label_value(label)) continue;  // validate_config names it
            const int at = labels::index_of(base.generation_labels, label);
            ISS_INPUT(at >= 0, json_path, ": generation label ", label, " has no ", key, " in preset '", base.preset,
                      "', whose priors are of its own labels: give prior_means and prior_stds (priors estimates ",
                      "them; [] for random contrasts), or start from preset synthseg");
            by_label[k] = (*preset_prior)[size_t(at)];
            by_label[n + k] = (*preset_prior)[preset_n + size_t(at)];
        }
        *prior = by_label;
    }
    auto require_listed = [&](const std::vector<int32_t>& list, const char* what, const char* instead) {
        for (const int32_t label : list)
            ISS_INPUT(labels::index_of(config.generation_labels, label) >= 0, json_path, ": ", what, " ", label,
                      " of preset ", config.preset, " is not one of this file's generation_labels: give ", instead);
    };
    if (!overrides.contains("segmentation_labels") && !overrides.contains("output_labels"))
        require_listed(config.segmentation_labels, "segmentation label", "segmentation_labels, or output_labels");
    if (!overrides.contains("fused_classes"))
        for (const auto& group : config.fused_classes)
            require_listed(group, "fused class label", "fused_classes ([] for none)");
}

}  // namespace

namespace {

// Priors of all zeros for a structure (`priors` gives them to a label found in no subject, with a
// warning then): a sample drawn from the priors paints it black wherever a map holds it, which a
// config using those files did without a word. The background (label 0) is black by design.
void warn_of_empty_priors(const GeneratorConfig& c, const std::string& source) {
    const size_t n = c.generation_labels.size();
    if (c.prior_means.size() != 2 * n || c.prior_stds.size() != 2 * n) return;
    std::vector<int32_t> empty, below_zero;
    for (size_t g = 0; g < n; ++g) {
        if (c.generation_labels[g] == 0) continue;  // the background may be black
        if (c.prior_means[g] == 0 && c.prior_means[n + g] == 0 && c.prior_stds[g] == 0 && c.prior_stds[n + g] == 0)
            empty.push_back(c.generation_labels[g]);
        else if (c.prior_means[g] < 0 || c.prior_stds[g] < 0)
            below_zero.push_back(c.generation_labels[g]);
    }
    auto them = [](const std::vector<int32_t>& labels) { return labels.size() > 1 ? "them" : "it"; };
    auto labels_text = [](const std::vector<int32_t>& labels) {
        return cat(labels.size(), " label", labels.size() > 1 ? "s" : "", " (", first_values(labels, 8), ")");
    };
    if (!empty.empty())
        warning(cat(source, ": the priors of ", labels_text(empty),
                    " are all 0, as priors writes a label found in no subject: a sample drawn from the priors paints ",
                    them(empty), " black wherever a map holds ", them(empty), "; estimate ", them(empty),
                    " from subjects that hold ", them(empty)));
    // Drawn means and spreads below 0 are taken as 0 (SynthSeg's positive_only draws).
    if (!below_zero.empty())
        warning(
            cat(source, ": the priors of ", labels_text(below_zero),
                " centre their mean or their spread below 0, where a draw is taken as 0: most samples drawn from the ",
                "priors paint ", them(below_zero), " black or flat (priors are intensities of [0, 255], as the ",
                "priors command writes them)"));
}

}  // namespace

GeneratorConfig parse_config(const PresetChoice& preset, const std::string& json_text, const std::string& source) {
    const std::string& json_path = source;  // a relative prior .npy path is taken beside it
    nlohmann::json overrides = parse_json(json_text, json_path);
    ISS_INPUT(overrides.is_object(), json_path, ": expected a JSON object of generator parameters");
    ISS_INPUT(!overrides.contains("preset") || overrides["preset"].is_string(), json_path,
              ": parameter 'preset' must be a preset's name (a string)");
    const std::string named = overrides.value("preset", std::string());
    ISS_INPUT(named.empty() || preset.asked.empty() || named == preset.asked, json_path, ": its \"preset\" is ", named,
              " but --preset is ", preset.asked, ": give the preset once");
    GeneratorConfig config = preset_config(preset.base(named));
    const GeneratorConfig base = config;
    nlohmann::json merged = config;
    // The infant preset has every list filled (output_labels, empty there, is a label list too):
    // the template for the types of every value.
    nlohmann::json like = preset_config("infant-t1");  // not default_preset: a choice of its own
    like["output_labels"] = like["generation_labels"];
    like["lr_twins"] = nlohmann::json::array({nlohmann::json::array({2, 41})});
    // Parameters of a fixed number of values (the others are lists of any length).
    const std::set<std::string> fixed_length = {"random_mean", "random_std", "output_shape"};
    // Prior files by path, with the labels of their columns where `priors` listed them.
    std::map<std::string, std::pair<std::string, std::vector<int32_t>>> prior_files;
    for (const char* key : {"prior_means", "prior_stds"}) {
        if (!overrides.contains(key)) continue;
        if (overrides[key].is_string() && !overrides[key].get<std::string>().empty()) {
            const std::string file = beside_config(overrides[key].get<std::string>(), json_path);
            try {
                prior_files[key] = {file, prior_column_labels(file)};
            } catch (const InputError& e) {
                throw InputError(cat(json_path, ": parameter '", key, "': ", e.what()));
            }
        }
        overrides[key] = flat_priors(overrides[key], json_path, key);
    }
    for (const char* key : {"generation_labels", "segmentation_labels", "output_labels"})
        if (overrides.contains(key)) overrides[key] = label_list(overrides[key], json_path, key);
    for (auto it = overrides.begin(); it != overrides.end(); ++it) {
        ISS_INPUT(merged.contains(it.key()), json_path, ": unknown parameter '", it.key(),
                  "' (see 'infant-synthseg synth --print-config' for the names)", synthseg_equivalent(it.key()));
        check_type(it.value(), like[it.key()], json_path, it.key());
        ISS_INPUT(!fixed_length.count(it.key()) || it.value().size() == like[it.key()].size(), json_path,
                  ": parameter '", it.key(), "' must be a list of ", like[it.key()].size(), " values, got ",
                  clipped(it.value().dump(), 80));
        merged[it.key()] = it.value();
    }
    try {
        config = merged.get<GeneratorConfig>();
    } catch (const nlohmann::json::exception& e) {
        throw InputError(cat(json_path, ": a parameter has the wrong type: ", e.what()));
    }
    // SynthSeg's way: the per-label targets alone, the network's outputs being the labels they
    // hold, in Infant-SynthSeg's channel order (FreeSurfer's classes), or ascending when a label
    // is in none of them.
    if (!config.output_labels.empty() && !overrides.contains("segmentation_labels")) {
        const std::set<int32_t> distinct(config.output_labels.begin(), config.output_labels.end());
        config.segmentation_labels.assign(distinct.begin(), distinct.end());
        try {
            config.segmentation_labels = labels::freesurfer_sorted(config.segmentation_labels);
        } catch (const InputError&) {
        }
    }
    if (overrides.contains("generation_labels")) fit_preset_to_own_labels(config, base, overrides, json_path);
    // One priors run's pair, or neither listed: means taken by label beside spreads taken column
    // by column were two orders at once, without a word.
    if (prior_files.size() == 2 &&
        prior_files["prior_means"].second.empty() != prior_files["prior_stds"].second.empty()) {
        const bool means_listed = !prior_files["prior_means"].second.empty();
        const std::string& listed = prior_files[means_listed ? "prior_means" : "prior_stds"].first;
        const std::string& unlisted = prior_files[means_listed ? "prior_stds" : "prior_means"].first;
        throw InputError(cat(json_path, ": ", listed, " has its columns' labels (", prior_labels_beside(listed),
                             ") but ", unlisted, " has none beside it: give both files of one priors run"));
    }
    for (const auto& [key, file_and_labels] : prior_files) {
        const auto& [file, listed] = file_and_labels;
        std::vector<double>& prior = key == "prior_means" ? config.prior_means : config.prior_stds;
        const bool published = listed.empty() && are_published_priors(prior);
        if (listed.empty() && !published) {  // neither priors' own nor published: column by column
            // The trap: the presets' labels in another order, over a file in the presets' order.
            const std::vector<int32_t> presets = labels::generation_labels();
            if (config.generation_labels != presets &&
                std::is_permutation(config.generation_labels.begin(), config.generation_labels.end(), presets.begin(),
                                    presets.end()))
                warning(cat(json_path, ": ", file, " lists no labels (no ", prior_labels_file_name,
                            " beside it): its columns are taken in generation_labels' order, which reorders the ",
                            "infant presets' labels; a file in the presets' order needs its ", prior_labels_file_name));
            continue;
        }
        prior = prior_columns_by_label(prior, published ? labels::generation_labels() : listed,
                                       config.generation_labels, file, key, published);
    }
    validate_config(config, json_path);
    warn_of_empty_priors(config, json_path);
    return config;
}

namespace {

// A probability's bounds, named.
void require_probability(double p, const char* name, const std::string& source) {
    ISS_INPUT(p >= 0 && p <= 1, source, ": ", name, " must be a probability in [0, 1], is ", p);
}

// The label lists: sizes, values, order, each generation label learned as a segmentation label
// and each segmentation label learned from one, twins for a flip, fused classes.
void validate_labels(const GeneratorConfig& c, const std::string& source) {
    const size_t n = c.generation_labels.size();
    ISS_INPUT(n >= 2 && n <= 255, source, ": generation_labels must hold 2 to 255 labels, has ", n);
    ISS_INPUT(c.segmentation_labels.size() >= 2 && c.segmentation_labels.size() <= 255, source,
              ": segmentation_labels must hold 2 to 255 labels (the background and a structure at least), has ",
              c.segmentation_labels.size());
    for (const auto& [list, name] : {std::pair{&c.generation_labels, "generation_labels"},
                                     {&c.output_labels, "output_labels"},
                                     {&c.segmentation_labels, "segmentation_labels"}})
        for (const int32_t label : *list)
            ISS_INPUT(is_label_value(label), source, ": ", name, ": ", label, " is ", not_a_label);
    ISS_INPUT(std::set<int32_t>(c.generation_labels.begin(), c.generation_labels.end()).size() == n, source,
              ": generation_labels has duplicates");
    // As SynthSeg orders them: the background reset and the padding find the background there.
    ISS_INPUT(c.generation_labels.front() == 0, source, ": generation_labels must start with 0, the background, ",
              "starts with ", c.generation_labels.front());
    ISS_INPUT(std::set<int32_t>(c.segmentation_labels.begin(), c.segmentation_labels.end()).size() ==
                  c.segmentation_labels.size(),
              source, ": segmentation_labels has duplicates (one network output per label)",
              c.segmentation_labels.size() == n
                  ? "; a target for each generation label (SynthSeg's segmentation_labels.npy) goes in output_labels"
                  : "");
    ISS_INPUT(c.output_labels.empty() || c.output_labels.size() == n, source, ": output_labels must hold one label ",
              "for each of the ", n, " generation labels, has ", c.output_labels.size());
    const std::vector<int32_t> targets = target_labels(c);
    ISS_INPUT(targets.front() == 0, source, ": generation label 0, the background, is learned as ", targets.front(),
              "; it must be learned as background (0)");
    for (size_t g = 0; g < n; ++g)
        ISS_INPUT(labels::index_of(c.segmentation_labels, targets[g]) >= 0, source, ": generation label ",
                  c.generation_labels[g], " is learned as ", targets[g] == 0 ? "background (label 0)" : cat(targets[g]),
                  ", which is not one of segmentation_labels",
                  targets[g] == 0 ? " (list 0 there, or the label itself)" : "");
    // An output no generation label is learned as would never be trained.
    for (int32_t label : c.segmentation_labels)
        ISS_INPUT(labels::index_of(targets, label) >= 0, source, ": segmentation label ", label,
                  c.output_labels.empty() ? " is not a generation label" : " is not in output_labels");
    // Declared sides: pairs of labels, each label in one pair.
    std::set<int32_t> declared;
    for (const std::vector<int32_t>& pair : c.lr_twins) {
        ISS_INPUT(pair.size() == 2, source, ": lr_twins holds pairs [left, right] ([label, label] for a structure ",
                  "on neither side), not a list of ", pair.size());
        for (const int32_t label : std::set<int32_t>(pair.begin(), pair.end())) {  // [label, label] once
            ISS_INPUT(is_label_value(label), source, ": lr_twins: ", label, " is ", not_a_label);
            ISS_INPUT(declared.insert(label).second, source, ": lr_twins names label ", label, " twice");
        }
    }
    std::vector<int32_t> named = c.generation_labels;  // every label a flip or a mirror average pairs
    named.insert(named.end(), c.segmentation_labels.begin(), c.segmentation_labels.end());
    for (const int32_t label : declared)  // a typo in an atlas's number would declare nothing
        ISS_INPUT(labels::index_of(named, label) >= 0, source, ": lr_twins names label ", label,
                  ", which is neither a generation nor a segmentation label");
    const int32_t unreversed = labels::first_unreversed(named, c.lr_twins);
    ISS_INPUT(unreversed < 0, source, ": lr_twins: ", labels::unreversed_text(unreversed, c.lr_twins));
    // A flip swaps each one-sided label with its twin; one without a twin to swap with would
    // stay on the wrong side of the flipped image, and one of no known side (an atlas's own
    // numbers) was kept as it is, a left structure then drawn on the right.
    if (c.flip_probability > 0) {
        // Every label of unknown side at once: an atlas's own numbers needed a run per label.
        std::vector<int32_t> unknown;
        for (const int32_t label : c.generation_labels)
            if (!labels::side_known(label, c.lr_twins)) unknown.push_back(label);
        ISS_INPUT(unknown.empty(), source, ": generation label", unknown.size() > 1 ? "s " : " ",
                  first_values(unknown, 20), unknown.size() > 1 ? " are" : " is",
                  " in none of FreeSurfer's classes (unsided, left, right), so a flip (flip_probability ",
                  c.flip_probability, ") cannot know ", unknown.size() > 1 ? "their sides" : "its side", ": declare ",
                  unknown.size() > 1 ? "them" : "it",
                  " in lr_twins ([left, right] pairs, [label, label] for one on neither side)");
        // FreeSurfer's sides are an assumption an atlas's own numbers break: the way out named.
        const std::string numbered = c.lr_twins.empty() ? " as FreeSurfer numbers labels" : "";
        for (const int32_t label : c.generation_labels) {
            if (!labels::lateral(label, c.lr_twins)) continue;
            const int32_t twin = labels::lr_twin(label, c.lr_twins);
            ISS_INPUT(twin != label, source, ": generation label ", label, " is one-sided", numbered,
                      " but has no known twin, so a flip (flip_probability ", c.flip_probability,
                      ") would leave it on the wrong side: declare its pair in lr_twins");
            ISS_INPUT(labels::index_of(c.generation_labels, twin) >= 0, source, ": generation label ", label,
                      " has its twin ", twin, " missing from generation_labels",
                      c.lr_twins.empty() ? " (its twin as FreeSurfer numbers labels)" : "",
                      ", so a flip (flip_probability ", c.flip_probability,
                      ") would leave it on the wrong side: declare its own pair in lr_twins");
        }
    }
    std::set<int32_t> fused;
    for (const auto& group : c.fused_classes)
        for (int32_t label : group) {
            ISS_INPUT(labels::index_of(c.generation_labels, label) >= 0, source, ": fused class label ", label,
                      " is not a generation label");
            ISS_INPUT(fused.insert(label).second, source, ": label ", label,
                      " is in two fused classes (which of their intensities would it share?)");
        }
}

// The priors: both or neither, of shape (2, n), finite, their second rows standard deviations.
void validate_priors(const GeneratorConfig& c, const std::string& source) {
    const size_t n = c.generation_labels.size();
    ISS_INPUT(c.prior_means.empty() == c.prior_stds.empty(), source,
              ": prior_means and prior_stds go together (both [] for random contrasts); ",
              c.prior_means.empty() ? "prior_means" : "prior_stds", " is empty");
    const bool uses_priors = !c.prior_means.empty() || !c.prior_stds.empty();
    if (uses_priors) {
        ISS_INPUT(c.prior_means.size() == 2 * n, source, ": prior_means must have shape (2, ", n,
                  ") (a .npy file, [[means], [their stds]], or the ", 2 * n, " values row by row), has ",
                  c.prior_means.size(), " values");
        ISS_INPUT(c.prior_stds.size() == 2 * n, source, ": prior_stds must have shape (2, ", n,
                  ") (a .npy file, [[means], [their stds]], or the ", 2 * n, " values row by row), has ",
                  c.prior_stds.size(), " values");
        // Each file's second row is the spread of the first across subjects: a standard deviation.
        for (const auto& [prior, name] : {std::pair{&c.prior_means, "prior_means"}, {&c.prior_stds, "prior_stds"}})
            for (size_t k = 0; k < 2 * n; ++k)
                ISS_INPUT(std::isfinite((*prior)[k]) && (k < n || (*prior)[k] >= 0), source, ": ", name, " holds ",
                          (*prior)[k], " at row ", k / n, ", column ", k % n,
                          !std::isfinite((*prior)[k]) ? ": not a finite number" : ": a standard deviation is >= 0");
    }
}

// The probabilities, the random contrasts' bounds, the crop, the spatial deformation and the
// blur's parameters.
void validate_draws(const GeneratorConfig& c, const std::string& source) {
    require_probability(c.use_generation_classes, "use_generation_classes", source);
    require_probability(c.flip_probability, "flip_probability", source);
    require_probability(c.background_reset_probability, "background_reset_probability", source);
    for (const auto& [bounds, name] : {std::pair{&c.random_mean, "random_mean"}, {&c.random_std, "random_std"}})
        ISS_INPUT((*bounds)[0] <= (*bounds)[1], source, ": ", name, " must be ordered [low, high], is [", (*bounds)[0],
                  ", ", (*bounds)[1], "]");
    ISS_INPUT(c.random_std[0] >= 0, source, ": random_std's low bound must be >= 0, is ", c.random_std[0]);
    for (int64_t s : c.output_shape)
        ISS_INPUT(s >= 1 && s <= max_crop_side, source, ": output_shape entries must be 1 to ", max_crop_side,
                  ", one is ", s);
    ISS_INPUT(c.shape_multiple >= 1, source, ": shape_multiple must be >= 1, is ", c.shape_multiple);
    ISS_INPUT(c.scaling_bounds >= 0 && c.scaling_bounds < 1, source, ": scaling_bounds must be in [0, 1), is ",
              c.scaling_bounds);
    // Upper bounds far past any use, where a typo (1e30, 40 for 4.0) would otherwise give samples
    // whose coordinates overflow to one label everywhere, without a word.
    const struct {
        double value, high;
        const char *name, *why;
    } spatial[] = {{c.rotation_bounds, 180, "rotation_bounds", "degrees: 180 allows every rotation"},
                   {c.shearing_bounds, 1, "shearing_bounds", "1 tilts an axis by 45 degrees"},
                   {c.translation_bounds, 1000, "translation_bounds", "voxels"},
                   {c.nonlin_std, 100, "nonlin_std", "voxels"}};
    for (const auto& b : spatial)
        ISS_INPUT(b.value >= 0 && b.value <= b.high, source, ": ", b.name, " must be in [0, ", b.high, "] (", b.why,
                  "), is ", b.value);
    for (const auto& [factor, name] :
         {std::pair{c.nonlin_shape_factor, "nonlin_shape_factor"}, {c.bias_shape_factor, "bias_shape_factor"}})
        ISS_INPUT(factor > 0 && factor <= 1, source, ": ", name, " must be in (0, 1], is ", factor);
    ISS_INPUT(c.integration_steps >= 0 && c.integration_steps <= 20, source,
              ": integration_steps must be in 0..20, is ", c.integration_steps);
    ISS_INPUT(c.blur_sigma >= 0, source, ": blur_sigma must be >= 0, is ", c.blur_sigma);
    ISS_INPUT(c.blur_range >= 1, source, ": blur_range must be >= 1, is ", c.blur_range);
    require_probability(c.anisotropic_probability, "anisotropic_probability", source);
    require_probability(c.full_resolution_probability, "full_resolution_probability", source);
}

// The resolution's unit and bounds, and the blur window they ask for with blur_sigma; the bias
// field and gamma.
void validate_resolution_and_contrast(const GeneratorConfig& c, const std::string& source) {
    ISS_INPUT(c.resolution_unit == "mm" || c.resolution_unit == "voxel", source,
              ": resolution_unit must be \"mm\" or \"voxel\", is \"", clipped(c.resolution_unit, 40), "\"");
    // In voxels a bound under 1 could never be drawn; in mm one under a map's voxel keeps it whole.
    const bool in_voxels = c.resolution_unit == "voxel";
    for (const double bound : {c.max_isotropic, c.max_anisotropic})
        ISS_INPUT(bound >= (in_voxels ? 1 : 0) && bound > 0 && bound <= 64, source,
                  ": max_isotropic and max_anisotropic must be in ", in_voxels ? "[1, 64] voxels" : "(0, 64] mm",
                  ", are ", c.max_isotropic, " and ", c.max_anisotropic);
    // The blur's window, 2.5 sigma times the range each side at the largest sigma a sample can
    // draw, must fit the kernels' taps: at the base sigma, and at a random resolution in voxels
    // (one in mm is drawn up to what the taps hold: resolution_in_voxels).
    // In mm the blur must reach past the full resolution, or the option would draw nothing.
    ISS_INPUT(c.resolution_unit == "voxel" || largest_random_bound(c) == 0 || largest_blurred_resolution(c) > 1, source,
              ": blur_range ", c.blur_range, " leaves the random resolution no room: its blur's window holds ",
              largest_blurred_resolution(c), " voxels of resolution, the full resolution's 1");
    const double resolution = c.resolution_unit == "voxel" ? largest_random_resolution(c, 1) : 1;
    const double window = blur_window(std::max(c.blur_sigma, resolution > 1 ? 0.75 * resolution : 0.0), c.blur_range);
    ISS_INPUT(window <= 2 * max_blur_half_width + 1, source, ": blur_sigma ", c.blur_sigma, " and blur_range ",
              c.blur_range,
              resolution > 1
                  ? cat(" with max_isotropic ", c.max_isotropic, " / max_anisotropic ", c.max_anisotropic, " voxels")
                  : std::string(),
              " ask for a blur of up to ", std::floor(window / 2), " voxels each side; at most ", max_blur_half_width);
    ISS_INPUT(c.clip_max > 0, source, ": clip_max must be > 0, is ", c.clip_max);
    // gamma = exp(N(0, gamma_std)) and the bias field exp(N(0, s)) with s up to bias_field_std, as
    // floats, positive and finite: a draw is at most 5.8 standard deviations (Box-Muller on 24-bit
    // uniforms) and exp overflows above 88 (a bias of infinity times a background of 0 is NaN),
    // so 10 keeps a margin. 1e6 gave images of a few hundred values without a word.
    for (const auto& [std_dev, name, of] : {std::tuple{c.gamma_std, "gamma_std", "gamma is exp(N(0, gamma_std))"},
                                            {c.bias_field_std, "bias_field_std",
                                             "the bias field is exp(N(0, s)), s "
                                             "up to bias_field_std"}})
        ISS_INPUT(std_dev >= 0 && std_dev <= 10, source, ": ", name, " must be in [0, 10] (", of,
                  "; larger ones give exponents of 0 or infinity), got ", std_dev);
}

}  // namespace

void validate_config(const GeneratorConfig& c, const std::string& source) {
    validate_labels(c, source);
    validate_priors(c, source);
    validate_draws(c, source);
    validate_resolution_and_contrast(c, source);
}

std::vector<int32_t> target_labels(const GeneratorConfig& c) {
    if (!c.output_labels.empty()) return c.output_labels;
    std::vector<int32_t> targets;
    for (const int32_t label : c.generation_labels)
        targets.push_back(labels::index_of(c.segmentation_labels, label) >= 0 ? label : 0);
    return targets;
}

double blur_window(double sigma, double blur_range) {
    return std::ceil(2.5 * blur_range * sigma - 1e-9);
}

double largest_random_bound(const GeneratorConfig& c) {
    if (!c.randomise_resolution || c.full_resolution_probability >= 1) return 0;
    return std::max(c.anisotropic_probability < 1 ? c.max_isotropic : 0.0,
                    c.anisotropic_probability > 0 ? c.max_anisotropic : 0.0);
}

double largest_blurred_resolution(const GeneratorConfig& c) {
    return double(2 * max_blur_half_width + 1) / (2.5 * c.blur_range * 0.75);
}

bool beyond_blur_reach(const GeneratorConfig& c, double resolution) {
    return blur_window(0.75 * resolution, c.blur_range) > 2 * max_blur_half_width + 1;
}

double resolution_in_voxels(const GeneratorConfig& c, double bound, double voxel_mm) {
    if (c.resolution_unit == "voxel") return std::max(1.0, bound);
    const double resolution = bound / voxel_mm;
    return std::max(1.0, beyond_blur_reach(c, resolution) ? largest_blurred_resolution(c) : resolution);
}

double largest_random_resolution(const GeneratorConfig& c, double voxel_mm) {
    const double bound = largest_random_bound(c);
    return bound > 0 ? resolution_in_voxels(c, bound, voxel_mm) : 1.0;
}

std::string config_to_json(const GeneratorConfig& config) { return nlohmann::json(config).dump(2); }

}  // namespace iss
