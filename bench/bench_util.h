// What the benchmark suites share: the backends to run on, the infant-sized label map, and
// the main() that registers a suite's benchmarks and runs them.
#pragma once

#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdio>
#include <string>
#include <vector>

#include "io/volume.h"
#include "kernels/common/device.h"
#include "kernels/common/version.h"
#include "nn/precision.h"
#include "synth/phantom.h"

namespace iss::bench {

// The CPU, and CUDA when a device is present (saying so on stderr when it is not).
inline std::vector<Backend> backends() {
    std::vector<Backend> list{Backend::cpu};
    if (cuda_device_count() > 0)
        list.push_back(Backend::cuda);
    else
        std::fprintf(stderr, "no CUDA device: the CUDA benchmarks are skipped\n");
    return list;
}

inline const char* name(Backend backend) { return backend == Backend::cuda ? "cuda" : "cpu"; }

// fp32, and bf16 where the backend runs it natively (nn/precision.h): the precisions a
// benchmark is registered in, bf16 ones named .../bf16.
inline std::vector<Precision> precisions(Backend backend) {
    DeviceContext probe(Device{backend, 0});
    if (bf16_is_native(probe)) return {Precision::fp32, Precision::bf16};
    return {Precision::fp32};
}

// A 12-month phantom padded to the published infant maps' size, 155x175x149.
inline LabelMap infant_sized_phantom() {
    const LabelMap phantom = make_phantom(12, 1);
    Grid grid;
    grid.dim = {155, 175, 149};
    LabelMap map(grid);
    int64_t shift[3];
    for (int d = 0; d < 3; ++d) shift[d] = (grid.dim[size_t(d)] - phantom.grid.dim[size_t(d)]) / 2;
    for (int64_t k = 0; k < phantom.nz(); ++k)
        for (int64_t j = 0; j < phantom.ny(); ++j)
            for (int64_t i = 0; i < phantom.nx(); ++i) map.at(i + shift[0], j + shift[1], k + shift[2]) = phantom.at(i, j, k);
    return map;
}

// `keep_freed_memory`: as the program's main() does for every command but train.
inline int run(int argc, char** argv, void (*register_all)(), bool keep_freed_memory = true) {
    if (keep_freed_memory) keep_freed_host_memory();
    register_all();
    // What the JSON's context does not say: our threads (OMP_NUM_THREADS, or every CPU), against
    // a baseline's own count (bench/compare.py prints both), and the build measured (the
    // context's library_build_type is the Google Benchmark package's, not ours).
    benchmark::AddCustomContext("omp_threads", std::to_string(omp_get_max_threads()));
    benchmark::AddCustomContext("infant_version", build_version());
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

}  // namespace iss::bench
