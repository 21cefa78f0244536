// AttentionRunner implementation (attention_runner.h). Every step is a backend op; the only
// host work is policy: when to compact, Psi per head (make_psi), and the baselines' top-k.
#include "runtime/attention_runner.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace tca {
namespace {

// One KV head's slots [first, first + len) of a cache tensor, as a [1, len, d] view.
TensorView head_slots(const DeviceTensor& t, int64_t head, int64_t first, int64_t len) {
    return slice(slice(t.view(), 0, head, 1), 1, first, len);
}

// The `k` highest scores (ties: lower index) of scores[0, n), returned ascending.
std::vector<int32_t> top_k_ascending(const float* scores, int64_t n, int64_t k) {
    std::vector<int32_t> idx(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), 0);
    k = std::min(k, n);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
        return scores[a] != scores[b] ? scores[a] > scores[b] : a < b;
    });
    idx.resize(static_cast<size_t>(k));
    std::sort(idx.begin(), idx.end());
    return idx;
}

}  // namespace

Result<std::unique_ptr<AttentionRunner>> AttentionRunner::create(const AttentionPolicy& policy,
                                                                int64_t n_head, int64_t n_kv_heads,
                                                                int64_t head_dim, int64_t ctx,
                                                                DType kv_dtype,
                                                                const MemorySpace& space,
                                                                int64_t kv_head0) {
    std::unique_ptr<AttentionRunner> r(new (std::nothrow) AttentionRunner());
    if (!r) return out_of_memory("attention runner: cannot allocate");
    r->policy_ = policy;
    // The layer is as slow as its most expensive head (over the whole model's heads).
    for (const std::vector<HeadConfig>& layer : policy.budgets.heads) {
        double keep = 0.0;
        for (const HeadConfig& c : layer) {
            keep = std::max(keep, expected_keep_fraction(c.p, policy.budgets.options.block_size));
        }
        r->prefill_keep_.push_back(keep);
    }
    for (std::vector<HeadConfig>& layer : r->policy_.budgets.heads) {
        if (kv_head0 == 0 && static_cast<int64_t>(layer.size()) == n_kv_heads) continue;
        TCA_ASSERT(kv_head0 >= 0 && kv_head0 + n_kv_heads <= static_cast<int64_t>(layer.size()),
                   "KV heads [%lld, +%lld) of %zu", static_cast<long long>(kv_head0),
                   static_cast<long long>(n_kv_heads), layer.size());
        layer = std::vector<HeadConfig>(layer.begin() + kv_head0, layer.begin() + kv_head0 + n_kv_heads);
    }
    r->n_head_ = n_head;
    r->n_kv_heads_ = n_kv_heads;
    r->head_dim_ = head_dim;
    r->ctx_ = ctx;
    r->space_ = &space;
    try {
        r->counts_.resize(std::max<size_t>(1, policy.budgets.heads.size()));
    } catch (const std::bad_alloc&) {
        return out_of_memory("attention runner: cannot allocate");
    }
    if (policy.kind == AttentionKind::kDense) return r;
    // Every scratch tensor, and on a device its host mirror (same shape).
    Status failed;
    auto alloc = [&](DeviceTensor& t, HostTensor* mirror, DType dt, std::vector<int64_t> shape) {
        if (!failed.ok()) return;
        Result<DeviceTensor> d = DeviceTensor::create(space, dt, shape);
        if (!d.ok()) {
            failed = d.status();
            return;
        }
        t = std::move(d.value());
        if (mirror && !space.is_host()) {
            try {
                *mirror = HostTensor(dt, shape);
            } catch (const std::bad_alloc&) {
                failed = out_of_memory("attention runner: host mirrors for %lld tokens do not fit in memory",
                                       static_cast<long long>(ctx));
            }
        }
    };
    alloc(r->scores_, &r->h_scores_, DType::kF32, {n_kv_heads, ctx});
    alloc(r->kept_, &r->h_kept_, DType::kI32, {n_kv_heads, ctx});
    alloc(r->n_kept_, &r->h_n_kept_, DType::kI32, {n_kv_heads});
    alloc(r->region_, &r->h_region_, DType::kI32, {n_kv_heads});
    if (policy.kind == AttentionKind::kTca) {
        const SparseOptions& o = policy.budgets.options;
        const int64_t blocks = std::max<int64_t>(1, ctx / o.block_size);
        TCA_ASSIGN_OR_RETURN(r->ws_, TcaPrefillWorkspace::create(space, n_kv_heads, ctx, head_dim, kv_dtype, o));
        for (DeviceTensor* t : {&r->mass_, &r->hhi_, &r->block_score_}) alloc(*t, nullptr, DType::kF32, {1, blocks});
        alloc(r->psi_, &r->h_psi_, DType::kI32, {1, blocks});
        alloc(r->keep_, nullptr, DType::kI32, {1, blocks});
        r->decode_keep_.resize(r->policy_.budgets.heads.size());
        for (size_t l = 0; l < r->decode_keep_.size() && failed.ok(); ++l) {
            alloc(r->decode_keep_[l], nullptr, DType::kI32, {n_kv_heads});
            if (!failed.ok()) break;
            std::vector<int32_t> t;
            for (const HeadConfig& c : r->policy_.budgets.heads[l]) t.push_back(decode_budget(c.p));
            if (r->decode_keep_[l].on_host()) {
                std::copy(t.begin(), t.end(), r->decode_keep_[l].data<int32_t>());
            } else {
                failed = r->decode_keep_[l].upload(t.data(), t.size() * sizeof(int32_t));
            }
        }
    }
    if (!failed.ok()) {
        if (space.is_host()) {
            return out_of_memory("attention runner: scratch buffers for %lld tokens do not fit in memory",
                                 static_cast<long long>(ctx));
        }
        return Status(failed.code(), "attention runner scratch: " + failed.message());
    }
    return r;
}

Status AttentionRunner::push(DeviceTensor& t, const HostTensor& mirror, size_t bytes, size_t offset) {
    if (t.on_host()) return Status();
    return t.upload(static_cast<const char*>(mirror.view().data) + offset, bytes, offset);
}

Status AttentionRunner::read_counts(int64_t layer, const KvLayer& kv, const int32_t** n_global,
                                    const int32_t** n_slots) {
    Counts& c = counts_[static_cast<size_t>(layer)];
    const size_t bytes = static_cast<size_t>(n_kv_heads_) * sizeof(int32_t);
    if (kv.n_slots.on_host()) {
        const int32_t* g = kv.n_global.data<int32_t>();
        const int32_t* s = kv.n_slots.data<int32_t>();
        // The copy must agree with the cache: this is what tests the tracking that device
        // runners rely on without reading the counts back.
        TCA_ASSERT(!c.known || (std::equal(c.n_global.begin(), c.n_global.end(), g) &&
                                std::equal(c.n_slots.begin(), c.n_slots.end(), s)),
                   "attention runner: layer %lld: tracked cache counts differ from the cache",
                   static_cast<long long>(layer));
        std::copy(g, g + n_kv_heads_, c.n_global.begin());
        std::copy(s, s + n_kv_heads_, c.n_slots.begin());
    } else if (!c.known) {
        TCA_RETURN_IF_ERROR(kv.n_global.download(c.n_global.data(), bytes));
        TCA_RETURN_IF_ERROR(kv.n_slots.download(c.n_slots.data(), bytes));
    }
    c.known = true;
    *n_global = c.n_global.data();
    *n_slots = c.n_slots.data();
    return Status();
}

size_t AttentionRunner::scratch_bytes() const {
    size_t n = scores_.nbytes() + kept_.nbytes() + n_kept_.nbytes() + region_.nbytes() +
               mass_.nbytes() + hhi_.nbytes() + block_score_.nbytes() + psi_.nbytes() +
               keep_.nbytes();
    for (const DeviceTensor& t : decode_keep_) n += t.nbytes();
    if (ws_) n += ws_->nbytes();
    return n;
}

bool AttentionRunner::sparse_pays_off(int64_t layer, int64_t n_tokens) const {
    if (policy_.min_prefill_gain <= 0.0) return true;
    const double keep = prefill_keep_[static_cast<size_t>(layer)];
    return sparse_prefill_gain(n_tokens, policy_.budgets.options, keep) >= policy_.min_prefill_gain;
}

Status AttentionRunner::dense_attend(Device device, const TensorView& q, KvLayer& kv, int64_t pos0,
                                     const TensorView& out) {
    // On the GPU a prompt batch runs on the tensor-core prefill kernel when the cache still
    // holds every position in slot order (slot == position): always under the dense policy
    // (it never compacts), and for the first batch on an empty cache under the others.
    // Single tokens and compacted caches use the split-K kernel over the ragged cache.
    const int64_t n = q.shape[1];
    if (device == Device::kCuda && n > 1 && (policy_.kind == AttentionKind::kDense || pos0 == 0)) {
        AttentionDenseParams p{q, slice(kv.k.view(), 1, 0, pos0 + n), slice(kv.v.view(), 1, 0, pos0 + n),
                               out, pos0, 0.0f};
        return ops::attention_dense(device, p);
    }
    DecodeAttentionParams p{q, kv.k.view(), kv.v.view(), kv.slot_pos.view(), kv.n_slots.view(),
                            out, pos0, 0.0f};
    return ops::decode_attention(device, p);
}

Status AttentionRunner::compact_by_kept(Device device, int64_t layer, KvLayer& kv) {
    KvCompactParams p{kv.k.view(), kv.v.view(), kv.slot_pos.view(), kv.n_global.view(),
                      kv.n_slots.view(), kept_.view(), n_kept_.view(), region_.view()};
    TCA_RETURN_IF_ERROR(ops::kv_compact(device, p));
    Counts& c = counts_[static_cast<size_t>(layer)];
    if (!c.known) return Status();
    const int32_t* n_kept = host<int32_t>(n_kept_, h_n_kept_);
    const int32_t* regions = host<int32_t>(region_, h_region_);
    for (size_t h = 0; h < c.n_slots.size(); ++h) {
        if (regions[h] < 0) continue;
        c.n_global[h] += n_kept[h];
        c.n_slots[h] -= regions[h] - n_kept[h];
    }
    return Status();
}

Status AttentionRunner::run(Device device, int64_t layer, const TensorView& q,
                            const TensorView& k_new, const TensorView& v_new, KvLayer& kv,
                            int64_t pos0, bool prompt_end, const TensorView& out) {
    TCA_ASSERT(layer >= 0, "layer %lld", static_cast<long long>(layer));
    if (static_cast<size_t>(layer) >= counts_.size()) counts_.resize(static_cast<size_t>(layer) + 1);
    Counts& c = counts_[static_cast<size_t>(layer)];
    const int64_t n = q.shape[1];
    const auto heads = static_cast<size_t>(n_kv_heads_);
    if (c.n_slots.size() != heads) {  // first use of this layer
        c.n_global.assign(heads, 0);
        c.n_slots.assign(heads, 0);
        c.known = false;
    }
    // A batch at position 0 starts on an empty cache (the engine clears it first); a batch
    // that does not continue the last one means the cache changed elsewhere: read it again.
    if (pos0 == 0) {
        std::fill(c.n_global.begin(), c.n_global.end(), 0);
        std::fill(c.n_slots.begin(), c.n_slots.end(), 0);
        c.known = true;
    } else if (pos0 != c.next_pos) {
        c.known = false;
    }
    c.next_pos = -1;  // until this batch has succeeded
    Status s = ops::kv_append(device, KvAppendParams{k_new, v_new, kv.k.view(), kv.v.view(),
                                                     kv.slot_pos.view(), kv.n_slots.view(), pos0});
    if (s.ok() && c.known) {
        for (int32_t& slots : c.n_slots) slots += static_cast<int32_t>(n);
    }
    // The probe measures a whole prompt in one batch on an empty cache.
    const bool probing = probe_.rows > 0 && pos0 == 0 && prompt_end;
    if (s.ok() && probing) s = probe_before(device, q, kv);
    if (s.ok()) s = attend(device, layer, q, kv, pos0, prompt_end, out);
    if (s.ok() && probing) s = probe_after(device, layer, q, kv, out);
    if (!s.ok()) {
        c.known = false;
        return s;
    }
    c.next_pos = pos0 + n;
    return Status();
}

Status AttentionRunner::attend(Device device, int64_t layer, const TensorView& q, KvLayer& kv,
                               int64_t pos0, bool prompt_end, const TensorView& out) {
    const int64_t n = q.shape[1];
    switch (policy_.kind) {
        case AttentionKind::kDense:
            return dense_attend(device, q, kv, pos0, out);
        case AttentionKind::kTca: {
            const SparseOptions& o = policy_.budgets.options;
            // The whole prompt in one batch on an empty cache: sparse prefill (M6) when there
            // are candidate blocks and it beats dense by min_prefill_gain (performance.md P8).
            if (pos0 == 0 && prompt_end && n_candidate_blocks(n, o.local_window, o.block_size) > 0) {
                if (sparse_pays_off(layer, n)) return tca_prefill(device, layer, q, kv, out);
                // Kept dense: the cache keeps what the sparse prefill would have selected (M7),
                // so decoding starts from a compacted cache, selected by the same batched
                // M2-M5 pipeline (all KV heads at once, no host round trip per head).
                TCA_RETURN_IF_ERROR(dense_attend(device, q, kv, pos0, out));
                return tca_prompt_compact(device, layer, q, kv);
            }
            // Otherwise dense attention, then the local overflow is compacted at once, scored
            // with the batch's last query (the M7 chunk rule). A single token compacts the
            // oldest full block.
            TCA_RETURN_IF_ERROR(dense_attend(device, q, kv, pos0, out));
            return tca_compact(device, layer, q, kv);
        }
        case AttentionKind::kStreaming:
            TCA_RETURN_IF_ERROR(dense_attend(device, q, kv, pos0, out));
            return streaming_evict(device, layer, kv);
        case AttentionKind::kSnapKv:
        case AttentionKind::kOracle:
            TCA_RETURN_IF_ERROR(dense_attend(device, q, kv, pos0, out));
            // Compress once, when the first prompt ends (n_global == 0: never compressed).
            if (prompt_end && n > 1) {
                const int32_t *n_global = nullptr, *n_slots = nullptr;
                TCA_RETURN_IF_ERROR(read_counts(layer, kv, &n_global, &n_slots));
                if (n_global[0] == 0) return compress_prompt(device, layer, q, kv);
            }
            return Status();
    }
    return Status();
}

Status AttentionRunner::tca_prefill(Device device, int64_t layer, const TensorView& q, KvLayer& kv,
                                    const TensorView& out) {
    const int64_t L = q.shape[1];
    const TensorView k = slice(kv.k.view(), 1, 0, L), v = slice(kv.v.view(), 1, 0, L);
    TCA_RETURN_IF_ERROR(tca_prefill_attention(device, q, k, v, out,
                                              policy_.budgets.heads[static_cast<size_t>(layer)],
                                              *ws_, time_stages_ ? &timings_ : nullptr));
    return compact_to_selection(device, layer, kv, L);
}

// A whole prompt attended densely (sparse_pays_off false): the selection alone, then the
// same compaction as after the sparse prefill. Untimed: the stage clocks' synchronisations
// cost a short prompt more than the selection itself (H100, 8K: 20 ms of 396), so
// tca_selection_ms counts the sparse prefill's stages only (when timed: set_stage_timing).
Status AttentionRunner::tca_prompt_compact(Device device, int64_t layer, const TensorView& q, KvLayer& kv) {
    const int64_t L = q.shape[1];
    TCA_RETURN_IF_ERROR(tca_select(device, q, slice(kv.k.view(), 1, 0, L),
                                   policy_.budgets.heads[static_cast<size_t>(layer)], *ws_, nullptr));
    return compact_to_selection(device, layer, kv, L);
}

// The cache keeps the workspace's selection and the local band (M7): the selected positions
// are slot offsets of the candidate region [0, n * b) since slot == position before compaction.
Status AttentionRunner::compact_to_selection(Device device, int64_t layer, KvLayer& kv, int64_t L) {
    const SparseOptions& o = policy_.budgets.options;
    const int64_t region = n_candidate_blocks(L, o.local_window, o.block_size) * o.block_size;
    int32_t* regions = host<int32_t>(region_, h_region_);
    for (int64_t h = 0; h < n_kv_heads_; ++h) regions[h] = static_cast<int32_t>(region);
    TCA_RETURN_IF_ERROR(push(region_, h_region_, region_.nbytes()));
    KvCompactParams p{kv.k.view(), kv.v.view(), kv.slot_pos.view(), kv.n_global.view(),
                      kv.n_slots.view(), slice(ws_->selected.view(), 1, 0, region),
                      ws_->n_selected.view(), region_.view()};
    counts_[static_cast<size_t>(layer)].known = false;  // the device counted the selection
    return ops::kv_compact(device, p);
}

// After a decode step or a chunk (tca-method M7): a single token compacts the oldest local
// block of each head whose local part reached w + b tokens, keeping t = decode_budget(p)
// tokens; a chunk of several tokens compacts all its overflow blocks at once, scored with the
// chunk's last query and ranked across blocks by M3/M4 (the M7 decision).
Status AttentionRunner::tca_compact(Device device, int64_t layer, const TensorView& q, KvLayer& kv) {
    const SparseOptions& o = policy_.budgets.options;
    const int64_t b = o.block_size, w = o.local_window, n_q = q.shape[1];
    const int64_t group = n_head_ / n_kv_heads_;
    const auto& configs = policy_.budgets.heads[static_cast<size_t>(layer)];
    const int32_t *n_global = nullptr, *n_slots = nullptr;
    TCA_RETURN_IF_ERROR(read_counts(layer, kv, &n_global, &n_slots));
    bool any = false;
    if (n_q == 1) {
        for (int64_t h = 0; h < n_kv_heads_; ++h) any = any || n_slots[h] - n_global[h] >= w + b;
        if (!any) return Status();
        // Every head gets its budget; the op leaves those whose local part is below w + b.
        const DeviceTensor& keep = decode_keep_[static_cast<size_t>(layer)];
        BlockCompactParams p{q, kv.k.view(), kv.v.view(), kv.slot_pos.view(), kv.n_global.view(),
                             kv.n_slots.view(), keep.view(), o.block_size, 0.0f, w + b};
        TCA_RETURN_IF_ERROR(ops::block_compact(device, p));
        Counts& c = counts_[static_cast<size_t>(layer)];
        for (size_t h = 0; h < c.n_slots.size(); ++h) {
            if (c.n_slots[h] - c.n_global[h] < w + b) continue;
            const int32_t t = decode_budget(configs[h].p);
            c.n_global[h] += t;
            c.n_slots[h] -= static_cast<int32_t>(b) - t;
        }
        return Status();
    }
    int32_t* regions = host<int32_t>(region_, h_region_);
    int32_t* n_kept = host<int32_t>(n_kept_, h_n_kept_);
    for (int64_t h = 0; h < n_kv_heads_; ++h) {
        const int64_t local = n_slots[h] - n_global[h];
        regions[h] = -1;
        if (local < w + b) continue;
        any = true;
        const int64_t m = (local - w) / b, region = m * b;
        const TensorView k_h = head_slots(kv.k, h, n_global[h], region);
        const TensorView q_h = slice(slice(q, 0, h * group, group), 1, n_q - 1, 1);
        const TensorView scores = slice(slice(scores_.view(), 0, h, 1), 1, 0, region);
        TCA_RETURN_IF_ERROR(ops::token_importance(device, TokenImportanceParams{q_h, k_h, scores, region - 1, 0.0f}));
        const TensorView bs = slice(block_score_.view(), 1, 0, m);
        TCA_RETURN_IF_ERROR(ops::block_score(device, BlockScoreParams{
            scores, slice(mass_.view(), 1, 0, m), slice(hhi_.view(), 1, 0, m), bs, o.block_size,
            static_cast<float>(o.alpha), o.mass_norm}));
        TCA_ASSIGN_OR_RETURN(std::vector<int32_t> psi, make_psi(configs[static_cast<size_t>(h)].p, m, o.block_size));
        std::copy(psi.begin(), psi.end(), host<int32_t>(psi_, h_psi_));
        TCA_RETURN_IF_ERROR(push(psi_, h_psi_, psi.size() * sizeof(int32_t)));
        const TensorView keep = slice(keep_.view(), 1, 0, m);
        TCA_RETURN_IF_ERROR(ops::block_budget(device, BlockBudgetParams{bs, slice(psi_.view(), 1, 0, m), keep, o.block_size}));
        // The selection goes straight into head h's row of kept_ and its count into
        // n_kept_[h], in the runner's memory: no read-back per head (on a GPU each was a
        // stream synchronisation, KV heads x layers of them per chunk).
        TCA_RETURN_IF_ERROR(ops::token_select(device, TokenSelectParams{
            scores, keep, slice(slice(kept_.view(), 0, h, 1), 1, 0, region), slice(n_kept_.view(), 0, h, 1),
            o.block_size, o.pool, o.selection == Selection::kGlobal}));
        regions[h] = static_cast<int32_t>(region);
    }
    if (!any) return Status();
    // One read-back of every head's count (device runners), for the tracked cache counts.
    if (!n_kept_.on_host()) TCA_RETURN_IF_ERROR(n_kept_.download(n_kept, n_kept_.nbytes()));
    TCA_RETURN_IF_ERROR(push(region_, h_region_, region_.nbytes()));
    return compact_by_kept(device, layer, kv);
}

// StreamingLLM: the first n_sink tokens become the global part, then the oldest other tokens
// are dropped whenever a head holds more than kv_budget.
Status AttentionRunner::streaming_evict(Device device, int64_t layer, KvLayer& kv) {
    const int32_t *n_global = nullptr, *n_slots = nullptr;
    TCA_RETURN_IF_ERROR(read_counts(layer, kv, &n_global, &n_slots));
    const int64_t budget = policy_.kv_budget, sinks = policy_.n_sink;
    int32_t* regions = host<int32_t>(region_, h_region_);
    int32_t* n_kept = host<int32_t>(n_kept_, h_n_kept_);
    int32_t* kept = host<int32_t>(kept_, h_kept_);
    const int64_t kept_stride = kept_.view().stride[0];
    bool any = false;
    for (int64_t h = 0; h < n_kv_heads_; ++h) {
        regions[h] = -1;
        n_kept[h] = 0;
        if (n_slots[h] <= budget) continue;
        any = true;
        if (n_global[h] == 0) {  // first eviction: keep the sinks as the global part
            for (int64_t i = 0; i < sinks; ++i) kept[h * kept_stride + i] = static_cast<int32_t>(i);
            n_kept[h] = static_cast<int32_t>(sinks);
            regions[h] = static_cast<int32_t>(n_slots[h] - budget + sinks);
            const size_t row = static_cast<size_t>(h * kept_stride) * sizeof(int32_t);
            TCA_RETURN_IF_ERROR(push(kept_, h_kept_, static_cast<size_t>(sinks) * sizeof(int32_t), row));
        } else {
            regions[h] = static_cast<int32_t>(n_slots[h] - budget);
        }
    }
    if (!any) return Status();
    TCA_RETURN_IF_ERROR(push(n_kept_, h_n_kept_, n_kept_.nbytes()));
    TCA_RETURN_IF_ERROR(push(region_, h_region_, region_.nbytes()));
    return compact_by_kept(device, layer, kv);
}

// SnapKV and the oracle: score the prompt with its last queries, keep the top tokens.
Status AttentionRunner::compress_prompt(Device device, int64_t layer, const TensorView& q, KvLayer& kv) {
    const int32_t *n_global = nullptr, *n_slots = nullptr;
    TCA_RETURN_IF_ERROR(read_counts(layer, kv, &n_global, &n_slots));
    const int64_t L = n_slots[0];
    const int64_t budget = policy_.kv_budget;
    if (L <= budget) return Status();
    const bool snap = policy_.kind == AttentionKind::kSnapKv;
    const int64_t n_q = q.shape[1];
    const int64_t obs = snap ? std::min({policy_.obs_window, n_q, L}) : 1;
    const TensorView scores = slice(scores_.view(), 1, 0, L);
    TokenImportanceParams ip{slice(q, 1, n_q - obs, obs), slice(kv.k.view(), 1, 0, L), scores, L - obs, 0.0f};
    TCA_RETURN_IF_ERROR(ops::token_importance(device, ip));
    if (!scores_.on_host()) TCA_RETURN_IF_ERROR(scores_.download(h_scores_.data<float>(), scores_.nbytes()));
    const float* all_scores = host<float>(scores_, h_scores_);
    int32_t* regions = host<int32_t>(region_, h_region_);
    int32_t* n_kept = host<int32_t>(n_kept_, h_n_kept_);
    int32_t* kept = host<int32_t>(kept_, h_kept_);
    const int64_t kept_stride = kept_.view().stride[0];
    std::vector<float> pooled(static_cast<size_t>(L));
    for (int64_t h = 0; h < n_kv_heads_; ++h) {
        const float* s = all_scores + h * scores_.view().stride[0];
        std::vector<int32_t> keep;
        if (snap) {
            // Max-pool the observation scores of the prefix, keep its top budget - obs
            // positions, and the observation window itself.
            const int64_t prefix = L - obs, r = policy_.pool_kernel / 2;
            for (int64_t i = 0; i < prefix; ++i) {
                float m = s[i];
                for (int64_t j = std::max<int64_t>(0, i - r); j <= std::min(prefix - 1, i + r); ++j) m = std::max(m, s[j]);
                pooled[static_cast<size_t>(i)] = m;
            }
            keep = top_k_ascending(pooled.data(), prefix, budget - obs);
            for (int64_t i = prefix; i < L; ++i) keep.push_back(static_cast<int32_t>(i));
        } else {
            keep = top_k_ascending(s, L, budget);
        }
        std::copy(keep.begin(), keep.end(), kept + h * kept_stride);
        n_kept[h] = static_cast<int32_t>(keep.size());
        regions[h] = static_cast<int32_t>(L);
    }
    TCA_RETURN_IF_ERROR(push(kept_, h_kept_, kept_.nbytes()));
    TCA_RETURN_IF_ERROR(push(n_kept_, h_n_kept_, n_kept_.nbytes()));
    TCA_RETURN_IF_ERROR(push(region_, h_region_, region_.nbytes()));
    return compact_by_kept(device, layer, kv);
}

Status AttentionRunner::enable_probe(int64_t rows) {
    TCA_ASSERT(rows >= 1, "probe rows %lld", static_cast<long long>(rows));
    for (auto [t, shape] : {std::pair{&probe_ref_, std::vector<int64_t>{n_head_, rows, head_dim_}},
                            std::pair{&probe_probs_, std::vector<int64_t>{n_kv_heads_, ctx_}},
                            std::pair{&probe_dec_, std::vector<int64_t>{n_head_, 1, head_dim_}}}) {
        Result<DeviceTensor> d = DeviceTensor::create(*space_, DType::kF32, shape);
        if (!d.ok()) return Status(d.status().code(), "attention probe scratch: " + d.status().message());
        *t = std::move(d.value());
    }
    probe_ = AttentionProbe{};
    probe_.rows = rows;
    return Status();
}

Status AttentionRunner::probe_before(Device device, const TensorView& q, const KvLayer& kv) {
    const int64_t L = q.shape[1], rows = std::min(probe_.rows, L);
    const TensorView k = slice(kv.k.view(), 1, 0, L), v = slice(kv.v.view(), 1, 0, L);
    TCA_RETURN_IF_ERROR(ops::attention_dense(device, AttentionDenseParams{
        slice(q, 1, L - rows, rows), k, v, slice(probe_ref_.view(), 1, 0, rows), L - rows, 0.0f}));
    return ops::token_importance(device, TokenImportanceParams{
        slice(q, 1, L - 1, 1), k, slice(probe_probs_.view(), 1, 0, L), L - 1, 0.0f});
}

namespace {

// Sums of squares for ||a - b|| / ||b|| over n floats.
struct ErrorSums {
    double diff = 0, ref = 0;
    void add(const float* a, const float* b, int64_t n) {
        for (int64_t i = 0; i < n; ++i) {
            const double x = a[i], y = b[i];
            diff += (x - y) * (x - y);
            ref += y * y;
        }
    }
    double relative() const { return ref > 0 ? std::sqrt(diff / ref) : 0.0; }  // 0 when b is all zero
};

}  // namespace

Status AttentionRunner::probe_after(Device device, int64_t layer, const TensorView& q, const KvLayer& kv,
                                    const TensorView& out) {
    const int64_t L = q.shape[1], rows = std::min(probe_.rows, L);
    const auto l = static_cast<size_t>(layer);
    if (layer == 0) probe_ = AttentionProbe{probe_.rows, {}, {}, {}};
    for (std::vector<double>* v : {&probe_.recall, &probe_.prefill_error, &probe_.decode_error}) {
        if (v->size() <= l) v->resize(l + 1, 0.0);
    }
    // The last query over the cache the policy kept (its first decode step reads this cache).
    TCA_RETURN_IF_ERROR(ops::decode_attention(device, DecodeAttentionParams{
        slice(q, 1, L - 1, 1), kv.k.view(), kv.v.view(), kv.slot_pos.view(), kv.n_slots.view(),
        probe_dec_.view(), L - 1, 0.0f}));
    const MemorySpace& space = *space_;
    TCA_ASSIGN_OR_RETURN(HostTensor ref, to_host(slice(probe_ref_.view(), 1, 0, rows), space));
    TCA_ASSIGN_OR_RETURN(HostTensor got, to_host(slice(out, 1, L - rows, rows), space));
    TCA_ASSIGN_OR_RETURN(HostTensor dec, to_host(probe_dec_.view(), space));
    ErrorSums prefill, decode;
    prefill.add(got.data<float>(), ref.data<float>(), ref.numel());
    for (int64_t h = 0; h < n_head_; ++h) {  // the last probe row of each head is the last query's
        decode.add(dec.data<float>() + h * head_dim_, ref.data<float>() + ((h + 1) * rows - 1) * head_dim_, head_dim_);
    }
    probe_.prefill_error[l] = prefill.relative();
    probe_.decode_error[l] = decode.relative();
    // Recall: the last query's dense attention on the positions each KV head keeps.
    TCA_ASSIGN_OR_RETURN(HostTensor probs, to_host(slice(probe_probs_.view(), 1, 0, L), space));
    TCA_ASSIGN_OR_RETURN(HostTensor slot_pos, to_host(slice(kv.slot_pos.view(), 1, 0, L), space));
    const int32_t *n_global = nullptr, *n_slots = nullptr;
    TCA_RETURN_IF_ERROR(read_counts(layer, kv, &n_global, &n_slots));
    double recall = 0;
    for (int64_t h = 0; h < n_kv_heads_; ++h) {
        const int32_t* pos = slot_pos.data<int32_t>() + h * L;
        const float* p = probs.data<float>() + h * L;
        for (int32_t s = 0; s < n_slots[h]; ++s) recall += p[pos[s]];
    }
    probe_.recall[l] = recall / static_cast<double>(n_kv_heads_);
    return Status();
}

}  // namespace tca
