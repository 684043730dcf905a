#include "nn/precision.h"

#include <omp.h>

#include <atomic>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "nn/conv_backends.h"

namespace iss {
namespace {

bool cpu_is_intel() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_is("intel");
#else
    return false;
#endif
}

}  // namespace

const char* precision_name(Precision precision) { return precision == Precision::bf16 ? "bf16" : "fp32"; }

Precision parse_precision(const std::string& text, const std::string& what) {
    if (text == "fp32") return Precision::fp32;
    if (text == "bf16") return Precision::bf16;
    throw InputError(what + ": expected fp32 or bf16, got '" + text + "'");
}

bool bf16_is_native(DeviceContext& ctx) {
    // CUDA: bf16 tensor cores from Ampere (sm_80) on.
    return ctx.is_cuda() ? ctx.compute_capability() >= 80 : dnnl_bf16_is_native();
}

Precision usable_precision(DeviceContext& ctx, Precision requested) {
    static std::atomic<bool> warned{false};
    if (requested != Precision::bf16) return requested;
    if (bf16_is_native(ctx)) {
        // Runs as asked; but on Intel's AVX512-BF16 without AMX (Cooper Lake) oneDNN's bf16 3D
        // convolutions were slower than its fp32 ones (1.3-1.5x, docs/PERFORMANCE.md), which a
        // user choosing bf16 for speed should know. AMD's Zen 4 has the same instructions and no
        // AMX, and there bf16 is the faster (the convolutions 2.0x, a training step 2.1x, predict
        // 1.7x; docs/PERFORMANCE.md, twenty-ninth session): not said there.
        if (!ctx.is_cuda() && !dnnl_has_amx() && cpu_is_intel() && !warned.exchange(true))
            warning("bf16 on this CPU runs on AVX512-BF16 without AMX, where the U-Net's convolutions measured "
                    "1.3-1.5x slower than fp32: --precision fp32 is faster here");
        return requested;
    }
    if (!warned.exchange(true))
        warning(ctx.is_cuda() ? cat("this GPU (sm_", ctx.compute_capability(),
                                    ") has no bf16 tensor cores (sm_80 and later have them): running fp32")
                              : std::string("this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 is slower "
                                            "than fp32: running fp32"));
    return Precision::fp32;
}

std::string arithmetic_identity(DeviceContext& ctx) {
    if (ctx.is_cuda()) return cuda_device_identity(ctx.device().index);
    const int threads = omp_get_max_threads();
    return cat("cpu, ", threads, threads == 1 ? " thread" : " threads", ", oneDNN ", dnnl_isa_name());
}

}  // namespace iss
