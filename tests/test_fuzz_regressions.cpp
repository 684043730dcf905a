// Every committed fuzz input, seeds and regressions (fuzz/<seeds|regressions>/<target>/), through
// its target's body in the normal build: each must be accepted or refused with iss::Error, never
// crash. A libFuzzer finding is added to fuzz/regressions/ with its fix, so it stays fixed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "fuzz/targets.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

TEST(FuzzRegressions, EveryCommittedInputIsAcceptedOrRefused) {
    const char* source = std::getenv("INFANT_SOURCE_DIR");
    if (!source || !*source) GTEST_SKIP() << "INFANT_SOURCE_DIR unset (ctest sets it): fuzz corpora not run";
    int run = 0;
    for (const fuzz::NamedTarget& target : fuzz::all_targets()) {
        int for_target = 0;
        for (const char* kind : {"seeds", "regressions"}) {
            const fs::path dir = fs::path(source) / "fuzz" / kind / target.name;
            std::error_code ec;
            if (!fs::is_directory(dir, ec)) continue;
            for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
                if (!entry.is_regular_file()) continue;
                SCOPED_TRACE(entry.path().string());
                std::ifstream in(entry.path(), std::ios::binary);
                const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
                EXPECT_NO_THROW(target.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
                ++for_target;
            }
        }
        EXPECT_GT(for_target, 0) << "no seed for target " << target.name;
        run += for_target;
    }
    EXPECT_GT(run, 0);
}

}  // namespace
}  // namespace iss
