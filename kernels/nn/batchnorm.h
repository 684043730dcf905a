// Batch normalisation over a channels-last (N, D, H, W, C) tensor, per channel c, with the
// Keras defaults of SPEC.md section 4 (momentum 0.99, epsilon 1e-3):
//   training:  mean_c, var_c over the N*D*H*W positions (biased), invstd = 1/sqrt(var + eps),
//              y = gamma * (x - mean) * invstd + beta;
//              running_mean = m * running_mean + (1 - m) * mean,
//              running_var  = m * running_var  + (1 - m) * var * P / (P - 1)   (unbiased, as TF)
//   inference: the same with the running statistics.
//   backward:  dgamma = sum dy * xhat, dbeta = sum dy,
//              dx = gamma * invstd * (dy - dbeta / P - xhat * dgamma / P).
// Reductions are deterministic: fixed partition into partial sums (in double), combined in a
// fixed order, so a run repeats bit for bit on the same backend (no float atomics). CPU and
// CUDA sum in different orders inside a chunk: they agree within 1e-5 relative. `workspace` holds the partials:
// batchnorm_workspace_bytes(shape) bytes on the context's device.
//
// The partition: positions in chunks of kBnChunk (a function of the shape only, never of the
// thread count); per chunk and channel a partial sum in double (CPU: in position order; CUDA:
// one block per chunk, a fixed tree over its threads); then per channel the partials summed
// in chunk order. Mean first, then the sum of squared deviations from it (two passes, no
// E[x^2] - E[x]^2 cancellation). The per-channel finishing (invstd, running statistics,
// coefficients) and the element-wise passes are shared bodies: bit-identical given the sums.
// Training needs P = N*D*H*W >= 2 (the unbiased variance divides by P - 1).
// Storage: x, y, dy and dx are fp32 or bf16 (T = float or Bf16, kernels/common/bf16.h), read
// widened; the statistics, parameters and their gradients are fp32 and every sum is in double
// as above, so bf16 changes only the inputs' values and one rounding of each output.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/common/bf16.h"
#include "kernels/common/hd.h"
#include "kernels/nn/shape.h"

namespace iss {

class DeviceContext;

size_t batchnorm_workspace_bytes(const Shape5& shape);

template <class T>
void batchnorm_forward_train(DeviceContext& ctx, const T* x, const Shape5& shape, const float* gamma,
                             const float* beta, float eps, float momentum, T* y, float* save_mean, float* save_invstd,
                             float* running_mean, float* running_var, void* workspace);
template <class T>
void batchnorm_forward_infer(DeviceContext& ctx, const T* x, const Shape5& shape, const float* gamma,
                             const float* beta, const float* running_mean, const float* running_var, float eps, T* y);
template <class T>
void batchnorm_backward(DeviceContext& ctx, const T* x, const T* dy, const Shape5& shape, const float* gamma,
                        const float* save_mean, const float* save_invstd, T* dx, float* dgamma, float* dbeta,
                        void* workspace);

// --- Implementation: partition, workspace, and the bodies shared by the CPU and CUDA -------

constexpr int64_t kBnChunk = 4096;  // positions per partial sum

inline int64_t bn_chunks(const Shape5& s) { return (s.voxels() + kBnChunk - 1) / kBnChunk; }

// Workspace: partials[2][chunks][C] and totals[2][C] in double, then coef[4][C] in float
// (forward: scale = gamma * invstd; backward: k = gamma * invstd, a = dbeta / P, b = dgamma / P).
struct BnWorkspace {
    double* partials;
    double* totals;
    float* coef;
    BnWorkspace(void* base, int64_t chunks, int64_t c)
        : partials(static_cast<double*>(base)), totals(partials + 2 * chunks * c),
          coef(reinterpret_cast<float*>(totals + 2 * c)) {}
};

// What the reduction passes add up per element e of channel c (into s0, and s1 when terms == 2).
template <class T>
struct BnTermSum {
    static constexpr int terms = 1;
    const T* x;
    ISS_HD void add(int64_t e, int64_t c, double& s0, double& s1) const { s0 += double(widen(x[e])); }
};

template <class T>
struct BnTermSquaredDeviation {
    static constexpr int terms = 1;
    const T* x;
    const double* mean;
    ISS_HD void add(int64_t e, int64_t c, double& s0, double& s1) const {
        const double d = double(widen(x[e])) - mean[c];
        s0 = fma(d, d, s0);
    }
};

template <class T>
struct BnTermBackward {  // s0 = sum dy, s1 = sum dy * xhat
    static constexpr int terms = 2;
    const T* x;
    const T* dy;
    const float* mean;
    const float* invstd;
    ISS_HD void add(int64_t e, int64_t c, double& s0, double& s1) const {
        const double g = double(widen(dy[e]));
        const double xhat = (double(widen(x[e])) - double(mean[c])) * double(invstd[c]);
        s0 += g;
        s1 = fma(g, xhat, s1);
    }
};

// totals[e] = (sum over chunks k in order of partials[t][k][c]) / divisor, e = t * C + c.
struct BnCombineBody {
    const double* partials;
    int64_t chunks, channels;
    double* totals;
    double divisor;
    ISS_HD void operator()(int64_t e) const {
        const int64_t t = e / channels, c = e % channels;
        double s = 0;
        for (int64_t k = 0; k < chunks; ++k) s += partials[(t * chunks + k) * channels + c];
        totals[e] = s / divisor;
    }
};

// Per channel after the two forward reductions: saved statistics, the running update, scale.
struct BnTrainFinalizeBody {
    const double* mean;
    const double* var;  // biased
    const float* gamma;
    double eps, momentum, unbias;  // unbias = P / (P - 1)
    float* save_mean;
    float* save_invstd;
    float* scale;
    float* running_mean;
    float* running_var;
    ISS_HD void operator()(int64_t c) const {
        const double invstd = 1.0 / sqrt(var[c] + eps);
        save_mean[c] = float(mean[c]);
        save_invstd[c] = float(invstd);
        scale[c] = float(double(gamma[c]) * invstd);
        running_mean[c] = float(fma(momentum, double(running_mean[c]), (1.0 - momentum) * mean[c]));
        running_var[c] = float(fma(momentum, double(running_var[c]), (1.0 - momentum) * (var[c] * unbias)));
    }
};

// y = (x - mean) * scale + beta, one rounding for the subtraction and one for the fmaf.
template <class T>
struct BnNormaliseBody {
    const T* x;
    const float* mean;
    const float* scale;
    const float* beta;
    int64_t channels;
    T* y;
    ISS_HD static T value(T x, float mean, float scale, float beta) {
        return narrow<T>(fmaf(widen(x) - mean, scale, beta));
    }
    ISS_HD void at(int64_t v, int64_t c) const {
        const int64_t e = v * channels + c;
        y[e] = value(x[e], mean[c], scale[c], beta[c]);
    }
};

template <class T>
struct BnInferBody {
    const T* x;
    const float* gamma;
    const float* beta;
    const float* running_mean;
    const float* running_var;
    float eps;
    int64_t channels;
    T* y;
    // sqrtf and division are correctly rounded on both backends: the same scale wherever it is
    // computed.
    ISS_HD static float scale_of(float gamma, float running_var, float eps) { return gamma / sqrtf(running_var + eps); }
    ISS_HD void at(int64_t v, int64_t c) const {
        const int64_t e = v * channels + c;
        // Per element rather than per channel on CUDA: no workspace in inference, and the element
        // loop is memory bound there. The CPU computes it per channel (batchnorm.cpp).
        y[e] = BnNormaliseBody<T>::value(x[e], running_mean[c], scale_of(gamma[c], running_var[c], eps), beta[c]);
    }
};

// Per channel after the backward reduction: dgamma, dbeta and the dx coefficients.
struct BnBackwardFinalizeBody {
    const double* sum_dy;
    const double* sum_dy_xhat;
    const float* gamma;
    const float* invstd;
    double positions;
    float* dgamma;
    float* dbeta;
    float* k;  // gamma * invstd
    float* a;  // dbeta / P
    float* b;  // dgamma / P
    ISS_HD void operator()(int64_t c) const {
        dbeta[c] = float(sum_dy[c]);
        dgamma[c] = float(sum_dy_xhat[c]);
        k[c] = float(double(gamma[c]) * double(invstd[c]));
        a[c] = float(sum_dy[c] / positions);
        b[c] = float(sum_dy_xhat[c] / positions);
    }
};

// dx = k * (dy - a - xhat * b), xhat = (x - mean) * invstd.
template <class T>
struct BnBackwardDxBody {
    const T* x;
    const T* dy;
    const float* mean;
    const float* invstd;
    const float* k;
    const float* a;
    const float* b;
    int64_t channels;
    T* dx;
    ISS_HD static T value(T x, T dy, float mean, float invstd, float k, float a, float b) {
        const float xhat = (widen(x) - mean) * invstd;
        return narrow<T>(k * fmaf(-xhat, b, widen(dy) - a));
    }
    ISS_HD void at(int64_t v, int64_t c) const {
        const int64_t e = v * channels + c;
        dx[e] = value(x[e], dy[e], mean[c], invstd[c], k[c], a[c], b[c]);
    }
};

// CUDA launchers (batchnorm.cu): the block reductions and the shared bodies above.
template <class T>
void batchnorm_forward_train_cuda(DeviceContext& ctx, const T* x, const Shape5& shape, const float* gamma,
                                  const float* beta, float eps, float momentum, T* y, float* save_mean,
                                  float* save_invstd, float* running_mean, float* running_var, void* workspace);
template <class T>
void batchnorm_forward_infer_cuda(DeviceContext& ctx, const BnInferBody<T>& body, int64_t voxels);
template <class T>
void batchnorm_backward_cuda(DeviceContext& ctx, const T* x, const T* dy, const Shape5& shape, const float* gamma,
                             const float* save_mean, const float* save_invstd, T* dx, float* dgamma, float* dbeta,
                             void* workspace);

}  // namespace iss
