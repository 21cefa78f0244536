// The mma.sync (sm_80+) attention kernels of attention_prefill.cu as internal entry points.
// The public CUDA ops cuda::attention_dense / cuda::sparse_prefill (cuda_ops.h) first try the
// Hopper wgmma kernel (attention_wgmma.h) and call these only when it returns unsupported
// (head_dim other than 64/128, f16/f32 or misaligned K/V, a device that is not compute
// capability 9.0). Reachable on their own so tests/cuda and tools/gpu_bench can compare the
// two kernels on the same inputs. Same Params, validation and numerics as the public ops.
#pragma once

#include "backend/ops.h"
#include "core/status.h"

namespace tca::cuda {

Status attention_dense_mma(const AttentionDenseParams& p);
Status sparse_prefill_mma(const SparsePrefillParams& p);

}  // namespace tca::cuda
