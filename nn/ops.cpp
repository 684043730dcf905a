#include "nn/ops.h"

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/nn/batchnorm.h"
#include "kernels/nn/elementwise.h"
#include "kernels/nn/pool.h"

namespace iss {
namespace {

// The gradient flowing into a node's output.
const Tensor& out_grad(const Node& node) { return node.output->grad; }

// --- conv3d ---------------------------------------------------------------------------------

struct ConvOp {
    static void backward(Graph& g, Node& node) {
        Conv3d& engine = *static_cast<Conv3d*>(node.object.get());
        const Slot& x = node.inputs[0];
        const Tensor& x_value = node.saved[0];
        ParamStore& p = g.params();
        engine.backward_weights(x_value.raw(), out_grad(node).raw(), p.grad(node.params[0]), p.grad(node.params[1]));
        if (x->requires_grad) {
            Tensor dx = g.make_grad(x);
            engine.backward_data(out_grad(node).raw(), p.value(node.params[0]), dx.raw());
            g.accumulate(x, std::move(dx));
        }
    }
};

// --- elu ------------------------------------------------------------------------------------

struct EluOp {
    static void backward(Graph& g, Node& node) {
        const Slot& x = node.inputs[0];
        if (!x->requires_grad) return;
        const Tensor& y = node.saved[0];
        Tensor dx = g.make_grad(x);
        with_storage(y.dtype, [&](auto type) {
            using T = decltype(type);
            elu_backward(g.context(), y.as<T>(), out_grad(node).as<T>(), dx.as<T>(), y.size(), float(node.numbers[0]));
        });
        g.accumulate(x, std::move(dx));
    }
};

// --- batch norm -----------------------------------------------------------------------------

struct BatchNormOp {
    static void backward(Graph& g, Node& node) {
        const Slot& x = node.inputs[0];
        ParamStore& p = g.params();
        const Shape5& shape = x->shape;
        Tensor dx = g.make_grad(x);
        with_storage(dx.dtype, [&](auto type) {
            using T = decltype(type);
            batchnorm_backward(g.context(), node.saved[0].as<T>(), out_grad(node).as<T>(), shape,
                               p.value(node.params[0]), node.saved[1].data, node.saved[2].data, dx.as<T>(),
                               p.grad(node.params[0]), p.grad(node.params[1]), node.saved_bytes[0].ptr);
        });
        g.accumulate(x, std::move(dx));
    }
};

// --- pooling, upsampling, concatenation -----------------------------------------------------

struct MaxPoolOp {
    static void backward(Graph& g, Node& node) {
        const Slot& x = node.inputs[0];
        Tensor dx = g.make_grad(x);
        with_storage(dx.dtype, [&](auto type) {
            using T = decltype(type);
            maxpool2_backward(g.context(), out_grad(node).as<T>(),
                              static_cast<const uint8_t*>(node.saved_bytes[0].ptr), x->shape, dx.as<T>());
        });
        g.accumulate(x, std::move(dx));
    }
};

// concat(a, upsample2(b)): a's gradient is the split, b's the upsample's sum of 8; either may be
// unwanted (passed as null).
struct UpsampleConcatOp {
    static void backward(Graph& g, Node& node) {
        const Slot& a = node.inputs[0];
        const Slot& b = node.inputs[1];
        Tensor da, db;
        if (a->requires_grad) da = g.make_grad(a);
        if (b->requires_grad) db = g.make_grad(b);
        const Tensor& dy = out_grad(node);
        with_storage(dy.dtype, [&](auto type) {
            using T = decltype(type);
            upsample_concat_backward(g.context(), dy.as<T>(), a->shape, b->shape.c, static_cast<T*>(da.raw()),
                                     static_cast<T*>(db.raw()));
        });
        if (!da.empty()) g.accumulate(a, std::move(da));
        if (!db.empty()) g.accumulate(b, std::move(db));
    }
};

// --- losses (the last node: they seed the backward themselves) ------------------------------

struct DiceLossOp {
    static void backward(Graph& g, Node& node) {
        const Slot& logits = node.inputs[0];
        Tensor dlogits = g.make_grad(logits);
        softmax_dice_backward(g.context(), node.saved[0].data, static_cast<const uint8_t*>(node.object.get()),
                              logits->shape, 1.0f, dlogits.data, node.saved_bytes[0].ptr);
        g.accumulate(logits, std::move(dlogits));
    }
};

struct Wl2LossOp {
    static void backward(Graph& g, Node& node) {
        const Slot& logits = node.inputs[0];
        Tensor dlogits = g.make_grad(logits);
        wl2_backward(g.context(), node.saved[0].data, static_cast<const uint8_t*>(node.object.get()), logits->shape,
                     1.0f, dlogits.data, node.saved_bytes[0].ptr);
        g.accumulate(logits, std::move(dlogits));
    }
};

// A non-owning handle for node.object.
template <class T>
std::shared_ptr<void> borrow(T* ptr) {
    return std::shared_ptr<void>(const_cast<std::remove_const_t<T>*>(ptr), [](void*) {});
}

}  // namespace

Conv3d& ConvEngines::get(DeviceContext& ctx, const ConvShape& shape) {
    ISS_REQUIRE(shape.out_c == out_c_ && shape.kernel == kernel_, "ConvEngines: a ", shape.kernel, "^3 convolution to ",
                shape.out_c, " channels asked of a layer of ", kernel_, "^3 to ", out_c_);
    for (const auto& engine : engines_)
        if (engine->shape() == shape) return *engine;
    engines_.push_back(std::make_unique<Conv3d>(ctx, shape));
    return *engines_.back();
}

Var conv3d(Graph& g, const Var& x, Param weight, Param bias, ConvEngines& engines, DType out_type, float elu_alpha,
           bool pad_d) {
    ISS_REQUIRE(elu_alpha == 0 || !g.grad_enabled(), "conv3d: a fused ELU is for inference (gradients off)");
    const ConvShape shape{x.shape(), engines.out_c(), engines.kernel(), g.precision(), x.dtype(), out_type, elu_alpha,
                          !g.grad_enabled(), pad_d};
    Conv3d& engine = engines.get(g.context(), shape);
    Tensor y = g.make(engine.shape().out(), out_type);
    ParamStore& p = g.params();
    engine.forward(x.value().raw(), p.value(weight), p.value(bias), y.raw());
    Var out = g.output(y, true);
    if (Node* node = g.record<ConvOp>("conv3d")) {
        node->inputs = {x.d};
        node->output = out.d;
        node->params = {weight, bias};
        node->saved = {x.value()};  // backward_weights reads the input
        node->object = borrow(&engine);
    }
    return out;
}

Var elu(Graph& g, const Var& x, float alpha) {
    Tensor y = x.value();
    with_storage(y.dtype, [&](auto type) {
        using T = decltype(type);
        elu_forward(g.context(), x.value().as<T>(), y.as<T>(), x.value().size(), alpha);
    });
    Var out = g.output(y, x.d->requires_grad);
    if (Node* node = g.record<EluOp>("elu")) {
        node->inputs = {x.d};
        node->output = out.d;
        node->saved = {y};  // the backward needs only the output
        node->numbers = {alpha};
    }
    return out;
}

Var batchnorm(Graph& g, const Var& x, const BatchNormParams& bn, bool training) {
    const Shape5& shape = x.shape();
    ParamStore& p = g.params();
    Tensor y = g.make(shape, x.dtype());
    if (!training) {
        ISS_REQUIRE(!g.grad_enabled(), "batch norm with running statistics is for inference (gradients off)");
        with_storage(y.dtype, [&](auto type) {
            using T = decltype(type);
            batchnorm_forward_infer(g.context(), x.value().as<T>(), shape, p.value(bn.gamma), p.value(bn.beta),
                                    p.value(bn.running_mean), p.value(bn.running_var), bn.epsilon, y.as<T>());
        });
        return g.output(y, false);
    }
    const Shape5 stats{1, 1, 1, 1, shape.c};
    Tensor mean = g.make(stats), invstd = g.make(stats);
    Block workspace = g.make_bytes(batchnorm_workspace_bytes(shape));
    with_storage(y.dtype, [&](auto type) {
        using T = decltype(type);
        batchnorm_forward_train(g.context(), x.value().as<T>(), shape, p.value(bn.gamma), p.value(bn.beta),
                                bn.epsilon, bn.momentum, y.as<T>(), mean.data, invstd.data, p.value(bn.running_mean),
                                p.value(bn.running_var), workspace.ptr);
    });
    Var out = g.output(y, true);
    if (Node* node = g.record<BatchNormOp>("batchnorm")) {
        node->inputs = {x.d};
        node->output = out.d;
        node->params = {bn.gamma, bn.beta};
        node->saved = {x.value(), mean, invstd};
        node->saved_bytes = {workspace};
    }
    return out;
}

Var maxpool2(Graph& g, const Var& x) {
    const Shape5& in = x.shape();
    ISS_REQUIRE(in.d % 2 == 0 && in.h % 2 == 0 && in.w % 2 == 0, "maxpool2: odd spatial size ", in.str());
    Tensor y = g.make(Shape5{in.n, in.d / 2, in.h / 2, in.w / 2, in.c}, x.dtype());
    Block argmax = g.make_bytes(size_t(y.size()));
    with_storage(y.dtype, [&](auto type) {
        using T = decltype(type);
        maxpool2_forward(g.context(), x.value().as<T>(), in, y.as<T>(), static_cast<uint8_t*>(argmax.ptr));
    });
    Var out = g.output(y, x.d->requires_grad);
    if (Node* node = g.record<MaxPoolOp>("maxpool2")) {
        node->inputs = {x.d};
        node->output = out.d;
        node->saved_bytes = {argmax};  // the winners; the input itself is not needed
    }
    return out;
}

namespace {

// The inputs of concat(a, upsample2(b)) fit each other.
void check_upsample_concat(const Var& a, const Var& b, const char* op) {
    const Shape5& sa = a.shape();
    const Shape5& sb = b.shape();
    ISS_REQUIRE(sa.n == sb.n && sa.d == 2 * sb.d && sa.h == 2 * sb.h && sa.w == 2 * sb.w, op, ": ", sb.str(),
                " upsampled by 2 does not match ", sa.str(), " outside the channels");
    ISS_REQUIRE(a.dtype() == b.dtype(), op, ": a ", dtype_name(a.dtype()), " and a ", dtype_name(b.dtype()), " tensor");
}

}  // namespace

Var upsample_concat(Graph& g, const Var& a, const Var& b) {
    check_upsample_concat(a, b, "upsample_concat");
    const Shape5& sa = a.shape();
    const Shape5& sb = b.shape();
    Tensor y = g.make(Shape5{sa.n, sa.d, sa.h, sa.w, sa.c + sb.c}, a.dtype());
    with_storage(y.dtype, [&](auto type) {
        using T = decltype(type);
        upsample_concat_forward(g.context(), a.value().as<T>(), sa, b.value().as<T>(), sb.c, y.as<T>());
    });
    Var out = g.output(y, a.d->requires_grad || b.d->requires_grad);
    if (Node* node = g.record<UpsampleConcatOp>("upsample_concat")) {
        node->inputs = {a.d, b.d};
        node->output = out.d;
    }
    return out;
}

Var upsample_concat_conv(Graph& g, const Var& a, const Var& b, Param weight, Param bias, UpsampledConvEngines& engines,
                         float elu_alpha) {
    const char* op = "upsample_concat_conv";
    ISS_REQUIRE(!g.grad_enabled(), op, " is for inference (gradients off)");
    check_upsample_concat(a, b, op);
    const Shape5& sa = a.shape();
    const Shape5& sb = b.shape();
    const int64_t out_c = engines.fine.out_c();
    ParamStore& p = g.params();
    ISS_REQUIRE(p.info(weight).count == out_c * 27 * (sa.c + sb.c) && p.info(bias).count == out_c, op,
                ": the layer's parameters are not a 3^3 convolution from ", sa.c, " + ", sb.c, " to ", out_c,
                " channels");
    DeviceContext& ctx = g.context();
    // The weights are split and folded on every call (a few MB at most): they may have changed
    // since the last one.
    Tensor w_a = g.make(Shape5{1, 1, 1, 1, out_c * 27 * sa.c});
    Tensor w_b = g.make(Shape5{1, 1, 1, 1, out_c * 64 * sb.c});
    Tensor no_bias = g.make(Shape5{1, 1, 1, 1, 8 * out_c});
    upsample_fold_weights(ctx, p.value(weight), out_c, sa.c, sb.c, w_a.data, w_b.data);
    fill(ctx, no_bias.data, no_bias.size(), 0.0f);
    // Both parts in fp32, so that their sum is rounded once whatever the activations' type.
    Conv3d& coarse =
        engines.coarse.get(ctx, ConvShape{sb, 8 * out_c, 2, g.precision(), b.dtype(), DType::f32, 0.0f, true});
    Tensor parities = g.make(coarse.shape().out());
    coarse.forward(b.value().raw(), w_b.data, no_bias.data, parities.data);
    Conv3d& fine = engines.fine.get(ctx, ConvShape{sa, out_c, 3, g.precision(), a.dtype(), DType::f32, 0.0f, true});
    Tensor a_part = g.make(fine.shape().out());
    fine.forward(a.value().raw(), w_a.data, p.value(bias), a_part.data);
    const DType out_type = g.activation_type();
    Tensor y = out_type == DType::f32 ? a_part : g.make(a_part.shape, out_type);  // in place in fp32
    with_storage(out_type, [&](auto type) {
        using T = decltype(type);
        add_upsampled_parities(ctx, a_part.data, parities.data, a_part.shape, y.as<T>(), elu_alpha);
    });
    return g.output(y, false);
}

DiceResult softmax_dice_loss(Graph& g, const Var& logits, const uint8_t* target, Var* probs) {
    Tensor p = g.make(logits.shape());
    Block workspace = g.make_bytes(loss_workspace_bytes(logits.shape()));
    DiceResult result = softmax_dice_forward(g.context(), logits.value().as<float>(), target, logits.shape(), p.data, workspace.ptr);
    if (probs) *probs = g.output(p, false);
    if (Node* node = g.record<DiceLossOp>("softmax_dice_loss")) {
        node->inputs = {logits.d};
        node->saved = {p};
        node->saved_bytes = {workspace};
        node->object = borrow(target);
    }
    return result;
}

double wl2_loss(Graph& g, const Var& logits, const uint8_t* target) {
    Block workspace = g.make_bytes(loss_workspace_bytes(logits.shape()));
    const double loss = wl2_forward(g.context(), logits.value().as<float>(), target, logits.shape(), workspace.ptr);
    if (Node* node = g.record<Wl2LossOp>("wl2_loss")) {
        node->inputs = {logits.d};
        node->saved = {logits.value()};
        node->saved_bytes = {workspace};
        node->object = borrow(target);
    }
    return loss;
}

void softmax_into(Graph& g, const Var& logits, float* out) {
    ISS_REQUIRE(!g.grad_enabled(), "softmax() is for inference; train with softmax_dice_loss");
    softmax_forward(g.context(), logits.value().as<float>(), logits.shape().voxels(), logits.shape().c, out);
}

Var softmax(Graph& g, const Var& logits) {
    Tensor p = g.make(logits.shape());  // freed again if softmax_into refuses
    softmax_into(g, logits, p.data);
    return g.output(p, false);
}

}  // namespace iss
