// Shapes of U-Net activations: 5-D, channels-last (N, D, H, W, C) = (batch, z, y, x, channel),
// C fastest. A single-channel volume in NIfTI order (x fastest) is already (1, nz, ny, nx, 1).
#pragma once

#include <cstdint>
#include <string>

namespace iss {

struct Shape5 {
    int64_t n = 1, d = 1, h = 1, w = 1, c = 1;

    int64_t voxels() const { return n * d * h * w; }  // positions, all channels together
    int64_t size() const { return voxels() * c; }     // elements
    bool operator==(const Shape5& o) const { return n == o.n && d == o.d && h == o.h && w == o.w && c == o.c; }
    bool operator!=(const Shape5& o) const { return !(*this == o); }
    std::string str() const;  // "1x32x32x32x24"
};

// A kernel's preconditions (ISS_REQUIRE: a broken invariant, not the user's input), naming the op.
void require_shape(const Shape5& s, const char* op);                    // every extent positive
void require_tensor(const void* ptr, const char* op, const char* name);  // not null

}  // namespace iss
