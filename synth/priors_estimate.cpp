#include "synth/priors_estimate.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "io/file_util.h"
#include "io/nifti.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "synth/labels.h"

namespace iss {
namespace {

// NumPy's lerp (numpy/lib/function_base.py _lerp): from the nearer end, so that t = 1 gives b
// exactly.
double lerp(double a, double b, double t) {
    const double diff = b - a;
    return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

// Per list index, the pooling group it belongs to: its own, or with classes the group of the
// first listed member of its fused class.
std::vector<int> group_of_index(const PriorsOptions& options) {
    const std::vector<int32_t>& list = options.labels;
    std::vector<int> group(list.size());
    for (size_t i = 0; i < list.size(); ++i) group[i] = int(i);
    if (!options.classes) return group;
    for (const std::vector<int32_t>& fused : labels::fused_classes()) {
        int first = -1;
        for (const int32_t label : fused) {
            const int i = labels::index_of(list, label);
            if (i < 0) continue;
            if (first < 0) first = i;
            group[size_t(i)] = first;
        }
    }
    return group;
}

}  // namespace

double percentile(std::vector<double>& values, double p) {
    ISS_REQUIRE(!values.empty(), "percentile of no values");
    const double pos = p / 100 * double(values.size() - 1);
    const size_t k = std::min(size_t(pos), values.size() - 1);
    std::nth_element(values.begin(), values.begin() + std::ptrdiff_t(k), values.end());
    const double a = values[k];
    if (k + 1 >= values.size()) return a;
    // Everything after position k is >= a; the next order statistic is their minimum.
    const double b = *std::min_element(values.begin() + std::ptrdiff_t(k + 1), values.end());
    return lerp(a, b, pos - double(k));
}

double median_of(std::vector<double>& values) {
    ISS_REQUIRE(!values.empty(), "median of no values");
    const size_t n = values.size(), mid = n / 2;
    std::nth_element(values.begin(), values.begin() + std::ptrdiff_t(mid), values.end());
    const double upper = values[mid];
    if (n % 2) return upper;
    const double lower = *std::max_element(values.begin(), values.begin() + std::ptrdiff_t(mid));
    return (lower + upper) / 2;
}

double scaled_mad(std::vector<double>& values, double median) {
    for (double& v : values) v = std::fabs(v - median);
    return mad_to_std * median_of(values);
}

void rescale_intensities(std::vector<double>& values, const std::string& source) {
    std::vector<double> positive;
    for (const double v : values)
        if (v > 0 && std::isfinite(v)) positive.push_back(v);
    ISS_INPUT(!positive.empty(), source, ": no positive intensity to rescale");
    const double lo = percentile(positive, 2);
    const double hi = percentile(positive, 98);
    if (lo == hi)
        warning(cat(source, ": its positive intensities have no spread (2nd and 98th percentiles both ", lo,
                    "); rescaled to 0 as the reference does, so it counts for the background only"));
    for (double& v : values) {
        if (!std::isfinite(v)) continue;
        // The reference returns zeros for a flat image rather than divide by zero.
        v = lo == hi ? 0 : (std::clamp(v, lo, hi) - lo) / (hi - lo) * 255;
    }
}

SubjectStats measure_subject(const std::vector<double>& image, const std::vector<int32_t>& labels,
                             const PriorsOptions& options) {
    ISS_REQUIRE(image.size() == labels.size(), "image has ", image.size(), " voxels, label map ", labels.size());
    const size_t n = options.labels.size();
    const std::vector<int> group = group_of_index(options);
    std::unordered_map<int32_t, int> group_of_label;
    for (size_t i = 0; i < n; ++i)
        ISS_REQUIRE(group_of_label.emplace(options.labels[i], group[i]).second, "label ", options.labels[i],
                    " twice in the label list");

    std::vector<std::vector<double>> values(n);
    const int background_group = group[0];
    int32_t last_label = 0;
    int last_group = -1;
    bool have_last = false;
    for (size_t v = 0; v < image.size(); ++v) {
        if (!std::isfinite(image[v])) continue;  // no intensity (outside a registration's mask)
        // Label maps come in long runs of one value: remember the last lookup.
        if (!have_last || labels[v] != last_label) {
            const auto it = group_of_label.find(labels[v]);
            last_label = labels[v];
            last_group = it == group_of_label.end() ? -1 : it->second;
            have_last = true;
        }
        if (last_group < 0) continue;
        // As the reference (keep_strictly_positive): structures count only their positive
        // intensities, so the voxels the rescaling clipped to 0 do not pull their medians down;
        // the first listed label's group, the background, keeps its zeros.
        if (last_group != background_group && !(image[v] > 0)) continue;
        values[size_t(last_group)].push_back(image[v]);
    }

    SubjectStats stats;
    stats.median.assign(n, 0);
    stats.spread.assign(n, 0);
    stats.voxels.assign(n, 0);
    for (size_t g = 0; g < n; ++g) {
        std::vector<double>& x = values[g];
        if (x.empty()) continue;
        const int64_t count = int64_t(x.size());
        const double med = median_of(x);
        const double spread = scaled_mad(x, med);
        for (size_t i = 0; i < n; ++i) {
            if (group[i] != int(g)) continue;
            stats.median[i] = med;
            stats.spread[i] = spread;
            stats.voxels[i] = count;
        }
    }
    return stats;
}

EstimatedPriors combine_subjects(const std::vector<SubjectStats>& subjects, const PriorsOptions& options) {
    const size_t n = options.labels.size();
    EstimatedPriors out;
    out.labels = options.labels;
    out.means.assign(2 * n, 0);
    out.stds.assign(2 * n, 0);
    out.subjects.assign(n, 0);
    for (size_t i = 0; i < n; ++i) {
        std::vector<double> medians, spreads;
        for (const SubjectStats& s : subjects) {
            ISS_REQUIRE(s.voxels.size() == n, "subject stats for ", s.voxels.size(), " labels, expected ", n);
            if (s.voxels[i] == 0) continue;
            medians.push_back(s.median[i]);
            spreads.push_back(s.spread[i]);
        }
        out.subjects[i] = int(medians.size());
        if (medians.empty()) {
            out.absent.push_back(options.labels[i]);
            continue;
        }
        // Mean, then the population std (ddof 0) around it, as np.mean / np.std.
        auto mean_std = [](const std::vector<double>& x, double& mean, double& std) {
            double sum = 0;
            for (const double v : x) sum += v;
            mean = sum / double(x.size());
            double sq = 0;
            for (const double v : x) sq += (v - mean) * (v - mean);
            std = std::sqrt(sq / double(x.size()));
        };
        mean_std(medians, out.means[i], out.means[n + i]);
        mean_std(spreads, out.stds[i], out.stds[n + i]);
    }
    return out;
}

std::vector<SubjectFiles> pair_subject_files(const std::string& images, const std::string& labels) {
    namespace fs = std::filesystem;
    // Each path exists (a mistyped one is named as missing, not as the wrong kind).
    const std::vector<std::string> image_files = volume_files(images), label_files = volume_files(labels);
    std::error_code ec;
    const bool image_folder = fs::is_directory(images, ec), label_folder = fs::is_directory(labels, ec);
    ISS_INPUT(image_folder == label_folder, "--images and --labels must both be folders or both files (",
              images, ", ", labels, ")");
    if (!image_folder) return {{image_files.front(), label_files.front()}};  // one subject
    // Folders pair by subject: the name without its ending (a.nii with a.nii.gz or a.mgz), as dice does.
    const std::map<std::string, std::string> image_of = volume_files_by_subject(images, image_files),
                                             labels_of = volume_files_by_subject(labels, label_files);
    std::vector<SubjectFiles> pairs;
    for (const auto& [subject, path] : image_of) {
        const auto it = labels_of.find(subject);
        ISS_INPUT(it != labels_of.end(), path, ": no label map of the same name in ", labels);
        pairs.push_back({path, it->second});
    }
    for (const auto& [subject, path] : labels_of)
        ISS_INPUT(image_of.count(subject), path, ": no image of the same name in ", images);
    return pairs;
}

namespace {

// Whether `image` holds more than `count` distinct values (counted up to there).
bool more_values_than(const std::vector<double>& image, size_t count) {
    std::unordered_set<double> seen;
    for (const double v : image)
        if (std::isfinite(v) && seen.insert(v).second && seen.size() > count) return true;
    return false;
}

// A label map whose non-zero voxels mostly hold values the list leaves out: an intensity image given
// as labels (--images and --labels swapped gave a full table of meaningless priors, exit 0), or
// another protocol's labels. Said, naming a few of the values; its estimate is of the few voxels
// that happen to hold listed values. Fewer (5% and more: a lab's CSF, cerebellum and hippocampi
// under the default list, 20%, went unsaid) are said as structures not measured.
void warn_of_unlisted_labels(const std::vector<int32_t>& map, const std::vector<int32_t>& listed, bool list_given,
                             const std::vector<double>& image, const std::string& file) {
    std::vector<int32_t> sorted = listed;
    std::sort(sorted.begin(), sorted.end());
    int64_t labelled = 0, unlisted = 0;
    std::set<int32_t> values;
    for (const int32_t v : map) {
        if (v == 0) continue;
        ++labelled;
        if (std::binary_search(sorted.begin(), sorted.end(), v)) continue;
        ++unlisted;
        if (values.size() < 100000) values.insert(v);
    }
    if (labelled == 0 || unlisted * 20 < labelled) return;
    // A list given leaves labels out on purpose: said only where the two files look swapped, the
    // label map holding more values outside the list than the image holds values (a uint8 scan
    // has at most 256 and dHCP's labels are 87 dense numbers, so no count or density of the
    // map's alone tells them apart; a scan of fewer grey levels than that is taken for labels).
    if (list_given && (unlisted * 2 <= labelled || more_values_than(image, values.size()))) return;
    const int percent = int(std::round(100.0 * double(unlisted) / double(labelled)));
    if (unlisted * 2 <= labelled) {
        warning(cat(file, ": ", percent, "% of its labelled voxels hold ", values.size(), " value",
                    values.size() > 1 ? "s" : "", " not in the label list (", first_values(values, 5),
                    "), which no prior is measured for (--labels-list to list them)"));
        return;
    }
    warning(cat(file, ": ", percent, "% of its labelled voxels hold ", values.size(),
                values.size() >= 100000 ? " or more" : "", " value", values.size() > 1 ? "s" : "",
                " not in the label list (", first_values(values, 5),
                "): is it a label map of these labels? (--images and --labels ", "swapped?)"));
}

}  // namespace

SubjectStats measure_subject_files(const SubjectFiles& files, const PriorsOptions& options) {
    Volume<double> image = read_image_f64(files.image);
    ISS_INPUT(image.frames == 1, files.image, ": expected a 3-D image, found ", image.frames, " volumes");
    const auto non_finite =
        std::count_if(image.data.begin(), image.data.end(), [](double v) { return !std::isfinite(v); });
    if (non_finite > 0)
        warning(cat(files.image, ": ", non_finite, " voxel", non_finite > 1 ? "s are" : " is",
                    " NaN or infinite: left out of the statistics"));
    LabelMap stored_labels = read_labels(files.labels);
    ISS_INPUT(stored_labels.frames == 1, files.labels, ": expected a 3-D label map, found ", stored_labels.frames,
              " volumes");
    // The label map in the image's voxel order, so the two pair up whatever order each file
    // was stored in (the statistics do not depend on the order).
    const LabelMap labels = reordered_onto(std::move(stored_labels), image.grid);
    ISS_INPUT(image.grid.dim == labels.grid.dim, files.image, " and ", files.labels, ": dims differ (",
              dims_text(image.grid.dim), " vs ", dims_text(labels.grid.dim), ")");
    ISS_INPUT(image.grid.same_as(labels.grid), files.image, " and ", files.labels,
              ": voxel-to-world affines differ (more than 1e-4 mm)");
    warn_of_unlisted_labels(labels.data, options.labels, options.list_given, image.data, files.labels);
    rescale_intensities(image.data, files.image);
    return measure_subject(image.data, labels.data, options);
}

EstimatedPriors estimate_priors(const std::vector<SubjectFiles>& subjects, const PriorsOptions& options) {
    std::vector<SubjectStats> stats;
    stats.reserve(subjects.size());
    for (const SubjectFiles& s : subjects) stats.push_back(measure_subject_files(s, options));
    return combine_subjects(stats, options);
}

}  // namespace iss
