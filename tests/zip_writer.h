// Zip archives for the tests, laid out as Python's zipfile writes them (local header and data
// per member, then the central directory and the end record), with ways to damage one member.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace iss::test {

struct ZipEntry {
    std::string name;
    std::vector<uint8_t> data;
    bool deflate = false;
    // Damage, recorded in both headers: other flags, another method, a CRC off by `crc_xor`, a
    // recorded size `size_delta` bytes off.
    uint16_t flags = 0;
    int method = -1;  // -1: 8 when deflated, else 0
    uint32_t crc_xor = 0;
    int64_t size_delta = 0;
};

inline std::vector<uint8_t> from_text(const std::string& text) {
    return {text.begin(), text.end()};
}

inline std::vector<uint8_t> raw_deflate(const std::vector<uint8_t>& data) {
    z_stream s{};
    if (deflateInit2(&s, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw std::runtime_error("zlib");
    std::vector<uint8_t> out(deflateBound(&s, uLong(data.size())));
    s.next_in = const_cast<Bytef*>(data.data());
    s.avail_in = uInt(data.size());
    s.next_out = out.data();
    s.avail_out = uInt(out.size());
    if (deflate(&s, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("zlib deflate");
    out.resize(s.total_out);
    deflateEnd(&s);
    return out;
}

inline std::vector<uint8_t> zip_bytes(const std::vector<ZipEntry>& entries) {
    std::vector<uint8_t> out, directory;
    auto put = [](std::vector<uint8_t>& to, uint64_t value, int bytes) {
        for (int b = 0; b < bytes; ++b) to.push_back(uint8_t(value >> (8 * b)));
    };
    for (const ZipEntry& e : entries) {
        const std::vector<uint8_t> stored = e.deflate ? raw_deflate(e.data) : e.data;
        const uint16_t method = uint16_t(e.method >= 0 ? e.method : e.deflate ? 8 : 0);
        const uint32_t crc = uint32_t(crc32(crc32(0L, Z_NULL, 0), e.data.data(), uInt(e.data.size()))) ^ e.crc_xor;
        const uint64_t size = uint64_t(int64_t(e.data.size()) + e.size_delta);
        const uint64_t local = out.size();
        // The fields both headers share: version, flags, method, time, date, CRC, sizes, name length.
        auto common = [&](std::vector<uint8_t>& to) {
            put(to, 20, 2);
            put(to, e.flags, 2);
            put(to, method, 2);
            put(to, 0, 4);
            put(to, crc, 4);
            put(to, e.deflate ? stored.size() : size, 4);
            put(to, size, 4);
            put(to, e.name.size(), 2);
            put(to, 0, 2);  // extra
        };
        put(out, 0x04034b50, 4);
        common(out);
        out.insert(out.end(), e.name.begin(), e.name.end());
        out.insert(out.end(), stored.begin(), stored.end());
        put(directory, 0x02014b50, 4);
        put(directory, 0x0314, 2);  // made by: Unix, 2.0
        common(directory);
        put(directory, 0, 2);  // comment
        put(directory, 0, 2);  // disk
        put(directory, 0, 2);  // internal attributes
        put(directory, 0, 4);  // external attributes
        put(directory, local, 4);
        directory.insert(directory.end(), e.name.begin(), e.name.end());
    }
    const uint64_t directory_offset = out.size();
    out.insert(out.end(), directory.begin(), directory.end());
    put(out, 0x06054b50, 4);
    put(out, 0, 4);  // disks
    put(out, entries.size(), 2);
    put(out, entries.size(), 2);
    put(out, directory.size(), 4);
    put(out, directory_offset, 4);
    put(out, 0, 2);  // comment
    return out;
}

}  // namespace iss::test
