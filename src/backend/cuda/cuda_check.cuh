// Error handling inside the CUDA backend: every runtime call and every launch is checked and
// turned into a Status naming the op and the CUDA error (never an abort).
#pragma once

#include <cuda_runtime.h>

#include "core/status.h"

namespace tca::cuda {

cudaStream_t cu_stream();  // the backend's stream (cuda_runtime.cu)

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
