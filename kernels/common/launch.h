// Running a flat body over [0, n) on the CPU with OpenMP; the CUDA counterpart is launch.cuh.
// Voxel bodies (`ISS_HD void operator()(i, j, k) const`) run on the CPU in their stage's own
// row loops (kernels/synth/*.cpp), which tests/test_synth_rows.cpp checks bit for bit against
// the body.
#pragma once

#include <cstdint>

#include "kernels/common/index_type.h"  // kept: the dispatchers that include this use its index types

namespace iss {

// Over a flat range [0, n): for bodies that work on element blocks.
template <class Body>
void cpu_for_each(int64_t n, const Body& body) {
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < n; ++e) body(e);
}

}  // namespace iss

// In a dispatcher: `ISS_CUDA_ONLY("op", op_cuda(ctx, args));` runs the CUDA launcher, or in a
// build without CUDA throws "op: built without CUDA" (the .cu files are not compiled then).
#if INFANT_WITH_CUDA
#define ISS_CUDA_ONLY(name, call) call
#else
#define ISS_CUDA_ONLY(name, call) throw ::iss::Error(name ": this program was built without CUDA")
#endif
