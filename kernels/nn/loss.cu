// CUDA launchers of the losses (loss.h). Element-wise passes (softmax, the backwards) run one
// thread per position over the shared bodies. The per-class sums: one block of
// loss_reduce_lanes threads per chunk, thread s owning slot (k = s mod C, g = s / C) and
// summing its positions in increasing order (neighbouring threads read neighbouring floats);
// the slots of a class are combined in g order by one thread, and a last kernel sums the
// chunks of each class in index order. No atomics: the same bits as the CPU launcher.
#include "kernels/common/launch.cuh"
#include "kernels/nn/loss.h"

namespace iss {
namespace {

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
    cuda_for_each(ctx, positions, body);
}

void dice_sums_cuda(DeviceContext& ctx, const DiceTerms& terms, int64_t positions, double* partials, double* totals) {
    class_sums(ctx, terms, positions, partials, totals);
}

void wl2_sums_cuda(DeviceContext& ctx, const Wl2Terms& terms, int64_t positions, double* partials, double* totals) {
    class_sums(ctx, terms, positions, partials, totals);
}

void dice_backward_cuda(DeviceContext& ctx, const DiceBackwardBody& body, int64_t positions) {
    cuda_for_each(ctx, positions, body);
}

void wl2_backward_cuda(DeviceContext& ctx, const Wl2BackwardBody& body, int64_t positions) {
    cuda_for_each(ctx, positions, body);
}

}  // namespace iss
