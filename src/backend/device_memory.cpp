// Memory spaces per device (device_memory.h).
#include "backend/device_memory.h"

#if TCA_HAVE_CUDA
#include "backend/cuda/cuda_runtime.h"
#endif

namespace tca {
namespace {

#if TCA_HAVE_CUDA
class CudaMemory final : public MemorySpace {
public:
    const char* name() const override { return "cuda"; }
    bool is_host() const override { return false; }
    Result<void*> allocate(size_t bytes) const override { return cuda::device_malloc(bytes); }
    void release(void* p) const noexcept override { cuda::device_free(p); }
    // The copies run on the backend's stream, so they are ordered after every op launched.
    Status upload(void* dst, const void* src, size_t bytes) const override {
        return cuda::copy_to_device(dst, src, bytes);
    }
    Status download(void* dst, const void* src, size_t bytes) const override {
        return cuda::copy_to_host(dst, src, bytes);
    }
    Status copy(void* dst, const void* src, size_t bytes) const override {
        return cuda::copy_on_device(dst, src, bytes);
    }
    Status fill_zero(void* dst, size_t bytes) const override { return cuda::fill_bytes(dst, 0, bytes); }
    uint64_t available_bytes() const override {
        Result<cuda::DeviceInfo> info = cuda::device_info();
        return info.ok() ? info.value().free_bytes : 0;
    }
};
#endif

}  // namespace

Result<const MemorySpace*> memory_space(Device device) {
    if (device == Device::kCpu) return &host_memory();
#if TCA_HAVE_CUDA
    TCA_RETURN_IF_ERROR(cuda::device_check());
    static const CudaMemory cuda_memory;
    return &cuda_memory;
#else
    return unsupported("--device cuda: this build has no CUDA backend (configure with -DTCA_CUDA=ON "
                       "where nvcc is installed)");
#endif
}

Status select_device(Device device, int index) {
#if TCA_HAVE_CUDA
    if (device == Device::kCuda) return cuda::set_device(index);
#endif
    (void)device;
    (void)index;
    return Status();
}

Status synchronize(Device device) {
#if TCA_HAVE_CUDA
    if (device == Device::kCuda) return cuda::synchronize();
#endif
    (void)device;
    return Status();
}

}  // namespace tca
