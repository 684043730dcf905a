#include "nn/autograd.h"

#include "kernels/common/error.h"
#include "kernels/nn/elementwise.h"

namespace iss {

Graph::Graph(Allocator& allocator, ParamStore& params, bool grad_enabled)
    : allocator_(allocator), params_(params), grad_enabled_(grad_enabled) {}

Var Graph::input(const Tensor& t) {
    Var v{std::make_shared<VarData>()};
    v.d->value = t;
    return v;
}

Var Graph::output(const Tensor& t, bool requires_grad) {
    Var v{std::make_shared<VarData>()};
    v.d->value = t;
    v.d->requires_grad = grad_enabled_ && requires_grad;
    return v;
}

void Graph::accumulate(const Var& v, Tensor grad) {
    if (!v.d->requires_grad) return;
    ISS_REQUIRE(grad.shape == v.shape(), "gradient of shape ", grad.shape.str(), " for a value of shape ",
                v.shape().str());
    if (v.d->grad.empty()) {
        v.d->grad = std::move(grad);
        return;
    }
    add_inplace(context(), v.d->grad.data, grad.data, grad.size());
}

void Graph::backward() {
    ISS_REQUIRE(grad_enabled_, "backward() on a graph recorded without gradients");
    ISS_REQUIRE(!nodes_.empty(), "backward() with nothing recorded");
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) {
        Node& node = *it;
        // A node whose output received no gradient contributes nothing (the loss node seeds
        // itself and is always run).
        if (it != nodes_.rbegin() && node.output.valid() && node.output.d->grad.empty()) continue;
        node.backward(*this, node);
    }
}

void Graph::clear() { nodes_.clear(); }

}  // namespace iss
