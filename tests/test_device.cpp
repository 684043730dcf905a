// The device context: --device parsing, allocation and copies, library handles, and the
// error-check macros' messages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <dnnl.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/dnnl_check.h"
#include "kernels/common/error.h"
#include "kernels/common/version.h"
#include "tests/backends.h"
#include "tests/test_util.h"

namespace iss {
namespace {

// The build names its version (git describe of its checkout), in --version and in every
// model.json, so that a segmentation can be traced to the code that made it.
TEST(Device, TheBuildNamesItsVersion) {
    const std::string version = build_version();
    EXPECT_FALSE(version.empty());
    const test::RunResult r = test::run_command(test::cli_path() + " --version");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out.rfind("infant-synthseg " + version + " (C++17", 0), 0u) << r.out;
}

TEST(Device, ParsesDeviceNames) {
    EXPECT_EQ(parse_device("cpu").backend, Backend::cpu);
    const Device automatic = parse_device("auto");
    EXPECT_EQ(automatic.is_cuda(), cuda_device_count() > 0);
    for (const char* bad : {"gpu", "", "cuda:", "cuda:x", "cuda:-1", "cpu0"}) EXPECT_THROW(parse_device(bad), InputError) << bad;
    if (cuda_device_count() == 0) {
        // Asking for a GPU that is not there is the user's mistake, said plainly.
        try {
            parse_device("cuda");
            FAIL() << "cuda accepted without a device";
        } catch (const InputError& e) {
            const std::string message = e.what();
            EXPECT_TRUE(message.find("no CUDA device") != std::string::npos ||
                        message.find("built without CUDA") != std::string::npos)
                << message;
        }
    } else {
        EXPECT_EQ(parse_device("cuda:0").name(), "cuda:0");
        EXPECT_THROW(parse_device("cuda:99"), InputError);
    }
}

TEST(Device, CpuBufferRoundTripAndAlignment) {
    DeviceContext ctx(parse_device("cpu"));
    const std::vector<float> host = {1, 2, 3, 4, 5};
    Buffer<float> buffer(ctx, host);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer.data()) % 64, 0u);
    EXPECT_EQ(buffer.download(), host);
    Buffer<float> moved = std::move(buffer);
    EXPECT_EQ(moved.download(), host);
    EXPECT_EQ(buffer.data(), nullptr);
    ctx.fill_zero(moved.data(), moved.size() * sizeof(float));
    EXPECT_EQ(moved.download(), std::vector<float>(5, 0.0f));
    EXPECT_THROW(moved.upload({1, 2}), Error);
}

class DeviceBuffers : public test::BackendTest {};

TEST_P(DeviceBuffers, RoundTripAndWorkspace) {
    std::vector<int32_t> host(1000);
    for (size_t i = 0; i < host.size(); ++i) host[i] = int32_t(i * 3);
    Buffer<int32_t> buffer(ctx(), host);
    Buffer<int32_t> copy(ctx(), host.size());
    ctx().copy_on_device(copy.data(), buffer.data(), host.size() * sizeof(int32_t));
    EXPECT_EQ(copy.download(), host);
    if (on_cuda()) {
        EXPECT_NE(ctx().cudnn_handle(), nullptr);
    }
    // The shared workspace grows to the largest request and is kept for smaller ones.
    EXPECT_EQ(ctx().workspace_bytes(), 0u);
    void* small = ctx().workspace(1000);
    EXPECT_NE(small, nullptr);
    ctx().fill_zero(ctx().workspace(4096), 4096);
    EXPECT_EQ(ctx().workspace_bytes(), 4096u);
    void* kept = ctx().workspace(4096);
    EXPECT_EQ(ctx().workspace(10), kept);
    EXPECT_EQ(ctx().workspace_bytes(), 4096u);
    EXPECT_GT(ctx().memory_free(), 0u);
}

// A container's memory limit, v2 and v1, is found on the process's cgroup or an ancestor (the
// smallest wins); "max" is no limit, and v1's huge "no limit" number is larger than any RAM.
TEST(HostMemory, TheCgroupLimitIsTheSmallestOnThePath) {
    const std::filesystem::path root = test::unique_temp_dir("cgroup");
    auto write = [&](const std::string& name, const std::string& text) {
        std::filesystem::create_directories((root / name).parent_path());
        std::ofstream(root / name) << text;
    };
    write("self_v2", "0::/job/step\n");
    write("fs/memory.max", "max\n");
    write("fs/job/memory.max", "3000000000\n");
    write("fs/job/step/memory.max", "max\n");
    EXPECT_EQ(cgroup_memory_limit((root / "self_v2").string(), (root / "fs").string()), 3000000000u);
    write("fs/job/step/memory.max", "4000000000\n");  // the nearer limit is the larger: the ancestor's holds
    EXPECT_EQ(cgroup_memory_limit((root / "self_v2").string(), (root / "fs").string()), 3000000000u);
    write("fs/job/step/memory.max", "1000000000\n");
    EXPECT_EQ(cgroup_memory_limit((root / "self_v2").string(), (root / "fs").string()), 1000000000u);
    write("self_v1", "5:cpu,cpuacct:/x\n4:memory:/docker/abc\n0::/\n");
    write("fs/memory/docker/abc/memory.limit_in_bytes", "2000000000\n");
    write("fs/memory/memory.limit_in_bytes", "9223372036854771712\n");
    EXPECT_EQ(cgroup_memory_limit((root / "self_v1").string(), (root / "fs").string()), 2000000000u);
    write("self_none", "0::/free\n");
    EXPECT_EQ(cgroup_memory_limit((root / "self_none").string(), (root / "fs").string()), 0u);
    EXPECT_EQ(cgroup_memory_limit((root / "missing").string(), (root / "fs").string()), 0u);
    const size_t physical = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGE_SIZE));
    EXPECT_GT(host_memory_bytes(), 0u);
    EXPECT_LE(host_memory_bytes(), physical);
    std::filesystem::remove_all(root);
}

// upload_async returns before the copy has run on CUDA; the source may be changed at once,
// and each copy lands the bytes it was given (more uploads than staging slots, some larger
// than the slots were).
TEST_P(DeviceBuffers, UploadAsyncLetsTheSourceChangeAtOnce) {
    std::vector<Buffer<int32_t>> targets;
    for (int u = 0; u < 5; ++u) {
        targets.emplace_back(ctx(), size_t(64 * (u + 1)));
        std::vector<int32_t> values(targets.back().size());
        for (size_t i = 0; i < values.size(); ++i) values[i] = int32_t(1000 * u + i);
        ctx().upload_async(targets.back().data(), values.data(), values.size() * sizeof(int32_t));
        std::fill(values.begin(), values.end(), -1);  // gone before the copy may have run
    }
    ctx().synchronize();
    for (int u = 0; u < 5; ++u) {
        const std::vector<int32_t> got = targets[size_t(u)].download();
        for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], int32_t(1000 * u + i)) << "upload " << u;
    }
}

ISS_INSTANTIATE_BACKENDS(DeviceBuffers);

TEST(Device, OneDnnEngineOnCpu) {
    DeviceContext ctx(parse_device("cpu"));
    EXPECT_EQ(ctx.dnnl_engine().get_kind(), dnnl::engine::kind::cpu);
    EXPECT_THROW(ctx.cudnn_handle(), Error);
}

// The load-time check: a CPU that lacks any one of the build's vector extensions is named by
// it, a CPU that has them all passes.
const char* lacking_extension = nullptr;
bool cpu_has_all_but_one(const char* name) { return std::string(name) != lacking_extension; }

TEST(Device, HostCodeRefusesACpuWithoutTheBuildsExtensions) {
    EXPECT_EQ(missing_host_extension([](const char*) { return true; }), nullptr);
    const std::string built_for = host_vector_extensions();
#if defined(__x86_64__) && defined(__AVX2__)
    // (x86-64-v3, the default's floor; INFANT_CPU_ARCH may ask for less, and then this list is
    // shorter or empty.)
    EXPECT_NE(built_for.find("AVX2"), std::string::npos) << built_for;
#endif
    std::vector<std::string> names;
    for (size_t at = 0; at < built_for.size();) {
        const size_t end = std::min(built_for.find(' ', at), built_for.size());
        std::string name = built_for.substr(at, end - at);
        for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
        names.push_back(name);
        at = end + 1;
    }
    for (const std::string& name : names) {
        lacking_extension = name.c_str();
        const char* missing = missing_host_extension(cpu_has_all_but_one);
        ASSERT_NE(missing, nullptr) << name;
        EXPECT_EQ(std::string(missing), name);
    }
    EXPECT_EQ(missing_host_extension([](const char*) { return false; }) == nullptr, names.empty());
}

TEST(Device, CheckMacrosNameStatementFileAndLine) {
    try {
        ISS_DNNL_CHECK(dnnl_invalid_arguments);
        FAIL() << "no throw";
    } catch (const Error& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("oneDNN error"), std::string::npos) << message;
        EXPECT_NE(message.find("dnnl_invalid_arguments"), std::string::npos) << message;
        EXPECT_NE(message.find("test_device.cpp"), std::string::npos) << message;
    }
    try {
        // A oneDNN C++ call that fails: a memory descriptor with a negative dimension.
        ISS_DNNL_CALL(dnnl::memory::desc({-1}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::a));
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("oneDNN error in `dnnl::memory::desc"), std::string::npos) << e.what();
    }
    EXPECT_THROW(ISS_REQUIRE(1 + 1 == 3, "arithmetic"), Error);
    EXPECT_THROW(ISS_INPUT(false, "file.nii: bad"), InputError);
}

}  // namespace
}  // namespace iss
