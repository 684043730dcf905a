// Status check for oneDNN's C API (dnnl_status_t); the C++ API throws dnnl::error, which
// ISS_DNNL_CALL turns into iss::Error with the statement, file and line.
#pragma once

#include <dnnl.hpp>

#include "kernels/common/error.h"

#define ISS_DNNL_CHECK(stmt)                                                                 \
    do {                                                                                     \
        const dnnl_status_t iss_status_ = (stmt);                                            \
        if (iss_status_ != dnnl_success)                                                     \
            ::iss::throw_call_error("oneDNN", #stmt, __FILE__, __LINE__,                     \
                                    ::iss::cat("status ", static_cast<int>(iss_status_)));   \
    } while (0)

#define ISS_DNNL_CALL(stmt)                                                              \
    do {                                                                                 \
        try {                                                                            \
            stmt;                                                                        \
        } catch (const dnnl::error& iss_e_) {                                            \
            ::iss::throw_call_error("oneDNN", #stmt, __FILE__, __LINE__, iss_e_.what()); \
        }                                                                                \
    } while (0)
