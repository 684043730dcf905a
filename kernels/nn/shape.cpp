#include "kernels/nn/shape.h"

#include "kernels/common/error.h"

namespace iss {

std::string Shape5::str() const { return cat(n, "x", d, "x", h, "x", w, "x", c); }

}  // namespace iss
