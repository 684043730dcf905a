// Scratch for a CPU row loop that fills it and then reads it beside a row of a large array,
// placed half a page away from that row modulo 4096.
//
// A load whose address matches a recent store's in its low 12 bits waits for that store (4K
// aliasing), though the two addresses differ. A scratch buffer at a fixed place matches some rows
// of every large array closely: in the bias stage, the row's log bias stored just before the
// image row was loaded made the stage 2.6-2.8 ms instead of 1.7 on a 2-vCPU Zen 2 EPYC, by where
// the heap had put the buffer in that run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace iss {

class RowScratch {
public:
    explicit RowScratch(size_t floats) : space_(floats + page_floats) {}

    // Room for the constructor's count of floats, at 2048 bytes from `row` modulo 4096 (so with
    // `row`'s alignment modulo 4096).
    float* beside(const void* row) {
        const uintptr_t base = reinterpret_cast<uintptr_t>(space_.data()) % page;
        const uintptr_t want = (reinterpret_cast<uintptr_t>(row) + page / 2) % page;
        return space_.data() + (want + page - base) % page / sizeof(float);
    }

private:
    static constexpr uintptr_t page = 4096;
    static constexpr size_t page_floats = page / sizeof(float);
    std::vector<float> space_;
};

}  // namespace iss
