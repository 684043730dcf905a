// Outputs never destroy anything (io/file_util.h, OutputFile): a symbolic link is followed and
// its target replaced, a device or FIFO is written directly and never replaced, a failed write
// is exit-1 kind (iss::Error) naming the file while a path that cannot be created is bad input,
// and a command stopped by SIGTERM leaves no temporary file. Device nodes are made in the test's
// own directory (mknod, when permitted), never /dev's.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "io/csv.h"
#include "io/file_util.h"
#include "io/nifti.h"
#include "kernels/common/error.h"
#include "tests/test_util.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

class Outputs : public test::TempDirTest {
protected:
    // A character device in the test directory (major, minor), or "" when mknod is not permitted.
    std::string device(const std::string& name, unsigned major, unsigned minor) {
        const std::string p = path(name);
        return ::mknod(p.c_str(), S_IFCHR | 0666, makedev(major, minor)) == 0 ? p : std::string();
    }
    static bool is_char_device(const std::string& p) {
        struct stat info {};
        return ::lstat(p.c_str(), &info) == 0 && S_ISCHR(info.st_mode);
    }
    static CsvTable table() {
        CsvTable t;
        t.columns = {"a"};
        t.rows = {{"1"}};
        return t;
    }
    std::vector<std::string> entries() const {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }
};

TEST_F(Outputs, ALinkIsFollowedAndStays) {
    std::ofstream(path("real.csv")) << "old\n";
    fs::create_symlink("real.csv", path("link.csv"));
    write_csv(path("link.csv"), table());
    EXPECT_TRUE(fs::is_symlink(path("link.csv"))) << "the link was replaced by a file";
    EXPECT_EQ(test::read_text(path("real.csv")), "a\n1\n");
    // A dangling link: the file it names is created.
    fs::create_symlink("new.csv", path("dangling.csv"));
    write_csv(path("dangling.csv"), table());
    EXPECT_TRUE(fs::is_symlink(path("dangling.csv")));
    EXPECT_EQ(test::read_text(path("new.csv")), "a\n1\n");
    EXPECT_EQ(entries(), (std::vector<std::string>{"dangling.csv", "link.csv", "new.csv", "real.csv"}));
}

TEST_F(Outputs, ADeviceIsWrittenDirectlyNeverReplaced) {
    const std::string null_device = device("null", 1, 3), full_device = device("full", 1, 7);
    const std::string null_nifti = device("null.nii.gz", 1, 3);
    if (null_device.empty() || full_device.empty() || null_nifti.empty())
        GTEST_SKIP() << "mknod not permitted: device outputs not checked";
    write_csv(null_device, table());
    write_image(null_nifti, Image(Grid{}, 1, 1.0f));
    EXPECT_TRUE(is_char_device(null_device)) << "the device node was replaced by a regular file";
    EXPECT_TRUE(is_char_device(null_nifti)) << "the device node was replaced by a regular file";
    // A full disk is not the user's mistake: iss::Error (exit 1), naming the file and the reason.
    try {
        write_csv(full_device, table());
        ADD_FAILURE() << "writing to a full device succeeded";
    } catch (const InputError& e) {
        ADD_FAILURE() << "a full disk reported as bad input: " << e.what();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(full_device), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(is_char_device(full_device));
    EXPECT_EQ(entries(), (std::vector<std::string>{"full", "null", "null.nii.gz"})) << "no temporary file left";
}

TEST_F(Outputs, AMissingDirectoryIsBadInput) {
    EXPECT_THROW(write_csv(path("no/such/dir.csv"), table()), InputError);
    EXPECT_TRUE(entries().empty());
}

// A process that has a temporary output open when SIGTERM arrives removes it and dies of the
// signal (as it would have without the handler).
TEST_F(Outputs, SigtermRemovesTemporaryOutputs) {
    const std::string target = path("out.bin");
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        install_output_cleanup_on_signals();
        OutputFile out(target);
        std::ofstream(out.write_path()) << "partial";
        ::raise(SIGTERM);
        ::_exit(0);  // not reached
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status;
    EXPECT_TRUE(entries().empty()) << "left: " << (entries().empty() ? "" : entries().front());
}

}  // namespace
}  // namespace iss
