// Internal to Conv3d (nn/conv.*): the interface each vendor backend implements, and the
// factories that build them. oneDNN lives in nn/conv_dnnl.cpp, cuDNN in nn/conv_cudnn.cpp, so
// that neither library's headers leak beyond its one file (and the move to cuDNN's graph API
// touches one file). Shapes are checked by Conv3d before a factory is called.
#pragma once

#include <cstdint>
#include <memory>

#include "nn/conv.h"

namespace iss {

class ConvBackend {
public:
    virtual ~ConvBackend() = default;
    virtual void forward(const void* x, const float* w, const float* b, void* y) = 0;
    virtual void backward_data(const void* dy, const float* w, void* dx) = 0;
    virtual void backward_weights(const void* x, const void* dy, float* dw, float* db) = 0;
    virtual bool forward_reorders_activations() const { return false; }
    // Passes over slabs along D that backward_weights makes (oneDNN: conv_dnnl.cpp).
    virtual int64_t backward_weights_slabs() const { return 1; }
};

// CPU: oneDNN primitives for this shape, created once.
std::unique_ptr<ConvBackend> make_dnnl_conv3d(DeviceContext& ctx, const ConvShape& shape);
// Tests: oneDNN engines made from now on run backward_weights in slabs of this many output rows
// along D where their shape allows (batch 1, fewer rows than the output), whatever their
// scratchpad; 0 restores the automatic choice. Returns the previous value.
int64_t set_dnnl_weights_slab_rows(int64_t rows);
// Whether oneDNN found a CPU with bf16 instructions (AVX512-BF16 or AMX), and whether with AMX.
bool dnnl_bf16_is_native();
bool dnnl_has_amx();
// The instruction set oneDNN's kernels use here, e.g. "AVX-512 with AMX" (each sums in its own order).
const char* dnnl_isa_name();
// AVX2 without AVX-512 as oneDNN sees the CPU (ONEDNN_MAX_CPU_ISA can cap it): where an
// inference's fp32 forward of 48 channels and more runs on the blocked layout (conv_dnnl.cpp).
bool dnnl_avx2_without_avx512();

#if INFANT_WITH_CUDA
// CUDA: cuDNN descriptors for this shape; each pass's algorithm is chosen on its first use.
std::unique_ptr<ConvBackend> make_cudnn_conv3d(DeviceContext& ctx, const ConvShape& shape);
#endif

}  // namespace iss
