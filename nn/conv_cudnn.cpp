// Conv3d on CUDA with cuDNN's legacy convolution API (deprecated in cuDNN 9 but working; it is
// confined to this file so that moving to the graph API touches nothing else).
//
// Activations are 5-D tensors with dims (N, C, D, H, W) and channels-last strides (NDHWC);
// the filter is CUDNN_TENSOR_NHWC with dims (K, C, kD, kH, kW), which is odhwi in memory;
// bias is a (1, Co, 1, 1, 1) tensor. Cross-correlation, padding (k-1)/2, stride 1, fp32 data
// and fp32 compute with CUDNN_FMA_MATH, which forbids tensor cores and so TF32: the fp32 path
// is compared with the CPU and must not lose 13 bits of mantissa on the inputs.
//
// Algorithms come from cuDNN's heuristics (cudnnGet*_v7), once per shape in the constructor:
// unlike cudnnFind*, which times candidates and may pick differently from run to run, the
// heuristics are a function of the shape and the device, so the same run repeats with the same
// algorithms and the same bits. Only deterministic algorithms are taken (backward-data and
// backward-filter have atomics-based ones). One workspace, the largest of the three, is
// allocated once. Everything runs on the context's cuDNN handle, bound to its stream.
#if INFANT_WITH_CUDA

#include <algorithm>
#include <climits>
#include <tuple>
#include <vector>

#include "kernels/common/cuda_check.h"
#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "nn/conv_backends.h"

namespace iss {
namespace {

// Workspace budget per convolution: algorithms asking for more (some FFT variants want
// gigabytes for 3-D) are passed over for the next candidate.
constexpr size_t kMaxWorkspaceBytes = size_t(1) << 30;

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

// The first candidate (cuDNN lists them best first) that is deterministic, keeps to fp32 FMA
// math, and for which cuDNN's exact workspace query succeeds within the budget: heuristics can
// list algorithms that the exact query then rejects for a shape, so each is confirmed and the
// next one tried. Returns the algorithm and its exact workspace size.
template <class Perf, class Probe>
std::pair<decltype(Perf{}.algo), size_t> choose(const std::vector<Perf>& perf, int returned, const Probe& workspace_of,
                                                const char* pass, const ConvShape& s) {
    for (int i = 0; i < returned; ++i) {
        const Perf& p = perf[size_t(i)];
        if (p.status != CUDNN_STATUS_SUCCESS || p.determinism != CUDNN_DETERMINISTIC) continue;
        if (p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
        size_t bytes = 0;
        if (workspace_of(p.algo, &bytes) != CUDNN_STATUS_SUCCESS || bytes > kMaxWorkspaceBytes) continue;
        return {p.algo, bytes};
    }
    throw Error(cat("Conv3d (cuDNN): no deterministic fp32 ", pass, " algorithm for ", s.in.str(), " -> ", s.out_c,
                    " channels, kernel ", s.kernel, " (", returned, " candidates)"));
}

class CudnnConv3d final : public ConvBackend {
public:
    CudnnConv3d(DeviceContext& ctx, const ConvShape& s);

    void forward(const float* x, const float* w, const float* b, float* y) override;
    void backward_data(const float* dy, const float* w, float* dx) override;
    void backward_weights(const float* x, const float* dy, float* dw, float* db) override;

private:
    cudnnHandle_t handle_ = nullptr;
    TensorDesc x_, y_, b_;
    FilterDesc w_;
    ConvDesc conv_;
    cudnnConvolutionFwdAlgo_t fwd_algo_{};
    cudnnConvolutionBwdDataAlgo_t bwd_data_algo_{};
    cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo_{};
    size_t workspace_bytes_ = 0;
    Buffer<unsigned char> workspace_;
};

CudnnConv3d::CudnnConv3d(DeviceContext& ctx, const ConvShape& s) {
    // The context was built for a device it found; cuDNN is touched only after that.
    ISS_REQUIRE(ctx.is_cuda(), "Conv3d (cuDNN): needs a CUDA context");
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

    int count = 0, returned = 0;
    size_t fwd_bytes = 0, bwd_data_bytes = 0, bwd_filter_bytes = 0;
    ISS_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle_, &count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> fwd(size_t(std::max(count, 1)));
    ISS_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle_, x_.handle, w_.handle, conv_.handle, y_.handle,
                                                           int(fwd.size()), &returned, fwd.data()));
    std::tie(fwd_algo_, fwd_bytes) = choose(
        fwd, returned,
        [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
            return cudnnGetConvolutionForwardWorkspaceSize(handle_, x_.handle, w_.handle, conv_.handle, y_.handle,
                                                           algo, bytes);
        },
        "forward", s);

    ISS_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle_, &count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> bwd_data(size_t(std::max(count, 1)));
    ISS_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle_, w_.handle, y_.handle, conv_.handle,
                                                                x_.handle, int(bwd_data.size()), &returned,
                                                                bwd_data.data()));
    std::tie(bwd_data_algo_, bwd_data_bytes) = choose(
        bwd_data, returned,
        [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
            return cudnnGetConvolutionBackwardDataWorkspaceSize(handle_, w_.handle, y_.handle, conv_.handle,
                                                                x_.handle, algo, bytes);
        },
        "backward-data", s);

    ISS_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle_, &count));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> bwd_filter(size_t(std::max(count, 1)));
    ISS_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle_, x_.handle, y_.handle, conv_.handle,
                                                                  w_.handle, int(bwd_filter.size()), &returned,
                                                                  bwd_filter.data()));
    std::tie(bwd_filter_algo_, bwd_filter_bytes) = choose(
        bwd_filter, returned,
        [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
            return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle_, x_.handle, y_.handle, conv_.handle,
                                                                  w_.handle, algo, bytes);
        },
        "backward-filter", s);

    workspace_bytes_ = std::max({fwd_bytes, bwd_data_bytes, bwd_filter_bytes});
    if (workspace_bytes_ > 0) workspace_ = Buffer<unsigned char>(ctx, workspace_bytes_);
}

void CudnnConv3d::forward(const float* x, const float* w, const float* b, float* y) {
    const float one = 1.0f, zero = 0.0f;
    ISS_CUDNN_CHECK(cudnnConvolutionForward(handle_, &one, x_.handle, x, w_.handle, w, conv_.handle, fwd_algo_,
                                            workspace_.data(), workspace_bytes_, &zero, y_.handle, y));
    // y += b, the bias broadcast over every position.
    ISS_CUDNN_CHECK(cudnnAddTensor(handle_, &one, b_.handle, b, &one, y_.handle, y));
}

void CudnnConv3d::backward_data(const float* dy, const float* w, float* dx) {
    const float one = 1.0f, zero = 0.0f;
    ISS_CUDNN_CHECK(cudnnConvolutionBackwardData(handle_, &one, w_.handle, w, y_.handle, dy, conv_.handle,
                                                 bwd_data_algo_, workspace_.data(), workspace_bytes_, &zero,
                                                 x_.handle, dx));
}

void CudnnConv3d::backward_weights(const float* x, const float* dy, float* dw, float* db) {
    const float one = 1.0f, zero = 0.0f;
    ISS_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle_, &one, x_.handle, x, y_.handle, dy, conv_.handle,
                                                   bwd_filter_algo_, workspace_.data(), workspace_bytes_, &zero,
                                                   w_.handle, dw));
    ISS_CUDNN_CHECK(cudnnConvolutionBackwardBias(handle_, &one, y_.handle, dy, &zero, b_.handle, db));
}

}  // namespace

std::unique_ptr<ConvBackend> make_cudnn_conv3d(DeviceContext& ctx, const ConvShape& shape) {
    return std::make_unique<CudnnConv3d>(ctx, shape);
}

}  // namespace iss

#endif  // INFANT_WITH_CUDA
