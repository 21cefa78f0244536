// AttentionRunner: one layer's attention step under an attention policy (sparse/attention_policy.h):
// append the batch's K/V to the layer's ragged cache, attend, and compact the cache as the
// policy says (tca-method M6, M7). Scratch buffers are sized once, for the context size, in the
// memory space of the device the runner drives; the host policy code (when to compact, Psi,
// the baselines' top-k) reads and writes device data through small host mirrors (explicit
// copies). On the host the mirrors are empty and the policy works on the buffers themselves.
// The cache counts (n_global, n_slots) are tracked on the host for every layer, so a decode
// step on a device reads no counter back (performance.md P6, P8): every op that changes them
// with a host-known effect updates the copy; only TCA's sparse prefill (a selection the device
// counts) makes the next read download them. On the host the copy is checked at every read.
#pragma once

#include <memory>

#include "backend/tca_attention.h"
#include "kv/kv_cache.h"
#include "sparse/attention_policy.h"

namespace tca {

// Attention fidelity against dense attention on the same inputs, per layer (issue 6,
// docs/eval.md "Attention fidelity"): measured for a prompt evaluated as one batch on an empty
// cache, from that layer's own queries, keys and values (so an error is the layer's own, not
// carried from the layers below). Every entry is [n_layer] for the last prompt measured.
struct AttentionProbe {
    int64_t rows = 0;  // the last `rows` prompt queries whose prefill outputs are compared
    // Dense attention mass of the prompt's last query (softmax over every prompt position, mean
    // over the query heads) on the positions the cache holds after the prompt; 1 for dense.
    std::vector<double> recall;
    // ||out - dense|| / ||dense|| (Frobenius, over heads, rows and dims) of the prefill output
    // of the last `rows` queries: TCA's sparse prefill (M6); 0 when the prefill is dense.
    std::vector<double> prefill_error;
    // The same for the last query attending over the cache the policy kept (what decoding
    // reads from then on) against its dense output.
    std::vector<double> decode_error;
};

// Tensor parallelism: a rank's runner drives KV heads [kv_head0, kv_head0 + n_kv_heads) of a
// policy written for the whole model (its budgets are sliced to those heads); whether a prompt
// runs the sparse prefill is still decided over every head of the layer, as on one device.
class AttentionRunner {
public:
    static Result<std::unique_ptr<AttentionRunner>> create(const AttentionPolicy& policy,
                                                           int64_t n_head, int64_t n_kv_heads,
                                                           int64_t head_dim, int64_t ctx,
                                                           DType kv_dtype,
                                                           const MemorySpace& space = host_memory(),
                                                           int64_t kv_head0 = 0);

    const AttentionPolicy& policy() const { return policy_; }
    // Selection stage timings of TCA prefill, summed over layers (target P2).
    const TcaStageTimings& tca_timings() const { return timings_; }
    // Forgets the stage timings and the probe's measurements (Engine::warmup).
    void clear_measurements() {
        timings_ = TcaStageTimings{};
        probe_.recall.clear();
        probe_.prefill_error.clear();
        probe_.decode_error.clear();
    }
    // Off: the sparse prefill runs untimed (no stage synchronisations on a device).
    void set_stage_timing(bool on) { time_stages_ = on; }
    size_t scratch_bytes() const;
    // Measures AttentionProbe for every prompt evaluated as one batch on an empty cache,
    // comparing the prefill outputs of its last `rows` queries (rows >= 1). Costs a dense
    // attention of those rows, one token-importance pass and one decode step per layer.
    Status enable_probe(int64_t rows);
    const AttentionProbe& probe() const { return probe_; }

    // q [n_head, n, d] (RoPE'd, strided view ok), k_new / v_new [n, n_kv_heads, d] f32, the
    // batch's positions pos0 .. pos0 + n - 1; out [n_head, n, d]. prompt_end marks the last
    // batch of a prompt (baselines compress then; TCA runs its sparse prefill when the whole
    // prompt is this batch and the cache was empty).
    Status run(Device device, int64_t layer, const TensorView& q, const TensorView& k_new,
               const TensorView& v_new, KvLayer& kv, int64_t pos0, bool prompt_end,
               const TensorView& out);

private:
    AttentionRunner() = default;
    // The policy's attention step after the batch's K/V were appended.
    Status attend(Device device, int64_t layer, const TensorView& q, KvLayer& kv, int64_t pos0,
                  bool prompt_end, const TensorView& out);
    // AttentionProbe: the dense reference before the policy's step (the cache still holds every
    // position), the comparison after it.
    Status probe_before(Device device, const TensorView& q, const KvLayer& kv);
    Status probe_after(Device device, int64_t layer, const TensorView& q, const KvLayer& kv,
                       const TensorView& out);
    Status dense_attend(Device device, const TensorView& q, KvLayer& kv, int64_t pos0,
                        const TensorView& out);
    Status tca_prefill(Device device, int64_t layer, const TensorView& q, KvLayer& kv,
                       const TensorView& out);
    Status tca_compact(Device device, int64_t layer, const TensorView& q, KvLayer& kv);
    Status tca_prompt_compact(Device device, int64_t layer, const TensorView& q, KvLayer& kv);
    Status compact_to_selection(Device device, int64_t layer, KvLayer& kv, int64_t L);
    // Whether an n-token prompt's sparse prefill beats dense by policy.min_prefill_gain.
    bool sparse_pays_off(int64_t layer, int64_t n_tokens) const;
    Status compress_prompt(Device device, int64_t layer, const TensorView& q, KvLayer& kv);
    Status streaming_evict(Device device, int64_t layer, KvLayer& kv);
    // kv_compact by kept_ / n_kept_ / region_ (their host values are what the op receives).
    Status compact_by_kept(Device device, int64_t layer, KvLayer& kv);
    // The layer's n_global / n_slots on the host: the tracked copy (see the top of this file).
    Status read_counts(int64_t layer, const KvLayer& kv, const int32_t** n_global,
                       const int32_t** n_slots);
    // Host pointer for a scratch tensor: itself on the host, else its mirror.
    template <class T>
    static T* host(const DeviceTensor& t, const HostTensor& mirror) {
        return t.on_host() ? t.data<T>() : mirror.data<T>();
    }
    // Mirror -> tensor, bytes [offset, offset + bytes) (nothing to do on the host).
    static Status push(DeviceTensor& t, const HostTensor& mirror, size_t bytes, size_t offset = 0);

    AttentionPolicy policy_;
    std::vector<double> prefill_keep_;  // [n_layer] tca: the largest expected keep fraction
    int64_t n_head_ = 0, n_kv_heads_ = 0, head_dim_ = 0, ctx_ = 0;
    std::unique_ptr<TcaPrefillWorkspace> ws_;  // tca: selection buffers for a whole prompt
    DeviceTensor scores_;   // [n_kv_heads, ctx] f32: token scores of compaction / baselines
    DeviceTensor mass_, hhi_, block_score_, psi_, keep_;  // [1, ctx / b] per-head chunk ranking
    DeviceTensor kept_;      // [n_kv_heads, ctx] i32 kept slot offsets for kv_compact
    DeviceTensor n_kept_;    // [n_kv_heads] i32
    DeviceTensor region_;    // [n_kv_heads] i32
    // tca: per layer, the decode budget t of each KV head (M7), uploaded once; block_compact
    // itself skips the heads whose local part is not full, so a step uploads nothing.
    std::vector<DeviceTensor> decode_keep_;
    // Host mirrors of the tensors above (device runners only).
    HostTensor h_scores_, h_psi_, h_kept_, h_n_kept_, h_region_;
    // The tracked cache counts of one layer.
    struct Counts {
        std::vector<int32_t> n_global, n_slots;  // [n_kv_heads]
        int64_t next_pos = -1;                   // where the next batch starts if nothing else ran
        bool known = false;                      // false: read them from the cache next time
    };
    std::vector<Counts> counts_;  // [n_layer]
    const MemorySpace* space_ = nullptr;
    TcaStageTimings timings_;
    bool time_stages_ = true;
    // AttentionProbe scratch: dense outputs of the probe rows [n_head, rows, d], the last
    // query's dense attention per KV head [n_kv_heads, ctx], its output over the kept cache
    // [n_head, 1, d].
    DeviceTensor probe_ref_, probe_probs_, probe_dec_;
    AttentionProbe probe_;
};

}  // namespace tca
