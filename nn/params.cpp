#include "nn/params.h"

#include <cmath>
#include <cstring>

#include "kernels/common/error.h"

namespace iss {

Param ParamStore::declare(const std::string& name, const std::vector<int64_t>& shape, bool trainable) {
    ISS_REQUIRE(!allocated_, "parameter ", name, " declared after allocation");
    for (const ParamInfo& p : infos_) ISS_REQUIRE(p.name != name, "parameter ", name, " declared twice");
    ParamInfo info;
    info.name = name;
    info.shape = shape;
    info.count = 1;
    for (int64_t d : shape) {
        ISS_REQUIRE(d > 0, "parameter ", name, " has an empty dimension");
        info.count *= d;
    }
    info.trainable = trainable;
    int64_t& span = trainable ? trainable_span_ : state_span_;
    info.offset = (span + kParamAlignment - 1) / kParamAlignment * kParamAlignment;
    span = info.offset + info.count;
    (trainable ? trainable_count_ : state_count_) += info.count;
    infos_.push_back(info);
    return Param{int(infos_.size()) - 1};
}

void ParamStore::allocate(Use use) {
    ISS_REQUIRE(!allocated_, "parameters allocated twice");
    values_ = Buffer<float>(ctx_, size_t(trainable_span_));
    state_ = Buffer<float>(ctx_, size_t(state_span_));
    if (use == Use::training) {
        grads_ = Buffer<float>(ctx_, size_t(trainable_span_));
        m_ = Buffer<float>(ctx_, size_t(trainable_span_));
        v_ = Buffer<float>(ctx_, size_t(trainable_span_));
    }
    for (Buffer<float>* b : {&values_, &grads_, &m_, &v_, &state_})
        if (b->size() > 0) ctx_.fill_zero(b->data(), b->size() * sizeof(float));
    allocated_ = true;
    use_ = use;
}

float* ParamStore::training_buffer(Buffer<float>& b, const char* what) {
    ISS_REQUIRE(trains(), "parameters: ", what, " asked of a store ",
                allocated_ ? "allocated for inference" : "not yet allocated");
    return b.data();
}

float* ParamStore::value(Param p) {
    const ParamInfo& i = info(p);
    ISS_REQUIRE(allocated_, "parameter ", i.name, " used before allocation");
    return (i.trainable ? values_.data() : state_.data()) + i.offset;
}

float* ParamStore::grad(Param p) {
    const ParamInfo& i = info(p);
    ISS_REQUIRE(trains() && i.trainable, "parameter ", i.name, " has no gradient");
    return grads_.data() + i.offset;
}

void ParamStore::zero_grads() {
    float* all = grads();
    if (grads_.size() > 0) ctx_.fill_zero(all, grads_.size() * sizeof(float));
}

void ParamStore::zero_moments() {
    if (m_.size() > 0) ctx_.fill_zero(adam_m(), m_.size() * sizeof(float));
    if (v_.size() > 0) ctx_.fill_zero(adam_v(), v_.size() * sizeof(float));
}

std::vector<float> ParamStore::download(Param p) const {
    const ParamInfo& i = info(p);
    std::vector<float> host(size_t(i.count));
    const float* base = (i.trainable ? values_.data() : state_.data()) + i.offset;
    ctx_.copy_to_host(host.data(), base, host.size() * sizeof(float));
    return host;
}

void ParamStore::upload(Param p, const std::vector<float>& values) {
    const ParamInfo& i = info(p);
    ISS_REQUIRE(int64_t(values.size()) == i.count, "parameter ", i.name, " holds ", i.count, " values, got ",
                values.size());
    ctx_.copy_to_device(value(p), values.data(), values.size() * sizeof(float));
}

std::vector<float> ParamStore::download_packed(const float* flat) const {
    std::vector<float> span(static_cast<size_t>(trainable_span_)), packed;
    if (!span.empty()) ctx_.copy_to_host(span.data(), flat, span.size() * sizeof(float));
    packed.reserve(size_t(trainable_count_));
    for (const ParamInfo& i : infos_)
        if (i.trainable) packed.insert(packed.end(), span.begin() + i.offset, span.begin() + i.offset + i.count);
    return packed;
}

void ParamStore::download_packed_into(const float* flat, float* out) const {
    for (const ParamInfo& i : infos_)
        if (i.trainable) {
            if (i.count > 0) ctx_.copy_to_host(out, flat + i.offset, size_t(i.count) * sizeof(float));
            out += i.count;
        }
}

void ParamStore::upload_packed(float* flat, const std::vector<float>& packed) {
    ISS_REQUIRE(int64_t(packed.size()) == trainable_count_, "packed parameters: ", trainable_count_,
                " values expected, got ", packed.size());
    std::vector<float> span(static_cast<size_t>(trainable_span_), 0.0f);
    auto from = packed.begin();
    for (const ParamInfo& i : infos_)
        if (i.trainable) {
            std::copy(from, from + i.count, span.begin() + i.offset);
            from += i.count;
        }
    if (!span.empty()) ctx_.copy_to_device(flat, span.data(), span.size() * sizeof(float));
}

void require_usable_parameter(const std::vector<float>& values, const std::string& what, bool is_variance) {
    // One branch-free pass over the whole tensor (a model's 13 million values), the element
    // looked for only when there is one: not finite is an all-ones exponent, negative a sign bit.
    uint32_t bad = 0;
    const uint32_t sign = is_variance ? 0x80000000u : 0;
    for (const float v : values) {
        uint32_t bits;
        std::memcpy(&bits, &v, sizeof bits);
        bad |= uint32_t((bits & 0x7f800000u) == 0x7f800000u) | uint32_t((bits & sign) != 0 && v != 0.0f);
    }
    if (bad == 0) return;
    for (size_t i = 0; i < values.size(); ++i) {
        ISS_INPUT(std::isfinite(values[i]), what, " holds ", values[i], " at element ", i);
        ISS_INPUT(!is_variance || values[i] >= 0, what, " holds the negative variance ", values[i], " at element ", i);
    }
}

}  // namespace iss
