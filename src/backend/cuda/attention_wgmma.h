// Hopper (sm_90a) warpgroup-MMA attention kernels (attention_wgmma.cu): internal entry points
// behind the public dispatch (cuda::attention_dense / cuda::sparse_prefill try them first). Each
// validates its Params, then returns unsupported (Status code kUnsupported) for what it does not
// handle — head_dim other than 64/128, K/V not bf16 with 16-byte-aligned rows, q/out rows
// misaligned, a device that is not compute capability 9.0 — and the dispatch falls back to the
// mma.sync kernel (attention_prefill.h: attention_dense_mma / sparse_prefill_mma).
#pragma once

#include "backend/ops.h"
#include "core/status.h"

namespace tca::cuda {

// True when the sm_90a kernel image is present and the current device can run it.
bool attention_wgmma_available();

// The main loop's schedule (attention_wgmma.cu): serial (the default) or the intra-warpgroup
// overlap of the softmax with the P V product; both give bitwise the same output. The
// environment variable TCA_CUDA_WGMMA_OVERLAP=1 starts a process with the overlap.
void set_attention_wgmma_overlap(bool on);
bool attention_wgmma_overlap();

Status attention_dense_wgmma(const AttentionDenseParams& p);
Status sparse_prefill_wgmma(const SparsePrefillParams& p);

}  // namespace tca::cuda
