#include "io/file_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "kernels/common/error.h"

namespace iss {

namespace {

// The registry of temporary outputs that exist right now, for the signal handler: fixed slots
// (no allocation in a handler), each a path and a flag published after it.
constexpr int kSlots = 64;
constexpr size_t kSlotBytes = 4096;
char slot_path[kSlots][kSlotBytes];
std::atomic<bool> slot_used[kSlots];

int register_temporary(const std::string& path) {
    if (path.size() >= kSlotBytes) return -1;
    for (int i = 0; i < kSlots; ++i) {
        bool expected = false;
        if (slot_used[i].load(std::memory_order_acquire)) continue;
        std::memcpy(slot_path[i], path.c_str(), path.size() + 1);
        if (slot_used[i].compare_exchange_strong(expected, true, std::memory_order_acq_rel)) return i;
    }
    return -1;  // more than kSlots at once: not removed on a signal, still removed normally
}

void unregister_temporary(int slot) {
    if (slot >= 0) slot_used[slot].store(false, std::memory_order_release);
}

extern "C" void remove_temporaries_and_die(int signal) {
    for (int i = 0; i < kSlots; ++i)
        if (slot_used[i].load(std::memory_order_acquire)) ::unlink(slot_path[i]);
    std::signal(signal, SIG_DFL);
    std::raise(signal);
}

// Follows symbolic links (chains too, relative ones from their own directory) to the path that
// a write should replace; a dangling link gives the file it names.
std::string resolve_links(const std::string& path) {
    namespace fs = std::filesystem;
    fs::path p = path;
    std::error_code ec;
    for (int hops = 0; hops < 40 && fs::is_symlink(fs::symlink_status(p, ec)); ++hops) {
        const fs::path target = fs::read_symlink(p, ec);
        if (ec) break;
        p = target.is_absolute() ? target : p.parent_path() / target;
    }
    return p.string();
}

}  // namespace

[[noreturn]] void throw_output_error(const std::string& path, int err, const std::string& what) {
    const std::string message = cat(path, ": ", what, ": ", std::strerror(err));
    switch (err) {
        case ENOENT:
        case ENOTDIR:
        case EACCES:
        case EPERM:
        case EROFS:
        case EISDIR:
        case ENAMETOOLONG:
        case ELOOP: throw InputError(message);
        default: throw Error(message);
    }
}

void install_output_cleanup_on_signals() {
    struct sigaction action {};
    action.sa_handler = remove_temporaries_and_die;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
}

OutputFile::OutputFile(const std::string& path, const std::string& suffix) : path_(path) {
    target_ = resolve_links(path);
    struct stat info {};
    direct_ = ::stat(target_.c_str(), &info) == 0 && !S_ISREG(info.st_mode);
    ISS_INPUT(!(direct_ && S_ISDIR(info.st_mode)), path_, ": is a directory, expected a file name");
    write_path_ = direct_ ? target_ : cat(target_, ".tmp-", ::getpid(), suffix);
    if (!direct_) slot_ = register_temporary(write_path_);
}

OutputFile::~OutputFile() { discard(); }

void OutputFile::commit() {
    ISS_REQUIRE(!done_, "output ", path_, " committed twice");
    done_ = true;
    unregister_temporary(slot_);
    if (direct_) return;
    if (std::rename(write_path_.c_str(), target_.c_str()) != 0) {
        const int err = errno;
        ::unlink(write_path_.c_str());
        throw_output_error(path_, err, "cannot move the finished file into place");
    }
}

void OutputFile::discard() noexcept {
    if (done_) return;
    done_ = true;
    if (!direct_) ::unlink(write_path_.c_str());
    unregister_temporary(slot_);
}

AtomicWriter::AtomicWriter(const std::string& path) : output_(path) {
    file_ = std::fopen(output_.write_path().c_str(), "wb");
    if (!file_) throw_output_error(path, errno, "cannot write");
}

AtomicWriter::~AtomicWriter() {
    if (file_) std::fclose(file_);
}

void AtomicWriter::write(const void* data, size_t bytes) {
    ISS_REQUIRE(file_, "write after commit to ", output_.path());
    if (bytes > 0 && std::fwrite(data, 1, bytes, file_) != bytes) throw_output_error(output_.path(), errno, "write failed");
}

void AtomicWriter::commit() {
    ISS_REQUIRE(file_, "commit twice to ", output_.path());
    const bool flushed = std::fflush(file_) == 0;
    const int saved_errno = errno;
    const bool closed = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!flushed || !closed) throw_output_error(output_.path(), flushed ? errno : saved_errno, "write failed");
    output_.commit();
}

void require_regular_file(const std::string& path) {
    struct stat info {};
    ISS_INPUT(::stat(path.c_str(), &info) == 0, path, ": cannot open: ", std::strerror(errno));
    ISS_INPUT(!S_ISDIR(info.st_mode), path, ": is a directory, expected a file");
    ISS_INPUT(S_ISREG(info.st_mode), path, ": is not a regular file (a FIFO or a device?), expected a file");
}

std::vector<std::string> nifti_files(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(path, ec)) {
        require_regular_file(path);
        return {path};
    }
    std::vector<std::string> files;
    for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
        const std::string name = entry.path().filename().string();
        if ((ends_with(name, ".nii") || ends_with(name, ".nii.gz")) && entry.is_regular_file(ec))
            files.push_back(entry.path().string());
    }
    ISS_INPUT(!ec, path, ": cannot list: ", ec.message());
    ISS_INPUT(!files.empty(), path, ": no NIfTI files (*.nii, *.nii.gz) in this directory");
    std::sort(files.begin(), files.end());
    return files;
}

void make_directories(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(dir, ec)) return;
    ISS_INPUT(!fs::exists(dir, ec), dir, ": exists and is not a directory");
    fs::create_directories(dir, ec);
    ISS_INPUT(!ec, dir, ": cannot create directory: ", ec.message());
}

bool ends_with(const std::string& text, const std::string& suffix) {
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace iss
