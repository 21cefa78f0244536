// TCA prefill attention for one layer, composed from the backend ops (tca-method M2-M6):
// token importance -> block scores -> per-block budgets -> token selection -> gather ->
// sparse attention, with the dense fallback when there are no candidate blocks (M10).
// Buffers live in a workspace sized once; each stage is timed for the selection-overhead
// measurement (target P2).
#pragma once

#include <memory>
#include <vector>

#include "backend/ops.h"
#include "core/device_tensor.h"
#include "core/host_tensor.h"
#include "sparse/head_budgets.h"

namespace tca {

struct TcaStageTimings {
    double importance_ms = 0, block_score_ms = 0, budget_ms = 0, select_ms = 0, gather_ms = 0;
    double attend_ms = 0;
    double selection_ms() const {
        return importance_ms + block_score_ms + budget_ms + select_ms + gather_ms;
    }
    double total_ms() const { return selection_ms() + attend_ms; }
};

// Buffers for one layer's TCA prefill with up to max_tokens tokens, in the memory of the
// device the pipeline runs on (host buffers from the constructor).
class TcaPrefillWorkspace {
public:
    TcaPrefillWorkspace(int64_t n_kv_heads, int64_t max_tokens, int64_t head_dim, DType kv_dtype,
                        const SparseOptions& opt);
    // In `space`; the error names the size that did not fit.
    static Result<std::unique_ptr<TcaPrefillWorkspace>> create(const MemorySpace& space,
                                                               int64_t n_kv_heads, int64_t max_tokens,
                                                               int64_t head_dim, DType kv_dtype,
                                                               const SparseOptions& opt);
    size_t nbytes() const;

    SparseOptions opt;
    int64_t max_blocks = 0;
    DeviceTensor scores;      // [n_kv_heads, max_tokens] f32
    DeviceTensor mass;        // [n_kv_heads, max_blocks] f32
    DeviceTensor hhi;         // [n_kv_heads, max_blocks] f32
    DeviceTensor block_score; // [n_kv_heads, max_blocks] f32
    DeviceTensor psi;         // [n_kv_heads, max_blocks] i32
    DeviceTensor keep;        // [n_kv_heads, max_blocks] i32
    DeviceTensor selected;    // [n_kv_heads, max_blocks * b] i32 positions
    DeviceTensor n_selected;  // [n_kv_heads] i32
    DeviceTensor k_global;    // [n_kv_heads, max_blocks * b, head_dim] kv dtype
    DeviceTensor v_global;    // [n_kv_heads, max_blocks * b, head_dim]
    DeviceTensor global_pos;  // [n_kv_heads, max_blocks * b] i32
    HostTensor psi_host;      // device workspaces: Psi built on the host, then uploaded

private:
    TcaPrefillWorkspace() = default;
};

// M2-M5 alone: the selection of the n_candidate_blocks(L) candidate blocks of q over k (all
// positions 0..L-1, L = k.shape[1] = q.shape[1]) into ws.selected / ws.n_selected (per KV head,
// ascending positions). An error when L leaves no candidate block.
Status tca_select(Device device, const TensorView& q, const TensorView& k,
                  const std::vector<HeadConfig>& configs, TcaPrefillWorkspace& ws,
                  TcaStageTimings* timings);

// out = TCA attention of q over k, v (all positions 0..L-1, L = k.shape[1] = q.shape[1]).
// configs holds one HeadConfig per KV head (tca-method M4). Adds each stage's time to *timings
// when non-null (on a device each stage is then bracketed by synchronisations); null: untimed.
Status tca_prefill_attention(Device device, const TensorView& q, const TensorView& k,
                             const TensorView& v, const TensorView& out,
                             const std::vector<HeadConfig>& configs, TcaPrefillWorkspace& ws,
                             TcaStageTimings* timings);

}  // namespace tca
