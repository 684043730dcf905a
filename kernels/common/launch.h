// Running one voxel body over a 3-D grid on the CPU: OpenMP over (k, j) rows, i innermost so
// that the body's stores stream along x. The CUDA counterpart is launch.cuh; a body is a
// functor with `ISS_HD void operator()(int64_t i, int64_t j, int64_t k) const` (or taking its
// own index type, index_type.h: here it gets int64_t).
#pragma once

#include <cstdint>

#include "kernels/common/index_type.h"  // a voxel body's index type, on both backends

namespace iss {

template <class Body>
void cpu_for_each_voxel(const int64_t dim[3], const Body& body) {
    const int64_t nx = dim[0], ny = dim[1], nz = dim[2];
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t k = 0; k < nz; ++k)
        for (int64_t j = 0; j < ny; ++j)
            for (int64_t i = 0; i < nx; ++i) body(i, j, k);
}

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
