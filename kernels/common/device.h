// The device context: which backend computes (CPU or one CUDA device), and what that backend
// owns: the CUDA stream, the cuDNN handle (created on first use) and one scratch workspace for
// the convolutions, the oneDNN engine and stream, and allocation. Every command takes --device auto|cpu|cuda[:N].
//
// A build without CUDA links the same symbols; asking it for a CUDA device throws
// "built without CUDA". cuDNN is never touched before a device is confirmed.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace dnnl {
struct engine;
struct stream;
}  // namespace dnnl

namespace iss {

enum class Backend { cpu, cuda };

struct Device {
    Backend backend = Backend::cpu;
    int index = 0;  // CUDA device ordinal
    bool is_cuda() const { return backend == Backend::cuda; }
    std::string name() const;  // "cpu" or "cuda:0"
};

bool built_with_cuda();
// The x86 vector extensions this build's host code was compiled for (-march, INFANT_CPU_ARCH),
// e.g. "AVX2 FMA AVX512F AVX512BW AVX512CD AVX512DQ AVX512VL"; empty elsewhere.
std::string host_vector_extensions();
// The oneDNN library the CPU network runs on, as loaded at run time ("oneDNN 2.6.3", and its
// commit where the library states one): a distribution's upgrade of it may sum the convolutions
// in another order.
std::string onednn_version();
// The first of those extensions for which `cpu_has` (named as __builtin_cpu_supports names
// them) says no, or nullptr. At load time every binary runs this with the CPU's own answer and,
// where one is missing, prints one line and exits 1 rather than die of an illegal instruction.
const char* missing_host_extension(bool (*cpu_has)(const char* name));
// For a program's main(), before its first large allocation and any thread: freed host memory
// stays with the process for the next allocation instead of going back to the kernel (glibc's
// malloc: no mmap for large blocks, no trimming). Fresh pages are what cost here: predict's
// post-processing on a 2-vCPU VM took 2.7-3.6 s, and 0.7-0.8 s with this (docs/PERFORMANCE.md).
// The process keeps at least its peak footprint until it exits (a freed block serves only the
// requests that fit in it), so it suits a command that runs once, not a days-long training.
// Nothing is done without glibc's allocator (under ASan, with a preloaded jemalloc or tcmalloc).
void keep_freed_host_memory();
// Hands the pages of freed host memory back to the kernel now (glibc's malloc_trim), for work of
// another size after work kept that way: a freed block serves only the requests that fit in it,
// so a folder of scans of other sizes held each size's blocks (a 0.5 mm scan after a 256^3 one
// peaked at 3.83 GB, 3.37 with this; the larger alone at 3.20). Nothing is done without glibc's
// allocator.
void return_freed_host_memory();
// Number of usable CUDA devices: 0 without a driver, without a GPU, or in a CPU-only build.
int cuda_device_count();
// The CUDA driver, runtime and cuDNN versions found at run time beside those built against
// (cuDNN's is read without touching a device), then a line per GPU; "built without CUDA" in a
// CPU-only build.
std::string cuda_library_versions();
// What decides a CUDA device's arithmetic for the network: its name, compute capability and
// the cuDNN run (which picks the convolution algorithms), e.g. "NVIDIA H100 80GB HBM3 (sm_90),
// cuDNN 9.1.0".
std::string cuda_device_identity(int index);
// "auto" picks cuda:0 when a device is present, else cpu; "cuda" without a device throws.
Device parse_device(const std::string& text);

// Bytes of RAM this process may use (what a host-side allocation can hope for): the machine's,
// or less where its cgroup (a container, a batch job's slot) sets a memory limit, or its
// address-space or data limit (ulimit -v, -d) is lower.
size_t host_memory_bytes();
// Whether one request of `bytes` may be planned on a memory of `capacity` bytes: at most 80% of it,
// the rest left to what else the process holds. Every up-front memory check asks this.
inline bool fits_in_memory(double bytes, size_t capacity) {
    return bytes <= 0.8 * double(capacity);
}
// `bytes` in GiB as the memory checks' messages say it: two decimals below 1 GiB, one above
// ("0.25", "2.4", "34.8").
std::string gib_text(double bytes);
// The smallest memory limit set on a process's cgroup or an ancestor of it (cgroup v2's
// memory.max, v1's memory.limit_in_bytes), 0 where none is set or readable: in a container or a
// batch job's slot the kernel's out-of-memory killer acts at that limit, not at the machine's RAM.
// `cgroup_list` is /proc/self/cgroup's form ("ID:CONTROLLERS:PATH" lines), `cgroup_root` where
// the hierarchies are mounted.
size_t cgroup_memory_limit(const std::string& cgroup_list = "/proc/self/cgroup",
                           const std::string& cgroup_root = "/sys/fs/cgroup");

class DeviceContext {
public:
    explicit DeviceContext(Device device = Device{});
    ~DeviceContext();
    DeviceContext(const DeviceContext&) = delete;
    DeviceContext& operator=(const DeviceContext&) = delete;

    const Device& device() const { return device_; }
    bool is_cuda() const { return device_.is_cuda(); }
    // The CUDA device's compute capability as major * 10 + minor (90 for an H100); 0 on the CPU.
    int compute_capability() const { return compute_capability_; }

    // Raw memory on this context's device (host memory aligned to 256 bytes, as cudaMalloc does).
    void* allocate(size_t bytes);
    void release(void* ptr) noexcept;
    void copy_to_device(void* dst, const void* host_src, size_t bytes);
    void copy_to_host(void* host_dst, const void* src, size_t bytes);
    void copy_on_device(void* dst, const void* src, size_t bytes);
    // A host -> device copy that does not wait (CUDA), for a few kilobytes of per-call
    // parameters: the bytes are staged in pinned memory, so host_src may be changed as soon as
    // this returns, and the copy is ordered on the stream before the work queued after it. Two
    // staging slots in turn, a slot refilled once its previous copy has completed. CPU: memcpy.
    void upload_async(void* dst, const void* host_src, size_t bytes);
    void fill_zero(void* dst, size_t bytes);
    // Every byte set to `value` (0..255), asynchronously on CUDA.
    void fill_bytes(void* dst, int value, size_t bytes);
    void synchronize();
    // Makes this context's device current for the calling host thread (CUDA keeps the current
    // device per thread): a thread other than the one that made the context calls it first.
    void make_current() const;
    // Bytes of memory this device has in all (host RAM, or the GPU's global memory): for
    // refusing a request that cannot fit before trying it.
    size_t memory_capacity() const;

    // Bytes of device memory free right now (cudaMemGetInfo), or the host's available memory.
    size_t memory_free() const;

    // CUDA objects as opaque pointers (cudaStream_t, cudnnHandle_t), so this header compiles
    // without the CUDA headers. The handle is created on first use.
    void* cuda_stream() const { return stream_; }
    void* cudnn_handle();

    // One scratch workspace per context, shared by every convolution engine (work on a context
    // is serial on its stream): grown to the largest size asked for, never shrunk. Growing waits
    // for the stream (the old block may still be in use) before freeing it.
    void* workspace(size_t bytes);
    size_t workspace_bytes() const { return workspace_bytes_; }
    // Frees it (after the stream's work), for work of other sizes: a large scan's layout
    // conversions (a level-0 activation of the default network at 256^3 is 1.6 GB) otherwise
    // stayed through every smaller scan of a folder after it.
    void release_workspace();

    // oneDNN CPU engine and stream (created on first use).
    dnnl::engine& dnnl_engine();
    dnnl::stream& dnnl_stream();

private:
    Device device_;
    int compute_capability_ = 0;
    void* stream_ = nullptr;
    void* cudnn_ = nullptr;
    void* workspace_ = nullptr;
    size_t workspace_bytes_ = 0;
    struct Dnnl;
    std::unique_ptr<Dnnl> dnnl_;
    struct Staging;  // upload_async's pinned slots (CUDA)
    std::unique_ptr<Staging> staging_;
};

// An owning, typed allocation on a context's device. Move-only.
template <class T>
class Buffer {
public:
    Buffer() = default;
    Buffer(DeviceContext& ctx, size_t count) : ctx_(&ctx), count_(count) {
        if (count_ > 0) data_ = static_cast<T*>(ctx.allocate(count_ * sizeof(T)));
    }
    Buffer(DeviceContext& ctx, const std::vector<T>& host) : Buffer(ctx, host.size()) { upload(host); }
    ~Buffer() {
        if (ctx_ && data_) ctx_->release(data_);
    }
    Buffer(Buffer&& other) noexcept { swap(other); }
    Buffer& operator=(Buffer&& other) noexcept {
        swap(other);
        return *this;
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    T* data() { return data_; }
    const T* data() const { return data_; }
    size_t size() const { return count_; }

    void upload(const std::vector<T>& host) {
        if (host.size() != count_) throw_size_mismatch(host.size());
        if (count_ > 0) ctx_->copy_to_device(data_, host.data(), count_ * sizeof(T));
    }
    std::vector<T> download() const {
        std::vector<T> host(count_);
        if (count_ > 0) ctx_->copy_to_host(host.data(), data_, count_ * sizeof(T));
        return host;
    }

private:
    void swap(Buffer& other) noexcept {
        std::swap(ctx_, other.ctx_);
        std::swap(data_, other.data_);
        std::swap(count_, other.count_);
    }
    void throw_size_mismatch(size_t got) const;

    DeviceContext* ctx_ = nullptr;
    T* data_ = nullptr;
    size_t count_ = 0;
};

void throw_buffer_size_mismatch(size_t expected, size_t got);

template <class T>
void Buffer<T>::throw_size_mismatch(size_t got) const {
    throw_buffer_size_mismatch(count_, got);
}

}  // namespace iss
