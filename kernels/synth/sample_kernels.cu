// A generator sample on CUDA from a device copy of its SampleKernels block, captured once as a
// CUDA graph and replayed (sample_kernels.h).
#include "kernels/common/launch.cuh"
#include "kernels/synth/sample_kernels.h"

namespace iss {
namespace {

// Enqueues the sample's kernels, each reading its body from the device block.
class Launcher {
public:
    Launcher(DeviceContext& ctx, const SampleKernels& host, const SampleKernels* device, const SampleCapacity& capacity)
        : ctx_(ctx), host_(host), device_(device), capacity_(capacity) {}

    void operator()(const ResizeFieldBody& body) const { voxels(body, capacity_.field); }
    void operator()(const SquareFieldBody& body) const { voxels(body, capacity_.field); }
    void operator()(const DeformBody& body) const { voxels(body, capacity_.image); }
    // Flat bodies of four voxels a call: launched over quads, indexing up to the extent in voxels.
    void operator()(const GmmBody& body) const {
        cuda_for_each_from(ctx_, on_device(body), quads(capacity_.image), capacity_.index_extent);
    }
    void operator()(const BlurBody& body) const { voxels(body, capacity_.image); }
    // The acquisition grid is never larger than the crop.
    void operator()(const ResampleBody& body) const { voxels(body, capacity_.image); }
    // The range's buffer is the generator's, the same in every sample (only its identities are
    // set by host-side memsets; the kernels read it from the body).
    void operator()(const BiasClipBody& body) const {
        bias_clip_cuda_from(ctx_, on_device(body), body.a.range, capacity_.image, capacity_.index_extent);
    }
    void operator()(const NormaliseGammaBody& body) const {
        cuda_for_each_from(ctx_, on_device(body), quads(capacity_.image), capacity_.index_extent);
    }

private:
    template <class Body>
    void voxels(const Body& body, int64_t capacity) const {
        cuda_for_each_voxel_from(ctx_, on_device(body), capacity, capacity_.index_extent);
    }

    // Where a body of the host block lies in the device copy: the same offset.
    template <class Body>
    const Body* on_device(const Body& body) const {
        const auto offset = reinterpret_cast<const char*>(&body) - reinterpret_cast<const char*>(&host_);
        return reinterpret_cast<const Body*>(reinterpret_cast<const char*>(device_) + offset);
    }

    DeviceContext& ctx_;
    const SampleKernels& host_;
    const SampleKernels* device_;
    SampleCapacity capacity_;
};

class CudaSampleReplay final : public SampleReplay {
public:
    CudaSampleReplay(DeviceContext& ctx, const SampleKernels& host, const SampleKernels* device,
                     const SampleCapacity& capacity)
        : ctx_(ctx), host_(host), steps_(capacity.steps), launch_(ctx, host, device, capacity) {}

    ~CudaSampleReplay() override {
        if (exec_) cudaGraphExecDestroy(exec_);
    }

    void run() override {
        // The first sample, and every sample in synchronous mode (whose waits a capture
        // forbids), runs uncaptured: the kernels' modules are then loaded before any capture
        // (lazy loading inside a capture needs a recent driver).
        if (!launched_once_ || cuda_synchronous_mode()) {
            enqueue();
            launched_once_ = true;
            return;
        }
        const cudaStream_t stream = static_cast<cudaStream_t>(ctx_.cuda_stream());
        if (!exec_) capture(stream);
        ISS_CUDA_CHECK(cudaGraphLaunch(exec_, stream));
    }

private:
    void enqueue() const { for_each_sample_kernel(host_, steps_, launch_); }

    void capture(cudaStream_t stream) {
        ctx_.make_current();
        ISS_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        cudaGraph_t graph = nullptr;
        try {
            enqueue();
        } catch (...) {
            // End the capture whatever failed, so that the stream is usable again.
            cudaStreamEndCapture(stream, &graph);
            if (graph) cudaGraphDestroy(graph);
            cudaGetLastError();
            throw;
        }
        ISS_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
        // The executable graph is all that is kept: the graph itself goes, instantiated or not.
        const cudaError_t instantiated = cudaGraphInstantiate(&exec_, graph, 0);
        cudaGraphDestroy(graph);
        if (instantiated != cudaSuccess) {
            exec_ = nullptr;
            cudaGetLastError();  // not left for the next launch's check to report
            throw_call_error("CUDA", "cudaGraphInstantiate", __FILE__, __LINE__, cudaGetErrorString(instantiated));
        }
    }

    DeviceContext& ctx_;
    const SampleKernels& host_;
    int steps_;
    Launcher launch_;
    bool launched_once_ = false;
    cudaGraphExec_t exec_ = nullptr;
};

}  // namespace

std::unique_ptr<SampleReplay> make_sample_replay_cuda(DeviceContext& ctx, const SampleKernels& host,
                                                      const SampleKernels* device, const SampleCapacity& capacity) {
    return std::make_unique<CudaSampleReplay>(ctx, host, device, capacity);
}

}  // namespace iss
