// Device management (cuda_runtime.h).
#include "backend/cuda/cuda_runtime.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>

#include "backend/cuda/cuda_check.cuh"

namespace tca::cuda {

namespace {

double gib(size_t b) { return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0); }

// Small host-to-device uploads go through a pinned staging ring per device: the source is
// copied into a free slot and the copy queued on the stream, so the call returns without
// waiting for the GPU (a synchronous upload drains the queue: the prompt end of a TCA prompt
// kept dense uploads per layer, performance.md P8). A slot is reused once the event recorded
// after its copy has fired; with kStageSlots slots that wait is rare.
constexpr size_t kStageSlotBytes = 256 * 1024;
constexpr int kStageSlots = 16;

struct StageRing {
    std::mutex mu;
    bool tried = false;
    char* pinned = nullptr;  // kStageSlots * kStageSlotBytes of page-locked memory, or null
    cudaEvent_t done[kStageSlots] = {};
    bool pending[kStageSlots] = {};
    int next = 0;
};
StageRing g_stage[kMaxDevices];

// The ring of the current device, made on first use; false when page-locked memory or events
// are unavailable (the caller then copies synchronously). Called with r.mu held.
bool stage_ready(StageRing& r) {
    if (r.tried) return r.pinned != nullptr;
    r.tried = true;
    // TCA_CUDA_SYNC_UPLOADS=1: every upload waits (the behaviour before the ring; for timing it).
    const char* env = std::getenv("TCA_CUDA_SYNC_UPLOADS");
    if (env != nullptr && std::string_view(env) == "1") return false;
    void* p = nullptr;
    if (cudaHostAlloc(&p, kStageSlotBytes * kStageSlots, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    for (cudaEvent_t& e : r.done) {
        if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
            cudaGetLastError();
            cudaFreeHost(p);
            return false;
        }
    }
    r.pinned = static_cast<char*>(p);
    return true;
}

}  // namespace

Status device_check() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device" error
        return device_error("cuda: no usable CUDA device (%s: %s)", cudaGetErrorName(e),
                            cudaGetErrorString(e));
    }
    if (n == 0) return device_error("cuda: no CUDA device is visible");
    int major = 0;
    TCA_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
    if (major < 8) {
        return unsupported("cuda: device 0 has compute capability %d.x; the CUDA backend needs >= 8.0",
                           major);
    }
    return Status();
}

Result<DeviceInfo> device_info() {
    TCA_RETURN_IF_ERROR(device_check());
    DeviceInfo d;
    TCA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&d.index));
    cudaDeviceProp prop{};
    TCA_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, d.index));
    d.name = prop.name;
    d.cc_major = prop.major;
    d.cc_minor = prop.minor;
    d.sm_count = prop.multiProcessorCount;
    d.l2_bytes = static_cast<size_t>(prop.l2CacheSize);
    d.smem_per_block_optin = prop.sharedMemPerBlockOptin;
    TCA_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&d.free_bytes, &d.total_bytes));
    return d;
}

Status set_device(int index) {
    int n = 0;
    TCA_CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&n));
    if (index < 0 || index >= n || index >= kMaxDevices) {
        return device_error("cuda: device %d is not visible (%d device(s))", index, n);
    }
    TCA_CUDA_RETURN_IF_ERROR(cudaSetDevice(index));
    return Status();
}

cudaStream_t cu_stream() {
    static std::once_flag once[kMaxDevices];
    static cudaStream_t streams[kMaxDevices] = {};
    const int d = current_device();
    std::call_once(once[d], [d] {
        if (cudaStreamCreateWithFlags(&streams[d], cudaStreamNonBlocking) != cudaSuccess) {
            cudaGetLastError();
            streams[d] = nullptr;  // fall back to the legacy default stream
        }
    });
    return streams[d];
}

void* stream() { return cu_stream(); }

Status synchronize() {
    TCA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cu_stream()));
    return cuda_status(cudaGetLastError(), "kernel");
}

Result<void*> device_malloc(size_t bytes) {
    TCA_RETURN_IF_ERROR(device_check());
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        if (e == cudaErrorMemoryAllocation) {
            return out_of_memory("cuda: out of device memory allocating %.2f GiB (free %.2f GiB of %.2f GiB)",
                                 gib(bytes), gib(free_b), gib(total_b));
        }
        return cuda_status(e, "cudaMalloc");
    }
    return p;
}

void device_free(void* p) {
    if (p != nullptr) cudaFree(p);
}

Status copy_to_device(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return Status();
    if (bytes <= kStageSlotBytes) {
        StageRing& r = g_stage[current_device()];
        std::lock_guard<std::mutex> lock(r.mu);
        if (stage_ready(r)) {
            const int s = r.next;
            r.next = (s + 1) % kStageSlots;
            if (r.pending[s]) TCA_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(r.done[s]));
            r.pending[s] = false;
            char* slot = r.pinned + static_cast<size_t>(s) * kStageSlotBytes;
            std::memcpy(slot, src, bytes);
            TCA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, cu_stream()));
            TCA_CUDA_RETURN_IF_ERROR(cudaEventRecord(r.done[s], cu_stream()));
            r.pending[s] = true;
            return Status();
        }
    }
    TCA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu_stream()));
    TCA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cu_stream()));
    return Status();
}

Status copy_to_host(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return Status();
    TCA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cu_stream()));
    TCA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cu_stream()));
    return Status();
}

Status copy_on_device(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return Status();
    TCA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu_stream()));
    return Status();
}

Status fill_bytes(void* dst, int byte, size_t bytes) {
    if (bytes == 0) return Status();
    TCA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(dst, byte, bytes, cu_stream()));
    return Status();
}

Result<void*> scratch(size_t bytes, int slot) {
    TCA_ASSERT(slot >= 0 && slot < kScratchSlots, "scratch slot %d", slot);
    static std::mutex mu;
    static DeviceBuffer bufs[kMaxDevices][kScratchSlots];
    const int d = current_device();
    std::lock_guard<std::mutex> lock(mu);
    DeviceBuffer& b = bufs[d][slot];
    if (b.bytes() < bytes) {
        // The old buffer may still be read by queued work: wait before freeing it.
        TCA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cu_stream()));
        b = DeviceBuffer();
        TCA_ASSIGN_OR_RETURN(b, DeviceBuffer::allocate(bytes + bytes / 4));
    }
    return b.get();
}

Result<DeviceBuffer> DeviceBuffer::allocate(size_t bytes) {
    TCA_ASSIGN_OR_RETURN(void* p, device_malloc(bytes));
    DeviceBuffer b;
    b.ptr_ = p;
    b.bytes_ = bytes;
    return Result<DeviceBuffer>(std::move(b));
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
        device_free(ptr_);
        ptr_ = o.ptr_;
        bytes_ = o.bytes_;
        o.ptr_ = nullptr;
        o.bytes_ = 0;
    }
    return *this;
}

EventTimer::EventTimer() {
    cudaEvent_t a = nullptr, b = nullptr;
    if (cudaEventCreate(&a) != cudaSuccess || cudaEventCreate(&b) != cudaSuccess) cudaGetLastError();
    start_ = a;
    stop_ = b;
}

EventTimer::~EventTimer() {
    if (start_) cudaEventDestroy(static_cast<cudaEvent_t>(start_));
    if (stop_) cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}

void EventTimer::start() { cudaEventRecord(static_cast<cudaEvent_t>(start_), cu_stream()); }

Result<double> EventTimer::stop_ms() {
    TCA_CUDA_RETURN_IF_ERROR(cudaEventRecord(static_cast<cudaEvent_t>(stop_), cu_stream()));
    TCA_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)));
    float ms = 0.0f;
    TCA_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_),
                                                  static_cast<cudaEvent_t>(stop_)));
    return static_cast<double>(ms);
}

}  // namespace tca::cuda
