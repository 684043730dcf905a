// Model and optimizer files: round trips, mismatches named, nothing loaded half, and resuming
// from a checkpoint repeats the uninterrupted run bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "io/safetensors.h"
#include "kernels/common/error.h"
#include "kernels/common/philox.h"
#include "nn/checkpoint.h"
#include "nn/ops.h"
#include "tests/backends.h"
#include "tests/test_util.h"

namespace iss {
namespace {

UNetConfig tiny_config() {
    UNetConfig c;
    c.levels = 2;
    c.features = 4;
    c.classes = 3;
    return c;
}

struct Model {
    ParamStore params;
    UNet net;
    Model(DeviceContext& ctx, const UNetConfig& c, uint64_t seed) : params(ctx), net(c, params) {
        params.allocate();
        net.initialise(seed);
    }
};

std::vector<float> all_values(ParamStore& p) {
    std::vector<float> v(size_t(p.trainable_span() + p.state_span()));
    p.context().copy_to_host(v.data(), p.values(), size_t(p.trainable_span()) * sizeof(float));
    p.context().copy_to_host(v.data() + p.trainable_span(), p.state(), size_t(p.state_span()) * sizeof(float));
    return v;
}

// One training step on a fixed input; the sample number picks the input.
double train_step(DeviceContext& ctx, Model& m, Adam& adam, ArenaAllocator& arena, uint32_t sample) {
    const Shape5 shape{1, 8, 8, 8, 1};
    std::vector<float> image(size_t(shape.size()));
    std::vector<uint8_t> target(size_t(shape.voxels()));
    for (size_t i = 0; i < image.size(); ++i) {
        float u[4];
        random_uniform4(RandomKey{1, sample, 0}, i, u);
        image[i] = u[0];
        target[i] = uint8_t(u[1] * 3);
    }
    arena.reset();
    Graph g(arena, m.params, true);
    Tensor x = Tensor::make(arena, shape);
    ctx.copy_to_device(x.data, image.data(), image.size() * sizeof(float));
    Buffer<uint8_t> t(ctx, target);
    const DiceResult loss = softmax_dice_loss(g, m.net.forward(g, g.input(x), true), t.data());
    m.params.zero_grads();
    g.backward();
    adam.step(m.params);
    return loss.loss;
}

// The description of a tiny_config() network with `labels` (RAS, size multiple 2), and a voxel
// size or none.
ModelSpec tiny_spec(std::vector<int32_t> labels, nlohmann::json voxel_size_mm = nullptr) {
    ModelSpec spec;
    spec.unet = tiny_config();
    spec.labels = std::move(labels);
    spec.preprocessing = {{"orientation", "RAS"}, {"size_multiple", 2}, {"voxel_size_mm", std::move(voxel_size_mm)}};
    return spec;
}

class Checkpoint : public test::TempDirTest {};

// model.json is untrusted: every field is checked before anything is built, and a bad one is
// an InputError naming the file and the field (the CLI's exit 2), never a JSON library exception,
// a crash or a huge allocation. Each case edits one field of a valid file.
TEST_F(Checkpoint, TamperedModelDescriptionsAreNamedInputErrors) {
    DeviceContext ctx;
    {
        Model a(ctx, tiny_config(), 3);
        const ModelSpec spec = tiny_spec({0, 2, 41}, {1, 1, 1});
        save_model(path("model.safetensors"), spec, a.params);
    }
    const std::string file = path("model.safetensors"), json_file = path("model.json");
    const std::string written = test::read_text(json_file);
    nlohmann::json valid = nlohmann::json::parse(written);
    valid.erase("record_crc32");  // each case's edit on purpose
    struct Case {
        const char* what;
        std::function<void(nlohmann::json&)> edit;
        const char* message;
    };
    const std::vector<Case> cases = {
        {"levels as a string", [](nlohmann::json& j) { j["architecture"]["levels"] = "5"; },
         "field 'architecture.levels' must be an integer"},
        {"levels 2.5", [](nlohmann::json& j) { j["architecture"]["levels"] = 2.5; },
         "field 'architecture.levels' must be an integer"},
        {"features 2^30", [](nlohmann::json& j) { j["architecture"]["features"] = 1 << 30; },
         "field 'architecture.features' = 1073741824 is out of range"},
        {"kernel 2", [](nlohmann::json& j) { j["architecture"]["kernel"] = 2; }, "must be 1 or 3"},
        {"activation relu", [](nlohmann::json& j) { j["architecture"]["activation"] = "relu"; },
         "field 'architecture.activation' = \"relu\" is not one of \"elu\""},
        {"epsilon negative", [](nlohmann::json& j) { j["architecture"]["batch_norm"]["epsilon"] = -1; },
         "field 'architecture.batch_norm.epsilon'"},
        {"classes 300", [](nlohmann::json& j) { j["architecture"]["classes"] = 300; },
         "field 'architecture.classes' = 300 is out of range"},
        {"label -5", [](nlohmann::json& j) { j["labels"][1] = -5; }, "field 'labels': -5 is not a label"},
        {"label 70000", [](nlohmann::json& j) { j["labels"][1] = 70000; }, "field 'labels': 70000 is not a label"},
        {"label 2.5", [](nlohmann::json& j) { j["labels"][1] = 2.5; }, "field 'labels': 2.5 is not a label"},
        {"label twice", [](nlohmann::json& j) { j["labels"][2] = 0; }, "field 'labels': 0 is listed twice"},
        {"labels short", [](nlohmann::json& j) { j["labels"].erase(2); }, "must list 3 labels"},
        {"size_multiple 2^31", [](nlohmann::json& j) { j["preprocessing"]["size_multiple"] = int64_t(1) << 31; },
         "field 'preprocessing.size_multiple' = 2147483648 is out of range"},
        {"size_multiple 1024", [](nlohmann::json& j) { j["preprocessing"]["size_multiple"] = 1024; },
         "field 'preprocessing.size_multiple' = 1024 is out of range"},
        {"size_multiple 3", [](nlohmann::json& j) { j["preprocessing"]["size_multiple"] = 3; },
         "is not a multiple of the network's 2"},
        {"orientation XYZ", [](nlohmann::json& j) { j["preprocessing"]["orientation"] = "XYZ"; },
         "field 'preprocessing.orientation'"},
        {"normalisation", [](nlohmann::json& j) { j["preprocessing"]["normalisation"] = "z-score"; },
         "field 'preprocessing.normalisation' = \"z-score\" is not one of"},
        {"voxel size 0", [](nlohmann::json& j) { j["preprocessing"]["voxel_size_mm"] = {0, 1, 1}; },
         "field 'preprocessing.voxel_size_mm' must hold voxel sizes"},
        {"no voxel size", [](nlohmann::json& j) { j["preprocessing"].erase("voxel_size_mm"); },
         "missing field 'preprocessing.voxel_size_range_mm'"},
        {"no preprocessing", [](nlohmann::json& j) { j.erase("preprocessing"); }, "missing field 'preprocessing'"},
        {"version string", [](nlohmann::json& j) { j["version"] = "1"; }, "field 'version' must be an integer"},
    };
    for (const Case& c : cases) {
        nlohmann::json j = valid;
        c.edit(j);
        std::ofstream(json_file) << j.dump();
        try {
            load_model_spec(file);
            ADD_FAILURE() << c.what << ": accepted";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(json_file + ": "), std::string::npos) << c.what << ": " << e.what();
            EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << c.what << ": " << e.what();
        }
    }
    // A valid description of a network far larger than the weights file: refused before anything
    // is allocated for it.
    nlohmann::json large = valid;
    large["architecture"]["features"] = 1024;
    std::ofstream(json_file) << large.dump();
    try {
        load_model_spec(file);
        ADD_FAILURE() << "a 1024-feature network accepted with small weights";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(" bytes cannot hold the "), std::string::npos) << e.what();
    }
    std::ofstream(json_file) << valid.dump();
    EXPECT_NO_THROW(load_model_spec(file)) << "a record without its record_crc32 (edited on purpose, or older)";

    // The record as written states the CRC of its fields: an edit that keeps every field valid
    // (labels 2 and 41 swapped: left and right swapped in every segmentation, exit 0) is refused,
    // reformatted it is not (indentation, key order); a CRC not as written is named.
    const nlohmann::json stated = nlohmann::json::parse(written);
    ASSERT_TRUE(stated.contains("record_crc32"));
    std::ofstream(json_file) << stated.dump(4);
    EXPECT_NO_THROW(load_model_spec(file)) << "reformatted";
    // As jq writes it: integral numbers without their ".0" (elu_alpha 1, voxel sizes 1), and a
    // value's other spelling (1e-3 for 0.001, batch norm's epsilon, written as its float's
    // shortest decimal): the same values, the same record.
    std::string as_jq = stated.dump(1);
    const std::string epsilon = stated["architecture"]["batch_norm"]["epsilon"].dump();
    ASSERT_EQ(epsilon, "0.001") << "a float's shortest decimal, not its double's 0.0010000000474974513";
    EXPECT_EQ(stated["architecture"]["batch_norm"]["momentum"].dump(), "0.99");
    int replaced = 0;
    for (const auto& [from, to] :
         std::vector<std::pair<std::string, std::string>>{{"1.0,", "1,"}, {"1.0\n", "1\n"}, {epsilon, "1e-3"}})
        for (size_t at = as_jq.find(from); at != std::string::npos; at = as_jq.find(from, at + to.size())) {
            as_jq.replace(at, from.size(), to);
            ++replaced;
        }
    ASSERT_GE(replaced, 2) << as_jq;  // elu_alpha 1.0 at least, and the epsilon
    std::ofstream(json_file) << as_jq;
    EXPECT_NO_THROW(load_model_spec(file)) << as_jq;
    nlohmann::json swapped = stated;
    swapped["labels"] = {0, 41, 2};
    std::ofstream(json_file) << swapped.dump(2);
    const std::string refusal = test::refusal_of(json_file, [&] { load_model_spec(file); });
    EXPECT_NE(refusal.find(": its fields are not those it was written with (record_crc32 " +
                           stated["record_crc32"].get<std::string>() + ", the fields' "),
              std::string::npos)
        << refusal;
    EXPECT_NE(refusal.find("a record edited on purpose: remove its record_crc32"), std::string::npos) << refusal;
    nlohmann::json odd = stated;
    odd["record_crc32"] = 12;
    std::ofstream(json_file) << odd.dump(2);
    EXPECT_NE(test::refusal_of(json_file, [&] { load_model_spec(file); })
                  .find(": its record_crc32 is 12, not 8 lowercase hex digits"),
              std::string::npos);

    // The weights: a NaN, and a negative running variance.
    auto tampered_weights = [&](const std::string& tensor, float value) {
        SafetensorsFile f = read_safetensors(file);
        std::vector<SafeTensor> tensors;
        for (SafeTensor t : f.tensors) {
            if (t.name == tensor) {
                std::vector<float> v = t.as_f32();
                v[0] = value;
                t = SafeTensor::f32(t.name, t.shape, v);
            }
            tensors.push_back(t);
        }
        const std::string bad = path("bad.safetensors");
        write_safetensors(bad, tensors, f.metadata);
        std::ofstream(path("bad.json")) << valid.dump();
        Model b(ctx, tiny_config(), 3);
        try {
            load_weights(bad, b.params);
            return std::string("(accepted)");
        } catch (const InputError& e) {
            return std::string(e.what());
        }
    };
    EXPECT_NE(tampered_weights("enc0.conv0.weight", std::nanf("")).find("tensor enc0.conv0.weight holds nan"),
              std::string::npos);
    EXPECT_NE(tampered_weights("enc0.bn.running_var", -1.0f).find("negative variance"), std::string::npos);
}

// require_usable_parameter's branch-free pass and the element search after it agree: -0 and any
// negative weight pass, a NaN, an infinity and a negative variance (a denormal one too) are named
// with their element.
TEST(UsableParameter, EveryKindOfValueIsJudgedAsItsElementIs) {
    auto verdict = [](float value, bool variance) {
        std::vector<float> values(37, 0.5f);
        values[29] = value;
        try {
            require_usable_parameter(values, "t", variance);
            return std::string("usable");
        } catch (const InputError& e) {
            return std::string(e.what());
        }
    };
    const float inf = std::numeric_limits<float>::infinity(), denormal = -std::numeric_limits<float>::denorm_min();
    EXPECT_EQ(verdict(-0.0f, true), "usable");
    EXPECT_EQ(verdict(-3.0f, false), "usable");
    EXPECT_EQ(verdict(denormal, false), "usable");
    EXPECT_EQ(verdict(std::nanf(""), false), "t holds nan at element 29");
    EXPECT_EQ(verdict(inf, false), "t holds inf at element 29");
    EXPECT_EQ(verdict(-inf, true), "t holds -inf at element 29");
    EXPECT_EQ(verdict(-2.0f, true), "t holds the negative variance -2 at element 29");
    EXPECT_NE(verdict(denormal, true).find("t holds the negative variance"), std::string::npos);
}

TEST_F(Checkpoint, KeptWeightsAreKnownByTheirStep) {
    EXPECT_EQ(kept_weights_name(42), "step_0000042.safetensors");
    EXPECT_EQ(kept_weights_step(kept_weights_name(12345678)), 12345678);
    EXPECT_EQ(kept_weights_step("step_0000042.json"), 42);
    EXPECT_FALSE(kept_weights_step("step_0000042.json", true)) << "the weights alone";
    // A file of 20 digits is no step (its std::stoll stopped a resume with "internal error: stoll").
    for (const std::string name : {"step_99999999999999999999.json", "step_.safetensors", "step_1a.json",
                                   "step_0000042.safetensors.tmp-7.safetensors", "weights.safetensors"})
        EXPECT_FALSE(kept_weights_step(name)) << name;
    // Listed by step: past 9,999,999 steps a name has more digits, and sorts before as text.
    const std::string folder = path("weights");
    std::filesystem::create_directories(folder);
    for (const int64_t step : {10000000, 9000000, 20}) std::ofstream(folder + "/" + kept_weights_name(step)) << "x";
    EXPECT_EQ(kept_weights_files(folder), (std::vector<std::string>{kept_weights_name(20), kept_weights_name(9000000),
                                                                    kept_weights_name(10000000)}));
}

TEST_F(Checkpoint, ModelRoundTripAndSelfDescription) {
    DeviceContext ctx;
    Model a(ctx, tiny_config(), 3);
    const ModelSpec spec = tiny_spec({0, 2, 41});
    const std::string file = path("model.safetensors");
    save_model(file, spec, a.params);
    const ModelSpec back = load_model_spec(file);
    EXPECT_EQ(back.unet.levels, 2);
    EXPECT_EQ(back.unet.features, 4);
    EXPECT_EQ(back.labels, spec.labels);
    EXPECT_EQ(back.preprocessing["orientation"], "RAS");
    Model b(ctx, back.unet, 99);
    EXPECT_NE(all_values(b.params), all_values(a.params));
    load_weights(file, b.params);
    EXPECT_EQ(all_values(b.params), all_values(a.params));
    // Readable by any safetensors reader: names and shapes as declared.
    const SafetensorsFile raw = read_safetensors(file);
    EXPECT_EQ(raw.at("enc0.conv0.weight").shape, (std::vector<int64_t>{4, 3, 3, 3, 1}));
    EXPECT_TRUE(raw.contains("enc1.bn.running_var"));
}

TEST_F(Checkpoint, MismatchesAreNamedAndNothingIsLoaded) {
    DeviceContext ctx;
    Model a(ctx, tiny_config(), 3);
    const ModelSpec spec = tiny_spec({0, 1, 2});
    const std::string file = path("model.safetensors");
    save_model(file, spec, a.params);
    UNetConfig wider = tiny_config();
    wider.features = 5;
    Model b(ctx, wider, 4);
    const std::vector<float> before = all_values(b.params);
    try {
        load_weights(file, b.params);
        FAIL() << "a 4-feature model loaded into a 5-feature one";
    } catch (const InputError& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find(file), std::string::npos) << message;
        EXPECT_NE(message.find("enc0.conv0.weight has shape [4, 3, 3, 3, 1], the model expects [5, 3, 3, 3, 1]"),
                  std::string::npos)
            << message;
    }
    EXPECT_EQ(all_values(b.params), before) << "a failed load changed parameters";
    // A foreign safetensors file and a truncated one.
    write_safetensors(path("foreign.safetensors"), {SafeTensor::f32("w", {2}, {1, 2})});
    EXPECT_THROW(load_weights(path("foreign.safetensors"), b.params), InputError);
    std::ofstream(path("cut.safetensors"), std::ios::binary) << "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":";
    EXPECT_THROW(load_weights(path("cut.safetensors"), b.params), InputError);
    // A JSON whose architecture does not match the weights: the spec loads, the weights don't.
    std::ofstream(path("bad.json")) << R"({"format": "infant-synthseg-model", "version": 1, "labels": [0]})";
    write_safetensors(path("bad.safetensors"), {SafeTensor::f32("w", {1}, {1})});
    EXPECT_THROW(load_model_spec(path("bad.safetensors")), InputError);
    EXPECT_THROW(load_model_spec(path("missing.safetensors")), InputError);
}

// Adam's step count is digits, as written (std::stoll alone takes " 3"; "12abc" and -1 were taken
// before 2026-12-06).
TEST_F(Checkpoint, AnOptimizersStepThatIsNoCountIsRefused) {
    DeviceContext ctx;
    Model model(ctx, tiny_config(), 3);
    const int64_t n = model.params.trainable_count();
    const std::vector<float> zeros(size_t(n), 0.0f);
    const std::string file = path("model.optimizer.safetensors");
    for (const char* step : {"12abc", "-1", "", " 3", "1e3", "99999999999999999999"}) {
        write_safetensors(file, {SafeTensor::f32("adam.m", {n}, zeros), SafeTensor::f32("adam.v", {n}, zeros)},
                          {{"format", "infant-synthseg-optimizer"}, {"adam_step", step}});
        Adam adam(AdamConfig{1e-3f, 0.9f, 0.999f, 1e-7f});
        try {
            load_optimizer(file, model.params, adam);
            ADD_FAILURE() << "adam_step '" << step << "' was taken as " << adam.steps();
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find(cat(file, ": adam_step '", step, "' is not a step count")),
                      std::string::npos)
                << e.what();
        }
        EXPECT_EQ(adam.steps(), 0) << step;
    }
    write_safetensors(file, {SafeTensor::f32("adam.m", {n}, zeros), SafeTensor::f32("adam.v", {n}, zeros)},
                      {{"format", "infant-synthseg-optimizer"}, {"adam_step", "7"}});
    Adam adam(AdamConfig{1e-3f, 0.9f, 0.999f, 1e-7f});
    load_optimizer(file, model.params, adam);
    EXPECT_EQ(adam.steps(), 7);
}

// On every backend: resuming must repeat the run on the same device.
class CheckpointResume : public test::BackendTest {
protected:
    std::string path(const std::string& name) const { return (dir_ / name).string(); }
    std::filesystem::path dir_ = test::unique_temp_dir("checkpoint-resume");
    ~CheckpointResume() override {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
};

TEST_P(CheckpointResume, RepeatsTheUninterruptedRunBitForBit) {
    DeviceContext& ctx = this->ctx();
    // Uninterrupted: 6 steps.
    Model straight(ctx, tiny_config(), 11);
    Adam adam_straight(AdamConfig{1e-3f, 0.9f, 0.999f, 1e-7f});
    ArenaAllocator arena(ctx);
    std::vector<double> losses_straight;
    for (uint32_t s = 0; s < 6; ++s) losses_straight.push_back(train_step(ctx, straight, adam_straight, arena, s));

    // Interrupted after 3 steps, saved, reloaded into a fresh model, then 3 more.
    Model first(ctx, tiny_config(), 11);
    Adam adam_first(AdamConfig{1e-3f, 0.9f, 0.999f, 1e-7f});
    for (uint32_t s = 0; s < 3; ++s) EXPECT_EQ(train_step(ctx, first, adam_first, arena, s), losses_straight[s]);
    const ModelSpec spec = tiny_spec({0, 1, 2});
    save_model(path("m.safetensors"), spec, first.params);
    save_optimizer(path("m.optimizer.safetensors"), first.params, adam_first, {{"step", "3"}});

    Model resumed(ctx, load_model_spec(path("m.safetensors")).unet, 999);
    Adam adam_resumed(AdamConfig{1e-3f, 0.9f, 0.999f, 1e-7f});
    load_weights(path("m.safetensors"), resumed.params);
    const auto meta = load_optimizer(path("m.optimizer.safetensors"), resumed.params, adam_resumed);
    EXPECT_EQ(meta.at("step"), "3");
    EXPECT_EQ(adam_resumed.steps(), 3);
    for (uint32_t s = 3; s < 6; ++s)
        EXPECT_EQ(train_step(ctx, resumed, adam_resumed, arena, s), losses_straight[s]) << "step " << s;
    EXPECT_EQ(all_values(resumed.params), all_values(straight.params));
}

ISS_INSTANTIATE_BACKENDS(CheckpointResume);

}  // namespace
}  // namespace iss
