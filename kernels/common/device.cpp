#include "kernels/common/device.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <dnnl.hpp>

#include "kernels/common/dnnl_check.h"
#include "kernels/common/error.h"

#if INFANT_WITH_CUDA
#include "kernels/common/cuda_check.h"
#endif

namespace iss {

struct DeviceContext::Dnnl {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
};

struct DeviceContext::Staging {
#if INFANT_WITH_CUDA
    struct Slot {
        void* host = nullptr;  // pinned (cudaMallocHost)
        size_t bytes = 0;
        cudaEvent_t copied = nullptr;  // recorded after the slot's last copy
    };
    Slot slots[2];
    int next = 0;
    ~Staging() {  // the owner has synchronised its stream
        for (Slot& slot : slots) {
            if (slot.copied) cudaEventDestroy(slot.copied);
            if (slot.host) cudaFreeHost(slot.host);
        }
    }
#endif
};

std::string Device::name() const { return is_cuda() ? cat("cuda:", index) : std::string("cpu"); }

namespace {

// The extensions the compiler may use in this build, as __builtin_cpu_supports names them;
// nullptr-terminated (empty off x86-64).
constexpr const char* host_extensions[] = {
#if defined(__x86_64__)
#if defined(__AVX2__)
    "avx2",
#endif
#if defined(__FMA__)
    "fma",
#endif
#if defined(__AVX512F__)
    "avx512f",
#endif
#if defined(__AVX512BW__)
    "avx512bw",
#endif
#if defined(__AVX512CD__)
    "avx512cd",
#endif
#if defined(__AVX512DQ__)
    "avx512dq",
#endif
#if defined(__AVX512VL__)
    "avx512vl",
#endif
#endif
    nullptr,
};

#if defined(__x86_64__) && defined(__GNUC__)
bool cpu_supports(const char* name) {
    // __builtin_cpu_supports takes only literals.
    if (!std::strcmp(name, "avx2")) return __builtin_cpu_supports("avx2");
    if (!std::strcmp(name, "fma")) return __builtin_cpu_supports("fma");
    if (!std::strcmp(name, "avx512f")) return __builtin_cpu_supports("avx512f");
    if (!std::strcmp(name, "avx512bw")) return __builtin_cpu_supports("avx512bw");
    if (!std::strcmp(name, "avx512cd")) return __builtin_cpu_supports("avx512cd");
    if (!std::strcmp(name, "avx512dq")) return __builtin_cpu_supports("avx512dq");
    if (!std::strcmp(name, "avx512vl")) return __builtin_cpu_supports("avx512vl");
    return false;
}

// Before the other constructors (priority 101, the first one not reserved), which may already
// run vector code of this build.
__attribute__((constructor(101))) void refuse_a_cpu_without_the_build_extensions() {
    __builtin_cpu_init();
    if (const char* missing = missing_host_extension(cpu_supports)) {
        std::fprintf(stderr,
                     "infant-synthseg: this build's host code uses %s, which this CPU lacks (it was built for "
                     "%s); rebuild on this machine, or with -DINFANT_CPU_ARCH=x86-64-v3 for a portable binary\n",
                     missing, host_vector_extensions().c_str());
        std::_Exit(1);
    }
}
#endif

}  // namespace

void keep_freed_host_memory() {
#if defined(__GLIBC__)
    mallopt(M_MMAP_MAX, 0);         // large blocks from the heap, whose freed pages are reused
    mallopt(M_TRIM_THRESHOLD, -1);  // and never handed back (mallopt(3): -1 disables trimming)
#endif
}

void return_freed_host_memory() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

std::string onednn_version() {
    const dnnl_version_t* v = dnnl_version();
    const std::string hash = v->hash ? v->hash : "";
    return cat("oneDNN ", v->major, ".", v->minor, ".", v->patch,
               hash.empty() || hash == "N/A" ? std::string() : cat(" (", hash, ")"));
}

std::string host_vector_extensions() {
    std::string names;
    for (const char* const* e = host_extensions; *e; ++e) {
        if (!names.empty()) names += ' ';
        for (const char* c = *e; *c; ++c) names += char(std::toupper(static_cast<unsigned char>(*c)));
    }
    return names;
}

const char* missing_host_extension(bool (*cpu_has)(const char* name)) {
    for (const char* const* e = host_extensions; *e; ++e)
        if (!cpu_has(*e)) return *e;
    return nullptr;
}

void throw_buffer_size_mismatch(size_t expected, size_t got) {
    throw Error(cat("buffer holds ", expected, " elements but the host data has ", got));
}

// #if, not an expression: without CUDA the macro is undefined, and only the preprocessor
// reads an undefined name as 0.
bool built_with_cuda() {
#if INFANT_WITH_CUDA
    return true;
#else
    return false;
#endif
}

#if INFANT_WITH_CUDA

bool cuda_synchronous_mode() {
    static const bool synchronous = environment_flag("INFANT_CUDA_SYNC");
    return synchronous;
}

void check_launch(const char* file, int line) {
    cudaError_t status = cudaGetLastError();
    if (status == cudaSuccess && cuda_synchronous_mode()) status = cudaDeviceSynchronize();
    if (status != cudaSuccess) throw_call_error("CUDA", "kernel launch", file, line, cudaGetErrorString(status));
}

void check_after_library_call(const char* library, const char* statement, const char* file, int line) {
    if (!cuda_synchronous_mode()) return;
    const cudaError_t status = cudaDeviceSynchronize();
    if (status != cudaSuccess)
        throw_call_error(library, statement, file, line, cat("after the call: ", cudaGetErrorString(status)));
}

// The cuDNN found at run time (a toolkit's, or a PyTorch wheel's libcudnn.so.9) must be of the
// major version we were built against; an older minor version may lack fixes we rely on, so it
// is said once (it runs: the legacy API we use is in every 9.x).
static void check_cudnn_runtime() {
    static const bool checked = [] {
        const size_t runtime = cudnnGetVersion();
        if (runtime / 10000 != CUDNN_VERSION / 10000)
            throw Error(cat("cuDNN ", runtime, " was loaded but this program was built against cuDNN ", CUDNN_VERSION,
                            ": a cuDNN ", CUDNN_VERSION / 10000, ".x library is needed (LD_LIBRARY_PATH)"));
        if (runtime < size_t(CUDNN_VERSION))
            std::fprintf(stderr, "warning: cuDNN %zu is older than the %d this program was built against\n", runtime,
                         CUDNN_VERSION);
        return true;
    }();
    (void)checked;
}

int cuda_device_count();

std::string cuda_library_versions() {
    int driver = 0, runtime = 0;
    if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
    if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) runtime = 0;
    cudaGetLastError();
    auto dotted = [](int v) { return v ? cat(v / 1000, ".", v % 1000 / 10) : std::string("none"); };
    std::string text = cat("CUDA driver ", dotted(driver), ", runtime ", dotted(runtime), " (built with ",
                           dotted(CUDART_VERSION), "); cuDNN ", cudnnGetVersion(), " (built with ", CUDNN_VERSION, ")");
    for (int d = 0; d < cuda_device_count(); ++d) {
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) continue;
        text += cat("\ncuda:", d, " ", prop.name, " (sm_", prop.major, prop.minor, ", ",
                    prop.totalGlobalMem >> 20, " MiB)");
    }
    return text;
}

std::string cuda_device_identity(int index) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
        cudaGetLastError();
        return cat("cuda:", index, " (unreadable)");
    }
    const size_t cudnn = cudnnGetVersion();
    return cat(prop.name, " (sm_", prop.major, prop.minor, "), cuDNN ", cudnn / 10000, ".", cudnn / 100 % 100, ".",
               cudnn % 100);
}

int cuda_device_count() {
    int count = 0;
    // No driver or no GPU is not an error here: it means "no CUDA device".
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error
        return 0;
    }
    return count;
}

#else

int cuda_device_count() { return 0; }
std::string cuda_library_versions() { return "built without CUDA"; }
std::string cuda_device_identity(int index) {
    return cat("cuda:", index, " (built without CUDA)");
}

#endif

Device parse_device(const std::string& text) {
    if (text == "cpu") return Device{Backend::cpu, 0};
    if (text == "auto") return cuda_device_count() > 0 ? Device{Backend::cuda, 0} : Device{Backend::cpu, 0};
    if (text.rfind("cuda", 0) == 0) {
        int index = 0;
        if (text.size() > 4) {
            ISS_INPUT(text[4] == ':' && text.size() > 5, "--device: expected auto, cpu, cuda or cuda:N, got '", text, "'");
            char* end = nullptr;
            const long parsed = std::strtol(text.c_str() + 5, &end, 10);
            ISS_INPUT(*end == '\0' && parsed >= 0, "--device: bad CUDA device number in '", text, "'");
            index = int(parsed);
        }
        ISS_INPUT(built_with_cuda(), "--device ", text, ": this program was built without CUDA (use --device cpu)");
        const int count = cuda_device_count();
        ISS_INPUT(index < count, "--device ", text, ": ",
                  count == 0 ? std::string("no CUDA device is present (use --device cpu, or auto: CUDA where present)")
                             : cat("only ", count, " CUDA device(s) present"));
        return Device{Backend::cuda, index};
    }
    throw InputError(cat("--device: expected auto, cpu, cuda or cuda:N, got '", text, "'"));
}

DeviceContext::DeviceContext(Device device) : device_(device) {
    if (!device_.is_cuda()) return;
#if INFANT_WITH_CUDA
    ISS_REQUIRE(device_.index < cuda_device_count(), "CUDA device ", device_.index, " is not present");
    ISS_CUDA_CHECK(cudaSetDevice(device_.index));
    int major = 0, minor = 0;
    ISS_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_.index));
    ISS_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_.index));
    compute_capability_ = major * 10 + minor;
    cudaStream_t stream = nullptr;
    ISS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    stream_ = stream;
#else
    throw Error("CUDA device requested, but this program was built without CUDA");
#endif
}

DeviceContext::~DeviceContext() {
    release(workspace_);
#if INFANT_WITH_CUDA
    if (staging_) {
        cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));  // its copies may be queued
        staging_.reset();
    }
    if (cudnn_) cudnnDestroy(static_cast<cudnnHandle_t>(cudnn_));
    if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
#endif
}

void* DeviceContext::allocate(size_t bytes) {
    if (bytes == 0) return nullptr;
    if (device_.is_cuda()) {
#if INFANT_WITH_CUDA
        void* ptr = nullptr;
        const cudaError_t status = cudaMalloc(&ptr, bytes);
        if (status != cudaSuccess) {
            cudaGetLastError();
            throw Error(cat("out of GPU memory on ", device_.name(), ": could not allocate ", bytes, " bytes (",
                            cudaGetErrorString(status), ")"));
        }
        return ptr;
#endif
    }
    const size_t rounded = (bytes + 255) / 256 * 256;  // 256: as cudaMalloc, and a cache-line multiple
    void* ptr = std::aligned_alloc(256, rounded);
    if (!ptr)
        throw Error(cat("out of memory: could not allocate ", bytes, " bytes (", gib_text(double(bytes)),
                        " GiB) more; this process may use ", gib_text(double(host_memory_bytes())),
                        " GiB (the machine's RAM, or a container's or ulimit's limit)"));
    return ptr;
}

void DeviceContext::release(void* ptr) noexcept {
    if (!ptr) return;
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) {
        cudaFree(ptr);
        return;
    }
#endif
    std::free(ptr);
}

void DeviceContext::copy_to_device(void* dst, const void* host_src, size_t bytes) {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) {
        ISS_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream_)));
        ISS_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
        return;
    }
#endif
    std::memcpy(dst, host_src, bytes);
}

void DeviceContext::copy_to_host(void* host_dst, const void* src, size_t bytes) {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) {
        ISS_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream_)));
        ISS_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
        return;
    }
#endif
    std::memcpy(host_dst, src, bytes);
}

void DeviceContext::upload_async(void* dst, const void* host_src, size_t bytes) {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) {
        if (bytes == 0) return;
        const auto stream = static_cast<cudaStream_t>(stream_);
        if (!staging_) staging_ = std::make_unique<Staging>();
        Staging::Slot& slot = staging_->slots[staging_->next];
        staging_->next ^= 1;
        if (slot.copied)
            ISS_CUDA_CHECK(cudaEventSynchronize(slot.copied));  // the slot's previous copy has read it
        else
            ISS_CUDA_CHECK(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming));
        if (slot.bytes < bytes) {
            void* old = slot.host;  // forgotten first: a failed free must not be freed again later
            slot.host = nullptr;
            slot.bytes = 0;
            if (old) ISS_CUDA_CHECK(cudaFreeHost(old));
            ISS_CUDA_CHECK(cudaMallocHost(&slot.host, bytes));
            slot.bytes = bytes;
        }
        std::memcpy(slot.host, host_src, bytes);
        ISS_CUDA_CHECK(cudaMemcpyAsync(dst, slot.host, bytes, cudaMemcpyHostToDevice, stream));
        ISS_CUDA_CHECK(cudaEventRecord(slot.copied, stream));
        return;
    }
#endif
    std::memcpy(dst, host_src, bytes);
}

void DeviceContext::copy_on_device(void* dst, const void* src, size_t bytes) {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) {
        ISS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream_)));
        return;
    }
#endif
    std::memcpy(dst, src, bytes);
}

void DeviceContext::fill_zero(void* dst, size_t bytes) { fill_bytes(dst, 0, bytes); }

void DeviceContext::fill_bytes(void* dst, int value, size_t bytes) {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) {
        ISS_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, static_cast<cudaStream_t>(stream_)));
        return;
    }
#endif
    std::memset(dst, value, bytes);
}

size_t DeviceContext::memory_capacity() const {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) {
        size_t free_bytes = 0, total_bytes = 0;
        ISS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        return total_bytes;
    }
#endif
    return host_memory_bytes();
}

size_t cgroup_memory_limit(const std::string& cgroup_list, const std::string& cgroup_root) {
    size_t limit = 0;
    auto consider = [&](const std::string& file) {
        std::ifstream in(file);
        unsigned long long bytes = 0;  // "max" (none) does not read as a number
        if (in >> bytes && bytes > 0 && (limit == 0 || bytes < limit)) limit = size_t(bytes);
    };
    std::ifstream groups(cgroup_list);
    std::string line;
    while (std::getline(groups, line)) {
        // "ID:CONTROLLERS:PATH": v2's line names no controllers, v1's memory line names "memory".
        const size_t a = line.find(':'), b = line.find(':', a == std::string::npos ? a : a + 1);
        if (b == std::string::npos) continue;
        const std::string controllers = "," + line.substr(a + 1, b - a - 1) + ",";
        const bool v2 = controllers == ",,";
        if (!v2 && controllers.find(",memory,") == std::string::npos) continue;
        const std::string base = v2 ? cgroup_root : cgroup_root + "/memory";
        const char* file = v2 ? "/memory.max" : "/memory.limit_in_bytes";
        for (std::string path = line.substr(b + 1);; path = path.substr(0, path.rfind('/'))) {
            consider(base + (path == "/" ? "" : path) + file);
            if (path.empty() || path == "/") break;
        }
    }
    return limit;
}

std::string gib_text(double bytes) {
    const double gib = bytes / double(int64_t(1) << 30), scale = gib < 1 ? 100 : 10;
    return cat(std::round(gib * scale) / scale);
}

size_t host_memory_bytes() {
    // Once a process: every volume read and every scan predicted asks, and the files do not change.
    static const size_t bytes = [] {
        size_t bytes = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGE_SIZE));
        const size_t limit = cgroup_memory_limit();
        if (limit > 0) bytes = std::min(bytes, limit);
        // A shell's `ulimit -v` or `-d` (prlimit --as, --data): allocations fail past it, however
        // much RAM is free (a predict refused nothing and failed after 10 s).
        for (const int resource : {RLIMIT_AS, RLIMIT_DATA}) {
            struct rlimit r {};
            if (::getrlimit(resource, &r) == 0 && r.rlim_cur != RLIM_INFINITY)
                bytes = std::min(bytes, size_t(r.rlim_cur));
        }
        return bytes;
    }();
    return bytes;
}

size_t DeviceContext::memory_free() const {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) {
        size_t free_bytes = 0, total_bytes = 0;
        ISS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        return free_bytes;
    }
#endif
    return size_t(sysconf(_SC_AVPHYS_PAGES)) * size_t(sysconf(_SC_PAGE_SIZE));
}

void* DeviceContext::workspace(size_t bytes) {
    if (bytes > workspace_bytes_) {
        release_workspace();
        workspace_ = allocate(bytes);
        workspace_bytes_ = bytes;
    }
    return workspace_;
}

void DeviceContext::release_workspace() {
    if (!workspace_) return;
    synchronize();  // queued work may still read it
    release(workspace_);
    workspace_ = nullptr;
    workspace_bytes_ = 0;
}

void DeviceContext::make_current() const {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) ISS_CUDA_CHECK(cudaSetDevice(device_.index));
#endif
}

void DeviceContext::synchronize() {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) ISS_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
#endif
}

void* DeviceContext::cudnn_handle() {
    ISS_REQUIRE(device_.is_cuda(), "cuDNN handle requested on the CPU context");
#if INFANT_WITH_CUDA
    if (!cudnn_) {
        check_cudnn_runtime();
        cudnnHandle_t handle = nullptr;
        ISS_CUDNN_CHECK(cudnnCreate(&handle));
        ISS_CUDNN_CHECK(cudnnSetStream(handle, static_cast<cudaStream_t>(stream_)));
        cudnn_ = handle;
    }
#endif
    return cudnn_;
}

dnnl::engine& DeviceContext::dnnl_engine() {
    if (!dnnl_) ISS_DNNL_CALL(dnnl_ = std::make_unique<Dnnl>());
    return dnnl_->engine;
}

dnnl::stream& DeviceContext::dnnl_stream() {
    dnnl_engine();
    return dnnl_->stream;
}

}  // namespace iss
