#include "tests/ref/loss.h"

#include <algorithm>
#include <cmath>

namespace iss::ref {
namespace {

double clip(double x) { return std::min(std::max(x, 1e-7), 1.0); }

}  // namespace

std::vector<double> softmax(const std::vector<double>& logits, int64_t classes) {
    std::vector<double> p(logits.size());
    const size_t c = size_t(classes);
    for (size_t at = 0; at < logits.size(); at += c) {
        const double top = *std::max_element(logits.begin() + long(at), logits.begin() + long(at + c));
        double sum = 0;
        for (size_t k = 0; k < c; ++k) sum += p[at + k] = std::exp(logits[at + k] - top);
        double renorm = 0;
        for (size_t k = 0; k < c; ++k) renorm += p[at + k] /= sum;
        for (size_t k = 0; k < c; ++k) p[at + k] /= renorm;
    }
    return p;
}

Dice soft_dice(const std::vector<double>& logits, const std::vector<uint8_t>& target, int64_t classes,
               int64_t samples) {
    const std::vector<double> p = softmax(logits, classes);
    const size_t c = size_t(classes), n = size_t(samples), per_sample = target.size() / n;
    Dice d;
    d.intersection.assign(n * c, 0.0);
    d.denominator.assign(n * c, 0.0);
    d.dice.assign(c, 0.0);
    for (size_t v = 0; v < target.size(); ++v)
        for (size_t k = 0; k < c; ++k) {
            const double pc = clip(p[v * c + k]);
            const double yc = clip(target[v] == k ? 1.0 : 0.0);
            const size_t at = v / per_sample * c + k;
            d.intersection[at] += yc * pc;
            d.denominator[at] += yc * yc + pc * pc;
        }
    double mean = 0;
    for (size_t at = 0; at < n * c; ++at) {
        const double dice = 2 * d.intersection[at] / std::max(d.denominator[at], 1e-3);
        d.dice[at % c] += dice / double(n);
        mean += dice / double(n * c);
    }
    d.loss = 1 - mean;
    return d;
}

std::vector<double> soft_dice_grad(const std::vector<double>& logits, const std::vector<uint8_t>& target,
                                   int64_t classes, double grad_scale, int64_t samples) {
    const std::vector<double> p = softmax(logits, classes);
    const Dice d = soft_dice(logits, target, classes, samples);
    const size_t c = size_t(classes), n = size_t(samples), per_sample = target.size() / n;
    std::vector<double> grad(logits.size(), 0.0);
    std::vector<double> dl_dp(c);
    for (size_t v = 0; v < target.size(); ++v) {
        for (size_t k = 0; k < c; ++k) {
            const double q = p[v * c + k];
            const double yc = clip(target[v] == k ? 1.0 : 0.0);
            const size_t at = v / per_sample * c + k;
            const double u = d.denominator[at], uh = std::max(u, 1e-3);
            // dDice_k/dp'_k by the quotient rule; the max passes dU only above 1e-3.
            const double du = u > 1e-3 ? 2 * q : 0.0;
            const double ddice = (2 * yc * uh - 2 * d.intersection[at] * du) / (uh * uh);
            const bool clipped = q < 1e-7 || q > 1.0;
            dl_dp[k] = clipped ? 0.0 : -ddice / double(n * c);
        }
        // Full Jacobian of the softmax: dp_k/dx_j = p_k (delta_kj - p_j).
        for (size_t j = 0; j < c; ++j) {
            double sum = 0;
            for (size_t k = 0; k < c; ++k)
                sum += dl_dp[k] * p[v * c + k] * ((k == j ? 1.0 : 0.0) - p[v * c + j]);
            grad[v * c + j] = grad_scale * sum;
        }
    }
    return grad;
}

double wl2(const std::vector<double>& logits, const std::vector<uint8_t>& target, int64_t classes) {
    const size_t c = size_t(classes);
    double num = 0, weights = 0;
    for (size_t v = 0; v < target.size(); ++v) {
        const double y0 = target[v] == 0 ? 1.0 : 0.0;
        const double w = 1 - y0 + 1e-4;
        weights += w;
        for (size_t k = 0; k < c; ++k) {
            const double t = 5 * (2 * (target[v] == k ? 1.0 : 0.0) - 1);
            num += w * (logits[v * c + k] - t) * (logits[v * c + k] - t);
        }
    }
    return num / (double(c) * weights);
}

std::vector<double> wl2_grad(const std::vector<double>& logits, const std::vector<uint8_t>& target, int64_t classes,
                             double grad_scale) {
    const size_t c = size_t(classes);
    double weights = 0;
    for (uint8_t t : target) weights += 1 - (t == 0 ? 1.0 : 0.0) + 1e-4;
    std::vector<double> grad(logits.size());
    for (size_t v = 0; v < target.size(); ++v) {
        const double w = 1 - (target[v] == 0 ? 1.0 : 0.0) + 1e-4;
        for (size_t k = 0; k < c; ++k) {
            const double t = 5 * (2 * (target[v] == k ? 1.0 : 0.0) - 1);
            grad[v * c + k] = grad_scale * 2 * w * (logits[v * c + k] - t) / (double(c) * weights);
        }
    }
    return grad;
}

void adam_step(AdamState& s, const std::vector<double>& grads, double lr, double beta1, double beta2, double epsilon,
               int64_t t) {
    const double lr_t = lr * std::sqrt(1 - std::pow(beta2, double(t))) / (1 - std::pow(beta1, double(t)));
    for (size_t e = 0; e < grads.size(); ++e) {
        s.m[e] = beta1 * s.m[e] + (1 - beta1) * grads[e];
        s.v[e] = beta2 * s.v[e] + (1 - beta2) * grads[e] * grads[e];
        s.params[e] -= lr_t * s.m[e] / (std::sqrt(s.v[e]) + epsilon);
    }
}

}  // namespace iss::ref
