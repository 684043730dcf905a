// The 3-D U-Net of SPEC.md section 4 (neurite style), every size configurable:
//   encoder level l (0..L-1), f_l = features * 2^l:
//     conv3 -> ELU -> conv3 -> ELU  (= skip_l)  -> batch norm -> max-pool 2 (not after the last)
//   decoder level l (L-2..0): upsample2(previous) -> concat[skip_l, up] -> conv3 -> ELU ->
//     conv3 -> ELU -> batch norm
//   head: conv1 to the classes (the logits); softmax in the loss or at inference.
// Note that the deepest level's batch norm output feeds the first upsampling, and each
// decoder level's batch norm output feeds the next one's upsampling.
// At the defaults (5 levels, 24 features, 1 input channel, 34 classes) it has 13,240,666
// trainable parameters, as the published model. Weights Glorot-uniform (keyed Philox draws,
// so the same seed gives the same network on every backend), biases 0, gamma 1, beta 0,
// running mean 0, running variance 1.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/ops.h"
#include "nn/params.h"

namespace iss {

struct UNetConfig {
    int levels = 5;
    int features = 24;        // at level 0, doubling per level
    int convs_per_level = 2;
    int kernel = 3;
    int in_channels = 1;
    int classes = 34;
    float bn_momentum = 0.99f;
    float bn_epsilon = 1e-3f;
    float elu_alpha = 1.0f;

    // The convolution sizes this U-Net builds (3x3x3, or 1x1x1 throughout): the one check that
    // a config, a checkpoint and a Keras file share.
    static bool supported_kernel(int64_t k) { return k == 3 || k == 1; }
    // The sizes train makes and every reader of a model takes: a model one wrote, another reads.
    // The widest level's features bound the parameter count, so a network that could not be
    // allocated is refused before anything is.
    static constexpr int max_levels = 8;
    static constexpr int max_features = 1024;
    static constexpr int64_t max_widest_features = 8192;
    bool widest_supported() const { return features_at(levels - 1) <= max_widest_features; }
    // "a U-Net of F features and L levels (W features at its deepest level) is larger than
    // supported (8192)", or "" where widest_supported(): every reader's message.
    std::string widest_problem() const;

    int64_t features_at(int level) const { return int64_t(features) << level; }
    // Spatial sizes must be multiples of this (2^(levels-1) poolings).
    int64_t size_multiple() const { return int64_t(1) << (levels - 1); }
    // The multiple SynthSeg works in (SPEC.md 3.3 and 6.2, 2^levels: 32 for 5 levels): training
    // crops are rounded down to it and scans padded up to it at prediction.
    int64_t reference_multiple() const { return int64_t(1) << levels; }
};

// Trainable parameters plus batch-norm statistics of UNet(config), without allocating them.
int64_t unet_parameter_count(const UNetConfig& config);
// The trainable ones alone.
int64_t unet_trainable_count(const UNetConfig& config);
// What the network holds to segment a grid of `padded_voxels` (its pool and the convolutions'
// workspace, network_peak_bytes): per voxel and first-level feature 9 bytes in fp32, 6 in bf16
// (Predict/cpu/155x175x149, 24 features: 1008 and 702 MB on 160x192x160), and its parameters.
// predict's memory check left it out: a 150x170x140 scan on the default network was estimated at
// 1.47 GB and peaked at 2.52-2.58 GB (two measurements), so a 2 GiB container admitted it and
// killed it. train's counts it for its validation forward.
double network_bytes_to_segment(const UNetConfig& unet, Precision precision, double padded_voxels);

class UNet {
public:
    // Declares every parameter in `params` (which the caller then allocates) in a fixed order.
    UNet(const UNetConfig& config, ParamStore& params);

    const UNetConfig& config() const { return config_; }

    // Whether inference runs the first convolution of the decoder level on grid `level` (0: the
    // scan's) without the concatenation (nn/ops.h: upsample_concat_conv), for kernel 3, with
    // `activations` the graph's activation type. Where bench_nn's DecoderConv measured it faster
    // (docs/PERFORMANCE.md, 2026-12-04): on the CPU at every level; on cuDNN at every level in
    // fp32, and in bf16 at level 0 only, since the folded parts are fp32 and at the deeper levels
    // their bytes cost more than the concatenation they save.
    static bool folds_upsampling(const UNetConfig& config, DeviceContext& ctx, DType activations, int level);

    // Sets every parameter to its initial value (Glorot-uniform weights keyed by `seed`).
    void initialise(uint64_t seed);

    // Logits (N, D, H, W, classes) for an input (N, D, H, W, in_channels). `training` selects
    // batch statistics (and updates the running ones) or the running statistics.
    Var forward(Graph& g, const Var& input, bool training);

    // Inference: the probabilities (softmax of the logits) for an input of batch 1, gradients
    // off. With `slab_depth` > 0 the full-resolution decoder level, the head and the softmax run
    // in slabs of that many rows along D (with the halo the convolutions need, read from the
    // real neighbours), into one output: the largest tensors of the network (the last
    // concatenation, 3 times the level-0 features) then never exist whole. 0: whole volume.
    // Same values as softmax(forward(...)) within the convolutions' tolerance (docs/KERNELS.md).
    Var predict(Graph& g, const Var& input, int64_t slab_depth);
    // The same, without a tensor of the whole output: `rows(z0, z1, p)` receives rows [z0, z1)
    // along D of the probabilities ((z1 - z0) x H x W x classes floats, channels-last, in host
    // memory, valid during the call), in order of z0, the rows of each slab as it is done.
    // On CUDA the rows come through a host buffer of at most 16 rows.
    using ProbabilityRows = std::function<void(int64_t z0, int64_t z1, const float* p)>;
    void predict(Graph& g, const Var& input, int64_t slab_depth, const ProbabilityRows& rows);
    // The same into `host_out` (D x H x W x classes floats in host memory): on the CPU each
    // slab's softmax writes its rows there, off a GPU they are copied there once.
    void predict(Graph& g, const Var& input, int64_t slab_depth, float* host_out);

    // Drops the convolutions' engines built for the shapes seen so far (each holds its compiled
    // kernels and, on the CPU, a reordered copy of its layer's weights: about 65 MB a shape for the
    // default network), so that a folder of scans of many sizes does not keep one set a size.
    void release_engines();

private:
    struct ConvLayer {
        Param weight, bias;
        std::unique_ptr<ConvEngines> engines;
        // A decoder level's first layer, kernel 3: its engines without the concatenation.
        std::unique_ptr<UpsampledConvEngines> upsampled;
        int64_t in_c = 0, out_c = 0, kernel = 3;
    };
    ConvLayer declare_conv(const std::string& name, int64_t in_c, int64_t out_c, int64_t kernel);
    BatchNormParams declare_bn(const std::string& name, int64_t channels);
    // One layer with its ELU (fused at inference); pad_d as ConvShape's.
    Var conv_elu(Graph& g, const Var& x, ConvLayer& c, bool pad_d = true);
    // Each layer of `convs` from `first` on, with its ELU.
    Var conv_elu_block(Graph& g, Var x, std::vector<ConvLayer>& convs, size_t first = 0);
    // The decoder level on grid `level` up to its first convolution: concat(skip,
    // upsample2(coarse)), or at inference, where folds_upsampling says so, the first layer already
    // applied without the concatenation; `convs_done` says which (0 or 1 of `convs`). Takes its
    // inputs by value, and frees each after its last use when handed the only handles.
    Var decoder_input(Graph& g, Var skip, Var coarse, std::vector<ConvLayer>& convs, int level, size_t& convs_done);
    // The layers of the decoder level on grid `level` over concat(skip, upsample2(coarse)).
    Var decoder_block(Graph& g, Var skip, Var coarse, std::vector<ConvLayer>& convs, int level);

    // The encoder, and every decoder level but the last: the skips and the deepest output.
    Var encode_and_decode_to_level_one(Graph& g, const Var& input, bool training, std::vector<Var>& skips);
    // Checks predict's input (inference, batch 1); whether it runs in slabs of `slab_depth`.
    bool predict_in_slabs(Graph& g, const Var& input, int64_t slab_depth) const;
    // UNet::predict's work: each slab's rows [z0, z1) of logits, in device memory, to `emit`
    // (which applies the softmax where the probabilities are wanted).
    using LogitRows = std::function<void(int64_t z0, int64_t z1, const Var& logits)>;
    void predict_logit_rows(Graph& g, const Var& input, int64_t slab_depth, const LogitRows& emit);
    // The last decoder level (full resolution): its features from level 1's output. Takes its
    // inputs by value so that, handed the only handles, it frees each after its last use (skip0
    // alone is 24 channels at full resolution).
    Var last_level(Graph& g, Var skip0, Var from_level_one, bool training);
    // Inference in slabs: rows [z0, z1) of the last level's features (after its batch norm),
    // computed from the rows of skip0 and level one's output that its convolutions need.
    Var last_level_rows(Graph& g, const Var& skip0, const Var& level_one, int64_t z0, int64_t z1);
    // The head (a 1x1 convolution): fp32 logits from those features.
    Var head(Graph& g, const Var& features);

    UNetConfig config_;
    ParamStore& params_;
    std::vector<std::vector<ConvLayer>> encoder_, decoder_;
    std::vector<BatchNormParams> encoder_bn_, decoder_bn_;
    ConvLayer head_;
};

}  // namespace iss
