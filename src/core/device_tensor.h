// DeviceTensor: an owning, contiguous tensor in a MemorySpace (the host, or a device the
// backend adds: backend/device_memory.h), with a TensorView of it. tca_core knows only the
// host; a device's MemorySpace moves bytes through the backend's runtime, so this layer stays
// free of CUDA. Host code reads device data only through explicit copies (download / to_host);
// on the host, data<T>() is the buffer itself (no copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "core/host_tensor.h"
#include "core/status.h"
#include "core/tensor_view.h"

namespace tca {

// Where a tensor's bytes live and how they move to and from host memory.
class MemorySpace {
public:
    virtual ~MemorySpace() = default;
    virtual const char* name() const = 0;  // "cpu", "cuda"
    virtual bool is_host() const = 0;
    // Errors name the size (out_of_memory); never returns null on success.
    virtual Result<void*> allocate(size_t bytes) const = 0;
    virtual void release(void* p) const noexcept = 0;
    // host -> this space, this space -> host, within this space; complete on return.
    virtual Status upload(void* dst, const void* host_src, size_t bytes) const = 0;
    virtual Status download(void* host_dst, const void* src, size_t bytes) const = 0;
    virtual Status copy(void* dst, const void* src, size_t bytes) const = 0;
    virtual Status fill_zero(void* dst, size_t bytes) const = 0;
    // Bytes free for new allocations, 0 when unknown.
    virtual uint64_t available_bytes() const = 0;
};

// The host's memory space (64-byte aligned allocations).
const MemorySpace& host_memory();

class DeviceTensor {
public:
    DeviceTensor() = default;
    // A host tensor; throws std::bad_alloc like HostTensor.
    DeviceTensor(DType dtype, std::initializer_list<int64_t> shape);
    DeviceTensor(DType dtype, const std::vector<int64_t>& shape);
    // A tensor in `space` (uninitialised); the error names the size.
    static Result<DeviceTensor> create(const MemorySpace& space, DType dtype,
                                       const std::vector<int64_t>& shape);

    DeviceTensor(DeviceTensor&& o) noexcept;
    DeviceTensor& operator=(DeviceTensor&& o) noexcept;
    DeviceTensor(const DeviceTensor&) = delete;
    DeviceTensor& operator=(const DeviceTensor&) = delete;
    ~DeviceTensor();

    const TensorView& view() const { return view_; }
    int64_t numel() const { return view_.numel(); }
    size_t nbytes() const { return bytes_; }
    bool on_host() const { return space_ == nullptr || space_->is_host(); }
    const MemorySpace& space() const { return space_ ? *space_ : host_memory(); }
    // Host data only (asserts on_host()).
    template <class T>
    T* data() const {
        TCA_ASSERT(on_host(), "DeviceTensor::data on %s memory: copy it to the host first", space().name());
        return static_cast<T*>(view_.data);
    }
    // Every element set to v (converted to the storage type). On a device: zero by a memset,
    // other values through a host staging copy.
    Status fill(double v);
    // Bytes [offset, offset + bytes) of the buffer from / to host memory.
    Status upload(const void* src, size_t bytes, size_t offset = 0);
    Status download(void* dst, size_t bytes, size_t offset = 0) const;

private:
    const MemorySpace* space_ = nullptr;
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
    TensorView view_;
};

// A contiguous host copy of a (possibly strided) view whose data lives in `space`.
Result<HostTensor> to_host(const TensorView& v, const MemorySpace& space);

}  // namespace tca
