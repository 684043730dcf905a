// Keras HDF5 import and export (nn/keras.h, io/hdf5.h): the published SynthSeg-family U-Net.
// With ../shared: every fixture of shared/data/keras (three networks, two layouts each) imports
// to the architecture its layers.json describes, and our forward matches the softmax Keras
// computed, on every backend, within the tolerance of docs/KERNELS.md ("Keras import"); export
// then import is bit-identical and has the fixture's layout. Without ../shared a file our own
// writer makes covers the import path. Bad files are InputErrors naming the file and the layer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/hdf5.h"
#include "io/nifti.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "io/zip.h"
#include "kernels/common/error.h"
#include "nn/autograd.h"
#include "nn/checkpoint.h"
#include "nn/keras.h"
#include "nn/ops.h"
#include "nn/tensor.h"
#include "nn/unet.h"
#include "predict/keras_model.h"
#include "synth/labels.h"
#include "tests/backends.h"
#include "tests/small_model.h"
#include "tests/test_util.h"
#include "tests/zip_writer.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

// A network built from a KerasUNet on a context, ready for inference.
struct Network {
    ParamStore params;
    UNet net;
    Network(DeviceContext& ctx, const KerasUNet& model) : params(ctx), net(model.unet, params) {
        params.allocate();
        load_keras_tensors(model, params);
    }
};

// Softmax of the network for a channels-last volume given in Keras' axis order (x, y, z, c),
// returned in the same order: our tensors are (z, y, x, c), so the spatial axes are reversed
// on the way in and out.
std::vector<float> softmax_keras_order(DeviceContext& ctx, Network& n, const std::vector<float>& in,
                                       const std::array<int64_t, 3>& dims, int64_t channels, int64_t classes) {
    const int64_t X = dims[0], Y = dims[1], Z = dims[2];
    std::vector<float> ours(in.size());
    for (int64_t x = 0; x < X; ++x)
        for (int64_t y = 0; y < Y; ++y)
            for (int64_t z = 0; z < Z; ++z)
                for (int64_t c = 0; c < channels; ++c)
                    ours[size_t(((z * Y + y) * X + x) * channels + c)] =
                        in[size_t(((x * Y + y) * Z + z) * channels + c)];
    PoolAllocator pool(ctx);
    std::vector<float> out_ours;
    {
        Graph g(pool, n.params, false);
        Tensor input = Tensor::make(pool, Shape5{1, Z, Y, X, channels});
        ctx.copy_to_device(input.data, ours.data(), ours.size() * sizeof(float));
        const Var probs = softmax(g, n.net.forward(g, g.input(input), false));
        out_ours.resize(size_t(probs.value().size()));
        ctx.copy_to_host(out_ours.data(), probs.data(), out_ours.size() * sizeof(float));
    }
    std::vector<float> out(out_ours.size());
    for (int64_t x = 0; x < X; ++x)
        for (int64_t y = 0; y < Y; ++y)
            for (int64_t z = 0; z < Z; ++z)
                for (int64_t c = 0; c < classes; ++c)
                    out[size_t(((x * Y + y) * Z + z) * classes + c)] =
                        out_ours[size_t(((z * Y + y) * X + x) * classes + c)];
    return out;
}

std::vector<float> as_float(const NpyArray& a) {
    return std::vector<float>(a.values.begin(), a.values.end());
}

std::string keras_dir() {
    return test::shared_dir() + "/data/keras";
}

// --- the fixtures ------------------------------------------------------------------------------

struct Fixture {
    const char* stem;
    int levels, features, classes, in_channels;
};
const Fixture fixtures[] = {
    {"unet_l5_f4_c34", 5, 4, 34, 1}, {"unet_l3_f8_c19", 3, 8, 19, 1}, {"unet_l3_f4_c34_in2", 3, 4, 34, 2}};

class KerasFixtures : public test::BackendTest {};

// Tolerance (derived in docs/KERNELS.md, "Keras import"): fp32 on both sides, differing only in
// summation order; a random walk of sqrt(K) u per convolution over the network's 21 or fewer
// convolutions, scaled by batch norm and logits of about 10, puts the probabilities within about
// 1.5e-4; the tolerance is about 3x that. The argmax may differ only where Keras' two largest
// probabilities are closer than twice the tolerance.
constexpr double kSoftmaxTolerance = 5e-4;

TEST_P(KerasFixtures, ImportMatchesKerasSoftmax) {
    if (!fs::is_directory(keras_dir())) GTEST_SKIP() << keras_dir() << " not found: Keras fixtures not checked";
    for (const Fixture& f : fixtures) {
        for (const char* layout : {"_weights.h5", "_model.h5"}) {
            SCOPED_TRACE(std::string(f.stem) + layout);
            const KerasUNet model = read_keras_unet(keras_dir() + "/" + f.stem + layout);
            EXPECT_EQ(model.unet.levels, f.levels);
            EXPECT_EQ(model.unet.features, f.features);
            EXPECT_EQ(model.unet.classes, f.classes);
            EXPECT_EQ(model.unet.in_channels, f.in_channels);
            EXPECT_EQ(model.unet.convs_per_level, 2);
            EXPECT_EQ(model.unet.kernel, 3);
            EXPECT_EQ(model.layout, std::string(layout) == "_model.h5" ? "whole model" : "weights only");
            Network n(ctx(), model);
            const NpyArray input = read_npy(keras_dir() + "/" + f.stem + ".input.npy");
            const NpyArray want = read_npy(keras_dir() + "/" + f.stem + ".softmax.npy");
            ASSERT_EQ(input.shape.size(), 5u);
            const std::array<int64_t, 3> dims{input.shape[1], input.shape[2], input.shape[3]};
            const std::vector<float> got =
                softmax_keras_order(ctx(), n, as_float(input), dims, input.shape[4], f.classes);
            const std::vector<float> reference = as_float(want);
            EXPECT_TRUE(test::all_near(got, reference, kSoftmaxTolerance));
            // Argmax: the same label everywhere but at near-ties.
            int64_t differ = 0, ties = 0;
            for (size_t v = 0; v < got.size() / size_t(f.classes); ++v) {
                const float* g = &got[v * size_t(f.classes)];
                const float* r = &reference[v * size_t(f.classes)];
                const int64_t a = std::max_element(g, g + f.classes) - g, b = std::max_element(r, r + f.classes) - r;
                std::vector<float> sorted(r, r + f.classes);
                std::sort(sorted.rbegin(), sorted.rend());
                const bool tie = sorted[0] - sorted[1] < 2 * kSoftmaxTolerance;
                ties += tie;
                differ += a != b && !tie;
            }
            EXPECT_EQ(differ, 0) << "argmax differs away from near-ties (" << ties << " near-ties)";
        }
    }
}

ISS_INSTANTIATE_BACKENDS(KerasFixtures);

// The layer list, each layer's weight names and every dataset's shape of a weights file.
struct Layout {
    std::vector<std::string> layers;
    std::map<std::string, std::vector<std::string>> weights;
    std::map<std::string, std::vector<int64_t>> shapes;
};

// A spec for exporting `unet`: labels 0 to classes - 1 in channel order, RAS.
ModelSpec spec_for(const UNetConfig& unet) {
    ModelSpec spec;
    spec.unet = unet;
    for (int c = 0; c < unet.classes; ++c) spec.labels.push_back(c);
    spec.preprocessing = {{"orientation", "RAS"}, {"size_multiple", unet.reference_multiple()}};
    return spec;
}

Layout layout_of_file(const std::string& path) {
    Hdf5Reader f(path);
    const std::string root = f.has_group("/model_weights") ? "/model_weights" : "";
    Layout l;
    l.layers = f.string_list(root.empty() ? "/" : root, "layer_names");
    for (const std::string& layer : l.layers) {
        l.weights[layer] = f.string_list(root + "/" + layer, "weight_names");
        for (const std::string& w : l.weights[layer]) l.shapes[w] = f.dataset_info(root + "/" + layer + "/" + w).shape;
    }
    return l;
}

TEST(KerasExport, RoundTripIsBitIdenticalWithTheFixturesLayout) {
    if (!fs::is_directory(keras_dir())) GTEST_SKIP() << keras_dir() << " not found: Keras fixtures not checked";
    const fs::path dir = test::unique_temp_dir("keras-round-trip");
    DeviceContext cpu;
    for (const Fixture& f : fixtures) {
        SCOPED_TRACE(f.stem);
        const std::string source = keras_dir() + "/" + f.stem + "_weights.h5";
        const KerasUNet model = read_keras_unet(source);
        Network n(cpu, model);
        const std::string exported = (dir / (std::string(f.stem) + ".h5")).string();
        write_keras_unet(exported, spec_for(model.unet), n.params);
        const KerasUNet again = read_keras_unet(exported);
        EXPECT_EQ(again.tensors, model.tensors);
        EXPECT_EQ(again.keras_version, "2.2.4");
        const Layout want = layout_of_file(source), got = layout_of_file(exported);
        EXPECT_EQ(got.layers, want.layers);
        EXPECT_EQ(got.weights, want.weights);
        EXPECT_EQ(got.shapes, want.shapes);
    }
    fs::remove_all(dir);
}

// --- without ../shared: our writer's file through the import path ----------------------------

TEST(KerasImport, OwnWriterRoundTripGivesTheSameNetwork) {
    const fs::path dir = test::unique_temp_dir("keras-own");
    DeviceContext cpu;
    UNetConfig config;
    config.levels = 3;
    config.features = 3;
    config.classes = 5;
    config.in_channels = 2;
    ParamStore params(cpu);
    UNet net(config, params);
    params.allocate();
    net.initialise(7);
    const std::string file = (dir / "own.h5").string();
    ModelSpec spec = spec_for(config);
    write_keras_unet(file, spec, params);
    const KerasUNet model = read_keras_unet(file);
    EXPECT_EQ(model.description, model_description(spec, params).dump()) << "the record, as written";
    // A record past HDF5's 64 KB attribute goes in parts, as Keras splits its lists, and comes
    // back whole (parts are joined byte for byte: where a cut falls in non-ASCII text is moot).
    std::string note;
    for (int i = 0; i < 40000; ++i) note += "\xc3\xa9x";  // e-acute, x: 120 KB
    spec.training["note"] = note;
    const std::string long_file = (dir / "long.h5").string();
    write_keras_unet(long_file, spec, params);
    EXPECT_TRUE(Hdf5Reader(long_file).has_attribute("/", "infant_synthseg_model1"));
    EXPECT_EQ(read_keras_unet(long_file).description, model_description(spec, params).dump());
    EXPECT_EQ(model.unet.levels, 3);
    EXPECT_EQ(model.unet.features, 3);
    EXPECT_EQ(model.unet.classes, 5);
    EXPECT_EQ(model.unet.in_channels, 2);
    ASSERT_EQ(model.tensors.size(), params.infos().size());
    for (size_t p = 0; p < params.infos().size(); ++p)
        EXPECT_EQ(model.tensors.at(params.infos()[p].name), params.download(Param{int(p)})) << params.infos()[p].name;
    fs::remove_all(dir);
}

// --- bad files ---------------------------------------------------------------------------------

class KerasBadInput : public test::TempDirTest {
protected:
    // A one-level U-Net (1 convolution, batch norm, head) written by hand, with a mutation.
    enum Mutation {
        none,
        no_bn,
        head_group_missing,
        head_wrong_shape,
        kernel_float64,
        unknown_layer,
        checkpoint,
        nan_variance,
        unwritten_kernel,
        extra_batch_norm,
        cascade,
        keras3_names,
        config_list,
        weighted_prediction
    };
    // With `model_config`, a whole model: the layers under /model_weights beside that JSON.
    std::string tiny(Mutation m, const std::string& model_config = "") {
        const std::string file =
            path("tiny_" + std::to_string(int(m)) + (model_config.empty() ? "" : "_whole") + ".h5");
        const std::string root = model_config.empty() ? "" : "/model_weights";
        Hdf5Writer w(file);
        std::vector<std::string> layers = {"unet_input", "unet_conv_downarm_0_0", "unet_bn_down_0", "unet_likelihood",
                                           "unet_prediction"};
        if (m == no_bn) layers.erase(layers.begin() + 2);
        if (m == unknown_layer) layers.insert(layers.begin() + 2, "unet_res_down_0");
        // A training checkpoint also holds the synthetic-image and loss models' layers.
        if (m == checkpoint) layers.insert(layers.begin(), {"labels_to_image_model_affine", "dice_loss"});
        if (m == extra_batch_norm) layers.insert(layers.begin() + 3, "unet_bn_down_1");  // a level with no convolution
        if (m == cascade) layers.insert(layers.end(), {"l2l_conv_0", "unet2_conv_downarm_0_0"});
        if (!model_config.empty()) {
            w.group(root);
            if (m == config_list)  // many copies would each be read whole: refused first
                w.string_list("/", "model_config", {model_config, model_config});
            else
                w.string_attribute("/", "model_config", model_config);
        }
        w.string_list(root.empty() ? "/" : root, "layer_names", layers);
        const std::string suffix = m == keras3_names ? "" : ":0";  // Keras 3's legacy HDF5 names
        for (const std::string& layer : layers) {
            if (m == head_group_missing && layer == "unet_likelihood") continue;
            const std::string group = root + "/" + layer;
            w.group(group);
            std::vector<std::string> names;
            if (layer == "unet_conv_downarm_0_0") {
                names = {layer + "/kernel" + suffix, layer + "/bias" + suffix};
                if (m == kernel_float64)
                    w.dataset_f64(group + "/" + names[0], {3, 3, 3, 1, 2}, std::vector<double>(54, 0.1));
                else if (m == unwritten_kernel)
                    w.dataset_f32_unwritten(group + "/" + names[0], {3, 3, 3, 1, 2});
                else
                    w.dataset_f32(group + "/" + names[0], {3, 3, 3, 1, 2}, std::vector<float>(54, 0.1f));
                w.dataset_f32(group + "/" + names[1], {2}, {0, 0});
            } else if (layer == "unet_bn_down_0" || layer == "unet_bn_down_1") {
                for (const char* n : {"gamma", "beta", "moving_mean", "moving_variance"}) {
                    names.push_back(layer + "/" + n + suffix);
                    const bool poisoned = m == nan_variance && std::string(n) == "moving_variance";
                    w.dataset_f32(group + "/" + names.back(), {2}, {1, poisoned ? NAN : 1});
                }
            } else if (layer == "labels_to_image_model_affine") {
                names = {layer + "/kernel:0"};
                w.dataset_f32(group + "/" + names[0], {4, 4}, std::vector<float>(16, 1.0f));
            } else if (layer == "unet_prediction" && m == weighted_prediction) {  // not a softmax, then
                names = {layer + "/kernel" + suffix};
                w.dataset_f32(group + "/" + names[0], {3}, {1, 1, 1});
            } else if (layer == "unet_likelihood") {
                names = {layer + "/kernel" + suffix, layer + "/bias" + suffix};
                const int64_t in = m == head_wrong_shape ? 5 : 2;
                w.dataset_f32(group + "/" + names[0], {1, 1, 1, in, 3}, std::vector<float>(size_t(in * 3), 0.5f));
                w.dataset_f32(group + "/" + names[1], {3}, {0, 0, 0});
            }
            w.string_list(group, "weight_names", names);
        }
        w.close();
        return file;
    }
    static constexpr const char* softmax_activation =
        R"({"class_name": "Activation", "config": {"name": "unet_prediction", "activation": "softmax"}})";
    // tiny()'s network as Keras' model_config describes it, with one layer's settings changed.
    static std::string config_of(const std::string& conv_activation = "elu", double epsilon = 1e-3,
                                 const std::string& prediction = softmax_activation) {
        return std::string(R"({"class_name": "Functional", "config": {"name": "unet", "layers": [)") +
               R"({"class_name": "InputLayer", "config": {"name": "unet_input"}},)" +
               R"({"class_name": "Conv3D", "config": {"name": "unet_conv_downarm_0_0", "activation": ")" +
               conv_activation + R"(", "padding": "same", "strides": [1, 1, 1], "use_bias": true}},)" +
               R"({"class_name": "BatchNormalization", "config": {"name": "unet_bn_down_0", "axis": [4], "epsilon": )" +
               std::to_string(epsilon) + R"(}},)" +
               R"({"class_name": "Conv3D", "config": {"name": "unet_likelihood", "activation": "linear"}},)" +
               prediction + "]}}";
    }
    // tiny()'s network with Keras 2's inbound nodes, the head taking `head_input`, the first
    // convolution `first_input`.
    static std::string wired_config(const std::string& head_input, const std::string& first_input = "unet_input") {
        auto layer = [](const std::string& kind, const std::string& config, const std::string& from) {
            return R"({"class_name": ")" + kind + R"(", "config": {)" + config + R"(}, "inbound_nodes": )" +
                   (from.empty() ? "[]" : R"([[[")" + from + R"(", 0, 0, {}]]])") + "}";
        };
        return std::string(R"({"class_name": "Functional", "config": {"name": "unet", "layers": [)") +
               layer("InputLayer", R"("name": "unet_input")", "") + "," +
               layer("Conv3D", R"("name": "unet_conv_downarm_0_0", "activation": "elu", "padding": "same")",
                     first_input) +
               "," + layer("BatchNormalization", R"("name": "unet_bn_down_0")", "unet_conv_downarm_0_0") + "," +
               layer("Conv3D", R"("name": "unet_likelihood", "activation": "linear")", head_input) + "," +
               layer("Activation", R"("name": "unet_prediction", "activation": "softmax")", "unet_likelihood") + "]}}";
    }
    static std::string error_of(const std::string& file) {
        try {
            read_keras_unet(file);
        } catch (const InputError& e) {
            return e.what();
        }
        return "(no InputError)";
    }
};

TEST_F(KerasBadInput, EachIsAnInputErrorNamingFileAndLayer) {
    const KerasUNet ok = read_keras_unet(tiny(none));
    EXPECT_EQ(ok.unet.levels, 1);
    EXPECT_EQ(ok.unet.features, 2);
    EXPECT_EQ(ok.unet.classes, 3);
    EXPECT_EQ(read_keras_unet(tiny(checkpoint)).tensors, ok.tensors) << "the other models' layers are ignored";

    std::ofstream(path("text.h5")) << "not an HDF5 file at all\n";
    EXPECT_NE(error_of(path("text.h5")).find("text.h5: not an HDF5 file"), std::string::npos);
    EXPECT_NE(error_of(path("absent.h5")).find("absent.h5: cannot open"), std::string::npos);
    {
        Hdf5Writer w(path("plain.h5"));
        w.group("/data");
        w.dataset_f32("/data/x", {2}, {1, 2});
        w.close();
    }
    EXPECT_NE(error_of(path("plain.h5")).find("not a Keras weights file"), std::string::npos);
    EXPECT_NE(error_of(tiny(no_bn)).find("no batch normalisation"), std::string::npos);
    const std::string missing = error_of(tiny(head_group_missing));
    EXPECT_NE(missing.find("unet_likelihood"), std::string::npos) << missing;
    const std::string shape = error_of(tiny(head_wrong_shape));
    EXPECT_NE(shape.find("unet_likelihood"), std::string::npos) << shape;
    EXPECT_NE(shape.find("shape (1, 1, 1, 5, 3), expected (1, 1, 1, 2, 3)"), std::string::npos) << shape;
    const std::string dtype = error_of(tiny(kernel_float64));
    EXPECT_NE(dtype.find("unet_conv_downarm_0_0/kernel:0 holds float64, expected float32"), std::string::npos) << dtype;
    const std::string unknown = error_of(tiny(unknown_layer));
    EXPECT_NE(unknown.find("layer unet_res_down_0 is not part of the U-Net"), std::string::npos) << unknown;

    // Values and data that are not there: NaN statistics, a dataset an interrupted save never
    // wrote (HDF5 would read zeros), layers the inferred network has no place for.
    const std::string nan = error_of(tiny(nan_variance));
    EXPECT_NE(nan.find("unet_bn_down_0/moving_variance:0 holds nan at element 1"), std::string::npos) << nan;
    const std::string unwritten = error_of(tiny(unwritten_kernel));
    EXPECT_NE(unwritten.find("unet_conv_downarm_0_0/kernel:0 has no storage"), std::string::npos) << unwritten;
    // A layer without weights in the U-Net holding some is something else (a transposed
    // convolution for an upsampling): refused, its weights not dropped unread.
    const std::string weighted = error_of(tiny(weighted_prediction));
    EXPECT_NE(weighted.find("layer unet_prediction holds 1 weights; expected none"), std::string::npos) << weighted;
    const std::string extra = error_of(tiny(extra_batch_norm));
    EXPECT_NE(extra.find("layer unet_bn_down_1 is not part of the U-Net its other layers describe"),
              std::string::npos)
        << extra;
    const std::string cascaded = error_of(tiny(cascade));
    EXPECT_NE(cascaded.find("belongs to SynthSeg 2.0's cascade"), std::string::npos) << cascaded;
    EXPECT_EQ(read_keras_unet(tiny(keras3_names)).tensors, ok.tensors) << "Keras 3 names weights without ':0'";

    // A whole model's model_config must describe what our U-Net computes.
    EXPECT_EQ(read_keras_unet(tiny(none, config_of())).tensors, ok.tensors);
    const std::string softmax_lambda = R"({"class_name": "Lambda", "config": {"name": "unet_prediction", )"
                                       R"("function": ["a2VyYXMuYWN0aXZhdGlvbnMuc29mdG1heA==\n", null, [3]]}})";
    EXPECT_EQ(read_keras_unet(tiny(none, config_of("elu", 1e-3, softmax_lambda))).tensors, ok.tensors)
        << "ext/neuron's Lambda softmax (base64 of 'keras.activations.softmax')";
    const std::string keras3_lambda = R"({"class_name": "Lambda", "config": {"name": "unet_prediction", )"
                                      R"("function": {"class_name": "__lambda__", )"
                                      R"("config": {"code": "a2VyYXMuYWN0aXZhdGlvbnMuc29mdG1heA=="}}}})";
    EXPECT_EQ(read_keras_unet(tiny(none, config_of("elu", 1e-3, keras3_lambda))).tensors, ok.tensors)
        << "Keras 3 stores a Lambda's code in an object";
    // ... and connect its layers as ext/neuron does (Keras 2's inbound nodes here; Keras 3's in
    // KerasArchivesDeflatedReadAndDamagedAreRefused).
    EXPECT_EQ(read_keras_unet(tiny(none, wired_config("unet_bn_down_0"))).tensors, ok.tensors);
    const std::string skipped_norm = error_of(tiny(none, wired_config("unet_conv_downarm_0_0")));
    EXPECT_NE(skipped_norm.find("model_config: layer unet_likelihood takes unet_conv_downarm_0_0; in ext/neuron's "
                                "U-Net it takes unet_bn_down_0"),
              std::string::npos)
        << skipped_norm;
    // A model with its own input must feed it to the first convolution (a training checkpoint,
    // without one, feeds that convolution the synthetic image).
    const std::string bypassed = error_of(tiny(none, wired_config("unet_bn_down_0", "other_model_output")));
    EXPECT_NE(bypassed.find("layer unet_conv_downarm_0_0 takes other_model_output; in ext/neuron's U-Net it takes "
                            "unet_input"),
              std::string::npos)
        << bypassed;
    const std::string listed = error_of(tiny(config_list, config_of()));
    EXPECT_NE(listed.find("'model_config' of /: holds 2 strings, expected at most 1"), std::string::npos) << listed;
    const std::pair<std::string, const char*> refused[] = {
        {config_of("relu"), "layer unet_conv_downarm_0_0 (Conv3D) has activation relu, not elu"},
        {config_of("elu", 0.1), "layer unet_bn_down_0 (BatchNormalization) has epsilon 0.1"},
        {config_of("elu", 1e-3,
                   R"({"class_name": "Activation", "config": {"name": "unet_prediction", "activation": "sigmoid"}})"),
         "layer unet_prediction (Activation) is sigmoid"},
        {config_of("elu", 1e-3,
                   R"({"class_name": "Lambda", "config": {"name": "unet_prediction", "function": ["c2lnbW9pZA=="]}})"),
         "is a Lambda that does not apply a softmax"},
        {config_of("elu", 1e-3, R"({"class_name": "Dropout", "config": {"name": "unet_dropout_0"}})"),
         "layer unet_dropout_0 (Dropout) is a layer type this program does not build"},
        {"{not json", "tiny_0_whole.h5: model_config is not valid JSON"},
        // The logits as the model's output: Keras would give them, not posteriors.
        {config_of("elu", 1e-3,
                   R"({"class_name": "Activation", "config": {"name": "logits", "activation": "linear"}})"),
         "model_config: no layer unet_prediction: ext/neuron's U-Net ends in a softmax"},
    };
    for (const auto& [config, problem] : refused) {
        const std::string message = error_of(tiny(none, config));
        EXPECT_NE(message.find(problem), std::string::npos) << message;
        EXPECT_NE(message.find("tiny_0_whole.h5"), std::string::npos) << message;
    }

    // A truncated file: the first half of a valid one.
    const std::string whole = tiny(none);
    const std::string bytes = test::read_text(whole);
    std::ofstream(path("truncated.h5"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    const std::string truncated = error_of(path("truncated.h5"));
    EXPECT_NE(truncated.find("truncated.h5"), std::string::npos) << truncated;
}

// Damaged string attributes, found by fuzz_keras_hdf5: libhdf5 1.10 would loop forever, copy past
// a buffer, or read through a wild index on each of these; the reader refuses them first
// (io/hdf5.cpp: the global heaps, where variable-length strings live, and the stored size).
TEST(KerasDamagedStrings, AreRefusedBeforeLibhdf5ReadsThem) {
    const char* source = std::getenv("INFANT_SOURCE_DIR");
    if (!source || !*source) GTEST_SKIP() << "INFANT_SOURCE_DIR unset (ctest sets it): fuzz regressions not read";
    const std::string dir = std::string(source) + "/fuzz/regressions/keras_hdf5/";
    const std::pair<const char*, const char*> cases[] = {
        {"timeout-016bd65caef05feeb342649d3055499e1d40727c", "is damaged (an object of 0 bytes"},
        {"crash-17091e903edd35beaca40e3c34f2afd580a1fce0", "is damaged (an object of 4438755818495878525 bytes"},
        {"crash-c23f7aaee3729d371f89718aff092677253cc504", "refers to object 1952804469 of the global heap"},
        {"crash-ac59eaca45328f353ead92a35a1a00faef1dc37b", "holds 24 bytes for 24 names of 16 bytes"},
    };
    for (const auto& [file, problem] : cases) {
        SCOPED_TRACE(file);
        try {
            read_keras_unet(dir + file);
            ADD_FAILURE() << "accepted";
        } catch (const InputError& e) {
            const std::string message = e.what();
            EXPECT_NE(message.find(file), std::string::npos) << message;
            EXPECT_NE(message.find(problem), std::string::npos) << message;
        }
    }
}

// --- Keras 3's save_weights layout ------------------------------------------------------------

// tests/data/make_keras3_fixture.py wrote the 2-channel fixture again with Keras 3.15's own
// save_weights: a group per layer under /layers, its name an attribute, its weights numbered.
std::string keras3_fixture() {
    const char* source = std::getenv("INFANT_SOURCE_DIR");
    return source && *source ? std::string(source) + "/tests/data/keras3_unet_l3_f4_c34_in2.weights.h5" : "";
}

TEST(KerasImport, Keras3WeightsFileGivesTheKeras2FilesTensors) {
    if (keras3_fixture().empty()) GTEST_SKIP() << "INFANT_SOURCE_DIR unset (ctest sets it): tests/data not read";
    const KerasUNet model = read_keras_unet(keras3_fixture());
    EXPECT_EQ(model.layout, "Keras 3 weights");
    EXPECT_EQ(model.keras_version, "3 (release not recorded)");
    EXPECT_EQ(model.unet.levels, 3);
    EXPECT_EQ(model.unet.features, 4);
    EXPECT_EQ(model.unet.classes, 34);
    EXPECT_EQ(model.unet.in_channels, 2);
    if (!fs::is_directory(keras_dir())) GTEST_SKIP() << keras_dir() << " not found: not compared with tf-keras' file";
    const auto theirs = read_keras_unet(keras_dir() + "/unet_l3_f4_c34_in2_weights.h5").tensors;
    EXPECT_EQ(model.tensors.size(), theirs.size());
    for (const auto& [name, values] : theirs) {
        const auto ours = model.tensors.find(name);
        EXPECT_TRUE(ours != model.tensors.end() && ours->second == values) << name << " differs";
    }
}

using Keras3LayerEdit = std::function<void(std::string& name, std::vector<std::string>& weights)>;

// The fixture copied with one change (`edit` sees each layer's name and the fixture's datasets
// that become its weights 0, 1, ..., and may change them), as WHAT.weights.h5 in `dir`: its path.
// `groups`: fixture group -> the copy's, for the groups a test renames.
std::string keras3_copy(const fs::path& dir, const std::string& what, const Keras3LayerEdit& edit,
                        const std::map<std::string, std::string>& groups = {}) {
    const Hdf5Reader in(keras3_fixture());
    const std::string out = (dir / (what + ".weights.h5")).string();
    Hdf5Writer w(out);
    for (const std::string& member : in.group_members("/layers", 100)) {
        const std::string vars = "/layers/" + member + "/vars";
        const auto renamed = groups.find(member);
        const std::string copy = "/layers/" + (renamed == groups.end() ? member : renamed->second) + "/vars";
        std::string name = in.string_list(vars, "name").at(0);
        std::vector<std::string> weights;
        while (in.has_dataset(cat(vars, "/", weights.size()))) weights.push_back(cat(vars, "/", weights.size()));
        edit(name, weights);
        w.group(copy);
        if (!name.empty()) w.string_attribute(copy, "name", name);
        for (size_t i = 0; i < weights.size(); ++i) {  // weight i of the copy from the fixture's weights[i]
            const std::vector<int64_t> shape = in.dataset_info(weights[i]).shape;
            w.dataset_f32(cat(copy, "/", i), shape, in.read_f32(weights[i], shape));
        }
    }
    w.close();
    return out;
}

// That copy, read: the InputError's message.
std::string keras3_copy_refusal(const fs::path& dir, const std::string& what, const Keras3LayerEdit& edit) {
    const std::string out = keras3_copy(dir, what, edit);
    return test::refusal_of(out, [&] { read_keras_unet(out); });
}

// Two batch norms of one width whose groups' names are swapped: Keras loads each group by its
// position (the second BatchNormalization's weights from batch_normalization_1), not its name, so
// reading by name would run another network than Keras' on the same file, without a word.
void swap_bn_names(std::string& name, std::vector<std::string>&) {
    if (name == "unet_bn_down_1")
        name = "unet_bn_up_0";
    else if (name == "unet_bn_up_0")
        name = "unet_bn_down_1";
}

TEST(KerasImport, Keras3FilesWithoutNamesOrWithWrongWeightCountsAreRefused) {
    if (keras3_fixture().empty()) GTEST_SKIP() << "INFANT_SOURCE_DIR unset (ctest sets it): tests/data not read";
    const fs::path dir = test::unique_temp_dir("keras3-bad");
    EXPECT_NE(keras3_copy_refusal(dir, "unnamed",
                                  [](std::string& name, std::vector<std::string>&) {
                                      if (name == "unet_bn_up_0") name.clear();
                                  })
                  .find("names no layer (no 'name' attribute on its vars group: Keras 3.0 to 3.5 wrote none"),
              std::string::npos);
    // A layer renamed past the grid: both names said (it said the missing one alone).
    EXPECT_NE(keras3_copy_refusal(dir, "renamed",
                                  [](std::string& name, std::vector<std::string>&) {
                                      if (name == "unet_conv_downarm_1_1") name = "unet_conv_downarm_1_5";
                                  })
                  .find("missing layer unet_conv_downarm_1_1 (the file holds unet_conv_downarm_1_5, past the 2 "
                        "convolutions level 0 has)"),
              std::string::npos);
    // An index Keras never writes ("01"): no layer of the U-Net, named (sscanf read it as 1).
    EXPECT_NE(keras3_copy_refusal(dir, "padded",
                                  [](std::string& name, std::vector<std::string>&) {
                                      if (name == "unet_conv_downarm_1_1") name = "unet_conv_downarm_01_1";
                                  })
                  .find("layer unet_conv_downarm_01_1 is not part of the U-Net this program builds"),
              std::string::npos);
    EXPECT_NE(keras3_copy_refusal(dir, "twice",
                                  [](std::string& name, std::vector<std::string>&) {
                                      if (name == "unet_conv_uparm_3_1") name = "unet_conv_uparm_3_0";
                                  })
                  .find("two layers are named unet_conv_uparm_3_0"),
              std::string::npos);
    EXPECT_NE(keras3_copy_refusal(dir, "three",
                                  [](std::string& name, std::vector<std::string>& weights) {
                                      if (name == "unet_bn_down_1") weights.pop_back();
                                  })
                  .find("layer unet_bn_down_1 holds 3 weights; expected gamma:0"),
              std::string::npos);
    EXPECT_NE(keras3_copy_refusal(dir, "extra",
                                  [](std::string& name, std::vector<std::string>& weights) {
                                      if (name == "unet_likelihood") weights.push_back(weights.back());
                                  })
                  .find("layer unet_likelihood holds more than 2 weights"),
              std::string::npos);
    // ext/neuron's unet_prediction is a Lambda, which Keras 3 saves under `lambda` (the fixture's
    // builder made it an Activation): where a weightless layer stands loads nothing, and is read.
    const std::string lambda =
        keras3_copy(dir, "lambda", [](std::string&, std::vector<std::string>&) {}, {{"activation", "lambda"}});
    EXPECT_TRUE(read_keras_unet(lambda).tensors == read_keras_unet(keras3_fixture()).tensors);
    EXPECT_NE(
        keras3_copy_refusal(dir, "swapped", swap_bn_names)
            .find("groups batch_normalization_3 and batch_normalization_2 are named unet_bn_down_1 and unet_bn_down_2, "
                  "layers the U-Net has in the other order: Keras "
                  "loads weights by their group's position"),
        std::string::npos);
    fs::remove_all(dir);
}

std::string keras3_archive_fixture(const std::string& variant = "keras3_") {
    const char* source = std::getenv("INFANT_SOURCE_DIR");
    return source && *source ? cat(source, "/tests/data/", variant, "unet_l3_f4_c34_in2.keras") : "";
}

// Keras 3's model.save of the same network: its model.weights.h5 is the weights fixture's
// layout, read from memory. Keras 3.5's names no layer in its weights (Keras 3.6 began to):
// config.json's layer list names them, in the order Keras saved them.
TEST(KerasImport, KerasArchivesGiveTheWeightsFilesTensors) {
    if (keras3_fixture().empty()) GTEST_SKIP() << "INFANT_SOURCE_DIR unset (ctest sets it): tests/data not read";
    const KerasUNet weights = read_keras_unet(keras3_fixture());
    for (const auto& [variant, version] : {std::pair<std::string, std::string>{"keras3_", "3.15.1"},
                                           std::pair<std::string, std::string>{"keras3_unnamed_", "3.5.0"}}) {
        SCOPED_TRACE(variant);
        const KerasUNet model = read_keras_unet(keras3_archive_fixture(variant));
        EXPECT_EQ(model.layout, "Keras 3 archive");
        EXPECT_EQ(model.keras_version, version);
        EXPECT_EQ(model.unet.levels, weights.unet.levels);
        EXPECT_EQ(model.unet.in_channels, weights.unet.in_channels);
        EXPECT_EQ(model.unet.classes, weights.unet.classes);
        EXPECT_TRUE(model.tensors == weights.tensors);
    }
}

using ArchiveEdit = std::function<void(std::vector<test::ZipEntry>&)>;

// The members of the archive `source`, changed by `edit`, written as the archive `out`.
void edited_archive(const std::string& source, const std::string& out, const ArchiveEdit& edit) {
    const ZipReader zip(source);
    std::vector<test::ZipEntry> entries;
    for (const ZipReader::Member& m : zip.members()) entries.push_back({m.name, zip.read(m.name, 1 << 30)});
    edit(entries);
    test::write_bytes(out, test::zip_bytes(entries));
}

// An archive fixture (keras3_archive_fixture's variant) changed by `edit`, as WHAT.keras in
// `dir`: its path.
std::string keras_archive_variant(const fs::path& dir, const std::string& what, const ArchiveEdit& edit,
                                  const std::string& variant = "keras3_") {
    const std::string out = (dir / (what + ".keras")).string();
    edited_archive(keras3_archive_fixture(variant), out, edit);
    return out;
}

test::ZipEntry& member(std::vector<test::ZipEntry>& entries, const std::string& name) {
    for (test::ZipEntry& e : entries)
        if (e.name == name) return e;
    throw std::runtime_error("the fixture has no " + name);
}

// A JSON member changed by `edit`.
void edit_json(test::ZipEntry& entry, const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json json = nlohmann::json::parse(entry.data.begin(), entry.data.end());
    edit(json);
    entry.data = test::from_text(json.dump());
}

TEST(KerasImport, KerasArchivesDeflatedReadAndDamagedAreRefused) {
    if (keras3_fixture().empty()) GTEST_SKIP() << "INFANT_SOURCE_DIR unset (ctest sets it): tests/data not read";
    const fs::path dir = test::unique_temp_dir("keras3-archive");
    const KerasUNet fixture = read_keras_unet(keras3_archive_fixture());
    const std::string deflated = keras_archive_variant(dir, "deflated", [](std::vector<test::ZipEntry>& entries) {
        for (test::ZipEntry& e : entries) e.deflate = true;
    });
    EXPECT_TRUE(read_keras_unet(deflated).tensors == fixture.tensors);
    // config.json's order says whose weights a group holds; a name attribute that says otherwise.
    const std::vector<uint8_t> swapped = test::read_bytes(keras3_copy(dir, "swapped", swap_bn_names));
    const std::string renamed = keras_archive_variant(
        dir, "renamed", [&](std::vector<test::ZipEntry>& e) { member(e, "model.weights.h5").data = swapped; });
    EXPECT_NE(test::refusal_of(renamed, [&] { read_keras_unet(renamed); })
                  .find("model.weights.h5: Keras 3 layer group batch_normalization_1 is named unet_bn_up_0 but holds "
                        "layer unet_bn_down_1's weights by its position in config.json"),
              std::string::npos);

    auto refused = [&](const std::string& what, const std::function<void(std::vector<test::ZipEntry>&)>& edit) {
        const std::string file = keras_archive_variant(dir, what, edit);
        return test::refusal_of(file, [&] { read_keras_unet(file); });
    };
    auto edit_text = [](test::ZipEntry& e, const std::string& from, const std::string& to) {
        std::string text(e.data.begin(), e.data.end());
        const size_t at = text.find(from);
        ASSERT_NE(at, std::string::npos) << from;
        e.data = test::from_text(text.replace(at, from.size(), to));
    };
    EXPECT_NE(refused("relu",
                      [&](std::vector<test::ZipEntry>& e) {
                          edit_text(member(e, "config.json"), R"("activation": "elu")", R"("activation": "relu")");
                      })
                  .find("config.json: layer unet_conv_downarm_0_0 (Conv3D) has activation relu, not elu"),
              std::string::npos);
    // The skip and the upsampled path swapped in a merge: the same layers, another network.
    EXPECT_NE(refused("swapped",
                      [](std::vector<test::ZipEntry>& e) {
                          edit_json(member(e, "config.json"), [](nlohmann::json& config) {
                              for (nlohmann::json& layer : config["config"]["layers"])
                                  if (layer["name"] == "unet_merge_3") {
                                      nlohmann::json& inputs = layer["inbound_nodes"][0]["args"][0];
                                      std::swap(inputs[0], inputs[1]);
                                  }
                          });
                      })
                  .find("config.json: layer unet_merge_3 takes unet_up_3, unet_conv_downarm_1_1; in ext/neuron's "
                        "U-Net it takes unet_conv_downarm_1_1, unet_up_3"),
              std::string::npos);
    EXPECT_NE(refused("not-json",
                      [&](std::vector<test::ZipEntry>& e) { member(e, "config.json").data = test::from_text("{"); })
                  .find("config.json is not valid JSON"),
              std::string::npos);
    EXPECT_NE(refused("no-config",
                      [](std::vector<test::ZipEntry>& e) {
                          e.erase(std::remove_if(e.begin(), e.end(),
                                                 [](const test::ZipEntry& m) { return m.name == "config.json"; }),
                                  e.end());
                      })
                  .find("a zip archive without config.json"),
              std::string::npos);
    EXPECT_NE(
        refused("npz", [](std::vector<test::ZipEntry>& e) { member(e, "model.weights.h5").name = "model.weights.npz"; })
            .find("its weights as model.weights.npz"),
        std::string::npos);
    EXPECT_NE(refused("not-hdf5",
                      [](std::vector<test::ZipEntry>& e) {
                          member(e, "model.weights.h5").data = test::from_text("not an HDF5 file");
                      })
                  .find(": model.weights.h5: not an HDF5 file"),
              std::string::npos);
    EXPECT_NE(refused("crc", [](std::vector<test::ZipEntry>& e) { member(e, "model.weights.h5").crc_xor = 4; })
                  .find("member model.weights.h5: CRC-32 mismatch"),
              std::string::npos);
    EXPECT_NE(refused("metadata",
                      [](std::vector<test::ZipEntry>& e) { member(e, "metadata.json").data = test::from_text("[3]"); })
                  .find("metadata.json is not a JSON object"),
              std::string::npos);
    EXPECT_NE(
        refused("version",
                [&](std::vector<test::ZipEntry>& e) { edit_text(member(e, "metadata.json"), R"("3.15.1")", "3"); })
            .find("keras_version is not a release name"),
        std::string::npos);
    // Keras 3.5's unnamed groups: a group config.json has no layer for is named.
    const std::string unlisted = keras_archive_variant(
        dir, "unlisted",
        [&](std::vector<test::ZipEntry>& e) {
            edit_text(member(e, "config.json"), R"("class_name": "Activation")", R"("class_name": "Softmax")");
        },
        "keras3_unnamed_");
    EXPECT_NE(test::refusal_of(unlisted, [&] { read_keras_unet(unlisted); })
                  .find(": model.weights.h5: Keras 3 layer group activation names no layer, and config.json lists no "
                        "layer that Keras would save under that name"),
              std::string::npos);
    // A truncated weights file inside (its CRC made for what is left): libhdf5 cannot open it.
    EXPECT_NE(refused("truncated",
                      [](std::vector<test::ZipEntry>& e) {
                          std::vector<uint8_t>& data = member(e, "model.weights.h5").data;
                          data.resize(data.size() / 2);
                      })
                  .find(": model.weights.h5: cannot open as HDF5 (damaged or truncated?)"),
              std::string::npos);
    fs::remove_all(dir);
}

// --- our .keras export against Keras' own model.save -------------------------------------------

// The options of a layer's config that say what it computes (not Keras' initialisers, dtype
// policy or object ids).
const char* const computing_options[] = {
    "batch_shape", "filters",  "kernel_size", "strides", "padding", "dilation_rate", "groups", "activation", "use_bias",
    "axis",        "momentum", "epsilon",     "center",  "scale",   "pool_size",     "size",   "data_format"};

// The layers a config.json layer takes its inputs from (keras_history), in order.
std::vector<std::string> inbound_layers(const nlohmann::json& layer) {
    std::vector<std::string> names;
    for (const nlohmann::json& node : layer.at("inbound_nodes")) {
        const nlohmann::json& args = node.at("args").at(0);
        for (const nlohmann::json& tensor : args.is_array() ? args : nlohmann::json::array({args}))
            names.push_back(tensor.at("config").at("keras_history").at(0).get<std::string>());
    }
    return names;
}

std::vector<std::string> member_names(const ZipReader& zip) {
    std::vector<std::string> names;
    for (const ZipReader::Member& m : zip.members()) names.push_back(m.name);
    return names;
}

// The archive our export writes holds what Keras 3.15's model.save wrote for the same network
// (tests/data/keras3_unet_l3_f4_c34_in2.keras): the members in Keras' order; config.json's layers
// with the same classes, names, connections, input shapes and computing options; the weights file's
// groups with the same layer names and the same values. The one difference is ext/neuron's:
// its pooling pads 'same' (Keras' default, which the fixture's builder kept, is 'valid'; the two
// agree on the even sizes a U-Net takes). The archive reads back to the fixture's tensors with its
// model recorded, and the same model gives the same bytes.
TEST(KerasExport, ArchiveHoldsWhatKerasModelSaveWrites) {
    if (keras3_fixture().empty()) GTEST_SKIP() << "INFANT_SOURCE_DIR unset (ctest sets it): tests/data not read";
    const fs::path dir = test::unique_temp_dir("keras-archive-export");
    const std::string theirs_path = keras3_archive_fixture(), ours_path = (dir / "ours.keras").string();
    const KerasUNet model = read_keras_unet(theirs_path);
    DeviceContext cpu;
    Network n(cpu, model);
    KerasImportOptions options;
    options.labels = "infant";
    const ModelSpec spec = keras_model_spec(model, options, theirs_path);
    write_keras_archive(ours_path, spec, n.params);

    const ZipReader theirs(theirs_path), ours(ours_path);
    EXPECT_EQ(member_names(ours), member_names(theirs));
    auto json_of = [](const ZipReader& zip, const std::string& name) {
        const std::vector<uint8_t> bytes = zip.read(name, 1 << 26);
        return nlohmann::json::parse(bytes.begin(), bytes.end());
    };
    const nlohmann::json want = json_of(theirs, "config.json"), got = json_of(ours, "config.json");
    for (const char* key : {"module", "class_name", "registered_name"}) EXPECT_EQ(got.at(key), want.at(key)) << key;
    for (const char* key : {"input_layers", "output_layers"})
        EXPECT_EQ(got.at("config").at(key), want.at("config").at(key)) << key;
    const nlohmann::json &want_layers = want.at("config").at("layers"), &got_layers = got.at("config").at("layers");
    ASSERT_EQ(got_layers.size(), want_layers.size());
    for (size_t i = 0; i < want_layers.size(); ++i) {
        const nlohmann::json &w = want_layers[i], &g = got_layers[i];
        SCOPED_TRACE(w.at("name").get<std::string>());
        for (const char* key : {"module", "class_name", "name"}) EXPECT_EQ(g.at(key), w.at(key)) << key;
        EXPECT_EQ(inbound_layers(g), inbound_layers(w));
        EXPECT_EQ(g.value("build_config", nlohmann::json()), w.value("build_config", nlohmann::json()));
        for (const char* option : computing_options) {
            const nlohmann::json none;
            const nlohmann::json &wc = w.at("config"), &gc = g.at("config");
            if (w.at("class_name") == "MaxPooling3D" && std::string(option) == "padding")
                EXPECT_EQ(gc.at(option), "same");
            else
                EXPECT_EQ(gc.value(option, none), wc.value(option, none)) << option;
        }
    }
    const Hdf5Reader want_weights("theirs", theirs.read("model.weights.h5", 1 << 26)),
        got_weights("ours", ours.read("model.weights.h5", 1 << 26));
    const std::vector<std::string> groups = want_weights.group_members("/layers", 1024);
    EXPECT_EQ(got_weights.group_members("/layers", 1024), groups);
    for (const std::string& group : groups) {
        SCOPED_TRACE(group);
        const std::string vars = "/layers/" + group + "/vars";
        ASSERT_TRUE(got_weights.has_group(vars));
        EXPECT_EQ(got_weights.string_list(vars, "name"), want_weights.string_list(vars, "name"));
        const std::vector<std::string> datasets = want_weights.group_members(vars, 16);
        ASSERT_EQ(got_weights.group_members(vars, 16), datasets);
        for (const std::string& d : datasets) {
            const std::vector<int64_t> shape = want_weights.dataset_info(vars + "/" + d).shape;
            EXPECT_EQ(got_weights.read_f32(vars + "/" + d, shape), want_weights.read_f32(vars + "/" + d, shape)) << d;
        }
    }
    EXPECT_TRUE(got_weights.has_group("/vars"));

    const KerasUNet back = read_keras_unet(ours_path);
    EXPECT_EQ(back.layout, "Keras 3 archive");
    EXPECT_TRUE(back.tensors == model.tensors);
    const ModelSpec recorded = keras_model_spec(back, KerasImportOptions(), ours_path);
    EXPECT_EQ(recorded.labels, spec.labels);
    EXPECT_EQ(recorded.preprocessing, spec.preprocessing);
    // A second later (libhdf5 would store each object's time of creation, in seconds).
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    const std::string again = (dir / "again.keras").string();
    write_keras_archive(again, spec, n.params);
    EXPECT_EQ(test::read_bytes(again), test::read_bytes(ours_path));
    fs::remove_all(dir);
}

// --- the commands ------------------------------------------------------------------------------

class KerasCli : public test::TempDirTest {
protected:
    static test::RunResult run(const std::string& args) { return test::run_command(test::cli_path() + " " + args); }
    std::string q(const std::string& name) const { return test::shell_quote(path(name)); }
    void make_model_dir(const std::string& dir) { test::write_small_model(path(dir)); }
    // Exit 2, one line naming the problem (`fragment`), and nothing written at "out".
    void expect_bad(const std::string& args, const std::string& fragment) const {
        SCOPED_TRACE(args);
        const test::RunResult r = run(args);
        EXPECT_EQ(r.status, 2) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
        EXPECT_FALSE(fs::exists(path("out"))) << "something was written";
    }
    void scan(const std::string& name) {
        Grid g;
        g.dim = {12, 14, 10};
        g.affine = Mat4::scaling(1.5, 1.5, 1.5);
        Image im(g);
        for (size_t v = 0; v < im.data.size(); ++v) im.data[v] = float((v * 7919) % 101);
        write_image(path(name), im);
    }
};

// A published-layout file (no record of ours) takes its channel order from --channel-order: import
// records it, and predict's posteriors carry it frame by frame.
TEST_F(KerasCli, APublishedFilesChannelOrderIsTheOneGiven) {
    const std::string keras = keras_dir() + "/unet_l3_f8_c19_weights.h5";
    if (!fs::exists(keras)) GTEST_SKIP() << keras << " not found: the published layout's channel order not checked";
    const std::string labels = " --labels 53,49,47,46,43,42,41,17,10,8,7,4,3,2,24,16,15,14,0";
    const std::vector<int32_t> freesurfer{0, 14, 15, 16, 24, 2, 3, 4, 7, 8, 10, 17, 41, 42, 43, 46, 47, 49, 53};
    std::vector<int32_t> ascending = freesurfer;
    std::sort(ascending.begin(), ascending.end());
    ASSERT_EQ(run("import --keras " + test::shell_quote(keras) + " --out " + q("fs") + labels).status, 0);
    EXPECT_EQ(load_model_spec(path("fs/model.safetensors")).labels, freesurfer);
    const test::RunResult imported = run("import --keras " + test::shell_quote(keras) + " --out " + q("asc") + labels +
                                         " --channel-order ascending");
    ASSERT_EQ(imported.status, 0) << imported.err;
    EXPECT_EQ(load_model_spec(path("asc/model.safetensors")).labels, ascending);
    scan("scan.nii.gz");
    const test::RunResult predicted =
        run("predict --device cpu --i " + q("scan.nii.gz") + " --o " + q("seg.nii.gz") + " --post " + q("post.nii.gz") +
            " --model " + test::shell_quote(keras) + labels + " --channel-order ascending");
    ASSERT_EQ(predicted.status, 0) << predicted.err;
    EXPECT_EQ(read_volume_header(path("post.nii.gz")).frame_labels, ascending);
}

// SynthSeg's predict resamples a scan more than 0.05 mm off 1 mm: --voxel-size, at import or to
// predict given the file, does the same, and predict's line says so; without it the scan keeps
// its own (as Infant-SynthSeg's predict does), which a SynthSeg 1.0 user had no way to change
// with the file given to predict.
TEST_F(KerasCli, AVoxelSizeResamplesScansAsSynthSegsPredictDoes) {
    const std::string keras = keras_dir() + "/unet_l3_f8_c19_weights.h5";
    if (!fs::exists(keras)) GTEST_SKIP() << keras << " not found: --voxel-size of a Keras file not checked";
    const std::string labels = " --labels 53,49,47,46,43,42,41,17,10,8,7,4,3,2,24,16,15,14,0";
    scan("scan.nii.gz");  // 1.5 mm voxels
    auto predicted = [&](const std::string& options) {
        fs::remove(path("seg.nii.gz")), fs::remove(path("seen.nii.gz"));
        const test::RunResult r = run("predict --device cpu --i " + q("scan.nii.gz") + " --o " + q("seg.nii.gz") +
                                      " --resample " + q("seen.nii.gz") + " --model " + options);
        EXPECT_EQ(r.status, 0) << r.err;
        return std::make_pair(r.out, read_volume_header(path("seen.nii.gz")).grid().voxel_size());
    };
    const auto [own_line, own] = predicted(test::shell_quote(keras) + labels);
    EXPECT_EQ(own, (std::array<double, 3>{1.5, 1.5, 1.5}));
    EXPECT_EQ(own_line.find("segmented at"), std::string::npos) << own_line;
    const auto [line, at_1mm] = predicted(test::shell_quote(keras) + labels + " --voxel-size 1");
    EXPECT_NEAR(at_1mm[0], 1.0, 0.02);
    EXPECT_NE(line.find("segmented at 1"), std::string::npos) << line;
    ASSERT_EQ(
        run("import --keras " + test::shell_quote(keras) + " --out " + q("m") + labels + " --voxel-size 1").status, 0);
    EXPECT_EQ(predicted(q("m")).second, at_1mm);
    // Within 0.05 mm of the size: kept, as SynthSeg keeps it; one axis off: all three resampled,
    // as SynthSeg resamples them.
    Grid g = read_volume_header(path("scan.nii.gz")).grid();
    g.affine = Mat4::scaling(1.04, 1.04, 0.96);
    Image near_1mm(g);
    std::fill(near_1mm.data.begin(), near_1mm.data.end(), 1.0f);
    near_1mm.data[0] = 2.0f;
    write_image(path("scan.nii.gz"), near_1mm);
    EXPECT_EQ(predicted(q("m")).first.find("segmented at"), std::string::npos);
    near_1mm.grid.affine = Mat4::scaling(1.04, 1.04, 3);
    write_image(path("scan.nii.gz"), near_1mm);
    const auto [thick_line, thick] = predicted(q("m"));
    EXPECT_NE(thick_line.find("segmented at 1 x 1 x 1 mm"), std::string::npos) << thick_line;
    expect_bad("predict --device cpu --i " + q("scan.nii.gz") + " --o " + q("seg0.nii.gz") + " --model " +
                   test::shell_quote(keras) + labels + " --voxel-size 1 --no-resample",
               "--voxel-size and --no-resample contradict each other");
    expect_bad("predict --device cpu --i " + q("scan.nii.gz") + " --o " + q("seg0.nii.gz") + " --model " +
                   test::shell_quote(keras) + labels + " --voxel-size 0",
               "predict: error: --voxel-size must be a size in mm from 0.1 to 10, got 0");
}

// export, then import: the same parameters bit for bit, and the same segmentation.
TEST_F(KerasCli, ExportThenImportGivesTheSameModel) {
    make_model_dir("ours");
    scan("scan.nii.gz");
    const test::RunResult exported = run("export --model " + q("ours") + " --keras " + q("ours.h5"));
    ASSERT_EQ(exported.status, 0) << exported.err;
    EXPECT_NE(exported.out.find("labels in channel order: 0 2 3 41 42"), std::string::npos) << exported.out;
    // Labels in any order (these are in SynthSeg's order too: AnExportKeepsItsOwnChannelOrder
    // has a model whose are not).
    const test::RunResult imported =
        run("import --keras " + q("ours.h5") + " --out " + q("back") + " --labels 42,41,3,2,0");
    ASSERT_EQ(imported.status, 0) << imported.err;
    const SafetensorsFile a = read_safetensors(path("ours/model.safetensors"));
    const SafetensorsFile b = read_safetensors(path("back/model.safetensors"));
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (const auto& t : a.tensors) EXPECT_EQ(t.as_f32(), b.at(t.name).as_f32()) << t.name;
    const ModelSpec back = load_model_spec(path("back/model.safetensors"));
    EXPECT_EQ(back.labels, (std::vector<int32_t>{0, 2, 3, 41, 42}));
    // Scans are padded to SynthSeg's 2^levels (SPEC.md 6.2), not to the network's 2^(levels-1).
    EXPECT_EQ(back.preprocessing["size_multiple"], 8) << back.preprocessing.dump();
    for (const char* model : {"ours", "back"})
        ASSERT_EQ(run(std::string("predict --device cpu --i ") + q("scan.nii.gz") + " --o " +
                      q(std::string("seg_") + model + ".nii.gz") + " --model " + q(model))
                      .status,
                  0);
    EXPECT_EQ(read_labels(path("seg_ours.nii.gz")).data, read_labels(path("seg_back.nii.gz")).data);
    // The .h5 directly, imported in memory.
    ASSERT_EQ(run("predict --device cpu --i " + q("scan.nii.gz") + " --o " + q("seg_h5.nii.gz") + " --model " +
                  q("ours.h5") + " --labels 0,2,3,41,42")
                  .status,
              0);
    EXPECT_EQ(read_labels(path("seg_h5.nii.gz")).data, read_labels(path("seg_ours.nii.gz")).data);
    // The same file as a .keras archive's weights (the Keras 2 layout inside is read as well),
    // deflated as other zip tools write it, beside a config without layers to check.
    test::ZipEntry weights{"model.weights.h5", test::read_bytes(path("ours.h5"))};
    weights.deflate = true;
    test::write_bytes(path("ours.keras"),
                      test::zip_bytes({{"config.json", test::from_text(R"({"config": {"layers": []}})")}, weights}));
    const test::RunResult archived =
        run("predict --device cpu --i " + q("scan.nii.gz") + " --o " + q("seg_keras.nii.gz") + " --model " +
            q("ours.keras") + " --labels 0,2,3,41,42");
    ASSERT_EQ(archived.status, 0) << archived.err;
    EXPECT_EQ(read_labels(path("seg_keras.nii.gz")).data, read_labels(path("seg_ours.nii.gz")).data);
}

// A network trained here with its labels in an order of its own (16 after 2; SynthSeg's sorted
// order puts the unsided 16 first): its .h5 export records the order, and import and predict keep
// it with or without --labels, where sorting would have put labels on other channels.
TEST_F(KerasCli, AnExportKeepsItsOwnChannelOrder) {
    test::write_small_model(path("ours"), 11, 1, {0, 2, 16, 41, 42});
    scan("scan.nii.gz");
    ASSERT_EQ(run("export --model " + q("ours") + " --keras " + q("ours.h5")).status, 0);
    for (const char* labels : {"", " --labels 42,41,16,2,0"}) {
        SCOPED_TRACE(labels);
        fs::remove_all(path("back"));
        const test::RunResult imported = run("import --keras " + q("ours.h5") + " --out " + q("back") + labels);
        ASSERT_EQ(imported.status, 0) << imported.err;
        EXPECT_EQ(load_model_spec(path("back/model.safetensors")).labels, (std::vector<int32_t>{0, 2, 16, 41, 42}));
    }
    const std::pair<const char*, const char*> runs[] = {
        {"ours", ""}, {"ours.h5", " --labels 0,2,16,41,42"}, {"ours.h5", ""}};
    for (const auto& [model, labels] : runs) {
        const std::string name = std::string(model) + (*labels ? "_labelled" : "");
        const test::RunResult r =
            run(std::string("predict --device cpu --i ") + q("scan.nii.gz") + " --o " + q("seg_" + name + ".nii.gz") +
                " --post " + q("post_" + name + ".nii.gz") + " --model " + q(model) + labels);
        ASSERT_EQ(r.status, 0) << r.err;
    }
    for (const char* name : {"ours.h5", "ours.h5_labelled"}) {
        EXPECT_EQ(read_labels(path(cat("seg_", name, ".nii.gz"))).data, read_labels(path("seg_ours.nii.gz")).data);
        EXPECT_EQ(read_image(path(cat("post_", name, ".nii.gz"))).data, read_image(path("post_ours.nii.gz")).data);
    }
    expect_bad("import --keras " + q("ours.h5") + " --out " + q("out") + " --labels 0,2,3,41,42",
               path("ours.h5") + " records its labels (0,2,16,41,42): --labels names others");
    expect_bad("import --keras " + q("ours.h5") + " --out " + q("out") + " --channel-order ascending",
               path("ours.h5") + " records its model's channel order: --channel-order is for files written elsewhere");
}

// export to .keras: predict and import take the archive without --labels, as the model it came
// from (the same segmentation, the same tensors and model.json); with --labels (the recorded ones)
// a frame given replaces the recorded one. A recorded model that does not fit the archive's
// network is refused.
TEST_F(KerasCli, KerasArchiveExportCarriesTheModel) {
    make_model_dir("ours");
    scan("scan.nii.gz");
    const test::RunResult exported = run("export --model " + q("ours") + " --keras " + q("ours.keras"));
    ASSERT_EQ(exported.status, 0) << exported.err;
    EXPECT_NE(exported.out.find("(Keras 3 model; labels in channel order: 0 2 3 41 42"), std::string::npos)
        << exported.out;
    for (const char* model : {"ours", "ours.keras"}) {
        const test::RunResult r = run(std::string("predict --device cpu --i ") + q("scan.nii.gz") + " --o " +
                                      q(std::string("seg_") + model + ".nii.gz") + " --model " + q(model));
        ASSERT_EQ(r.status, 0) << r.err;
    }
    EXPECT_EQ(read_labels(path("seg_ours.keras.nii.gz")).data, read_labels(path("seg_ours.nii.gz")).data);
    // info describes it by the record inside, as the model it came from (it was refused as any
    // Keras file, so what an export held could not be seen without importing it).
    const test::RunResult described = run("info " + q("ours.keras"));
    ASSERT_EQ(described.status, 0) << described.err;
    for (const std::string line : {"  format: an infant-synthseg model exported to Keras (", ", Keras 3 archive), its",
                                   "  labels: 5 (0,2,3,41,42)\n", "  record: checked against its record_crc32\n"})
        EXPECT_NE(described.out.find(line), std::string::npos) << line << " in " << described.out;
    EXPECT_EQ(described.out.find("imported from"), std::string::npos) << "exported, not imported: " << described.out;
    // Another's (a published T1.h5): no record, so the network read from it and what a user must
    // give (it was refused, exit 2, as a bad file).
    if (!keras3_archive_fixture().empty()) {
        const test::RunResult foreign = run("info " + test::shell_quote(keras3_archive_fixture()));
        EXPECT_EQ(foreign.status, 0) << foreign.err;
        for (const std::string line :
             {"  format: a Keras model (Keras 3 archive, Keras 3.15.1), not written by infant-synthseg",
              "  network: 3-D U-Net, 3 levels, 4 features at the first (doubling a level), 2 convolutions a level, "
              "kernel 3; 2 input channels\n",
              "  outputs: 34 labels (as many as --labels infant's); their values, channel order and the frame",
              "  to use it: predict --model "})
            EXPECT_NE(foreign.out.find(line), std::string::npos) << line << " in " << foreign.out;
    }

    const test::RunResult imported = run("import --keras " + q("ours.keras") + " --out " + q("back"));
    ASSERT_EQ(imported.status, 0) << imported.err;
    const SafetensorsFile a = read_safetensors(path("ours/model.safetensors"));
    const SafetensorsFile b = read_safetensors(path("back/model.safetensors"));
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (const auto& t : a.tensors) EXPECT_EQ(t.as_f32(), b.at(t.name).as_f32()) << t.name;
    const ModelSpec original = load_model_spec(path("ours/model.safetensors"));
    const ModelSpec back = load_model_spec(path("back/model.safetensors"));
    EXPECT_EQ(back.labels, original.labels);
    EXPECT_EQ(back.preprocessing, original.preprocessing);
    EXPECT_EQ(back.training.value("imported_from", ""), path("ours.keras"));
    EXPECT_EQ(back.training.value("keras_layout", ""), "Keras 3 archive");
    // A relative path is recorded absolute: the record says where the file was once the shell
    // has moved on.
    const test::RunResult relative =
        test::run_command("cd " + q("") + " && " + test::cli_path() + " import --keras ours.keras --out relative");
    ASSERT_EQ(relative.status, 0) << relative.err;
    EXPECT_EQ(load_model_spec(path("relative/model.safetensors")).training.value("imported_from", ""),
              path("ours.keras"));

    expect_bad("import --keras " + q("ours.keras") + " --out " + q("out") + " --orientation LIA",
               "records its model (labels, frame, voxel sizes): --orientation goes with --labels");
    // Given --labels, the recorded ones in any order: the frame given replaces the record's.
    const test::RunResult relabelled = run("import --keras " + q("ours.keras") + " --out " + q("relabelled") +
                                           " --labels 42,41,3,2,0 --orientation LIA");
    ASSERT_EQ(relabelled.status, 0) << relabelled.err;
    const ModelSpec relabelled_spec = load_model_spec(path("relabelled/model.safetensors"));
    EXPECT_EQ(relabelled_spec.labels, (std::vector<int32_t>{0, 2, 3, 41, 42}));
    EXPECT_EQ(relabelled_spec.preprocessing.value("orientation", ""), "LIA");  // not the record's RAS
    // A model that was itself imported keeps its origin through an archive of ours.
    ASSERT_EQ(run("export --model " + q("relabelled") + " --keras " + q("relabelled.keras")).status, 0);
    ASSERT_EQ(run("import --keras " + q("relabelled.keras") + " --out " + q("again")).status, 0);
    const nlohmann::json again = load_model_spec(path("again/model.safetensors")).training;
    EXPECT_EQ(again.value("imported_from", ""), path("ours.keras")) << again.dump();
    EXPECT_EQ(again.value("reimported_from", ""), path("relabelled.keras")) << again.dump();
    // --labels alone keeps the recorded frame (LIA here, not RAS) and provenance.
    ASSERT_EQ(run("export --model " + q("relabelled") + " --keras " + q("relabelled.h5")).status, 0);
    ASSERT_EQ(run("import --keras " + q("relabelled.h5") + " --out " + q("labelled") + " --labels 0,2,3,41,42").status,
              0);
    const ModelSpec labelled = load_model_spec(path("labelled/model.safetensors"));
    EXPECT_EQ(labelled.preprocessing.value("orientation", ""), "LIA");
    EXPECT_EQ(labelled.training.value("imported_from", ""), path("ours.keras")) << labelled.training.dump();
    EXPECT_EQ(labelled.training.value("reimported_from", ""), path("relabelled.h5")) << labelled.training.dump();

    // The recorded model edited: another network, then labels that are not a list.
    auto with_description = [&](const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
        edited_archive(path("ours.keras"), path(name), [&](std::vector<test::ZipEntry>& entries) {
            edit_json(member(entries, "metadata.json"), [&](nlohmann::json& metadata) {
                nlohmann::json& record = metadata.at("infant_synthseg_model");
                edit(record);
                record.erase("record_crc32");  // on purpose
            });
        });
        return q(name);
    };
    expect_bad("import --keras " +
                   with_description("wider.keras", [](nlohmann::json& d) { d["architecture"]["features"] = 4; }) +
                   " --out " + q("out"),
               "metadata.json's infant_synthseg_model gives the network other features than the archive's weights");
    const std::string unlabelled =
        with_description("unlabelled.keras", [](nlohmann::json& d) { d["labels"] = "infant"; });
    expect_bad("import --keras " + unlabelled + " --out " + q("out"),
               "metadata.json's infant_synthseg_model: field 'labels'");
    // With --labels too: the record gives the channel order, and a broken one cannot.
    expect_bad("import --keras " + unlabelled + " --out " + q("out") + " --labels 0,2,3,41,42",
               "metadata.json's infant_synthseg_model: field 'labels'");

    // ext/neuron's U-Net has batch norm epsilon 1e-3: a model with another is not written as it.
    nlohmann::json description = nlohmann::json::parse(test::read_text(path("ours/model.json")));
    description["architecture"]["batch_norm"]["epsilon"] = 1e-5;
    test::write_edited_record(path("ours/model.json"), description);
    for (const char* out : {"out.keras", "out.h5"})
        expect_bad("export --model " + q("ours") + " --keras " + q(out),
                   path("ours/model.json") +
                       ": batch norm epsilon 1e-05 and ELU alpha 1: a Keras export is ext/neuron's U-Net, whose are "
                       "0.001 and 1");
    EXPECT_FALSE(fs::exists(path("out.keras")) || fs::exists(path("out.h5")));
}

// Exit 2, one line naming the problem, and nothing written.
TEST_F(KerasCli, BadInputExitsTwoAndWritesNothing) {
    make_model_dir("ours");
    scan("scan.nii.gz");
    ASSERT_EQ(run("export --model " + q("ours") + " --keras " + q("ours.h5")).status, 0);
    std::ofstream(path("text.h5")) << "plain text\n";
    expect_bad("import --keras " + q("text.h5") + " --out " + q("out") + " --labels 0,2,3,41,42", "not an HDF5 file");
    expect_bad("import --keras " + q("ours.h5") + " --out " + q("out") + " --labels 0,2,3",
               "--labels: 3 labels, but the network in");
    expect_bad("import --keras " + q("ours.h5") + " --out " + q("out") + " --labels 0,2,3,41,999",
               "label 999 is in none of SynthSeg's label classes");
    expect_bad("import --keras " + q("ours.h5") + " --out " + q("out") + " --labels 0,2,3,41,42 --orientation XYZ",
               "--orientation");
    expect_bad("import --keras " + q("ours.h5") + " --out " + q("ours") + " --labels 0,2,3,41,42",
               "already holds a model");
    // Half a model, as an import killed between its two files leaves: named as such (it was "already
    // holds a model", where info found none).
    fs::create_directories(path("half"));
    fs::copy_file(path("ours/model.safetensors"), path("half/model.safetensors"));
    expect_bad("import --keras " + q("ours.h5") + " --out " + q("half") + " --labels 0,2,3,41,42",
               "half: holds model.safetensors without its model.json, half a model (a run killed while writing "
               "them): remove it, or choose another --out");
    expect_bad("export --model " + q("ours") + " --keras " + q("ours/model.safetensors"),
               "must name a .h5 or .keras file");
    expect_bad("export --model " + q("ours.h5") + " --keras " + q("again.h5"), "is a Keras file already");
    // A Keras file of another's records no labels: --labels is required, by import and predict.
    KerasUNet foreign;
    foreign.unet.classes = 5;
    EXPECT_EQ(test::refusal_of("--labels", [&] { keras_model_spec(foreign, KerasImportOptions{}, "f.h5"); }),
              "--labels is required for a Keras model: infant, synthseg, a model's folder, a .npy file or a list (a "
              "file written by "
              "this program's export records them)");
    expect_bad("predict --device cpu --i " + q("scan.nii.gz") + " --o " + q("out.nii.gz") + " --model " + q("ours") +
                   " --labels infant",
               "--labels, --channel-order, --orientation and --voxel-size are for a Keras model");
    expect_bad("predict --device cpu --i " + q("scan.nii.gz") + " --i " + q("scan.nii.gz") + " --o " + q("out.nii.gz") +
                   " --model " + q("ours"),
               "--i given 2 times (the channels of one subject), but " + path("ours") + " takes 1 image");
    // A damaged Keras 3 archive, wherever a Keras file is taken.
    std::ofstream(path("model.keras"), std::ios::binary) << std::string("PK\3\4", 4) << std::string(60, '\0');
    for (const std::string& command : {"import --keras " + q("model.keras") + " --out " + q("out") + " --labels infant",
                                       "predict --device cpu --i " + q("scan.nii.gz") + " --o " + q("out.nii.gz") +
                                           " --model " + q("model.keras") + " --labels infant"})
        expect_bad(command, "not a zip archive (no end of central directory record)");
    expect_bad("export --model " + q("model.keras") + " --keras " + q("again.h5"), "is a Keras file already");
    expect_bad("export --model " + q("ours") + " --keras " + q("ours.weights.h5"), "Keras 3 would read a .weights.h5");
}

// A Keras file's ending in any case: OURS.H5 is read as a Keras file, not as a model directory;
// a directory is one whatever its name.
TEST_F(KerasCli, KerasEndingsInAnyCase) {
    make_model_dir("ours");
    scan("scan.nii.gz");
    ASSERT_EQ(run("export --model " + q("ours") + " --keras " + q("OURS.H5")).status, 0);
    const test::RunResult r = run("predict --device cpu --i " + q("scan.nii.gz") + " --o " + q("seg.nii.gz") +
                                  " --model " + q("OURS.H5") + " --labels 0,2,3,41,42");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(path("seg.nii.gz")));
    // A model directory named so (import --out m.h5 makes one) is a model directory.
    make_model_dir("dir.h5");
    const test::RunResult d =
        run("predict --device cpu --i " + q("scan.nii.gz") + " --o " + q("seg_dir.nii.gz") + " --model " + q("dir.h5"));
    EXPECT_EQ(d.status, 0) << d.err;
    EXPECT_EQ(read_labels(path("seg_dir.nii.gz")).data, read_labels(path("seg.nii.gz")).data);
}

// A full disk under export: exit 1 naming the file the user gave, and the process ends cleanly
// (HDF5 kept a file whose close had failed open, and crashed at exit: 139).
TEST_F(KerasCli, ExportOnAFullDiskIsAFailedWrite) {
    if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no writable /dev/full here";
    make_model_dir("ours");
    fs::create_symlink("/dev/full", path("full.h5"));
    const test::RunResult r = run("export --model " + q("ours") + " --keras " + q("full.h5"));
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_NE(r.err.find(path("full.h5") + ": "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// import writes its two files as one set into a folder it makes: a failure at any write or move
// leaves neither file nor the folder (it left model.safetensors alone, which a rerun called "a
// model already" and predict could not load).
TEST_F(KerasCli, AFailedImportLeavesNoHalfModel) {
    make_model_dir("ours");
    ASSERT_EQ(run("export --model " + q("ours") + " --keras " + q("ours.h5")).status, 0);
    for (int k = 1; k <= 4; ++k) {  // 2 files, each moved by its writer, then by the set
        SCOPED_TRACE("fault at move " + std::to_string(k));
        const test::RunResult r = test::run_command("INFANT_FAULT_OUTPUT=" + std::to_string(k) + " " +
                                                    test::cli_path() + " import --keras " + q("ours.h5") +
                                                    " --out " + q("new/model") + " --labels 0,2,3,41,42");
        EXPECT_EQ(r.status, 1) << r.err;
        EXPECT_FALSE(fs::exists(path("new"))) << "a half model or its folder was left";
    }
}

// --- label order -------------------------------------------------------------------------------

// SynthSeg's networks since 2021 number their outputs by ascending label (np.unique), Infant-
// SynthSeg's and the 2020 SynthSeg.h5 unsided, left, right: --channel-order says which, and a
// file of our export records its own.
TEST(KerasLabels, TheChannelOrderIsTheOneGiven) {
    KerasUNet foreign;
    foreign.unet.classes = 5;
    KerasImportOptions options;
    options.labels = "42,41,24,2,0";
    EXPECT_EQ(keras_model_spec(foreign, options, "f.h5").labels, (std::vector<int32_t>{0, 24, 2, 41, 42}));
    options.channel_order = "freesurfer";
    EXPECT_EQ(keras_model_spec(foreign, options, "f.h5").labels, (std::vector<int32_t>{0, 24, 2, 41, 42}));
    options.channel_order = "ascending";
    EXPECT_EQ(keras_model_spec(foreign, options, "f.h5").labels, (std::vector<int32_t>{0, 2, 24, 41, 42}));
    options.labels = "synthseg";
    foreign.unet.classes = 32;
    const std::vector<int32_t> ascending = keras_model_spec(foreign, options, "f.h5").labels;
    EXPECT_TRUE(std::is_sorted(ascending.begin(), ascending.end()));
    EXPECT_EQ(ascending.size(), 32u);
    options.labels = "0,2,2,41,42,3";
    foreign.unet.classes = 6;
    EXPECT_EQ(test::refusal_of("--labels", [&] { keras_model_spec(foreign, options, "f.h5"); }),
              "--labels: label 2 is listed twice");
    options.labels = "0,2,-1,41,42,3";
    options.channel_order = "freesurfer";
    EXPECT_EQ(test::refusal_of("--labels", [&] { keras_model_spec(foreign, options, "f.h5"); }),
              "--labels: -1 is not a label (an integer from 0 to 65535)");
    options.labels = "1,2,3,41,42,43";
    options.channel_order = "ascending";
    EXPECT_EQ(test::refusal_of("--labels", [&] { keras_model_spec(foreign, options, "f.h5"); }),
              "--labels must hold 0, the background: the network has an output for it");
    // A file's list is named by the file.
    const fs::path dir = test::unique_temp_dir("keras-label-file");
    const std::string npy = (dir / "labels.npy").string();
    write_npy(npy, {6}, {0, 2, -172, 41, 42, 3});
    options.labels = npy;
    EXPECT_EQ(test::refusal_of("--labels", [&] { keras_model_spec(foreign, options, "f.h5"); }),
              "--labels " + npy + ": -172 is not a label (an integer from 0 to 65535)");
    fs::remove_all(dir);
    options.labels = "0,2,3,41,42,43";
    options.channel_order = "sideways";
    EXPECT_EQ(test::refusal_of("--channel-order", [&] { keras_model_spec(foreign, options, "f.h5"); }),
              "--channel-order must be freesurfer or ascending, got 'sideways'");
}

TEST(KerasLabels, FreeSurferOrderGivesThePublishedChannelOrders) {
    std::vector<int32_t> infant = labels::segmentation_labels();
    std::reverse(infant.begin(), infant.end());
    EXPECT_EQ(labels::freesurfer_sorted(infant), labels::segmentation_labels());
    std::vector<int32_t> synthseg = labels::synthseg_segmentation_labels();
    std::sort(synthseg.begin(), synthseg.end());
    EXPECT_EQ(labels::freesurfer_sorted(synthseg), labels::synthseg_segmentation_labels());
    EXPECT_EQ(labels::freesurfer_sorted({42, 0, 3, 24, 2, 41}), (std::vector<int32_t>{0, 24, 2, 3, 41, 42}));
    EXPECT_THROW(labels::freesurfer_sorted({0, 2, 2}), InputError);
    EXPECT_THROW(labels::freesurfer_sorted({0, 99999}), InputError);
}

}  // namespace
}  // namespace iss
