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

// The main loop's schedule (attention_wgmma.cu): serial, or the intra-warpgroup overlap of the
// softmax with the P V product; both give bitwise the same output (docs/numerics.md). kDefault
// overlaps the dense kernel and keeps the sparse one serial: on an H100 (session 12,
// docs/perf/gpu.md) the overlap made dense 3.0-3.5% faster and the sparse prefill 5-8% slower.
// TCA_CUDA_WGMMA_OVERLAP in the environment starts a process with kOverlap (1) or kSerial (0).
enum class WgmmaSchedule { kDefault, kSerial, kOverlap };
void set_attention_wgmma_schedule(WgmmaSchedule s);
WgmmaSchedule attention_wgmma_schedule();

// Selects a schedule for its lifetime, then restores the one before (tests, tca_gpu_bench).
class WgmmaScheduleScope {
public:
    explicit WgmmaScheduleScope(WgmmaSchedule s) : before_(attention_wgmma_schedule()) {
        set_attention_wgmma_schedule(s);
    }
    ~WgmmaScheduleScope() { set_attention_wgmma_schedule(before_); }
    WgmmaScheduleScope(const WgmmaScheduleScope&) = delete;
    WgmmaScheduleScope& operator=(const WgmmaScheduleScope&) = delete;

private:
    WgmmaSchedule before_;
};

Status attention_dense_wgmma(const AttentionDenseParams& p);
Status sparse_prefill_wgmma(const SparsePrefillParams& p);

}  // namespace tca::cuda
