#include "nn/unet.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "kernels/common/error.h"
#include "kernels/common/philox.h"

namespace iss {
namespace {

// Rows [d0, d1) along D of a batch-1 value, as a leaf sharing its memory (inference only).
Var rows(Graph& g, const Var& v, int64_t d0, int64_t d1) { return g.input(v.value().rows(d0, d1)); }

}  // namespace

std::string UNetConfig::widest_problem() const {
    if (widest_supported()) return {};
    return cat("a U-Net of ", features, " features and ", levels, " levels (", features_at(levels - 1),
               " features at its deepest level) is larger than supported (", max_widest_features, ")");
}

namespace {

// The trainable parameters and the batch-norm statistics, declared only: nothing is allocated
// before allocate().
std::pair<int64_t, int64_t> declared_counts(const UNetConfig& config) {
    DeviceContext cpu;
    ParamStore store(cpu);
    UNet net(config, store);
    return {store.trainable_count(), store.state_count()};
}

}  // namespace

int64_t unet_parameter_count(const UNetConfig& config) {
    const auto [trainable, state] = declared_counts(config);
    return trainable + state;
}

int64_t unet_trainable_count(const UNetConfig& config) {
    return declared_counts(config).first;
}

double network_bytes_to_segment(const UNetConfig& unet, Precision precision, double padded_voxels) {
    return padded_voxels * double(unet.features) * (precision == Precision::bf16 ? 6.0 : 9.0) +
           4.0 * double(unet_parameter_count(unet));
}

UNet::UNet(const UNetConfig& config, ParamStore& params) : config_(config), params_(params) {
    ISS_INPUT(config.levels >= 1 && config.levels <= 8, "U-Net: levels must be 1 to 8, got ", config.levels);
    ISS_INPUT(config.features >= 1 && config.convs_per_level >= 1 && config.in_channels >= 1 && config.classes >= 2,
              "U-Net: features, convolutions per level and input channels must be >= 1, classes >= 2");
    ISS_INPUT(UNetConfig::supported_kernel(config.kernel), "U-Net: kernel must be 3 or 1, got ", config.kernel);
    ISS_INPUT(config.classes <= 255, "U-Net: at most 255 classes (targets are bytes), got ", config.classes);
    const int L = config.levels;
    for (int l = 0; l < L; ++l) {
        std::vector<ConvLayer> convs;
        int64_t in_c = l == 0 ? config.in_channels : config.features_at(l - 1);
        for (int c = 0; c < config.convs_per_level; ++c) {
            convs.push_back(declare_conv(cat("enc", l, ".conv", c), in_c, config.features_at(l), config.kernel));
            in_c = config.features_at(l);
        }
        encoder_.push_back(std::move(convs));
        encoder_bn_.push_back(declare_bn(cat("enc", l, ".bn"), config.features_at(l)));
    }
    for (int l = L - 2; l >= 0; --l) {
        std::vector<ConvLayer> convs;
        int64_t in_c = config.features_at(l) + config.features_at(l + 1);
        for (int c = 0; c < config.convs_per_level; ++c) {
            convs.push_back(declare_conv(cat("dec", l, ".conv", c), in_c, config.features_at(l), config.kernel));
            in_c = config.features_at(l);
        }
        if (config.kernel == 3) convs[0].upsampled = std::make_unique<UpsampledConvEngines>(config.features_at(l));
        decoder_.push_back(std::move(convs));
        decoder_bn_.push_back(declare_bn(cat("dec", l, ".bn"), config.features_at(l)));
    }
    head_ = declare_conv("head", config.features_at(0), config.classes, 1);
}

UNet::ConvLayer UNet::declare_conv(const std::string& name, int64_t in_c, int64_t out_c, int64_t kernel) {
    ConvLayer layer;
    layer.weight = params_.declare(name + ".weight", {out_c, kernel, kernel, kernel, in_c});
    layer.bias = params_.declare(name + ".bias", {out_c});
    layer.engines = std::make_unique<ConvEngines>(out_c, kernel);
    layer.in_c = in_c;
    layer.out_c = out_c;
    layer.kernel = kernel;
    return layer;
}

BatchNormParams UNet::declare_bn(const std::string& name, int64_t channels) {
    BatchNormParams bn;
    bn.gamma = params_.declare(name + ".gamma", {channels});
    bn.beta = params_.declare(name + ".beta", {channels});
    bn.running_mean = params_.declare(name + ".running_mean", {channels}, false);
    bn.running_var = params_.declare(name + ".running_var", {channels}, false);
    bn.momentum = config_.bn_momentum;
    bn.epsilon = config_.bn_epsilon;
    return bn;
}

void UNet::initialise(uint64_t seed) {
    ISS_REQUIRE(params_.allocated(), "U-Net: initialise() before the parameters are allocated");
    uint32_t layer_index = 0;
    auto init_conv = [&](const ConvLayer& layer) {
        // Glorot uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)), fans over k^3 * channels.
        const double k3 = double(layer.kernel * layer.kernel * layer.kernel);
        const double limit = std::sqrt(6.0 / (k3 * double(layer.in_c) + k3 * double(layer.out_c)));
        const ParamInfo& info = params_.info(layer.weight);
        std::vector<float> w(size_t(info.count));
        const RandomKey key{seed, layer_index++, 0x5eed};
        for (size_t i = 0; i < w.size(); i += 4) {
            float u[4];
            random_uniform4(key, i / 4, u);
            for (size_t e = 0; e < 4 && i + e < w.size(); ++e) w[i + e] = float((2.0 * u[e] - 1.0) * limit);
        }
        params_.upload(layer.weight, w);
        params_.upload(layer.bias, std::vector<float>(size_t(layer.out_c), 0.0f));
    };
    auto init_bn = [&](const BatchNormParams& bn) {
        const size_t c = size_t(params_.info(bn.gamma).count);
        params_.upload(bn.gamma, std::vector<float>(c, 1.0f));
        params_.upload(bn.beta, std::vector<float>(c, 0.0f));
        params_.upload(bn.running_mean, std::vector<float>(c, 0.0f));
        params_.upload(bn.running_var, std::vector<float>(c, 1.0f));
    };
    for (size_t l = 0; l < encoder_.size(); ++l) {
        for (const ConvLayer& c : encoder_[l]) init_conv(c);
        init_bn(encoder_bn_[l]);
    }
    for (size_t l = 0; l < decoder_.size(); ++l) {
        for (const ConvLayer& c : decoder_[l]) init_conv(c);
        init_bn(decoder_bn_[l]);
    }
    init_conv(head_);
}

Var UNet::conv_elu(Graph& g, const Var& x, ConvLayer& c, bool pad_d) {
    // Inference fuses the ELU into the convolution (a pass over the largest tensors saved:
    // bf16 forward 11% faster); training keeps them apart, where fusing measured no faster
    // (the backward dominates) and our ELU runs on both backends.
    if (!g.grad_enabled())
        return conv3d(g, x, c.weight, c.bias, *c.engines, g.activation_type(), config_.elu_alpha, pad_d);
    return elu(g, conv3d(g, x, c.weight, c.bias, *c.engines, g.activation_type(), 0.0f, pad_d), config_.elu_alpha);
}

Var UNet::conv_elu_block(Graph& g, Var x, std::vector<ConvLayer>& convs, size_t first) {
    for (size_t i = first; i < convs.size(); ++i) x = conv_elu(g, x, convs[i]);
    return x;
}

bool UNet::folds_upsampling(const UNetConfig& config, DeviceContext& ctx, DType activations, int level) {
    if (config.kernel != 3) return false;
    return !ctx.is_cuda() || activations == DType::f32 || level == 0;
}

Var UNet::decoder_input(Graph& g, Var skip, Var coarse, std::vector<ConvLayer>& convs, int level,
                        size_t& convs_done) {
    const bool folded = !g.grad_enabled() && folds_upsampling(config_, g.context(), g.activation_type(), level);
    const ConvLayer& first = convs[0];
    convs_done = folded ? 1 : 0;
    return folded ? upsample_concat_conv(g, skip, coarse, first.weight, first.bias, *first.upsampled, config_.elu_alpha)
                  : upsample_concat(g, skip, coarse);
}

Var UNet::decoder_block(Graph& g, Var skip, Var coarse, std::vector<ConvLayer>& convs, int level) {
    size_t done = 0;
    Var x = decoder_input(g, std::move(skip), std::move(coarse), convs, level, done);
    return conv_elu_block(g, std::move(x), convs, done);
}

Var UNet::encode_and_decode_to_level_one(Graph& g, const Var& input, bool training, std::vector<Var>& skips) {
    const Shape5& s = input.shape();
    const int64_t m = config_.size_multiple();
    ISS_INPUT(s.c == config_.in_channels, "U-Net: input has ", s.c, " channels, the model expects ",
              config_.in_channels);
    ISS_INPUT(s.d % m == 0 && s.h % m == 0 && s.w % m == 0, "U-Net: input size ", s.d, "x", s.h, "x", s.w,
              " is not a multiple of ", m, " on every axis");
    const int L = config_.levels;
    Var x = input;
    for (int l = 0; l < L; ++l) {
        Var skip = conv_elu_block(g, std::move(x), encoder_[size_t(l)]);
        skips.push_back(skip);
        x = batchnorm(g, skip, encoder_bn_[size_t(l)], training);
        if (l < L - 1) x = maxpool2(g, x);
    }
    for (int i = 0; i < L - 2; ++i) {
        const int l = L - 2 - i;
        x = decoder_block(g, std::move(skips[size_t(l)]), std::move(x), decoder_[size_t(i)], l);
        x = batchnorm(g, x, decoder_bn_[size_t(i)], training);
    }
    return x;
}

Var UNet::last_level(Graph& g, Var skip0, Var from_level_one, bool training) {
    const int L = config_.levels;
    Var x = std::move(from_level_one);
    if (L > 1) {
        x = decoder_block(g, std::move(skip0), std::move(x), decoder_[size_t(L - 2)], 0);
        x = batchnorm(g, x, decoder_bn_[size_t(L - 2)], training);
    }
    return x;
}

Var UNet::last_level_rows(Graph& g, const Var& skip0, const Var& level_one, int64_t z0, int64_t z1) {
    const int64_t depth = skip0.shape().d;
    const int64_t pad = config_.kernel / 2;
    std::vector<ConvLayer>& convs = decoder_[size_t(config_.levels - 2)];
    const int64_t n = int64_t(convs.size());
    // Every convolution needs `pad` rows of real neighbours on each side, so the level's input is
    // read with a halo of pad * n rows; even bounds keep the upsampling's rows aligned with level
    // 1's.
    int64_t lo = std::max<int64_t>(0, z0 - pad * n) / 2 * 2;
    int64_t hi = std::min(depth, (z1 + pad * n + 1) / 2 * 2);
    size_t done = 0;
    Var x = decoder_input(g, rows(g, skip0, lo, hi), rows(g, level_one, lo / 2, hi / 2), convs, 0, done);
    // x holds rows [lo, hi). Each later convolution makes only the rows the ones after it need.
    // Away from the volume's ends its input holds the real neighbour rows and it runs without
    // zero padding along D; at an end it pads as the whole volume does (and computes the rows
    // up to the end, one more than needed on a slab's other side).
    for (size_t i = done; i < convs.size(); ++i) {
        const int64_t after = pad * (n - 1 - int64_t(i));
        const int64_t want_lo = std::max<int64_t>(0, z0 - after), want_hi = std::min(depth, z1 + after);
        const int64_t in_lo = std::max<int64_t>(0, want_lo - pad), in_hi = std::min(depth, want_hi + pad);
        const bool interior = pad > 0 && in_lo == want_lo - pad && in_hi == want_hi + pad;
        x = conv_elu(g, rows(g, x, in_lo - lo, in_hi - lo), convs[i], !interior);
        lo = interior ? want_lo : in_lo;
        hi = interior ? want_hi : in_hi;
    }
    // Batch norm, the head and the softmax work voxel by voxel: on the slab's own rows only.
    return batchnorm(g, rows(g, x, z0 - lo, z1 - lo), decoder_bn_[size_t(config_.levels - 2)], false);
}

Var UNet::head(Graph& g, const Var& features) {
    return conv3d(g, features, head_.weight, head_.bias, *head_.engines, DType::f32);  // fp32 logits
}

Var UNet::forward(Graph& g, const Var& input, bool training) {
    std::vector<Var> skips;
    Var x = encode_and_decode_to_level_one(g, input, training, skips);
    Var skip0 = std::move(skips[0]);
    skips.clear();
    return head(g, last_level(g, std::move(skip0), std::move(x), training));
}

bool UNet::predict_in_slabs(Graph& g, const Var& input, int64_t slab_depth) const {
    ISS_REQUIRE(!g.grad_enabled(), "UNet::predict is inference: gradients must be off");
    ISS_INPUT(input.shape().n == 1, "U-Net: predict takes one volume at a time, got a batch of ", input.shape().n);
    return slab_depth > 0 && slab_depth < input.shape().d && config_.levels > 1;
}

void UNet::predict_logit_rows(Graph& g, const Var& input, int64_t slab_depth, const LogitRows& emit) {
    const Shape5 in = input.shape();
    if (!predict_in_slabs(g, input, slab_depth)) {
        emit(0, in.d, forward(g, input, false));
        return;
    }
    std::vector<Var> skips;
    const Var level_one = encode_and_decode_to_level_one(g, input, false, skips);
    const Var skip0 = skips[0];
    skips.clear();
    for (int64_t z0 = 0; z0 < in.d; z0 += slab_depth) {
        const int64_t z1 = std::min(in.d, z0 + slab_depth);
        emit(z0, z1, head(g, last_level_rows(g, skip0, level_one, z0, z1)));
    }
}

Var UNet::predict(Graph& g, const Var& input, int64_t slab_depth) {
    if (!predict_in_slabs(g, input, slab_depth)) return softmax(g, forward(g, input, false));
    const Shape5 in = input.shape();
    const int64_t row = in.h * in.w * config_.classes;
    Tensor out;
    predict_logit_rows(g, input, slab_depth, [&](int64_t z0, int64_t, const Var& logits) {
        // Made with the first slab, once the encoder's temporaries are gone.
        if (!out.data) out = g.make(Shape5{1, in.d, in.h, in.w, config_.classes});
        softmax_into(g, logits, out.data + z0 * row);
    });
    return g.input(out);
}

void UNet::predict(Graph& g, const Var& input, int64_t slab_depth, float* host_out) {
    DeviceContext& ctx = g.context();
    const int64_t row = input.shape().h * input.shape().w * config_.classes;
    predict_logit_rows(g, input, slab_depth, [&](int64_t z0, int64_t z1, const Var& logits) {
        if (!ctx.is_cuda()) {
            softmax_into(g, logits, host_out + z0 * row);  // host memory: no copy
            return;
        }
        const Var p = softmax(g, logits);
        ctx.copy_to_host(host_out + z0 * row, p.data(), size_t((z1 - z0) * row) * sizeof(float));
    });
}

void UNet::predict(Graph& g, const Var& input, int64_t slab_depth, const ProbabilityRows& rows) {
    DeviceContext& ctx = g.context();
    // Off the host, the rows come through a host buffer of at most this many (the whole volume
    // at once would otherwise need a second host copy of it).
    constexpr int64_t kStagedRows = 16;
    const int64_t row = input.shape().h * input.shape().w * config_.classes;
    std::vector<float> staging;
    predict_logit_rows(g, input, slab_depth, [&](int64_t z0, int64_t z1, const Var& logits) {
        const Var p = softmax(g, logits);
        if (!ctx.is_cuda()) {
            rows(z0, z1, p.data());
            return;
        }
        for (int64_t a = z0; a < z1; a += kStagedRows) {
            const int64_t b = std::min(z1, a + kStagedRows);
            staging.resize(size_t((b - a) * row));
            ctx.copy_to_host(staging.data(), p.data() + (a - z0) * row, staging.size() * sizeof(float));
            rows(a, b, staging.data());
        }
    });
}

void UNet::release_engines() {
    auto release = [](ConvLayer& layer) {
        if (layer.engines) layer.engines->clear();
        if (layer.upsampled) {
            layer.upsampled->fine.clear();
            layer.upsampled->coarse.clear();
        }
    };
    for (auto* levels : {&encoder_, &decoder_})
        for (std::vector<ConvLayer>& level : *levels)
            for (ConvLayer& layer : level) release(layer);
    release(head_);
}

}  // namespace iss
