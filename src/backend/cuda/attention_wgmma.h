// Hopper (sm_90a) warpgroup-MMA attention kernels (attention_wgmma.cu): internal entry points,
// not yet behind the public dispatch. Each validates its Params, then returns unsupported
// (Status code kUnsupported) for what it does not handle — head_dim other than 64/128, K/V not
// bf16 with 16-byte-aligned rows, q/out rows misaligned, a device that is not compute
// capability 9.0 — so the caller falls back to the mma.sync kernel (attention_prefill.cu).
#pragma once

#include "backend/ops.h"
#include "core/status.h"

namespace tca::cuda {

// True when the sm_90a kernel image is present and the current device can run it.
bool attention_wgmma_available();

Status attention_dense_wgmma(const AttentionDenseParams& p);
Status sparse_prefill_wgmma(const SparsePrefillParams& p);

}  // namespace tca::cuda
