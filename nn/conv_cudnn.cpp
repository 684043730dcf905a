// Conv3d on CUDA with cuDNN's legacy convolution API (deprecated in cuDNN 9 but working; it is
// confined to this file so that moving to the graph API touches nothing else).
//
// Activations are 5-D tensors with dims (N, C, D, H, W) and channels-last strides (NDHWC);
// the filter is CUDNN_TENSOR_NHWC with dims (K, C, kD, kH, kW), which is odhwi in memory;
// bias is a (1, Co, 1, 1, 1) tensor. Cross-correlation, padding k/2 (none along D
// where ConvShape::pad_d is off), stride 1.
//
// How a pass computes (PassMath):
// - fp32: fp32 data and fp32 compute with CUDNN_FMA_MATH, which forbids tensor cores and so
//   TF32: the fp32 path is compared with the CPU and must not lose 13 bits of mantissa on the
//   inputs.
// - In bf16 (ConvShape::precision), a pass whose output is stored bf16 and whose channel counts
//   are multiples of 8 (what the tensor cores take) runs cuDNN's bf16 configuration: bf16
//   inputs, weights and output, products summed in fp32 on the tensor cores, the sum rounded to
//   bf16 once. Any other bf16 pass (the first layer's single channel, the head's fp32 logits,
//   the weight gradients, which stay fp32) runs on fp32 tensors that hold the inputs rounded to
//   bf16 ("bf16 values"): TF32 tensor cores multiply such values exactly (a bf16 has 8
//   significant bits, TF32 11) and sum in fp32, so the pass computes what the CPU's oneDNN bf16
//   pass does; a bf16 output is then rounded once from the fp32 sum. Inputs stored otherwise are
//   converted into the context's workspace by our kernels (kernels/nn/elementwise.h); the
//   weights into a copy held here, once per pass call.
// - The bias and the fused ELU are our epilogue kernel (bias_elu) after the convolution, in
//   fp32 and rounded once (cuDNN's fused activations have no ELU). So a forward in cuDNN's bf16
//   configuration rounds twice (the sum, then sum + bias) where the CPU rounds once: docs/KERNELS.md,
//   "Conv3d in bf16", gives the bound.
//
// Algorithms are chosen per pass (forward, backward-data, backward-filter) on the pass's first
// use, so a forward-only user never asks for a backward algorithm. The candidates come from
// cuDNN's heuristics (cudnnGet*_v7): unlike cudnnFind*, which times them and may pick
// differently from run to run, the heuristics are a function of the shape and the device, so a
// run repeats with the same algorithms and the same bits. Deterministic candidates come first;
// only when none is usable does a non-deterministic one run, with a one-line warning (results
// may then differ in the last bits between runs). A candidate must pass cuDNN's exact workspace
// query within the budget, and one that still fails when run (NOT_SUPPORTED or BAD_PARAM) is
// dropped for the next. INFANT_CUDNN_LOG=1 prints each pass's candidates and choice.
//
// The workspace is the context's one shared block (DeviceContext::workspace), grown to the
// largest need: a pass's converted activations first, then cuDNN's workspace. The budget for a
// candidate is a quarter of the free device memory (at most 4 GiB), or the block already held
// if larger. Everything runs on the context's cuDNN handle, bound to its stream.
#if INFANT_WITH_CUDA

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/nn/elementwise.h"
#include "nn/conv_backends.h"

namespace iss {
namespace {

constexpr size_t kMaxWorkspaceBytes = size_t(4) << 30;

// How a pass computes (the file's comment).
enum class PassMath { fp32, bf16, bf16_values };

const char* math_name(PassMath m) {
    return m == PassMath::fp32 ? "fp32" : m == PassMath::bf16 ? "bf16" : "bf16-values";
}

// Owns one cuDNN descriptor; destroyed with the object, also when a later constructor step throws.
template <class T, cudnnStatus_t (*destroy)(T)>
struct Descriptor {
    T handle = nullptr;
    Descriptor() = default;
    Descriptor(const Descriptor&) = delete;
    Descriptor& operator=(const Descriptor&) = delete;
    ~Descriptor() {
        if (handle) destroy(handle);
    }
};
using TensorDesc = Descriptor<cudnnTensorDescriptor_t, cudnnDestroyTensorDescriptor>;
using FilterDesc = Descriptor<cudnnFilterDescriptor_t, cudnnDestroyFilterDescriptor>;
using ConvDesc = Descriptor<cudnnConvolutionDescriptor_t, cudnnDestroyConvolutionDescriptor>;

int to_int(int64_t v, const char* what) {
    ISS_REQUIRE(v <= INT_MAX, "Conv3d (cuDNN): ", what, " = ", v, " does not fit cuDNN's int");
    return int(v);
}

// (N, C, D, H, W) dims with channels-last strides.
void set_ndhwc(cudnnTensorDescriptor_t desc, cudnnDataType_t type, int64_t n, int64_t c, int64_t d, int64_t h,
               int64_t w) {
    const int dims[5] = {to_int(n, "batch"), to_int(c, "channels"), to_int(d, "depth"), to_int(h, "height"),
                         to_int(w, "width")};
    const int strides[5] = {to_int(d * h * w * c, "voxels x channels"), 1, to_int(h * w * c, "slice x channels"),
                            to_int(w * c, "row x channels"), dims[1]};
    ISS_CUDNN_CHECK(cudnnSetTensorNdDescriptor(desc, type, 5, dims, strides));
}

// The descriptors of x, y and the filter in one element type.
struct Operands {
    TensorDesc x, y;
    FilterDesc w;
    void create(const ConvShape& s, cudnnDataType_t type) {
        ISS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x.handle));
        ISS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y.handle));
        ISS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w.handle));
        const Shape5& g = s.in;
        set_ndhwc(x.handle, type, g.n, g.c, g.d, g.h, g.w);
        const Shape5 out = s.out();
        set_ndhwc(y.handle, type, out.n, out.c, out.d, out.h, out.w);
        const int k = int(s.kernel);
        const int filter_dims[5] = {to_int(s.out_c, "output channels"), to_int(g.c, "input channels"), k, k, k};
        ISS_CUDNN_CHECK(cudnnSetFilterNdDescriptor(w.handle, type, CUDNN_TENSOR_NHWC, 5, filter_dims));
    }
};

bool cudnn_log_enabled() {
    static const bool enabled = environment_flag("INFANT_CUDNN_LOG");
    return enabled;
}

// A status after which the next candidate may still run: the algorithm does not support this
// case. Anything else (an execution failure, an internal error) may have left the device in a
// sticky error state and is thrown at once.
bool worth_another_candidate(cudnnStatus_t status) {
    const int family = int(status) / 1000;  // cuDNN 9 groups statuses by thousands
    return family == int(CUDNN_STATUS_BAD_PARAM) / 1000 || family == int(CUDNN_STATUS_NOT_SUPPORTED) / 1000;
}

// Algorithms that transform their operands (FFT, Winograd) before multiplying: on tensor cores
// the transformed values would be rounded to TF32 or bf16, which the bf16 passes' error model
// (exact products of bf16 values) does not allow.
bool transforms_operands(cudnnConvolutionFwdAlgo_t a) {
    return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
bool transforms_operands(cudnnConvolutionBwdDataAlgo_t a) {
    return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
bool transforms_operands(cudnnConvolutionBwdFilterAlgo_t a) {
    return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
           a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

// Whether a candidate keeps the pass's contract: fp32 never runs on tensor cores (no TF32); no
// pass lets cuDNN convert fp32 data down to fp16 (ALLOW_CONVERSION); the bf16 passes multiply
// the values themselves (TF32 on bf16 values is exact, and bf16 data runs on tensor cores by
// design), never transformed ones.
template <class Algo>
bool candidate_allowed(PassMath pass, Algo algo, cudnnMathType_t math) {
    if (math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return false;
    if (pass == PassMath::fp32) return math != CUDNN_TENSOR_OP_MATH;
    return !transforms_operands(algo);
}

// The convolution descriptor's math type for a pass's heuristic query, or for running one of
// its candidates (`candidate`): fp32 is held to FMA whatever the candidate says.
cudnnMathType_t math_for(PassMath pass, cudnnMathType_t candidate) {
    return pass == PassMath::fp32 ? CUDNN_FMA_MATH : candidate;
}

// One pass's algorithm, chosen on first use and replaced by the next candidate when it fails.
template <class Algo>
struct PassChoice {
    struct Candidate {
        Algo algo;
        size_t workspace_bytes;
        bool deterministic;
        cudnnMathType_t math;
    };
    PassChoice(const char* name, PassMath how) : pass(name), math(how) {}
    const char* pass;
    PassMath math;
    bool listed = false;
    std::vector<Candidate> candidates;  // best first; front() is the one in use
};

// Candidates in cuDNN's order of preference, deterministic ones first, each keeping to the
// pass's contract and confirmed by the exact workspace query (under the math it will run with)
// within the budget.
template <class Algo, class Perf, class Workspace>
void list_candidates(PassChoice<Algo>& choice, cudnnConvolutionDescriptor_t conv, const std::vector<Perf>& perf,
                     int returned, const Workspace& workspace_of, size_t budget, const ConvShape& s) {
    std::string log;
    for (const bool deterministic : {true, false}) {
        for (int i = 0; i < returned; ++i) {
            const Perf& p = perf[size_t(i)];
            if (p.status != CUDNN_STATUS_SUCCESS || (p.determinism == CUDNN_DETERMINISTIC) != deterministic) continue;
            if (!candidate_allowed(choice.math, p.algo, p.mathType)) continue;
            ISS_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, math_for(choice.math, p.mathType)));
            size_t bytes = 0;
            const cudnnStatus_t query = workspace_of(p.algo, &bytes);
            const bool fits = query == CUDNN_STATUS_SUCCESS && bytes <= budget;
            if (cudnn_log_enabled())
                log += cat(" ", int(p.algo), p.mathType == CUDNN_TENSOR_OP_MATH ? "(tensor)" : "",
                           deterministic ? "" : "(nondet)", fits ? cat(":", bytes >> 20, "MiB") : std::string(":rejected"));
            if (fits) choice.candidates.push_back({p.algo, bytes, deterministic, p.mathType});
        }
    }
    choice.listed = true;
    if (cudnn_log_enabled())
        std::fprintf(stderr, "cuDNN %s (%s) %s -> %lld ch, k%lld: %d heuristic candidates;%s\n", choice.pass,
                     math_name(choice.math), s.in.str().c_str(), (long long)s.out_c, (long long)s.kernel, returned,
                     log.c_str());
    if (choice.candidates.empty())
        throw Error(cat("Conv3d (cuDNN): no ", math_name(choice.math), " ", choice.pass, " algorithm for ", s.in.str(),
                        " -> ", s.out_c, " channels, kernel ", s.kernel, " within a ", budget >> 20, " MiB workspace (",
                        returned, " candidates)"));
}

// Runs a pass with its current candidate; a candidate that fails for lack of support is dropped
// and the next one tried. The context's workspace holds `staging_bytes` of the pass's converted
// activations, then the candidate's own workspace; `run(algo, staging, workspace, bytes)`
// converts what the pass reads into `staging` and makes the cuDNN call (again for a next
// candidate: a larger workspace may have moved the block). Returns the staging area, where the
// pass's staged output (if any) now is.
template <class Algo, class Run>
char* run_pass(DeviceContext& ctx, cudnnConvolutionDescriptor_t conv, PassChoice<Algo>& choice, const ConvShape& s,
               size_t staging_bytes, const Run& run) {
    while (!choice.candidates.empty()) {
        const auto c = choice.candidates.front();
        const size_t total = staging_bytes + c.workspace_bytes;
        char* staging = total > 0 ? static_cast<char*>(ctx.workspace(total)) : nullptr;
        void* workspace = c.workspace_bytes > 0 ? staging + staging_bytes : nullptr;
        ISS_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, math_for(choice.math, c.math)));
        const cudnnStatus_t status = run(c.algo, staging, workspace, c.workspace_bytes);
        if (status == CUDNN_STATUS_SUCCESS) {
            check_after_library_call("cuDNN", choice.pass, __FILE__, __LINE__);
            if (!c.deterministic) {
                static bool warned = false;  // once per process: every layer would say the same
                if (!warned)
                    std::fprintf(stderr,
                                 "warning: cuDNN offers no usable deterministic %s algorithm for %s; using "
                                 "non-deterministic algorithm %d (results may differ in the last bits between "
                                 "runs)\n",
                                 choice.pass, s.in.str().c_str(), int(c.algo));
                warned = true;
            }
            return staging;
        }
        if (!worth_another_candidate(status))
            throw_call_error("cuDNN", choice.pass, __FILE__, __LINE__,
                             cat(cudnnGetErrorString(status), " (algorithm ", int(c.algo), ", input ", s.in.str(), ")"));
        std::fprintf(stderr, "warning: cuDNN %s algorithm %d failed for %s (%s); trying the next candidate\n",
                     choice.pass, int(c.algo), s.in.str().c_str(), cudnnGetErrorString(status));
        choice.candidates.erase(choice.candidates.begin());
    }
    throw Error(cat("Conv3d (cuDNN): every ", math_name(choice.math), " ", choice.pass, " algorithm failed for ",
                    s.in.str(), " -> ", s.out_c, " channels"));
}

// The math of a pass whose output is stored as `output` (the file's comment).
PassMath math_for_output(const ConvShape& s, DType output) {
    if (s.precision == Precision::fp32) return PassMath::fp32;
    const bool tensor_core_channels = s.in.c % 8 == 0 && s.out_c % 8 == 0;
    return output == DType::bf16 && tensor_core_channels ? PassMath::bf16 : PassMath::bf16_values;
}

// The staging area of a pass: pieces laid out one after another, each aligned as cudaMalloc
// aligns (256 bytes).
struct StagingLayout {
    size_t bytes = 0;
    // Reserves n bytes (none when n == 0); returns their offset.
    size_t add(size_t n) {
        const size_t at = bytes;
        bytes += (n + 255) / 256 * 256;
        return at;
    }
};

// Where a forward or backward-data pass stages what it reads and what it writes: its input
// converted (if needed), then its fp32 output to round into a bf16 tensor (if needed).
struct PassStaging {
    StagingLayout layout;
    size_t input_at = 0, output_at = 0;
    bool output_staged = false;
};

class CudnnConv3d final : public ConvBackend {
public:
    CudnnConv3d(DeviceContext& ctx, const ConvShape& s);

    void forward(const void* x, const float* w, const float* b, void* y) override;
    void backward_data(const void* dy, const float* w, void* dx) override;
    void backward_weights(const void* x, const void* dy, float* dw, float* db) override;

private:
    // The most a candidate's own workspace may take, beside `staging_bytes` of converted
    // activations in the same block.
    size_t workspace_budget(size_t staging_bytes) const {
        const size_t budget = std::max(ctx_.workspace_bytes(), std::min(kMaxWorkspaceBytes, ctx_.memory_free() / 4));
        return budget > staging_bytes ? budget - staging_bytes : 0;
    }
    // Max count of a pass's heuristic list, at least 1 (a buffer for cuDNN to fill).
    static size_t count_of(cudnnStatus_t (*max_count)(cudnnHandle_t, int*), cudnnHandle_t handle) {
        int count = 0;
        ISS_CUDNN_CHECK(max_count(handle, &count));
        return size_t(std::max(count, 1));
    }
    const Operands& operands(PassMath m) const { return m == PassMath::bf16 ? bf16_ : fp32_; }
    // Sets the convolution's math for a pass's heuristic query.
    void prepare_query(PassMath m) {
        ISS_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.handle, math_for(m, CUDNN_TENSOR_OP_MATH)));
    }
    // The weights as a pass of math m reads them: the caller's fp32, or converted into our copy.
    const void* pass_weights(PassMath m, const float* w);
    // Bytes of staging for an activation stored as `stored` read by a pass of math m (0 when
    // the pass reads the caller's tensor), and the tensor as the pass reads it.
    static size_t input_bytes(PassMath m, DType stored, int64_t count);
    const void* pass_input(PassMath m, DType stored, const void* ptr, int64_t count, char* space);
    // Bytes of staging for a pass's output stored as `stored`: an fp32 sum to round to bf16.
    static size_t output_bytes(PassMath m, DType stored, int64_t count) {
        return m == PassMath::bf16_values && stored == DType::bf16 ? size_t(count) * sizeof(float) : 0;
    }
    static PassStaging staging_for(PassMath m, DType in_type, int64_t in_count, DType out_type, int64_t out_count) {
        PassStaging p;
        p.input_at = p.layout.add(input_bytes(m, in_type, in_count));
        p.output_staged = output_bytes(m, out_type, out_count) > 0;
        p.output_at = p.layout.add(output_bytes(m, out_type, out_count));
        return p;
    }

    DeviceContext& ctx_;
    ConvShape shape_;
    cudnnHandle_t handle_ = nullptr;
    Operands fp32_, bf16_;  // bf16_ only where a pass runs cuDNN's bf16 configuration
    TensorDesc b_;
    ConvDesc conv_;
    PassChoice<cudnnConvolutionFwdAlgo_t> fwd_;
    PassChoice<cudnnConvolutionBwdDataAlgo_t> bwd_data_;
    PassChoice<cudnnConvolutionBwdFilterAlgo_t> bwd_filter_;
    // The weights rounded to bf16, as bf16 or as fp32 values (each only where a pass reads them so).
    Buffer<Bf16> w_bf16_;
    Buffer<float> w_bf16_values_;
};

CudnnConv3d::CudnnConv3d(DeviceContext& ctx, const ConvShape& s)
    : ctx_(ctx),
      shape_(s),
      fwd_("forward", math_for_output(s, s.y_type)),
      bwd_data_("backward-data", math_for_output(s, s.x_type)),
      // The weight gradients are fp32 (nn/conv.h): never cuDNN's bf16 configuration.
      bwd_filter_("backward-filter", s.precision == Precision::fp32 ? PassMath::fp32 : PassMath::bf16_values) {
    // The context was built for a device it found; cuDNN is touched only after that.
    ISS_REQUIRE(ctx.is_cuda(), "Conv3d (cuDNN): needs a CUDA context");
    handle_ = static_cast<cudnnHandle_t>(ctx.cudnn_handle());
    const Shape5& g = s.in;
    to_int(g.size(), "input elements");
    to_int(s.out().size(), "output elements");
    const int pad = int(s.padding());

    fp32_.create(s, CUDNN_DATA_FLOAT);
    const bool any_bf16 = fwd_.math == PassMath::bf16 || bwd_data_.math == PassMath::bf16;
    const bool any_bf16_values = fwd_.math == PassMath::bf16_values || bwd_data_.math == PassMath::bf16_values;
    if (any_bf16) {
        bf16_.create(s, CUDNN_DATA_BFLOAT16);
        w_bf16_ = Buffer<Bf16>(ctx, size_t(s.weight_count()));
    }
    if (any_bf16_values) w_bf16_values_ = Buffer<float>(ctx, size_t(s.weight_count()));
    ISS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&b_.handle));
    set_ndhwc(b_.handle, CUDNN_DATA_FLOAT, 1, s.out_c, 1, 1, 1);
    ISS_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv_.handle));
    const int pads[3] = {int(s.padding_d()), pad, pad}, strides[3] = {1, 1, 1}, dilations[3] = {1, 1, 1};
    // The compute type is fp32 in every pass (bf16 data summed in fp32: cuDNN's "pseudo" bf16).
    ISS_CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(conv_.handle, 3, pads, strides, dilations,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    ISS_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.handle, CUDNN_FMA_MATH));

    // cuDNN's idea of the output must be ours (ConvShape::out), or the descriptors are wrong.
    int out_dims[5] = {};
    ISS_CUDNN_CHECK(cudnnGetConvolutionNdForwardOutputDim(conv_.handle, fp32_.x.handle, fp32_.w.handle, 5, out_dims));
    const Shape5 out = s.out();
    ISS_REQUIRE(out_dims[0] == out.n && out_dims[1] == out.c && out_dims[2] == out.d && out_dims[3] == out.h &&
                    out_dims[4] == out.w,
                "Conv3d (cuDNN): output dims ", out_dims[0], "x", out_dims[1], "x", out_dims[2], "x", out_dims[3], "x",
                out_dims[4], " differ from ", out.str());
}

const void* CudnnConv3d::pass_weights(PassMath m, const float* w) {
    const int64_t count = shape_.weight_count();
    if (m == PassMath::bf16) {
        round_to_bf16_values(ctx_, w, w_bf16_.data(), count);
        return w_bf16_.data();
    }
    if (m == PassMath::bf16_values) {
        round_to_bf16_values(ctx_, w, w_bf16_values_.data(), count);
        return w_bf16_values_.data();
    }
    return w;
}

size_t CudnnConv3d::input_bytes(PassMath m, DType stored, int64_t count) {
    if (m == PassMath::fp32 || (m == PassMath::bf16 && stored == DType::bf16)) return 0;
    return size_t(count) * (m == PassMath::bf16 ? sizeof(Bf16) : sizeof(float));
}

const void* CudnnConv3d::pass_input(PassMath m, DType stored, const void* ptr, int64_t count, char* space) {
    if (input_bytes(m, stored, count) == 0) return ptr;
    if (m == PassMath::bf16) {  // stored fp32
        round_to_bf16_values(ctx_, static_cast<const float*>(ptr), reinterpret_cast<Bf16*>(space), count);
    } else if (stored == DType::bf16) {
        round_to_bf16_values(ctx_, static_cast<const Bf16*>(ptr), reinterpret_cast<float*>(space), count);
    } else {
        round_to_bf16_values(ctx_, static_cast<const float*>(ptr), reinterpret_cast<float*>(space), count);
    }
    return space;
}

void CudnnConv3d::forward(const void* x, const float* w, const float* b, void* y) {
    const PassMath m = fwd_.math;
    const Operands& o = operands(m);
    const int64_t in_count = shape_.in.size(), out_count = shape_.out().size();
    const PassStaging st = staging_for(m, shape_.x_type, in_count, shape_.y_type, out_count);
    if (!fwd_.listed) {
        prepare_query(m);
        std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(count_of(cudnnGetConvolutionForwardAlgorithmMaxCount, handle_));
        int returned = 0;
        ISS_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle_, o.x.handle, o.w.handle, conv_.handle,
                                                               o.y.handle, int(perf.size()), &returned, perf.data()));
        list_candidates(
            fwd_, conv_.handle, perf, returned,
            [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
                return cudnnGetConvolutionForwardWorkspaceSize(handle_, o.x.handle, o.w.handle, conv_.handle,
                                                               o.y.handle, algo, bytes);
            },
            workspace_budget(st.layout.bytes), shape_);
    }
    const void* weights = pass_weights(m, w);
    const float one = 1.0f, zero = 0.0f;
    char* staging = run_pass(ctx_, conv_.handle, fwd_, shape_, st.layout.bytes,
                             [&](cudnnConvolutionFwdAlgo_t algo, char* space, void* workspace, size_t bytes) {
                                 const void* in = pass_input(m, shape_.x_type, x, in_count, space + st.input_at);
                                 void* out = st.output_staged ? space + st.output_at : y;
                                 return cudnnConvolutionForward(handle_, &one, o.x.handle, in, o.w.handle, weights,
                                                                conv_.handle, algo, workspace, bytes, &zero,
                                                                o.y.handle, out);
                             });
    // The bias and the fused ELU, rounded once into y from the pass's output (y itself, or its
    // staged fp32 sum).
    const int64_t voxels = out_count / shape_.out_c;
    const bool elu = shape_.elu_alpha > 0;
    if (st.output_staged)
        bias_elu(ctx_, reinterpret_cast<const float*>(staging + st.output_at), static_cast<Bf16*>(y), b, voxels, shape_.out_c,
                 elu, shape_.elu_alpha);
    else if (shape_.y_type == DType::bf16)
        bias_elu(ctx_, static_cast<const Bf16*>(y), static_cast<Bf16*>(y), b, voxels, shape_.out_c, elu,
                 shape_.elu_alpha);
    else
        bias_elu(ctx_, static_cast<const float*>(y), static_cast<float*>(y), b, voxels, shape_.out_c, elu,
                 shape_.elu_alpha);
}

void CudnnConv3d::backward_data(const void* dy, const float* w, void* dx) {
    const PassMath m = bwd_data_.math;
    const Operands& o = operands(m);
    const int64_t in_count = shape_.in.size(), out_count = shape_.out().size();
    const PassStaging st = staging_for(m, shape_.y_type, out_count, shape_.x_type, in_count);
    if (!bwd_data_.listed) {
        prepare_query(m);
        std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(
            count_of(cudnnGetConvolutionBackwardDataAlgorithmMaxCount, handle_));
        int returned = 0;
        ISS_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle_, o.w.handle, o.y.handle, conv_.handle,
                                                                    o.x.handle, int(perf.size()), &returned,
                                                                    perf.data()));
        list_candidates(
            bwd_data_, conv_.handle, perf, returned,
            [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
                return cudnnGetConvolutionBackwardDataWorkspaceSize(handle_, o.w.handle, o.y.handle, conv_.handle,
                                                                    o.x.handle, algo, bytes);
            },
            workspace_budget(st.layout.bytes), shape_);
    }
    const void* weights = pass_weights(m, w);
    const float one = 1.0f, zero = 0.0f;
    char* staging = run_pass(ctx_, conv_.handle, bwd_data_, shape_, st.layout.bytes,
                             [&](cudnnConvolutionBwdDataAlgo_t algo, char* space, void* workspace, size_t bytes) {
                                 const void* in = pass_input(m, shape_.y_type, dy, out_count, space + st.input_at);
                                 void* out = st.output_staged ? space + st.output_at : dx;
                                 return cudnnConvolutionBackwardData(handle_, &one, o.w.handle, weights, o.y.handle,
                                                                     in, conv_.handle, algo, workspace, bytes, &zero,
                                                                     o.x.handle, out);
                             });
    if (st.output_staged)
        round_to_bf16_values(ctx_, reinterpret_cast<const float*>(staging + st.output_at), static_cast<Bf16*>(dx), in_count);
}

void CudnnConv3d::backward_weights(const void* x, const void* dy, float* dw, float* db) {
    const PassMath m = bwd_filter_.math;
    const Operands& o = operands(m);  // fp32 descriptors: the gradients are fp32
    const int64_t in_count = shape_.in.size(), out_count = shape_.out().size();
    StagingLayout layout;
    const size_t x_at = layout.add(input_bytes(m, shape_.x_type, in_count));
    const size_t dy_at = layout.add(input_bytes(m, shape_.y_type, out_count));
    if (!bwd_filter_.listed) {
        prepare_query(m);
        std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(
            count_of(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount, handle_));
        int returned = 0;
        ISS_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle_, o.x.handle, o.y.handle, conv_.handle,
                                                                      o.w.handle, int(perf.size()), &returned,
                                                                      perf.data()));
        list_candidates(
            bwd_filter_, conv_.handle, perf, returned,
            [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
                return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle_, o.x.handle, o.y.handle, conv_.handle,
                                                                      o.w.handle, algo, bytes);
            },
            workspace_budget(layout.bytes), shape_);
    }
    const void* dy_read = dy;  // the gradient as the pass read it, for the bias gradient below
    const float one = 1.0f, zero = 0.0f;
    run_pass(ctx_, conv_.handle, bwd_filter_, shape_, layout.bytes,
             [&](cudnnConvolutionBwdFilterAlgo_t algo, char* space, void* workspace, size_t bytes) {
                 const void* in = pass_input(m, shape_.x_type, x, in_count, space + x_at);
                 dy_read = pass_input(m, shape_.y_type, dy, out_count, space + dy_at);
                 return cudnnConvolutionBackwardFilter(handle_, &one, o.x.handle, in, o.y.handle, dy_read,
                                                       conv_.handle, algo, workspace, bytes, &zero, o.w.handle, dw);
             });
    ISS_CUDNN_CHECK(cudnnConvolutionBackwardBias(handle_, &one, o.y.handle, dy_read, &zero, b_.handle, db));
}

}  // namespace

std::unique_ptr<ConvBackend> make_cudnn_conv3d(DeviceContext& ctx, const ConvShape& shape) {
    return std::make_unique<CudnnConv3d>(ctx, shape);
}

}  // namespace iss

#endif  // INFANT_WITH_CUDA
