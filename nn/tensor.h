// Tensors of the network engine: fp32 or bf16 views with a channels-last 5-D shape, whose
// memory comes from an Allocator. Two allocators, both freeing a block when its last Tensor is dropped
// (autograd drops values and gradients as soon as no op needs them: nn/autograd.h):
//   ArenaAllocator  training: memory planned from one step's liveness. The first step of a shape
//                   is recorded (its blocks come from a PoolAllocator, reused as soon as freed);
//                   reset() then gives every allocation of that step an offset in one block such
//                   that no two blocks alive at once overlap, and later steps replay that plan:
//                   no device allocation, the same addresses every step. A step that allocates
//                   otherwise (another shape) is served from the pool and recorded again.
//   PoolAllocator   inference (and the arena's recorded steps): from 1 MiB on, requests are
//                   cut from the free space of earlier device allocations (best fit, split),
//                   freed neighbours merge again, and a request that fits nowhere first gives
//                   back the allocations wholly free; smaller ones reuse freed blocks of their
//                   own size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/nn/shape.h"
#include "nn/precision.h"

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

// An fp32 tensor's elements are `data`; a bf16 tensor's are `bf16_data` (and `data` is null,
// so an fp32-only kernel handed a bf16 tensor refuses it as a null tensor rather than reading
// bf16 bits as floats). Ops that take either type dispatch with with_storage().
struct Tensor {
    float* data = nullptr;
    Bf16* bf16_data = nullptr;
    DType dtype = DType::f32;
    Shape5 shape;
    std::shared_ptr<void> holder;

    int64_t size() const { return shape.size(); }
    bool empty() const { return raw() == nullptr; }
    void* raw() const { return dtype == DType::bf16 ? static_cast<void*>(bf16_data) : static_cast<void*>(data); }
    // The elements as T (float or Bf16), which must be the tensor's type.
    template <class T>
    T* as() const;
    // Rows [d0, d1) along D of a batch-1 tensor: a view sharing the memory (channels-last, so
    // the rows are contiguous).
    Tensor rows(int64_t d0, int64_t d1) const;
    static Tensor make(Allocator& allocator, const Shape5& shape, DType dtype = DType::f32);
};

template <>
float* Tensor::as<float>() const;
template <>
Bf16* Tensor::as<Bf16>() const;

// Calls f(float{}) or f(Bf16{}) for storage type `dtype`: a kernel templated on its storage
// type, called once per op for both.
template <class F>
decltype(auto) with_storage(DType dtype, F&& f) {
    if (dtype == DType::bf16) return f(Bf16{});
    return f(float{});
}

class PoolAllocator : public Allocator {
public:
    explicit PoolAllocator(DeviceContext& ctx);
    ~PoolAllocator() override;
    Block allocate(size_t bytes) override;
    DeviceContext& context() override { return ctx_; }

    // Bytes of the blocks that live tensors hold (a block may be larger than its tensor), their
    // peak, and everything the pool holds from the device (live and cached).
    size_t live_bytes() const;
    size_t peak_bytes() const;
    size_t capacity_bytes() const;
    // Device allocations made so far.
    int64_t device_allocations() const;
    // Gives back to the device every allocation none of whose bytes a live tensor holds (when
    // later requests will be of other sizes, e.g. the next scan of a folder has another shape).
    void release_cached();

    // Requests of this many bytes or more are cut from the free space of earlier device
    // allocations: the smallest free piece that holds them, split when this much or more is left
    // over, and pieces freed next to each other in one allocation merge again (a predict's
    // tensors come in many sizes: the encoder's whole volume, then each level's slabs; cached
    // whole, a slab's tensor pinned an encoder's block up to 4 times its size: the network held
    // 1.34 GB for a 150x170x140 scan, 1.10 GB then). One that no free piece holds first gives
    // back the allocations wholly free. Smaller requests reuse a freed block of their own size
    // only.
    static constexpr size_t kLargeBytes = size_t(1) << 20;

    struct State;

private:
    DeviceContext& ctx_;
    std::shared_ptr<State> state_;  // outlives the pool while blocks are still held
};

class ArenaAllocator : public Allocator {
public:
    explicit ArenaAllocator(DeviceContext& ctx);
    ~ArenaAllocator() override;
    ArenaAllocator(const ArenaAllocator&) = delete;
    ArenaAllocator& operator=(const ArenaAllocator&) = delete;
    Block allocate(size_t bytes) override;
    DeviceContext& context() override { return ctx_; }

    // Ends a step (and starts the next): a recorded step becomes the plan. Every block of the
    // step should have been dropped; one still alive keeps its memory, and a later allocation
    // that would overlap it is served from the cache instead.
    void reset();
    // The largest sum of live blocks so far (the liveness peak of the largest step).
    size_t peak_bytes() const;
    // The size of the planned block (the memory a planned step uses); 0 before the first plan.
    size_t planned_bytes() const;
    // Memory held from the device: the planned block and the cache (its blocks in use and free).
    size_t capacity_bytes() const;
    // Device allocations made so far (the first steps make some; planned steps none).
    int64_t device_allocations() const;
    // Tests: every freed block is filled with NaN at once (0xFF bytes), so that a value read
    // after its memory was given to another shows.
    void set_poison(bool poison);
    // Each planned buffer: size, offset and the step's clock ticks of its allocation and release
    // (INFANT_PLAN_LOG=1 prints it when a plan is made).
    std::string plan_text() const;

    struct State;

private:
    DeviceContext& ctx_;
    std::shared_ptr<State> state_;  // outlives the arena while blocks are still held
    // Serves recorded and diverged steps. The pool splits and merges, so a recorded step holds
    // about its live peak: with a cache of exact-size blocks the published U-Net's first fp32
    // training step held 4.6 GB from the device for a 3.2 GB peak.
    PoolAllocator cache_;
};

}  // namespace iss
