// Zip archives for the tests, laid out as Python's zipfile writes them (local header and data
// per member, then the central directory and the end record), with what other writers do
// (data descriptors, extra fields only in local headers, an archive comment) and ways to damage
// one member.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/zlib_util.h"

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
    // Written as a streaming writer does: flag bit 3, zeros for the CRC and sizes in the local
    // header, a data descriptor after the data.
    bool data_descriptor = false;
    std::vector<uint8_t> local_extra{};  // an extra field in the local header only
};

inline std::vector<uint8_t> from_text(const std::string& text) {
    return {text.begin(), text.end()};
}

inline std::vector<uint8_t> zip_bytes(const std::vector<ZipEntry>& entries, const std::string& comment = "") {
    std::vector<uint8_t> out, directory;
    auto put = [](std::vector<uint8_t>& to, uint64_t value, int bytes) {
        for (int b = 0; b < bytes; ++b) to.push_back(uint8_t(value >> (8 * b)));
    };
    for (const ZipEntry& e : entries) {
        const std::vector<uint8_t> stored = e.deflate ? deflated(e.data, -MAX_WBITS) : e.data;
        const uint16_t method = uint16_t(e.method >= 0 ? e.method : e.deflate ? 8 : 0);
        const uint32_t crc = uint32_t(crc32(crc32(0L, Z_NULL, 0), e.data.data(), uInt(e.data.size()))) ^ e.crc_xor;
        const uint64_t size = uint64_t(int64_t(e.data.size()) + e.size_delta);
        const uint64_t local = out.size();
        const uint16_t flags = uint16_t(e.flags | (e.data_descriptor ? 8 : 0));
        // The fields both headers share: version, flags, method, time, date, CRC, sizes, name and
        // extra lengths (a data descriptor's local header has zeros for CRC and sizes).
        auto common = [&](std::vector<uint8_t>& to, bool local) {
            const bool described = local && e.data_descriptor;
            put(to, 20, 2);
            put(to, flags, 2);
            put(to, method, 2);
            put(to, 0, 4);
            put(to, described ? 0 : crc, 4);
            put(to, described ? 0 : e.deflate ? stored.size() : size, 4);
            put(to, described ? 0 : size, 4);
            put(to, e.name.size(), 2);
            put(to, local ? e.local_extra.size() : 0, 2);
        };
        put(out, 0x04034b50, 4);
        common(out, true);
        out.insert(out.end(), e.name.begin(), e.name.end());
        out.insert(out.end(), e.local_extra.begin(), e.local_extra.end());
        out.insert(out.end(), stored.begin(), stored.end());
        if (e.data_descriptor) {
            put(out, 0x08074b50, 4);
            put(out, crc, 4);
            put(out, e.deflate ? stored.size() : size, 4);
            put(out, size, 4);
        }
        put(directory, 0x02014b50, 4);
        put(directory, 0x0314, 2);  // made by: Unix, 2.0
        common(directory, false);
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
    put(out, comment.size(), 2);
    out.insert(out.end(), comment.begin(), comment.end());
    return out;
}

}  // namespace iss::test
