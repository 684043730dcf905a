// The built-in infant priors: the published numbers, exactly.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "io/npy.h"
#include "synth/infant_priors.h"
#include "tests/test_util.h"

namespace iss {
namespace {

TEST(InfantPriors, SpotValuesFromSpec) {
    // SPEC.md section 2 (rounded to 0.1): T1 means row 0 idx 3 = 204.9, row 1 idx 8 = 42.3;
    // T2 stds row 0 idx 25 = 67.6; T2 means row 0 idx 4 (CSF) = 255.0 with row 1 = 0.0.
    const auto t1 = infant_priors::t1();
    const auto t2 = infant_priors::t2();
    ASSERT_EQ(t1.means.size(), 86u);
    ASSERT_EQ(t2.stds.size(), 86u);
    EXPECT_NEAR(t1.means[3], 204.9, 0.05);
    EXPECT_NEAR(t1.means[43 + 8], 42.3, 0.05);
    EXPECT_NEAR(t2.stds[25], 67.6, 0.05);
    EXPECT_EQ(t2.means[4], 255.0);
    EXPECT_EQ(t2.means[43 + 4], 0.0);
}

TEST(InfantPriors, EqualThePublishedNpyFilesExactly) {
    const std::string dir = test::shared_dir() + "/data/priors";
    struct stat info {};
    if (::stat(dir.c_str(), &info) != 0) GTEST_SKIP() << dir << " not found: exact comparison with the published .npy skipped";
    const struct {
        const char* file;
        std::vector<double> values;
    } cases[] = {{"t1_prior_means.npy", infant_priors::t1().means},
                 {"t1_prior_stds.npy", infant_priors::t1().stds},
                 {"t2_prior_means.npy", infant_priors::t2().means},
                 {"t2_prior_stds.npy", infant_priors::t2().stds}};
    for (const auto& c : cases) {
        const NpyArray published = read_npy(dir + "/" + c.file);
        EXPECT_EQ(published.shape, (std::vector<int64_t>{2, 43})) << c.file;
        EXPECT_EQ(published.values, c.values) << c.file;
    }
}

}  // namespace
}  // namespace iss
