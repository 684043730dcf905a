// CPU launchers and dispatch of the losses (loss.h): the soft Dice fused with the softmax, and
// the weighted L2. The per-class sums follow the chunk/slot order of loss.h on both backends;
// the host turns the class totals into the loss, the per-class Dice and the backward's
// coefficients, in double.
//
// Dice gradient (grad_scale s; per class k, sums over the positions v of one sample of the N;
// the sample's index left out below, each sample's positions taking its own a_k, b_k):
//   I_k = sum_v y'_vk p'_vk,  U_k = sum_v (y'_vk^2 + p'_vk^2),  Û_k = max(U_k, 1e-3),
//   D_k = 2 I_k / Û_k,  L = 1 - (1/(N C)) sum_{samples, k} D_k.
//   dI_k/dp'_vk = y'_vk,  dU_k/dp'_vk = 2 p'_vk,  dÛ_k/dU_k = [U_k > 1e-3] (0 on the flat
//   part of the max, and at the kink itself, as TensorFlow's maximum does for its 2nd input).
//   dD_k/dp'_vk = 2 y'_vk / Û_k - (2 I_k / Û_k^2) [U_k > 1e-3] 2 p'_vk, so
//   g_vk = s dL/dp'_vk = a_k y'_vk + b_k p'_vk,
//     a_k = -2 s / (N C Û_k),  b_k = 4 s I_k [U_k > 1e-3] / (N C Û_k^2).
//   p' = clip(q, 1e-7, 1): dp'/dq = 1 where the clip leaves q unchanged (1e-7 <= q <= 1), 0
//   where it replaced it (y' is a constant: no gradient flows to the target).
//   q = p / sum_j p_j with p = softmax(x): sum_j p_j = 1 identically, so q(x) = softmax(x) as
//   functions and their Jacobians agree: dq_k/dx_j = q_k (delta_kj - q_j). Hence per position
//   dx_j = sum_k g_k q_k (delta_kj - q_j) = q_j (g_j - sum_k q_k g_k)   (DiceBackwardBody).
// Weighted L2: L = sum w (x - t)^2 / (C W), W = sum_v w_v; dL/dx = 2 w (x - t) / (C W).
#include "kernels/nn/loss.h"

#include <algorithm>
#include <cmath>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"

namespace iss {
namespace {

// Workspace layout: chunk partials (2 C doubles per chunk of the whole batch, which the weighted
// L2 sums at once; the Dice reuses them sample after sample), class totals (2 C doubles per
// sample), the backward's coefficients (2 C floats per sample). Offsets in bytes; doubles first
// keep them aligned.
struct WorkspaceLayout {
    size_t partials = 0, totals = 0, coef = 0, bytes = 0;
    explicit WorkspaceLayout(const Shape5& s) {
        const size_t c = size_t(s.c), n = size_t(s.n);
        totals = size_t(loss_chunks(s)) * 2 * c * sizeof(double);
        coef = totals + 2 * c * n * sizeof(double);
        bytes = coef + 2 * c * n * sizeof(float);
    }
};

// Where sample n's rows of C channels and its targets begin.
int64_t sample_positions(const Shape5& s) {
    return s.d * s.h * s.w;
}
int64_t sample_offset(const Shape5& s, int64_t n) {
    return n * sample_positions(s);
}

double* partials_of(void* ws) { return static_cast<double*>(ws); }
double* totals_of(void* ws, const WorkspaceLayout& l) {
    return reinterpret_cast<double*>(static_cast<char*>(ws) + l.totals);
}
float* coef_of(void* ws, const WorkspaceLayout& l) { return reinterpret_cast<float*>(static_cast<char*>(ws) + l.coef); }

void check_args(const char* op, const void* in, const uint8_t* target, const Shape5& s, const void* out,
                const void* workspace) {
    ISS_REQUIRE(s.voxels() > 0 && s.n > 0 && s.d > 0 && s.h > 0 && s.w > 0, op, ": empty shape ", s.str());
    ISS_REQUIRE(s.c >= 1 && s.c <= loss_max_classes, op, ": ", s.c, " classes in shape ", s.str(),
                " (1 to 256: targets are uint8)");
    ISS_REQUIRE(in, op, ": null input tensor");
    ISS_REQUIRE(target, op, ": null target tensor");
    ISS_REQUIRE(out, op, ": null output tensor");
    ISS_REQUIRE(workspace, op, ": null workspace (loss_workspace_bytes(shape) bytes needed)");
}

}  // namespace

// SoftmaxBody's operations, softmax_lanes positions at a time with the positions across the
// vector lanes (classes transposed in and out through a small block): each position's sums
// keep their order, so the bits are the body's, where the body's own loops are chains of
// dependent adds, one position at a time.
void softmax_positions_cpu(const SoftmaxBody& body, int64_t begin, int64_t end) {
    constexpr int L = softmax_lanes;
    const int64_t classes = body.classes;
    ISS_REQUIRE(classes >= 1 && classes <= loss_max_classes, "softmax: ", classes, " classes");  // t's bound
    alignas(64) float t[loss_max_classes * L];  // t[k * L + l]: class k of lane l
    alignas(64) float top[L], sum[L], renorm[L];
    alignas(64) int32_t finite[L];  // an int, not a bool: the lane loops vectorise
    for (int64_t v0 = begin; v0 < end; v0 += L) {
        const int n = int(std::min<int64_t>(L, end - v0));
        const float* x = body.logits + v0 * classes;
        for (int l = 0; l < L; ++l) {  // spare lanes (past `end`) repeat the last position
            const float* xl = x + std::min(l, n - 1) * classes;
            for (int64_t k = 0; k < classes; ++k) t[k * L + l] = xl[k];
        }
#pragma omp simd
        for (int l = 0; l < L; ++l) {
            top[l] = t[l];
            finite[l] = 1;
            sum[l] = 0.0f;
            renorm[l] = 0.0f;
        }
        for (int64_t k = 0; k < classes; ++k) {
            const float* tk = t + k * L;
#pragma omp simd
            for (int l = 0; l < L; ++l) {
                finite[l] &= fabsf(tk[l]) <= 3.40282347e38f;
                top[l] = tk[l] > top[l] ? tk[l] : top[l];
            }
        }
        for (int64_t k = 0; k < classes; ++k) {
            float* tk = t + k * L;
#pragma omp simd
            for (int l = 0; l < L; ++l) {
                tk[l] = portable_exp(tk[l] - top[l]);
                sum[l] += tk[l];
            }
        }
        for (int64_t k = 0; k < classes; ++k) {
            float* tk = t + k * L;
#pragma omp simd
            for (int l = 0; l < L; ++l) {
                tk[l] = tk[l] / sum[l];
                renorm[l] += tk[l];
            }
        }
        for (int64_t k = 0; k < classes; ++k) {
            float* tk = t + k * L;
#pragma omp simd
            for (int l = 0; l < L; ++l) tk[l] = finite[l] != 0 ? tk[l] / renorm[l] : NAN;
        }
        for (int l = 0; l < n; ++l) {
            float* q = body.probs + (v0 + l) * classes;
            for (int64_t k = 0; k < classes; ++k) q[k] = t[k * L + l];
        }
    }
}

namespace {

// The per-class sums on the CPU: OpenMP over chunks; inside a chunk, positions in order, each
// feeding its slot (k, (v - begin) mod G). Every slot thus receives the same sequence of terms
// as the CUDA thread that owns it, so the double sums are the same bits. `before` runs on the
// chunk's positions first (the forward's softmax: its output is then summed from cache).
struct NoPass {
    void operator()(int64_t, int64_t) const {}
};
struct SoftmaxPass {
    const SoftmaxBody& body;
    void operator()(int64_t begin, int64_t end) const { softmax_positions_cpu(body, begin, end); }
};

template <class Terms, class Before = NoPass>
void cpu_class_sums(const Terms& terms, int64_t positions, int64_t classes, double* partials, double* totals,
                    const Before& before = Before{}) {
    const int64_t chunks = (positions + loss_chunk_positions - 1) / loss_chunk_positions;
    const int64_t groups = loss_groups(classes);
#pragma omp parallel for schedule(static)
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        double acc[2 * loss_reduce_lanes];  // 2 per slot, G * C <= lanes slots
        std::fill(acc, acc + 2 * groups * classes, 0.0);
        const int64_t begin = chunk * loss_chunk_positions;
        const int64_t end = std::min(positions, begin + loss_chunk_positions);
        before(begin, end);
        for (int64_t v = begin, g = 0; v < end; ++v, g = g + 1 == groups ? 0 : g + 1)
            for (int64_t k = 0; k < classes; ++k) terms(v, k, acc[2 * (g * classes + k)], acc[2 * (g * classes + k) + 1]);
        for (int64_t k = 0; k < classes; ++k)
            combine_slots(acc, classes, groups, k, &partials[2 * (chunk * classes + k)],
                          &partials[2 * (chunk * classes + k) + 1]);
    }
    for (int64_t k = 0; k < classes; ++k) sum_chunks(partials, chunks, classes, k, totals);
}

// Class totals (I_k, U_k) of the clipped probabilities, each sample's (2 C doubles a sample,
// samples in order), on either backend, copied to the host. With `softmax`, the probabilities
// are computed first (forward); without, read (backward).
std::vector<double> dice_totals(DeviceContext& ctx, const float* probs, const uint8_t* target, const Shape5& s,
                                void* workspace, const SoftmaxBody* softmax) {
    const WorkspaceLayout layout(s);
    const int64_t positions = sample_positions(s);
    auto terms_of = [&](int64_t n) {
        return DiceTerms{probs + sample_offset(s, n) * s.c, target + sample_offset(s, n), s.c};
    };
    double* partials = partials_of(workspace);
    double* totals = totals_of(workspace, layout);
    std::vector<double> host(size_t(2 * s.c * s.n));
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("softmax_dice", {
            if (softmax) softmax_cuda(ctx, *softmax, s.voxels());
            for (int64_t n = 0; n < s.n; ++n)
                dice_sums_cuda(ctx, terms_of(n), positions, partials, totals + 2 * s.c * n);
        });
        ctx.copy_to_host(host.data(), totals, host.size() * sizeof(double));
    } else {
        for (int64_t n = 0; n < s.n; ++n) {
            if (softmax) {
                const SoftmaxBody rows{softmax->logits + sample_offset(s, n) * s.c,
                                       softmax->probs + sample_offset(s, n) * s.c, s.c};
                cpu_class_sums(terms_of(n), positions, s.c, partials, totals + 2 * s.c * n, SoftmaxPass{rows});
            } else {
                cpu_class_sums(terms_of(n), positions, s.c, partials, totals + 2 * s.c * n);
            }
        }
        std::copy(totals, totals + host.size(), host.begin());
    }
    return host;
}

std::vector<double> wl2_totals(DeviceContext& ctx, const Wl2Terms& terms, const Shape5& s, void* workspace) {
    const WorkspaceLayout layout(s);
    double* partials = partials_of(workspace);
    double* totals = totals_of(workspace, layout);
    std::vector<double> host(size_t(2 * s.c));
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("wl2", wl2_sums_cuda(ctx, terms, s.voxels(), partials, totals));
        ctx.copy_to_host(host.data(), totals, host.size() * sizeof(double));
    } else {
        cpu_class_sums(terms, s.voxels(), s.c, partials, totals);
        std::copy(totals, totals + host.size(), host.begin());
    }
    return host;
}

double dice_denominator(double u) { return std::max(u, 1e-3); }

}  // namespace

size_t loss_workspace_bytes(const Shape5& shape) { return WorkspaceLayout(shape).bytes; }

void softmax_forward(DeviceContext& ctx, const float* logits, int64_t positions, int64_t classes, float* probs) {
    ISS_REQUIRE(logits && probs, "softmax_forward: null logits or probabilities");
    ISS_REQUIRE(positions >= 0 && classes >= 1 && classes <= loss_max_classes, "softmax_forward: ", positions,
                " positions of ", classes, " classes");
    const SoftmaxBody body{logits, probs, classes};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("softmax_forward", softmax_cuda(ctx, body, positions));
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < positions; v += 64 * softmax_lanes)
        softmax_positions_cpu(body, v, std::min(positions, v + 64 * softmax_lanes));
}

DiceResult softmax_dice_forward(DeviceContext& ctx, const float* logits, const uint8_t* target, const Shape5& s,
                                float* probs, void* workspace) {
    check_args("softmax_dice_forward", logits, target, s, probs, workspace);
    const SoftmaxBody softmax{logits, probs, s.c};
    const std::vector<double> totals = dice_totals(ctx, probs, target, s, workspace, &softmax);
    DiceResult result;
    result.dice.assign(size_t(s.c), 0.0);
    double sum = 0;  // over the samples, then the classes: a batch of 1 sums as one sample
    for (int64_t n = 0; n < s.n; ++n)
        for (int64_t k = 0; k < s.c; ++k) {
            const size_t at = size_t(2 * (s.c * n + k));
            const double dice = 2 * totals[at] / dice_denominator(totals[at + 1]);
            result.dice[size_t(k)] += dice;
            sum += dice;
        }
    for (double& dice : result.dice) dice /= double(s.n);
    result.loss = 1 - sum / double(s.n * s.c);
    return result;
}

void softmax_dice_backward(DeviceContext& ctx, const float* probs, const uint8_t* target, const Shape5& s,
                           float grad_scale, float* dlogits, void* workspace) {
    check_args("softmax_dice_backward", probs, target, s, dlogits, workspace);
    const std::vector<double> totals = dice_totals(ctx, probs, target, s, workspace, nullptr);
    // a_k, b_k of the derivation above for each sample, in double, rounded once to float.
    std::vector<float> coef(totals.size());
    const double nc = double(s.n * s.c);
    for (size_t at = 0; at < totals.size(); at += 2) {
        const double i = totals[at], u = totals[at + 1];
        const double uh = dice_denominator(u);
        coef[at] = float(-2.0 * grad_scale / (nc * uh));
        coef[at + 1] = u > 1e-3 ? float(4.0 * grad_scale * i / (nc * uh * uh)) : 0.0f;
    }
    const WorkspaceLayout layout(s);
    float* dev_coef = coef_of(workspace, layout);
    if (ctx.is_cuda())
        ctx.copy_to_device(dev_coef, coef.data(), coef.size() * sizeof(float));
    else
        std::copy(coef.begin(), coef.end(), dev_coef);
    for (int64_t n = 0; n < s.n; ++n) {  // each sample's positions with its own coefficients
        const int64_t first = sample_offset(s, n);
        const DiceBackwardBody body{probs + first * s.c, target + first, dev_coef + 2 * s.c * n, s.c,
                                    dlogits + first * s.c};
        if (ctx.is_cuda())
            ISS_CUDA_ONLY("softmax_dice_backward", dice_backward_cuda(ctx, body, sample_positions(s)));
        else
            cpu_for_each(sample_positions(s), body);
    }
}

double wl2_forward(DeviceContext& ctx, const float* logits, const uint8_t* target, const Shape5& s,
                   void* workspace) {
    check_args("wl2_forward", logits, target, s, logits, workspace);
    const std::vector<double> totals = wl2_totals(ctx, Wl2Terms{logits, target, s.c, false}, s, workspace);
    double sum = 0;
    for (int64_t k = 0; k < s.c; ++k) sum += totals[size_t(2 * k)];
    return sum / (double(s.c) * totals[1]);  // sum w is accumulated on class 0 only
}

void wl2_backward(DeviceContext& ctx, const float* logits, const uint8_t* target, const Shape5& s,
                  float grad_scale, float* dlogits, void* workspace) {
    check_args("wl2_backward", logits, target, s, dlogits, workspace);
    const std::vector<double> totals = wl2_totals(ctx, Wl2Terms{logits, target, s.c, true}, s, workspace);
    const Wl2BackwardBody body{logits, target, s.c, float(2.0 * grad_scale / (double(s.c) * totals[1])), dlogits};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("wl2_backward", wl2_backward_cuda(ctx, body, s.voxels()));
    } else {
        cpu_for_each(s.voxels(), body);
    }
}

}  // namespace iss
