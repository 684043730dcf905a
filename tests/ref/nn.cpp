// Double references of the network kernels: see nn.h.
#include "tests/ref/nn.h"

#include <cmath>

namespace iss::ref {
namespace {

// Element (n, z, y, x, c) of a channels-last tensor of shape s.
int64_t at(const Shape5& s, int64_t n, int64_t z, int64_t y, int64_t x, int64_t c) {
    return (((n * s.d + z) * s.h + y) * s.w + x) * s.c + c;
}

Shape5 half(const Shape5& s) { return Shape5{s.n, s.d / 2, s.h / 2, s.w / 2, s.c}; }
Shape5 twice(const Shape5& s) { return Shape5{s.n, s.d * 2, s.h * 2, s.w * 2, s.c}; }

}  // namespace

Vec elu(const Vec& x, double alpha) {
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] > 0 ? x[i] : alpha * (std::exp(x[i]) - 1.0);
    return y;
}

Vec elu_backward(const Vec& x, const Vec& dy, double alpha) {
    Vec dx(x.size());
    for (size_t i = 0; i < x.size(); ++i) dx[i] = x[i] > 0 ? dy[i] : dy[i] * alpha * std::exp(x[i]);
    return dx;
}

Vec maxpool2(const Vec& x, const Shape5& in, std::vector<int>* argmax) {
    const Shape5 out = half(in);
    Vec y(size_t(out.size()));
    if (argmax) argmax->assign(y.size(), -1);
    for (int64_t n = 0; n < out.n; ++n)
        for (int64_t z = 0; z < out.d; ++z)
            for (int64_t yy = 0; yy < out.h; ++yy)
                for (int64_t xx = 0; xx < out.w; ++xx)
                    for (int64_t c = 0; c < out.c; ++c) {
                        double best = 0;
                        int best_q = -1;
                        for (int dz = 0; dz < 2; ++dz)
                            for (int dy = 0; dy < 2; ++dy)
                                for (int dx = 0; dx < 2; ++dx) {
                                    const double v = x[size_t(at(in, n, 2 * z + dz, 2 * yy + dy, 2 * xx + dx, c))];
                                    const int q = dz * 4 + dy * 2 + dx;
                                    if (best_q >= 0 && std::isnan(best)) continue;  // the first NaN stays
                                    if (best_q < 0 || std::isnan(v) || v > best) {
                                        best = v;
                                        best_q = q;
                                    }
                                }
                        const size_t o = size_t(at(out, n, z, yy, xx, c));
                        y[o] = best;
                        if (argmax) (*argmax)[o] = best_q;
                    }
    return y;
}

Vec maxpool2_backward(const Vec& x, const Vec& dy, const Shape5& in) {
    std::vector<int> argmax;
    maxpool2(x, in, &argmax);
    const Shape5 out = half(in);
    Vec dx(size_t(in.size()), 0.0);
    for (int64_t n = 0; n < out.n; ++n)
        for (int64_t z = 0; z < out.d; ++z)
            for (int64_t yy = 0; yy < out.h; ++yy)
                for (int64_t xx = 0; xx < out.w; ++xx)
                    for (int64_t c = 0; c < out.c; ++c) {
                        const size_t o = size_t(at(out, n, z, yy, xx, c));
                        const int q = argmax[o];
                        dx[size_t(at(in, n, 2 * z + q / 4, 2 * yy + (q / 2) % 2, 2 * xx + q % 2, c))] = dy[o];
                    }
    return dx;
}

Vec upsample2(const Vec& x, const Shape5& in) {
    const Shape5 out = twice(in);
    Vec y(size_t(out.size()));
    for (int64_t n = 0; n < out.n; ++n)
        for (int64_t z = 0; z < out.d; ++z)
            for (int64_t yy = 0; yy < out.h; ++yy)
                for (int64_t xx = 0; xx < out.w; ++xx)
                    for (int64_t c = 0; c < out.c; ++c)
                        y[size_t(at(out, n, z, yy, xx, c))] = x[size_t(at(in, n, z / 2, yy / 2, xx / 2, c))];
    return y;
}

Vec upsample2_backward(const Vec& dy, const Shape5& in) {
    const Shape5 out = twice(in);
    Vec dx(size_t(in.size()), 0.0);
    for (int64_t n = 0; n < out.n; ++n)
        for (int64_t z = 0; z < out.d; ++z)
            for (int64_t yy = 0; yy < out.h; ++yy)
                for (int64_t xx = 0; xx < out.w; ++xx)
                    for (int64_t c = 0; c < out.c; ++c)
                        dx[size_t(at(in, n, z / 2, yy / 2, xx / 2, c))] += dy[size_t(at(out, n, z, yy, xx, c))];
    return dx;
}

Vec concat(const Vec& a, int64_t ca, const Vec& b, int64_t cb, int64_t voxels) {
    Vec y;
    y.reserve(size_t(voxels * (ca + cb)));
    for (int64_t v = 0; v < voxels; ++v) {
        for (int64_t c = 0; c < ca; ++c) y.push_back(a[size_t(v * ca + c)]);
        for (int64_t c = 0; c < cb; ++c) y.push_back(b[size_t(v * cb + c)]);
    }
    return y;
}

void concat_backward(const Vec& dy, int64_t ca, int64_t cb, int64_t voxels, Vec* da, Vec* db) {
    da->assign(size_t(voxels * ca), 0.0);
    db->assign(size_t(voxels * cb), 0.0);
    for (int64_t v = 0; v < voxels; ++v) {
        for (int64_t c = 0; c < ca; ++c) (*da)[size_t(v * ca + c)] = dy[size_t(v * (ca + cb) + c)];
        for (int64_t c = 0; c < cb; ++c) (*db)[size_t(v * cb + c)] = dy[size_t(v * (ca + cb) + ca + c)];
    }
}

BnStats bn_stats(const Vec& x, const Shape5& shape) {
    const int64_t P = shape.voxels(), C = shape.c;
    BnStats s{Vec(size_t(C), 0.0), Vec(size_t(C), 0.0)};
    for (int64_t p = 0; p < P; ++p)
        for (int64_t c = 0; c < C; ++c) s.mean[size_t(c)] += x[size_t(p * C + c)];
    for (auto& m : s.mean) m /= double(P);
    for (int64_t p = 0; p < P; ++p)
        for (int64_t c = 0; c < C; ++c) {
            const double d = x[size_t(p * C + c)] - s.mean[size_t(c)];
            s.var[size_t(c)] += d * d;
        }
    for (auto& v : s.var) v /= double(P);
    return s;
}

Vec bn_infer(const Vec& x, const Shape5& shape, const Vec& gamma, const Vec& beta, const Vec& mean, const Vec& var,
             double eps) {
    const int64_t P = shape.voxels(), C = shape.c;
    Vec y(x.size());
    for (int64_t p = 0; p < P; ++p)
        for (int64_t c = 0; c < C; ++c) {
            const size_t e = size_t(p * C + c), k = size_t(c);
            y[e] = gamma[k] * (x[e] - mean[k]) / std::sqrt(var[k] + eps) + beta[k];
        }
    return y;
}

Vec bn_train(const Vec& x, const Shape5& shape, const Vec& gamma, const Vec& beta, double eps, BnStats* stats) {
    const BnStats s = bn_stats(x, shape);
    if (stats) *stats = s;
    return bn_infer(x, shape, gamma, beta, s.mean, s.var, eps);
}

void bn_backward(const Vec& x, const Vec& dy, const Shape5& shape, const Vec& gamma, double eps, Vec* dx, Vec* dgamma,
                 Vec* dbeta) {
    const int64_t P = shape.voxels(), C = shape.c;
    const BnStats s = bn_stats(x, shape);
    Vec invstd(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) invstd[size_t(c)] = 1.0 / std::sqrt(s.var[size_t(c)] + eps);
    dgamma->assign(size_t(C), 0.0);
    dbeta->assign(size_t(C), 0.0);
    for (int64_t p = 0; p < P; ++p)
        for (int64_t c = 0; c < C; ++c) {
            const size_t e = size_t(p * C + c), k = size_t(c);
            const double xhat = (x[e] - s.mean[k]) * invstd[k];
            (*dgamma)[k] += dy[e] * xhat;
            (*dbeta)[k] += dy[e];
        }
    dx->assign(x.size(), 0.0);
    for (int64_t p = 0; p < P; ++p)
        for (int64_t c = 0; c < C; ++c) {
            const size_t e = size_t(p * C + c), k = size_t(c);
            const double xhat = (x[e] - s.mean[k]) * invstd[k];
            (*dx)[e] = gamma[k] * invstd[k] * (dy[e] - (*dbeta)[k] / double(P) - xhat * (*dgamma)[k] / double(P));
        }
}

}  // namespace iss::ref
