// Intensity priors estimated from real images and their label maps (SPEC.md section 7), in the
// form the generator reads them (section 2): prior_means and prior_stds, each (2, n_labels)
// row-major in label-list order.
//
// Per subject: intensities are clipped to the 2nd and 98th percentiles of the positive
// intensities and that range rescaled to [0, 255] (as the reference does); then for each label
// (or fused class) present, the median and the scaled median absolute deviation (1.4826 * MAD,
// a consistent estimate of the std for normal data) of the intensities inside it. As in the
// reference, only positive intensities count, except for the first listed label (the
// background): a structure whose voxels were all clipped to 0 counts as absent.
// Across subjects, ignoring those where the label is absent: row 0 the mean, row 1 the
// population std (ddof 0, as numpy's np.std: 0 with one subject) of the medians (prior_means)
// and of the spreads (prior_stds). A label absent from every subject gets 0 everywhere.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/volume.h"

namespace iss {

// Scale factor from the MAD to the std of a normal distribution (1 / Phi^-1(3/4), rounded as
// in the reference's scipy median_absolute_deviation).
constexpr double mad_to_std = 1.4826;

struct PriorsOptions {
    std::vector<int32_t> labels;  // the label list; position = output column
    // Pool the voxels of each fused class (labels::fused_classes(), restricted to the list) and
    // write the class's value at the index of every label of the group, so the arrays keep the
    // generator's (2, n_labels) layout whichever entry of a group it reads.
    bool classes = false;
    // --labels-list given: a subset chosen on purpose, whose other labels' voxels go unsaid
    // (each subject warned of them, asking whether the inputs were swapped); only a label map
    // with more values than its image (the two swapped) is said.
    bool list_given = false;
};

// One subject's measurements, per label-list index. voxels[i] == 0: absent (median and spread
// are then 0 and not used). With classes, every index of a group holds the group's values.
struct SubjectStats {
    std::vector<double> median, spread;
    std::vector<int64_t> voxels;
};

struct EstimatedPriors {
    std::vector<int32_t> labels;
    std::vector<double> means;    // (2, n): mean and std of the medians
    std::vector<double> stds;     // (2, n): mean and std of the spreads
    std::vector<int> subjects;    // per index: how many subjects had the label
    std::vector<int32_t> absent;  // labels present in no subject (their columns are 0)
};

// NumPy's default percentile (linear interpolation between order statistics: position
// p / 100 * (n - 1) in the sorted values). Reorders `values`; Error when it is empty.
double percentile(std::vector<double>& values, double p);

// Median (the mean of the two middle values for an even count) and 1.4826 * the median of
// |x - median|. Reorder `values`; Error when it is empty.
double median_of(std::vector<double>& values);
double scaled_mad(std::vector<double>& values, double median);

// The reference's rescaling, in place: lo/hi = the 2nd/98th percentiles of the values > 0;
// every value clipped to [lo, hi] then mapped linearly to [0, 255]. When lo == hi everything
// becomes 0 (as the reference does). NaNs stay NaN. InputError naming `source` when no value is
// positive.
void rescale_intensities(std::vector<double>& values, const std::string& source);

// Median and spread per label (or class) of an image already rescaled; the label map on the
// same grid. NaN intensities are ignored, and intensities <= 0 too except in the group of the
// first listed label; labels not in the list are not measured.
SubjectStats measure_subject(const std::vector<double>& image, const std::vector<int32_t>& labels,
                             const PriorsOptions& options);

// Across subjects (each measured with the same options).
EstimatedPriors combine_subjects(const std::vector<SubjectStats>& subjects, const PriorsOptions& options);

// An image and its label map, paired by file name.
struct SubjectFiles {
    std::string image, labels;
};

// `images` and `labels` are two NIfTI files (one subject, whatever their names) or two folders
// of them, paired by subject: the file name without .nii / .nii.gz. InputError naming the first
// file without a partner, or two files of one subject in a folder.
std::vector<SubjectFiles> pair_subject_files(const std::string& images, const std::string& labels);

// Reads one pair, checks it (3-D, the same grid: the message says whether dims or affines
// differ), rescales and measures it. InputError naming the file for bad input.
SubjectStats measure_subject_files(const SubjectFiles& files, const PriorsOptions& options);

// Every subject measured then combined; throws on the first bad pair before returning.
EstimatedPriors estimate_priors(const std::vector<SubjectFiles>& subjects, const PriorsOptions& options);

}  // namespace iss
