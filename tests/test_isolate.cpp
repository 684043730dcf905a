// run_isolated (io/isolate.h): the child's result, its errors with their messages and kinds, and
// a child that crashes or hangs, each as the caller sees it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <string>

#include "io/isolate.h"
#include "kernels/common/error.h"

namespace iss {
namespace {

std::string message_of(const std::function<std::string()>& work, unsigned seconds = 10) {
    try {
        run_isolated(work, seconds, "model.h5");
    } catch (const InputError& e) {
        return std::string("InputError: ") + e.what();
    } catch (const Error& e) {
        return std::string("Error: ") + e.what();
    }
    return "(nothing thrown)";
}

TEST(Isolate, ReturnsTheChildsBytes) {
    const std::string big(3 << 20, 'x');  // more than a pipe holds at once
    EXPECT_EQ(run_isolated([&] { return big + std::string("\0end", 4); }, 10, "model.h5"), big + std::string("\0end", 4));
    EXPECT_EQ(run_isolated([] { return std::string(); }, 10, "model.h5"), "");
}

TEST(Isolate, ErrorsKeepTheirKindAndMessage) {
    EXPECT_EQ(message_of([]() -> std::string { throw InputError("model.h5: no layer_names"); }),
              "InputError: model.h5: no layer_names");
    EXPECT_EQ(message_of([]() -> std::string { throw Error("disk failed"); }), "Error: disk failed");
}

TEST(Isolate, ACrashOrAHangInTheChildIsARefusedFile) {
    const std::string crashed = message_of([]() -> std::string {
        std::raise(SIGSEGV);
        return "unreachable";
    });
    EXPECT_NE(crashed.find("InputError: model.h5: the HDF5 library failed on it"), std::string::npos) << crashed;
    const std::string hung = message_of(
        []() -> std::string {
            volatile bool forever = true;  // a loop the compiler may not assume ends
            while (forever) {
            }
            return "unreachable";
        },
        1);
    EXPECT_EQ(hung, "InputError: model.h5: reading it took more than 1 s (a damaged file?)");
}

// A child that ends with status 0 before sending its result (its work called _exit) sent
// nothing whole: refused, not taken as an empty result.
TEST(Isolate, AChildThatExitsWithoutItsResultIsARefusedFile) {
    const std::string quit = message_of([]() -> std::string { ::_exit(0); });
    EXPECT_EQ(quit, "InputError: model.h5: the HDF5 reader process sent a malformed result (a damaged file?)");
}

}  // namespace
}  // namespace iss
