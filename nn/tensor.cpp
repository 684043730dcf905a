#include "nn/tensor.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "kernels/common/device.h"
#include "kernels/common/error.h"

namespace iss {

namespace {
constexpr size_t alignment = 256;  // cuDNN and AVX-512 friendly
size_t round_up(size_t bytes) { return (bytes + alignment - 1) / alignment * alignment; }
}  // namespace

Tensor Tensor::make(Allocator& allocator, const Shape5& shape, DType dtype) {
    ISS_REQUIRE(shape.n > 0 && shape.d > 0 && shape.h > 0 && shape.w > 0 && shape.c > 0, "tensor of shape ",
                shape.str(), " has an empty dimension");
    Block block = allocator.allocate(size_t(shape.size()) * dtype_bytes(dtype));
    Tensor t;
    if (dtype == DType::bf16)
        t.bf16_data = static_cast<Bf16*>(block.ptr);
    else
        t.data = static_cast<float*>(block.ptr);
    t.dtype = dtype;
    t.shape = shape;
    t.holder = std::move(block.holder);
    return t;
}

template <>
float* Tensor::as<float>() const {
    ISS_REQUIRE(dtype == DType::f32, "a ", dtype_name(dtype), " tensor of shape ", shape.str(), " used as fp32");
    return data;
}

template <>
Bf16* Tensor::as<Bf16>() const {
    ISS_REQUIRE(dtype == DType::bf16, "a ", dtype_name(dtype), " tensor of shape ", shape.str(), " used as bf16");
    return bf16_data;
}

Tensor Tensor::rows(int64_t d0, int64_t d1) const {
    ISS_REQUIRE(shape.n == 1 && d0 >= 0 && d0 <= d1 && d1 <= shape.d, "rows [", d0, ", ", d1, ") of a tensor of shape ",
                shape.str());
    Tensor t = *this;
    const int64_t offset = d0 * shape.h * shape.w * shape.c;
    if (data) t.data += offset;
    if (bf16_data) t.bf16_data += offset;
    t.shape.d = d1 - d0;
    return t;
}

// --- the planned arena ---------------------------------------------------------------------

struct ArenaAllocator::State {
    DeviceContext* ctx = nullptr;  // null once the arena is gone (blocks still held are released)
    bool poison = false;

    // The plan: one block, and each allocation of a step at its offset.
    struct Planned {
        size_t bytes = 0, offset = 0;
        int64_t start = 0, end = 0;  // clock ticks of allocation and release
    };
    std::vector<Planned> plan;
    char* base = nullptr;
    size_t base_bytes = 0;

    // This step.
    bool replaying = false;  // serving allocations from the plan
    bool recording = true;   // recording every allocation (for the next plan)
    size_t cursor = 0;       // next plan entry
    int64_t clock = 0;       // allocations and releases so far
    int64_t step = 0;        // resets so far: a block of an earlier step records nothing
    std::vector<Planned> events;  // recorded allocations (offset unused)
    std::vector<std::pair<size_t, size_t>> live_planned;  // (offset, bytes) of plan blocks in use

    std::multimap<size_t, void*> cache;  // free blocks by size (recording and diverged steps)
    size_t live = 0, peak = 0;
    int64_t device_allocations = 0;

    void* from_cache(size_t size) {
        const auto it = cache.find(size);
        if (it != cache.end()) {
            void* p = it->second;
            cache.erase(it);
            return p;
        }
        ++device_allocations;
        try {
            return ctx->allocate(size);
        } catch (const Error&) {
            release_cache();  // out of memory: give the cached blocks back and try once more
            return ctx->allocate(size);
        }
    }
    void release_cache() {
        for (const auto& [size, p] : cache) ctx->release(p);
        cache.clear();
    }
    void poison_block(void* p, size_t size) {
        if (poison) ctx->fill_bytes(p, 0xFF, size);  // 0xFFFFFFFF is a NaN
    }
    bool overlaps_live(size_t offset, size_t size) const {
        for (const auto& [o, b] : live_planned)
            if (offset < o + b && o < offset + size) return true;
        return false;
    }
};

namespace {

// Offsets for the recorded allocations: the largest first, each at the lowest offset where it
// overlaps no placed allocation alive at the same time. Returns the block size.
size_t pack(std::vector<ArenaAllocator::State::Planned>& items) {
    std::vector<size_t> order(items.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return items[a].bytes > items[b].bytes; });
    std::vector<size_t> placed;
    size_t total = 0;
    for (size_t i : order) {
        auto& item = items[i];
        std::vector<std::pair<size_t, size_t>> busy;  // address ranges of placed items alive with it
        for (size_t j : placed)
            if (item.start < items[j].end && items[j].start < item.end) busy.push_back({items[j].offset, items[j].bytes});
        std::sort(busy.begin(), busy.end());
        size_t offset = 0;
        for (const auto& [o, b] : busy) {
            if (offset + item.bytes <= o) break;
            offset = std::max(offset, o + b);
        }
        item.offset = offset;
        total = std::max(total, offset + item.bytes);
        placed.push_back(i);
    }
    return total;
}

}  // namespace

ArenaAllocator::ArenaAllocator(DeviceContext& ctx) : ctx_(ctx), state_(std::make_shared<State>()) {
    state_->ctx = &ctx;
}

ArenaAllocator::~ArenaAllocator() {
    State& s = *state_;
    s.release_cache();
    if (s.base) ctx_.release(s.base);
    s.base = nullptr;
    s.ctx = nullptr;
}

Block ArenaAllocator::allocate(size_t bytes) {
    State& s = *state_;
    const size_t size = round_up(std::max<size_t>(bytes, 1));
    const int64_t tick = s.clock++;
    s.live += size;
    s.peak = std::max(s.peak, s.live);
    std::shared_ptr<State> state = state_;
    Block block;
    block.bytes = bytes;
    if (s.replaying) {
        const bool fits = s.cursor < s.plan.size() && s.plan[s.cursor].bytes == size &&
                          !s.overlaps_live(s.plan[s.cursor].offset, size);
        if (fits) {
            const size_t offset = s.plan[s.cursor++].offset;
            block.ptr = s.base + offset;
            s.live_planned.push_back({offset, size});
            block.holder = std::shared_ptr<void>(block.ptr, [state, offset, size](void* p) {
                state->live -= size;
                auto& l = state->live_planned;
                l.erase(std::find(l.begin(), l.end(), std::make_pair(offset, size)));
                if (state->ctx) state->poison_block(p, size);
            });
            return block;
        }
        // The step allocates otherwise than the plan: the rest of it comes from the cache, and
        // the next step is recorded for a new plan.
        s.replaying = false;
        s.recording = false;
    }
    block.ptr = s.from_cache(size);
    const int64_t event = s.recording ? int64_t(s.events.size()) : -1;
    if (s.recording) s.events.push_back({size, 0, tick, -1});
    DeviceContext* ctx = s.ctx;
    block.holder = std::shared_ptr<void>(block.ptr, [state, ctx, step = s.step, event, size](void* p) {
        state->live -= size;
        if (!state->ctx) {  // the arena is gone: this block is no longer its to cache
            ctx->release(p);
            return;
        }
        if (event >= 0 && step == state->step) state->events[size_t(event)].end = state->clock++;
        state->poison_block(p, size);
        state->cache.emplace(size, p);
    });
    return block;
}

void ArenaAllocator::reset() {
    State& s = *state_;
    if (s.recording && !s.events.empty()) {
        // The recorded step becomes the plan; what is still alive stays so to the end.
        for (auto& e : s.events)
            if (e.end < 0) e.end = s.clock;
        s.plan = s.events;
        const size_t total = pack(s.plan);
        s.release_cache();  // the recording's blocks: the plan replaces them
        if (total != s.base_bytes) {
            if (s.base) ctx_.release(s.base);
            s.base = nullptr;
            s.base_bytes = 0;
            s.base = static_cast<char*>(ctx_.allocate(total));
            s.base_bytes = total;
            ++s.device_allocations;
        }
        s.replaying = true;
        s.recording = false;
        if (environment_flag("INFANT_PLAN_LOG"))
            std::fprintf(stderr, "%s", plan_text().c_str());
    } else if (!s.replaying) {
        s.recording = true;  // a diverged step (or none yet): record the next one
    }
    s.events.clear();
    s.cursor = 0;
    s.clock = 0;
    ++s.step;
}

size_t ArenaAllocator::peak_bytes() const { return state_->peak; }
size_t ArenaAllocator::planned_bytes() const { return state_->base_bytes; }
int64_t ArenaAllocator::device_allocations() const { return state_->device_allocations; }
void ArenaAllocator::set_poison(bool poison) { state_->poison = poison; }

size_t ArenaAllocator::capacity_bytes() const {
    size_t total = state_->base_bytes;
    for (const auto& [size, p] : state_->cache) total += size;
    return total;
}

std::string ArenaAllocator::plan_text() const {
    const State& s = *state_;
    std::string text = cat("arena plan: ", s.plan.size(), " buffers in ", s.base_bytes, " bytes\n");
    for (size_t i = 0; i < s.plan.size(); ++i)
        text += cat("  #", i, ": ", s.plan[i].bytes, " bytes at ", s.plan[i].offset, ", alive [", s.plan[i].start, ", ",
                    s.plan[i].end, ")\n");
    return text;
}

PoolAllocator::PoolAllocator(DeviceContext& ctx) : ctx_(ctx), state_(std::make_shared<State>()) { state_->ctx = &ctx; }

PoolAllocator::~PoolAllocator() {
    release_cached();
    state_->ctx = nullptr;  // blocks still held are released directly when dropped
}

void PoolAllocator::release_cached() {
    for (const auto& [size, p] : state_->free_blocks) ctx_.release(p);
    state_->free_blocks.clear();
    state_->cached = 0;
}

Block PoolAllocator::allocate(size_t bytes) {
    const size_t size = round_up(std::max<size_t>(bytes, 1));
    void* ptr = nullptr;
    // From kBestFitBytes on, the smallest cached block that holds the request, if at most
    // kBestFitWaste times its size (a predict's tensors come in many sizes: the encoder's whole
    // volume, then each level's slabs; cached by exact size only, its blocks held 2.1 GB where
    // 0.86 GB were ever live at once). Below it, a block of the same size only.
    auto it = size >= kBestFitBytes ? state_->free_blocks.lower_bound(size) : state_->free_blocks.find(size);
    if (it != state_->free_blocks.end() && it->first / kBestFitWaste > size) it = state_->free_blocks.end();
    size_t held = size;
    if (it != state_->free_blocks.end()) {
        ptr = it->second;
        held = it->first;
        state_->cached -= held;
        state_->free_blocks.erase(it);
    } else {
        try {
            ptr = ctx_.allocate(size);
        } catch (const Error&) {
            release_cached();  // out of memory: give the cached blocks back and try once more
            ptr = ctx_.allocate(size);
        }
    }
    state_->live += held;
    state_->peak = std::max(state_->peak, state_->live);
    std::shared_ptr<State> state = state_;
    DeviceContext* ctx = &ctx_;
    Block block;
    block.ptr = ptr;
    block.bytes = bytes;
    block.holder = std::shared_ptr<void>(ptr, [state, ctx, held](void* p) {
        state->live -= held;
        if (state->ctx) {
            state->free_blocks.emplace(held, p);
            state->cached += held;
        } else
            ctx->release(p);
    });
    return block;
}

}  // namespace iss
