// CUDA launchers of the losses (loss.h). Per-position passes (softmax, the backwards) run one
// thread per position over the shared bodies, on rows staged through shared memory
// (staged_rows_kernel). The per-class sums: one block of
// loss_reduce_lanes threads per chunk, thread s owning slot (k = s mod C, g = s / C) and
// summing its positions in increasing order (neighbouring threads read neighbouring floats);
// the slots of a class are combined in g order by one thread, and a last kernel sums the
// chunks of each class in index order. No atomics: the same bits as the CPU launcher.
#include "kernels/common/launch.cuh"
#include "kernels/nn/loss.h"

namespace iss {
namespace {

// Per-position bodies read and write a row of C channels per position. One thread walking its own
// row makes every load and store of a warp touch 32 rows (C floats apart): on an H100 the softmax
// with the Dice sums ran at 37 GB/s. Channels-last keeps a block's rows contiguous, so the block
// copies them into shared memory with coalesced loads, each thread runs the unchanged body on its
// row there (the same operations, so the same bits), and the block copies the results back out.
// StagedRows<Body> says which array a body reads (In), which it writes (Out), and how to point
// it at the staged copies: indices local to the block, and the per-position targets (where the
// body has them) rebased to the block's first position.
template <class Body, auto In, auto Out, bool HasTarget>
struct StagedRowsOf {
    static const float* in(const Body& b) { return b.*In; }
    static float* out(const Body& b) { return b.*Out; }
    __device__ static Body local(Body b, float* in, float* out, int64_t begin) {
        b.*In = in;
        b.*Out = out;
        if constexpr (HasTarget) b.target += begin;
        return b;
    }
};
template <class Body>
struct StagedRows;
template <>
struct StagedRows<SoftmaxBody> : StagedRowsOf<SoftmaxBody, &SoftmaxBody::logits, &SoftmaxBody::probs, false> {};
template <>
struct StagedRows<DiceBackwardBody>
    : StagedRowsOf<DiceBackwardBody, &DiceBackwardBody::probs, &DiceBackwardBody::dlogits, true> {};
template <>
struct StagedRows<Wl2BackwardBody>
    : StagedRowsOf<Wl2BackwardBody, &Wl2BackwardBody::logits, &Wl2BackwardBody::dlogits, true> {};

// Two staged arrays (rows in, rows out) of `rows` rows each, at most 48 KiB (the default
// dynamic shared-memory limit): 128 rows at 34 classes, 24 at 256.
constexpr int64_t staged_bytes = 48 * 1024;
inline int staged_rows_per_block(int64_t classes) {
    return int(std::min<int64_t>(128, staged_bytes / (2 * int64_t(sizeof(float)) * classes)));
}

template <class Body>
__global__ void staged_rows_kernel(const Body body, const float* in, float* out, int64_t positions, int64_t classes) {
    extern __shared__ float staged[];
    const int rows_per_block = int(blockDim.x);
    float* in_rows = staged;
    float* out_rows = staged + rows_per_block * classes;
    for (int64_t begin = int64_t(blockIdx.x) * rows_per_block; begin < positions;
         begin += int64_t(gridDim.x) * rows_per_block) {
        const int rows = int(positions - begin < rows_per_block ? positions - begin : rows_per_block);
        const int count = rows * int(classes);
        const float* from = in + begin * classes;
        for (int i = threadIdx.x; i < count; i += rows_per_block) in_rows[i] = from[i];
        __syncthreads();
        if (int(threadIdx.x) < rows) StagedRows<Body>::local(body, in_rows, out_rows, begin)(threadIdx.x);
        __syncthreads();
        float* to = out + begin * classes;
        // No barrier here: the next rows' loads write in_rows, which nothing reads any more, and
        // out_rows is written again only after the barrier that follows those loads.
        for (int i = threadIdx.x; i < count; i += rows_per_block) to[i] = out_rows[i];
    }
}

template <class Body>
void for_each_staged_row(DeviceContext& ctx, const Body& body, int64_t positions) {
    if (positions == 0) return;
    const int rows = staged_rows_per_block(body.classes);
    const size_t shared = size_t(2 * rows * body.classes) * sizeof(float);
    const cudaStream_t stream = static_cast<cudaStream_t>(ctx.cuda_stream());
    staged_rows_kernel<<<cuda_blocks_for(positions, rows), unsigned(rows), shared, stream>>>(
        body, StagedRows<Body>::in(body), StagedRows<Body>::out(body), positions, body.classes);
    ISS_CUDA_CHECK_LAUNCH();
}

template <class Terms>
__global__ void __launch_bounds__(loss_reduce_lanes)
    chunk_sums_kernel(const Terms terms, int64_t positions, int64_t classes, double* partials) {
    __shared__ double acc[2 * loss_reduce_lanes];
    const int64_t groups = loss_groups(classes);
    const int64_t chunk = blockIdx.x;
    const int64_t begin = chunk * loss_chunk_positions;
    const int64_t end = positions < begin + loss_chunk_positions ? positions : begin + loss_chunk_positions;
    const int64_t slot = threadIdx.x;
    double s0 = 0, s1 = 0;
    if (slot < groups * classes) {
        const int64_t k = slot % classes, g = slot / classes;
        for (int64_t v = begin + g; v < end; v += groups) terms(v, k, s0, s1);
    }
    acc[2 * slot] = s0;
    acc[2 * slot + 1] = s1;
    __syncthreads();
    // Thread k combines class k (C <= lanes, so one pass).
    for (int64_t k = threadIdx.x; k < classes; k += blockDim.x)
        combine_slots(acc, classes, groups, k, &partials[2 * (chunk * classes + k)],
                      &partials[2 * (chunk * classes + k) + 1]);
}

__global__ void chunk_totals_kernel(const double* partials, int64_t chunks, int64_t classes, double* totals) {
    for (int64_t k = threadIdx.x; k < classes; k += blockDim.x) sum_chunks(partials, chunks, classes, k, totals);
}

template <class Terms>
void class_sums(DeviceContext& ctx, const Terms& terms, int64_t positions, double* partials, double* totals) {
    const cudaStream_t stream = static_cast<cudaStream_t>(ctx.cuda_stream());
    const int64_t chunks = (positions + loss_chunk_positions - 1) / loss_chunk_positions;
    chunk_sums_kernel<<<unsigned(chunks), unsigned(loss_reduce_lanes), 0, stream>>>(terms, positions, terms.classes,
                                                                                   partials);
    ISS_CUDA_CHECK_LAUNCH();
    chunk_totals_kernel<<<1, unsigned(loss_reduce_lanes), 0, stream>>>(partials, chunks, terms.classes, totals);
    ISS_CUDA_CHECK_LAUNCH();
}

}  // namespace

void softmax_cuda(DeviceContext& ctx, const SoftmaxBody& body, int64_t positions) {
    for_each_staged_row(ctx, body, positions);
}

void dice_sums_cuda(DeviceContext& ctx, const DiceTerms& terms, int64_t positions, double* partials, double* totals) {
    class_sums(ctx, terms, positions, partials, totals);
}

void wl2_sums_cuda(DeviceContext& ctx, const Wl2Terms& terms, int64_t positions, double* partials, double* totals) {
    class_sums(ctx, terms, positions, partials, totals);
}

void dice_backward_cuda(DeviceContext& ctx, const DiceBackwardBody& body, int64_t positions) {
    for_each_staged_row(ctx, body, positions);
}

void wl2_backward_cuda(DeviceContext& ctx, const Wl2BackwardBody& body, int64_t positions) {
    for_each_staged_row(ctx, body, positions);
}

}  // namespace iss
