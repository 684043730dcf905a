// Tensors of the network engine: float32 views with a channels-last 5-D shape, whose memory
// comes from an Allocator. Two allocators:
//   ArenaAllocator  training: one block, bump allocation, reset at every step. The first step
//                   grows it as needed (in chunks); reset() then replaces the chunks by one
//                   block of the peak size, so later steps allocate nothing. Peak bytes are
//                   reported.
//   PoolAllocator   inference: each allocation is returned when its last Tensor is dropped, to
//                   a cache of free blocks by size, so memory is freed as the forward goes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "kernels/nn/shape.h"

namespace iss {

class DeviceContext;

// Raw memory from an allocator; `holder` keeps pool memory alive (null for arena memory, which
// lives until the arena's reset).
struct Block {
    void* ptr = nullptr;
    size_t bytes = 0;
    std::shared_ptr<void> holder;
};

class Allocator {
public:
    virtual ~Allocator() = default;
    virtual Block allocate(size_t bytes) = 0;
    virtual DeviceContext& context() = 0;
};

// Element types: fp32 today. Room is left for bf16/fp16 activations with fp32 master weights
// (DESIGN.md); ops check the dtype they support.
enum class DType { f32 };

struct Tensor {
    float* data = nullptr;
    DType dtype = DType::f32;
    Shape5 shape;
    std::shared_ptr<void> holder;

    int64_t size() const { return shape.size(); }
    bool empty() const { return data == nullptr; }
    static Tensor make(Allocator& allocator, const Shape5& shape);
};

class ArenaAllocator : public Allocator {
public:
    explicit ArenaAllocator(DeviceContext& ctx, size_t initial_bytes = 0);
    ~ArenaAllocator() override;
    Block allocate(size_t bytes) override;
    DeviceContext& context() override { return ctx_; }

    // Frees everything allocated since the last reset (the memory stays with the arena).
    void reset();
    size_t peak_bytes() const { return peak_; }
    size_t capacity_bytes() const;
    // Device allocations made so far (the first step makes a few; later steps none).
    int64_t device_allocations() const { return device_allocations_; }

private:
    struct Chunk {
        char* base = nullptr;
        size_t size = 0;
    };
    DeviceContext& ctx_;
    std::vector<Chunk> chunks_;
    size_t chunk_ = 0;   // chunk being filled
    size_t offset_ = 0;  // within that chunk
    size_t used_ = 0;    // bytes handed out since the reset, all chunks
    size_t peak_ = 0;
    int64_t device_allocations_ = 0;
};

class PoolAllocator : public Allocator {
public:
    explicit PoolAllocator(DeviceContext& ctx);
    ~PoolAllocator() override;
    Block allocate(size_t bytes) override;
    DeviceContext& context() override { return ctx_; }

    size_t live_bytes() const { return state_->live; }
    size_t peak_bytes() const { return state_->peak; }

private:
    struct State {
        DeviceContext* ctx = nullptr;
        std::multimap<size_t, void*> free_blocks;
        size_t live = 0, peak = 0;
    };
    DeviceContext& ctx_;
    std::shared_ptr<State> state_;  // outlives the pool while blocks are still held
};

}  // namespace iss
