#include "kernels/common/device.h"

#include <cstdlib>
#include <cstring>
#include <unistd.h>
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

std::string Device::name() const { return is_cuda() ? cat("cuda:", index) : std::string("cpu"); }

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

const char* cublas_status_name(cublasStatus_t status) {
    switch (status) {
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        default: return "cuBLAS failure";
    }
}

void check_launch(const char* file, int line) {
    static const bool synchronous = [] {
        const char* v = std::getenv("INFANT_CUDA_SYNC");
        return v && *v && *v != '0';
    }();
    cudaError_t status = cudaGetLastError();
    if (status == cudaSuccess && synchronous) status = cudaDeviceSynchronize();
    if (status != cudaSuccess) throw_call_error("CUDA", "kernel launch", file, line, cudaGetErrorString(status));
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
        ISS_INPUT(built_with_cuda(), "--device ", text, ": this program was built without CUDA");
        const int count = cuda_device_count();
        ISS_INPUT(index < count, "--device ", text, ": ", count == 0 ? std::string("no CUDA device is present")
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
    cudaStream_t stream = nullptr;
    ISS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    stream_ = stream;
#else
    throw Error("CUDA device requested, but this program was built without CUDA");
#endif
}

DeviceContext::~DeviceContext() {
#if INFANT_WITH_CUDA
    if (cublas_) cublasDestroy(static_cast<cublasHandle_t>(cublas_));
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
    if (!ptr) throw Error(cat("out of memory: could not allocate ", bytes, " bytes"));
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

void DeviceContext::copy_on_device(void* dst, const void* src, size_t bytes) {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) {
        ISS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream_)));
        return;
    }
#endif
    std::memcpy(dst, src, bytes);
}

void DeviceContext::fill_zero(void* dst, size_t bytes) {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) {
        ISS_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, static_cast<cudaStream_t>(stream_)));
        return;
    }
#endif
    std::memset(dst, 0, bytes);
}

size_t DeviceContext::memory_capacity() const {
#if INFANT_WITH_CUDA
    if (device_.is_cuda()) {
        size_t free_bytes = 0, total_bytes = 0;
        ISS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        return total_bytes;
    }
#endif
    return size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGE_SIZE));
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
        cudnnHandle_t handle = nullptr;
        ISS_CUDNN_CHECK(cudnnCreate(&handle));
        ISS_CUDNN_CHECK(cudnnSetStream(handle, static_cast<cudaStream_t>(stream_)));
        cudnn_ = handle;
    }
#endif
    return cudnn_;
}

void* DeviceContext::cublas_handle() {
    ISS_REQUIRE(device_.is_cuda(), "cuBLAS handle requested on the CPU context");
#if INFANT_WITH_CUDA
    if (!cublas_) {
        cublasHandle_t handle = nullptr;
        ISS_CUBLAS_CHECK(cublasCreate(&handle));
        ISS_CUBLAS_CHECK(cublasSetStream(handle, static_cast<cudaStream_t>(stream_)));
        cublas_ = handle;
    }
#endif
    return cublas_;
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
