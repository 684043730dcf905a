// The procedural phantom (synth/phantom.h): grid and affine, determinism per seed, the label
// set by age, exact left/right mirror, growth with age, one blob per structure, a thin cortical
// ribbon, anatomical layout, bad input; and the `phantom` command's exit status.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "io/nifti.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "synth/labels.h"
#include "synth/phantom.h"
#include "test_util.h"

namespace iss {
namespace {

// One map per (age, seed), generated once for the whole test binary.
const LabelMap& phantom(double age, uint64_t seed = 1) {
    static std::map<std::pair<double, uint64_t>, LabelMap> cache;
    auto it = cache.find({age, seed});
    if (it == cache.end()) it = cache.emplace(std::make_pair(age, seed), make_phantom(age, seed)).first;
    return it->second;
}

std::map<int32_t, int64_t> label_counts(const LabelMap& map) {
    std::map<int32_t, int64_t> counts;
    for (int32_t v : map.data) ++counts[v];
    return counts;
}

// Sizes of the 6-connected components of `label`, largest first.
std::vector<int64_t> component_sizes(const LabelMap& map, int32_t label) {
    const int64_t nx = map.nx(), ny = map.ny(), nz = map.nz();
    std::vector<char> seen(map.data.size(), 0);
    std::vector<int64_t> sizes, stack;
    for (int64_t start = 0; start < int64_t(map.data.size()); ++start) {
        if (map.data[size_t(start)] != label || seen[size_t(start)]) continue;
        int64_t size = 0;
        stack.assign(1, start);
        seen[size_t(start)] = 1;
        while (!stack.empty()) {
            const int64_t v = stack.back();
            stack.pop_back();
            ++size;
            const int64_t i = v % nx, j = (v / nx) % ny, k = v / (nx * ny);
            const int64_t nbr[6][3] = {{i - 1, j, k}, {i + 1, j, k}, {i, j - 1, k},
                                       {i, j + 1, k}, {i, j, k - 1}, {i, j, k + 1}};
            for (const auto& n : nbr) {
                if (n[0] < 0 || n[1] < 0 || n[2] < 0 || n[0] >= nx || n[1] >= ny || n[2] >= nz) continue;
                const int64_t w = map.index(n[0], n[1], n[2]);
                if (map.data[size_t(w)] == label && !seen[size_t(w)]) {
                    seen[size_t(w)] = 1;
                    stack.push_back(w);
                }
            }
        }
        sizes.push_back(size);
    }
    std::sort(sizes.rbegin(), sizes.rend());
    return sizes;
}

// Mean world position of a label's voxels.
std::array<double, 3> centroid(const LabelMap& map, int32_t label) {
    std::array<double, 3> sum{0, 0, 0};
    int64_t n = 0;
    for (int64_t k = 0; k < map.nz(); ++k)
        for (int64_t j = 0; j < map.ny(); ++j)
            for (int64_t i = 0; i < map.nx(); ++i)
                if (map.at(i, j, k) == label) {
                    const auto p = map.grid.affine.apply(double(i), double(j), double(k));
                    for (int c = 0; c < 3; ++c) sum[size_t(c)] += p[size_t(c)];
                    ++n;
                }
    for (double& s : sum) s /= double(std::max<int64_t>(n, 1));
    return sum;
}

// Every structure the phantom paints at 12 months (left labels, unsided labels, right twins).
const std::vector<int32_t> structures_12m = {14, 15, 16, 24, 170, 172, 2,  3,  4,  5,  7,  8,  10, 11, 12, 13, 17, 18,
                                             21, 26, 28, 41, 42,  43,  44, 46, 47, 49, 50, 51, 52, 53, 54, 58, 60, 61};

TEST(PhantomGrid, DimsAndAffine) {
    EXPECT_EQ(phantom_dims(12), (std::array<int64_t, 3>{150, 170, 140}));
    const auto d0 = phantom_dims(0);
    EXPECT_EQ(d0, (std::array<int64_t, 3>{120, 136, 112}));  // 0.8 of the 12-month head
    std::array<int64_t, 3> previous = d0;
    for (double age : {1.0, 3.0, 6.0, 12.0, 18.0, 24.0}) {
        const auto d = phantom_dims(age);
        EXPECT_EQ(d[0] % 2, 0) << "nx must be even so no voxel sits on the midline, age " << age;
        for (int c = 0; c < 3; ++c) {
            EXPECT_GE(d[size_t(c)], previous[size_t(c)]) << "age " << age;
            EXPECT_LE(d[size_t(c)], int64_t(std::lround(1.05 * double(phantom_dims(12)[size_t(c)]))));
        }
        previous = d;
    }
    EXPECT_NEAR(phantom_scale(0), 0.8, 1e-12);
    EXPECT_NEAR(phantom_scale(12), 1.0, 1e-12);

    const LabelMap& map = phantom(12);
    EXPECT_EQ(map.grid.dim, phantom_dims(12));
    EXPECT_EQ(map.frames, 1);
    EXPECT_EQ(map.data.size(), size_t(150 * 170 * 140));
    // RAS, 1 mm, no rotation, world origin at the grid centre.
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) EXPECT_EQ(map.grid.affine.m[r][c], r == c ? 1.0 : 0.0);
    const auto centre =
        map.grid.affine.apply(0.5 * double(map.nx() - 1), 0.5 * double(map.ny() - 1), 0.5 * double(map.nz() - 1));
    for (double c : centre) EXPECT_NEAR(c, 0.0, 1e-12);
}

TEST(PhantomDeterminism, SameSeedSameMap) {
    const LabelMap again = make_phantom(12, 1);
    EXPECT_TRUE(again.grid.same_as(phantom(12).grid, 0.0));
    EXPECT_TRUE(again.data == phantom(12).data);
}

TEST(PhantomDeterminism, DifferentSeedsDiffer) {
    const LabelMap& a = phantom(12, 1);
    const LabelMap& b = phantom(12, 2);
    ASSERT_EQ(a.data.size(), b.data.size());
    int64_t brain = 0, differ = 0;
    for (size_t v = 0; v < a.data.size(); ++v) {
        brain += a.data[v] != 0;
        differ += a.data[v] != b.data[v];
    }
    EXPECT_GT(differ, brain / 20) << "seeds 1 and 2 differ in " << differ << " of " << brain << " voxels";
}

TEST(PhantomLabels, AllAreGenerationLabels) {
    for (double age : {1.0, 6.0, 12.0}) {
        for (const auto& [label, count] : label_counts(phantom(age)))
            EXPECT_GE(labels::index_of(labels::generation_labels(), label), 0)
                << "label " << label << " (" << count << " voxels) at " << age << " months";
    }
}

TEST(PhantomLabels, ExpectedSetAt12Months) {
    const auto counts = label_counts(phantom(12));
    std::set<int32_t> expected(structures_12m.begin(), structures_12m.end());
    expected.insert(0);
    std::set<int32_t> present;
    for (const auto& [label, count] : counts) present.insert(label);
    EXPECT_EQ(present, expected);
}

TEST(PhantomLabels, CerebellarWhiteMatterAppearsAfterTwoMonths) {
    for (double age : {0.0, 1.0}) {
        const auto counts = label_counts(phantom(age));
        EXPECT_EQ(counts.count(7), 0u) << age << " months";
        EXPECT_EQ(counts.count(46), 0u) << age << " months";
        EXPECT_GT(counts.count(8) ? counts.at(8) : 0, 1000) << "the cerebellum is all cortex at " << age;
    }
    for (double age : {6.0, 12.0}) {
        const auto counts = label_counts(phantom(age));
        EXPECT_GT(counts.count(7) ? counts.at(7) : 0, 100) << age << " months";
        EXPECT_GT(counts.count(46) ? counts.at(46) : 0, 100) << age << " months";
    }
}

TEST(PhantomLabels, LessMyelinatedWhiteMatterShrinksWithAge) {
    auto fraction = [](const LabelMap& map) {
        const auto c = label_counts(map);
        return double(c.at(21)) / double(c.at(21) + c.at(2));
    };
    const double f1 = fraction(phantom(1)), f12 = fraction(phantom(12));
    EXPECT_GT(f1, 0.3);
    EXPECT_LT(f12, 0.2);
    EXPECT_GT(f12, 0.02);
}

TEST(PhantomSymmetry, LeftIsTheMirrorOfRightWithTwinLabels) {
    for (auto [age, seed] : {std::pair<double, uint64_t>{1.0, 1}, {12.0, 1}, {12.0, 2}}) {
        const LabelMap& map = phantom(age, seed);
        const int64_t nx = map.nx();
        int64_t mismatches = 0;
        for (int64_t k = 0; k < map.nz(); ++k)
            for (int64_t j = 0; j < map.ny(); ++j)
                for (int64_t i = 0; i < nx; ++i)
                    mismatches += map.at(i, j, k) != labels::lr_twin(map.at(nx - 1 - i, j, k));
        EXPECT_EQ(mismatches, 0) << age << " months, seed " << seed;
        // Left labels on the left (-x in RAS, i < centre): WM centroids on the right sides.
        EXPECT_LT(centroid(map, 2)[0], -10.0);
        EXPECT_GT(centroid(map, 41)[0], 10.0);
    }
}

TEST(PhantomGrowth, VolumeGrowsWithAge) {
    auto brain_voxels = [](const LabelMap& map) {
        int64_t n = 0;
        for (int32_t v : map.data) n += v != 0 && v != 24;
        return n;
    };
    const int64_t v1 = brain_voxels(phantom(1)), v6 = brain_voxels(phantom(6)), v12 = brain_voxels(phantom(12));
    EXPECT_LT(v1, v6);
    EXPECT_LT(v6, v12);
    // Volume goes as the cube of the linear scale (within seed-independent slack).
    const double expected_ratio = std::pow(phantom_scale(1) / phantom_scale(12), 3.0);
    EXPECT_NEAR(double(v1) / double(v12), expected_ratio, 0.08);
    // A 12-month brain is about 0.6-1.1 litres.
    EXPECT_GT(v12, 600000);
    EXPECT_LT(v12, 1100000);
}

TEST(PhantomShape, EachStructureIsOneBlob) {
    for (uint64_t seed : {1, 2}) {
        SCOPED_TRACE(testing::Message() << "seed " << seed);
        const LabelMap& map = phantom(12, seed);
        const auto counts = label_counts(map);
        for (int32_t label : structures_12m) {
            if (label == 24 || label == 21 || label == 61) continue;  // CSF and myelination patches are many pieces
            const auto sizes = component_sizes(map, label);
            ASSERT_FALSE(sizes.empty()) << "label " << label;
            EXPECT_GE(sizes[0], 100) << "label " << label;
            // Big sheets (WM around its less-myelinated patches, the folded cortex) may shed a few
            // voxels at the carvings; compact structures must be exactly one piece.
            const bool sheet = label == 2 || label == 41 || label == 3 || label == 42;
            if (sheet)
                EXPECT_GE(double(sizes[0]), 0.99 * double(counts.at(label))) << "label " << label;
            else
                EXPECT_EQ(sizes.size(), 1u) << "label " << label << ": second piece has " << sizes[1] << " voxels";
        }
    }
}

TEST(PhantomShape, CortexIsAThinRibbon) {
    const LabelMap& map = phantom(12);
    const int64_t nx = map.nx(), ny = map.ny(), nz = map.nz();
    auto cortex = [](int32_t v) { return v == 3 || v == 42; };
    int64_t total = 0, near_edge = 0;
    for (int64_t k = 0; k < nz; ++k)
        for (int64_t j = 0; j < ny; ++j)
            for (int64_t i = 0; i < nx; ++i) {
                if (!cortex(map.at(i, j, k))) continue;
                ++total;
                bool found = false;
                for (int64_t c = -3; c <= 3 && !found; ++c)
                    for (int64_t b = -3; b <= 3 && !found; ++b)
                        for (int64_t a = -3; a <= 3 && !found; ++a) {
                            if (a * a + b * b + c * c > 9) continue;
                            const int64_t x = i + a, y = j + b, z = k + c;
                            if (x < 0 || y < 0 || z < 0 || x >= nx || y >= ny || z >= nz) continue;
                            found = !cortex(map.at(x, y, z));
                        }
                near_edge += found;
            }
    ASSERT_GT(total, 0);
    EXPECT_GE(double(near_edge), 0.99 * double(total));
    // ... and a real share of the cerebrum, not a film.
    const auto counts = label_counts(map);
    const double wm = double(counts.at(2) + counts.at(21));
    EXPECT_GT(double(counts.at(3)) / (double(counts.at(3)) + wm), 0.15);
}

TEST(PhantomShape, AnatomicalLayout) {
    const LabelMap& map = phantom(12);
    const auto thalamus = centroid(map, 10), cerebellum = centroid(map, 8), brainstem = centroid(map, 16),
               cortex = centroid(map, 3), caudate = centroid(map, 11), ventricle = centroid(map, 4);
    EXPECT_LT(cerebellum[1], thalamus[1] - 20) << "cerebellum posterior";
    EXPECT_LT(cerebellum[2], thalamus[2] - 20) << "cerebellum inferior";
    EXPECT_LT(brainstem[2], thalamus[2] - 20) << "brainstem below";
    EXPECT_GT(caudate[1], thalamus[1]) << "caudate head in front of the thalamus";
    EXPECT_GT(std::fabs(cortex[0]), std::fabs(thalamus[0])) << "cortex lateral to the deep nuclei";
    EXPECT_LT(std::fabs(ventricle[0]), 20.0) << "ventricles near the midline";
    // The midline voxels between the hemispheres are unsided (fissure CSF above the callosum).
    const int64_t i = map.nx() / 2 - 1, k = map.nz() * 3 / 4;
    EXPECT_EQ(map.at(i, map.ny() / 2, k), 24);
}

TEST(PhantomInput, BadAgeThrowsInputError) {
    EXPECT_THROW(make_phantom(-1, 1), InputError);
    EXPECT_THROW(make_phantom(24.5, 1), InputError);
    EXPECT_THROW(make_phantom(std::numeric_limits<double>::quiet_NaN(), 1), InputError);
    EXPECT_THROW(phantom_dims(-0.1), InputError);
    EXPECT_NO_THROW(phantom_dims(24));
}

int run_cli(const std::string& args) {
    return test::run_command(test::cli_path() + " phantom " + args).status;
}

class PhantomCli : public test::TempDirTest {};

TEST_F(PhantomCli, BadArgumentsExitWithStatus2) {
    const std::string out = test::shell_quote(path("phantom_cli_bad.nii"));
    EXPECT_EQ(run_cli("--age-months 6"), 2) << "missing --out";
    EXPECT_EQ(run_cli("--out " + out), 2) << "missing --age-months";
    EXPECT_EQ(run_cli("--age-months -1 --out " + out), 2);
    EXPECT_EQ(run_cli("--age-months 30 --out " + out), 2);
    EXPECT_EQ(run_cli("--age-months six --out " + out), 2);
    EXPECT_EQ(run_cli("--age-months 0x3 --out " + out), 2) << "hexadecimal is not a number here";
    EXPECT_EQ(run_cli("--age-months 6 --seed -3 --out " + out), 2);
    EXPECT_EQ(run_cli("--age-months 6 --bogus 1 --out " + out), 2);
    EXPECT_EQ(run_cli("--age-months 6 --orientation RAR --out " + out), 2);
    EXPECT_EQ(run_cli("--help"), 0);
}

// --orientation stores the same anatomy in another voxel order: back in RAS it is the default file.
TEST_F(PhantomCli, StoresAnyOrientationWithTheSameWorldContent) {
    ASSERT_EQ(run_cli("--age-months 0 --seed 3 --out " + test::shell_quote(path("ras.nii.gz"))), 0);
    ASSERT_EQ(run_cli("--age-months 0 --seed 3 --orientation LAS --out " + test::shell_quote(path("las.nii.gz"))), 0);
    const LabelMap ras = read_labels(path("ras.nii.gz"));
    const LabelMap las = read_labels(path("las.nii.gz"));
    EXPECT_EQ(orientation_code(las.grid.affine), "LAS");
    const LabelMap back = reorient(las, "RAS");
    EXPECT_EQ(back.data, ras.data);
    EXPECT_TRUE(back.grid.same_as(ras.grid, 1e-6));
}

TEST_F(PhantomCli, WritesAFile) {
    const std::string out = path("phantom_cli_0m.nii");
    ASSERT_EQ(run_cli("--age-months 0 --seed 3 --out " + test::shell_quote(out)), 0);
    FILE* file = std::fopen(out.c_str(), "rb");
    ASSERT_NE(file, nullptr);
    std::fseek(file, 0, SEEK_END);
    EXPECT_GT(std::ftell(file), 348);
    std::fclose(file);
}

}  // namespace
}  // namespace iss
