// Zip archives: what Keras 3's `.keras` model files are (config.json, metadata.json and
// model.weights.h5, written by Python's zipfile). Only what such files need: one disk, stored or
// deflated members, no encryption, no zip64 (archives under 4 GB). Written stored.
//
// The archive is untrusted: the central directory is read and every entry checked against the
// file's size before anything is allocated; a member's local header must agree with its entry,
// its data must lie before the directory, its size is bounded by the caller before it is read,
// and its CRC-32 must match. Any failure is an InputError naming the archive (and the member).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace iss {

class ZipReader {
public:
    struct Member {
        std::string name;
        uint16_t method = 0;  // 0 stored, 8 deflated
        uint16_t flags = 0;
        uint32_t crc = 0;
        uint64_t compressed_size = 0, size = 0;
        uint64_t local_header = 0;  // offset of its local header
    };

    // Reads and checks the central directory. InputError when `path` is not a zip archive, is
    // damaged or truncated, spans several disks, is zip64, or lists a name twice.
    explicit ZipReader(const std::string& path);
    ~ZipReader();
    ZipReader(const ZipReader&) = delete;
    ZipReader& operator=(const ZipReader&) = delete;

    const std::string& path() const { return path_; }
    const std::vector<Member>& members() const { return members_; }
    const Member* find(const std::string& name) const;

    // The bytes of member `name`: InputError when it is absent, larger than `max_bytes`,
    // encrypted, compressed otherwise than stored or deflated, damaged, or its CRC-32 differs.
    std::vector<uint8_t> read(const std::string& name, uint64_t max_bytes) const;

private:
    std::vector<uint8_t> bytes_at(uint64_t offset, uint64_t count, const std::string& what) const;

    struct Close {
        void operator()(std::FILE* f) const;
    };
    std::string path_;
    std::unique_ptr<std::FILE, Close> file_;
    uint64_t file_size_ = 0;
    uint64_t directory_start_ = 0;  // members' data lie before it
    std::vector<Member> members_;
};

// One member of an archive to write.
struct ZipMember {
    std::string name;
    std::vector<uint8_t> data;
};

// Writes `members`, in order, as a zip archive at `path`: stored, as Keras 3 writes its `.keras`
// files, dated 1980-01-01 (zip's earliest date, which Python's zipfile gives a member written
// through ZipFile.open(name, "w"), as Keras writes its JSON members), so that the same members
// give the same file. Through a temporary name renamed when
// complete (AtomicWriter). iss::Error when a member or the archive reaches 4 GB: zip64 is not
// written.
void write_zip(const std::string& path, const std::vector<ZipMember>& members);

// Whether the file starts as a zip archive does ("PK\3\4"; an empty archive "PK\5\6").
bool looks_like_zip(const std::string& path);

}  // namespace iss
