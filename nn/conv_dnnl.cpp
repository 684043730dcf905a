// Conv3d on the CPU with oneDNN (Debian's 2.6: the v2 API with operation descriptors).
//
// Activations are given to oneDNN as ndhwc (our channels-last layout, asked for explicitly),
// except that an inference engine's (ConvShape::forward_only) fp32 forward of 48 input channels
// or more on an AVX2 CPU without AVX-512 runs on oneDNN's blocked layout, x reordered into it
// and the output back (kBlockedForwardFromChannels). An inference engine builds no backward
// primitive.
// The weights arrive as odhwi and the primitives choose their own blocked weight layout (format
// `any`), so the user weights are reordered into it before forward / backward-data and the
// weight gradient is reordered back to odhwi. Bias is a plain vector (`x`). Padding k/2 on
// every side, or none along D (ConvShape::pad_d, nn/conv.h), stride 1. A fused ELU is a
// post-op of the forward primitive (oneDNN's own exp: within a few ulp of ours).
//
// fp32 throughout, or in bf16 (ConvShape::precision): the primitives read bf16 inputs (the
// activation, the incoming gradient, the weights) and write the output and the activation
// gradient in their tensors' types (bf16 or fp32) and the weight gradients in fp32. Inputs
// stored fp32 are converted by oneDNN reorders (round to nearest even): the weights into
// copies made here, an fp32 activation or gradient into the context's shared workspace (the
// network's first layer reads the fp32 image; the head's fp32 logits bring an fp32 gradient).
//
// Everything that costs (primitive descriptors, JIT-compiled primitives, reorders, weight
// copies, the scratchpad) is made once in the constructor; a call only wraps the caller's
// pointers in dnnl::memory objects (cheap handles) and executes on the context's stream.
#include <dnnl.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <optional>
#include <string>
#include <unordered_map>

#include "kernels/common/device.h"
#include "kernels/common/dnnl_check.h"
#include "kernels/common/error.h"
#include "nn/conv_backends.h"

namespace iss {
namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
constexpr auto f32 = dnnl::memory::data_type::f32;
constexpr auto bf16 = dnnl::memory::data_type::bf16;

// From this many input channels an inference's fp32 forward on an AVX2 CPU without AVX-512 runs
// on oneDNN's blocked activation layout (nCdhw8c), x reordered into it and the output back
// through the context's workspace. On a Zen 2 EPYC (AVX2), oneDNN 2.6's channels-last kernels
// ran the U-Net's convolutions of 48 to 384 input channels at 60-85% of the speed of its
// blocked ones (the decoder's kernel-2 folds at 60%), and the two reorders cost about a fifth
// of what they save; at 24 channels the blocked kernels were 3-5% faster, less than the
// reorders cost (docs/PERFORMANCE.md, eighth session).
constexpr memory::dim kBlockedForwardFromChannels = 48;

// Where one backward-weights pass over the whole volume would need a scratchpad larger than this,
// it runs over slabs of output rows along D, each slab's weight and bias gradients added to the
// first's. oneDNN 2.6's AMX bf16 kernel keeps per-thread transposed copies of its inputs, about
// 290 bytes a voxel a thread at 24 channels: 1.4 GB for a level-0 convolution of the 128x160x128
// training crop on two threads, 1.8 GB for the 1x1 head. In slabs of 22 and 10 rows: at most
// 0.25 GB, and the step no slower (docs/PERFORMANCE.md, eleventh session).
constexpr size_t kWeightsScratchpadBudget = size_t(256) << 20;

std::atomic<int64_t> forced_weights_slab_rows{0};  // tests: set_dnnl_weights_slab_rows

// The ISA values are bit sets: AVX512-BF16 is avx512_core_bf16's bits, AMX includes them.
bool dnnl_isa_includes(dnnl::cpu_isa isa) {
    const auto bits = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto needed = static_cast<unsigned>(isa);
    return (bits & needed) == needed;
}

size_t rounded_to_64(size_t bytes) { return (bytes + 63) / 64 * 64; }

class DnnlConv3d final : public ConvBackend {
public:
    DnnlConv3d(DeviceContext& ctx, const ConvShape& s);

    void forward(const void* x, const float* w, const float* b, void* y) override;
    void backward_data(const void* dy, const float* w, void* dx) override;
    void backward_weights(const void* x, const void* dy, float* dw, float* db) override;
    bool forward_reorders_activations() const override { return fwd_blocked_; }
    int64_t backward_weights_slabs() const override { return std::max<int64_t>(1, int64_t(slabs_.size())); }

private:
    // A caller's tensor as a dnnl::memory: a handle over the pointer, no copy. oneDNN's
    // constructor takes void*; inputs are only read.
    memory wrap(const memory::desc& md, const void* ptr) {
        memory m;
        ISS_DNNL_CALL(m = memory(md, engine_, const_cast<void*>(ptr)));
        return m;
    }
    // A primitive's scratchpad at `space` in the shared workspace (none when it needs none).
    memory scratchpad(const memory::desc& md, char* space) {
        memory m;
        if (md.get_size() > 0) ISS_DNNL_CALL(m = memory(md, engine_, space));
        return m;
    }
    // Runs a primitive with its arguments (and the scratchpad when it needs one), then waits.
    void run(const dnnl::primitive& p, std::unordered_map<int, memory> args, const memory& scratch);
    // User odhwi weights into a primitive's layout (a copy only when the layouts differ).
    memory weights_for(const float* w, bool reorder_needed, const dnnl::reorder& r, memory& dst);
    // The activation-sized inputs of a pass in the compute type: the caller's tensor itself when
    // it is stored so, else its conversion into `space` (in the context's shared workspace).
    memory compute_input(const memory::desc& user_md, const memory::desc& compute_md, const dnnl::reorder& convert,
                         const void* ptr, void* space);
    // Bytes of workspace compute_input needs for a tensor of `user_md` (0 when no conversion).
    size_t conversion_bytes(const memory::desc& user_md, const memory::desc& compute_md) const {
        return user_md == compute_md ? 0 : rounded_to_64(compute_md.get_size());
    }
    // The shared workspace grown to `bytes` plus the scratchpad `sp` after them (null when
    // neither needs a byte); the scratchpad is at the returned pointer + `bytes`.
    char* workspace(size_t bytes, const memory::desc& sp) { return workspace(bytes, sp.get_size()); }
    char* workspace(size_t bytes, size_t scratchpad_bytes) {
        const size_t total = bytes + scratchpad_bytes;
        return total ? static_cast<char*>(ctx_.workspace(total)) : nullptr;
    }
    // Backward weights in slabs along D where the whole volume's scratchpad exceeds
    // kWeightsScratchpadBudget (batch 1, where a slab of rows is contiguous); nothing is planned
    // where oneDNN would run the slabs on another implementation or weight layout.
    void plan_weights_slabs(const ConvShape& s, const dnnl::primitive_attr& attr);
    // The slabs' primitives for slabs of `rows` output rows; false (and the plan as it was) where
    // oneDNN would run a slab on another implementation or weight layout.
    bool make_weights_slabs(const ConvShape& s, const dnnl::primitive_attr& attr, memory::dim rows);
    void backward_weights_in_slabs(const memory& x, const memory& dy, memory& dw, float* db, char* scratch);

    DeviceContext& ctx_;
    dnnl::engine engine_;
    memory::desc x_md_, y_md_, w_user_md_, b_md_;  // as the caller stores them
    // The activation x and the gradient dy as the primitives read them (= x_md_, y_md_ when
    // stored in the compute type), and the reorders that convert them otherwise.
    memory::desc x_compute_md_, dy_compute_md_;
    dnnl::reorder to_x_compute_, to_dy_compute_;
    // Where the forward runs on the blocked layout: x into it, and its output back to ndhwc.
    bool fwd_blocked_ = false;
    dnnl::reorder to_fwd_src_, from_fwd_dst_;

    dnnl::convolution_forward::primitive_desc fwd_pd_;
    dnnl::convolution_backward_data::primitive_desc bwd_data_pd_;
    dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd_;
    dnnl::convolution_forward fwd_;
    dnnl::convolution_backward_data bwd_data_;
    dnnl::convolution_backward_weights bwd_weights_;

    // Weights in each primitive's own layout, and the reorders to and from odhwi; unused
    // (false) when the primitive takes odhwi as it is.
    bool fwd_reorder_ = false, bwd_data_reorder_ = false, bwd_weights_reorder_ = false;
    memory fwd_w_, bwd_data_w_, bwd_dw_;
    dnnl::reorder to_fwd_w_, to_bwd_data_w_, from_bwd_dw_;

    // Each primitive's scratchpad (scratchpad_mode::user, so no call allocates): temporary, in the
    // context's shared workspace after the pass's conversions. Held per engine, a bf16 training
    // step's scratchpads took 1.9 GB on an AMX Xeon (docs/PERFORMANCE.md, tenth session); shared,
    // the largest alone did until the slabs below.
    memory::desc fwd_sp_, bwd_data_sp_, bwd_weights_sp_;

    // The backward-weights slabs, in order (none: one pass). Slabs of the same rows and padding
    // share a primitive: the first, the middle ones and the last.
    struct WeightsSlabPass {
        memory::desc x_md, dy_md, sp;
        dnnl::convolution_backward_weights primitive;
    };
    struct WeightsSlab {
        memory::dim out_d0 = 0, in_d0 = 0;
        size_t pass = 0;
    };
    std::vector<WeightsSlabPass> slab_passes_;
    std::vector<WeightsSlab> slabs_;
    size_t slab_sp_bytes_ = 0;      // the largest slab scratchpad
    memory slab_dw_;                // a later slab's weight gradient, in the first's layout
    std::vector<float> slab_db_;    // and its bias gradient
};

// Moves pd past the implementations whose name starts with `name` (oneDNN offers them in its
// order of preference); refuses if none other is left.
void skip_implementation(dnnl::primitive_desc& pd, const std::string& name) {
    const auto current = [&] { return std::string(pd.impl_info_str()); };
    while (current().rfind(name, 0) == 0)
        ISS_REQUIRE(pd.next_impl(), "Conv3d (oneDNN): no implementation other than ", current(), " for this shape");
}

DnnlConv3d::DnnlConv3d(DeviceContext& ctx, const ConvShape& s)
    : ctx_(ctx), engine_(ctx.dnnl_engine()) {
    const memory::dim n = s.in.n, d = s.in.d, h = s.in.h, w = s.in.w, ci = s.in.c, co = s.out_c, k = s.kernel;
    const memory::dim pad = s.padding();
    const Shape5 out = s.out();
    const memory::dims strides{1, 1, 1}, padding{s.padding_d(), pad, pad};
    const auto compute = s.precision == Precision::bf16 ? bf16 : f32;
    const auto stored = [](DType t) { return t == DType::bf16 ? bf16 : f32; };
    // oneDNN names dimensions in its canonical order (N, C, D, H, W) / (O, I, D, H, W); the
    // format tag says how they sit in memory.
    ISS_DNNL_CALL(x_md_ = memory::desc({n, ci, d, h, w}, stored(s.x_type), tag::ndhwc));
    ISS_DNNL_CALL(y_md_ = memory::desc({n, co, out.d, out.h, out.w}, stored(s.y_type), tag::ndhwc));
    ISS_DNNL_CALL(x_compute_md_ = memory::desc({n, ci, d, h, w}, compute, tag::ndhwc));
    ISS_DNNL_CALL(dy_compute_md_ = memory::desc({n, co, out.d, out.h, out.w}, compute, tag::ndhwc));
    ISS_DNNL_CALL(w_user_md_ = memory::desc({co, ci, k, k, k}, f32, tag::odhwi));
    ISS_DNNL_CALL(b_md_ = memory::desc({co}, f32, tag::x));
    memory::desc w_any_md, dw_any_md;
    ISS_DNNL_CALL(w_any_md = memory::desc({co, ci, k, k, k}, compute, tag::any));
    ISS_DNNL_CALL(dw_any_md = memory::desc({co, ci, k, k, k}, f32, tag::any));  // gradients stay fp32
    if (!(x_md_ == x_compute_md_))
        ISS_DNNL_CALL(to_x_compute_ = dnnl::reorder(dnnl::reorder::primitive_desc(engine_, x_md_, engine_, x_compute_md_)));
    if (!(y_md_ == dy_compute_md_))
        ISS_DNNL_CALL(to_dy_compute_ = dnnl::reorder(dnnl::reorder::primitive_desc(engine_, y_md_, engine_, dy_compute_md_)));

    dnnl::primitive_attr attr;
    ISS_DNNL_CALL(attr.set_scratchpad_mode(dnnl::scratchpad_mode::user));
    // Strict fp32 whatever ONEDNN_DEFAULT_FPMATH_MODE says: on this bf16-capable CPU a relaxed
    // mode would allow oneDNN to round the inputs to bf16, far outside the tolerance of nn/conv.h.
    // (bf16 is asked for explicitly, by the data types.)
    ISS_DNNL_CALL(attr.set_fpmath_mode(dnnl::fpmath_mode::strict));

    // Direct convolution: exact products summed in fp32 (no Winograd transforms), so the
    // error model of docs/KERNELS.md holds; forward_training so the backward primitives can
    // take it as their hint.
    const auto alg = dnnl::algorithm::convolution_direct;
    auto forward_pd = [&](const memory::desc& src, const memory::desc& dst, const dnnl::primitive_attr& with) {
        return dnnl::convolution_forward::primitive_desc(
            dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, src, w_any_md, b_md_, dst, strides,
                                            padding, padding),
            with, engine_);
    };
    ISS_DNNL_CALL(fwd_pd_ = forward_pd(x_compute_md_, y_md_, attr));
    if (!s.forward_only) {
        // The backward primitives take the plain forward as their hint (oneDNN refuses one with
        // post-ops); the forward that runs then gets the fused ELU.
        // A named descriptor: oneDNN's implementation iterator keeps a pointer to it (next_impl
        // below).
        std::optional<dnnl::convolution_backward_data::desc> bwd_data_desc;
        ISS_DNNL_CALL(bwd_data_desc.emplace(alg, x_md_, w_any_md, dy_compute_md_, strides, padding, padding));
        ISS_DNNL_CALL(bwd_data_pd_ =
                          dnnl::convolution_backward_data::primitive_desc(*bwd_data_desc, attr, engine_, fwd_pd_));
        // oneDNN 2.6's 1x1 bf16 backward-data kernel for AVX512-BF16 (the one it picks where AMX
        // is absent) returns a wrong diff_src when the output channels are odd (1, 5, 15, 17, 31
        // and 33 tried; every even count right), e.g. the head of a model with an odd number of
        // labels. Found by ConvBf16 on such a CPU; the next implementation oneDNN offers is right.
        if (compute == bf16 && k == 1 && co % 2 == 1) skip_implementation(bwd_data_pd_, "jit_bf16_1x1");
        ISS_DNNL_CALL(bwd_weights_pd_ = dnnl::convolution_backward_weights::primitive_desc(
                          dnnl::convolution_backward_weights::desc(alg, x_compute_md_, dw_any_md, b_md_,
                                                                   dy_compute_md_, strides, padding, padding),
                          attr, engine_, fwd_pd_));
    }
    dnnl::primitive_attr fwd_attr = attr;
    if (s.elu_alpha > 0) {
        dnnl::post_ops elu;
        ISS_DNNL_CALL(elu.append_eltwise(1.0f, dnnl::algorithm::eltwise_elu, s.elu_alpha, 0.0f));
        ISS_DNNL_CALL(fwd_attr.set_post_ops(elu));
        ISS_DNNL_CALL(fwd_pd_ = forward_pd(x_compute_md_, y_md_, fwd_attr));
    }
    // From kBlockedForwardFromChannels on, an inference's fp32 forward on the activation layout
    // oneDNN prefers, where that runs the same implementation (not a fallback). Only an
    // optimisation: where oneDNN cannot build it, the ndhwc forward stays.
    if (s.forward_only && compute == f32 && ci >= kBlockedForwardFromChannels && dnnl_avx2_without_avx512()) {
        try {
            const memory::desc x_any({n, ci, d, h, w}, f32, tag::any);
            const memory::desc y_any({n, co, out.d, out.h, out.w}, f32, tag::any);
            const dnnl::convolution_forward::primitive_desc blocked = forward_pd(x_any, y_any, fwd_attr);
            if (!(blocked.src_desc() == x_md_ && blocked.dst_desc() == y_md_) &&
                std::string(blocked.impl_info_str()) == fwd_pd_.impl_info_str()) {
                const dnnl::reorder to_src(dnnl::reorder::primitive_desc(engine_, x_md_, engine_, blocked.src_desc()));
                const dnnl::reorder from_dst(
                    dnnl::reorder::primitive_desc(engine_, blocked.dst_desc(), engine_, y_md_));
                fwd_pd_ = blocked;
                to_fwd_src_ = to_src;
                from_fwd_dst_ = from_dst;
                fwd_blocked_ = true;
            }
        } catch (const dnnl::error&) {
        }
    }

    // Activations were asked for as ndhwc (except by a blocked forward, which reorders through
    // its own descriptors): a primitive descriptor either honours that or fails to be created.
    // Checked anyway, since a silent change of layout would read garbage.
    ISS_REQUIRE(fwd_blocked_ || (fwd_pd_.src_desc() == x_compute_md_ && fwd_pd_.dst_desc() == y_md_),
                "Conv3d (oneDNN): forward primitive changed an activation layout");
    ISS_REQUIRE(fwd_pd_.bias_desc() == b_md_, "Conv3d (oneDNN): forward primitive changed the bias layout");
    ISS_DNNL_CALL(fwd_ = dnnl::convolution_forward(fwd_pd_));
    // Weight layouts chosen by the primitives; a copy and a reorder for each that is not odhwi.
    memory::desc fwd_w_md;
    ISS_DNNL_CALL(fwd_w_md = fwd_pd_.weights_desc());
    ISS_DNNL_CALL(fwd_sp_ = fwd_pd_.scratchpad_desc());
    fwd_reorder_ = !(fwd_w_md == w_user_md_);  // always in bf16: the type differs
    if (fwd_reorder_) {
        ISS_DNNL_CALL(fwd_w_ = memory(fwd_w_md, engine_));
        ISS_DNNL_CALL(to_fwd_w_ = dnnl::reorder(dnnl::reorder::primitive_desc(engine_, w_user_md_, engine_, fwd_w_md)));
    }

    if (!s.forward_only) {
        ISS_REQUIRE(bwd_data_pd_.diff_src_desc() == x_md_ && bwd_data_pd_.diff_dst_desc() == dy_compute_md_,
                    "Conv3d (oneDNN): backward-data primitive changed an activation layout");
        ISS_REQUIRE(bwd_weights_pd_.src_desc() == x_compute_md_ &&
                        bwd_weights_pd_.diff_dst_desc() == dy_compute_md_ && bwd_weights_pd_.diff_bias_desc() == b_md_,
                    "Conv3d (oneDNN): backward-weights primitive changed an activation or bias layout");
        ISS_DNNL_CALL(bwd_data_ = dnnl::convolution_backward_data(bwd_data_pd_));
        ISS_DNNL_CALL(bwd_weights_ = dnnl::convolution_backward_weights(bwd_weights_pd_));
        memory::desc bwd_data_w_md, bwd_dw_md;
        ISS_DNNL_CALL(bwd_data_w_md = bwd_data_pd_.weights_desc());
        ISS_DNNL_CALL(bwd_dw_md = bwd_weights_pd_.diff_weights_desc());
        bwd_data_reorder_ = !(bwd_data_w_md == w_user_md_);
        bwd_weights_reorder_ = !(bwd_dw_md == w_user_md_);
        if (bwd_data_reorder_) {
            ISS_DNNL_CALL(bwd_data_w_ = memory(bwd_data_w_md, engine_));
            ISS_DNNL_CALL(to_bwd_data_w_ = dnnl::reorder(
                              dnnl::reorder::primitive_desc(engine_, w_user_md_, engine_, bwd_data_w_md)));
        }
        if (bwd_weights_reorder_) {
            ISS_DNNL_CALL(bwd_dw_ = memory(bwd_dw_md, engine_));
            ISS_DNNL_CALL(from_bwd_dw_ =
                              dnnl::reorder(dnnl::reorder::primitive_desc(engine_, bwd_dw_md, engine_, w_user_md_)));
        }
        ISS_DNNL_CALL(bwd_data_sp_ = bwd_data_pd_.scratchpad_desc());
        ISS_DNNL_CALL(bwd_weights_sp_ = bwd_weights_pd_.scratchpad_desc());
        plan_weights_slabs(s, attr);
    }
}

void DnnlConv3d::plan_weights_slabs(const ConvShape& s, const dnnl::primitive_attr& attr) {
    const memory::dim out_d = s.out().d;
    if (s.in.n != 1) return;
    if (const memory::dim forced = forced_weights_slab_rows; forced > 0) {
        if (forced < out_d) make_weights_slabs(s, attr, forced);
        return;
    }
    // A slab's scratchpad grows about linearly with its rows, not exactly: rows are cut until
    // one fits the budget (a few tries), and a try oneDNN would run otherwise keeps the last plan.
    size_t scratch = bwd_weights_sp_.get_size();
    memory::dim rows = out_d;
    for (int attempt = 0; attempt < 3 && scratch > kWeightsScratchpadBudget && rows > s.kernel; ++attempt) {
        const memory::dim count = memory::dim((scratch - 1) / kWeightsScratchpadBudget + 1);
        rows = std::max<memory::dim>((rows + count - 1) / count, s.kernel);
        if (rows >= out_d || !make_weights_slabs(s, attr, rows)) return;
        scratch = slab_sp_bytes_;
    }
}

bool DnnlConv3d::make_weights_slabs(const ConvShape& s, const dnnl::primitive_attr& attr, memory::dim rows) {
    const Shape5 out = s.out();
    const memory::dim k = s.kernel, pad = s.padding(), front = s.padding_d();
    const memory::dims strides{1, 1, 1};
    const auto compute = x_compute_md_.data_type();
    const memory::desc dw_md = bwd_weights_pd_.diff_weights_desc();
    const std::string implementation = bwd_weights_pd_.impl_info_str();
    std::vector<WeightsSlabPass> passes;
    std::vector<WeightsSlab> slabs;
    // The shape of each pass, to find one already made: input rows, output rows, padding.
    std::vector<std::array<memory::dim, 4>> made;
    try {
        for (memory::dim o0 = 0; o0 < out.d; o0 += rows) {
            const memory::dim o1 = std::min(o0 + rows, out.d);
            // Output rows [o0, o1) read input rows [o0 - front, o1 - front + k - 1), zero outside.
            const memory::dim first = o0 - front, end = o1 - front + k - 1;
            const memory::dim in0 = std::max<memory::dim>(first, 0), in1 = std::min(end, s.in.d);
            const std::array<memory::dim, 4> shape{in1 - in0, o1 - o0, in0 - first, end - in1};
            size_t pass = size_t(std::find(made.begin(), made.end(), shape) - made.begin());
            if (pass == made.size()) {
                const memory::dims pad_l{shape[2], pad, pad}, pad_r{shape[3], pad, pad};
                WeightsSlabPass p;
                p.x_md = memory::desc({1, s.in.c, shape[0], s.in.h, s.in.w}, compute, tag::ndhwc);
                p.dy_md = memory::desc({1, s.out_c, shape[1], out.h, out.w}, compute, tag::ndhwc);
                const memory::desc w_any({s.out_c, s.in.c, k, k, k}, compute, tag::any);
                const auto alg = dnnl::algorithm::convolution_direct;
                const dnnl::convolution_forward::primitive_desc hint(
                    dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, p.x_md, w_any, b_md_,
                                                    p.dy_md, strides, pad_l, pad_r),
                    attr, engine_);
                const dnnl::convolution_backward_weights::primitive_desc pd(
                    dnnl::convolution_backward_weights::desc(alg, p.x_md, dw_md, b_md_, p.dy_md, strides, pad_l, pad_r),
                    attr, engine_, hint);
                if (implementation != pd.impl_info_str() || !(pd.diff_weights_desc() == dw_md) ||
                    !(pd.src_desc() == p.x_md) || !(pd.diff_dst_desc() == p.dy_md))
                    return false;  // another kernel or layout
                p.sp = pd.scratchpad_desc();
                p.primitive = dnnl::convolution_backward_weights(pd);
                passes.push_back(p);
                made.push_back(shape);
            }
            slabs.push_back({o0, in0, pass});
        }
    } catch (const dnnl::error&) {
        return false;
    }
    slab_passes_ = std::move(passes);
    slabs_ = std::move(slabs);
    slab_sp_bytes_ = 0;
    for (const WeightsSlabPass& p : slab_passes_) slab_sp_bytes_ = std::max(slab_sp_bytes_, p.sp.get_size());
    ISS_DNNL_CALL(slab_dw_ = memory(dw_md, engine_));
    slab_db_.assign(size_t(s.out_c), 0.0f);
    return true;
}

void DnnlConv3d::backward_weights_in_slabs(const memory& x, const memory& dy, memory& dw, float* db, char* scratch) {
    const memory::desc x_md = x.get_desc(), dy_md = dy.get_desc();
    // Bytes a row along D (batch 1, channels-last: the rows are contiguous).
    const size_t x_row = x_md.get_size() / size_t(x_md.dims()[2]), dy_row = dy_md.get_size() / size_t(dy_md.dims()[2]);
    const char* x_base = static_cast<const char*>(x.get_data_handle());
    const char* dy_base = static_cast<const char*>(dy.get_data_handle());
    float* const sum = static_cast<float*>(dw.get_data_handle());
    const float* const part = static_cast<const float*>(slab_dw_.get_data_handle());
    const size_t weights = slab_dw_.get_desc().get_size() / sizeof(float);
    for (size_t i = 0; i < slabs_.size(); ++i) {
        const WeightsSlab& slab = slabs_[i];
        const WeightsSlabPass& pass = slab_passes_[slab.pass];
        run(pass.primitive,
            {{DNNL_ARG_SRC, wrap(pass.x_md, x_base + size_t(slab.in_d0) * x_row)},
             {DNNL_ARG_DIFF_DST, wrap(pass.dy_md, dy_base + size_t(slab.out_d0) * dy_row)},
             {DNNL_ARG_DIFF_WEIGHTS, i == 0 ? dw : slab_dw_},
             {DNNL_ARG_DIFF_BIAS, wrap(b_md_, i == 0 ? db : slab_db_.data())}},
            scratchpad(pass.sp, scratch));
        if (i == 0) continue;
        for (size_t e = 0; e < weights; ++e) sum[e] += part[e];
        for (size_t c = 0; c < slab_db_.size(); ++c) db[c] += slab_db_[c];
    }
}

void DnnlConv3d::run(const dnnl::primitive& p, std::unordered_map<int, memory> args, const memory& scratch) {
    if (scratch) args.emplace(DNNL_ARG_SCRATCHPAD, scratch);
    dnnl::stream& stream = ctx_.dnnl_stream();
    ISS_DNNL_CALL(p.execute(stream, args));
    ISS_DNNL_CALL(stream.wait());
}

memory DnnlConv3d::weights_for(const float* w, bool reorder_needed, const dnnl::reorder& r, memory& dst) {
    memory user = wrap(w_user_md_, w);
    if (!reorder_needed) return user;
    dnnl::stream& stream = ctx_.dnnl_stream();
    ISS_DNNL_CALL(r.execute(stream, user, dst));
    return dst;
}

memory DnnlConv3d::compute_input(const memory::desc& user_md, const memory::desc& compute_md,
                                 const dnnl::reorder& convert, const void* ptr, void* space) {
    if (user_md == compute_md) return wrap(user_md, ptr);
    memory user = wrap(user_md, ptr), converted;
    ISS_DNNL_CALL(converted = memory(compute_md, engine_, space));
    dnnl::stream& stream = ctx_.dnnl_stream();
    ISS_DNNL_CALL(convert.execute(stream, user, converted));
    return converted;
}

void DnnlConv3d::forward(const void* x, const float* w, const float* b, void* y) {
    const memory weights = weights_for(w, fwd_reorder_, to_fwd_w_, fwd_w_);
    if (fwd_blocked_) {
        // x and the output in the blocked layout, side by side in the workspace (fp32: x needs
        // no conversion of type).
        const size_t src_bytes = rounded_to_64(fwd_pd_.src_desc().get_size());
        const size_t copies = src_bytes + rounded_to_64(fwd_pd_.dst_desc().get_size());
        char* space = workspace(copies, fwd_sp_);
        memory src, dst, user_x = wrap(x_md_, x), user_y = wrap(y_md_, y);  // not const: reorder::execute takes memory&
        ISS_DNNL_CALL(src = memory(fwd_pd_.src_desc(), engine_, space));
        ISS_DNNL_CALL(dst = memory(fwd_pd_.dst_desc(), engine_, space + src_bytes));
        dnnl::stream& stream = ctx_.dnnl_stream();
        ISS_DNNL_CALL(to_fwd_src_.execute(stream, user_x, src));
        run(fwd_,
            {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_BIAS, wrap(b_md_, b)}, {DNNL_ARG_DST, dst}},
            scratchpad(fwd_sp_, space + copies));
        ISS_DNNL_CALL(from_fwd_dst_.execute(stream, dst, user_y));
        ISS_DNNL_CALL(stream.wait());
        return;
    }
    const size_t x_bytes = conversion_bytes(x_md_, x_compute_md_);
    char* space = workspace(x_bytes, fwd_sp_);
    run(fwd_,
        {{DNNL_ARG_SRC, compute_input(x_md_, x_compute_md_, to_x_compute_, x, space)},
         {DNNL_ARG_WEIGHTS, weights},
         {DNNL_ARG_BIAS, wrap(b_md_, b)},
         {DNNL_ARG_DST, wrap(y_md_, y)}},
        scratchpad(fwd_sp_, space + x_bytes));
}

void DnnlConv3d::backward_data(const void* dy, const float* w, void* dx) {
    const size_t dy_bytes = conversion_bytes(y_md_, dy_compute_md_);
    char* space = workspace(dy_bytes, bwd_data_sp_);
    const memory weights = weights_for(w, bwd_data_reorder_, to_bwd_data_w_, bwd_data_w_);
    run(bwd_data_,
        {{DNNL_ARG_DIFF_DST, compute_input(y_md_, dy_compute_md_, to_dy_compute_, dy, space)},
         {DNNL_ARG_WEIGHTS, weights},
         {DNNL_ARG_DIFF_SRC, wrap(x_md_, dx)}},
        scratchpad(bwd_data_sp_, space + dy_bytes));
}

void DnnlConv3d::backward_weights(const void* x, const void* dy, float* dw, float* db) {
    // Conversions of x and dy side by side in the workspace (each rounded to 64 bytes).
    const size_t x_bytes = conversion_bytes(x_md_, x_compute_md_);
    const size_t conversions = x_bytes + conversion_bytes(y_md_, dy_compute_md_);
    char* space = workspace(conversions, slabs_.empty() ? bwd_weights_sp_.get_size() : slab_sp_bytes_);
    memory user_dw = wrap(w_user_md_, dw);  // not const: reorder::execute takes memory&
    memory& target = bwd_weights_reorder_ ? bwd_dw_ : user_dw;
    const memory x_in = compute_input(x_md_, x_compute_md_, to_x_compute_, x, space);
    const memory dy_in = compute_input(y_md_, dy_compute_md_, to_dy_compute_, dy, space ? space + x_bytes : nullptr);
    if (slabs_.empty())
        run(bwd_weights_,
            {{DNNL_ARG_SRC, x_in}, {DNNL_ARG_DIFF_DST, dy_in}, {DNNL_ARG_DIFF_WEIGHTS, target},
             {DNNL_ARG_DIFF_BIAS, wrap(b_md_, db)}},
            scratchpad(bwd_weights_sp_, space + conversions));
    else
        backward_weights_in_slabs(x_in, dy_in, target, db, space + conversions);
    if (bwd_weights_reorder_) {
        dnnl::stream& stream = ctx_.dnnl_stream();
        ISS_DNNL_CALL(from_bwd_dw_.execute(stream, bwd_dw_, user_dw));
        ISS_DNNL_CALL(stream.wait());
    }
}

}  // namespace

std::unique_ptr<ConvBackend> make_dnnl_conv3d(DeviceContext& ctx, const ConvShape& shape) {
    return std::make_unique<DnnlConv3d>(ctx, shape);
}

int64_t set_dnnl_weights_slab_rows(int64_t rows) { return forced_weights_slab_rows.exchange(rows); }

bool dnnl_bf16_is_native() { return dnnl_isa_includes(dnnl::cpu_isa::avx512_core_bf16); }
bool dnnl_has_amx() { return dnnl_isa_includes(dnnl::cpu_isa::avx512_core_amx); }
const char* dnnl_isa_name() {
    if (dnnl_has_amx()) return "AVX-512 with AMX";
    if (dnnl_bf16_is_native()) return "AVX-512 with BF16";
    if (dnnl_isa_includes(dnnl::cpu_isa::avx512_core)) return "AVX-512";
    if (dnnl_isa_includes(dnnl::cpu_isa::avx2)) return "AVX2";
    return "before AVX2";
}
// Only where it was measured: with AVX-512, oneDNN's brgconv kernels ask for ndhwc themselves
// (an AMX Xeon, docs/PERFORMANCE.md ninth session); older CPUs were not timed.
bool dnnl_avx2_without_avx512() {
    return dnnl_isa_includes(dnnl::cpu_isa::avx2) && !dnnl_isa_includes(dnnl::cpu_isa::avx512_core);
}

}  // namespace iss
