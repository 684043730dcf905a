// Independent double-precision references for the network's element-wise, pooling and batch
// norm kernels, written from the formulas in SPEC.md section 4 and the kernel headers with
// plain loops over (n, d, h, w, c); they never call the kernel bodies. Tensors are
// channels-last (N, D, H, W, C) as vectors of double.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/nn/shape.h"

namespace iss::ref {

using Vec = std::vector<double>;

Vec elu(const Vec& x, double alpha);
// From the input: dx = dy for x > 0, dy * alpha * exp(x) otherwise.
Vec elu_backward(const Vec& x, const Vec& dy, double alpha);

// Output (N, D/2, H/2, W/2, C); argmax = block member (bit 0 w, bit 1 h, bit 2 d) of the first
// maximum, or of the first NaN.
Vec maxpool2(const Vec& x, const Shape5& in, std::vector<int>* argmax);
// dx: dy of the pooled output where this input was its first maximum, else 0.
Vec maxpool2_backward(const Vec& x, const Vec& dy, const Shape5& in);

Vec upsample2(const Vec& x, const Shape5& in);
Vec upsample2_backward(const Vec& dy, const Shape5& in);

Vec concat(const Vec& a, int64_t ca, const Vec& b, int64_t cb, int64_t voxels);
void concat_backward(const Vec& dy, int64_t ca, int64_t cb, int64_t voxels, Vec* da, Vec* db);

struct BnStats {
    Vec mean, var;  // per channel, var biased
};
BnStats bn_stats(const Vec& x, const Shape5& shape);
Vec bn_train(const Vec& x, const Shape5& shape, const Vec& gamma, const Vec& beta, double eps, BnStats* stats = nullptr);
Vec bn_infer(const Vec& x, const Shape5& shape, const Vec& gamma, const Vec& beta, const Vec& mean, const Vec& var,
             double eps);
void bn_backward(const Vec& x, const Vec& dy, const Shape5& shape, const Vec& gamma, double eps, Vec* dx, Vec* dgamma,
                 Vec* dbeta);

}  // namespace iss::ref
