// Scratch for a CPU row loop that fills it and then reads it beside a row of a large array,
// placed so that the scratch ends where that row begins, modulo 4096.
//
// A load whose address matches a recent store's in its low 12 bits waits for that store (4K
// aliasing), though the two addresses differ. A scratch buffer at a fixed place matches some rows
// of every large array closely: in the bias stage, the row's log bias stored just before the
// image row was loaded made the stage 2.6-2.8 ms instead of 1.7 on a 2-vCPU Zen 2 EPYC, by where
// the heap had put the buffer in that run. Ending where the row begins, a scratch of up to 2048
// bytes shares no address modulo 4096 with a row of its size, and a longer one matches only
// loads a whole 4096 bytes of work after its stores.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace iss {

class RowScratch {
public:
    explicit RowScratch(size_t floats) : floats_(floats), space_(floats + page / sizeof(float)) {}

    // Room for the constructor's count of floats, ending at `row`'s address modulo 4096 (so with
    // `row`'s alignment modulo 4096).
    float* beside(const void* row) {
        const uintptr_t base = reinterpret_cast<uintptr_t>(space_.data()) % page;
        const uintptr_t start = (reinterpret_cast<uintptr_t>(row) + page - floats_ * sizeof(float) % page) % page;
        return space_.data() + (start + page - base) % page / sizeof(float);
    }

private:
    static constexpr uintptr_t page = 4096;
    size_t floats_;
    std::vector<float> space_;
};

}  // namespace iss
