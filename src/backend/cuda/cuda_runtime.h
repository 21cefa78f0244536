// Device management for the CUDA backend, callable from plain C++ (no CUDA header): device
// discovery with one-line errors ("cuda: no CUDA device is visible ..."), device memory,
// copies and the backend's stream. Everything returns Status; nothing aborts on a missing GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/status.h"

namespace tca::cuda {

struct DeviceInfo {
    int index = 0;
    std::string name;
    int cc_major = 0, cc_minor = 0;
    int sm_count = 0;
    size_t total_bytes = 0, free_bytes = 0;
    size_t l2_bytes = 0;
    size_t smem_per_block_optin = 0;
};

// OK when a CUDA device of compute capability >= 8.0 is usable; the error names the reason
// (no driver, no device, too old a device).
Status device_check();
Result<DeviceInfo> device_info();

// Makes GPU `index` the calling thread's current device (tensor-parallel ranks).
Status set_device(int index);

// The stream every CUDA op runs on (one per device, created on first use there; a
// cudaStream_t as void*).
void* stream();
// Waits for all work on the stream; returns the first asynchronous error.
Status synchronize();

// Device memory. malloc names the size in its error ("cuda: out of device memory allocating
// 2.0 GiB (free 1.2 GiB)").
Result<void*> device_malloc(size_t bytes);
void device_free(void* p);
// Host to device, ordered on the stream after every op launched. Up to 256 KiB are staged in a
// pinned ring and the call returns without waiting for the GPU (src may be reused at once);
// larger copies wait for their completion. TCA_CUDA_SYNC_UPLOADS=1 in the environment makes
// every upload wait (for timing the difference).
Status copy_to_device(void* dst, const void* src, size_t bytes);
Status copy_to_host(void* dst, const void* src, size_t bytes);
Status copy_on_device(void* dst, const void* src, size_t bytes);
Status fill_bytes(void* dst, int byte, size_t bytes);

// Scratch memory for ops: a persistent device buffer per (device, slot) (0..kScratchSlots-1) that grows
// to the largest size asked and lives until exit. Safe to reuse between ops because every op
// runs on the one stream; an op that needs two scratch buffers at once uses two slots.
inline constexpr int kScratchSlots = 8;
Result<void*> scratch(size_t bytes, int slot = 0);

// An owning device allocation (moves only).
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    static Result<DeviceBuffer> allocate(size_t bytes);
    DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
        o.ptr_ = nullptr;
        o.bytes_ = 0;
    }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    ~DeviceBuffer() { device_free(ptr_); }

    void* get() const { return ptr_; }
    size_t bytes() const { return bytes_; }

private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

// Device-side timing for benchmarks: milliseconds between two points on the stream.
class EventTimer {
public:
    EventTimer();
    ~EventTimer();
    EventTimer(const EventTimer&) = delete;
    EventTimer& operator=(const EventTimer&) = delete;
    void start();
    // Records the stop event, waits for it and returns the elapsed milliseconds.
    Result<double> stop_ms();

private:
    void* start_ = nullptr;
    void* stop_ = nullptr;
};

}  // namespace tca::cuda
