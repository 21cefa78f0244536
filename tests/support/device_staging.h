// Running an op on the CUDA backend from host test buffers: every device-side view of the
// Params (backend/op_views.h) is copied to device memory, the op runs through the dispatch, the
// stream is synchronised and every staged buffer is copied back (outputs and in/out tensors;
// inputs come back unchanged). Views that share host memory (in-place ops) share one device
// buffer. In builds without CUDA the runs return the dispatch's "not available" error.
//
// naive_lowp_run: the naive twin for tensor-core ops (harness.h Backend::kNaiveLowp).
#pragma once

#include "backend/ops.h"

namespace tca::test {

#define TCA_STAGING_DECLARE(name, Params)           \
    Status run_staged_on_cuda(const Params& p);     \
    Status naive_lowp_run(const Params& p);
TCA_FOR_EACH_OP(TCA_STAGING_DECLARE)
TCA_FOR_EACH_MODEL_OP(TCA_STAGING_DECLARE)
#undef TCA_STAGING_DECLARE

// Staged like run_staged_on_cuda, but runs `op` (an internal CUDA entry point such as
// cuda::sparse_prefill_wgmma or cuda::attention_dense_mma) instead of the dispatch, so tests can
// reach one kernel of an op directly. Without CUDA: the dispatch's "not available" error.
#define TCA_STAGING_WITH_DECLARE(name, Params) \
    Status run_staged_on_cuda_with(const Params& p, Status (*op)(const Params&));
TCA_FOR_EACH_OP(TCA_STAGING_WITH_DECLARE)
#undef TCA_STAGING_WITH_DECLARE

// True when a CUDA device is usable in this process (cuda tests skip otherwise).
bool cuda_device_available();

}  // namespace tca::test
