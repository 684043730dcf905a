// Batch normalisation on the CPU, and the dispatchers: preconditions, then either the CUDA
// launcher (batchnorm.cu) or the passes here. The per-chunk partial sums run under OpenMP
// over chunks, each chunk in position order, so the result does not depend on the number of
// threads; the chunk partials are then combined in chunk order (BnCombineBody).
#include "kernels/nn/batchnorm.h"

#include <algorithm>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"
#include "kernels/nn/channels_last.h"

namespace iss {
namespace {

// Partial sums of `term` per chunk and channel into partials[t][chunk][c].
template <class Term>
void cpu_chunk_sums(const Term& term, const Shape5& shape, double* partials) {
    const int64_t positions = shape.voxels(), channels = shape.c, chunks = bn_chunks(shape);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < chunks; ++k) {
        double* s0 = partials + k * channels;
        double* s1 = partials + (chunks + k) * channels;  // unused when Term::terms == 1
        for (int64_t c = 0; c < channels; ++c) s0[c] = s1[c] = 0.0;
        const int64_t end = std::min(positions, (k + 1) * kBnChunk);
        for (int64_t p = k * kBnChunk; p < end; ++p)
            for (int64_t c = 0; c < channels; ++c) term.add(p * channels + c, c, s0[c], s1[c]);
    }
}

void cpu_combine(const BnWorkspace& ws, const Shape5& shape, int terms, double* totals, double divisor) {
    cpu_for_each(terms * shape.c, BnCombineBody{ws.partials, bn_chunks(shape), shape.c, totals, divisor});
}

// The element passes on the CPU in channel blocks (channels_last.h), each element by its body's
// value(): the same bits as BnNormaliseBody and BnBackwardDxBody (and CUDA).
template <class T>
void normalise_cpu(const T* x, const float* mean, const float* scale, const float* beta, const Shape5& shape, T* y) {
    const ChannelBlocks blocks(shape.c);
    const std::vector<float> m = blocks.repeat(mean), s = blocks.repeat(scale), b = blocks.repeat(beta);
    const float *mb = m.data(), *sb = s.data(), *bb = b.data();
    blocks.for_each_block(shape.voxels(), [&](int64_t start, int64_t length) {
        const T* xs = x + start;
        T* ys = y + start;
#pragma omp simd simdlen(32)
        for (int64_t j = 0; j < length; ++j) ys[j] = BnNormaliseBody<T>::value(xs[j], mb[j], sb[j], bb[j]);
    });
}

template <class T>
void backward_dx_cpu(const BnBackwardDxBody<T>& body, const Shape5& shape) {
    const ChannelBlocks blocks(shape.c);
    const std::vector<float> mean = blocks.repeat(body.mean), invstd = blocks.repeat(body.invstd),
                             k = blocks.repeat(body.k), a = blocks.repeat(body.a), b = blocks.repeat(body.b);
    const float *mb = mean.data(), *ib = invstd.data(), *kb = k.data(), *ab = a.data(), *bb = b.data();
    blocks.for_each_block(shape.voxels(), [&](int64_t start, int64_t length) {
        const T *xs = body.x + start, *dys = body.dy + start;
        T* dxs = body.dx + start;
#pragma omp simd simdlen(32)
        for (int64_t j = 0; j < length; ++j)
            dxs[j] = BnBackwardDxBody<T>::value(xs[j], dys[j], mb[j], ib[j], kb[j], ab[j], bb[j]);
    });
}

}  // namespace

size_t batchnorm_workspace_bytes(const Shape5& shape) {
    return size_t(2 * bn_chunks(shape) * shape.c + 4 * shape.c) * sizeof(double);
}

template <class T>
void batchnorm_forward_train(DeviceContext& ctx, const T* x, const Shape5& shape, const float* gamma,
                             const float* beta, float eps, float momentum, T* y, float* save_mean,
                             float* save_invstd, float* running_mean, float* running_var, void* workspace) {
    const char* op = "batchnorm_forward_train";
    require_shape(shape, op);
    ISS_REQUIRE(shape.voxels() >= 2, op, ": needs at least 2 positions per channel for the unbiased variance, shape is ",
                shape.str());
    ISS_REQUIRE(eps > 0, op, ": epsilon must be positive, is ", eps);
    ISS_REQUIRE(momentum >= 0 && momentum <= 1, op, ": momentum must be in [0, 1], is ", momentum);
    require_tensor(x, op, "x");
    require_tensor(gamma, op, "gamma");
    require_tensor(beta, op, "beta");
    require_tensor(y, op, "y");
    require_tensor(save_mean, op, "save_mean");
    require_tensor(save_invstd, op, "save_invstd");
    require_tensor(running_mean, op, "running_mean");
    require_tensor(running_var, op, "running_var");
    require_tensor(workspace, op, "workspace");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("batchnorm_forward_train",
                      batchnorm_forward_train_cuda(ctx, x, shape, gamma, beta, eps, momentum, y, save_mean,
                                                   save_invstd, running_mean, running_var, workspace));
        return;
    }
    const int64_t channels = shape.c, positions = shape.voxels();
    const BnWorkspace ws(workspace, bn_chunks(shape), channels);
    double* mean = ws.totals;
    double* var = ws.totals + channels;
    cpu_chunk_sums(BnTermSum<T>{x}, shape, ws.partials);
    cpu_combine(ws, shape, 1, mean, double(positions));
    cpu_chunk_sums(BnTermSquaredDeviation<T>{x, mean}, shape, ws.partials);
    cpu_combine(ws, shape, 1, var, double(positions));
    const BnTrainFinalizeBody finalize{mean,         var,          gamma,       double(eps),
                                       double(momentum), double(positions) / double(positions - 1),
                                       save_mean,    save_invstd,  ws.coef,     running_mean, running_var};
    for (int64_t c = 0; c < channels; ++c) finalize(c);
    normalise_cpu(x, save_mean, ws.coef, beta, shape, y);
}

template <class T>
void batchnorm_forward_infer(DeviceContext& ctx, const T* x, const Shape5& shape, const float* gamma,
                             const float* beta, const float* running_mean, const float* running_var, float eps, T* y) {
    const char* op = "batchnorm_forward_infer";
    require_shape(shape, op);
    ISS_REQUIRE(eps > 0, op, ": epsilon must be positive, is ", eps);
    require_tensor(x, op, "x");
    require_tensor(gamma, op, "gamma");
    require_tensor(beta, op, "beta");
    require_tensor(running_mean, op, "running_mean");
    require_tensor(running_var, op, "running_var");
    require_tensor(y, op, "y");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("batchnorm_forward_infer",
                      batchnorm_forward_infer_cuda(
                          ctx, BnInferBody<T>{x, gamma, beta, running_mean, running_var, eps, shape.c, y},
                          shape.voxels()));
        return;
    }
    std::vector<float> scale(static_cast<size_t>(shape.c));
    for (int64_t c = 0; c < shape.c; ++c) scale[size_t(c)] = BnInferBody<T>::scale_of(gamma[c], running_var[c], eps);
    normalise_cpu(x, running_mean, scale.data(), beta, shape, y);
}

template <class T>
void batchnorm_backward(DeviceContext& ctx, const T* x, const T* dy, const Shape5& shape, const float* gamma,
                        const float* save_mean, const float* save_invstd, T* dx, float* dgamma, float* dbeta,
                        void* workspace) {
    const char* op = "batchnorm_backward";
    require_shape(shape, op);
    require_tensor(x, op, "x");
    require_tensor(dy, op, "dy");
    require_tensor(gamma, op, "gamma");
    require_tensor(save_mean, op, "save_mean");
    require_tensor(save_invstd, op, "save_invstd");
    require_tensor(dx, op, "dx");
    require_tensor(dgamma, op, "dgamma");
    require_tensor(dbeta, op, "dbeta");
    require_tensor(workspace, op, "workspace");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("batchnorm_backward", batchnorm_backward_cuda(ctx, x, dy, shape, gamma, save_mean, save_invstd,
                                                                    dx, dgamma, dbeta, workspace));
        return;
    }
    const int64_t channels = shape.c, positions = shape.voxels();
    const BnWorkspace ws(workspace, bn_chunks(shape), channels);
    cpu_chunk_sums(BnTermBackward<T>{x, dy, save_mean, save_invstd}, shape, ws.partials);
    cpu_combine(ws, shape, 2, ws.totals, 1.0);
    float* k = ws.coef;
    float* a = ws.coef + channels;
    float* b = ws.coef + 2 * channels;
    const BnBackwardFinalizeBody finalize{ws.totals, ws.totals + channels, gamma, save_invstd, double(positions),
                                          dgamma,    dbeta,                k,     a,           b};
    for (int64_t c = 0; c < channels; ++c) finalize(c);
    backward_dx_cpu(BnBackwardDxBody<T>{x, dy, save_mean, save_invstd, k, a, b, channels, dx}, shape);
}

#define ISS_INSTANTIATE(T)                                                                                     \
    template void batchnorm_forward_train<T>(DeviceContext&, const T*, const Shape5&, const float*, const float*, \
                                             float, float, T*, float*, float*, float*, float*, void*);          \
    template void batchnorm_forward_infer<T>(DeviceContext&, const T*, const Shape5&, const float*, const float*, \
                                             const float*, const float*, float, T*);                            \
    template void batchnorm_backward<T>(DeviceContext&, const T*, const T*, const Shape5&, const float*,          \
                                        const float*, const float*, T*, float*, float*, void*);
ISS_FOR_EACH_STORAGE(ISS_INSTANTIATE)
#undef ISS_INSTANTIATE

}  // namespace iss
