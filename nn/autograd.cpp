#include "nn/autograd.h"

#include "kernels/common/error.h"
#include "kernels/nn/elementwise.h"

namespace iss {

Graph::Graph(Allocator& allocator, ParamStore& params, bool grad_enabled)
    : allocator_(allocator), params_(params), grad_enabled_(grad_enabled) {}

Var Graph::input(const Tensor& t) {
    Var v{std::make_shared<VarData>(), t};
    v.d->shape = t.shape;
    v.d->dtype = t.dtype;
    return v;
}

Var Graph::output(const Tensor& t, bool requires_grad) {
    Var v = input(t);
    v.d->requires_grad = grad_enabled_ && requires_grad;
    return v;
}

void Graph::accumulate(const Slot& slot, Tensor grad) {
    if (!slot->requires_grad) return;
    ISS_REQUIRE(grad.shape == slot->shape && grad.dtype == slot->dtype, "gradient of shape ", grad.shape.str(), " (",
                dtype_name(grad.dtype), ") for a value of shape ", slot->shape.str(), " (", dtype_name(slot->dtype),
                ")");
    if (slot->grad.empty()) {
        slot->grad = std::move(grad);
        return;
    }
    with_storage(grad.dtype, [&](auto type) {
        using T = decltype(type);
        add_inplace(context(), slot->grad.as<T>(), grad.as<T>(), grad.size());
    });
}

void Graph::backward() {
    ISS_REQUIRE(grad_enabled_, "backward() on a graph recorded without gradients");
    ISS_REQUIRE(!nodes_.empty(), "backward() with nothing recorded");
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) {
        Node& node = *it;
        // A node whose output received no gradient contributes nothing (the loss node seeds
        // itself and is always run).
        if (it == nodes_.rbegin() || !node.output || !node.output->grad.empty()) node.backward(*this, node);
        // Done with it: its saved values, and the gradients only it still named, are freed now.
        node = Node{};
    }
}


}  // namespace iss
