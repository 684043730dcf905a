// Autograd: a tape of recorded ops. Each op's forward records a node holding the gradient
// slots of its inputs and output and whatever its backward reads (saved tensors and bytes);
// backward() walks the nodes in reverse and calls each node's backward, which computes input
// gradients into fresh tensors and hands them to accumulate(): the first gradient of a value is
// taken as is, later ones are added (add_inplace), so a tensor feeding several ops (a U-Net skip)
// sums its gradients.
//
// Memory follows liveness. A value's tensor lives while a Var handle names it or a node saved it
// for its backward; the tape itself keeps only gradient slots (shape, gradient). So a value no
// backward reads (a pooling's input, an upsampling's output) is freed as soon as the forward
// drops its handle, and backward() forgets each node once it has run, freeing its saved values
// and, with the last reference to a slot, that gradient too. With gradients off nothing is
// recorded and a value is freed when its last Var is dropped.
//
// Rules for an op (nn/ops.h): a struct with `static void backward(Graph&, Node&)`; record it
// with graph.record<Op>(...): an op without a backward does not compile. A backward reads
// values only from node.saved (what the op saved), never through its slots.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "kernels/nn/shape.h"
#include "nn/params.h"
#include "nn/precision.h"
#include "nn/tensor.h"

namespace iss {

// A value's gradient slot: its shape and type (a gradient has its value's), whether it wants a
// gradient, and the gradient once backward reaches it.
struct VarData {
    Shape5 shape;
    DType dtype = DType::f32;
    Tensor grad;  // empty until backward reaches it
    bool requires_grad = false;
};

// A handle to a value: its tensor and its gradient slot.
struct Var {
    std::shared_ptr<VarData> d;
    Tensor tensor;

    const Tensor& value() const { return tensor; }
    const Shape5& shape() const { return tensor.shape; }
    DType dtype() const { return tensor.dtype; }
    float* data() const { return tensor.data; }  // fp32 values only (null for bf16)
};

using Slot = std::shared_ptr<VarData>;

class Graph;

// What a node keeps for its backward: the gradient slots of its inputs and output, parameters,
// the tensors and bytes its backward reads (e.g. a convolution's input, batch norm statistics,
// max-pool winners), and a few numbers.
struct Node {
    void (*backward)(Graph&, Node&) = nullptr;
    const char* name = "";  // the op's, for a debugger
    std::vector<Slot> inputs;
    Slot output;
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
    // The arithmetic of the convolutions this graph runs (nn/precision.h; fp32 by default).
    Precision precision() const { return precision_; }
    void set_precision(Precision precision) { precision_ = precision; }
    // How activations are stored in this precision (the logits stay fp32).
    DType activation_type() const { return iss::activation_type(precision_); }
    Allocator& allocator() { return allocator_; }
    DeviceContext& context() { return allocator_.context(); }
    ParamStore& params() { return params_; }

    Tensor make(const Shape5& shape, DType dtype = DType::f32) { return Tensor::make(allocator_, shape, dtype); }
    // A gradient for a slot: its value's shape and type.
    Tensor make_grad(const Slot& slot) { return make(slot->shape, slot->dtype); }
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

    // Runs every node's backward in reverse order, forgetting each node once it has run. The
    // last node must be a loss (it seeds itself; see ops.h). Parameter gradients land in the
    // ParamStore.
    void backward();
    // Adds `grad` into the gradient of a slot (takes it when it has none yet).
    void accumulate(const Slot& slot, Tensor grad);

    size_t node_count() const { return nodes_.size(); }

private:
    Allocator& allocator_;
    ParamStore& params_;
    Precision precision_ = Precision::fp32;
    bool grad_enabled_;
    std::vector<Node> nodes_;
};

}  // namespace iss
