#include "tests/ref/conv.h"

#include <cstdint>

namespace iss::ref {

namespace {

// Index of element (n, z, y, x, c) of a channels-last tensor with C channels.
int64_t at(const Shape5& s, int64_t channels, int64_t n, int64_t z, int64_t y, int64_t x, int64_t c) {
    return (((n * s.d + z) * s.h + y) * s.w + x) * channels + c;
}

// Index of weight (o, a, b, c, i) in (Co, k, k, k, Ci).
int64_t weight_at(const ConvShape& s, int64_t o, int64_t a, int64_t b, int64_t c, int64_t i) {
    return (((o * s.kernel + a) * s.kernel + b) * s.kernel + c) * s.in.c + i;
}

bool inside(int64_t v, int64_t extent) { return v >= 0 && v < extent; }

}  // namespace

std::vector<double> conv3d_forward(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                                   const std::vector<float>& b) {
    const Shape5& g = s.in;
    const int64_t k = s.kernel, p = s.padding(), pd = s.padding_d();
    const Shape5 out = s.out();
    std::vector<double> y(size_t(s.out().size()));
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t z = 0; z < out.d; ++z)
            for (int64_t r = 0; r < out.h; ++r)
                for (int64_t q = 0; q < out.w; ++q)
                    for (int64_t o = 0; o < s.out_c; ++o) {
                        double sum = b[size_t(o)];
                        for (int64_t a = 0; a < k; ++a)
                            for (int64_t bb = 0; bb < k; ++bb)
                                for (int64_t c = 0; c < k; ++c) {
                                    const int64_t zz = z + a - pd, rr = r + bb - p, qq = q + c - p;
                                    if (!inside(zz, g.d) || !inside(rr, g.h) || !inside(qq, g.w)) continue;
                                    for (int64_t i = 0; i < g.c; ++i)
                                        sum += double(w[size_t(weight_at(s, o, a, bb, c, i))]) *
                                               double(x[size_t(at(g, g.c, n, zz, rr, qq, i))]);
                                }
                        y[size_t(at(out, s.out_c, n, z, r, q, o))] = sum;
                    }
    return y;
}

std::vector<double> conv3d_backward_data(const ConvShape& s, const std::vector<float>& dy,
                                         const std::vector<float>& w) {
    const Shape5& g = s.in;
    const int64_t k = s.kernel, p = s.padding(), pd = s.padding_d();
    const Shape5 out = s.out();
    std::vector<double> dx(size_t(g.size()), 0.0);
    // Scatter form, the transpose of the forward loop read literally: output (z, r, q) read
    // input (z + a - pd, ...) with weight w(o, a, bb, c, i).
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t z = 0; z < out.d; ++z)
            for (int64_t r = 0; r < out.h; ++r)
                for (int64_t q = 0; q < out.w; ++q)
                    for (int64_t o = 0; o < s.out_c; ++o) {
                        const double g_out = dy[size_t(at(out, s.out_c, n, z, r, q, o))];
                        for (int64_t a = 0; a < k; ++a)
                            for (int64_t bb = 0; bb < k; ++bb)
                                for (int64_t c = 0; c < k; ++c) {
                                    const int64_t zz = z + a - pd, rr = r + bb - p, qq = q + c - p;
                                    if (!inside(zz, g.d) || !inside(rr, g.h) || !inside(qq, g.w)) continue;
                                    for (int64_t i = 0; i < g.c; ++i)
                                        dx[size_t(at(g, g.c, n, zz, rr, qq, i))] +=
                                            g_out * double(w[size_t(weight_at(s, o, a, bb, c, i))]);
                                }
                    }
    return dx;
}

void conv3d_backward_weights(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& dy,
                             std::vector<double>& dw, std::vector<double>& db) {
    const Shape5& g = s.in;
    const int64_t k = s.kernel, p = s.padding(), pd = s.padding_d();
    const Shape5 out = s.out();
    dw.assign(size_t(s.weight_count()), 0.0);
    db.assign(size_t(s.out_c), 0.0);
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t z = 0; z < out.d; ++z)
            for (int64_t r = 0; r < out.h; ++r)
                for (int64_t q = 0; q < out.w; ++q)
                    for (int64_t o = 0; o < s.out_c; ++o) {
                        const double g_out = dy[size_t(at(out, s.out_c, n, z, r, q, o))];
                        db[size_t(o)] += g_out;
                        for (int64_t a = 0; a < k; ++a)
                            for (int64_t bb = 0; bb < k; ++bb)
                                for (int64_t c = 0; c < k; ++c) {
                                    const int64_t zz = z + a - pd, rr = r + bb - p, qq = q + c - p;
                                    if (!inside(zz, g.d) || !inside(rr, g.h) || !inside(qq, g.w)) continue;
                                    for (int64_t i = 0; i < g.c; ++i)
                                        dw[size_t(weight_at(s, o, a, bb, c, i))] +=
                                            g_out * double(x[size_t(at(g, g.c, n, zz, rr, qq, i))]);
                                }
                    }
}

}  // namespace iss::ref
