#include "nn/tensor.h"

#include <algorithm>

#include "kernels/common/device.h"
#include "kernels/common/error.h"

namespace iss {

namespace {
constexpr size_t alignment = 256;  // cuDNN and AVX-512 friendly
size_t round_up(size_t bytes) { return (bytes + alignment - 1) / alignment * alignment; }
}  // namespace

Tensor Tensor::make(Allocator& allocator, const Shape5& shape) {
    ISS_REQUIRE(shape.n > 0 && shape.d > 0 && shape.h > 0 && shape.w > 0 && shape.c > 0, "tensor of shape ",
                shape.str(), " has an empty dimension");
    Block block = allocator.allocate(size_t(shape.size()) * sizeof(float));
    Tensor t;
    t.data = static_cast<float*>(block.ptr);
    t.shape = shape;
    t.holder = std::move(block.holder);
    return t;
}

ArenaAllocator::ArenaAllocator(DeviceContext& ctx, size_t initial_bytes) : ctx_(ctx) {
    if (initial_bytes > 0) {
        chunks_.push_back({static_cast<char*>(ctx_.allocate(round_up(initial_bytes))), round_up(initial_bytes)});
        ++device_allocations_;
    }
}

ArenaAllocator::~ArenaAllocator() {
    for (const Chunk& c : chunks_) ctx_.release(c.base);
}

size_t ArenaAllocator::capacity_bytes() const {
    size_t total = 0;
    for (const Chunk& c : chunks_) total += c.size;
    return total;
}

Block ArenaAllocator::allocate(size_t bytes) {
    const size_t size = round_up(std::max<size_t>(bytes, 1));
    while (chunk_ < chunks_.size() && offset_ + size > chunks_[chunk_].size) {
        ++chunk_;
        offset_ = 0;
    }
    if (chunk_ == chunks_.size()) {
        // Growing (first step only): chunks of at least 256 MiB keep their number small.
        const size_t chunk_size = std::max(size, size_t(256) << 20);
        chunks_.push_back({static_cast<char*>(ctx_.allocate(chunk_size)), chunk_size});
        ++device_allocations_;
        offset_ = 0;
    }
    Block block;
    block.ptr = chunks_[chunk_].base + offset_;
    block.bytes = bytes;
    offset_ += size;
    used_ += size;
    peak_ = std::max(peak_, used_);
    return block;
}

void ArenaAllocator::reset() {
    if (chunks_.size() > 1) {
        // One block of the peak size replaces the chunks the first step grew.
        for (const Chunk& c : chunks_) ctx_.release(c.base);
        chunks_.clear();
        chunks_.push_back({static_cast<char*>(ctx_.allocate(peak_)), peak_});
        ++device_allocations_;
    }
    chunk_ = 0;
    offset_ = 0;
    used_ = 0;
}

PoolAllocator::PoolAllocator(DeviceContext& ctx) : ctx_(ctx), state_(std::make_shared<State>()) { state_->ctx = &ctx; }

PoolAllocator::~PoolAllocator() {
    for (const auto& [size, ptr] : state_->free_blocks) ctx_.release(ptr);
    state_->free_blocks.clear();
    state_->ctx = nullptr;  // blocks still held are released directly when dropped
}

Block PoolAllocator::allocate(size_t bytes) {
    const size_t size = round_up(std::max<size_t>(bytes, 1));
    void* ptr = nullptr;
    const auto it = state_->free_blocks.find(size);
    if (it != state_->free_blocks.end()) {
        ptr = it->second;
        state_->free_blocks.erase(it);
    } else {
        try {
            ptr = ctx_.allocate(size);
        } catch (const Error&) {
            // Out of memory: give the cached blocks back and try once more.
            for (const auto& [s, p] : state_->free_blocks) ctx_.release(p);
            state_->free_blocks.clear();
            ptr = ctx_.allocate(size);
        }
    }
    state_->live += size;
    state_->peak = std::max(state_->peak, state_->live);
    std::shared_ptr<State> state = state_;
    DeviceContext* ctx = &ctx_;
    Block block;
    block.ptr = ptr;
    block.bytes = bytes;
    block.holder = std::shared_ptr<void>(ptr, [state, ctx, size](void* p) {
        state->live -= size;
        if (state->ctx)
            state->free_blocks.emplace(size, p);
        else
            ctx->release(p);
    });
    return block;
}

}  // namespace iss
