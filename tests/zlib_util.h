// zlib in the tests: deflating bytes (raw, as zip stores them, or as a gzip member) and zlib's
// own gzip decoder, to check what our writers compress and to build compressed inputs.
#pragma once

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

namespace iss::test {

// `window_bits`: -MAX_WBITS for raw deflate, 16 + MAX_WBITS for a gzip member.
inline std::vector<uint8_t> deflated(const std::vector<uint8_t>& data, int window_bits) {
    z_stream s{};
    if (deflateInit2(&s, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw std::runtime_error("zlib");
    std::vector<uint8_t> out(deflateBound(&s, uLong(data.size())) + 32);  // + the gzip header and trailer
    s.next_in = const_cast<Bytef*>(data.data());
    s.avail_in = uInt(data.size());
    s.next_out = out.data();
    s.avail_out = uInt(out.size());
    if (deflate(&s, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("zlib deflate");
    out.resize(s.total_out);
    deflateEnd(&s);
    return out;
}

// zlib's gzip decoder (inflate with gzip framing, which checks the CRC-32 and the size). Fails
// the test unless the bytes are exactly one complete gzip member.
inline std::vector<uint8_t> gunzip(const std::vector<uint8_t>& gz) {
    z_stream z{};
    EXPECT_EQ(inflateInit2(&z, 16 + MAX_WBITS), Z_OK);
    std::vector<uint8_t> out;
    z.next_in = const_cast<Bytef*>(gz.data());
    z.avail_in = uInt(gz.size());
    int rc = Z_OK;
    while (rc == Z_OK) {
        uint8_t buffer[1 << 16];
        z.next_out = buffer;
        z.avail_out = sizeof buffer;
        rc = inflate(&z, Z_NO_FLUSH);
        out.insert(out.end(), buffer, buffer + (sizeof buffer - z.avail_out));
    }
    EXPECT_EQ(rc, Z_STREAM_END) << "zlib: " << (z.msg ? z.msg : "");
    EXPECT_EQ(z.avail_in, 0u) << "bytes after the gzip member";
    inflateEnd(&z);
    return out;
}

}  // namespace iss::test
