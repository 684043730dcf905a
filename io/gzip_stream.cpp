#include "io/gzip_stream.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "kernels/common/error.h"

namespace iss {
namespace {

// Whole chunks compressed together: enough for every thread of a small machine several times
// over, and a bound on the memory held (this much input and about as much output).
constexpr size_t batch_chunks = 16;

// One chunk as raw deflate: a sync flush ends a chunk that more will follow (its blocks not final,
// its end on a byte boundary), the final block ends the last.
std::vector<uint8_t> deflate_chunk(const uint8_t* in, size_t n, const DeflateSettings& s, bool last) {
    z_stream z;
    std::memset(&z, 0, sizeof z);
    const int init = deflateInit2(&z, s.level, Z_DEFLATED, -15, 8, s.strategy);
    if (init != Z_OK) throw Error(cat("cannot start deflate (zlib error ", init, ")"));
    std::vector<uint8_t> out(deflateBound(&z, uLong(n)) + 64);
    z.next_in = const_cast<Bytef*>(in);
    z.avail_in = uInt(n);
    size_t done = 0;
    for (;;) {
        z.next_out = out.data() + done;
        z.avail_out = uInt(out.size() - done);
        const int rc = deflate(&z, last ? Z_FINISH : Z_SYNC_FLUSH);
        done = out.size() - z.avail_out;
        if (rc == Z_STREAM_ERROR) {
            deflateEnd(&z);
            throw Error("deflate failed");
        }
        // Finished: the stream's end, or (flushing) all input taken with room left over, which
        // zlib leaves only once the flush is complete.
        if (last ? rc == Z_STREAM_END : (z.avail_in == 0 && z.avail_out > 0)) break;
        out.resize(out.size() * 2);
    }
    deflateEnd(&z);
    out.resize(done);
    return out;
}

}  // namespace

ParallelGzip::ParallelGzip(DeflateSettings settings, std::function<void(const void*, size_t)> sink)
    : settings_(settings), sink_(std::move(sink)) {
    ISS_REQUIRE(settings_.level >= 1 && settings_.level <= 9, "gzip: level ", settings_.level);
    // RFC 1952: deflate, no name, no time (the same input gives the same bytes), Unix.
    const uint8_t header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    sink_(header, sizeof header);
    pending_.reserve(batch_chunks * gzip_chunk_bytes);
}

void ParallelGzip::write(const void* data, size_t n) {
    ISS_REQUIRE(!finished_, "gzip: write after finish or a failure");
    const uint8_t* p = static_cast<const uint8_t*>(data);
    const size_t batch = batch_chunks * gzip_chunk_bytes;
    while (n > 0) {
        const size_t take = std::min(n, batch - pending_.size());
        pending_.insert(pending_.end(), p, p + take);
        p += take;
        n -= take;
        if (pending_.size() == batch) compress(batch_chunks, false);
    }
}

void ParallelGzip::finish() {
    ISS_REQUIRE(!finished_, "gzip: finish twice, or after a failure");
    compress((pending_.size() + gzip_chunk_bytes - 1) / gzip_chunk_bytes, true);
    finished_ = true;
    // RFC 1952 trailer: CRC-32 and the input's size modulo 2^32, little-endian.
    uint8_t trailer[8];
    for (int b = 0; b < 4; ++b) {
        trailer[b] = uint8_t(crc_ >> (8 * b));
        trailer[4 + b] = uint8_t(total_ >> (8 * b));
    }
    sink_(trailer, sizeof trailer);
}

// The first `chunks` chunks of the pending input (the last one possibly short when `last`),
// each on a thread, then handed on in order; what follows them stays pending. `last` with no
// input left still writes the final (empty) block.
void ParallelGzip::compress(size_t chunks, bool last) {
    // Whatever throws below leaves part of the stream handed on: no more input after it.
    finished_ = true;
    const size_t size = std::min(pending_.size(), chunks * gzip_chunk_bytes);
    std::vector<std::vector<uint8_t>> out(std::max<size_t>(chunks, 1));
    std::vector<uint32_t> crc(out.size(), 0);
    std::vector<size_t> length(out.size(), 0);
    std::string failure;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t c = 0; c < out.size(); ++c) {
        const size_t first = c * gzip_chunk_bytes;
        length[c] = std::min(gzip_chunk_bytes, size - std::min(size, first));
        try {
            out[c] = deflate_chunk(pending_.data() + first, length[c], settings_, last && c + 1 == out.size());
            crc[c] = uint32_t(crc32_z(0, pending_.data() + first, length[c]));
        } catch (const std::exception& e) {
#pragma omp critical(gzip_failure)
            failure = e.what();
        } catch (...) {
#pragma omp critical(gzip_failure)
            failure = "an unknown error";
        }
    }
    if (!failure.empty()) throw Error(cat("gzip: ", failure));
    for (size_t c = 0; c < out.size(); ++c) {
        sink_(out[c].data(), out[c].size());
        crc_ = uint32_t(crc32_combine(crc_, crc[c], z_off_t(length[c])));
        total_ += length[c];
    }
    pending_.erase(pending_.begin(), pending_.begin() + std::ptrdiff_t(size));
    finished_ = false;
}

}  // namespace iss
