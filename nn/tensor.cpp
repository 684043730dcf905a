#include "nn/tensor.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <set>
#include <utility>

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
    DeviceContext* ctx = nullptr;  // null once the arena is gone (its pool releases blocks still held)
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

    size_t live = 0, peak = 0;
    int64_t device_allocations = 0;  // of the planned block (the cache counts its own)

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

ArenaAllocator::ArenaAllocator(DeviceContext& ctx) : ctx_(ctx), state_(std::make_shared<State>()), cache_(ctx) {
    state_->ctx = &ctx;
}

ArenaAllocator::~ArenaAllocator() {
    State& s = *state_;
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
    Block pooled = cache_.allocate(size);
    block.ptr = pooled.ptr;
    const int64_t event = s.recording ? int64_t(s.events.size()) : -1;
    if (s.recording) s.events.push_back({size, 0, tick, -1});
    block.holder = std::shared_ptr<void>(
        block.ptr, [state, step = s.step, event, size, pooled = std::move(pooled.holder)](void* p) mutable {
            state->live -= size;
            if (state->ctx) {  // else the arena is gone, and its pool gives the memory back
                if (event >= 0 && step == state->step) state->events[size_t(event)].end = state->clock++;
                state->poison_block(p, size);
            }
            pooled.reset();
        });
    return block;
}

void ArenaAllocator::reset() {
    State& s = *state_;
    // A planned block still alive (a tensor kept across steps) lives in the planned memory: a plan
    // of another size, which would free that memory under it, waits for a step that leaves none.
    std::vector<State::Planned> plan = s.events;
    for (auto& e : plan)
        if (e.end < 0) e.end = s.clock;  // what is still alive stays so to the end
    const size_t total = s.recording && !plan.empty() ? pack(plan) : 0;
    const bool planned_block_held = total != s.base_bytes && !s.live_planned.empty();
    if (s.recording && !plan.empty() && !planned_block_held) {
        // The recorded step becomes the plan.
        s.plan = std::move(plan);
        cache_.release_cached();  // the recording's blocks: the plan replaces them
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
int64_t ArenaAllocator::device_allocations() const {
    return state_->device_allocations + cache_.device_allocations();
}
void ArenaAllocator::set_poison(bool poison) { state_->poison = poison; }

size_t ArenaAllocator::capacity_bytes() const {
    return state_->base_bytes + cache_.capacity_bytes();
}

std::string ArenaAllocator::plan_text() const {
    const State& s = *state_;
    std::string text = cat("arena plan: ", s.plan.size(), " buffers in ", s.base_bytes, " bytes\n");
    for (size_t i = 0; i < s.plan.size(); ++i)
        text += cat("  #", i, ": ", s.plan[i].bytes, " bytes at ", s.plan[i].offset, ", alive [", s.plan[i].start, ", ",
                    s.plan[i].end, ")\n");
    return text;
}

// The pool's books. Large pieces are kept by address (live and free) so that a freed piece finds
// its neighbours, and the free ones also by size for the best fit.
struct PoolAllocator::State {
    struct Piece {
        size_t bytes = 0;
        char* allocation = nullptr;  // the device allocation it lies in
        bool free = false;
    };
    DeviceContext* ctx = nullptr;  // null once the pool is gone: freed memory goes straight back
    std::map<char*, Piece> pieces;
    std::set<std::pair<size_t, char*>> free_by_size;
    std::map<char*, size_t> allocations;            // large device allocations and their sizes
    std::multimap<size_t, void*> small_free;        // freed small blocks, by size
    size_t live = 0, peak = 0, capacity = 0;
    int64_t device_allocations = 0;

    void take(size_t bytes) {
        live += bytes;
        peak = std::max(peak, live);
    }
    void mark_free(std::map<char*, Piece>::iterator at) {
        at->second.free = true;
        free_by_size.emplace(at->second.bytes, at->first);
    }
    void unmark_free(std::map<char*, Piece>::iterator at) {
        free_by_size.erase({at->second.bytes, at->first});
        at->second.free = false;
    }
    // The piece after `at` (in the same allocation, not in use) joins it.
    void merge_next(std::map<char*, Piece>::iterator at) {
        const auto next = std::next(at);
        unmark_free(next);
        at->second.bytes += next->second.bytes;
        pieces.erase(next);
    }
    bool free_neighbour(std::map<char*, Piece>::iterator at, std::map<char*, Piece>::iterator other) const {
        return other != pieces.end() && other->second.free && other->second.allocation == at->second.allocation;
    }
    // Returns a large piece: free, merged with the free pieces around it; given back to the device
    // when the pool is gone and nothing of its allocation is held any more.
    void release_large(char* p, DeviceContext* device) {
        auto at = pieces.find(p);
        live -= at->second.bytes;
        if (free_neighbour(at, std::next(at))) merge_next(at);
        if (at != pieces.begin() && free_neighbour(at, std::prev(at))) {
            at = std::prev(at);
            unmark_free(at);  // its size changes
            merge_next(at);
        }
        mark_free(at);
        if (!ctx) release_if_whole(at, device);
    }
    // Gives back every allocation that is one free piece (freed pieces merge).
    void release_free_allocations(DeviceContext* device) {
        for (auto it = allocations.begin(); it != allocations.end();) {
            const auto piece = pieces.find(it->first);
            ++it;  // release_if_whole may erase the allocation
            if (piece->second.free) release_if_whole(piece, device);
        }
    }
    // Gives a free piece's allocation back if the piece is all of it.
    void release_if_whole(std::map<char*, Piece>::iterator at, DeviceContext* device) {
        const char* base = at->second.allocation;
        const auto allocation = allocations.find(at->second.allocation);
        if (at->first != base || at->second.bytes != allocation->second) return;
        unmark_free(at);
        capacity -= allocation->second;
        device->release(at->first);
        allocations.erase(allocation);
        pieces.erase(at);
    }
};

PoolAllocator::PoolAllocator(DeviceContext& ctx) : ctx_(ctx), state_(std::make_shared<State>()) { state_->ctx = &ctx; }

PoolAllocator::~PoolAllocator() {
    release_cached();
    state_->ctx = nullptr;  // blocks still held are released when dropped
}

size_t PoolAllocator::live_bytes() const { return state_->live; }
size_t PoolAllocator::peak_bytes() const { return state_->peak; }
size_t PoolAllocator::capacity_bytes() const { return state_->capacity; }
int64_t PoolAllocator::device_allocations() const { return state_->device_allocations; }

void PoolAllocator::release_cached() {
    State& s = *state_;
    for (const auto& [size, p] : s.small_free) {
        ctx_.release(p);
        s.capacity -= size;
    }
    s.small_free.clear();
    s.release_free_allocations(&ctx_);
}

Block PoolAllocator::allocate(size_t bytes) {
    State& s = *state_;
    const size_t size = round_up(std::max<size_t>(bytes, 1));
    const bool large = size >= kLargeBytes;
    // A device allocation, giving back what the pool caches and trying once more when the
    // device is out of memory.
    auto from_device = [&] {
        ++s.device_allocations;
        try {
            return ctx_.allocate(size);
        } catch (const Error&) {
            release_cached();
            return ctx_.allocate(size);
        }
    };
    void* ptr = nullptr;
    if (!large) {
        const auto it = s.small_free.find(size);
        if (it != s.small_free.end()) {
            ptr = it->second;
            s.small_free.erase(it);
        } else {
            ptr = from_device();
            s.capacity += size;
        }
    } else {
        const auto fit = s.free_by_size.lower_bound({size, nullptr});
        if (fit != s.free_by_size.end()) {
            const auto at = s.pieces.find(fit->second);
            s.unmark_free(at);
            // Split off what is left when it can serve a large request of its own.
            if (at->second.bytes - size >= kLargeBytes) {
                const auto rest = s.pieces.emplace(at->first + size,
                                                   State::Piece{at->second.bytes - size, at->second.allocation}).first;
                s.mark_free(rest);
                at->second.bytes = size;
            }
            ptr = at->first;
        } else {
            // None fits: the allocations wholly free are smaller than this request, and kept they
            // would only add to the peak (tensors grow as an encoder goes). Released, the first
            // fp32 training step of the published U-Net on 128x160x128 peaks at 3.8 GB resident,
            // as the planned steps do (4.5 GB kept); predict's network on 155x175x149 holds
            // 1.01 GB in fp32 (1.08 kept) and 0.70 GB in bf16 (0.85 kept).
            s.release_free_allocations(&ctx_);
            char* base = static_cast<char*>(from_device());
            s.allocations.emplace(base, size);
            s.pieces.emplace(base, State::Piece{size, base});
            s.capacity += size;
            ptr = base;
        }
    }
    const size_t held = large ? s.pieces.at(static_cast<char*>(ptr)).bytes : size;
    s.take(held);
    std::shared_ptr<State> state = state_;
    DeviceContext* device = &ctx_;
    Block block;
    block.ptr = ptr;
    block.bytes = bytes;
    block.holder = std::shared_ptr<void>(ptr, [state, device, held, large](void* p) {
        if (large) {
            state->release_large(static_cast<char*>(p), device);
            return;
        }
        state->live -= held;
        if (state->ctx) {
            state->small_free.emplace(held, p);
        } else {
            state->capacity -= held;
            device->release(p);
        }
    });
    return block;
}

}  // namespace iss
