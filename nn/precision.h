// The network's arithmetic: fp32, or bf16 mixed precision. In bf16 the activations between
// the layers and their gradients are stored as bfloat16 (kernels/common/bf16.h), the
// convolutions read bf16 and sum in fp32, and our kernels compute in fp32 between a widening
// load and one rounding store; the logits (the head's output), softmax, the losses, batch-norm
// statistics, weights, weight gradients and Adam stay fp32 (docs/KERNELS.md, "In bf16").
#pragma once

#include <cstddef>
#include <string>

namespace iss {

class DeviceContext;

enum class Precision { fp32, bf16 };

// Element types of tensors.
enum class DType { f32, bf16 };
inline size_t dtype_bytes(DType dtype) { return dtype == DType::bf16 ? 2 : 4; }
inline const char* dtype_name(DType dtype) { return dtype == DType::bf16 ? "bf16" : "fp32"; }
// The storage type of the activations (and their gradients) in a run of this precision.
inline DType activation_type(Precision precision) {
    return precision == Precision::bf16 ? DType::bf16 : DType::f32;
}

const char* precision_name(Precision precision);
// "fp32" or "bf16"; an InputError naming `what` (e.g. "--precision") otherwise.
Precision parse_precision(const std::string& text, const std::string& what);

// Whether the context's device runs bf16 convolutions in hardware (on the CPU: oneDNN found
// AVX512-BF16 or AMX; on CUDA: bf16 tensor cores, compute capability 8.0 or later). Elsewhere
// bf16 would be emulated, slower than fp32.
bool bf16_is_native(DeviceContext& ctx);

// The precision to run: `requested`, except bf16 where it is not native, which runs fp32 and
// says so once per process. bf16 on a CPU without AMX runs, with a note once that fp32 is
// faster there.
Precision usable_precision(DeviceContext& ctx, Precision requested);

// What decides the order of the network's sums, and so the last bits of a step: on the CPU the
// thread count and oneDNN's instruction set ("cpu, 2 threads, oneDNN AVX-512 with AMX"), on CUDA
// the GPU and cuDNN (cuda_device_identity). Two runs of one seed repeat each other bit for bit
// only where this is the same.
std::string arithmetic_identity(DeviceContext& ctx);

}  // namespace iss
