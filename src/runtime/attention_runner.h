// AttentionRunner: one layer's attention step under an attention policy (sparse/attention_policy.h):
// append the batch's K/V to the layer's ragged cache, attend, and compact the cache as the
// policy says (tca-method M6, M7). Scratch buffers are sized once, for the context size.
#pragma once

#include <memory>

#include "backend/tca_attention.h"
#include "kv/kv_cache.h"
#include "sparse/attention_policy.h"

namespace tca {

class AttentionRunner {
public:
    static Result<std::unique_ptr<AttentionRunner>> create(const AttentionPolicy& policy,
                                                           int64_t n_head, int64_t n_kv_heads,
                                                           int64_t head_dim, int64_t ctx,
                                                           DType kv_dtype);

    const AttentionPolicy& policy() const { return policy_; }
    // Selection stage timings of TCA prefill, summed over layers (target P2).
    const TcaStageTimings& tca_timings() const { return timings_; }
    size_t scratch_bytes() const;

    // q [n_head, n, d] (RoPE'd, strided view ok), k_new / v_new [n, n_kv_heads, d] f32, the
    // batch's positions pos0 .. pos0 + n - 1; out [n_head, n, d]. prompt_end marks the last
    // batch of a prompt (baselines compress then; TCA runs its sparse prefill when the whole
    // prompt is this batch and the cache was empty).
    Status run(Device device, int64_t layer, const TensorView& q, const TensorView& k_new,
               const TensorView& v_new, KvLayer& kv, int64_t pos0, bool prompt_end,
               const TensorView& out);

private:
    AttentionRunner() = default;
    Status dense_attend(Device device, const TensorView& q, KvLayer& kv, int64_t pos0,
                        const TensorView& out);
    Status tca_prefill(Device device, int64_t layer, const TensorView& q, KvLayer& kv,
                       const TensorView& out);
    Status tca_compact(Device device, int64_t layer, const TensorView& q, KvLayer& kv);
    Status compress_prompt(Device device, const TensorView& q, KvLayer& kv);
    Status streaming_evict(Device device, KvLayer& kv);
    Status compact_by_kept(Device device, KvLayer& kv);

    AttentionPolicy policy_;
    int64_t n_head_ = 0, n_kv_heads_ = 0, head_dim_ = 0, ctx_ = 0;
    std::unique_ptr<TcaPrefillWorkspace> ws_;  // tca: selection buffers for a whole prompt
    HostTensor scores_;   // [n_kv_heads, ctx] f32: token scores of compaction / baselines
    HostTensor mass_, hhi_, block_score_, psi_, keep_;  // [1, ctx / b] per-head chunk ranking
    HostTensor selected_;  // [1, ctx] i32
    HostTensor n_sel_;     // [1] i32
    HostTensor kept_;      // [n_kv_heads, ctx] i32 kept slot offsets for kv_compact
    HostTensor n_kept_;    // [n_kv_heads] i32
    HostTensor region_;    // [n_kv_heads] i32
    HostTensor keep_heads_;  // [n_kv_heads] i32 decode-time block_compact budgets
    TcaStageTimings timings_;
};

}  // namespace tca
