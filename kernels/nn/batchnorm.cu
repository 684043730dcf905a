// CUDA launchers of batch normalisation. The per-chunk partial sums are one block per chunk
// (grid.x) and per tile of 32 channels (grid.y): threadIdx.x is the channel in the tile, so a
// warp reads 32 neighbouring channels of one position; threadIdx.y is one of kLanes position
// lanes striding through the chunk. Each thread sums in double in position order, then the
// lanes are combined in shared memory by a fixed tree (8 -> 4 -> 2 -> 1): the same bits on
// every run, no atomics. Combining chunks, the per-channel finishing and the element-wise
// passes are the shared bodies of batchnorm.h.
#include "kernels/common/launch.cuh"
#include "kernels/nn/batchnorm.h"
#include "kernels/nn/channels_last.h"

namespace iss {
namespace {

constexpr int kTile = 32;  // channels per block (a warp)
constexpr int kLanes = 8;  // position lanes per block

template <class Term>
__global__ void chunk_sums_kernel(const Term term, int64_t positions, int64_t channels, int64_t chunks,
                                  double* partials) {
    __shared__ double lane_sums[2][kLanes][kTile];
    const int64_t chunk = blockIdx.x;
    const int64_t c = int64_t(blockIdx.y) * kTile + threadIdx.x;
    double s0 = 0.0, s1 = 0.0;
    if (c < channels) {
        const int64_t end = min(positions, (chunk + 1) * kBnChunk);
        for (int64_t p = chunk * kBnChunk + threadIdx.y; p < end; p += kLanes) term.add(p * channels + c, c, s0, s1);
    }
    lane_sums[0][threadIdx.y][threadIdx.x] = s0;
    lane_sums[1][threadIdx.y][threadIdx.x] = s1;
    __syncthreads();
    for (int half = kLanes / 2; half > 0; half /= 2) {
        if (threadIdx.y < half) {
            lane_sums[0][threadIdx.y][threadIdx.x] += lane_sums[0][threadIdx.y + half][threadIdx.x];
            lane_sums[1][threadIdx.y][threadIdx.x] += lane_sums[1][threadIdx.y + half][threadIdx.x];
        }
        __syncthreads();
    }
    if (threadIdx.y == 0 && c < channels) {
        partials[chunk * channels + c] = lane_sums[0][0][threadIdx.x];
        if (Term::terms == 2) partials[(chunks + chunk) * channels + c] = lane_sums[1][0][threadIdx.x];
    }
}

template <class Term>
void chunk_sums(DeviceContext& ctx, const Term& term, const Shape5& shape, double* partials) {
    const int64_t chunks = bn_chunks(shape);
    const dim3 grid(unsigned(chunks), unsigned((shape.c + kTile - 1) / kTile));
    const dim3 block(kTile, kLanes);
    chunk_sums_kernel<<<grid, block, 0, static_cast<cudaStream_t>(ctx.cuda_stream())>>>(term, shape.voxels(), shape.c,
                                                                                         chunks, partials);
    ISS_CUDA_CHECK_LAUNCH();
}

void combine(DeviceContext& ctx, const BnWorkspace& ws, const Shape5& shape, int terms, double* totals,
             double divisor) {
    cuda_for_each(ctx, terms * shape.c, BnCombineBody{ws.partials, bn_chunks(shape), shape.c, totals, divisor});
}

}  // namespace

template <class T>
void batchnorm_forward_train_cuda(DeviceContext& ctx, const T* x, const Shape5& shape, const float* gamma,
                                  const float* beta, float eps, float momentum, T* y, float* save_mean,
                                  float* save_invstd, float* running_mean, float* running_var, void* workspace) {
    const int64_t channels = shape.c, positions = shape.voxels();
    ISS_REQUIRE(bn_chunks(shape) < (int64_t(1) << 31) && (channels + kTile - 1) / kTile < 65536,
                "batchnorm_forward_train: shape ", shape.str(), " exceeds the CUDA grid");
    const BnWorkspace ws(workspace, bn_chunks(shape), channels);
    double* mean = ws.totals;
    double* var = ws.totals + channels;
    chunk_sums(ctx, BnTermSum<T>{x}, shape, ws.partials);
    combine(ctx, ws, shape, 1, mean, double(positions));
    chunk_sums(ctx, BnTermSquaredDeviation<T>{x, mean}, shape, ws.partials);
    combine(ctx, ws, shape, 1, var, double(positions));
    cuda_for_each(ctx, channels,
                  BnTrainFinalizeBody{mean, var, gamma, double(eps), double(momentum),
                                      double(positions) / double(positions - 1), save_mean, save_invstd, ws.coef,
                                      running_mean, running_var});
    const BnNormaliseBody<T> normalise{x, save_mean, ws.coef, beta, channels, y};
    cuda_for_each(ctx, positions * channels, ChannelsLastElement<BnNormaliseBody<T>>{normalise, channels});
}

template <class T>
void batchnorm_forward_infer_cuda(DeviceContext& ctx, const BnInferBody<T>& body, int64_t voxels) {
    cuda_for_each(ctx, voxels * body.channels, ChannelsLastElement<BnInferBody<T>>{body, body.channels});
}

template <class T>
void batchnorm_backward_cuda(DeviceContext& ctx, const T* x, const T* dy, const Shape5& shape,
                             const float* gamma, const float* save_mean, const float* save_invstd, T* dx,
                             float* dgamma, float* dbeta, void* workspace) {
    const int64_t channels = shape.c, positions = shape.voxels();
    ISS_REQUIRE(bn_chunks(shape) < (int64_t(1) << 31) && (channels + kTile - 1) / kTile < 65536,
                "batchnorm_backward: shape ", shape.str(), " exceeds the CUDA grid");
    const BnWorkspace ws(workspace, bn_chunks(shape), channels);
    chunk_sums(ctx, BnTermBackward<T>{x, dy, save_mean, save_invstd}, shape, ws.partials);
    combine(ctx, ws, shape, 2, ws.totals, 1.0);
    float* k = ws.coef;
    float* a = ws.coef + channels;
    float* b = ws.coef + 2 * channels;
    cuda_for_each(ctx, channels,
                  BnBackwardFinalizeBody{ws.totals, ws.totals + channels, gamma, save_invstd, double(positions),
                                         dgamma, dbeta, k, a, b});
    const BnBackwardDxBody<T> body{x, dy, save_mean, save_invstd, k, a, b, channels, dx};
    cuda_for_each(ctx, positions * channels, ChannelsLastElement<BnBackwardDxBody<T>>{body, channels});
}

#define ISS_INSTANTIATE(T)                                                                                    \
    template void batchnorm_forward_train_cuda<T>(DeviceContext&, const T*, const Shape5&, const float*,        \
                                                  const float*, float, float, T*, float*, float*, float*, float*, \
                                                  void*);                                                         \
    template void batchnorm_forward_infer_cuda<T>(DeviceContext&, const BnInferBody<T>&, int64_t);            \
    template void batchnorm_backward_cuda<T>(DeviceContext&, const T*, const T*, const Shape5&, const float*,  \
                                             const float*, const float*, T*, float*, float*, void*);
ISS_FOR_EACH_STORAGE(ISS_INSTANTIATE)
#undef ISS_INSTANTIATE

}  // namespace iss
