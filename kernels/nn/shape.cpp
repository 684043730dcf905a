#include "kernels/nn/shape.h"

#include "kernels/common/error.h"

namespace iss {

std::string Shape5::str() const { return cat(n, "x", d, "x", h, "x", w, "x", c); }

void require_shape(const Shape5& s, const char* op) {
    ISS_REQUIRE(s.n > 0 && s.d > 0 && s.h > 0 && s.w > 0 && s.c > 0, op, ": empty or negative shape ", s.str());
}

void require_tensor(const void* ptr, const char* op, const char* name) {
    ISS_REQUIRE(ptr, op, ": tensor '", name, "' is null");
}

}  // namespace iss
