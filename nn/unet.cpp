#include "nn/unet.h"

#include <cmath>

#include "kernels/common/error.h"
#include "kernels/common/philox.h"

namespace iss {

int64_t unet_parameter_count(const UNetConfig& config) {
    DeviceContext cpu;
    ParamStore store(cpu);  // declared only: nothing is allocated before allocate()
    UNet net(config, store);
    return store.trainable_count() + store.state_count();
}

UNet::UNet(const UNetConfig& config, ParamStore& params) : config_(config), params_(params) {
    ISS_INPUT(config.levels >= 1 && config.levels <= 8, "U-Net: levels must be 1 to 8, got ", config.levels);
    ISS_INPUT(config.features >= 1 && config.convs_per_level >= 1 && config.in_channels >= 1 && config.classes >= 2,
              "U-Net: features, convolutions per level and input channels must be >= 1, classes >= 2");
    ISS_INPUT(config.kernel == 3 || config.kernel == 1, "U-Net: kernel must be 3 or 1, got ", config.kernel);
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

Var UNet::conv_elu_block(Graph& g, Var x, std::vector<ConvLayer>& convs) {
    for (ConvLayer& c : convs) x = elu(g, conv3d(g, x, c.weight, c.bias, *c.engines), config_.elu_alpha);
    return x;
}

Var UNet::forward(Graph& g, const Var& input, bool training) {
    const Shape5& s = input.shape();
    const int64_t m = config_.size_multiple();
    ISS_INPUT(s.c == config_.in_channels, "U-Net: input has ", s.c, " channels, the model expects ",
              config_.in_channels);
    ISS_INPUT(s.d % m == 0 && s.h % m == 0 && s.w % m == 0, "U-Net: input size ", s.d, "x", s.h, "x", s.w,
              " is not a multiple of ", m, " on every axis");
    const int L = config_.levels;
    std::vector<Var> skips;
    Var x = input;
    for (int l = 0; l < L; ++l) {
        Var skip = conv_elu_block(g, x, encoder_[size_t(l)]);
        skips.push_back(skip);
        x = batchnorm(g, skip, encoder_bn_[size_t(l)], training);
        if (l < L - 1) x = maxpool2(g, x);
    }
    for (int i = 0; i < L - 1; ++i) {
        const int l = L - 2 - i;
        x = concat(g, skips[size_t(l)], upsample2(g, x));
        x = conv_elu_block(g, x, decoder_[size_t(i)]);
        x = batchnorm(g, x, decoder_bn_[size_t(i)], training);
    }
    return conv3d(g, x, head_.weight, head_.bias, *head_.engines);
}

}  // namespace iss
