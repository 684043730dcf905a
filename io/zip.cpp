#include "io/zip.h"

#include <sys/types.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

#include "io/file_util.h"
#include "kernels/common/error.h"

namespace iss {
namespace {

// The records' signatures and fixed sizes (PKWARE's APPNOTE, sections 4.3.7, 4.3.12, 4.3.16).
constexpr uint32_t kLocalSignature = 0x04034b50, kCentralSignature = 0x02014b50, kEndSignature = 0x06054b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr uint64_t kZip64LocatorBytes = 20;
constexpr uint64_t kLocalBytes = 30, kCentralBytes = 46, kEndBytes = 22;
constexpr uint64_t kMaxComment = 0xffff;
// Keras writes three members; Python's zipfile needs 46 bytes and a name a member.
constexpr uint64_t kMaxDirectoryBytes = uint64_t(64) << 20;
constexpr uint16_t kEncrypted = 1, kStored = 0, kDeflated = 8;
constexpr uint64_t kMaxDeflateRatio = 1032;

uint16_t u16(const uint8_t* p) {
    return uint16_t(p[0] | p[1] << 8);
}
uint32_t u32(const uint8_t* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

uint32_t crc_of(const std::vector<uint8_t>& bytes) {
    uLong crc = crc32(0L, Z_NULL, 0);
    constexpr size_t chunk = size_t(1) << 30;  // zlib takes a uInt length
    for (size_t at = 0; at < bytes.size(); at += chunk)
        crc = crc32(crc, bytes.data() + at, uInt(std::min(chunk, bytes.size() - at)));
    return uint32_t(crc);
}

// Raw deflate (no zlib header, as zip stores it) to exactly `size` bytes.
std::vector<uint8_t> inflate_exactly(const std::vector<uint8_t>& compressed, uint64_t size, const std::string& where) {
    std::vector<uint8_t> out(size_t(size), 0);
    z_stream stream{};
    ISS_REQUIRE(inflateInit2(&stream, -MAX_WBITS) == Z_OK, "zlib: cannot start inflating");
    stream.next_in = const_cast<Bytef*>(compressed.data());
    stream.avail_in = uInt(compressed.size());  // below 4 GB: no zip64
    // One spare byte: a stream that inflates to more than `size` fills it instead of stopping
    // where `size` ends.
    uint8_t spare = 0;
    stream.next_out = out.empty() ? &spare : out.data();
    stream.avail_out = uInt(out.size());
    int status = inflate(&stream, Z_FINISH);
    if ((status == Z_BUF_ERROR || status == Z_OK) && stream.avail_out == 0 && stream.total_out == size) {
        stream.next_out = &spare;
        stream.avail_out = 1;
        status = inflate(&stream, Z_FINISH);
    }
    const uint64_t produced = stream.total_out;
    inflateEnd(&stream);
    ISS_INPUT(status == Z_STREAM_END && produced == size, where, ": its deflated data is damaged (inflates to ",
              status == Z_STREAM_END ? cat(produced, " bytes") : std::string("an error"), ", ", size, " recorded)");
    return out;
}

}  // namespace

void ZipReader::Close::operator()(std::FILE* f) const {
    std::fclose(f);
}

void write_zip(const std::string& path, const std::vector<ZipMember>& members) {
    constexpr uint16_t kVersion = 20;  // 2.0: stored members, no zip64
    constexpr uint16_t kMadeOnUnix = 3 << 8 | kVersion;
    constexpr uint16_t kFirstDate = 1 << 5 | 1;     // 1980-01-01 (years from 1980, month, day)
    constexpr uint32_t kReadable = 0100644u << 16;  // a regular file, rw-r--r--, as unzip restores it
    constexpr uint64_t kLimit = 0xffffffffu;
    auto put = [](std::vector<uint8_t>& to, uint64_t value, int bytes) {
        for (int b = 0; b < bytes; ++b) to.push_back(uint8_t(value >> (8 * b)));
    };
    AtomicWriter file(path);
    std::vector<uint8_t> directory;
    uint64_t written = 0;
    for (const ZipMember& m : members) {
        ISS_REQUIRE(!m.name.empty() && m.name.size() <= 0xffff, path, ": member name of ", m.name.size(), " bytes");
        ISS_REQUIRE(m.data.size() < kLimit && written + kLocalBytes + m.name.size() + m.data.size() < kLimit, path,
                    ": member ", m.name, " would take the archive past 4 GB (zip64 is not written)");
        const uint32_t crc = crc_of(m.data);
        // What the local header and the directory entry share: version, flags, method, time,
        // date, CRC, both sizes, the name's and the extra field's lengths.
        auto common = [&](std::vector<uint8_t>& to) {
            put(to, kVersion, 2);
            put(to, 0, 2);
            put(to, kStored, 2);
            put(to, 0, 2);
            put(to, kFirstDate, 2);
            put(to, crc, 4);
            put(to, m.data.size(), 4);
            put(to, m.data.size(), 4);
            put(to, m.name.size(), 2);
            put(to, 0, 2);
        };
        std::vector<uint8_t> local;
        put(local, kLocalSignature, 4);
        common(local);
        local.insert(local.end(), m.name.begin(), m.name.end());
        put(directory, kCentralSignature, 4);
        put(directory, kMadeOnUnix, 2);
        common(directory);
        put(directory, 0, 2);  // comment
        put(directory, 0, 2);  // disk
        put(directory, 0, 2);  // internal attributes
        put(directory, kReadable, 4);
        put(directory, written, 4);
        directory.insert(directory.end(), m.name.begin(), m.name.end());
        file.write(local.data(), local.size());
        file.write(m.data.data(), m.data.size());
        written += local.size() + m.data.size();
    }
    ISS_REQUIRE(members.size() < 0xffff && written + directory.size() + kEndBytes < kLimit, path,
                ": the archive would reach 4 GB or 65535 members (zip64 is not written)");
    const uint64_t entries_bytes = directory.size();
    put(directory, kEndSignature, 4);
    put(directory, 0, 2);  // this disk
    put(directory, 0, 2);  // the directory's disk
    put(directory, members.size(), 2);
    put(directory, members.size(), 2);
    put(directory, entries_bytes, 4);
    put(directory, written, 4);
    put(directory, 0, 2);  // comment
    file.write(directory.data(), directory.size());
    file.commit();
}

bool looks_like_zip(const std::string& path) {
    const std::string magic = file_prefix(path, 4);
    return magic == "PK\3\4" || magic == "PK\5\6";
}

ZipReader::ZipReader(const std::string& path) : path_(path) {
    require_regular_file(path);
    file_.reset(std::fopen(path.c_str(), "rb"));
    ISS_INPUT(file_ != nullptr, path, ": cannot open (", std::strerror(errno), ")");
    ISS_INPUT(fseeko(file_.get(), 0, SEEK_END) == 0, path, ": cannot be read (", std::strerror(errno), ")");
    file_size_ = uint64_t(std::max<off_t>(ftello(file_.get()), 0));
    ISS_INPUT(file_size_ >= kEndBytes, path, ": not a zip archive (", file_size_, " bytes)");

    // The end record: the last signature in the tail whose record, comment included, fits the file.
    const uint64_t tail_bytes = std::min(file_size_, kEndBytes + kMaxComment);
    const std::vector<uint8_t> tail = bytes_at(file_size_ - tail_bytes, tail_bytes, "its end");
    int64_t end = -1;
    for (int64_t at = int64_t(tail_bytes - kEndBytes); at >= 0 && end < 0; --at)
        if (u32(&tail[size_t(at)]) == kEndSignature &&
            uint64_t(at) + kEndBytes + u16(&tail[size_t(at) + 20]) <= tail_bytes)
            end = at;
    ISS_INPUT(end >= 0, path, ": not a zip archive (no end of central directory record)");
    const uint8_t* record = &tail[size_t(end)];
    const uint64_t end_offset = file_size_ - tail_bytes + uint64_t(end);
    const uint16_t disk = u16(record + 4), directory_disk = u16(record + 6);
    const uint16_t entries_here = u16(record + 8), entries = u16(record + 10);
    const uint64_t directory_bytes = u32(record + 12), directory_offset = u32(record + 16);
    // Python's zipfile writes a zip64 end record and its locator before this one when the
    // directory lies past 2 GB or the members are too many; the fields here may then be exact.
    const bool zip64_locator =
        end_offset >= kZip64LocatorBytes &&
        u32(bytes_at(end_offset - kZip64LocatorBytes, 4, "its zip64 locator").data()) == kZip64LocatorSignature;
    ISS_INPUT(!zip64_locator && entries != 0xffff && directory_bytes != 0xffffffff && directory_offset != 0xffffffff,
              path, ": a zip64 archive (over 2 GB or 65535 members), which this program does not read");
    ISS_INPUT(disk == 0 && directory_disk == 0 && entries_here == entries, path,
              ": a zip archive split over several disks, which this program does not read");
    // Python's zipfile writes the directory right before the end record; data prepended to the
    // archive (a self-extractor) would shift every offset, and is refused.
    ISS_INPUT(directory_offset <= end_offset && directory_bytes == end_offset - directory_offset, path,
              ": damaged zip archive (its central directory does not end where the end record begins)");
    ISS_INPUT(directory_bytes <= kMaxDirectoryBytes, path, ": zip central directory of ", directory_bytes,
              " bytes, more than ", kMaxDirectoryBytes);
    ISS_INPUT(directory_bytes >= uint64_t(entries) * kCentralBytes, path, ": damaged zip archive (", entries,
              " members in a central directory of ", directory_bytes, " bytes)");
    directory_start_ = directory_offset;

    const std::vector<uint8_t> directory = bytes_at(directory_offset, directory_bytes, "its central directory");
    std::set<std::string> names;
    uint64_t at = 0;
    for (uint16_t e = 0; e < entries; ++e) {
        const std::string entry = cat(path, ": zip central directory entry ", e);
        ISS_INPUT(directory_bytes - at >= kCentralBytes && u32(&directory[size_t(at)]) == kCentralSignature, entry,
                  " is damaged");
        const uint8_t* p = &directory[size_t(at)];
        const uint64_t name_bytes = u16(p + 28), extra_bytes = u16(p + 30), comment_bytes = u16(p + 32);
        const uint64_t record_bytes = kCentralBytes + name_bytes + extra_bytes + comment_bytes;
        ISS_INPUT(record_bytes <= directory_bytes - at, entry, " runs past the directory");
        Member m;
        m.name.assign(reinterpret_cast<const char*>(p + kCentralBytes), size_t(name_bytes));
        m.flags = u16(p + 8);
        m.method = u16(p + 10);
        m.crc = u32(p + 16);
        m.compressed_size = u32(p + 20);
        m.size = u32(p + 24);
        m.local_header = u32(p + 42);
        // Names go into messages, which are one line each.
        const bool printable = std::none_of(m.name.begin(), m.name.end(),
                                            [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
        ISS_INPUT(!m.name.empty() && printable, entry, " has an empty name or one with control characters");
        const std::string member = cat(path, ": member ", m.name);
        ISS_INPUT(m.compressed_size != 0xffffffff && m.size != 0xffffffff && m.local_header != 0xffffffff, member,
                  " is stored as zip64 (Python's zipfile does so past 2 GB), which this program does not read");
        ISS_INPUT(u16(p + 34) == 0, member, " lies on another disk");
        ISS_INPUT(m.local_header < directory_start_, member, " starts past the archive's data");
        ISS_INPUT(names.insert(m.name).second, path, ": the zip archive lists ", m.name, " twice");
        members_.push_back(std::move(m));
        at += record_bytes;
    }
}

ZipReader::~ZipReader() = default;

const ZipReader::Member* ZipReader::find(const std::string& name) const {
    for (const Member& m : members_)
        if (m.name == name) return &m;
    return nullptr;
}

std::vector<uint8_t> ZipReader::read(const std::string& name, uint64_t max_bytes) const {
    const Member* m = find(name);
    ISS_INPUT(m != nullptr, path_, ": the zip archive has no member ", name);
    const std::string where = cat(path_, ": member ", name);
    ISS_INPUT(!(m->flags & kEncrypted), where, " is encrypted");
    ISS_INPUT(m->method == kStored || m->method == kDeflated, where, " is compressed with method ", m->method,
              " (only stored and deflated members are read)");
    ISS_INPUT(m->size <= max_bytes, where, " holds ", m->size, " bytes, more than the ", max_bytes,
              " such a member may hold");
    ISS_INPUT(m->method != kStored || m->compressed_size == m->size, where, " is stored with ", m->compressed_size,
              " bytes for ", m->size);
    // Deflate gives at most 1032 bytes a compressed byte: a larger claim is refused before its
    // buffer is allocated.
    ISS_INPUT(m->method != kDeflated || m->size <= m->compressed_size * kMaxDeflateRatio + 64, where, " claims ",
              m->size, " bytes from ", m->compressed_size, " deflated ones, more than deflate gives");
    // And deflate adds less than a 3000th to what it cannot compress (zlib's deflateBound).
    ISS_INPUT(m->compressed_size <= max_bytes + max_bytes / 3000 + 64, where, " holds ", m->compressed_size,
              " compressed bytes, more than a member of the ", max_bytes, " expected needs");

    // Its local header must name the same member with the same method; with flag bit 3 its
    // sizes and CRC follow the data instead, so the directory's are the ones used.
    ISS_INPUT(directory_start_ - m->local_header >= kLocalBytes, where, ": its local header runs past the data");
    const std::vector<uint8_t> local = bytes_at(m->local_header, kLocalBytes, cat("member ", name, "'s local header"));
    ISS_INPUT(u32(local.data()) == kLocalSignature, where, ": no local header at byte ", m->local_header);
    const uint64_t name_bytes = u16(&local[26]), extra_bytes = u16(&local[28]);
    const uint64_t data_start = m->local_header + kLocalBytes + name_bytes + extra_bytes;
    ISS_INPUT(data_start <= directory_start_ && m->compressed_size <= directory_start_ - data_start, where,
              ": its data runs past the archive's data");
    const std::vector<uint8_t> local_name = bytes_at(m->local_header + kLocalBytes, name_bytes, "a local header");
    ISS_INPUT(std::string(local_name.begin(), local_name.end()) == name && u16(&local[8]) == m->method, where,
              ": its local header differs from the central directory");

    std::vector<uint8_t> data = bytes_at(data_start, m->compressed_size, cat("member ", name));
    if (m->method == kDeflated) data = inflate_exactly(data, m->size, where);
    ISS_INPUT(crc_of(data) == m->crc, where, ": CRC-32 mismatch (a damaged archive)");
    return data;
}

std::vector<uint8_t> ZipReader::bytes_at(uint64_t offset, uint64_t count, const std::string& what) const {
    ISS_INPUT(offset <= file_size_ && count <= file_size_ - offset, path_, ": ", what, " lies outside the file");
    std::vector<uint8_t> bytes(size_t(count), 0);
    const bool read = count == 0 || (fseeko(file_.get(), off_t(offset), SEEK_SET) == 0 &&
                                     std::fread(bytes.data(), 1, size_t(count), file_.get()) == count);
    ISS_INPUT(read, path_, ": cannot read ", what, " (truncated while read?)");
    return bytes;
}

}  // namespace iss
