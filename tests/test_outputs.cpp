// Outputs never destroy anything (io/file_util.h, OutputFile): a symbolic link is followed and
// its target replaced, a device or FIFO is written directly and never replaced, a failed write
// is exit-1 kind (iss::Error) naming the file while a path that cannot be created is bad input,
// and a command stopped by SIGTERM leaves no temporary file. Device nodes are made in the test's
// own directory (mknod, when permitted), never /dev's.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "io/csv.h"
#include "io/file_util.h"
#include "io/nifti.h"
#include "io/npy.h"
#include "kernels/common/error.h"
#include "synth/config.h"
#include "synth/phantom.h"
#include "tests/small_model.h"
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

// A temporary's name is predictable (NAME.tmp-PID): what stands there (a link planted by another
// user of a shared folder, another container's file of the same pid) is neither followed nor
// truncated; the temporary takes the next free name.
TEST_F(Outputs, WhatStandsAtATemporarysNameIsLeftAlone) {
    std::ofstream(path("victim.txt")) << "precious\n";
    const std::string planted = temporary_name_for(path("out.csv"), "");
    fs::create_symlink(path("victim.txt"), planted);
    std::ofstream(temporary_name_for(path("out.csv"), "", 1)) << "another run's\n";
    write_csv(path("out.csv"), table());
    EXPECT_EQ(test::read_text(path("victim.txt")), "precious\n") << "written through a planted link";
    EXPECT_EQ(test::read_text(temporary_name_for(path("out.csv"), "", 1)), "another run's\n");
    EXPECT_FALSE(fs::is_symlink(path("out.csv")));
    EXPECT_EQ(test::read_text(path("out.csv")), "a\n1\n");
    // A volume of a set: the set's temporary, and its writer's own inside it.
    const std::string set_temporary = temporary_name_for(path("v.nii.gz"), ".nii.gz");
    fs::create_symlink(path("victim.txt"), set_temporary);
    fs::create_symlink(path("victim.txt"), temporary_name_for(set_temporary, ""));
    Grid grid;
    grid.dim = {4, 5, 6};
    OutputSet set;
    set.write(path("v.nii.gz"), [&](const std::string& p) { write_labels(p, LabelMap(grid, 1, 3)); });
    set.commit();
    EXPECT_EQ(test::read_text(path("victim.txt")), "precious\n");
    EXPECT_EQ(read_labels(path("v.nii.gz")).grid.dim, grid.dim);
    EXPECT_TRUE(fs::is_symlink(set_temporary)) << "what was planted stays";
    // A later attempt's name is still known as a temporary of its output.
    const std::optional<TemporaryName> t = temporary_name(temporary_name_for("x.nii", ".nii", 3));
    ASSERT_TRUE(t.has_value());
    EXPECT_EQ(t->base, "x.nii");
    EXPECT_FALSE(t->replaced);
}

// A lock file is written (its holder's pid): one that is a link, or a second name of a file, had that
// file truncated. A link is refused; a second name (cp -al of a model folder) is locked, not written.
TEST_F(Outputs, ALockFileIsNeverWrittenThroughALinkOrASecondName) {
    std::ofstream(path("notes.txt")) << "notes\n";
    fs::create_directories(path("a"));
    fs::create_symlink("../notes.txt", path("a/.lock"));
    const std::string linked = test::refusal_of(path("a/.lock"), [&] { DirectoryLock(path("a"), ".lock", "in use"); });
    EXPECT_NE(linked.find("symbolic link"), std::string::npos) << linked;
    fs::create_directories(path("b"));
    fs::create_hard_link(path("notes.txt"), path("b/.lock"));
    {
        const DirectoryLock second_name(path("b"), ".lock", "in use");
        const std::string held = test::refusal_of(path("b"), [&] { DirectoryLock(path("b"), ".lock", "in use"); });
        EXPECT_NE(held.find(": in use (process ?, lock "), std::string::npos) << "held all the same: " << held;
    }
    EXPECT_EQ(test::read_text(path("notes.txt")), "notes\n");
    fs::create_directories(path("c"));
    { DirectoryLock lock(path("c"), ".lock", "in use"); }
    EXPECT_EQ(test::read_text(path("c/.lock")), std::to_string(::getpid())) << "a lock of its own is taken";
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

// The same rule without privileges (the test above skips where mknod is refused): a FIFO is
// not a regular file, so it is written directly, and neither the writer nor its discard (a
// failed command) nor remove_committed_output replaces or removes it.
TEST_F(Outputs, ANonRegularTargetIsWrittenDirectlyAndKept) {
    const std::string fifo = path("pipe.csv");
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    {
        OutputFile out(fifo);
        EXPECT_EQ(out.write_path(), fifo) << "a temporary name beside a FIFO would replace it on commit";
    }  // destroyed uncommitted, as when a command fails
    remove_committed_output(fifo);
    struct stat st;
    ASSERT_EQ(::lstat(fifo.c_str(), &st), 0) << "the FIFO was removed";
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    EXPECT_EQ(entries(), (std::vector<std::string>{"pipe.csv"})) << "no temporary file left";
}

TEST_F(Outputs, AMissingDirectoryIsBadInput) {
    EXPECT_THROW(write_csv(path("no/such/dir.csv"), table()), InputError);
    EXPECT_TRUE(entries().empty());
}

// A folder the command would make where a file stands: the file is named as what is in the way.
TEST_F(Outputs, AFolderToMakeWhereAFileStandsIsNamed) {
    std::ofstream(path("afile")) << "x";
    try {
        check_outputs("priors", {}, {{path("afile/prior_means.npy"), "--out"}}, {path("afile")});
        ADD_FAILURE() << "no error";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("--out " + path("afile/prior_means.npy") + ": " + path("afile") +
                                             " is not a directory"),
                  std::string::npos)
            << e.what();
    }
}

// Runs `body` in a child process with the output cleanup installed, every signal it handles at
// its default, none blocked (a shell's background job may inherit SIGINT or SIGQUIT ignored) and
// no core dump (SIGQUIT and SIGXCPU dump one by default), and returns its wait status (exit 2
// where `body` threw). `environment`: variables set in the child only.
int in_child(const std::vector<std::pair<std::string, std::string>>& environment, const std::function<void()>& body) {
    const pid_t child = ::fork();
    if (child < 0) return -1;
    if (child == 0) {
        for (const int signal :
             {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGALRM, SIGXCPU, SIGVTALRM})
            ::signal(signal, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        const rlimit no_core{0, 0};
        ::setrlimit(RLIMIT_CORE, &no_core);
        for (const auto& [name, value] : environment) ::setenv(name.c_str(), value.c_str(), 1);
        install_output_cleanup_on_signals();
        try {
            body();
        } catch (...) {  // not into gtest, which would run the rest of the suite in this child
            ::_exit(2);
        }
        ::_exit(0);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    return status;
}

// A process that has a temporary output open when SIGTERM, SIGINT, SIGHUP (a closed SSH session),
// SIGQUIT, a batch scheduler's SIGUSR1 or SIGUSR2, or a time limit's SIGALRM, SIGXCPU or
// SIGVTALRM arrives removes it and dies of the signal (as it would have without the handler; the
// last five left every temporary).
TEST_F(Outputs, SigtermRemovesTemporaryOutputs) {
    const std::string target = path("out.bin");
    for (const int signal : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGXCPU, SIGVTALRM}) {
        SCOPED_TRACE(strsignal(signal));
        const int status = in_child({}, [&] {
            OutputFile out(target);
            std::ofstream(out.write_path()) << "partial";
            ::raise(signal);
        });
        EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == signal) << "status " << status;
        EXPECT_TRUE(entries().empty()) << "left: " << (entries().empty() ? "" : entries().front());
    }
}

// Runs of one key share a folder, another key's is refused while one holds it; the last of a key
// removes its file.
TEST_F(Outputs, AFolderIsSharedByRunsOfOneKindOnly) {
    const std::string refusal = "another kind of run writes here", dir = dir_.string();
    {
        const SharedFolderLock first(dir, ".run-", "a", refusal), second(dir, ".run-", "a", refusal);
        EXPECT_EQ(entries(), (std::vector<std::string>{".run-a.lock"}));
        EXPECT_EQ(test::refusal_of(dir, [&] { SharedFolderLock(dir, ".run-", "b", refusal); }),
                  dir + ": " + refusal + " (lock " + path(".run-a.lock") + ")");
        EXPECT_EQ(entries(), (std::vector<std::string>{".run-a.lock"})) << "the refused run's lock removed";
    }
    EXPECT_EQ(entries(), std::vector<std::string>{});
    {
        const SharedFolderLock other(dir, ".run-", "b", refusal);
        EXPECT_EQ(entries(), (std::vector<std::string>{".run-b.lock"}));
    }
    // A lock name that is a second name of a private file: its mode stays (it was made 0644).
    std::ofstream(path("private.txt")) << "secret\n";
    ASSERT_EQ(::chmod(path("private.txt").c_str(), 0600), 0);
    fs::create_hard_link(path("private.txt"), path(".run-d.lock"));
    { const SharedFolderLock linked(dir, ".run-", "d", refusal); }
    struct stat kept {};
    ASSERT_EQ(::stat(path("private.txt").c_str(), &kept), 0);
    EXPECT_EQ(kept.st_mode & 0777, 0600u);
    fs::remove(path("private.txt"));
    fs::remove(path(".run-d.lock"));
    // A signal removes it too (a folder synth made was left holding it alone).
    const int status = in_child({}, [&] {
        const SharedFolderLock held(dir, ".run-", "c", refusal);
        ::raise(SIGTERM);
    });
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status;
    EXPECT_EQ(entries(), std::vector<std::string>{});
}

// A signal while a set's files are being moved into place (INFANT_SIGNAL_AT raises SIGTERM before
// the one named moves) takes the whole set back, as a failure does: the earlier file it replaced
// goes back, whether kept aside as a hard link or (no hard links) moved, and a new one it had
// moved in goes (it stayed beside a missing third output: a half set, ended by the signal with
// nothing said). What commit_so_far() moved before stays, as new files (synth's samples done):
// its kept copies go (a second Ctrl-C put an earlier run's samples back among the new ones).
TEST_F(Outputs, ASignalDuringTheMovesTakesTheWholeSetBack) {
    for (const bool links : {true, false})
        for (const bool so_far : {false, true}) {
            SCOPED_TRACE(std::string(links ? "hard link kept" : "moved aside") +
                         (so_far ? ", after commit_so_far" : ""));
            fs::remove_all(dir_);
            fs::create_directories(dir_);
            std::ofstream(path("done.csv")) << "old done\n";
            std::ofstream(path("old.csv")) << "old\n";
            std::vector<std::pair<std::string, std::string>> environment{{"INFANT_SIGNAL_AT", path("third.csv")}};
            if (!links) environment.push_back({"INFANT_NO_HARD_LINKS", "1"});
            const int status = in_child(environment, [&] {
                OutputSet set;
                set.write(path("done.csv"), [&](const std::string& p) { write_csv(p, table()); });
                if (so_far) set.commit_so_far();
                set.write(path("old.csv"), [&](const std::string& p) { write_csv(p, table()); });
                set.write(path("new.csv"), [&](const std::string& p) { write_csv(p, table()); });
                set.write(path("third.csv"), [&](const std::string& p) { write_csv(p, table()); });
                set.commit();
            });
            EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status;
            EXPECT_EQ(test::read_text(path("old.csv")), "old\n");
            EXPECT_EQ(test::read_text(path("done.csv")), so_far ? "a\n1\n" : "old done\n");
            EXPECT_EQ(entries(), (std::vector<std::string>{"done.csv", "old.csv"}))
                << "a new output, a temporary or a kept copy left";
        }
}

// A signal while a failed set is taken back waits until it is, even where another thread (an
// OpenMP worker) handles it: the taking thread blocks the signals, the others waited for nothing
// and removed the kept copies being put back (an earlier run's sample lost beside a new one).
TEST_F(Outputs, ASignalWaitsForAFailedSetToBeTakenBack) {
    std::ofstream(path("done.csv")) << "old done\n";
    const int status = in_child({{"INFANT_SIGNAL_AT", "taking-back"}}, [&] {
        std::thread other([] { std::this_thread::sleep_for(std::chrono::seconds(5)); });
        other.detach();  // a thread that does not block the signal: the kernel may hand it there
        try {
            OutputSet set;
            set.write(path("done.csv"), [&](const std::string& p) { write_csv(p, table()); });
            set.commit_so_far();
            set.write(path("next.csv"), [&](const std::string& p) { write_csv(p, table()); });
            throw Error("a later output failed");
        } catch (const Error&) {
        }
        std::this_thread::sleep_for(std::chrono::seconds(5));  // the handler ends the process first
    });
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status;
    EXPECT_EQ(test::read_text(path("done.csv")), "old done\n");
    EXPECT_EQ(entries(), std::vector<std::string>{"done.csv"}) << "a temporary or a kept copy left";
}

// A signal once a set is committed, while the earlier files kept aside are removed, removes the
// rest of them (they were left as NAME.tmp-PID-replaced, and the new files stayed).
TEST_F(Outputs, ASignalAfterTheCommitRemovesTheKeptCopies) {
    std::ofstream(path("a.csv")) << "old\n";
    std::ofstream(path("b.csv")) << "old\n";
    const int status = in_child({{"INFANT_SIGNAL_AT", "removing-kept"}}, [&] {
        OutputSet set;
        set.write(path("a.csv"), [&](const std::string& p) { write_csv(p, table()); });
        set.write(path("b.csv"), [&](const std::string& p) { write_csv(p, table()); });
        set.commit();
    });
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status;
    EXPECT_EQ(test::read_text(path("a.csv")), "a\n1\n");
    EXPECT_EQ(test::read_text(path("b.csv")), "a\n1\n");
    EXPECT_EQ(entries(), (std::vector<std::string>{"a.csv", "b.csv"})) << "a kept copy left";
}

// A signal during the moves takes back only the new files it moved in that their names still hold:
// a folder moved away while the set moved in, and another made under its name holding a file of
// the same name (another run's), lost that file to the signal, which removed by name (a failure
// already compared identities).
TEST_F(Outputs, ASignalTakesBackOnlyTheFilesItMovedIn) {
    fs::create_directories(path("a"));
    fs::create_directories(path("b"));
    const int status = in_child({{"INFANT_SIGNAL_AT", path("b/third.csv")}}, [&] {
        set_commit_point_hook_for_tests([&](const std::string& point) {
            if (point != path("b/third.csv")) return;  // a/new.csv is in place: its folder moves
            fs::rename(path("a"), path("a-moved"));
            fs::create_directories(path("a"));
            std::ofstream(path("a/new.csv")) << "another's\n";
        });
        OutputSet set;
        set.write(path("a/new.csv"), [&](const std::string& p) { write_csv(p, table()); });
        set.write(path("b/third.csv"), [&](const std::string& p) { write_csv(p, table()); });
        set.commit();
    });
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status;
    EXPECT_EQ(test::read_text(path("a/new.csv")), "another's\n") << "another's file taken back by its name";
    EXPECT_EQ(test::read_text(path("a-moved/new.csv")), "a\n1\n") << "moved away with its folder: not found";
    EXPECT_TRUE(fs::is_empty(path("b"))) << "a temporary left";
}

// A signal removes the folders the command made that are empty then, innermost first, as a
// failure does (a Ctrl-C during predict's first write left its new output folder behind), and
// leaves those it did not make, those holding anything and another's made under the same name.
TEST_F(Outputs, ASignalRemovesTheEmptyFoldersItMade) {
    for (const bool moved : {false, true}) {
        SCOPED_TRACE(moved ? "the folder moved away, another made under its name" : "in place");
        fs::remove_all(dir_);
        fs::create_directories(path("had"));
        const std::string out = path("had/new/deeper/seg.csv");
        const int status = in_child({{"INFANT_SIGNAL_AT", out}}, [&] {
            if (moved)
                set_commit_point_hook_for_tests([&](const std::string& point) {
                    if (point != out) return;
                    fs::rename(path("had/new"), path("had/new-moved"));
                    fs::create_directories(path("had/new/deeper"));
                });
            OutputDirectories folders;
            folders.make(path("had"));  // there before: not this command's
            folders.make(path("had/new/deeper"));
            folders.make(path("kept"));
            std::ofstream(path("kept/a user's file")) << "1";
            OutputSet set;
            set.write(out, [&](const std::string& p) { write_csv(p, table()); });
            set.commit();
        });
        EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status;
        EXPECT_TRUE(fs::is_directory(path("had")));
        EXPECT_TRUE(fs::exists(path("kept/a user's file")));
        if (moved) {
            EXPECT_TRUE(fs::is_directory(path("had/new/deeper"))) << "another's folders taken back";
            EXPECT_TRUE(fs::is_directory(path("had/new-moved/deeper")));  // with the temporary: not found
        } else {
            EXPECT_FALSE(fs::exists(path("had/new"))) << "made, left empty by the signal";
        }
    }
}

// A replaced output keeps its permission bits, whether the earlier file was kept aside as a hard
// link or (no hard links: another user's file under fs.protected_hardlinks) moved aside: a
// segmentation made private became 0644, readable by everyone, when a run wrote it again. A
// write-only one (0200) is synced before its mode is set (it failed, unreadable, after the work).
TEST_F(Outputs, AReplacedFileKeepsItsPermissions) {
    struct Restore {  // however the test ends: the next tests run with the process's own
        mode_t umask_before = ::umask(022);
        ~Restore() {
            ::umask(umask_before);
            ::unsetenv("INFANT_NO_HARD_LINKS");
        }
    } restore;
    for (const bool links : {true, false}) {
        SCOPED_TRACE(links ? "hard link kept" : "moved aside");
        if (!links) ::setenv("INFANT_NO_HARD_LINKS", "1", 1);
        for (const mode_t mode : {mode_t(0604), mode_t(0200)}) {
            std::ofstream(path("kept.csv")) << "old\n";
            ASSERT_EQ(::chmod(path("kept.csv").c_str(), mode), 0);
            OutputSet set;
            set.write(path("kept.csv"), [&](const std::string& p) { write_csv(p, table()); });
            set.write(path("new.csv"), [&](const std::string& p) { write_csv(p, table()); });
            set.commit();
            struct stat info {};
            ASSERT_EQ(::stat(path("kept.csv").c_str(), &info), 0);
            EXPECT_EQ(info.st_mode & 07777, mode);
            ASSERT_EQ(::stat(path("new.csv").c_str(), &info), 0);
            EXPECT_EQ(info.st_mode & 07777, 0644u) << "a new file has the umask's mode";
            ::chmod(path("kept.csv").c_str(), 0644);
            EXPECT_EQ(test::read_text(path("kept.csv")), "a\n1\n");
            fs::remove(path("new.csv"));
        }
    }
}

// A killed run's temporary outputs end in .nii.gz too: a folder's listing leaves them out.
TEST_F(Outputs, TemporariesOfAKilledRunAreNotScans) {
    for (const char* name : {"a.nii.gz", "a.nii.gz.tmp-123.nii.gz", "b.nii.tmp-9.nii", "c.tmp-1.nii.gz", "d.mgz",
                             "d.mgz.tmp-5.mgz", "e.MGH.tmp-7.MGH"})
        std::ofstream(path(name)) << "x";
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(volume_files(dir_.string()),
              (std::vector<std::string>{path("a.nii.gz"), path("c.tmp-1.nii.gz"), path("d.mgz")}));
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 4) << "each temporary said once: " << err;
    EXPECT_TRUE(is_temporary_output("seg.nii.tmp-42.nii"));
    EXPECT_FALSE(is_temporary_output("scan.tmp-.nii.gz"));
}

// Upper-case endings (SCAN.NII.GZ, as some exports name files) are NIfTI names: listed in a
// folder, stripped from the stem, and written compressed.
TEST_F(Outputs, UpperCaseEndingsAreNiftiNames) {
    write_labels(path("UP.NII.GZ"), LabelMap(Grid{}, 1, 3));
    write_labels(path("Mixed.Nii"), LabelMap(Grid{}, 1, 3));
    EXPECT_EQ(volume_files(dir_.string()), (std::vector<std::string>{path("Mixed.Nii"), path("UP.NII.GZ")}));
    EXPECT_EQ(volume_stem(path("UP.NII.GZ")), "UP");
    EXPECT_EQ(volume_stem(path("Mixed.Nii")), "Mixed");
    const std::string bytes = test::read_text(path("UP.NII.GZ"));
    ASSERT_GE(bytes.size(), 2u);
    EXPECT_EQ((unsigned char)bytes[0], 0x1f) << "a .NII.GZ is written compressed";
    EXPECT_EQ((unsigned char)bytes[1], 0x8b);
    EXPECT_EQ(read_labels(path("UP.NII.GZ")).data, std::vector<int32_t>{3});
    EXPECT_EQ(test::read_text(path("Mixed.Nii")).substr(344, 4), std::string("n+1\0", 4)) << "a .Nii uncompressed";
}

// Two names of one file that does not exist yet ("s.nii.gz" and "./s.nii.gz") are one output.
TEST_F(Outputs, TwoSpellingsOfANewOutputAreOneFile) {
    const fs::path before = fs::current_path();
    fs::current_path(dir_);
    try {
        check_outputs("t", {}, {{"s.nii.gz", "--o"}, {"./s.nii.gz", "--post"}});
        ADD_FAILURE() << "two spellings of one new file accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("is the same file as the output --o"), std::string::npos) << e.what();
    }
    fs::current_path(before);
}

// A block device (a disk) is never written over, through a link or not.
TEST_F(Outputs, ABlockDeviceIsRefused) {
    const std::string disk = path("disk");
    if (::mknod(disk.c_str(), S_IFBLK | 0600, makedev(7, 200)) != 0)
        GTEST_SKIP() << "mknod not permitted: block device outputs not checked";
    fs::create_symlink("disk", path("disk.nii.gz"));
    EXPECT_THROW(check_outputs("t", {}, {{path("disk.nii.gz"), "--o"}}), InputError);
    EXPECT_THROW(write_csv(disk, table()), InputError);
}

// The files a command wrote into `dir` (temporaries included).
std::vector<std::string> files_in(const fs::path& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

// --- commands: an output that is an input, or another output, is refused before anything runs ---

class SameFileCli : public Outputs {
protected:
    void SetUp() override {
        Outputs::SetUp();
        test::write_small_scan(path("scan.nii.gz"));
        const Grid g = read_image(path("scan.nii.gz")).grid;
        LabelMap seg(g);
        for (size_t v = 0; v < seg.data.size(); ++v) seg.data[v] = (v % 3 == 0) ? 2 : 0;
        write_labels(path("seg.nii.gz"), seg);
        Image post(g, 5, 0.2f);
        write_image(path("post.nii.gz"), post);
        test::write_small_model(path("model"));
        fs::create_symlink("scan.nii.gz", path("scan_link.nii.gz"));
    }
    std::string q(const std::string& name) const { return test::shell_quote(path(name)); }
    // Exit 2, one line naming `fragment`, and every file in the directory unchanged.
    void expect_refused(const std::string& args, const std::string& fragment) {
        SCOPED_TRACE(args);
        std::map<std::string, std::string> before;
        for (const auto& e : fs::recursive_directory_iterator(dir_))
            if (e.is_regular_file()) before[e.path().string()] = test::read_text(e.path());
        const test::RunResult r = test::run_command(test::cli_path() + " " + args);
        EXPECT_EQ(r.status, 2) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
        std::map<std::string, std::string> after;
        for (const auto& e : fs::recursive_directory_iterator(dir_))
            if (e.is_regular_file()) after[e.path().string()] = test::read_text(e.path());
        EXPECT_TRUE(before == after) << "a file was written, changed or removed";
    }
};

TEST_F(SameFileCli, PredictRefusesToOverwriteItsInputs) {
    const std::string run = "predict --device cpu --model " + q("model") + " --i " + q("scan.nii.gz");
    expect_refused(run + " --o " + q("scan.nii.gz"), "--o " + path("scan.nii.gz") + " is the same file as the input --i");
    expect_refused(run + " --o " + q("scan_link.nii.gz"), "is the same file as the input --i");
    expect_refused(run + " --o " + q("out.nii.gz") + " --post " + q("out.nii.gz"),
                   "--post " + path("out.nii.gz") + " is the same file as the output --o");
    expect_refused(run + " --o " + q("out.nii.gz") + " --post " + q("scan.nii.gz"), "is the same file as the input --i");
    expect_refused(run + " --o " + q("model/model.json"), "is the same file as the input --model");
    // The model directory's other files: a resumed train reads Adam's state and the log back.
    expect_refused(run + " --o " + q("out.nii.gz") + " --vol " + q("model/training_log.csv"),
                   "--vol " + path("model/training_log.csv") + " is the same file as the input --model");
    expect_refused(run + " --o " + q("out.nii.gz") + " --vol " + q("model/model.optimizer.safetensors"),
                   "is the same file as the input --model");
    expect_refused(run + " --o " + q("out.nii.gz") + " --preview " + q("model/loss.png"),
                   "is the same file as the input --model");
    // A table's name is never a NIfTI one, but a link may still lead to an input.
    fs::create_symlink(path("scan.nii.gz"), path("scan_link.csv"));
    expect_refused(run + " --o " + q("out.nii.gz") + " --vol " + q("scan_link.csv"),
                   "is the same file as the input --i");
    // A missing folder would be made for an output, but not by a command refused.
    expect_refused(run + " --o " + q("no/such/dir/out.nii.gz") + " --post " + q("scan.nii.gz"),
                   "is the same file as the input --i");
    EXPECT_FALSE(fs::exists(path("no")));
    expect_refused(run + " --o " + q("seg.nii.gz/out.nii.gz"), ": " + path("seg.nii.gz") + " is not a directory");
    expect_refused(run + " --o " + q("model"), "is a directory, expected a file name");
}

// A file named in a folder that does not exist is written into it, the folder made, as SynthSeg's
// commands do ("no such directory" before); a command that fails after takes it back.
TEST_F(SameFileCli, OutputsInMissingFoldersMakeThem) {
    const std::string predict = test::cli_path() + " predict --device cpu --model " + q("model") + " --o " +
                                q("made/seg/out.nii.gz") + " --vol " + q("tables/vol.csv") + " --i ";
    const test::RunResult made = test::run_command(predict + q("scan.nii.gz"));
    ASSERT_EQ(made.status, 0) << made.err;
    EXPECT_TRUE(fs::is_regular_file(path("made/seg/out.nii.gz")));
    EXPECT_TRUE(fs::is_regular_file(path("tables/vol.csv")));
    std::ofstream(path("broken.nii.gz")) << "not a scan";
    fs::remove_all(path("made"));
    fs::remove_all(path("tables"));
    EXPECT_EQ(test::run_command(predict + q("broken.nii.gz")).status, 2);
    EXPECT_FALSE(fs::exists(path("made"))) << "a failed predict left its folders";
    EXPECT_FALSE(fs::exists(path("tables")));
    // A folder of scans into a missing folder named with a trailing slash, as shells complete it.
    fs::create_directories(path("scans"));
    fs::copy_file(path("scan.nii.gz"), path("scans/scan.nii.gz"));
    const test::RunResult slash = test::run_command(test::cli_path() + " predict --device cpu --model " + q("model") +
                                                    " --i " + q("scans") + " --o " + q("segs") + "/");
    EXPECT_EQ(slash.status, 0) << slash.err;
    EXPECT_TRUE(fs::is_regular_file(path("segs/scan_synthseg.nii.gz")));
    for (const std::string& command :
         {"clean --seg " + q("seg.nii.gz") + " --post " + q("post.nii.gz") + " --labels 0,2,3,41,42 --o " +
              q("cleaned/seg.nii.gz"),
          "dice --pred " + q("seg.nii.gz") + " --gt " + q("seg.nii.gz") + " --out " + q("scores/dice.csv"),
          "phantom --age-months 0 --out " + q("maps/p.nii.gz"),
          "export --model " + q("model") + " --keras " + q("keras/m.h5")}) {
        const test::RunResult r = test::run_command(test::cli_path() + " " + command);
        EXPECT_EQ(r.status, 0) << command << ": " << r.err;
    }
    for (const char* file : {"cleaned/seg.nii.gz", "scores/dice.csv", "maps/p.nii.gz", "keras/m.h5"})
        EXPECT_TRUE(fs::is_regular_file(path(file))) << file;
    // Refused at once, no folder made: a folder for a name (after the work, it was refused as one
    // made), a folder reached through ".." (made as "." and written through the missing one), a
    // name of the wrong kind.
    expect_refused("dice --pred " + q("seg.nii.gz") + " --gt " + q("seg.nii.gz") + " --out " + q("tables") + "/",
                   "expected a file name, not a folder");
    expect_refused("phantom --age-months 0 --out " + q("new") + "/../p.nii.gz", "no such directory");
    expect_refused("phantom --age-months 0 --out " + q("more/p.txt"), "--out");
    for (const char* folder : {"tables", "new", "more"}) EXPECT_FALSE(fs::exists(path(folder))) << folder;
}

// An output its owner made read-only is kept, not replaced (it was, silently, even as another
// user: a rename needs only the folder's permission); a socket where an output would go is
// refused before the work (it failed after it, exit 1).
TEST_F(SameFileCli, AReadOnlyOutputOrASocketIsRefused) {
    const std::string dice = "dice --pred " + q("seg.nii.gz") + " --gt " + q("seg.nii.gz") + " --out ";
    std::ofstream(path("kept.csv")) << "kept\n";
    ASSERT_EQ(::chmod(path("kept.csv").c_str(), 0444), 0);
    expect_refused(dice + q("kept.csv"),
                   "--out " + path("kept.csv") + " is read-only (mode 0444): not replaced; make it writable");
    std::ofstream(path("kept.nii.gz")) << "kept\n";  // phantom reads no input, but checks its output too
    ASSERT_EQ(::chmod(path("kept.nii.gz").c_str(), 0444), 0);
    expect_refused("phantom --age-months 0 --out " + q("kept.nii.gz"), "is read-only (mode 0444)");
    // Bound in a short folder (a socket's path has at most 107 bytes), reached through a link.
    char short_dir[] = "/tmp/iss-sock-XXXXXX";
    ASSERT_NE(::mkdtemp(short_dir), nullptr);
    const std::string socket_path = std::string(short_dir) + "/s";
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strcpy(address.sun_path, socket_path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
    fs::create_symlink(socket_path, path("sock.csv"));
    expect_refused(dice + q("sock.csv"), "--out " + path("sock.csv") + " is a socket, expected a file name");
    ::close(fd);
    fs::remove_all(short_dir);
}

// What check_outputs refuses `output` with for another user (nobody's uid), or "" where it
// accepts it: run in a child that gives up root.
std::string refusal_for_another_user(const std::string& output) {
    int ends[2];
    if (::pipe(ends) != 0) return "no pipe";
    const pid_t child = ::fork();
    if (child == 0) {
        ::close(ends[0]);
        std::string said;
        if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
            ::setresuid(65534, 65534, 65534) != 0) {
            said = "cannot become nobody";
        } else {
            try {
                check_outputs("dice", {}, {{output, "--out"}});
            } catch (const InputError& e) {
                said = e.what();
            }
        }
        if (::write(ends[1], said.data(), said.size()) < 0) ::_exit(1);
        ::_exit(0);
    }
    ::close(ends[1]);
    std::string said;
    char buffer[512];
    for (ssize_t got; (got = ::read(ends[0], buffer, sizeof buffer)) > 0;) said.append(buffer, size_t(got));
    ::close(ends[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    return said;
}

// Another user's file in a folder all may write: replaced only where this user could write it,
// as a shell's > would (predict and dice replaced it, the owner's results gone), and in a sticky
// folder only where the rename is allowed (found after the work).
TEST_F(SameFileCli, AnotherUsersFileIsNotReplaced) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root, to act as another user";
    char shared[] = "/tmp/iss-shared-XXXXXX";
    ASSERT_NE(::mkdtemp(shared), nullptr);
    const std::string folder = shared;
    const std::unique_ptr<const std::string, void (*)(const std::string*)> removed(&folder, [](const std::string* f) {
        std::error_code ec;
        fs::remove_all(*f, ec);
    });
    ASSERT_EQ(::chmod(folder.c_str(), 0777), 0);
    std::ofstream(folder + "/alice.csv") << "alice's\n";
    ASSERT_EQ(::chmod((folder + "/alice.csv").c_str(), 0644), 0);
    const std::string unwritable = refusal_for_another_user(folder + "/alice.csv");
    if (unwritable == "cannot become nobody") GTEST_SKIP() << "this container lets no process give up root";
    EXPECT_EQ(unwritable, "dice: --out " + folder +
                              "/alice.csv belongs to root (mode 0644) and this user cannot write it: not replaced; "
                              "choose another name, or ask root");
    EXPECT_EQ(refusal_for_another_user(folder + "/new.csv"), "") << "a new file in the shared folder";
    fs::create_directories(folder + "/sticky");
    ASSERT_EQ(::chmod((folder + "/sticky").c_str(), 01777), 0);
    std::ofstream(folder + "/sticky/open.csv") << "anyone may write it\n";
    ASSERT_EQ(::chmod((folder + "/sticky/open.csv").c_str(), 0666), 0);
    const std::string sticky = refusal_for_another_user(folder + "/sticky/open.csv");
    EXPECT_NE(sticky.find("open.csv belongs to root, in a folder where only a file's owner may replace it (sticky"),
              std::string::npos)
        << sticky;
    // Another user's link in the sticky folder is not followed, not even by root (the kernel's
    // fs.protected_symlinks rule, which our own following of an output's link bypassed: the file it
    // led to was replaced).
    std::ofstream(folder + "/keys") << "root's own\n";
    fs::create_symlink(folder + "/keys", folder + "/sticky/dice.csv");
    ASSERT_EQ(::lchown((folder + "/sticky/dice.csv").c_str(), 65534, 65534), 0);
    const std::string planted = test::refusal_of("dice", [&] {
        check_outputs("dice", {}, {{folder + "/sticky/dice.csv", "--out"}});
    });
    EXPECT_NE(planted.find("sticky/dice.csv is a link nobody made in a folder all may write (sticky, as /tmp): not "
                           "followed"),
              std::string::npos)
        << planted;
    // In a folder of this user's own, a file this user may remove anyway is replaced (a container
    // run as root left it).
    fs::create_directories(folder + "/own");
    ASSERT_EQ(::chown((folder + "/own").c_str(), 65534, 65534), 0);
    std::ofstream(folder + "/own/left.csv") << "root's\n";
    EXPECT_EQ(refusal_for_another_user(folder + "/own/left.csv"), "");
}

// A name the file system takes, but not with the temporaries' endings beside it: refused before
// the work (predict ran, then failed to create its temporary).
TEST_F(SameFileCli, ANameTooLongForItsTemporariesIsRefusedFirst) {
    const std::string name = std::string(220, 's') + ".nii.gz";
    expect_refused("phantom --age-months 0 --out " + q(name),
                   "bytes leaves no room for the temporary names it is written under (at most 218 bytes)");
    // The whole path too: a folder path near PATH_MAX failed after the work.
    std::string deep = dir_.string();
    while (deep.size() < 4000) deep += "/" + std::string(200, 'd');
    fs::create_directories(deep);
    const test::RunResult too_deep =
        test::run_command(test::cli_path() + " phantom --age-months 0 --out " +
                          test::shell_quote(deep + "/" + std::string(80, 'p') + ".nii.gz"));
    EXPECT_EQ(too_deep.status, 2) << too_deep.err;
    EXPECT_NE(too_deep.err.find("bytes leaves no room for the temporary names it is written under"), std::string::npos)
        << too_deep.err;
    fs::remove_all(dir_ / std::string(200, 'd'));
    const std::string fits = std::string(190, 's') + ".nii.gz";
    EXPECT_EQ(test::run_command(test::cli_path() + " phantom --age-months 0 --out " + q(fits)).status, 0);
}

TEST_F(SameFileCli, PostCommandsRefuseToOverwriteTheirInputs) {
    fs::create_symlink(path("seg.nii.gz"), path("seg_link.csv"));
    expect_refused("dice --pred " + q("seg.nii.gz") + " --gt " + q("seg.nii.gz") + " --out " + q("seg_link.csv"),
                   "--out " + path("seg_link.csv") + " is the same file as the input --pred");
    // A NIfTI pair's voxels are in its .img: a table written there lost the prediction (exit 0).
    write_labels(path("seg.nii"), read_labels(path("seg.nii.gz")));
    std::string single = test::read_text(path("seg.nii"));
    float vox_offset = 0;
    std::memcpy(&vox_offset, &single[108], 4);
    std::ofstream(path("pair.img"), std::ios::binary) << single.substr(size_t(vox_offset));
    single.replace(344, 4, std::string("ni1\0", 4));
    const float zero = 0;
    single.replace(108, 4, reinterpret_cast<const char*>(&zero), 4);
    std::ofstream(path("pair.hdr"), std::ios::binary) << single.substr(0, 348);
    ASSERT_EQ(read_labels(path("pair.hdr")).data, read_labels(path("seg.nii")).data);
    expect_refused("dice --pred " + q("pair.hdr") + " --gt " + q("seg.nii.gz") + " --out " + q("pair.img"),
                   "--out " + path("pair.img") + " is the same file as the input --pred " + path("pair.hdr") +
                       " (its data file " + path("pair.img") + ")");
    // A .nii of magic ni1 is such a header too.
    fs::copy_file(path("pair.hdr"), path("header_only.nii"));
    fs::copy_file(path("pair.img"), path("header_only.img"));
    expect_refused(
        "dice --pred " + q("header_only.nii") + " --gt " + q("seg.nii.gz") + " --out " + q("header_only.img"),
        "is the same file as the input --pred " + path("header_only.nii"));
    const std::string clean = "clean --labels 0,2,3,41,42 --seg " + q("seg.nii.gz") + " --post " + q("post.nii.gz");
    expect_refused(clean + " --o " + q("seg.nii.gz"), "is the same file as the input --seg");
    expect_refused(clean + " --o " + q("c.nii.gz") + " --o-post " + q("post.nii.gz"),
                   "is the same file as the input --post");
    const std::string merge = "merge --labels 0,2,3,41,42 --t1-seg " + q("seg.nii.gz") + " --t1-post " +
                              q("post.nii.gz") + " --t2-seg " + q("seg.nii.gz") + " --t2-post " + q("post.nii.gz");
    expect_refused(merge + " --o-seg " + q("seg.nii.gz") + " --o-post " + q("m_post.nii.gz"),
                   "is the same file as the input --t1-seg");
}

// What a run killed outright (the out-of-memory killer, SIGKILL) left beside predict's, merge's
// and clean's outputs is named once every refusal is past, and kept (a run on another host may be
// writing it): a rerun wrote beside 600 MB of a killed run's posteriors unsaid. Another output's
// temporaries, and files of other names, are not its own.
TEST_F(SameFileCli, TemporariesAKilledRunLeftBesideTheOutputsAreNamed) {
    for (const char* name : {"out.nii.gz.tmp-999.nii.gz", "out_post.nii.gz.tmp-999.nii.gz.tmp-999",
                             "out.nii.gz.tmp-998-replaced", "other.nii.gz.tmp-997.nii.gz"})
        std::ofstream(path(name)) << "half";
    const test::RunResult predicted =
        test::run_command(test::cli_path() + " predict --device cpu --model " + q("model") + " --i " +
                          q("scan.nii.gz") + " --o " + q("out.nii.gz") + " --post " + q("out_post.nii.gz"));
    ASSERT_EQ(predicted.status, 0) << predicted.err;
    EXPECT_NE(predicted.err.find("warning: predict: " + dir_.string() +
                                 " holds 3 files other runs were writing or "
                                 "kept aside (out.nii.gz.tmp-998-replaced, ..., out_post.nii.gz.tmp-999.nii.gz.tmp-999)"
                                 ": a killed run's, or one writing there now"),
              std::string::npos)
        << predicted.err;
    for (const char* name : {"out.nii.gz.tmp-999.nii.gz", "out.nii.gz.tmp-998-replaced", "other.nii.gz.tmp-997.nii.gz"})
        EXPECT_TRUE(fs::exists(path(name))) << name << " removed";
    const test::RunResult cleaned =
        test::run_command(test::cli_path() + " clean --labels 0,2,3,41,42 --seg " + q("seg.nii.gz") + " --post " +
                          q("post.nii.gz") + " --o " + q("other.nii.gz"));
    ASSERT_EQ(cleaned.status, 0) << cleaned.err;
    EXPECT_NE(cleaned.err.find("warning: clean: " + dir_.string() +
                               " holds 1 file other runs were writing or kept "
                               "aside (other.nii.gz.tmp-997.nii.gz)"),
              std::string::npos)
        << cleaned.err;
    // A refusal is still its one line.
    expect_refused("clean --labels 0,2,3,41,42 --seg " + q("seg.nii.gz") + " --post " + q("post.nii.gz") + " --o " +
                       q("seg.nii.gz"),
                   "is the same file as the input --seg");
    // Every command that writes says so (phantom, dice, export, import and priors said nothing).
    std::ofstream(path("map.nii.gz.tmp-996.nii.gz")) << "half";
    const test::RunResult phantom =
        test::run_command(test::cli_path() + " phantom --age-months 0 --out " + q("map.nii.gz"));
    ASSERT_EQ(phantom.status, 0) << phantom.err;
    EXPECT_NE(phantom.err.find("warning: phantom: " + dir_.string() +
                               " holds 1 file other runs were writing or kept aside (map.nii.gz.tmp-996.nii.gz)"),
              std::string::npos)
        << phantom.err;
}

TEST_F(SameFileCli, SynthAndPriorsRefuseToOverwriteTheirInputs) {
    fs::copy_file(path("seg.nii.gz"), path("labels_0000.nii.gz"));
    expect_refused("synth --labels " + q("labels_0000.nii.gz") + " --out " + q("") + " --count 1",
                   "is the same file as the input --labels");
    // Nor into the folder of maps it reads, under other names: a later --labels of it takes the
    // samples for maps.
    fs::create_directories(path("own"));
    fs::copy_file(path("seg.nii.gz"), path("own/map.nii.gz"));
    expect_refused("synth --labels " + q("own") + " --out " + q("own/.") + " --count 1 --shape 32",
                   "--out " + path("own/.") + " is the folder of label maps --labels reads");
    fs::create_directories(path("images"));
    fs::create_directories(path("maps"));
    fs::copy_file(path("scan.nii.gz"), path("images/s.nii.gz"));
    fs::copy_file(path("seg.nii.gz"), path("maps/s.nii.gz"));
    write_npy(path("prior_means.npy"), {2}, {0, 2});
    expect_refused("priors --images " + q("images") + " --labels " + q("maps") + " --out " + q("") +
                       " --labels-list " + q("prior_means.npy"),
                   "is the same file as the input --labels-list");
}

// An output reaching an input another way: synth's sample names linked to a label map (either
// way round; synth replaced the map with a sample), and predict's --vol on a Keras model's
// --labels file.
TEST_F(SameFileCli, OutputsLinkedToInputsAreRefused) {
    // In `maps` and `out`: the label map at `real` (relative), a link to it at `link`.
    auto linked = [&](const std::string& maps, const std::string& out, const std::string& real,
                      const std::string& link) {
        fs::create_directories(path(maps));
        fs::create_directories(path(out));
        fs::copy_file(path("seg.nii.gz"), path(real));
        fs::create_symlink("../" + real, path(link));
        expect_refused("synth --labels " + q(maps) + " --out " + q(out) + " --count 2 --shape 32",
                       "is the same file as the input --labels");
    };
    linked("maps", "out", "maps/m.nii.gz", "out/labels_0001.nii.gz");     // a sample name links to the map
    linked("maps2", "out2", "out2/labels_0000.nii.gz", "maps2/m.nii.gz");  // the map links to a sample

    ASSERT_EQ(test::run_command(test::cli_path() + " export --model " + q("model") + " --keras " + q("m.h5")).status,
              0);
    write_npy(path("labels.npy"), {2}, {0, 2});
    expect_refused("predict --device cpu --model " + q("m.h5") + " --labels " + q("labels.npy") + " --i " +
                       q("scan.nii.gz") + " --o " + q("o.nii.gz") + " --vol " + q("labels.npy"),
                   "is the same file as the input --labels");
}

// A killed run's temporary in a folder of maps is said once (synth lists the folder twice: to
// check its outputs, then to read the maps; it was said twice).
TEST_F(SameFileCli, SynthSaysAKilledRunsTemporaryOnce) {
    fs::create_directories(path("maps"));
    write_labels(path("maps/m.nii.gz"), make_phantom(0, 1));
    std::ofstream(path("maps/m.nii.gz.tmp-99999.nii.gz")) << "x";
    const test::RunResult r = test::run_command(test::cli_path() + " synth --labels " + q("maps") + " --out " + q("s") +
                                                " --shape 32 --device cpu");
    ASSERT_EQ(r.status, 0) << r.err;
    size_t said = 0;
    for (size_t at = r.err.find("unfinished output"); at != std::string::npos;
         at = r.err.find("unfinished output", at + 1))
        ++said;
    EXPECT_EQ(said, 1u) << r.err;
}

// synth's outputs that are one file through a link to a later sample, not written yet (a
// preview.png -> image_0001 link left sample 1 a PNG, exit 0), and the prior .npy files a
// --config names, which are inputs (replaced by a sample and the preview, exit 0).
TEST_F(SameFileCli, SynthOutputsLinkedToLaterSamplesAndConfigPriorsAreRefused) {
    const std::string synth = "synth --labels " + q("seg.nii.gz") + " --count 2 --shape 32 --out ";
    fs::create_directories(path("s1"));
    fs::create_symlink("image_0001.nii.gz", path("s1/preview.png"));
    expect_refused(synth + q("s1") + " --preview", "is the same file as the output --out");
    fs::create_directories(path("s2"));
    fs::create_symlink("labels_0000.nii.gz", path("s2/image_0001.nii.gz"));
    expect_refused(synth + q("s2"), "is the same file as the output --out");
    fs::create_directories(path("s3"));
    fs::create_symlink("labels_0001.nii.gz", path("s3/image_0000.nii.gz"));
    expect_refused(synth + q("s3"), "is the same file as the output --out");

    fs::create_directories(path("s4"));
    const size_t n = preset_config("infant-t1").generation_labels.size();
    write_npy(path("s4/preview.png"), {2, int64_t(n)}, std::vector<double>(2 * n, 50.0));
    write_npy(path("s4/image_0001.nii.gz"), {2, int64_t(n)}, std::vector<double>(2 * n, 5.0));
    std::ofstream(path("priors.json")) << R"({"prior_means": "s4/preview.png", "prior_stds": "s4/image_0001.nii.gz"})";
    expect_refused(synth + q("s4") + " --preview --config " + q("priors.json"),
                   "--out " + path("s4/preview.png") + " is the same file as the input --config's prior_means");
}

// /dev/stdout is this process's descriptor, written through where it stands: a pipe (its /proc
// link names no file: exit 2 before), or a file the shell opened with >> (it was replaced, and the
// earlier lines lost). The report line then goes to stderr, so the data stays clean.
TEST_F(SameFileCli, StandardOutputIsWrittenThroughNotReplaced) {
    const std::string dice = test::cli_path() + " dice --pred " + q("seg.nii.gz") + " --gt " + q("seg.nii.gz") +
                             " --out /dev/stdout";
    const test::RunResult piped = test::run_command(dice);
    ASSERT_EQ(piped.status, 0) << piped.err;
    EXPECT_EQ(piped.out.rfind("subject,dice_2", 0), 0u) << piped.out;
    EXPECT_EQ(piped.out.find("wrote"), std::string::npos) << "the report line is in the data: " << piped.out;
    EXPECT_NE(piped.err.find("wrote /dev/stdout"), std::string::npos) << piped.err;
    std::ofstream(path("all.csv")) << "old\n";
    const test::RunResult appended = test::run_command(dice + " >> " + q("all.csv"));
    ASSERT_EQ(appended.status, 0) << appended.err;
    EXPECT_EQ(test::read_text(path("all.csv")), "old\n" + piped.out);

    const test::RunResult equals = test::run_command(test::cli_path() + " dice --pred " + q("seg.nii.gz") +
                                                     " --gt " + q("seg.nii.gz") + " --out=/dev/stdout");
    ASSERT_EQ(equals.status, 0) << equals.err;
    EXPECT_EQ(equals.out, piped.out) << "--out=/dev/stdout: the report line is in the data";

    // Every command's report goes to stderr then: a NIfTI through a link to /dev/stdout is clean.
    fs::create_symlink("/dev/stdout", path("out.nii.gz"));
    const test::RunResult nifti =
        test::run_command(test::cli_path() + " phantom --age-months 0 --out " + q("out.nii.gz"));
    ASSERT_EQ(nifti.status, 0) << nifti.err;
    ASSERT_GE(nifti.out.size(), 2u);
    EXPECT_EQ(nifti.out.substr(0, 2), "\x1f\x8b") << "not gzip data alone";
    EXPECT_NE(nifti.err.find("wrote"), std::string::npos) << nifti.err;

    // A descriptor that is not open for writing is refused before any work.
    const test::RunResult closed = test::run_command(test::cli_path() + " dice --pred " + q("seg.nii.gz") +
                                                     " --gt " + q("seg.nii.gz") + " --out /dev/fd/9 9<&-");
    EXPECT_EQ(closed.status, 2) << closed.err;
    EXPECT_NE(closed.err.find("descriptor 9 is not open"), std::string::npos) << closed.err;
    std::ofstream(path("notes.txt")) << "a file opened for reading\n";
    const test::RunResult read_only = test::run_command(test::cli_path() + " dice --pred " + q("seg.nii.gz") +
                                                        " --gt " + q("seg.nii.gz") + " --out /dev/fd/9 9<" +
                                                        q("notes.txt"));
    EXPECT_EQ(read_only.status, 2) << read_only.err;
    EXPECT_NE(read_only.err.find("is open for reading only"), std::string::npos) << read_only.err;

    // A reader that closes early (| head) ends the writer by SIGPIPE (exit 141): its temporary goes
    // too. A 12-month map is several times the largest pipe buffer.
    fs::create_directories(path("tmp"));
    const test::RunResult piped_early = test::run_command(
        "bash -c " + test::shell_quote("set -o pipefail; TMPDIR=" + q("tmp") + " " + test::cli_path() +
                                       " phantom --age-months 12 --out " + q("out.nii.gz") +
                                       " | head -c 10 > /dev/null"));
    EXPECT_EQ(piped_early.status, 141) << piped_early.err;
    EXPECT_TRUE(files_in(path("tmp")).empty()) << "left: " << files_in(path("tmp")).front();
}

// nohup ignores SIGHUP: it stays ignored (the cleanup handler took it over, and synth stopped).
TEST_F(SameFileCli, AnIgnoredSighupStaysIgnored) {
    write_labels(path("map.nii.gz"), make_phantom(0, 1));
    // About two seconds of samples here, SIGHUP after 0.3 s (a run over by then fails the test).
    const std::string synth = test::cli_path() + " synth --device cpu --count 300 --shape 32 --labels " +
                              q("map.nii.gz") + " --out " + q("s");
    const test::RunResult r =
        test::run_command("trap '' HUP; " + synth + " & pid=$!; sleep 0.3; kill -HUP $pid || exit 99; wait $pid");
    EXPECT_NE(r.status, 99) << "synth ended before the signal: the test signalled nothing";
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(files_in(path("s")).size(), 600u);
}

// A file size limit (ulimit -f) is a failed write: exit 1 naming the file, no temporary left (the
// default SIGXFSZ killed the process and left them).
TEST_F(SameFileCli, AFileSizeLimitIsAFailedWrite) {
    write_labels(path("map.nii.gz"), make_phantom(0, 1));
    const test::RunResult r = test::run_command("ulimit -f 8; " + test::cli_path() +
                                                " synth --device cpu --count 2 --shape 64 --labels " +
                                                q("map.nii.gz") + " --out " + q("s"));
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_NE(r.err.find("File too large"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(path("s"))) << "a file or the folder left";
}

// --- commands: a run that fails leaves none of its outputs -------------------------------------

// OutputSet: what one run writes is all there or none of it, whichever of its writes fails.
TEST_F(Outputs, AFailedSetTakesBackWhatItMoved) {
    {
        OutputSet set;
        set.write(path("a.csv"), [&](const std::string& p) { write_csv(p, table()); });
        set.commit_so_far();
        EXPECT_TRUE(fs::exists(path("a.csv")));
        set.write(path("b.csv"), [&](const std::string& p) { write_csv(p, table()); });
        EXPECT_THROW(set.write(path("no/c.csv"), [&](const std::string& p) { write_csv(p, table()); }), InputError);
    }  // destroyed uncommitted: a.csv taken back, b.csv's temporary removed
    EXPECT_TRUE(entries().empty()) << "left: " << entries().front();
    OutputSet set;
    set.write(path("a.csv"), [&](const std::string& p) { write_csv(p, table()); });
    set.write("", [&](const std::string&) { FAIL() << "an output not asked for was written"; });
    try {
        set.write(path("bad.nii.gz"), [&](const std::string& p) { throw Error(p + ": cannot write: no space"); });
        FAIL() << "the writer's error was swallowed";
    } catch (const Error& e) {  // the user's name, not the temporary's
        EXPECT_EQ(std::string(e.what()), path("bad.nii.gz") + ": cannot write: no space");
    }
    set.commit();
    EXPECT_EQ(entries(), std::vector<std::string>{"a.csv"});
}

// A committed output is taken back only while its name still names the file moved in: a folder
// moved away during a checkpoint, and another made under its name, lost that one's files of the
// same names when the move that failed was taken back.
TEST_F(Outputs, TakingBackRemovesOnlyTheFileMovedIn) {
    const std::string file = path("moved-in.csv");
    std::ofstream(file) << "ours";
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0);
    const std::pair<uint64_t, uint64_t> ours{uint64_t(st.st_dev), uint64_t(st.st_ino)};
    fs::rename(file, path("elsewhere.csv"));
    std::ofstream(file) << "another's";
    remove_committed_output(file, &ours);
    EXPECT_EQ(test::read_text(file), "another's") << "another's file, taken back";
    fs::remove(file);
    fs::rename(path("elsewhere.csv"), file);
    remove_committed_output(file, &ours);
    EXPECT_FALSE(fs::exists(file)) << "its own file stays";
}

// The folders a command made are taken back when it fails (an exception unwinds past them), with
// the command's own files when nothing else is in them; they stay when it succeeds or keeps them.
TEST_F(Outputs, AFailedCommandTakesBackTheFoldersItMade) {
    auto fail_after = [&](const std::function<void(OutputDirectories&)>& work) {
        try {
            OutputDirectories folders;
            work(folders);
            throw Error("the command failed");
        } catch (const Error&) {
        }
    };
    fs::create_directories(path("had"));
    fail_after([&](OutputDirectories& f) {
        f.make(path("had/new/deeper/"));  // a trailing slash names the same folder
        f.make(path("had"));              // there before: not this command's
        f.own_file(path("had/new/deeper/.lock"));
        std::ofstream(path("had/new/deeper/.lock")) << "1";
    });
    EXPECT_TRUE(fs::exists(path("had")));
    EXPECT_FALSE(fs::exists(path("had/new"))) << "made, then emptied of its own file: taken back";

    fail_after([&](OutputDirectories& f) {
        f.make(path("out/sub"));
        f.own_file(path("out/sub/.lock"));
        std::ofstream(path("out/sub/.lock")) << "1";
        std::ofstream(path("out/sub/a user's file")) << "1";
    });
    EXPECT_TRUE(fs::exists(path("out/sub/.lock"))) << "a folder holding anything else keeps everything";
    EXPECT_TRUE(fs::exists(path("out/sub/a user's file")));
    fs::remove_all(path("out"));

    fail_after([&](OutputDirectories& f) {
        f.make(path("kept"));
        f.keep();
    });
    EXPECT_TRUE(fs::is_directory(path("kept")));

    // Moved away while the command ran, and another made under its name with the same file names
    // (a newer train's directory and lock): that one is not the command's to take back.
    fail_after([&](OutputDirectories& f) {
        f.make(path("moving"));
        f.own_file(path("moving/.lock"));
        std::ofstream(path("moving/.lock")) << "1";
        fs::rename(path("moving"), path("moved"));
        fs::create_directories(path("moving"));
        std::ofstream(path("moving/.lock")) << "another's";
    });
    EXPECT_TRUE(fs::exists(path("moving/.lock"))) << "another folder under its name, taken back";
    EXPECT_TRUE(fs::exists(path("moved/.lock")));
    {
        OutputDirectories folders;  // success: even an empty folder stays
        folders.make(path("empty"));
    }
    EXPECT_TRUE(fs::is_directory(path("empty")));
    std::ofstream(path("file")) << "1";
    OutputDirectories folders;
    EXPECT_THROW(folders.make(path("file")), InputError);
}

TEST_F(SameFileCli, AFailedWriteLeavesNoneOfTheRunsOutputs) {
    // synth: every sample and the picture, or none. INFANT_FAULT_OUTPUT=k fails the k-th file the
    // process moves into place (a sample's files are moved twice: by the writer, then the set).
    write_labels(path("map.nii.gz"), make_phantom(0, 1));
    const std::string synth = test::cli_path() + " synth --device cpu --count 2 --shape 32 --preview --labels " +
                              q("map.nii.gz") + " --out " + q("synth");
    int failures = 0;
    for (int k = 1; k <= 12; ++k) {
        SCOPED_TRACE("synth, fault at " + std::to_string(k));
        fs::remove_all(path("synth"));
        const test::RunResult r = test::run_command("INFANT_FAULT_OUTPUT=" + std::to_string(k) + " " + synth);
        const std::vector<std::string> left = files_in(path("synth"));
        if (r.status == 0) {
            EXPECT_EQ(left.size(), 5u);
            continue;
        }
        ++failures;
        EXPECT_EQ(r.status, 1) << r.err;
        EXPECT_TRUE(left.empty()) << "left: " << left.front();
        EXPECT_FALSE(fs::exists(path("synth"))) << "the folder it made stayed, empty";
    }
    EXPECT_GE(failures, 9) << "2 samples and a picture: 10 moves (by each writer, then the set)";

    // predict of one file: the segmentation, posteriors, resampled image and volumes, or none.
    const std::string predict = test::cli_path() + " predict --device cpu --model " + q("model") + " --i " +
                                q("scan.nii.gz") + " --o " + q("p/seg.nii.gz") + " --post " + q("p/post.nii.gz") +
                                " --resample " + q("p/res.nii.gz") + " --vol " + q("p/vol.csv");
    failures = 0;
    for (int k = 1; k <= 10; ++k) {
        SCOPED_TRACE("predict, fault at " + std::to_string(k));
        fs::remove_all(path("p"));
        fs::create_directories(path("p"));
        const test::RunResult r = test::run_command("INFANT_FAULT_OUTPUT=" + std::to_string(k) + " " + predict);
        const std::vector<std::string> left = files_in(path("p"));
        if (r.status == 0) {
            EXPECT_EQ(left.size(), 4u);
            EXPECT_NE(r.out.find(" -> "), std::string::npos) << r.out;
            continue;
        }
        ++failures;
        EXPECT_EQ(r.status, 1) << r.err;
        EXPECT_TRUE(left.empty()) << "left: " << left.front();
        EXPECT_EQ(r.out.find(" -> "), std::string::npos) << "said written: " << r.out;
    }
    EXPECT_GE(failures, 8) << "four outputs: 8 moves, each failed in turn";
}

// The bytes of every file in `dir`, by name.
std::map<std::string, std::string> contents(const fs::path& dir) {
    std::map<std::string, std::string> files;
    for (const auto& e : fs::directory_iterator(dir)) files[e.path().filename().string()] = test::read_text(e.path());
    return files;
}

// A run that fails over an earlier run's files puts them back as they were (it used to leave
// its own new samples beside the old ones, and then, taking its own back, gaps).
// Where no hard link can be made (INFANT_NO_HARD_LINKS: another user's file under
// fs.protected_hardlinks), the replaced file is moved aside instead (it used to be deleted).
TEST_F(SameFileCli, AFailedRunPutsBackTheFilesItReplaced) {
    write_labels(path("map.nii.gz"), make_phantom(0, 1));
    const std::string synth = test::cli_path() + " synth --device cpu --count 2 --shape 32 --labels " +
                              q("map.nii.gz") + " --out " + q("synth");
    ASSERT_EQ(test::run_command(synth + " --seed 1").status, 0);
    const std::map<std::string, std::string> before = contents(path("synth"));
    ASSERT_EQ(before.size(), 4u);
    int failures = 0;
    for (const char* links : {"", "INFANT_NO_HARD_LINKS=1 "})
        for (int k = 1; k <= 8; ++k) {
            SCOPED_TRACE(links + std::string("fault at ") + std::to_string(k));
            const test::RunResult r =
                test::run_command(links + std::string("INFANT_FAULT_OUTPUT=") + std::to_string(k) + " " + synth +
                                  " --seed 2");
            ASSERT_EQ(r.status, 1) << r.err;
            ++failures;
            EXPECT_TRUE(contents(path("synth")) == before) << "the earlier run's files changed";
        }
    EXPECT_EQ(failures, 16);
    ASSERT_EQ(test::run_command(synth + " --seed 2").status, 0);
    EXPECT_FALSE(contents(path("synth")) == before) << "the new run replaces them when it succeeds";
    EXPECT_EQ(contents(path("synth")).size(), 4u) << "no file of the earlier run kept aside";
}

// SIGINT stops synth once the sample in hand is written: exit 130, every image with its labels,
// no temporary left, and a line saying how many samples were written.
TEST_F(SameFileCli, SynthStoppedBySigintKeepsWholeSamples) {
    write_labels(path("map.nii.gz"), make_phantom(0, 1));
    const std::string err_file = path("stderr.txt");
    auto start = [&](const std::string& out, const char* shape) {
        const pid_t child = ::fork();
        if (child != 0) return child;
        ::signal(SIGINT, SIG_DFL);  // the runner's dispositions are not a shell's
        if (!std::freopen(err_file.c_str(), "w", stderr) || !std::freopen("/dev/null", "w", stdout)) ::_exit(127);
        const std::string cli = test::cli_path(), map = path("map.nii.gz");
        ::execl(cli.c_str(), cli.c_str(), "synth", "--device", "cpu", "--count", "100000", "--shape", shape, "--labels",
                map.c_str(), "--out", out.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    };
    const pid_t pid = start(path("synth"), "32");
    ASSERT_GE(pid, 0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!fs::exists(path("synth/labels_0001.nii.gz")) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_EQ(::kill(pid, SIGINT), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 130);
    const std::string err = test::read_text(err_file);
    EXPECT_NE(err.find("stopped by SIGINT after "), std::string::npos) << err;
    EXPECT_NE(err.find("; the same options with --first "), std::string::npos) << "how to go on: " << err;
    int images = 0;
    for (const std::string& name : files_in(path("synth"))) {
        EXPECT_EQ(name.find(".tmp-"), std::string::npos) << name;
        if (name.rfind("image_", 0) != 0) continue;
        ++images;
        EXPECT_TRUE(fs::exists(path("synth/labels_" + name.substr(6)))) << name << " without its labels";
    }
    EXPECT_GE(images, 2);

    // A second signal, 10 ms after the first within a sample of a larger crop, ends it at once
    // and says what stays (it said nothing).
    const pid_t twice = start(path("twice"), "128");
    ASSERT_GE(twice, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ASSERT_EQ(::kill(twice, SIGTERM), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(::kill(twice, SIGHUP), 0);
    ASSERT_EQ(::waitpid(twice, &status, 0), twice);
    if (WIFEXITED(status))
        GTEST_SKIP() << "the sample in hand was done within 10 ms: " << WEXITSTATUS(status) << " "
                     << test::read_text(err_file);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGHUP) << status;
    EXPECT_NE(test::read_text(err_file).find("infant-synthseg synth: ended at once by a second signal: "),
              std::string::npos)
        << test::read_text(err_file);
}

// An output that is a link to a full device: the write fails (exit 1, the system's reason), the
// device is left as it is, and nothing else of the run stays.
TEST_F(SameFileCli, AnOutputLinkedToAFullDeviceFailsTheWrite) {
    if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no writable /dev/full here";
    fs::create_symlink("/dev/full", path("full.nii.gz"));
    fs::create_symlink("/dev/full", path("full.csv"));
    const std::string predict = test::cli_path() + " predict --device cpu --model " + q("model") + " --i " +
                                q("scan.nii.gz") + " --o ";
    const std::string clean = test::cli_path() + " clean --labels 0,2,3,41,42 --seg " + q("seg.nii.gz") + " --post " +
                              q("post.nii.gz") + " --o " + q("full.nii.gz");
    for (const std::string& run :
         {predict + q("full.nii.gz"), predict + q("seg_out.nii.gz") + " --vol " + q("full.csv"), clean}) {
        SCOPED_TRACE(run);
        const test::RunResult r = test::run_command(run);
        EXPECT_EQ(r.status, 1) << r.err;
        EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
        EXPECT_FALSE(fs::exists(path("seg_out.nii.gz")));
        EXPECT_TRUE(fs::is_symlink(path("full.nii.gz")));
    }
}

}  // namespace
}  // namespace iss
