// Error handling inside the CUDA backend: every runtime call and every launch is checked and
// turned into a Status naming the op and the CUDA error (never an abort).
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <mutex>
#include <optional>

#include "core/check.h"
#include "core/status.h"

namespace tca::cuda {

// The backend's stream of the calling thread's current device (cuda_runtime.cu).
cudaStream_t cu_stream();

// Process-wide backend state is kept per device (tensor-parallel ranks are threads on
// different GPUs, each with its current device set): stream, cuBLAS handle, scratch, kernel
// attributes. Single-GPU runs use slot 0 only.
inline constexpr int kMaxDevices = 16;
inline int current_device() {
    int d = 0;
    if (cudaGetDevice(&d) != cudaSuccess) {
        (void)cudaGetLastError();
        d = 0;
    }
    TCA_ASSERT(d >= 0 && d < kMaxDevices, "CUDA device %d (at most %d supported)", d, kMaxDevices);
    return d;
}

// A value made once per device on first use there (cudaFuncSetAttribute is per device).
template <class T>
class PerDevice {
public:
    template <class F>
    const T& get(F&& make) {
        const int d = current_device();
        std::lock_guard<std::mutex> lock(mu_);
        std::optional<T>& v = values_[static_cast<size_t>(d)];
        if (!v) v.emplace(make());
        return *v;
    }

private:
    std::mutex mu_;
    std::array<std::optional<T>, kMaxDevices> values_;
};

inline Status cuda_status(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return Status();
    return device_error("cuda: %s failed: %s (%s)", what, cudaGetErrorString(e),
                          cudaGetErrorName(e));
}

// After a kernel launch: the launch configuration error, if any.
inline Status launch_status(const char* op) {
    return cuda_status(cudaGetLastError(), op);
}

}  // namespace tca::cuda

#define TCA_CUDA_RETURN_IF_ERROR(call)                                               \
    do {                                                                             \
        const cudaError_t tca_cuda_err_ = (call);                                    \
        if (tca_cuda_err_ != cudaSuccess) return ::tca::cuda::cuda_status(tca_cuda_err_, #call); \
    } while (0)
