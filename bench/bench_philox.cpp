// Throughput of the counter-based generator on the CPU (normals per second), the draw every
// generator stage makes per voxel.
#include <benchmark/benchmark.h>

#include "kernels/common/philox.h"

static void PhiloxNormal4(benchmark::State& state) {
    const iss::RandomKey key{42, 0, 0};
    uint64_t index = 0;
    float z[4];
    for (auto _ : state) {
        iss::random_normal4(key, index++, z);
        benchmark::DoNotOptimize(z);
    }
    state.SetItemsProcessed(state.iterations() * 4);
}
BENCHMARK(PhiloxNormal4);

BENCHMARK_MAIN();
