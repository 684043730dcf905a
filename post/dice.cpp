// Counting is one sweep over both maps; label maps are long runs of one value, so the map
// lookups are skipped while the pair of values repeats.
#include "post/dice.h"

#include <cmath>
#include <set>

#include "kernels/common/error.h"

namespace iss {

std::map<int32_t, Overlap> label_overlaps(const LabelMap& pred, const LabelMap& truth,
                                          const std::vector<int32_t>& common) {
    ISS_REQUIRE(pred.grid.dim == truth.grid.dim && pred.data.size() == truth.data.size(),
                "dice: prediction and ground truth of equal dims");
    const std::set<int32_t> keep(common.begin(), common.end());
    auto mapped = [&](int32_t v) { return keep.empty() || keep.count(v) ? v : 0; };

    std::map<int32_t, Overlap> out;  // std::map: the cached pointers survive later insertions
    Overlap* a = nullptr;
    Overlap* b = nullptr;
    int32_t raw_a = 0, raw_b = 0, label_a = 0, label_b = 0;
    for (size_t v = 0; v < pred.data.size(); ++v) {
        const int32_t x = pred.data[v], y = truth.data[v];
        if (!a || x != raw_a) a = &out[label_a = mapped(raw_a = x)];
        if (!b || y != raw_b) b = &out[label_b = mapped(raw_b = y)];
        ++a->pred;
        ++b->truth;
        if (label_a == label_b) ++a->both;
    }
    return out;
}

double dice(const Overlap& o) {
    const int64_t total = o.pred + o.truth;
    return total == 0 ? NAN : 2.0 * double(o.both) / double(total);
}

std::vector<int32_t> labels_present(const std::vector<DiceSubject>& subjects) {
    std::set<int32_t> present;
    for (const DiceSubject& s : subjects)
        for (const auto& [label, o] : s.overlaps)
            if (label != 0 && (o.pred > 0 || o.truth > 0)) present.insert(label);
    return {present.begin(), present.end()};
}

std::string dice_field(double d) { return std::isnan(d) ? std::string() : csv_number(d); }

double dice_from_field(const std::string& field, const std::string& source) {
    return field.empty() ? NAN : csv_to_number(field, source);
}

CsvTable dice_table(const std::vector<DiceSubject>& subjects, const std::vector<int32_t>& labels) {
    CsvTable table;
    table.columns.push_back("subject");
    for (const int32_t l : labels) table.columns.push_back(cat("dice_", l));
    std::vector<double> sum(labels.size(), 0);
    std::vector<int64_t> count(labels.size(), 0);
    for (const DiceSubject& s : subjects) {
        std::vector<std::string> row{s.name};
        for (size_t k = 0; k < labels.size(); ++k) {
            const auto it = s.overlaps.find(labels[k]);
            const double d = it == s.overlaps.end() ? NAN : dice(it->second);
            row.push_back(dice_field(d));
            if (!std::isnan(d)) {
                sum[k] += d;
                ++count[k];
            }
        }
        table.rows.push_back(std::move(row));
    }
    std::vector<std::string> mean{dice_mean_row};
    for (size_t k = 0; k < labels.size(); ++k)
        mean.push_back(dice_field(count[k] ? sum[k] / double(count[k]) : NAN));
    table.rows.push_back(std::move(mean));
    return table;
}

}  // namespace iss
