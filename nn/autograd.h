// Autograd: a tape of recorded ops. Each op's forward records a node holding its inputs,
// output and whatever its backward needs; backward() walks the nodes in reverse and calls
// each node's backward, which computes input gradients into fresh tensors and hands them to
// accumulate(): the first gradient of a value is taken as is, later ones are added
// (add_inplace), so a tensor feeding several ops (a U-Net skip) sums its gradients.
//
// Values are shared (Var): with gradients off (inference) nothing is recorded, so a value is
// freed as soon as the last Var naming it is dropped (with a PoolAllocator). With gradients on,
// the tape keeps what backward needs until reset().
//
// Rules for an op (nn/ops.h): a struct with `static void backward(Graph&, Node&)`; record it
// with graph.record<Op>(...): an op without a backward does not compile.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "kernels/nn/shape.h"
#include "nn/params.h"
#include "nn/tensor.h"

namespace iss {

struct VarData {
    Tensor value;
    Tensor grad;  // empty until backward reaches it
    bool requires_grad = false;
};

struct Var {
    std::shared_ptr<VarData> d;

    const Tensor& value() const { return d->value; }
    const Shape5& shape() const { return d->value.shape; }
    float* data() const { return d->value.data; }
    bool valid() const { return d != nullptr; }
};

class Graph;

// What a node keeps for its backward: inputs and output, parameters, saved tensors and bytes
// (e.g. batch norm statistics, max-pool winners), and a few numbers.
struct Node {
    void (*backward)(Graph&, Node&) = nullptr;
    const char* name = "";
    std::vector<Var> inputs;
    Var output;
    std::vector<Param> params;
    std::vector<Tensor> saved;
    std::vector<Block> saved_bytes;
    std::vector<double> numbers;
    std::shared_ptr<void> object;  // op-specific state (e.g. the Conv3d engine)
};

class Graph {
public:
    Graph(Allocator& allocator, ParamStore& params, bool grad_enabled);

    bool grad_enabled() const { return grad_enabled_; }
    Allocator& allocator() { return allocator_; }
    DeviceContext& context() { return allocator_.context(); }
    ParamStore& params() { return params_; }

    Tensor make(const Shape5& shape) { return Tensor::make(allocator_, shape); }
    Block make_bytes(size_t bytes) { return allocator_.allocate(bytes); }

    // A leaf value (an input image): never receives a gradient.
    Var input(const Tensor& t);
    // A new value computed by an op; requires a gradient when any input does or a parameter
    // is involved and gradients are on.
    Var output(const Tensor& t, bool requires_grad);

    // Records a node (when gradients are on) and returns it for the op to fill in.
    template <class Op>
    Node* record(const char* name) {
        if (!grad_enabled_) return nullptr;
        nodes_.emplace_back();
        Node& node = nodes_.back();
        node.backward = &Op::backward;
        node.name = name;
        return &node;
    }

    // Runs every node's backward in reverse order. The last node must be a loss (it seeds
    // itself; see ops.h). Parameter gradients land in the ParamStore.
    void backward();
    // Adds `grad` into the gradient of `v` (takes it when v has none yet).
    void accumulate(const Var& v, Tensor grad);

    size_t node_count() const { return nodes_.size(); }
    // Forgets the tape (values still named by Vars stay alive).
    void clear();

private:
    Allocator& allocator_;
    ParamStore& params_;
    bool grad_enabled_;
    std::vector<Node> nodes_;
};

}  // namespace iss
