// Label lists and the checked readers of segmentations and posteriors.
#include "post/prediction.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "io/csv.h"
#include "io/file_util.h"
#include "io/npy.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "nn/checkpoint.h"
#include "synth/labels.h"

namespace iss {
namespace {

std::string trim(const std::string& s) {
    const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
    return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

}  // namespace

int LabelList::index_of(int32_t label) const {
    return labels::index_of(labels, label);
}

std::vector<int32_t> parse_label_list(const std::string& text, const std::string& option) {
    std::vector<int32_t> out;
    std::set<int32_t> seen;
    size_t begin = 0;
    while (true) {
        const size_t comma = text.find(',', begin);
        const std::string field =
            trim(text.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin));
        char* end = nullptr;
        errno = 0;
        const long long v = std::strtoll(field.c_str(), &end, 10);
        ISS_INPUT(!field.empty() && *end == '\0' && errno == 0 && v >= INT32_MIN && v <= INT32_MAX, option,
                  ": expected comma-separated integer labels, got '", field, "' in '", text, "'");
        ISS_INPUT(seen.insert(int32_t(v)).second, option, ": label ", v, " is listed twice");
        out.push_back(int32_t(v));
        if (comma == std::string::npos) break;
        begin = comma + 1;
    }
    return out;
}

std::string label_list_text(const std::vector<int32_t>& labels) {
    std::string text;
    for (const int32_t label : labels) text += (text.empty() ? "" : ",") + std::to_string(label);
    return text;
}

namespace {

// A model trained or imported here names its labels, in channel order, in its model.json:
// read with every check predict makes of it.
std::vector<int32_t> model_labels(const std::string& json_path) {
    return parse_model_description(read_text_file(json_path), json_path).labels;
}

// The model.json a --labels value names (a model's folder or the file itself), else "".
std::string model_json_of(const std::string& text) {
    std::error_code ec;
    if (std::filesystem::is_directory(text, ec)) return (std::filesystem::path(text) / "model.json").string();
    return ends_with(text, ".json") ? text : std::string();
}

}  // namespace

std::vector<int32_t> named_label_list(const std::string& text, const std::string& option) {
    if (text == "infant") return labels::segmentation_labels();
    if (text == "synthseg") return labels::synthseg_segmentation_labels();
    const std::string model_json = model_json_of(text);
    if (!model_json.empty()) return model_labels(model_json);
    ISS_INPUT(!is_volume_name(text), option, ": ", text,
              " is a volume, not a label list: give comma-separated labels (0,2,3), infant, synthseg, a model's folder "
              "or a .npy file");
    if (!ends_with(text, ".npy")) return parse_label_list(text, option);
    // SynthSeg's label files repeat values (one per generation label): the distinct ones, said
    // (a channel list with a value twice by mistake loses a channel).
    const std::vector<int32_t> all = read_npy_labels(text);
    const std::vector<int32_t> values = labels::distinct(all);
    if (values.size() < all.size())
        warning(cat(text, ": ", all.size(), " values, ", values.size(),
                    " distinct (SynthSeg's label files repeat them): the labels are the distinct ones"));
    return values;
}

NamedPath label_file_of(const std::string& labels_text, const std::string& option) {
    if (labels_text == "infant" || labels_text == "synthseg") return {"", option};  // names, not files
    const std::string model_json = model_json_of(labels_text);
    if (!model_json.empty()) return {model_json, option};
    return {ends_with(labels_text, ".npy") ? labels_text : std::string(), option};
}

LabelList label_list_or_default(const std::string* text, const std::string& option) {
    if (!text) return {labels::segmentation_labels(), "the infant segmentation list"};
    // A label file lists a model's labels in any order; its posteriors are in channel order.
    if (ends_with(*text, ".npy")) {
        try {
            return {labels::freesurfer_sorted(named_label_list(*text, option)), *text};
        } catch (const InputError& e) {  // the sort's message names a label, not the file
            if (std::string(e.what()).find(*text) != std::string::npos) throw;
            throw InputError(cat(*text, ": ", e.what()));
        }
    }
    const std::string model_json = label_file_of(*text).path;  // "" or a model.json (not .npy: above)
    const std::string source = *text == "infant" || *text == "synthseg" ? *text + " labels"
                               : model_json.empty()                     ? option
                                                                        : model_json;
    return {named_label_list(*text, option), source};
}

LabelMap read_segmentation(const std::string& path, VolumeHeader* header) {
    // Header first: a posteriors file given by mistake should be named as 4-D, not as holding a
    // non-integer label.
    const VolumeHeader h = read_volume_header(path);
    ISS_INPUT(h.frames() == 1, path, ": a 4-D volume with ", h.frames(),
              " frames where a 3-D segmentation is expected");
    if (header) *header = h;
    return read_labels(h);
}

Posteriors read_posteriors(const std::string& path, const std::optional<LabelList>& given, VolumeHeader* header,
                           const std::string& option) {
    const VolumeHeader h = read_volume_header(path);
    ISS_INPUT(h.frame_labels_problem.empty(), h.frame_labels_problem);
    LabelList list;
    if (!h.frame_labels.empty()) {
        // A record of ours, checked against the frame count when read.
        list = {h.frame_labels, cat("the labels ", path, " records")};
        ISS_INPUT(!given || given->labels == list.labels, path, ": its frames are labels ",
                  clipped(label_list_text(list.labels), 300), " (recorded when it was written) but ",
                  given ? given->source : std::string(), " says ",
                  given ? clipped(label_list_text(given->labels), 300) : std::string(),
                  "; leave the option out or give the recorded labels");
    } else {
        list = given ? *given : label_list_or_default(nullptr);
        ISS_INPUT(h.frames() == int64_t(list.labels.size()), path, ": ", h.frames(), " posterior frame",
                  h.frames() == 1 ? "" : "s", " but ", list.source, " has ", list.labels.size(),
                  " labels (one frame per label expected): give ", option,
                  " the labels of the model that wrote it, in its output order (its folder, or a list)");
    }
    if (header) *header = h;
    Image post = read_image(h);
    // Probabilities: a NaN would win or lose every comparison, and a value past 1 (percentages,
    // a scaled integer type) would win every maximum a merge takes against another model's.
    // Rounding may put a smoothed posterior a little past 1; 1e-3 is far beyond it.
    for (size_t i = 0; i < post.data.size(); ++i) {
        const float v = post.data[i];
        if (!(std::isfinite(v) && v >= 0 && v <= 1.001f))
            throw InputError(cat(path, ": posterior ", csv_float(v), " at voxel ",
                                 voxel_text(post.grid.dim, int64_t(i)),
                                 " is not a probability (0 to 1, past it by rounding up to 1.001)"));
    }
    return {std::move(post), std::move(list)};
}

std::vector<int64_t> frames_in_order_of(const LabelList& from, const std::string& from_path, const LabelList& to,
                                        const std::string& to_path) {
    // Every label of `a` must have a frame in `b`, both ways round.
    auto require_within = [](const LabelList& a, const std::string& a_path, const LabelList& b,
                             const std::string& b_path) {
        for (const int32_t label : a.labels)
            ISS_INPUT(b.index_of(label) >= 0, a_path, " has a frame for label ", label, " (", a.source, ") and ",
                      b_path, " has none (", b.source, "): the two posteriors must hold the same labels");
    };
    require_within(from, from_path, to, to_path);
    require_within(to, to_path, from, from_path);
    std::vector<int64_t> frames;
    for (const int32_t label : to.labels) frames.push_back(from.index_of(label));
    return frames;
}

namespace {

// The world position of a grid's centre, in mm.
std::array<double, 3> centre_of(const Grid& g) {
    return g.affine.apply(0.5 * double(g.dim[0] - 1), 0.5 * double(g.dim[1] - 1), 0.5 * double(g.dim[2] - 1));
}

// What keeps `b` off `a`'s voxel grid, or "" when it is on it, in the terms a user can check
// with info: the dims, voxel sizes and orientations that differ ("dims 44x123x121 vs 87x107x77,
// voxels 2.5x1x1 mm vs 1.1x0.9x1.25 mm, orientation PSR vs LAS, centres 12 mm apart"); where
// those agree, how far the axes turn and the grid is shifted.
std::string grid_difference(const Grid& a, const Grid& b) {
    if (a.dim == b.dim && a.same_as(b)) return "";
    auto sizes_text = [](const std::array<double, 3>& v) { return cat(v[0], "x", v[1], "x", v[2], " mm"); };
    auto joined = [](const std::vector<std::string>& parts) {
        std::string text;
        for (const std::string& p : parts) text += (text.empty() ? "" : ", ") + p;
        return text;
    };
    std::vector<std::string> parts;
    if (a.dim != b.dim) parts.push_back(cat("dims ", dims_text(b.dim), " vs ", dims_text(a.dim)));
    const std::array<double, 3> va = a.voxel_size(), vb = b.voxel_size();
    double size_change = 0;
    for (size_t d = 0; d < 3; ++d) size_change = std::max(size_change, std::fabs(va[d] - vb[d]));
    if (size_change > 1e-4) parts.push_back(cat("voxels ", sizes_text(vb), " vs ", sizes_text(va)));
    const std::string oa = orientation_code(a.affine), ob = orientation_code(b.affine);
    if (oa != ob) parts.push_back(cat("orientation ", ob, " vs ", oa));
    const std::array<double, 3> ca = centre_of(a), cb = centre_of(b);
    const double apart = std::hypot(ca[0] - cb[0], ca[1] - cb[1], ca[2] - cb[2]);
    if (!parts.empty()) {
        if (apart > 0.05) parts.push_back(cat("centres ", std::round(apart * 10) / 10, " mm apart"));
        return joined(parts);
    }
    // The same dims, voxel sizes and orientation: turned (an oblique acquisition) or shifted.
    double turn = 0;
    for (int d = 0; d < 3; ++d) {
        double dot = 0;
        for (int r = 0; r < 3; ++r) dot += a.affine.m[r][d] * b.affine.m[r][d];
        turn = std::max(turn, std::acos(std::clamp(dot / (va[size_t(d)] * vb[size_t(d)]), -1.0, 1.0)) * 180 / M_PI);
    }
    if (turn > 1e-3) parts.push_back(cat("axes turned by up to ", std::round(turn * 100) / 100, " degrees"));
    if (apart > 1e-4) parts.push_back(cat("shifted by ", apart, " mm"));
    if (!parts.empty()) return joined(parts);
    double worst = 0;
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) worst = std::max(worst, std::fabs(a.affine.m[r][c] - b.affine.m[r][c]));
    return cat("the affines differ by up to ", worst, " (tolerance 1e-4)");
}

}  // namespace

void require_same_grid(const Grid& a, const std::string& a_path, const Grid& b, const std::string& b_path) {
    const std::string why = grid_difference(a, b);
    ISS_INPUT(why.empty(), b_path, ": not on the voxel grid of ", a_path, ": ", why);
}

template <class T>
Volume<T> on_grid_of(Volume<T> b, const std::string& b_path, const Grid& a, const std::string& a_path) {
    b = reordered_onto(std::move(b), a);
    std::string why = grid_difference(a, b.grid);
    if (why.empty()) return b;
    // A file stored in another voxel order whose dims and voxel sizes are `a`'s in `a`'s order:
    // what differs is where it lies (a shift, a turn), said in that order. Otherwise its own
    // dims, voxel sizes and orientation, as info shows them (a T2 of coronal 2.5 mm slices).
    const AxisMap map = axis_map_onto(b.grid.affine, a.affine);
    if (!map.identity()) {
        const Grid ordered = reoriented_grid(b.grid, map);
        const std::array<double, 3> va = a.voxel_size(), vo = ordered.voxel_size();
        bool same_shape = ordered.dim == a.dim;
        for (size_t d = 0; d < 3; ++d) same_shape = same_shape && std::fabs(va[d] - vo[d]) <= 1e-4;
        if (same_shape)
            why = cat(grid_difference(a, ordered), " (", b_path, " read in the voxel order of ", a_path, ")");
    }
    throw InputError(cat(b_path, ": not on the voxel grid of ", a_path, ": ", why));
}
template LabelMap on_grid_of(LabelMap, const std::string&, const Grid&, const std::string&);
template Image on_grid_of(Image, const std::string&, const Grid&, const std::string&);

std::set<int32_t> labels_not_in(const LabelMap& seg, const std::vector<int32_t>& list) {
    // Label maps are long runs of one value: test a value only when it changes.
    const std::set<int32_t> listed(list.begin(), list.end());
    std::set<int32_t> missing;
    int32_t last = 0;
    bool have_last = false;
    for (const int32_t v : seg.data) {
        if (have_last && v == last) continue;
        last = v;
        have_last = true;
        if (!listed.count(v)) missing.insert(v);
    }
    return missing;
}

void require_listed(const LabelMap& seg, const std::string& path, const LabelList& list) {
    const std::set<int32_t> missing = labels_not_in(seg, list.labels);
    ISS_INPUT(missing.empty(), path, ": label ", missing.empty() ? 0 : *missing.begin(), " has no posterior frame in ",
              list.source, missing.size() > 1 ? cat(" (", missing.size(), " labels in all)") : std::string());
}

void require_frames_match(const LabelMap& seg, const std::string& seg_path, const Image& post,
                          const std::string& post_path, const LabelList& list, const std::string& option) {
    const int64_t voxels = seg.grid.voxels(), frames = post.frames;
    const std::set<int32_t> listed(list.labels.begin(), list.labels.end());
    int64_t counted = 0, agreeing = 0;
    int32_t last = -1;  // the last label looked up, and whether it has a frame
    bool last_listed = false;
    for (int64_t v = 0; v < voxels; ++v) {
        const int32_t label = seg.data[size_t(v)];
        if (label == 0) continue;
        if (label != last) last = label, last_listed = listed.count(label) > 0;
        if (!last_listed) continue;  // a label without a frame is require_listed's to name
        int64_t best = -1;
        float top = -INFINITY;
        bool tie = false;
        for (int64_t f = 0; f < frames; ++f) {
            const float p = post.data[size_t(f * voxels + v)];
            if (p > top) {
                top = p, best = f, tie = false;
            } else if (p == top) {
                tie = true;
            }
        }
        if (best < 0 || tie) continue;  // no one largest frame (NaN, equal values): says nothing
        ++counted;
        agreeing += list.labels[size_t(best)] == seg.data[size_t(v)];
    }
    ISS_INPUT(counted == 0 || 2 * agreeing > counted, post_path, ": its frames, read as ", list.source, " (",
              first_values(list.labels, 12), ") in that order, agree with ", seg_path, " at only ",
              std::round(1000.0 * double(agreeing) / double(counted)) / 10,
              "% of its labelled voxels: the frames are in another order (SynthSeg's own "
              "posteriors are in ascending label order: give ",
              option, " as that list) or belong to another ", "segmentation");
}

void require_volume_output(const std::string& path, const std::string& option) {
    ISS_INPUT(is_output_volume_name(path), option, ": '", path,
              "' is not a NIfTI or MGH name (.nii, .nii.gz, .mgz or .mgh)",
              is_volume_name(path) ? ": a NIfTI pair (.hdr and .img) is read, never written" : "");
}

void write_prediction(OutputSet& outputs, const std::string& seg_path, const LabelMap& seg,
                      const VolumeHeader* seg_like, const std::string& post_path, const Image& post,
                      const std::vector<int32_t>& frame_labels, const VolumeHeader* post_like) {
    ISS_INPUT(seg_path != post_path, seg_path, ": named as both the segmentation and the posteriors output");
    outputs.write(seg_path, [&](const std::string& t) { write_labels(t, seg, seg_like); });
    outputs.write(post_path, [&](const std::string& t) { write_posteriors(t, post, post_like, frame_labels); });
}

std::vector<double> label_volumes_mm3(const LabelMap& seg, const std::vector<int32_t>& labels) {
    std::map<int32_t, int64_t> counts;
    int32_t last = 0;
    int64_t run = 0;
    for (const int32_t v : seg.data) {  // label maps are long runs of one value
        if (v != last) counts[last] += run, last = v, run = 0;
        ++run;
    }
    counts[last] += run;
    std::vector<double> volumes;
    for (const int32_t label : labels) volumes.push_back(rounded_mm3(double(counts[label]) * seg.grid.voxel_volume()));
    return volumes;
}

bool has_structure(const LabelMap& seg) {
    return std::any_of(seg.data.begin(), seg.data.end(), [](int32_t label) { return label != 0; });
}

CsvTable volumes_table(const std::vector<int32_t>& labels) {
    CsvTable table{{"subject"}, {}, "", {}};
    for (const int32_t label : labels)
        if (label != 0) table.columns.push_back(std::to_string(label));
    table.columns.push_back("total");
    return table;
}

void add_volumes_row(CsvTable& table, const std::string& subject, const std::vector<int32_t>& labels,
                     const std::vector<double>& volumes_mm3) {
    std::vector<std::string> row{subject};
    if (volumes_mm3.empty()) {
        row.resize(table.columns.size());
        table.rows.push_back(row);
        return;
    }
    double total = 0;
    for (size_t c = 0; c < labels.size(); ++c) {
        if (labels[c] == 0) continue;
        row.push_back(csv_number(volumes_mm3[c]));
        total += volumes_mm3[c];
    }
    row.push_back(csv_number(rounded_mm3(total)));
    table.rows.push_back(row);
}

void write_prediction(const std::string& seg_path, const LabelMap& seg, const VolumeHeader* seg_like,
                      const std::string& post_path, const Image& post, const std::vector<int32_t>& frame_labels,
                      const VolumeHeader* post_like) {
    OutputSet outputs;
    write_prediction(outputs, seg_path, seg, seg_like, post_path, post, frame_labels, post_like);
    outputs.commit();
}

}  // namespace iss
