// The test helpers themselves: the comparison must fail on NaN and name the first bad index.
#include <gtest/gtest.h>

#include <limits>

#include "tests/backends.h"

namespace iss::test {
namespace {

TEST(BackendHelpers, AllNearAcceptsWithinTolerance) {
    EXPECT_TRUE(all_near(std::vector<float>{1.0f, 2.0f}, std::vector<double>{1.0, 2.0 + 1e-7}, 1e-6));
}

TEST(BackendHelpers, AllNearRejectsNaNOnEitherSide) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    EXPECT_FALSE(all_near(std::vector<float>{1.0f, nan}, std::vector<double>{1.0, 2.0}, 1e9));
    EXPECT_FALSE(all_near(std::vector<float>{1.0f, 2.0f}, std::vector<double>{1.0, double(nan)}, 1e9));
    EXPECT_FALSE(all_near(std::vector<float>{nan}, std::vector<float>{nan}, 1e9));
}

TEST(BackendHelpers, AllNearReportsFirstBadIndexAndMaxError) {
    const auto result = all_near(std::vector<float>{0, 1, 5, 9}, std::vector<float>{0, 2, 5, 6}, 0.5);
    ASSERT_FALSE(result);
    const std::string message = result.message();
    EXPECT_NE(message.find("2 of 4"), std::string::npos) << message;
    EXPECT_NE(message.find("first at index 1"), std::string::npos) << message;
    EXPECT_NE(message.find("max error 3"), std::string::npos) << message;
}

TEST(BackendHelpers, AllNearRejectsSizeMismatch) {
    EXPECT_FALSE(all_near(std::vector<int>{1, 2}, std::vector<int>{1}, 0));
}

// The fixture gives each backend its own context; cuda skips visibly without a device.
class BackendFixture : public BackendTest {};

TEST_P(BackendFixture, ContextMatchesParameter) {
    EXPECT_EQ(ctx().is_cuda(), on_cuda());
    Buffer<float> buf(ctx(), std::vector<float>{1, 2, 3});
    EXPECT_EQ(buf.download(), (std::vector<float>{1, 2, 3}));
}

ISS_INSTANTIATE_BACKENDS(BackendFixture);

}  // namespace
}  // namespace iss::test
