// The parallel gzip stream (io/gzip_stream.h) read back by zlib's own gzip decoder: every size
// around the chunk and batch boundaries, written in uneven pieces, both settings the NIfTI
// writer uses; one gzip member with the right CRC and size; the same bytes on one thread and
// on several; a sink's failure passed on.
#include <gtest/gtest.h>
#include <omp.h>
#include <zlib.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/gzip_stream.h"
#include "tests/zlib_util.h"

namespace iss {
namespace {

using Bytes = std::vector<uint8_t>;

// Float-like data: runs of zeros (a background), then bytes that vary, so that both deflate's
// matches and its literals are exercised.
Bytes sample_input(size_t n) {
    Bytes in(n);
    uint32_t state = 12345;
    for (size_t i = 0; i < n; ++i) {
        state = state * 1664525u + 1013904223u;
        in[i] = (i / 4096) % 3 == 0 ? 0 : uint8_t(state >> 24) & uint8_t(i % 7 == 0 ? 0xff : 0x0f);
    }
    return in;
}

// Written in pieces of growing, uneven sizes (1, 2, 5, ... bytes, then large ones).
Bytes gzip(const Bytes& in, DeflateSettings settings) {
    Bytes out;
    ParallelGzip gz(settings, [&](const void* data, size_t n) {
        out.insert(out.end(), static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + n);
    });
    size_t at = 0, piece = 1;
    while (at < in.size()) {
        const size_t n = std::min(piece, in.size() - at);
        gz.write(in.data() + at, n);
        at += n;
        piece = piece * 3 + 2;
    }
    gz.finish();
    return out;
}

TEST(GzipStream, ZlibReadsBackEverySizeAroundTheChunks) {
    const size_t chunk = gzip_chunk_bytes, batch = 16 * chunk;
    for (const DeflateSettings settings : {DeflateSettings{1, Z_RLE}, DeflateSettings{6, Z_DEFAULT_STRATEGY}})
        for (const size_t size : {size_t(0), size_t(1), chunk - 1, chunk, chunk + 1, batch, batch + 1,
                                  batch + 3 * chunk + 17}) {
            if (settings.level == 6 && size > chunk + 1) continue;  // the chunking is the same
            SCOPED_TRACE("level " + std::to_string(settings.level) + ", " + std::to_string(size) + " bytes");
            const Bytes in = sample_input(size);
            const Bytes gz = gzip(in, settings);
            ASSERT_GE(gz.size(), 18u);
            EXPECT_EQ(gz[0], 0x1f);
            EXPECT_EQ(gz[1], 0x8b);
            EXPECT_TRUE(test::gunzip(gz) == in);
        }
}

TEST(GzipStream, TheBytesDoNotDependOnTheThreads) {
    const Bytes in = sample_input(16 * gzip_chunk_bytes + 5 * gzip_chunk_bytes / 2);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const Bytes one = gzip(in, {1, Z_RLE});
    omp_set_num_threads(3);
    const Bytes three = gzip(in, {1, Z_RLE});
    omp_set_num_threads(threads);
    EXPECT_TRUE(one == three);
    EXPECT_LT(one.size(), in.size()) << "compressed";
}

TEST(GzipStream, ASinkThatFailsStopsTheStream) {
    const Bytes in = sample_input(20 * gzip_chunk_bytes);
    size_t calls = 0;
    ParallelGzip gz({1, Z_RLE}, [&](const void*, size_t) {
        if (++calls > 3) throw std::runtime_error("disk full");
    });
    EXPECT_THROW(gz.write(in.data(), in.size()), std::runtime_error);
}

}  // namespace
}  // namespace iss
