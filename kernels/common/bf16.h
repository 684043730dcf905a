// bfloat16 storage for activations and their gradients (nn/precision.h): the upper 16 bits of
// an fp32. Kernels read a stored element with widen() (exact) and compute in fp32; they write
// with narrow<T>(), which for Bf16 rounds to nearest, ties to even (the rounding of oneDNN's
// and CUDA's conversions, so values agree whoever wrote them). NaN stays NaN (quietened);
// overflow rounds to infinity as IEEE rounding does. Relative error of one narrow: at most
// u = 2^-8 (8 significant bits; docs/KERNELS.md, "In bf16"). A value that is already a stored
// element (a maximum, a copy) is written back by its bits instead (stored_exactly, copied).
//
// A kernel body templated on its storage type T (float or Bf16) is still one body per
// operation: for float, widen and narrow are the identity.
#pragma once

#include <cstdint>

#include "kernels/common/hd.h"
#include "kernels/common/portable_math.h"  // float_to_bits, bits_to_float

namespace iss {

struct Bf16 {
    uint16_t bits;
};

ISS_HD_INLINE float widen(float v) { return v; }
ISS_HD_INLINE float widen(Bf16 v) { return bits_to_float(uint32_t(v.bits) << 16); }

ISS_HD_INLINE Bf16 round_to_bf16(float v) {
    const uint32_t u = float_to_bits(v);
    // Round to nearest even on the 16 bits dropped; a NaN keeps its sign and top payload and
    // gets the quiet bit (rounding could otherwise carry a NaN into infinity).
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const bool is_nan = (u & 0x7fffffffu) > 0x7f800000u;
    return Bf16{uint16_t(is_nan ? ((u >> 16) | 0x40u) : rounded)};
}

template <class T>
ISS_HD_INLINE T narrow(float v);
template <>
ISS_HD_INLINE float narrow<float>(float v) {
    return v;
}
template <>
ISS_HD_INLINE Bf16 narrow<Bf16>(float v) {
    return round_to_bf16(v);
}

// The T whose widen() is v, for a v that is a widened stored element (a maximum, a selected
// element): its bits back, where narrow<T>() would round a value that needs no rounding and
// keep the loop around it scalar. A NaN keeps its payload as a copy would.
template <class T>
ISS_HD_INLINE T stored_exactly(float v);
template <>
ISS_HD_INLINE float stored_exactly<float>(float v) {
    return v;
}
template <>
ISS_HD_INLINE Bf16 stored_exactly<Bf16>(float v) {
    return Bf16{uint16_t(float_to_bits(v) >> 16)};
}

// Copies and selects of stored elements written on the bits: g++ keeps a channel loop scalar
// when it copies or selects whole Bf16 structs (docs/KERNELS.md, "bf16 storage"); the same bits
// either way.
// v where keep, else +0.
ISS_HD_INLINE float kept_or_zero(bool keep, float v) { return keep ? v : 0.0f; }
ISS_HD_INLINE Bf16 kept_or_zero(bool keep, Bf16 v) { return Bf16{uint16_t(keep ? v.bits : 0u)}; }
// v itself.
ISS_HD_INLINE float copied(float v) { return v; }
ISS_HD_INLINE Bf16 copied(Bf16 v) { return Bf16{v.bits}; }

// Explicit instantiation of a templated kernel API for both storage types: X(float) X(Bf16).
#define ISS_FOR_EACH_STORAGE(X) X(float) X(Bf16)
// The same for a kernel that reads one storage type and writes another: X(In, Out) for each pair.
#define ISS_FOR_EACH_STORAGE_PAIR(X) X(float, float) X(float, Bf16) X(Bf16, float) X(Bf16, Bf16)

}  // namespace iss
