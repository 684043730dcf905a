// Max-pooling by 2 and nearest-neighbour upsampling by 2 over (D, H, W) of a channels-last
// (N, D, H, W, C) tensor, and channel concatenation, on fp32 or bf16 storage (T = float or
// Bf16, kernels/common/bf16.h). Exact (no rounding) except the upsample backward's sum of 8,
// which has a fixed order, in fp32, rounded once to T: CPU and CUDA agree bit for bit.
//
// maxpool2: out (N, D/2, H/2, W/2, C) (D, H, W even); `argmax` keeps, per output element, which
//   of the 8 inputs won (0..7, bit 0 = w, bit 1 = h, bit 2 = d; the first maximum wins; NaN
//   propagates). Backward writes dx (zero where the input did not win).
// upsample2: out (N, 2D, 2H, 2W, C), each input copied to its 2x2x2 block. Backward sums the
//   8 gradients of the block in a fixed order.
// concat: out channels [a (ca) | b (cb)] per voxel. Backward splits; either gradient may be null.
// upsample_concat: concat(a, upsample2(b)) without the upsampled tensor (b is coarse, the
//   decoder's deeper level): out (N, D, H, W, ca + cb) for a (N, D, H, W, ca) and b
//   (N, D/2, H/2, W/2, cb). Backward: da the split, db the upsample's fixed-order sum of 8 read
//   from the concatenated gradient; bit for bit the two separate kernels.
// upsample_fold_weights / add_upsampled_parities: the decoder's convolution over
//   concat(a, upsample2(b)) without the concatenation (nn/ops.h: upsample_concat_conv). A 3^3
//   convolution of nearest-upsampled values reads, at fine row 2x + p (per axis; p the parity),
//   coarse rows x-1, x (p = 0) or x, x+1 (p = 1): its taps 0 | 1 2 (p = 0) and 0 1 | 2 (p = 1)
//   read the same coarse row, so their weights add up. Per parity that is a 2^3 convolution on
//   the coarse grid; the eight parities are one 2^3 convolution (padding 1, nn/conv.h) to 8 Co
//   channels, whose output row y holds parity p's value for fine row 2(y - p) + p.
//   upsample_fold_weights: from w (Co, 3, 3, 3, ca + cb), the convolution over [a | up(b)]:
//     w_a (Co, 3, 3, 3, ca), a's part as it is, and w_b (8 Co, 2, 2, 2, cb), b's part folded:
//     output channel q Co + o for parity q (bit 0 = w, bit 1 = h, bit 2 = d), each weight the
//     fp32 sum of the 1, 2, 4 or 8 taps it gathers, in tap order.
//   add_upsampled_parities: y = ELU(a_part + the parities' value at the fine voxel's parity)
//     (ELU where alpha > 0) over the fine (N, D, H, W, Co) tensor, from a_part of that shape and
//     parities (N, D/2 + 1, H/2 + 1, W/2 + 1, 8 Co), both fp32: one fp32 sum, rounded once to T.
//     a_part may be y (T = float).
// Backward kernels overwrite their outputs. Every kernel is a gather (one output element per
// thread, no atomics); maxpool2's backward runs over the INPUT: each element finds its pooled
// output and compares its own position in the 2x2x2 block with the stored argmax.
#pragma once

#include <cstdint>

#include "kernels/common/bf16.h"
#include "kernels/common/hd.h"
#include "kernels/nn/elementwise.h"
#include "kernels/nn/shape.h"

// Unroll a short fixed loop: on the host before vectorizing, so the loop around it vectorizes.
#if defined(__CUDA_ARCH__)
#define ISS_UNROLL _Pragma("unroll")
#elif defined(__CUDACC__)  // nvcc's host pass: these bodies run on the device only there
#define ISS_UNROLL
#elif defined(__GNUC__) && !defined(__clang__)
#define ISS_UNROLL _Pragma("GCC unroll 8")
#else
#define ISS_UNROLL
#endif

namespace iss {

class DeviceContext;

template <class T>
void maxpool2_forward(DeviceContext& ctx, const T* x, const Shape5& in, T* y, uint8_t* argmax);
template <class T>
void maxpool2_backward(DeviceContext& ctx, const T* dy, const uint8_t* argmax, const Shape5& in, T* dx);

template <class T>
void upsample2_forward(DeviceContext& ctx, const T* x, const Shape5& in, T* y);
template <class T>
void upsample2_backward(DeviceContext& ctx, const T* dy, const Shape5& in, T* dx);

template <class T>
void concat_channels_forward(DeviceContext& ctx, const T* a, int64_t ca, const T* b, int64_t cb, int64_t voxels,
                             T* y);
template <class T>
void concat_channels_backward(DeviceContext& ctx, const T* dy, int64_t ca, int64_t cb, int64_t voxels, T* da, T* db);

// `fine`: a's shape (N, D, H, W, ca), D, H, W even; b is (N, D/2, H/2, W/2, cb).
template <class T>
void upsample_concat_forward(DeviceContext& ctx, const T* a, const Shape5& fine, const T* b, int64_t cb, T* y);
template <class T>
void upsample_concat_backward(DeviceContext& ctx, const T* dy, const Shape5& fine, int64_t cb, T* da, T* db);

// w, w_a, w_b as above.
void upsample_fold_weights(DeviceContext& ctx, const float* w, int64_t out_c, int64_t ca, int64_t cb, float* w_a,
                           float* w_b);
// `fine`: the convolution's output shape (N, D, H, W, Co), D, H, W even.
template <class T>
void add_upsampled_parities(DeviceContext& ctx, const float* a_part, const float* parities, const Shape5& fine, T* y,
                            float elu_alpha);

// --- Bodies shared by the CPU and CUDA launchers: `at(v, c)` per voxel v and channel c (see
// kernels/nn/channels_last.h); the bodies over the fine tensor take the launch's index type.
// Offsets of block member q (bit 0 = w, bit 1 = h, bit 2 = d).

struct Pool2Geometry {
    int64_t n, d, h, w, c;  // the fine (input of maxpool, output of upsample) shape

    // Element index of the fine tensor at block member 0 of coarse voxel ov, channel ch; member
    // q is at fine_base + member_offset(q).
    ISS_HD int64_t fine_base(int64_t ov, int64_t ch) const {
        const int64_t cw = w / 2, chh = h / 2, cd = d / 2;
        const int64_t ow = ov % cw, oh = (ov / cw) % chh, od = (ov / (cw * chh)) % cd, on = ov / (cw * chh * cd);
        return (((on * d + 2 * od) * h + 2 * oh) * w + 2 * ow) * c + ch;
    }
    ISS_HD int64_t member_offset(int q) const { return (((q >> 2) * h + ((q >> 1) & 1)) * w + (q & 1)) * c; }
    // Coarse element index of fine voxel fv, channel ch, and fv's member number q in its block,
    // in the index type I of the launch over the fine tensor (every index here is below its
    // element count): 32 bits on CUDA below 2^31 elements, where 64-bit divisions are long
    // software routines (with them the upsample's forward ran at 550 GB/s on an H200, its
    // backward, which divides once per 8 elements, at 3.1 TB/s).
    template <class I>
    ISS_HD I coarse_index(I fv, I ch, int* q) const {
        const I W = I(w), H = I(h), D = I(d);
        const I x = fv % W, y = (fv / W) % H, z = (fv / (W * H)) % D, on = fv / (W * H * D);
        *q = int(((z & 1) << 2) | ((y & 1) << 1) | (x & 1));
        return (((on * (D / 2) + z / 2) * (H / 2) + y / 2) * (W / 2) + x / 2) * I(c) + ch;
    }
};

template <class T>
struct MaxPool2ForwardBody {  // over output voxels
    Pool2Geometry g;
    const T* x;
    T* y;
    uint8_t* argmax;
    ISS_HD void at(int64_t ov, int64_t ch) const {
        const T* block = x + g.fine_base(ov, ch);
        // Two scans, each one comparison and two selects per member, so g++ vectorizes the
        // channel loop (a combined NaN-aware comparison keeps it scalar):
        // the first strict maximum among the numbers (the first maximum wins) ...
        float best = widen(block[0]);
        int best_q = 0;
        ISS_UNROLL
        for (int q = 1; q < 8; ++q) {
            const float v = widen(block[g.member_offset(q)]);
            const bool take = v > best;
            best = take ? v : best;
            best_q = take ? q : best_q;
        }
        // ... and the first NaN (scanning down, the last one seen is the first), which wins:
        // NaN propagates as in TF's max-pool.
        float nan_value = 0.0f;
        int nan_q = 8;
        ISS_UNROLL
        for (int q = 7; q >= 0; --q) {
            const float v = widen(block[g.member_offset(q)]);
            const bool is_nan = v != v;
            nan_value = is_nan ? v : nan_value;
            nan_q = is_nan ? q : nan_q;
        }
        const bool has_nan = nan_q < 8;
        best = has_nan ? nan_value : best;
        best_q = has_nan ? nan_q : best_q;
        const int64_t o = ov * g.c + ch;
        y[o] = stored_exactly<T>(best);  // `best` is one of the stored values
        argmax[o] = uint8_t(best_q);
    }
};

template <class T>
struct MaxPool2BackwardBody {  // over input voxels
    Pool2Geometry g;
    const T* dy;
    const uint8_t* argmax;
    T* dx;
    template <class I>
    ISS_HD void at(I fv, I ch) const {
        int q;
        const I o = g.coarse_index(fv, ch, &q);
        dx[fv * I(g.c) + ch] = kept_or_zero(argmax[o] == q, dy[o]);
    }
};

template <class T>
struct Upsample2ForwardBody {  // over output (fine) voxels
    Pool2Geometry g;
    const T* x;
    T* y;
    template <class I>
    ISS_HD void at(I fv, I ch) const {
        int q;
        y[fv * I(g.c) + ch] = copied(x[g.coarse_index(fv, ch, &q)]);
    }
};

// Over input (coarse) voxels and its `channels`: dy's channels [first, first + channels) (all of
// them for upsample2; the upsampled part of a concatenation for upsample_concat).
template <class T>
struct Upsample2BackwardBody {
    Pool2Geometry g;  // the fine shape, c = dy's channel count
    const T* dy;
    int64_t first, channels;
    T* dx;
    ISS_HD void at(int64_t ov, int64_t ch) const {
        const T* block = dy + g.fine_base(ov, first + ch);
        float sum = widen(block[0]);
        for (int q = 1; q < 8; ++q) sum = sum + widen(block[g.member_offset(q)]);  // fixed order q = 0..7
        dx[ov * channels + ch] = narrow<T>(sum);
    }
};

template <class T>
struct ConcatForwardBody {  // over voxels, channels ca + cb
    const T* a;
    const T* b;
    int64_t ca, cb;
    T* y;
    ISS_HD void at(int64_t v, int64_t ch) const {
        y[v * (ca + cb) + ch] = ch < ca ? a[v * ca + ch] : b[v * cb + (ch - ca)];
    }
};

template <class T>
struct ConcatBackwardBody {  // over voxels, channels ca + cb
    const T* dy;
    int64_t ca, cb;
    T* da;  // either may be null: that gradient is not wanted
    T* db;
    ISS_HD void at(int64_t v, int64_t ch) const {
        const T g = dy[v * (ca + cb) + ch];
        if (ch < ca) {
            if (da) da[v * ca + ch] = g;
        } else if (db) {
            db[v * cb + (ch - ca)] = g;
        }
    }
};

template <class T>
struct UpsampleConcatForwardBody {  // over fine voxels, channels ca + cb
    Pool2Geometry g;  // the fine shape with c = cb (b's channels)
    const T* a;
    const T* b;
    int64_t ca;
    T* y;
    template <class I>
    ISS_HD void at(I fv, I ch) const {
        int q;
        const I channels_a = I(ca);
        y[fv * (channels_a + I(g.c)) + ch] =
            ch < channels_a ? a[fv * channels_a + ch] : b[g.coarse_index(fv, ch - channels_a, &q)];
    }
};

// a's part of the weights: over the Co x 27 taps as "voxels", ca channels.
struct SplitUpsampledWeightsBody {
    const float* w;
    int64_t ca, cb;
    float* w_a;
    ISS_HD void at(int64_t tap, int64_t ch) const { w_a[tap * ca + ch] = w[tap * (ca + cb) + ch]; }
};

// b's part folded: over the 8 Co x 8 coarse taps as "voxels", cb channels.
struct FoldUpsampledWeightsBody {
    const float* w;
    int64_t out_c, ca, cb;
    float* w_b;
    // The fine taps [*first, *last] of one axis that parity p's coarse tap s gathers.
    ISS_HD static void fine_taps(int p, int s, int* first, int* last) {
        *first = s ? 1 + p : 0;
        *last = s ? 2 : p;
    }
    ISS_HD void at(int64_t row, int64_t ch) const {
        const int s = int(row % 8), q = int(row / 8 / out_c);
        const int64_t o = row / 8 % out_c;
        int d0, d1, h0, h1, w0, w1;
        fine_taps(q >> 2, s >> 2, &d0, &d1);
        fine_taps((q >> 1) & 1, (s >> 1) & 1, &h0, &h1);
        fine_taps(q & 1, s & 1, &w0, &w1);
        float sum = 0.0f;
        for (int td = d0; td <= d1; ++td)
            for (int th = h0; th <= h1; ++th)
                for (int tw = w0; tw <= w1; ++tw)
                    sum = sum + w[((o * 27 + td * 9 + th * 3 + tw) * (ca + cb)) + ca + ch];
        w_b[row * cb + ch] = sum;
    }
};

template <class T>
struct AddUpsampledParitiesBody {  // over fine voxels, Co channels
    int64_t n, d, h, w, c;         // the fine shape (c = Co)
    const float* a_part;
    const float* parities;
    T* y;
    bool elu;
    float alpha;
    // The parities tensor is larger than the fine one (a row more per axis, 8 Co channels).
    int64_t index_extent() const { return n * (d / 2 + 1) * (h / 2 + 1) * (w / 2 + 1) * 8 * c; }
    // Where fine voxel (x, r, z) of batch element b finds its parity's Co values: parity p of
    // fine row 2x + p lies in coarse row x + p = (2x + p + 1) / 2 (per axis), in its channel
    // block q (bits 2, 1, 0 = the parities along z, r, x).
    template <class I>
    ISS_HD I parity_values(I b, I z, I r, I x) const {
        const I W = I(w), H = I(h), D = I(d), C = I(c);
        const I q = ((z & 1) << 2) | ((r & 1) << 1) | (x & 1);
        const I coarse = ((b * (D / 2 + 1) + (z + 1) / 2) * (H / 2 + 1) + (r + 1) / 2) * (W / 2 + 1) + (x + 1) / 2;
        return (coarse * 8 + q) * C;
    }
    // One output element from its two parts: one fp32 sum, the ELU, one rounding.
    ISS_HD T value(float a, float parity) const {
        const float sum = a + parity;
        return narrow<T>(elu ? elu_value(sum, alpha) : sum);
    }
    template <class I>
    ISS_HD void at(I fv, I ch) const {
        const I W = I(w), H = I(h), D = I(d), C = I(c);
        const I x = fv % W, r = (fv / W) % H, z = (fv / (W * H)) % D, b = fv / (W * H * D);
        y[fv * C + ch] = value(a_part[fv * C + ch], parities[parity_values(b, z, r, x) + ch]);
    }
};

// CUDA launcher (pool.cu): runs any of the bodies above over `voxels` x `channels`;
// instantiated there for each body and storage type.
template <class Body>
void pool_cuda(DeviceContext& ctx, const Body& body, int64_t voxels, int64_t channels);

}  // namespace iss
