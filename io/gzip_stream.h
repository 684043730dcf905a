// A gzip stream compressed on every OpenMP thread (the NIfTI writer's .nii.gz).
//
// The input is cut into fixed chunks of gzip_chunk_bytes; each is deflated on its own (raw
// deflate, no history shared with the previous chunk) and ends on a byte boundary with a sync
// flush, only the last one with the final block; the pieces are joined into one gzip member
// whose CRC-32 is combined from the chunks' (the layout of `pigz -i`). Any gzip reader reads it
// as an ordinary single stream. The bytes depend only on the input and the settings, never on
// the number of threads, so the same input always gives the same file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace iss {

constexpr size_t gzip_chunk_bytes = size_t(1) << 20;

// zlib's level (1-9) and strategy (Z_DEFAULT_STRATEGY, Z_RLE, ...).
struct DeflateSettings {
    int level = 6;
    int strategy = 0;
};

class ParallelGzip {
public:
    // `sink` receives the compressed bytes in order; it throws to stop.
    ParallelGzip(DeflateSettings settings, std::function<void(const void* data, size_t n)> sink);
    ParallelGzip(const ParallelGzip&) = delete;
    ParallelGzip& operator=(const ParallelGzip&) = delete;

    // Buffers the bytes; compresses and hands on every batch of whole chunks.
    void write(const void* data, size_t n);
    // The rest, the final block and the trailer. Nothing may be written after it, nor after a
    // call that threw (the stream is then incomplete).
    void finish();

private:
    void compress(size_t chunks, bool last);

    DeflateSettings settings_;
    std::function<void(const void*, size_t)> sink_;
    std::vector<uint8_t> pending_;  // input not compressed yet
    uint32_t crc_ = 0;
    uint64_t total_ = 0;            // input bytes compressed so far
    bool finished_ = false;  // or failed: no more input taken
};

}  // namespace iss
