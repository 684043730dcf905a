// Status checks for the CUDA runtime and cuDNN: every call is wrapped, and a failure throws
// iss::Error naming the statement, file, line and the library's message.
// Include only from code compiled with the CUDA headers available (INFANT_WITH_CUDA).
#pragma once

#include <cuda_runtime.h>
#include <cudnn.h>

#include "kernels/common/error.h"

#define ISS_CUDA_CHECK(stmt)                                                                        \
    do {                                                                                            \
        const cudaError_t iss_status_ = (stmt);                                                     \
        if (iss_status_ != cudaSuccess)                                                             \
            ::iss::throw_call_error("CUDA", #stmt, __FILE__, __LINE__, cudaGetErrorString(iss_status_)); \
    } while (0)

// A cuDNN call may launch kernels: in synchronous mode (below) it is waited for too, so that a
// fault inside cuDNN is reported at the cuDNN call and not at our next launch.
#define ISS_CUDNN_CHECK(stmt)                                                                         \
    do {                                                                                              \
        const cudnnStatus_t iss_status_ = (stmt);                                                     \
        if (iss_status_ != CUDNN_STATUS_SUCCESS)                                                      \
            ::iss::throw_call_error("cuDNN", #stmt, __FILE__, __LINE__, cudnnGetErrorString(iss_status_)); \
        ::iss::check_after_library_call("cuDNN", #stmt, __FILE__, __LINE__);                          \
    } while (0)

namespace iss {
// True when the environment variable INFANT_CUDA_SYNC is set to anything but 0: every kernel
// launch and library call is then waited for, so a fault is reported at its own call rather than
// at a later copy (for debugging a first GPU run, and under compute-sanitizer; slow).
bool cuda_synchronous_mode();
// After a kernel launch: a bad configuration shows up at once; in synchronous mode a fault
// inside the kernel too.
void check_launch(const char* file, int line);
// After a library call that succeeded: in synchronous mode, waits for the work it launched.
void check_after_library_call(const char* library, const char* statement, const char* file, int line);
}  // namespace iss

#define ISS_CUDA_CHECK_LAUNCH() ::iss::check_launch(__FILE__, __LINE__)
