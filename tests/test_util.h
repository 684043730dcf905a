// Helpers the test files share, so each is written once:
//   TempDirTest      a fixture with a fresh directory per test (dir_, path(name)), removed after it;
//   unique_temp_dir  the same kind of directory for wider scope (e.g. a whole suite);
//   run_command      runs a /bin/sh command line: exit status, stdout and stderr;
//   shell_quote      quotes one argument for that command line;
//   read_text        a whole file as a string (bytes as they are);
//   read_bytes, write_bytes  a whole file as bytes, and back;
//   refusal_of       the message of the InputError a reader throws, which must start with the file's name;
//   cli_path         the infant-synthseg binary the CLI tests run;
//   shared_dir       the project's shared data folder, for the tests that use it when it exists.
//
// No path is compiled in: a test binary copied elsewhere (the device kit) finds its CLI beside
// itself, and ctest passes the shared folder in the environment.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/common/error.h"

namespace iss::test {

// The message of the InputError that `read` throws, which must start with `file` (the first
// thing a user reads); "" and a test failure when it throws none.
template <class Read>
std::string refusal_of(const std::string& file, Read&& read) {
    try {
        read();
    } catch (const InputError& e) {
        const std::string message = e.what();
        EXPECT_EQ(message.rfind(file, 0), 0u) << "does not start with the file's name: " << message;
        return message;
    }
    ADD_FAILURE() << file << ": accepted";
    return "";
}

// What f() prints on stderr.
template <class F>
std::string stderr_of(F&& f) {
    ::testing::internal::CaptureStderr();
    f();
    return ::testing::internal::GetCapturedStderr();
}

inline std::string read_text(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Writes a model record (model.json) edited on purpose, as a user does it: without its
// record_crc32, which refuses an edit made by mistake.
inline void write_edited_record(const std::filesystem::path& file, nlohmann::json record) {
    record.erase("record_crc32");
    std::ofstream(file) << record.dump(2);
}

inline std::vector<uint8_t> read_bytes(const std::filesystem::path& file) {
    const std::string text = read_text(file);
    return std::vector<uint8_t>(text.begin(), text.end());
}

inline void write_bytes(const std::filesystem::path& file, const std::vector<uint8_t>& bytes) {
    std::ofstream(file, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// An empty directory "iss-<tag>-<pid>" under gtest's TempDir (anything there before is removed).
// The caller removes it.
inline std::filesystem::path unique_temp_dir(std::string tag) {
    std::replace(tag.begin(), tag.end(), '/', '_');  // parameterised test names hold '/'
    const auto dir = std::filesystem::path(::testing::TempDir()) / ("iss-" + tag + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

class TempDirTest : public ::testing::Test {
protected:
    void SetUp() override {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        dir_ = unique_temp_dir(std::string(info->test_suite_name()) + "-" + info->name());
    }
    void TearDown() override {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    std::filesystem::path dir_;
};

inline std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

struct RunResult {
    int status = -1;  // the exit status; -1 when it did not run or did not exit normally
    std::string out, err;
};

// Stderr goes through a temporary file of its own, removed before returning.
inline RunResult run_command(const std::string& command) {
    RunResult r;
    std::string err_file = ::testing::TempDir() + "iss-stderr-XXXXXX";
    const int fd = ::mkstemp(err_file.data());
    if (fd < 0) return r;
    ::close(fd);
    if (FILE* pipe = ::popen((command + " 2>" + shell_quote(err_file)).c_str(), "r")) {
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
        const int status = ::pclose(pipe);
        r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        r.err = read_text(err_file);
    }
    std::remove(err_file.c_str());
    return r;
}

// INFANT_CLI_PATH when set; else infant-synthseg beside the test binary, or one folder up (the
// build tree's layout: build/tests/infant_tests and build/infant-synthseg).
inline std::string cli_path() {
    if (const char* v = std::getenv("INFANT_CLI_PATH"); v && *v) return v;
    std::error_code ec;
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
    for (const auto& candidate : {self.parent_path() / "infant-synthseg", self.parent_path().parent_path() / "infant-synthseg"})
        if (!ec && std::filesystem::exists(candidate)) return candidate.string();
    return "infant-synthseg";  // from PATH
}

// INFANT_SHARED_DIR when set (gpu-check.sh --shared sets it); else ../shared beside the source tree that
// ctest names in INFANT_SOURCE_DIR; else a name that does not exist, so that the tests needing it
// skip and say which variable to set.
inline std::string shared_dir() {
    if (const char* v = std::getenv("INFANT_SHARED_DIR"); v && *v) return v;
    if (const char* source = std::getenv("INFANT_SOURCE_DIR"); source && *source) {
        const std::filesystem::path beside = std::filesystem::path(source).parent_path() / "shared";
        std::error_code ec;
        if (std::filesystem::is_directory(beside, ec)) return beside.string();
    }
    return "$INFANT_SHARED_DIR";
}

}  // namespace iss::test
