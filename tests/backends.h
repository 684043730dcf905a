// Runs one test body on every backend: a parameterised fixture over Backend {cpu, cuda}.
//
//   class ResampleLinear : public iss::test::BackendTest {};
//   TEST_P(ResampleLinear, Identity) { ... ctx() ... }
//   ISS_INSTANTIATE_BACKENDS(ResampleLinear);
//
// Tests are named Suite.Test/cpu and Suite.Test/cuda. Without a device (or in a build without
// CUDA) the cuda instance is skipped with a message, so it shows as skipped, never as passed.
// Also: all_near, which compares a result with a reference and fails on any NaN.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "kernels/common/device.h"

namespace iss {
// So gtest names the parameter in failure messages ("GetParam() = cuda", not raw bytes).
inline void PrintTo(Backend backend, std::ostream* os) { *os << (backend == Backend::cuda ? "cuda" : "cpu"); }
}  // namespace iss

namespace iss::test {

class BackendTest : public ::testing::TestWithParam<Backend> {
protected:
    void SetUp() override {
        if (GetParam() == Backend::cuda && (!built_with_cuda() || cuda_device_count() == 0))
            GTEST_SKIP() << "no CUDA device: CUDA variant skipped";
        ctx_ = std::make_unique<DeviceContext>(Device{GetParam(), 0});
    }

    DeviceContext& ctx() { return *ctx_; }
    bool on_cuda() const { return GetParam() == Backend::cuda; }

private:
    std::unique_ptr<DeviceContext> ctx_;
};

inline std::string backend_param_name(const ::testing::TestParamInfo<Backend>& info) {
    return info.param == Backend::cuda ? "cuda" : "cpu";
}

// Element-wise |got - want| <= tolerance; any NaN on either side fails (a NaN would pass a
// naive `!(err > tol)` check). Reports the first bad index, the number of bad elements and
// the largest error, so a failure says where and how far.
template <class A, class B>
::testing::AssertionResult all_near(const std::vector<A>& got, const std::vector<B>& want, double tolerance) {
    if (got.size() != want.size())
        return ::testing::AssertionFailure() << "size " << got.size() << " differs from the reference's " << want.size();
    size_t bad = 0, first_bad = 0;
    double max_err = 0;
    for (size_t n = 0; n < got.size(); ++n) {
        const double g = double(got[n]), w = double(want[n]);
        const double err = std::fabs(g - w);
        const bool ok = !std::isnan(g) && !std::isnan(w) && err <= tolerance;
        if (!ok && bad++ == 0) first_bad = n;
        if (!std::isnan(err) && err > max_err) max_err = err;
    }
    if (bad == 0) return ::testing::AssertionSuccess() << "max error " << max_err << " <= " << tolerance;
    return ::testing::AssertionFailure() << bad << " of " << got.size() << " elements off (tolerance " << tolerance
                                         << "); first at index " << first_bad << ": got " << double(got[first_bad])
                                         << ", expected " << double(want[first_bad]) << "; max error " << max_err
                                         << " (NaN counts as off)";
}

}  // namespace iss::test

// Instantiates a BackendTest suite for cpu and cuda, named Suite.Test/cpu and Suite.Test/cuda.
#define ISS_INSTANTIATE_BACKENDS(suite)                                                   \
    INSTANTIATE_TEST_SUITE_P(, suite, ::testing::Values(::iss::Backend::cpu, ::iss::Backend::cuda), \
                             ::iss::test::backend_param_name)
