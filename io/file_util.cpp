#include "io/file_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <cstring>

#include "kernels/common/error.h"

namespace iss {

std::string temporary_path_for(const std::string& path) { return cat(path, ".tmp-", getpid()); }

void commit_temporary(const std::string& temp, const std::string& path) {
    if (std::rename(temp.c_str(), path.c_str()) != 0) {
        const std::string reason = std::strerror(errno);
        std::remove(temp.c_str());
        throw InputError(cat(path, ": cannot write: ", reason));
    }
}

AtomicWriter::AtomicWriter(const std::string& path) : path_(path), temp_(temporary_path_for(path)) {
    file_ = std::fopen(temp_.c_str(), "wb");
    if (!file_) throw InputError(cat(path_, ": cannot write: ", std::strerror(errno)));
}

AtomicWriter::~AtomicWriter() {
    if (file_) {
        std::fclose(file_);
        std::remove(temp_.c_str());
    }
}

void AtomicWriter::write(const void* data, size_t bytes) {
    ISS_REQUIRE(file_, "write after commit to ", path_);
    if (bytes > 0 && std::fwrite(data, 1, bytes, file_) != bytes)
        throw InputError(cat(path_, ": write failed: ", std::strerror(errno)));
}

void AtomicWriter::commit() {
    ISS_REQUIRE(file_, "commit twice to ", path_);
    const bool flushed = std::fflush(file_) == 0;
    const int saved_errno = errno;
    const bool closed = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!flushed || !closed) {
        std::remove(temp_.c_str());
        throw InputError(cat(path_, ": write failed: ", std::strerror(flushed ? errno : saved_errno)));
    }
    commit_temporary(temp_, path_);
}

void require_regular_file(const std::string& path) {
    struct stat info {};
    ISS_INPUT(::stat(path.c_str(), &info) == 0, path, ": cannot open: ", std::strerror(errno));
    ISS_INPUT(!S_ISDIR(info.st_mode), path, ": is a directory, expected a file");
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
