// Max-pooling, upsampling and channel concatenation: preconditions (shapes, even extents,
// non-null tensors named), then the OpenMP loop over the shared bodies (the parities' sum: row
// by row, each element the body's value()) or the CUDA launcher.
#include "kernels/nn/pool.h"

#include <algorithm>
#include <vector>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"
#include "kernels/nn/channels_last.h"

namespace iss {
namespace {

Pool2Geometry pool_geometry(const Shape5& fine, const char* op) {
    require_shape(fine, op);
    ISS_REQUIRE(fine.d % 2 == 0 && fine.h % 2 == 0 && fine.w % 2 == 0, op,
                ": D, H and W of the input must be even, shape is ", fine.str());
    return Pool2Geometry{fine.n, fine.d, fine.h, fine.w, fine.c};
}

Pool2Geometry upsample_geometry(const Shape5& coarse, const char* op) {
    require_shape(coarse, op);
    return Pool2Geometry{coarse.n, 2 * coarse.d, 2 * coarse.h, 2 * coarse.w, coarse.c};
}

// add_upsampled_parities on the CPU, a fine row at a time: first the row's parity values, each
// fine voxel's Co from its coarse voxel, gathered into a row of their own; then one flat loop
// over the row's W x Co elements. The body's own loop (a voxel's index divisions, then its Co
// channels, 24 as 16 + 8 lanes) ran the level-0 sum 1.44x (fp32) to 2.8x (bf16) slower on an
// AMX Xeon (docs/PERFORMANCE.md). Each element is the body's value(): the body's bits.
template <class T>
void add_upsampled_parities_cpu(const AddUpsampledParitiesBody<T>& shared_body) {
    const int64_t W = shared_body.w, H = shared_body.h, D = shared_body.d, C = shared_body.c, length = W * C;
#pragma omp parallel
    {
        // A private copy: the loops then need not fear that a store to y changes its fields.
        const AddUpsampledParitiesBody<T> body = shared_body;
        std::vector<float> gathered(static_cast<size_t>(length));  // a thread's row, reused
#pragma omp for collapse(2) schedule(static)
        for (int64_t bz = 0; bz < body.n * D; ++bz)
            for (int64_t r = 0; r < H; ++r) {
                const int64_t b = bz / D, z = bz % D;
                for (int64_t x = 0; x < W; ++x)
                    std::copy_n(body.parities + body.parity_values(b, z, r, x), C, &gathered[size_t(x * C)]);
                const int64_t first = (bz * H + r) * length;
                const float* a = body.a_part + first;  // may be y (fp32): each element read, then written
                const float* p = gathered.data();
                T* y = body.y + first;
                // 32 lanes: with 16, g++ 12 built for AVX-512 runs the loop that stores bf16 at
                // half width (ymm registers), 34 against 21 ms a 36-row level-0 slab.
#pragma omp simd simdlen(32)
                for (int64_t e = 0; e < length; ++e) y[e] = body.value(a[e], p[e]);
            }
    }
}

}  // namespace

template <class T>
void maxpool2_forward(DeviceContext& ctx, const T* x, const Shape5& in, T* y, uint8_t* argmax) {
    const Pool2Geometry g = pool_geometry(in, "maxpool2_forward");
    require_tensor(x, "maxpool2_forward", "x");
    require_tensor(y, "maxpool2_forward", "y");
    require_tensor(argmax, "maxpool2_forward", "argmax");
    const MaxPool2ForwardBody<T> body{g, x, y, argmax};
    const int64_t out_voxels = in.voxels() / 8;
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("maxpool2_forward", pool_cuda(ctx, body, out_voxels, in.c));
        return;
    }
    cpu_for_each_channels_last(out_voxels, in.c, body);
}

template <class T>
void maxpool2_backward(DeviceContext& ctx, const T* dy, const uint8_t* argmax, const Shape5& in, T* dx) {
    const Pool2Geometry g = pool_geometry(in, "maxpool2_backward");
    require_tensor(dy, "maxpool2_backward", "dy");
    require_tensor(argmax, "maxpool2_backward", "argmax");
    require_tensor(dx, "maxpool2_backward", "dx");
    const MaxPool2BackwardBody<T> body{g, dy, argmax, dx};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("maxpool2_backward", pool_cuda(ctx, body, in.voxels(), in.c));
        return;
    }
    cpu_for_each_channels_last(in.voxels(), in.c, body);
}

template <class T>
void upsample2_forward(DeviceContext& ctx, const T* x, const Shape5& in, T* y) {
    const Pool2Geometry g = upsample_geometry(in, "upsample2_forward");
    require_tensor(x, "upsample2_forward", "x");
    require_tensor(y, "upsample2_forward", "y");
    const Upsample2ForwardBody<T> body{g, x, y};
    const int64_t out_voxels = in.voxels() * 8;
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("upsample2_forward", pool_cuda(ctx, body, out_voxels, in.c));
        return;
    }
    cpu_for_each_channels_last(out_voxels, in.c, body);
}

template <class T>
void upsample2_backward(DeviceContext& ctx, const T* dy, const Shape5& in, T* dx) {
    const Pool2Geometry g = upsample_geometry(in, "upsample2_backward");
    require_tensor(dy, "upsample2_backward", "dy");
    require_tensor(dx, "upsample2_backward", "dx");
    const Upsample2BackwardBody<T> body{g, dy, 0, in.c, dx};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("upsample2_backward", pool_cuda(ctx, body, in.voxels(), in.c));
        return;
    }
    cpu_for_each_channels_last(in.voxels(), in.c, body);
}

template <class T>
void concat_channels_forward(DeviceContext& ctx, const T* a, int64_t ca, const T* b, int64_t cb, int64_t voxels,
                             T* y) {
    ISS_REQUIRE(ca > 0 && cb > 0, "concat_channels_forward: channel counts must be positive, are ", ca, " and ", cb);
    ISS_REQUIRE(voxels >= 0, "concat_channels_forward: negative voxel count ", voxels);
    require_tensor(a, "concat_channels_forward", "a");
    require_tensor(b, "concat_channels_forward", "b");
    require_tensor(y, "concat_channels_forward", "y");
    const ConcatForwardBody<T> body{a, b, ca, cb, y};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("concat_channels_forward", pool_cuda(ctx, body, voxels, ca + cb));
        return;
    }
    cpu_for_each_channels_last(voxels, ca + cb, body);
}

template <class T>
void concat_channels_backward(DeviceContext& ctx, const T* dy, int64_t ca, int64_t cb, int64_t voxels, T* da, T* db) {
    ISS_REQUIRE(ca > 0 && cb > 0, "concat_channels_backward: channel counts must be positive, are ", ca, " and ", cb);
    ISS_REQUIRE(voxels >= 0, "concat_channels_backward: negative voxel count ", voxels);
    require_tensor(dy, "concat_channels_backward", "dy");
    if (!da && !db) return;  // neither input wants a gradient
    const ConcatBackwardBody<T> body{dy, ca, cb, da, db};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("concat_channels_backward", pool_cuda(ctx, body, voxels, ca + cb));
        return;
    }
    cpu_for_each_channels_last(voxels, ca + cb, body);
}

template <class T>
void upsample_concat_forward(DeviceContext& ctx, const T* a, const Shape5& fine, const T* b, int64_t cb, T* y) {
    const char* op = "upsample_concat_forward";
    const Pool2Geometry pool = pool_geometry(fine, op);
    ISS_REQUIRE(cb > 0, op, ": b's channel count must be positive, is ", cb);
    require_tensor(a, op, "a");
    require_tensor(b, op, "b");
    require_tensor(y, op, "y");
    const UpsampleConcatForwardBody<T> body{Pool2Geometry{pool.n, pool.d, pool.h, pool.w, cb}, a, b, fine.c, y};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("upsample_concat_forward", pool_cuda(ctx, body, fine.voxels(), fine.c + cb));
        return;
    }
    cpu_for_each_channels_last(fine.voxels(), fine.c + cb, body);
}

template <class T>
void upsample_concat_backward(DeviceContext& ctx, const T* dy, const Shape5& fine, int64_t cb, T* da, T* db) {
    const char* op = "upsample_concat_backward";
    const Pool2Geometry pool = pool_geometry(fine, op);
    ISS_REQUIRE(cb > 0, op, ": b's channel count must be positive, is ", cb);
    require_tensor(dy, op, "dy");
    // a's gradient is the concatenation's split (b's part not wanted there); b's the sum of 8.
    if (da) concat_channels_backward<T>(ctx, dy, fine.c, cb, fine.voxels(), da, nullptr);
    if (!db) return;
    const Upsample2BackwardBody<T> body{Pool2Geometry{pool.n, pool.d, pool.h, pool.w, fine.c + cb}, dy, fine.c, cb, db};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("upsample_concat_backward", pool_cuda(ctx, body, fine.voxels() / 8, cb));
        return;
    }
    cpu_for_each_channels_last(fine.voxels() / 8, cb, body);
}

void upsample_fold_weights(DeviceContext& ctx, const float* w, int64_t out_c, int64_t ca, int64_t cb, float* w_a,
                           float* w_b) {
    const char* op = "upsample_fold_weights";
    ISS_REQUIRE(out_c > 0 && ca > 0 && cb > 0, op, ": channel counts must be positive, are ", out_c, ", ", ca, " and ",
                cb);
    require_tensor(w, op, "w");
    require_tensor(w_a, op, "w_a");
    require_tensor(w_b, op, "w_b");
    const SplitUpsampledWeightsBody split{w, ca, cb, w_a};
    const FoldUpsampledWeightsBody fold{w, out_c, ca, cb, w_b};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("upsample_fold_weights",
                      (pool_cuda(ctx, split, out_c * 27, ca), pool_cuda(ctx, fold, out_c * 64, cb)));
        return;
    }
    cpu_for_each_channels_last(out_c * 27, ca, split);
    cpu_for_each_channels_last(out_c * 64, cb, fold);
}

template <class T>
void add_upsampled_parities(DeviceContext& ctx, const float* a_part, const float* parities, const Shape5& fine, T* y,
                            float elu_alpha) {
    const char* op = "add_upsampled_parities";
    pool_geometry(fine, op);
    ISS_REQUIRE(elu_alpha >= 0, op, ": ELU alpha must be >= 0, is ", elu_alpha);
    require_tensor(a_part, op, "a_part");
    require_tensor(parities, op, "parities");
    require_tensor(y, op, "y");
    const bool elu = elu_alpha > 0;
    const AddUpsampledParitiesBody<T> body{fine.n, fine.d, fine.h, fine.w, fine.c, a_part, parities, y, elu, elu_alpha};
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("add_upsampled_parities", pool_cuda(ctx, body, fine.voxels(), fine.c));
        return;
    }
    add_upsampled_parities_cpu(body);
}

#define ISS_INSTANTIATE(T)                                                                                       \
    template void maxpool2_forward<T>(DeviceContext&, const T*, const Shape5&, T*, uint8_t*);                    \
    template void maxpool2_backward<T>(DeviceContext&, const T*, const uint8_t*, const Shape5&, T*);             \
    template void upsample2_forward<T>(DeviceContext&, const T*, const Shape5&, T*);                             \
    template void upsample2_backward<T>(DeviceContext&, const T*, const Shape5&, T*);                            \
    template void concat_channels_forward<T>(DeviceContext&, const T*, int64_t, const T*, int64_t, int64_t, T*); \
    template void concat_channels_backward<T>(DeviceContext&, const T*, int64_t, int64_t, int64_t, T*, T*);      \
    template void upsample_concat_forward<T>(DeviceContext&, const T*, const Shape5&, const T*, int64_t, T*);    \
    template void upsample_concat_backward<T>(DeviceContext&, const T*, const Shape5&, int64_t, T*, T*);         \
    template void add_upsampled_parities<T>(DeviceContext&, const float*, const float*, const Shape5&, T*, float);
ISS_FOR_EACH_STORAGE(ISS_INSTANTIATE)
#undef ISS_INSTANTIATE

}  // namespace iss
