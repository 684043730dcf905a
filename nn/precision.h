// The arithmetic of the network's convolutions: fp32, or bf16 (inputs and weights rounded to
// bfloat16, products accumulated in fp32, outputs in fp32; docs/KERNELS.md, "Conv3d in bf16").
// Everything else (activations in memory, batch norm, softmax, losses, weights, gradients,
// Adam) stays fp32 in both.
#pragma once

#include <string>

namespace iss {

class DeviceContext;

enum class Precision { fp32, bf16 };

const char* precision_name(Precision precision);
// "fp32" or "bf16"; an InputError naming `what` (e.g. "--precision") otherwise.
Precision parse_precision(const std::string& text, const std::string& what);

// Whether the context's device runs bf16 convolutions in hardware (on the CPU: oneDNN found
// AVX512-BF16 or AMX). Elsewhere bf16 would be emulated, slower than fp32.
bool bf16_is_native(DeviceContext& ctx);

// The precision to run: `requested`, except bf16 where it is not native (or not implemented,
// CUDA for now), which runs fp32 and says so once per process.
Precision usable_precision(DeviceContext& ctx, Precision requested);

}  // namespace iss
