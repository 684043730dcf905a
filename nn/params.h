// The parameter store: every trainable parameter is a view into one flat buffer, its gradient
// into a second and Adam's two moments into a third and fourth, so zeroing is one memset,
// the optimizer one launch and an all-reduce one call. Non-trainable state (batch norm
// running statistics) lives in a fifth flat buffer, saved with the weights but never
// optimised. Parameters are declared first (names, shapes), then allocate() makes the buffers.
//
// Each parameter starts on a multiple of kParamAlignment floats (256 bytes) within its buffer:
// cuDNN's vectorised engines may fault on a weight pointer that is only 4-byte aligned. The gaps
// are zeros with zero gradients, so Adam leaves them zero; the *_span() counts include them, the
// *_count() counts do not, and files hold the parameters packed (no gaps).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/common/device.h"

namespace iss {

constexpr int64_t kParamAlignment = 64;  // floats

struct ParamInfo {
    std::string name;            // e.g. "enc0.conv1.weight"
    std::vector<int64_t> shape;  // e.g. {24, 3, 3, 3, 24} (odhwi for convolutions)
    int64_t offset = 0;          // in elements, within its buffer
    int64_t count = 0;
    bool trainable = true;
};

// A handle to a declared parameter.
struct Param {
    int index = -1;
};

class ParamStore {
public:
    explicit ParamStore(DeviceContext& ctx) : ctx_(ctx) {}

    Param declare(const std::string& name, const std::vector<int64_t>& shape, bool trainable = true);
    // Once, after every declare(); zero-filled. For inference only the values and the state: no
    // gradients or Adam moments (three more copies of the weights, 159 MB for the published
    // U-Net, on the device that predicts).
    enum class Use { training, inference };
    void allocate(Use use = Use::training);
    bool allocated() const { return allocated_; }
    bool trains() const { return allocated_ && use_ == Use::training; }

    const std::vector<ParamInfo>& infos() const { return infos_; }
    const ParamInfo& info(Param p) const { return infos_[size_t(p.index)]; }
    // Number of values (trainable weights, or batch-norm statistics), gaps excluded.
    int64_t trainable_count() const { return trainable_count_; }
    int64_t state_count() const { return state_count_; }
    // Length of each flat buffer in floats, alignment gaps included.
    int64_t trainable_span() const { return trainable_span_; }
    int64_t state_span() const { return state_span_; }

    // A whole flat trainable buffer (values, gradients or a moment) as a host vector of the
    // packed values in declaration order, and the reverse: for files that must not depend on
    // the alignment.
    std::vector<float> download_packed(const float* flat) const;
    // The same into `out` (trainable_count() floats), parameter by parameter: no host copy of
    // the whole span beside it (a checkpoint held two copies of Adam's moments: 4 x 53 MB on the
    // default network's 13.2 M parameters; a 96^3 run's peak fell 1.89 -> 1.71 GB without them).
    void download_packed_into(const float* flat, float* out) const;
    void upload_packed(float* flat, const std::vector<float>& packed);

    // Device pointers (trainable: value, gradient, Adam moments; state: value only).
    float* value(Param p);
    float* grad(Param p);

    float* values() { return values_.data(); }
    // Training only (refused for a store allocated for inference).
    float* grads() { return training_buffer(grads_, "gradients"); }
    float* adam_m() { return training_buffer(m_, "Adam moments"); }
    float* adam_v() { return training_buffer(v_, "Adam moments"); }
    float* state() { return state_.data(); }

    void zero_grads();
    // Adam's moments back to zero: a fresh optimizer over the same weights.
    void zero_moments();
    // Host copies of a parameter's values (for checkpoints and tests) and the reverse.
    std::vector<float> download(Param p) const;
    void upload(Param p, const std::vector<float>& values);

    DeviceContext& context() { return ctx_; }
    const DeviceContext& context() const { return ctx_; }

private:
    float* training_buffer(Buffer<float>& b, const char* what);

    DeviceContext& ctx_;
    std::vector<ParamInfo> infos_;
    int64_t trainable_count_ = 0, state_count_ = 0;
    int64_t trainable_span_ = 0, state_span_ = 0;
    bool allocated_ = false;
    Use use_ = Use::training;
    Buffer<float> values_, grads_, m_, v_, state_;
};

// Values read from a file (untrusted) before they become parameters: NaN or infinity would
// poison every output, and a negative running variance would take a square root of a negative
// number. InputError naming `what` (the file and the tensor) and the first bad element.
void require_usable_parameter(const std::vector<float>& values, const std::string& what, bool is_variance);

}  // namespace iss
