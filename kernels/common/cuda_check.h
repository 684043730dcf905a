// Status checks for the CUDA runtime, cuDNN and cuBLAS: every call is wrapped, and a failure
// throws iss::Error naming the statement, file, line and the library's message.
// Include only from code compiled with the CUDA headers available (INFANT_WITH_CUDA).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "kernels/common/error.h"

namespace iss {
const char* cublas_status_name(cublasStatus_t status);
}

#define ISS_CUDA_CHECK(stmt)                                                                        \
    do {                                                                                            \
        const cudaError_t iss_status_ = (stmt);                                                     \
        if (iss_status_ != cudaSuccess)                                                             \
            ::iss::throw_call_error("CUDA", #stmt, __FILE__, __LINE__, cudaGetErrorString(iss_status_)); \
    } while (0)

#define ISS_CUDNN_CHECK(stmt)                                                                         \
    do {                                                                                              \
        const cudnnStatus_t iss_status_ = (stmt);                                                     \
        if (iss_status_ != CUDNN_STATUS_SUCCESS)                                                      \
            ::iss::throw_call_error("cuDNN", #stmt, __FILE__, __LINE__, cudnnGetErrorString(iss_status_)); \
    } while (0)

#define ISS_CUBLAS_CHECK(stmt)                                                                               \
    do {                                                                                                     \
        const cublasStatus_t iss_status_ = (stmt);                                                           \
        if (iss_status_ != CUBLAS_STATUS_SUCCESS)                                                            \
            ::iss::throw_call_error("cuBLAS", #stmt, __FILE__, __LINE__, ::iss::cublas_status_name(iss_status_)); \
    } while (0)

namespace iss {
// After a kernel launch: a bad configuration shows up at once. With the environment variable
// INFANT_CUDA_SYNC=1 it also waits for the kernel, so a fault inside it is reported at its own
// launch rather than at a later copy (for debugging a first GPU run; slow).
void check_launch(const char* file, int line);
}  // namespace iss

#define ISS_CUDA_CHECK_LAUNCH() ::iss::check_launch(__FILE__, __LINE__)
