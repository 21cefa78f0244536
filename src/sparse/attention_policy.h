// Attention policies of the engine, all on the same machinery (tca-method M7, M10): dense,
// TCA, and the classic baselines run side by side in evaluations.
//  - dense:     every position, no compaction.
//  - tca:       sparse prefill over the calibrated per-head budgets (M2-M6), the cache keeps
//               the selection plus the local band, decode-time block compaction (M7).
//  - streaming: StreamingLLM, n_sink first tokens + the most recent tokens, kv_budget per head.
//  - snapkv:    SnapKV, after the prompt keeps per KV head the top tokens by the pooled
//               attention of the last obs_window queries (+ that window), kv_budget per head.
//  - oracle:    after the prompt keeps per KV head the top kv_budget tokens by the true dense
//               attention of the last prompt query (no pooling): the best static selection
//               for that query, an upper bound for the query-aware baselines.
// Baselines run dense attention over the prompt and compress the cache when it ends.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/status.h"
#include "sparse/head_budgets.h"

namespace tca {

enum class AttentionKind { kDense, kTca, kStreaming, kSnapKv, kOracle };
const char* attention_kind_name(AttentionKind k);
Result<AttentionKind> parse_attention_kind(const std::string& name);

struct AttentionPolicy {
    AttentionKind kind = AttentionKind::kDense;
    ModelBudgets budgets;      // tca: options (b, w, alpha, ...) and per (layer, KV head) p
    // tca without calibrated budgets: every (layer, KV head) uses this configuration (a fixed
    // keep rate); expanded to `budgets` once the model's shape is known (expand_uniform).
    std::optional<HeadConfig> uniform;
    int64_t kv_budget = 1024;  // baselines: tokens a KV head keeps
    int64_t n_sink = 4;        // streaming: first tokens always kept
    int64_t obs_window = 32;   // snapkv: last queries that score the prompt
    int64_t pool_kernel = 7;   // snapkv: max-pooling width over positions (odd)
    // tca: a prompt runs the sparse prefill (and is compacted) only when the dense prefill
    // attention would do at least this many times the sparse one's work (estimated from the
    // heads' expected keep fractions: sparse_prefill_gain); otherwise the prompt is attended
    // densely and the cache stays dense, so short contexts are never slower than dense
    // (performance.md P8). 0 = always sparse when there is a candidate block (tca-method M3).
    double min_prefill_gain = 1.3;
};

// Dense causal attention work over sparse prefill work (M6) for an L-token prompt: each query
// sees its band (up to w + b - 1 positions) plus keep * the candidate tokens of its visible
// blocks. The gain of the sparse prefill at best; 1 when there is no candidate block.
double sparse_prefill_gain(int64_t n_tokens, const SparseOptions& opt, double keep);

// Fills budgets.heads from `uniform` for a model of this shape (no-op without `uniform`).
void expand_uniform(AttentionPolicy& policy, int64_t n_layers, int64_t n_kv_heads);

// Checks the policy against a model's shape (budgets for every layer and KV head, ranges).
Status validate(const AttentionPolicy& policy, int64_t n_layers, int64_t n_kv_heads);

}  // namespace tca
