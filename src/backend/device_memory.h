// The memory space of each device (core/device_tensor.h): the host for Device::kCpu, device
// memory through backend/cuda/cuda_runtime.h for Device::kCuda. Asking for the CUDA device
// checks it first, so a missing GPU or a build without CUDA is one clear error.
#pragma once

#include "backend/ops.h"
#include "core/device_tensor.h"

namespace tca {

// The space the runtime allocates `device`'s buffers in. Errors: "--device cuda: this build
// has no CUDA backend (...)", or cuda::device_check's reason (no driver, no device, too old).
Result<const MemorySpace*> memory_space(Device device);

// Makes device `index` of its kind the calling thread's current one (tensor-parallel rank
// `index` runs there): a no-op on the CPU; on cuda, cudaSetDevice. Every CUDA op, stream,
// scratch buffer and allocation of the thread then belongs to that GPU.
Status select_device(Device device, int index);

// Waits until the work queued on `device` has finished (no-op on the CPU, whose ops are
// synchronous); returns the first asynchronous error. Host-clock timings of GPU stages call it.
Status synchronize(Device device);

}  // namespace tca
