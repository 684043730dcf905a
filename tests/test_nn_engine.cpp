// The network engine above the kernels: allocators, the parameter store, the autograd tape
// through whole U-Nets (gradients against finite differences), overfitting one sample, and
// inference that frees memory as it goes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/common/error.h"
#include "kernels/common/philox.h"
#include "nn/autograd.h"
#include "nn/ops.h"
#include "nn/optimizer.h"
#include "nn/params.h"
#include "nn/tensor.h"
#include "nn/unet.h"
#include "tests/backends.h"
#include "tests/ref/conv.h"
#include "tests/ref/nn.h"

namespace iss {
namespace {

TEST(NnArenaAllocator, GrowsOnceThenAllocatesNothing) {
    DeviceContext ctx;
    ArenaAllocator arena(ctx);
    for (int step = 0; step < 3; ++step) {
        arena.reset();
        std::vector<Tensor> live;
        for (int i = 0; i < 5; ++i) live.push_back(Tensor::make(arena, Shape5{1, 8, 8, 8, 1 << 14}));  // 32 MiB each
        for (size_t i = 0; i < live.size(); ++i)
            for (size_t j = i + 1; j < live.size(); ++j)
                ASSERT_TRUE(live[j].data >= live[i].data + live[i].size() || live[i].data >= live[j].data + live[j].size())
                    << "arena blocks overlap";
        EXPECT_EQ(reinterpret_cast<uintptr_t>(live.back().data) % 256, 0u);
    }
    const int64_t after_first = arena.device_allocations();
    for (int step = 0; step < 3; ++step) {
        arena.reset();
        for (int i = 0; i < 5; ++i) Tensor::make(arena, Shape5{1, 8, 8, 8, 1 << 14});
    }
    EXPECT_EQ(arena.device_allocations(), after_first) << "steps after the first allocated device memory";
    EXPECT_GE(arena.peak_bytes(), size_t(5) * (32 << 20));
}

// The plan reuses memory by liveness: a block freed before the next is allocated shares its
// address, blocks alive together never overlap, and the planned size is the live peak.
TEST(NnArenaAllocator, PlanReusesMemoryByLiveness) {
    DeviceContext ctx;
    ArenaAllocator arena(ctx);
    const Shape5 big{1, 8, 8, 8, 1 << 14};  // 32 MiB
    const size_t bytes = size_t(big.size()) * sizeof(float);
    std::vector<float*> first_addresses;
    for (int step = 0; step < 3; ++step) {
        arena.reset();
        std::vector<float*> addresses;
        {
            Tensor a = Tensor::make(arena, big);
            Tensor b = Tensor::make(arena, big);
            addresses = {a.data, b.data};
            EXPECT_NE(a.data, b.data) << "alive together";
        }  // a and b freed
        Tensor c = Tensor::make(arena, big);
        addresses.push_back(c.data);
        if (step == 1) first_addresses = addresses;  // step 0 was recorded; 1 and 2 are planned
        if (step == 2) {
            EXPECT_EQ(addresses, first_addresses) << "a planned step reuses the same addresses";
        }
        if (step >= 1) {
            EXPECT_TRUE(c.data == addresses[0] || c.data == addresses[1]) << "c reuses freed memory";
        }
    }
    EXPECT_EQ(arena.planned_bytes(), 2 * bytes) << "two blocks are ever alive at once";
    EXPECT_EQ(arena.peak_bytes(), 2 * bytes);
    const int64_t planned = arena.device_allocations();
    // Another shape: served from the cache, recorded, planned again; nothing is lost.
    for (int step = 0; step < 3; ++step) {
        arena.reset();
        Tensor d = Tensor::make(arena, Shape5{1, 4, 4, 4, 1 << 10});
        Tensor e = Tensor::make(arena, Shape5{1, 4, 4, 4, 1 << 10});
        EXPECT_NE(d.data, e.data);
    }
    EXPECT_EQ(arena.planned_bytes(), 2 * (size_t(1) << 16) * sizeof(float));
    EXPECT_GT(arena.device_allocations(), planned);
    EXPECT_NE(arena.plan_text().find("2 buffers"), std::string::npos) << arena.plan_text();
}

// A recorded step comes from a pool that splits, merges and gives back what it outgrows:
// tensors that grow, each dropped before the next, hold the largest from the device, not the
// sum an exact-size cache held.
TEST(NnArenaAllocator, ARecordedStepHoldsItsLivePeak) {
    DeviceContext ctx;
    ArenaAllocator arena(ctx);
    const size_t mib = size_t(1) << 20;
    for (int step = 0; step < 2; ++step) {
        arena.reset();
        for (int64_t m = 2; m <= 16; m *= 2) Tensor::make(arena, Shape5{1, 1, 1, 1, m * int64_t(mib / sizeof(float))});
        EXPECT_EQ(arena.capacity_bytes(), 16 * mib) << "step " << step << (step ? " (planned)" : " (recorded)");
        const Tensor a = Tensor::make(arena, Shape5{1, 1, 1, 1, int64_t(mib / sizeof(float))});
        const Tensor b = Tensor::make(arena, Shape5{1, 1, 1, 1, int64_t(mib / sizeof(float))});
        EXPECT_EQ(arena.capacity_bytes(), 16 * mib) << "step " << step << ": two 1 MiB tensors in the 16 MiB";
    }
    EXPECT_EQ(arena.planned_bytes(), 16 * mib);
    EXPECT_EQ(arena.peak_bytes(), 16 * mib);
}

// A planned block kept across steps (the contract: one still alive keeps its memory) while a
// step of another size is recorded: the new plan waits, where the planned memory was freed under
// the block (ASan's heap-use-after-free in the sanitised suite; here its values were lost).
TEST(NnArenaAllocator, APlannedBlockKeptAcrossStepsKeepsItsMemory) {
    DeviceContext ctx;
    ArenaAllocator arena(ctx);
    const Shape5 small{1, 1, 1, 1, 1 << 10}, large{1, 1, 1, 1, 1 << 16};
    arena.reset();
    { Tensor t = Tensor::make(arena, small); }  // recorded
    arena.reset();
    Tensor kept = Tensor::make(arena, small);  // planned, and kept
    std::fill(kept.data, kept.data + kept.size(), 7.0f);
    Tensor::make(arena, large);  // diverges: the next step is recorded
    arena.reset();
    { Tensor t = Tensor::make(arena, large); }  // recorded, of another size
    arena.reset();
    { Tensor t = Tensor::make(arena, large); }
    arena.reset();
    EXPECT_TRUE(std::all_of(kept.data, kept.data + kept.size(), [](float v) { return v == 7.0f; }));
    kept = Tensor{};
    arena.reset();
    { Tensor t = Tensor::make(arena, large); }  // recorded again, now planned
    arena.reset();
    EXPECT_EQ(arena.planned_bytes(), size_t(1 << 16) * sizeof(float));
}

TEST(NnPoolAllocator, FreesAsValuesAreDropped) {
    DeviceContext ctx;
    PoolAllocator pool(ctx);
    {
        Tensor a = Tensor::make(pool, Shape5{1, 4, 4, 4, 8});
        Tensor b = Tensor::make(pool, Shape5{1, 4, 4, 4, 8});
        EXPECT_EQ(pool.live_bytes(), size_t(2) * 2048);
        Tensor c = a;  // shared
        a = Tensor{};
        EXPECT_EQ(pool.live_bytes(), size_t(2) * 2048);
    }
    EXPECT_EQ(pool.live_bytes(), 0u);
    EXPECT_EQ(pool.peak_bytes(), size_t(2) * 2048);
}

// From PoolAllocator::kLargeBytes on, a request is cut from the smallest free piece of an earlier
// device allocation that holds it (split when a large request's worth is left over), and freed
// neighbours merge again; below, only a freed block of its own size serves.
TEST(NnPoolAllocator, LargeRequestsAreCutFromFreeSpaceThatMergesAgain) {
    DeviceContext ctx;
    PoolAllocator pool(ctx);
    const size_t mib = size_t(1) << 20;
    char *three = nullptr, *eight = nullptr;
    void* small = nullptr;
    {
        const Block a = pool.allocate(3 * mib), b = pool.allocate(8 * mib), c = pool.allocate(64 * 1024);
        three = static_cast<char*>(a.ptr);
        eight = static_cast<char*>(b.ptr);
        small = c.ptr;
    }
    EXPECT_EQ(pool.live_bytes(), 0u);
    EXPECT_EQ(pool.capacity_bytes(), 11 * mib + 64 * 1024);
    {
        const Block two = pool.allocate(2 * mib);  // the 3 MiB piece, split: 1 MiB left free
        EXPECT_EQ(two.ptr, three);
        EXPECT_EQ(pool.live_bytes(), 2 * mib);
        const Block five = pool.allocate(5 * mib);  // the 8 MiB one: 3 MiB left
        EXPECT_EQ(five.ptr, eight);
        const Block another = pool.allocate(2 * mib);  // the smallest that holds it: those 3 MiB
        EXPECT_EQ(another.ptr, eight + 5 * mib);
        const Block one = pool.allocate(mib);  // one of the two 1 MiB pieces left: no device call
        EXPECT_TRUE(one.ptr == three + 2 * mib || one.ptr == eight + 7 * mib) << one.ptr;
        EXPECT_EQ(pool.capacity_bytes(), 11 * mib + 64 * 1024);
        const Block odd = pool.allocate(mib + mib / 2);  // nothing free holds it: a new allocation
        EXPECT_EQ(pool.capacity_bytes(), 12 * mib + mib / 2 + 64 * 1024);
        EXPECT_EQ(pool.live_bytes(), 11 * mib + mib / 2);
        const Block tiny = pool.allocate(1024);  // below the threshold: not the 64 KiB block
        EXPECT_NE(tiny.ptr, small);
        const Block same = pool.allocate(64 * 1024);
        EXPECT_EQ(same.ptr, small);
    }
    EXPECT_EQ(pool.live_bytes(), 0u);
    EXPECT_EQ(pool.peak_bytes(), 11 * mib + mib / 2 + 64 * 1024 + 1024);
    {
        // Every piece freed and merged: the whole allocations serve whole requests again.
        const Block a = pool.allocate(8 * mib), b = pool.allocate(3 * mib);
        EXPECT_EQ(a.ptr, eight);
        EXPECT_EQ(b.ptr, three);
        // A piece still held keeps its allocation; the free ones go back.
        pool.release_cached();
        EXPECT_EQ(pool.capacity_bytes(), 11 * mib);
    }
    pool.release_cached();
    EXPECT_EQ(pool.capacity_bytes(), 0u);
}

// A large request that no free piece holds first gives back the allocations wholly free (all
// smaller than it): kept, they would only add to the peak of tensors that grow as a forward or a
// training step goes. An allocation partly in use, and small freed blocks, stay.
TEST(NnPoolAllocator, GrowingGivesBackTheWhollyFreeAllocationsFirst) {
    DeviceContext ctx;
    PoolAllocator pool(ctx);
    const size_t mib = size_t(1) << 20;
    void* small = nullptr;
    char* six = nullptr;
    {
        const Block a = pool.allocate(2 * mib), b = pool.allocate(6 * mib), c = pool.allocate(64 * 1024);
        six = static_cast<char*>(b.ptr);
        small = c.ptr;
    }
    EXPECT_EQ(pool.device_allocations(), 3);
    const Block part = pool.allocate(3 * mib);  // from the 6 MiB allocation: 3 MiB of it left free
    EXPECT_EQ(part.ptr, six);
    const Block five = pool.allocate(5 * mib);  // neither free piece (2 and 3 MiB) holds it
    EXPECT_EQ(pool.device_allocations(), 4);
    EXPECT_EQ(pool.capacity_bytes(), 6 * mib + 5 * mib + 64 * 1024) << "the free 2 MiB allocation was kept";
    const Block three = pool.allocate(3 * mib);  // the rest of the partly used one
    EXPECT_EQ(three.ptr, six + 3 * mib);
    const Block same = pool.allocate(64 * 1024);
    EXPECT_EQ(same.ptr, small);
    EXPECT_EQ(pool.device_allocations(), 4);
}

// Random requests and releases, large and small: no two live blocks ever share a byte (each is
// filled with its own value and checked when it is dropped), the live count is what the blocks
// hold, and once all is dropped every device allocation goes back whole.
TEST(NnPoolAllocator, RandomRequestsNeverOverlap) {
    DeviceContext ctx;
    PoolAllocator pool(ctx);
    std::mt19937 rng(5);
    struct Held {
        Block block;
        unsigned char value;
        size_t bytes;
    };
    std::vector<Held> held;
    auto check_and_drop = [&](size_t i) {
        const auto* p = static_cast<const unsigned char*>(held[i].block.ptr);
        for (size_t b = 0; b < held[i].bytes; b += 4093)
            ASSERT_EQ(p[b], held[i].value) << "block " << i << " overwritten at byte " << b;
        ASSERT_EQ(p[held[i].bytes - 1], held[i].value);
        held.erase(held.begin() + std::ptrdiff_t(i));
    };
    for (int step = 0; step < 600; ++step) {
        if (!held.empty() && rng() % 5 < 2) {
            check_and_drop(rng() % held.size());
            continue;
        }
        const size_t bytes = rng() % 4 == 0 ? 1 + rng() % 70000 : (rng() % 6 + 1) * (size_t(1) << 20) + rng() % 300000;
        Held h{pool.allocate(bytes), static_cast<unsigned char>(step % 251), bytes};
        std::memset(h.block.ptr, h.value, bytes);
        held.push_back(h);
        size_t live = 0;
        for (const Held& e : held) live += e.bytes;
        EXPECT_GE(pool.live_bytes(), live);
        EXPECT_LE(pool.live_bytes(), live + held.size() * (PoolAllocator::kLargeBytes + 256));
        EXPECT_LE(pool.live_bytes(), pool.capacity_bytes());
    }
    while (!held.empty()) check_and_drop(held.size() - 1);
    EXPECT_EQ(pool.live_bytes(), 0u);
    pool.release_cached();
    EXPECT_EQ(pool.capacity_bytes(), 0u);
}

// Blocks may outlive their pool (a tensor kept after a predict): they stay valid, and their
// memory goes back when the last piece of each allocation is dropped, whichever that is (a
// leak shows under LeakSanitizer, `make test-asan`).
TEST(NnPoolAllocator, BlocksOutliveThePool) {
    DeviceContext ctx;
    const size_t mib = size_t(1) << 20;
    // Dropped last: the first piece (it merges with the free ones after it), then the middle one
    // (with the free ones on both sides).
    for (const bool middle_last : {false, true}) {
        std::vector<Block> kept;
        {
            PoolAllocator pool(ctx);
            char* eight = nullptr;
            {
                const Block big = pool.allocate(8 * mib);
                eight = static_cast<char*>(big.ptr);
            }
            kept.push_back(pool.allocate(2 * mib));  // cut from the freed 8 MiB: a free piece is left
            kept.push_back(pool.allocate(3 * mib));
            EXPECT_EQ(kept[0].ptr, eight);
            EXPECT_EQ(kept[1].ptr, eight + 2 * mib);
            kept.push_back(pool.allocate(1000));
            for (const Block& b : kept) std::memset(b.ptr, 7, b.bytes);
        }
        for (const Block& b : kept) EXPECT_EQ(static_cast<const unsigned char*>(b.ptr)[b.bytes - 1], 7);
        if (middle_last) std::swap(kept[0], kept[1]);
        while (!kept.empty()) kept.pop_back();
    }
}

// A fused ELU has no backward: conv3d takes one only with gradients off, so a training graph
// never records a node whose backward would skip the ELU's.
TEST(NnOps, FusedEluIsForInferenceOnly) {
    DeviceContext ctx;
    ParamStore params(ctx);
    const Param w = params.declare("w", {2, 3, 3, 3, 1}), b = params.declare("b", {2});
    params.allocate();
    ConvEngines engines(2, 3);
    PoolAllocator pool(ctx);
    Tensor x = Tensor::make(pool, Shape5{1, 4, 4, 4, 1});
    const std::vector<float> ones(64, 1.0f);
    ctx.copy_to_device(x.data, ones.data(), 64 * sizeof(float));
    Graph training(pool, params, true);
    EXPECT_THROW(conv3d(training, training.input(x), w, b, engines, DType::f32, 1.0f), Error);
    Graph inference(pool, params, false);
    EXPECT_NO_THROW(conv3d(inference, inference.input(x), w, b, engines, DType::f32, 1.0f));
}

// upsample_concat_conv (nn/ops.h) is the 3^3 convolution over concat(a, upsample2(b)) with its
// ELU, the concatenation never made. Against the double reference of that convolution
// (tests/ref/conv.h, over the concatenation built on the host): exactly on small integers
// without the ELU on the CPU (every product, partial sum and folded weight is then an exact
// float, so each of the 8 parities and every border must land where it belongs); on real values
// with the ELU within the two convolutions' tolerances (nn/conv.h); in bf16, where native,
// within the roundings of the weights (folded or not) and of the output. Odd coarse sizes and a
// batch of 2.
class NnUpsampledConv : public test::BackendTest {
protected:
    static constexpr int64_t kOut = 4;
    const Shape5 a_shape{2, 6, 10, 14, 3}, b_shape{2, 3, 5, 7, 5};
    const int64_t in_c = a_shape.c + b_shape.c;

    struct Inputs {
        std::vector<float> a, b, w, bias;
    };
    Inputs inputs(uint64_t seed, bool integers) const {
        auto values = [&](int64_t n, uint32_t stream) {
            std::vector<float> v(static_cast<size_t>(n));
            for (size_t i = 0; i < v.size(); i += 4) {
                float u[4];
                random_uniform4(RandomKey{seed, stream, 2}, i / 4, u);
                for (size_t e = 0; e < 4 && i + e < v.size(); ++e)
                    v[i + e] = integers ? std::floor(9 * u[e]) - 4 : 2 * u[e] - 1;
            }
            return v;
        };
        return Inputs{values(a_shape.size(), 0), values(b_shape.size(), 1), values(kOut * 27 * in_c, 2),
                      values(kOut, 3)};
    }
    // The op on `ctx`, its output widened to floats.
    std::vector<float> run(DeviceContext& ctx, const Inputs& in, Precision precision, float alpha) const {
        ParamStore params(ctx);
        const Param w = params.declare("w", {kOut, 3, 3, 3, in_c}), bias = params.declare("b", {kOut});
        params.allocate();
        params.upload(w, in.w);
        params.upload(bias, in.bias);
        UpsampledConvEngines engines(kOut);
        PoolAllocator pool(ctx);
        Graph g(pool, params, false);
        g.set_precision(precision);
        auto stored = [&](const std::vector<float>& v, const Shape5& shape) {
            Tensor t = Tensor::make(pool, shape, g.activation_type());
            with_storage(t.dtype, [&](auto type) {
                using T = decltype(type);
                std::vector<T> host;
                for (float e : v) host.push_back(narrow<T>(e));
                ctx.copy_to_device(t.raw(), host.data(), host.size() * sizeof(T));
            });
            return g.input(t);
        };
        const Var y = upsample_concat_conv(g, stored(in.a, a_shape), stored(in.b, b_shape), w, bias, engines, alpha);
        EXPECT_EQ(y.shape(), (Shape5{2, 6, 10, 14, kOut}));
        EXPECT_EQ(y.dtype(), g.activation_type());
        std::vector<float> out(size_t(y.value().size()));
        with_storage(y.dtype(), [&](auto type) {
            using T = decltype(type);
            std::vector<T> host(out.size());
            ctx.copy_to_host(host.data(), y.value().raw(), host.size() * sizeof(T));
            for (size_t i = 0; i < out.size(); ++i) out[i] = widen(host[i]);
        });
        return out;
    }
    // The convolution over the concatenation, in double, with a's or b's part alone where asked
    // (the other's values zero), and |x| * |w| where `magnitudes`.
    std::vector<double> reference(const Inputs& in, bool with_a, bool with_b, bool magnitudes = false) const {
        std::vector<double> a(in.a.begin(), in.a.end()), b(in.b.begin(), in.b.end());
        if (!with_a) a.assign(a.size(), 0.0);
        if (!with_b) b.assign(b.size(), 0.0);
        const std::vector<double> cat =
            ref::concat(a, a_shape.c, ref::upsample2(b, b_shape), b_shape.c, a_shape.voxels());
        std::vector<float> x(cat.begin(), cat.end()), w = in.w, bias = in.bias;
        if (magnitudes) {
            for (float& e : x) e = std::fabs(e);
            for (float& e : w) e = std::fabs(e);
            bias.assign(bias.size(), 0.0f);
        }
        const ConvShape shape{Shape5{a_shape.n, a_shape.d, a_shape.h, a_shape.w, in_c}, kOut, 3};
        return ref::conv3d_forward(shape, x, w, bias);
    }
    static double max_abs(const std::vector<double>& v) {
        double m = 0;
        for (double e : v) m = std::max(m, std::fabs(e));
        return m;
    }
};

TEST_P(NnUpsampledConv, IsTheConvolutionOverTheConcatenation) {
    // Small integers: exact on the CPU; within the contract on CUDA, whose algorithms may transform.
    const Inputs ints = inputs(3, true);
    const std::vector<double> exact = reference(ints, true, true);
    const double contract = 1e-4 * (max_abs(reference(ints, true, false)) + max_abs(reference(ints, false, true)));
    EXPECT_TRUE(test::all_near(run(ctx(), ints, Precision::fp32, 0.0f), exact, on_cuda() ? contract : 0.0));

    // Real values, with the ELU (1-Lipschitz; our exp within 2e-7 + 2u of 1).
    const Inputs real = inputs(4, false);
    const std::vector<double> conv = reference(real, true, true);
    const double tol = 1e-4 * (max_abs(reference(real, true, false)) + max_abs(reference(real, false, true))) + 1e-6;
    const std::vector<float> y = run(ctx(), real, Precision::fp32, 1.0f);
    EXPECT_TRUE(test::all_near(y, ref::elu(conv, 1.0), tol));
    bool negative = false;
    for (float v : y) negative |= v < 0;
    EXPECT_TRUE(negative) << "no output took the ELU's negative branch";

    if (!bf16_is_native(ctx())) {
        std::printf("bf16 is not native on this device: the bf16 case not run\n");
        return;
    }
    // bf16: the inputs rounded to bf16 values first (so both sides read the same), then each
    // weight, folded or not, rounded (at most 2^-9 of it: 2^-9 * sum |x| |w| over the terms), and
    // the output rounded once (2^-9 of it), on top of the fp32 contract.
    Inputs rounded = real;
    for (auto* v : {&rounded.a, &rounded.b})
        for (float& e : *v) e = widen(round_to_bf16(e));
    const std::vector<double> want = ref::elu(reference(rounded, true, true), 1.0);
    const std::vector<double> size = reference(rounded, true, true, /*magnitudes=*/true);
    const std::vector<float> got = run(ctx(), rounded, Precision::bf16, 1.0f);
    for (size_t i = 0; i < got.size(); ++i)
        ASSERT_LE(std::fabs(got[i] - want[i]), std::ldexp(size[i], -9) + std::ldexp(std::fabs(want[i]), -9) + tol)
            << "bf16 element " << i;
}

TEST_P(NnUpsampledConv, RefusesTrainingAndMismatchedShapes) {
    ParamStore params(ctx());
    const Param w = params.declare("w", {kOut, 3, 3, 3, in_c}), bias = params.declare("b", {kOut});
    params.allocate();
    UpsampledConvEngines engines(kOut), other(kOut + 1);
    PoolAllocator pool(ctx());
    Graph training(pool, params, true);
    Tensor a = Tensor::make(pool, a_shape), b = Tensor::make(pool, b_shape);
    EXPECT_THROW(upsample_concat_conv(training, training.input(a), training.input(b), w, bias, engines, 1.0f), Error);
    Graph g(pool, params, false);
    Tensor wrong_b = Tensor::make(pool, Shape5{2, 3, 5, 6, 5});
    EXPECT_THROW(upsample_concat_conv(g, g.input(a), g.input(wrong_b), w, bias, engines, 1.0f), Error) << "b's grid";
    EXPECT_THROW(upsample_concat_conv(g, g.input(a), g.input(b), w, bias, other, 1.0f), Error)
        << "the engines of another layer";
}

ISS_INSTANTIATE_BACKENDS(NnUpsampledConv);

TEST(NnParams, ViewsIntoFlatBuffersAndThePublishedCount) {
    DeviceContext ctx;
    ParamStore params(ctx);
    UNet net(UNetConfig{}, params);
    EXPECT_EQ(params.trainable_count(), 13240666) << "the published Infant-SynthSeg U-Net has 13,240,666";
    // 9 batch norms, running mean and variance each.
    EXPECT_EQ(params.state_count(), 2 * (24 + 48 + 96 + 192 + 384 + 24 + 48 + 96 + 192));
    const ParamInfo& first = params.infos().front();
    EXPECT_EQ(first.name, "enc0.conv0.weight");
    EXPECT_EQ(first.shape, (std::vector<int64_t>{24, 3, 3, 3, 1}));
    ParamStore small(ctx);
    const Param a = small.declare("a", {2, 3});
    const Param b = small.declare("b", {4});
    EXPECT_THROW(small.declare("a", {1}), Error);
    small.allocate();
    EXPECT_THROW(small.declare("late", {3}), Error);
    // b starts on the next 64-float boundary (256 bytes), not right after a's 6 values.
    EXPECT_EQ(small.value(b) - small.value(a), kParamAlignment);
    EXPECT_EQ(small.trainable_count(), 10);
    EXPECT_EQ(small.trainable_span(), kParamAlignment + 4);
    for (const ParamInfo& info : params.infos()) EXPECT_EQ(info.offset % kParamAlignment, 0) << info.name;
    small.upload(b, {1, 2, 3, 4});
    EXPECT_EQ(small.download(b), (std::vector<float>{1, 2, 3, 4}));
    EXPECT_THROW(small.upload(b, {1, 2}), Error);
    // Packed round trip: the gaps stay zero and the packed order is the declaration order.
    small.upload_packed(small.grads(), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    EXPECT_EQ(small.download_packed(small.grads()), (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
    std::vector<float> flat(size_t(small.trainable_span()));
    ctx.copy_to_host(flat.data(), small.grads(), flat.size() * sizeof(float));
    EXPECT_EQ(flat[6], 0.0f);
    EXPECT_EQ(flat[size_t(kParamAlignment)], 7.0f);
}

// A store for inference (predict, import, export) holds the values and the state alone: asking
// it for gradients or Adam moments is refused by name, not a null pointer.
TEST(NnParams, AnInferenceStoreHasNoGradientsOrMoments) {
    DeviceContext ctx;
    ParamStore params(ctx);
    const Param w = params.declare("w", {3});
    const Param mean = params.declare("mean", {2}, false);
    EXPECT_FALSE(params.trains());
    params.allocate(ParamStore::Use::inference);
    EXPECT_FALSE(params.trains());
    params.upload(w, {1, 2, 3});
    params.upload(mean, {4, 5});
    EXPECT_EQ(params.download(w), (std::vector<float>{1, 2, 3}));
    EXPECT_EQ(params.download(mean), (std::vector<float>{4, 5}));
    const auto refused = [](const std::function<void()>& call, const std::string& what) {
        try {
            call();
            ADD_FAILURE() << what << " was not refused";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("inference"), std::string::npos) << e.what();
        }
    };
    refused([&] { params.grads(); }, "gradients");
    refused([&] { params.adam_m(); }, "Adam moments");
    refused([&] { params.adam_v(); }, "Adam moments");
    refused([&] { params.zero_grads(); }, "gradients");
    EXPECT_THROW(params.grad(w), Error);
}

// --- whole-network gradients ----------------------------------------------------------------

class NnUNet : public test::BackendTest {};

std::vector<float> random_values(size_t n, uint64_t seed, float scale) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i += 4) {
        float z[4];
        random_normal4(RandomKey{seed, 0, 1}, i / 4, z);
        for (size_t e = 0; e < 4 && i + e < n; ++e) v[i + e] = scale * z[e];
    }
    return v;
}

// A target of 3 classes in slabs along z, as class indices.
std::vector<uint8_t> slab_target(const Shape5& s) {
    std::vector<uint8_t> t(size_t(s.voxels()));
    for (int64_t p = 0; p < s.voxels(); ++p) t[size_t(p)] = uint8_t((p / (s.w * s.h)) % s.d * 3 / s.d);
    return t;
}

struct TinySetup {
    UNetConfig config;
    ParamStore params;
    UNet net;
    TinySetup(DeviceContext& ctx, const UNetConfig& c) : config(c), params(ctx), net(c, params) {
        params.allocate();
        net.initialise(7);
    }
};

double dice_loss_of(DeviceContext& ctx, TinySetup& s, const std::vector<float>& image, const Shape5& shape,
                    const Buffer<uint8_t>& target, bool backward) {
    PoolAllocator pool(ctx);
    Graph g(pool, s.params, backward);
    Tensor x = Tensor::make(pool, shape);
    ctx.copy_to_device(x.data, image.data(), image.size() * sizeof(float));
    const Var logits = s.net.forward(g, g.input(x), true);
    const DiceResult loss = softmax_dice_loss(g, logits, target.data());
    if (backward) {
        s.params.zero_grads();
        g.backward();
    }
    return loss.loss;
}

TEST_P(NnUNet, ParameterGradientsMatchFiniteDifferences) {
    UNetConfig config;
    config.levels = 2;
    config.features = 3;
    config.classes = 3;
    TinySetup s(ctx(), config);
    const Shape5 shape{1, 4, 6, 8, 1};
    const std::vector<float> image = random_values(size_t(shape.size()), 3, 1.0f);
    Buffer<uint8_t> target(ctx(), slab_target(shape));
    dice_loss_of(ctx(), s, image, shape, target, true);
    std::vector<float> grads(size_t(s.params.trainable_span()));
    ctx().copy_to_host(grads.data(), s.params.grads(), grads.size() * sizeof(float));
    std::vector<float> values(grads.size());
    ctx().copy_to_host(values.data(), s.params.values(), values.size() * sizeof(float));
    // Central differences on a spread of parameters (every layer kind). The loss is float; a
    // step of 1e-2 keeps the rounding noise (~1e-7 / 1e-2) far below the gradients checked.
    int checked = 0;
    for (size_t i = 0; i < values.size(); i += values.size() / 23 + 1) {
        const float h = 1e-2f;
        std::vector<float> plus = values, minus = values;
        plus[i] += h;
        minus[i] -= h;
        ctx().copy_to_device(s.params.values(), plus.data(), plus.size() * sizeof(float));
        const double lp = dice_loss_of(ctx(), s, image, shape, target, false);
        ctx().copy_to_device(s.params.values(), minus.data(), minus.size() * sizeof(float));
        const double lm = dice_loss_of(ctx(), s, image, shape, target, false);
        const double numeric = (lp - lm) / (2.0 * h);
        EXPECT_NEAR(grads[i], numeric, 0.05 * std::fabs(numeric) + 2e-4) << "parameter element " << i;
        ++checked;
    }
    ctx().copy_to_device(s.params.values(), values.data(), values.size() * sizeof(float));
    EXPECT_GT(checked, 20);
}

TEST_P(NnUNet, OverfitsOneSample) {
    UNetConfig config;
    config.levels = 3;
    config.features = 8;
    config.classes = 3;
    TinySetup s(ctx(), config);
    const Shape5 shape{1, 16, 16, 16, 1};
    // The image tells the classes apart (three intensity slabs plus noise).
    const std::vector<uint8_t> classes = slab_target(shape);
    std::vector<float> image = random_values(size_t(shape.size()), 5, 0.1f);
    for (size_t p = 0; p < image.size(); ++p) image[p] += float(classes[p]);
    Buffer<uint8_t> target(ctx(), classes);
    Adam adam(AdamConfig{1e-2f, 0.9f, 0.999f, 1e-7f});
    ArenaAllocator arena(ctx());
    double first = 0, last = 0;
    for (int step = 0; step < 60; ++step) {
        arena.reset();
        Graph g(arena, s.params, true);
        Tensor x = Tensor::make(arena, shape);
        ctx().copy_to_device(x.data, image.data(), image.size() * sizeof(float));
        const DiceResult loss = softmax_dice_loss(g, s.net.forward(g, g.input(x), true), target.data());
        s.params.zero_grads();
        g.backward();
        adam.step(s.params);
        if (step == 0) first = loss.loss;
        last = loss.loss;
    }
    EXPECT_GT(first, 0.3);
    EXPECT_LT(last, 0.1) << "a tiny U-Net should overfit one easy sample in 60 steps (first loss " << first << ")";
}

// An allocator that never reuses memory (what a bump arena did): the reference the planned
// arena must match bit for bit.
class NeverReuse : public Allocator {
public:
    explicit NeverReuse(DeviceContext& ctx) : ctx_(ctx) {}
    ~NeverReuse() override {
        for (void* p : blocks_) ctx_.release(p);
    }
    Block allocate(size_t bytes) override {
        Block b;
        b.ptr = ctx_.allocate(std::max<size_t>(bytes, 1));
        b.bytes = bytes;
        blocks_.push_back(b.ptr);
        total_ += bytes;
        return b;
    }
    DeviceContext& context() override { return ctx_; }
    size_t capacity_bytes() const { return total_; }

private:
    DeviceContext& ctx_;
    std::vector<void*> blocks_;
    size_t total_ = 0;
};

// The planned arena only moves memory: training with it, every freed block filled with NaN at
// once, gives the losses and weights of an allocator that never reuses memory, bit for bit (a
// value read after its memory went to another would be NaN). And it needs far less memory than
// keeping every tensor of the step.
TEST_P(NnUNet, PlannedArenaOnlyMovesMemory) {
    UNetConfig config;
    config.levels = 3;
    config.features = 4;
    config.classes = 3;
    const Shape5 shape{1, 16, 16, 16, 1};
    const std::vector<uint8_t> classes = slab_target(shape);
    std::vector<float> image = random_values(size_t(shape.size()), 5, 0.1f);
    for (size_t p = 0; p < image.size(); ++p) image[p] += float(classes[p]);
    Buffer<uint8_t> target(ctx(), classes);
    auto run = [&](auto&& make_allocator, std::vector<double>& losses) {
        TinySetup s(ctx(), config);
        Adam adam(AdamConfig{1e-2f, 0.9f, 0.999f, 1e-7f});
        auto allocator = make_allocator();
        for (int step = 0; step < 4; ++step) {
            if constexpr (std::is_same_v<std::decay_t<decltype(*allocator)>, ArenaAllocator>) allocator->reset();
            Graph g(*allocator, s.params, true);
            Tensor x = Tensor::make(*allocator, shape);
            ctx().copy_to_device(x.data, image.data(), image.size() * sizeof(float));
            double loss = 0;
            {
                const Var logits = s.net.forward(g, g.input(x), true);
                loss = softmax_dice_loss(g, logits, target.data()).loss;
            }
            s.params.zero_grads();
            g.backward();
            adam.step(s.params);
            losses.push_back(loss);
        }
        std::vector<float> weights(size_t(s.params.trainable_span()));
        ctx().copy_to_host(weights.data(), s.params.values(), weights.size() * sizeof(float));
        return std::make_pair(weights, allocator->capacity_bytes());
    };
    std::vector<double> reference_losses, planned_losses;
    const auto reference = run([&] { return std::make_unique<NeverReuse>(ctx()); }, reference_losses);
    const auto planned = run(
        [&] {
            auto a = std::make_unique<ArenaAllocator>(ctx());
            a->set_poison(true);
            return a;
        },
        planned_losses);
    EXPECT_EQ(planned_losses, reference_losses);
    EXPECT_TRUE(planned.first == reference.first) << "weights differ after 4 steps";
    for (double l : planned_losses) EXPECT_TRUE(std::isfinite(l));
    // Memory: one step of the never-reusing allocator against the plan.
    NeverReuse one_step(ctx());
    {
        TinySetup s(ctx(), config);
        Graph g(one_step, s.params, true);
        Tensor x = Tensor::make(one_step, shape);
        ctx().copy_to_device(x.data, image.data(), image.size() * sizeof(float));
        {
            const Var logits = s.net.forward(g, g.input(x), true);
            softmax_dice_loss(g, logits, target.data());
        }
        g.backward();
    }
    EXPECT_LT(double(planned.second), 0.6 * double(one_step.capacity_bytes()))
        << "planned " << planned.second << " bytes against " << one_step.capacity_bytes() << " kept by a bump arena";
}

// Inference in slabs along D (the last level, the head and the softmax) gives the whole-volume
// probabilities: each output row sees the same inputs, and only the convolutions' summation
// order may differ with the slab's shape (nn/conv.h: 1e-4 of the largest |output| per layer;
// the probabilities, in [0, 1] after two convolutions and the head, agree to 1e-4). Odd slab
// depths, a volume that is no multiple of them, and slabs of one row all give it. And the slabs
// need less memory: the last concatenation never exists whole. With 2 and 3 convolutions a
// level: a slab's inner convolutions run unpadded along D except at the volume's ends
// (nn/unet.cpp: last_level_rows), over halos of one and two rows.
TEST_P(NnUNet, SlabbedPredictMatchesTheWholeVolume) {
    for (const int convs : {2, 3}) {
        SCOPED_TRACE(cat(convs, " convolutions a level"));
        UNetConfig config;
        config.levels = 3;
        config.features = 4;
        config.classes = 5;
        config.convs_per_level = convs;
        TinySetup s(ctx(), config);
        const Shape5 shape{1, 20, 12, 16, 1};
        const std::vector<float> image = random_values(size_t(shape.size()), 17, 1.0f);
        auto probabilities = [&](int64_t slab, size_t* peak) {
            PoolAllocator pool(ctx());
            Graph g(pool, s.params, false);
            Tensor x = Tensor::make(pool, shape);
            ctx().copy_to_device(x.data, image.data(), image.size() * sizeof(float));
            const Var probs = s.net.predict(g, g.input(x), slab);
            std::vector<float> p(size_t(probs.value().size()));
            ctx().copy_to_host(p.data(), probs.data(), p.size() * sizeof(float));
            *peak = pool.peak_bytes();
            return p;
        };
        size_t whole_peak = 0, slab_peak = 0;
        const std::vector<float> whole = probabilities(0, &whole_peak);
        for (const int64_t slab : {1, 3, 4, 7}) {
            EXPECT_TRUE(test::all_near(probabilities(slab, &slab_peak), whole, 1e-4)) << "slabs of " << slab;
            // (With 3 convolutions the halo of 3 rows a side makes a slab of 3 or 4 half of
            // this small volume.)
            if (slab <= 4 && convs == 2) {
                EXPECT_LT(slab_peak, whole_peak) << "slabs of " << slab;
            }
        }
    }
}

TEST_P(NnUNet, InferenceFreesAsItGoesAndMatchesTrainingGraphShape) {
    UNetConfig config;
    config.levels = 3;
    config.features = 4;
    config.classes = 5;
    TinySetup s(ctx(), config);
    const Shape5 shape{1, 16, 16, 16, 1};
    PoolAllocator pool(ctx());
    Graph g(pool, s.params, false);
    Tensor x = Tensor::make(pool, shape);
    const std::vector<float> image = random_values(size_t(shape.size()), 9, 1.0f);
    ctx().copy_to_device(x.data, image.data(), image.size() * sizeof(float));
    const Var probs = softmax(g, s.net.forward(g, g.input(x), false));
    EXPECT_EQ(g.node_count(), 0u);
    EXPECT_EQ(probs.shape(), (Shape5{1, 16, 16, 16, 5}));
    std::vector<float> p(size_t(probs.value().size()));
    ctx().copy_to_host(p.data(), probs.data(), p.size() * sizeof(float));
    for (int64_t v = 0; v < shape.voxels(); ++v) {
        const double sum = std::accumulate(p.begin() + v * 5, p.begin() + v * 5 + 5, 0.0);
        ASSERT_NEAR(sum, 1.0, 1e-5);
    }
    // Only the input and the probabilities are alive now; the peak held the skips.
    EXPECT_LT(pool.live_bytes(), size_t(shape.voxels()) * 4 * 7);
    EXPECT_GT(pool.peak_bytes(), pool.live_bytes());
    // The same weights on CUDA and on the CPU: the convolutions accumulate in different orders
    // (cuDNN's algorithms vs oneDNN's), each within 1e-4 of the largest output (nn/conv.h), and
    // the softmax keeps probabilities within a few 1e-5 of each other.
    if (on_cuda()) {
        DeviceContext cpu;
        TinySetup on_cpu(cpu, config);
        PoolAllocator cpu_pool(cpu);
        Graph cpu_graph(cpu_pool, on_cpu.params, false);
        Tensor cpu_x = Tensor::make(cpu_pool, shape);
        cpu.copy_to_device(cpu_x.data, image.data(), image.size() * sizeof(float));
        const Var cpu_probs = softmax(cpu_graph, on_cpu.net.forward(cpu_graph, cpu_graph.input(cpu_x), false));
        std::vector<float> q(p.size());
        cpu.copy_to_host(q.data(), cpu_probs.data(), q.size() * sizeof(float));
        EXPECT_TRUE(test::all_near(p, q, 1e-4)) << "CUDA and CPU inference differ";
    }
    // Wrong sizes are named.
    Tensor odd = Tensor::make(pool, Shape5{1, 10, 16, 16, 1});
    EXPECT_THROW(s.net.forward(g, g.input(odd), false), InputError);
}

ISS_INSTANTIATE_BACKENDS(NnUNet);

}  // namespace
}  // namespace iss
