// Losses of SPEC.md section 5, computed from class indices (no one-hot volume is made).
//
// Soft Dice, fused with the softmax: logits (N, D, H, W, C) channels-last, target index per
// position (uint8, < C). p = softmax(logits) over C; p' = clip(p / sum_c p, 1e-7, 1) (the
// renormalisation is the identity up to rounding but kept, as the reference does);
// y' = clip(onehot(target), 1e-7, 1); per sample n of the batch and class c, over the sample's
// positions:
//   I_nc = sum y' p', U_nc = sum (y'^2 + p'^2), Dice_nc = 2 I_nc / max(U_nc, 1e-3);
//   loss = 1 - mean_{n,c} Dice_nc (lab2im's DiceLoss: sums over the spatial axes, then the mean
//   over the batch and the labels; a batch of 1 is SPEC.md's).
// softmax_dice_forward writes the probabilities (for the backward and for inference) and
// returns the loss and each class's Dice (the mean over the samples) on the host;
// softmax_dice_backward writes dlogits (scaled by `grad_scale`, the upstream gradient of the
// loss, normally 1).
// Weighted L2 (pre-training, optional; lab2im's WeightedL2Loss): per position a weight
//   w = 1 - y_0 + 1e-4 (y_0 = 1 for background: background positions weigh 1e-4), target
//   t_c = 5 (2 y_c - 1) (+5 for the true class, -5 otherwise), and
//   loss = sum_{pos, c} w (logit_c - t_c)^2 / (C * sum_pos w); backward writes dlogits.
// Reductions are deterministic (fixed partitions, double partial sums). CPU and CUDA agree
// within 1e-5 relative. `workspace`: loss_workspace_bytes(shape) bytes on the device.
//
// Implementation contract (below the API: the bodies both launchers run, docs/KERNELS.md):
// - probs holds q = softmax renormalised, NOT clipped (the clip is applied where it is used),
//   so inference sees the probabilities and the backward the exact Jacobian's p.
// - The backward recomputes the per-class sums from probs: it does not rely on what the
//   forward left in the workspace, only on probs.
// - Per-class sums, each sample's apart (its positions are contiguous): positions are cut into
//   chunks of loss_chunk_positions (the last one shorter); inside a chunk, "slot" (k, g) sums class k over positions g,
//   g + G, g + 2G, ... (G = loss_groups(C)) in increasing order, in double; slots are combined g = 0, 1, ... and chunks
//   in index order. Both launchers follow this order, with the same correctly rounded double operations, so the sums,
//   the loss and the gradients are bit-identical on CPU and CUDA (stronger than the 1e-5 promised above).
// - Non-finite logits make the whole position's probabilities NaN (so the loss is NaN and a
//   diverged run shows), instead of being clamped away by exp. Targets >= C count as no class.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/common/hd.h"
#include "kernels/common/portable_math.h"
#include "kernels/nn/shape.h"

namespace iss {

class DeviceContext;

struct DiceResult {
    double loss = 0;
    std::vector<double> dice;  // per class, the mean over the batch's samples
};

size_t loss_workspace_bytes(const Shape5& shape);

DiceResult softmax_dice_forward(DeviceContext& ctx, const float* logits, const uint8_t* target, const Shape5& shape,
                                float* probs, void* workspace);
void softmax_dice_backward(DeviceContext& ctx, const float* probs, const uint8_t* target, const Shape5& shape,
                           float grad_scale, float* dlogits, void* workspace);

double wl2_forward(DeviceContext& ctx, const float* logits, const uint8_t* target, const Shape5& shape,
                   void* workspace);
void wl2_backward(DeviceContext& ctx, const float* logits, const uint8_t* target, const Shape5& shape,
                  float grad_scale, float* dlogits, void* workspace);

// Softmax alone (inference): probabilities over the C channels of each position, the same
// body as the loss uses.
void softmax_forward(DeviceContext& ctx, const float* logits, int64_t positions, int64_t classes, float* probs);

// --- Shared bodies (host and device) ------------------------------------------------------

constexpr int64_t loss_chunk_positions = 2048;  // positions per reduction chunk
constexpr int64_t loss_reduce_lanes = 256;      // CUDA threads per chunk; also fixes G
constexpr int64_t loss_max_classes = 256;       // targets are uint8

inline int64_t loss_chunks(const Shape5& s) { return (s.voxels() + loss_chunk_positions - 1) / loss_chunk_positions; }
// Positions interleaved per class inside a chunk: G * C <= lanes slots, so one CUDA thread
// per slot, and neighbouring slots read neighbouring floats (coalesced on the GPU).
ISS_HD_INLINE int64_t loss_groups(int64_t classes) { return loss_reduce_lanes / classes; }

// Clip to [lo, hi] that keeps NaN (clampf maps NaN to lo, which would hide a diverged run).
ISS_HD_INLINE float clip_keep_nan(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

// Softmax over the C channels of position v, renormalised (sum of the rounded p, as the
// reference does). Stable: exp(x - max) <= 1. Any non-finite logit: the position gets NaN.
struct SoftmaxBody {
    const float* logits = nullptr;
    float* probs = nullptr;
    int64_t classes = 0;
    ISS_HD void operator()(int64_t v) const {
        const float* x = logits + v * classes;
        float* q = probs + v * classes;
        float top = x[0];
        bool finite = true;
        for (int64_t k = 0; k < classes; ++k) {
            finite = finite && fabsf(x[k]) <= 3.40282347e38f;  // false for NaN and +-inf
            top = x[k] > top ? x[k] : top;
        }
        if (!finite) {
            for (int64_t k = 0; k < classes; ++k) q[k] = NAN;
            return;
        }
        // Each element-wise pass apart from the sum that follows it: the passes vectorize on the
        // CPU (a sum in order cannot, without reassociating, which would change the bits); the
        // operations and the order of each sum are the same as in one loop.
        for (int64_t k = 0; k < classes; ++k) q[k] = portable_exp(x[k] - top);
        float sum = 0.0f;
        for (int64_t k = 0; k < classes; ++k) sum += q[k];
        for (int64_t k = 0; k < classes; ++k) q[k] = q[k] / sum;
        float renorm = 0.0f;
        for (int64_t k = 0; k < classes; ++k) renorm += q[k];
        for (int64_t k = 0; k < classes; ++k) q[k] = q[k] / renorm;
    }
};

// SoftmaxBody on the CPU for positions [begin, end), softmax_lanes of them at a time: the same
// bits, faster (loss.cpp).
constexpr int softmax_lanes = 16;
void softmax_positions_cpu(const SoftmaxBody& body, int64_t begin, int64_t end);

// Terms of the Dice sums at (position v, class k): s0 += y' p', s1 += y'^2 + p'^2, with
// p' = clip(q, 1e-7, 1) and y' = 1 for the target class, 1e-7 otherwise (clipped one-hot).
// Double products via fma: exact operands, one rounding, the same on host and device.
struct DiceTerms {
    const float* probs = nullptr;
    const uint8_t* target = nullptr;
    int64_t classes = 0;
    ISS_HD void operator()(int64_t v, int64_t k, double& s0, double& s1) const {
        const double p = clip_keep_nan(probs[v * classes + k], 1e-7f, 1.0f);
        const bool hit = target[v] == k;
        const double y = hit ? 1.0 : 1e-7;
        const double y2 = hit ? 1.0 : 1e-14;
        s0 = fma(y, p, s0);
        s1 = fma(p, p, s1 + y2);
    }
};

// Terms of the weighted L2 at (v, k): s0 += w (x - t)^2, and s1 += w once per position
// (on class 0). w = 1e-4 on background, 1 + 1e-4 elsewhere; t = +5 true class, -5 otherwise.
// weights_only: the backward needs only sum w, so it does not read the logits.
struct Wl2Terms {
    const float* logits = nullptr;
    const uint8_t* target = nullptr;
    int64_t classes = 0;
    bool weights_only = false;
    ISS_HD void operator()(int64_t v, int64_t k, double& s0, double& s1) const {
        const uint8_t t = target[v];
        const double w = t == 0 ? 1e-4 : 1.0 + 1e-4;
        if (k == 0) s1 += w;
        if (weights_only) return;
        const double d = double(logits[v * classes + k]) - (t == k ? 5.0 : -5.0);  // exact
        s0 = fma(w * d, d, s0);
    }
};

// Combines the G slots of one class (slot (k, g) at acc[2 * (g * C + k)]), g in order.
ISS_HD_INLINE void combine_slots(const double* acc, int64_t classes, int64_t groups, int64_t k, double* s0,
                                 double* s1) {
    double a = acc[2 * k], b = acc[2 * k + 1];
    for (int64_t g = 1; g < groups; ++g) {
        a += acc[2 * (g * classes + k)];
        b += acc[2 * (g * classes + k) + 1];
    }
    *s0 = a;
    *s1 = b;
}

// Sums chunk partials (chunk-major: partials[2 * (chunk * C + k)]) of class k, chunks in order.
ISS_HD_INLINE void sum_chunks(const double* partials, int64_t chunks, int64_t classes, int64_t k, double* totals) {
    double a = 0, b = 0;
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        a += partials[2 * (chunk * classes + k)];
        b += partials[2 * (chunk * classes + k) + 1];
    }
    totals[2 * k] = a;
    totals[2 * k + 1] = b;
}

// Dice backward at position v. coef[2k], coef[2k+1] = (a_k, b_k): dL/dp'_k = a_k y'_k + b_k p'_k
// (grad_scale folded in, derivation in loss.cpp); zero where the clip is active. Then the
// softmax Jacobian-vector product dx_k = q_k (g_k - sum_j q_j g_j). g is parked in dlogits.
struct DiceBackwardBody {
    const float* probs = nullptr;
    const uint8_t* target = nullptr;
    const float* coef = nullptr;
    int64_t classes = 0;
    float* dlogits = nullptr;
    ISS_HD void operator()(int64_t v) const {
        const float* q = probs + v * classes;
        float* dx = dlogits + v * classes;
        const int64_t t = target[v];
        float dot = 0.0f;
        for (int64_t k = 0; k < classes; ++k) {
            const bool inside = q[k] >= 1e-7f && q[k] <= 1.0f;  // clip inactive (NaN: false)
            const float y = t == k ? 1.0f : 1e-7f;
            const float g = inside ? fmaf(coef[2 * k + 1], q[k], coef[2 * k] * y) : 0.0f;
            dx[k] = g;
            dot = fmaf(q[k], g, dot);
        }
        for (int64_t k = 0; k < classes; ++k) dx[k] = q[k] * (dx[k] - dot);
    }
};

// Weighted L2 backward: dx = (2 grad_scale / (C sum w)) * w * (x - t); `scale` is the first factor.
struct Wl2BackwardBody {
    const float* logits = nullptr;
    const uint8_t* target = nullptr;
    int64_t classes = 0;
    float scale = 0;
    float* dlogits = nullptr;
    ISS_HD void operator()(int64_t v) const {
        const int64_t t = target[v];
        const float sw = scale * (t == 0 ? 1e-4f : 1.0001f);
        for (int64_t k = 0; k < classes; ++k) {
            const float x = logits[v * classes + k];
            dlogits[v * classes + k] = sw * (x - (t == k ? 5.0f : -5.0f));
        }
    }
};

// CUDA launchers (loss.cu). Reductions write the class totals (2 C doubles) to `totals`.
void softmax_cuda(DeviceContext& ctx, const SoftmaxBody& body, int64_t positions);
void dice_sums_cuda(DeviceContext& ctx, const DiceTerms& terms, int64_t positions, double* partials, double* totals);
void wl2_sums_cuda(DeviceContext& ctx, const Wl2Terms& terms, int64_t positions, double* partials, double* totals);
void dice_backward_cuda(DeviceContext& ctx, const DiceBackwardBody& body, int64_t positions);
void wl2_backward_cuda(DeviceContext& ctx, const Wl2BackwardBody& body, int64_t positions);

}  // namespace iss
