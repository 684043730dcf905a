// Conv3d on CUDA with cuDNN's legacy convolution API (deprecated in cuDNN 9 but working; it is
// confined to this file so that moving to the graph API touches nothing else).
//
// Activations are 5-D tensors with dims (N, C, D, H, W) and channels-last strides (NDHWC);
// the filter is CUDNN_TENSOR_NHWC with dims (K, C, kD, kH, kW), which is odhwi in memory;
// bias is a (1, Co, 1, 1, 1) tensor. Cross-correlation, padding (k-1)/2, stride 1, fp32 data
// and fp32 compute with CUDNN_FMA_MATH, which forbids tensor cores and so TF32: the fp32 path
// is compared with the CPU and must not lose 13 bits of mantissa on the inputs.
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
// largest need; the budget for a candidate is a quarter of the free device memory (at most
// 4 GiB), or the block already held if larger. Everything runs on the context's cuDNN handle,
// bound to its stream.
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
void set_ndhwc(cudnnTensorDescriptor_t desc, int64_t n, int64_t c, int64_t d, int64_t h, int64_t w) {
    const int dims[5] = {to_int(n, "batch"), to_int(c, "channels"), to_int(d, "depth"), to_int(h, "height"),
                         to_int(w, "width")};
    const int strides[5] = {to_int(d * h * w * c, "voxels x channels"), 1, to_int(h * w * c, "slice x channels"),
                            to_int(w * c, "row x channels"), dims[1]};
    ISS_CUDNN_CHECK(cudnnSetTensorNdDescriptor(desc, CUDNN_DATA_FLOAT, 5, dims, strides));
}

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

// One pass's algorithm, chosen on first use and replaced by the next candidate when it fails.
template <class Algo>
struct PassChoice {
    struct Candidate {
        Algo algo;
        size_t workspace_bytes;
        bool deterministic;
    };
    explicit PassChoice(const char* name) : pass(name) {}
    const char* pass;
    bool listed = false;
    std::vector<Candidate> candidates;  // best first; front() is the one in use
};

// Candidates in cuDNN's order of preference, deterministic ones first, each confirmed by the
// exact workspace query within the budget and keeping to fp32 FMA math.
template <class Algo, class Perf, class Workspace>
void list_candidates(PassChoice<Algo>& choice, const std::vector<Perf>& perf, int returned,
                     const Workspace& workspace_of, size_t budget, const ConvShape& s) {
    std::string log;
    for (const bool deterministic : {true, false}) {
        for (int i = 0; i < returned; ++i) {
            const Perf& p = perf[size_t(i)];
            if (p.status != CUDNN_STATUS_SUCCESS || (p.determinism == CUDNN_DETERMINISTIC) != deterministic) continue;
            if (p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
            size_t bytes = 0;
            const cudnnStatus_t query = workspace_of(p.algo, &bytes);
            const bool fits = query == CUDNN_STATUS_SUCCESS && bytes <= budget;
            if (cudnn_log_enabled())
                log += cat(" ", int(p.algo), deterministic ? "" : "(nondet)",
                           fits ? cat(":", bytes >> 20, "MiB") : std::string(":rejected"));
            if (fits) choice.candidates.push_back({p.algo, bytes, deterministic});
        }
    }
    choice.listed = true;
    if (cudnn_log_enabled())
        std::fprintf(stderr, "cuDNN %s %s -> %lld ch, k%lld: %d heuristic candidates;%s\n", choice.pass,
                     s.in.str().c_str(), (long long)s.out_c, (long long)s.kernel, returned, log.c_str());
    if (choice.candidates.empty())
        throw Error(cat("Conv3d (cuDNN): no fp32 ", choice.pass, " algorithm for ", s.in.str(), " -> ", s.out_c,
                        " channels, kernel ", s.kernel, " within a ", budget >> 20, " MiB workspace (", returned,
                        " candidates)"));
}

// Runs a pass with its current candidate; a candidate that fails for lack of support is dropped
// and the next one tried. `run(algo, workspace, bytes)` makes the cuDNN call.
template <class Algo, class Run>
void run_pass(DeviceContext& ctx, PassChoice<Algo>& choice, const ConvShape& s, const Run& run) {
    while (!choice.candidates.empty()) {
        const auto c = choice.candidates.front();
        void* workspace = c.workspace_bytes > 0 ? ctx.workspace(c.workspace_bytes) : nullptr;
        const cudnnStatus_t status = run(c.algo, workspace, c.workspace_bytes);
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
            return;
        }
        if (!worth_another_candidate(status))
            throw_call_error("cuDNN", choice.pass, __FILE__, __LINE__,
                             cat(cudnnGetErrorString(status), " (algorithm ", int(c.algo), ", input ", s.in.str(), ")"));
        std::fprintf(stderr, "warning: cuDNN %s algorithm %d failed for %s (%s); trying the next candidate\n",
                     choice.pass, int(c.algo), s.in.str().c_str(), cudnnGetErrorString(status));
        choice.candidates.erase(choice.candidates.begin());
    }
    throw Error(cat("Conv3d (cuDNN): every ", choice.pass, " algorithm failed for ", s.in.str(), " -> ", s.out_c,
                    " channels"));
}

class CudnnConv3d final : public ConvBackend {
public:
    CudnnConv3d(DeviceContext& ctx, const ConvShape& s);

    void forward(const void* x, const float* w, const float* b, void* y) override;
    void backward_data(const void* dy, const float* w, void* dx) override;
    void backward_weights(const void* x, const void* dy, float* dw, float* db) override;

private:
    size_t workspace_budget() const {
        return std::max(ctx_.workspace_bytes(), std::min(kMaxWorkspaceBytes, ctx_.memory_free() / 4));
    }
    // Max count of a pass's heuristic list, at least 1 (a buffer for cuDNN to fill).
    static size_t count_of(cudnnStatus_t (*max_count)(cudnnHandle_t, int*), cudnnHandle_t handle) {
        int count = 0;
        ISS_CUDNN_CHECK(max_count(handle, &count));
        return size_t(std::max(count, 1));
    }

    DeviceContext& ctx_;
    ConvShape shape_;
    cudnnHandle_t handle_ = nullptr;
    TensorDesc x_, y_, b_;
    FilterDesc w_;
    ConvDesc conv_;
    PassChoice<cudnnConvolutionFwdAlgo_t> fwd_{"forward"};
    PassChoice<cudnnConvolutionBwdDataAlgo_t> bwd_data_{"backward-data"};
    PassChoice<cudnnConvolutionBwdFilterAlgo_t> bwd_filter_{"backward-filter"};
};

CudnnConv3d::CudnnConv3d(DeviceContext& ctx, const ConvShape& s) : ctx_(ctx), shape_(s) {
    // The context was built for a device it found; cuDNN is touched only after that.
    ISS_REQUIRE(ctx.is_cuda(), "Conv3d (cuDNN): needs a CUDA context");
    ISS_REQUIRE(s.precision == Precision::fp32, "Conv3d (cuDNN): only fp32 is implemented");
    handle_ = static_cast<cudnnHandle_t>(ctx.cudnn_handle());
    const Shape5& g = s.in;
    to_int(g.size(), "input elements");
    to_int(s.out().size(), "output elements");
    const int k = int(s.kernel), pad = (k - 1) / 2;

    ISS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x_.handle));
    ISS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y_.handle));
    ISS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&b_.handle));
    ISS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w_.handle));
    ISS_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv_.handle));
    set_ndhwc(x_.handle, g.n, g.c, g.d, g.h, g.w);
    set_ndhwc(y_.handle, g.n, s.out_c, g.d, g.h, g.w);
    set_ndhwc(b_.handle, 1, s.out_c, 1, 1, 1);
    const int filter_dims[5] = {to_int(s.out_c, "output channels"), to_int(g.c, "input channels"), k, k, k};
    ISS_CUDNN_CHECK(cudnnSetFilterNdDescriptor(w_.handle, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, 5, filter_dims));
    const int pads[3] = {pad, pad, pad}, strides[3] = {1, 1, 1}, dilations[3] = {1, 1, 1};
    ISS_CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(conv_.handle, 3, pads, strides, dilations,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    ISS_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.handle, CUDNN_FMA_MATH));

    // cuDNN's idea of the output must be ours ("same" size), or the descriptors are wrong.
    int out_dims[5] = {};
    ISS_CUDNN_CHECK(cudnnGetConvolutionNdForwardOutputDim(conv_.handle, x_.handle, w_.handle, 5, out_dims));
    ISS_REQUIRE(out_dims[0] == g.n && out_dims[1] == s.out_c && out_dims[2] == g.d && out_dims[3] == g.h &&
                    out_dims[4] == g.w,
                "Conv3d (cuDNN): output dims ", out_dims[0], "x", out_dims[1], "x", out_dims[2], "x", out_dims[3],
                "x", out_dims[4], " differ from the 'same' shape ", s.out().str());
}

void CudnnConv3d::forward(const void* x, const float* w, const float* b, void* y) {
    if (!fwd_.listed) {
        std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(count_of(cudnnGetConvolutionForwardAlgorithmMaxCount, handle_));
        int returned = 0;
        ISS_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle_, x_.handle, w_.handle, conv_.handle, y_.handle,
                                                               int(perf.size()), &returned, perf.data()));
        list_candidates(
            fwd_, perf, returned,
            [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
                return cudnnGetConvolutionForwardWorkspaceSize(handle_, x_.handle, w_.handle, conv_.handle,
                                                               y_.handle, algo, bytes);
            },
            workspace_budget(), shape_);
    }
    const float one = 1.0f, zero = 0.0f;
    run_pass(ctx_, fwd_, shape_, [&](cudnnConvolutionFwdAlgo_t algo, void* workspace, size_t bytes) {
        return cudnnConvolutionForward(handle_, &one, x_.handle, x, w_.handle, w, conv_.handle, algo, workspace,
                                       bytes, &zero, y_.handle, y);
    });
    // y += b, the bias broadcast over every position.
    ISS_CUDNN_CHECK(cudnnAddTensor(handle_, &one, b_.handle, b, &one, y_.handle, y));
    // The fused ELU: our kernel in place (cuDNN's fused activations have no ELU).
    if (shape_.elu_alpha > 0) {
        float* out = static_cast<float*>(y);
        elu_forward(ctx_, out, out, shape_.out().size(), shape_.elu_alpha);
    }
}

void CudnnConv3d::backward_data(const void* dy, const float* w, void* dx) {
    if (!bwd_data_.listed) {
        std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(
            count_of(cudnnGetConvolutionBackwardDataAlgorithmMaxCount, handle_));
        int returned = 0;
        ISS_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle_, w_.handle, y_.handle, conv_.handle,
                                                                    x_.handle, int(perf.size()), &returned,
                                                                    perf.data()));
        list_candidates(
            bwd_data_, perf, returned,
            [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
                return cudnnGetConvolutionBackwardDataWorkspaceSize(handle_, w_.handle, y_.handle, conv_.handle,
                                                                    x_.handle, algo, bytes);
            },
            workspace_budget(), shape_);
    }
    const float one = 1.0f, zero = 0.0f;
    run_pass(ctx_, bwd_data_, shape_, [&](cudnnConvolutionBwdDataAlgo_t algo, void* workspace, size_t bytes) {
        return cudnnConvolutionBackwardData(handle_, &one, w_.handle, w, y_.handle, dy, conv_.handle, algo, workspace,
                                            bytes, &zero, x_.handle, dx);
    });
}

void CudnnConv3d::backward_weights(const void* x, const void* dy, float* dw, float* db) {
    if (!bwd_filter_.listed) {
        std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(
            count_of(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount, handle_));
        int returned = 0;
        ISS_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle_, x_.handle, y_.handle, conv_.handle,
                                                                      w_.handle, int(perf.size()), &returned,
                                                                      perf.data()));
        list_candidates(
            bwd_filter_, perf, returned,
            [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
                return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle_, x_.handle, y_.handle, conv_.handle,
                                                                      w_.handle, algo, bytes);
            },
            workspace_budget(), shape_);
    }
    const float one = 1.0f, zero = 0.0f;
    run_pass(ctx_, bwd_filter_, shape_, [&](cudnnConvolutionBwdFilterAlgo_t algo, void* workspace, size_t bytes) {
        return cudnnConvolutionBackwardFilter(handle_, &one, x_.handle, x, y_.handle, dy, conv_.handle, algo,
                                              workspace, bytes, &zero, w_.handle, dw);
    });
    ISS_CUDNN_CHECK(cudnnConvolutionBackwardBias(handle_, &one, y_.handle, dy, &zero, b_.handle, db));
}

}  // namespace

std::unique_ptr<ConvBackend> make_cudnn_conv3d(DeviceContext& ctx, const ConvShape& shape) {
    return std::make_unique<CudnnConv3d>(ctx, shape);
}

}  // namespace iss

#endif  // INFANT_WITH_CUDA
