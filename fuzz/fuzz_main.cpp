// One libFuzzer binary per target: FUZZ_TARGET (a name of fuzz/targets.h) is defined by CMake.
#include <cstddef>
#include <cstdint>

#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    iss::fuzz::FUZZ_TARGET(data, size);
    return 0;
}
