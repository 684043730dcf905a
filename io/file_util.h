// Small file helpers shared by the writers: outputs go to a temporary name beside the target
// and are renamed only when complete, so a failed write never leaves a partial file.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace iss {

// "<path>.tmp-<pid>": same directory, so the final rename is atomic.
std::string temporary_path_for(const std::string& path);

// Renames `temp` to `path`; on failure removes `temp` and throws InputError naming `path`.
void commit_temporary(const std::string& temp, const std::string& path);

// A binary output file written through a temporary name. Every write is checked; commit()
// closes and renames; destruction without commit() removes the temporary file.
class AtomicWriter {
public:
    explicit AtomicWriter(const std::string& path);
    ~AtomicWriter();
    AtomicWriter(const AtomicWriter&) = delete;
    AtomicWriter& operator=(const AtomicWriter&) = delete;

    void write(const void* data, size_t bytes);
    void commit();

private:
    std::string path_, temp_;
    FILE* file_ = nullptr;
};

// True when `path` names an existing regular file; InputError naming it when it does not
// exist or is a directory.
void require_regular_file(const std::string& path);

bool ends_with(const std::string& text, const std::string& suffix);

// The NIfTI files a path names: the file itself, or every *.nii / *.nii.gz in a directory,
// sorted by name. InputError naming the path when it does not exist or a directory has none.
std::vector<std::string> nifti_files(const std::string& path);

// mkdir -p; InputError naming the directory when it cannot be made.
void make_directories(const std::string& dir);

}  // namespace iss
