// Independent oracles for the invariant suite (written from tca-method, not from
// src/reference): attention over an explicit key set, the decode-compaction block score, and
// helpers that run the selection pipeline (M2-M5) and the gather (M7) on any backend.
#pragma once

#include <functional>
#include <vector>

#include "sparse/sparse_options.h"
#include "support/harness.h"

namespace tca::test {

// visible(kv_head, query position, key position): whether the query sees that key.
using KeyFilter = std::function<bool(int64_t kvh, int64_t q_pos, int64_t k_pos)>;

// out[h, i, :] = softmax over visible keys of (q . k / sqrt(d)) times v, for query i at
// position q_pos0 + i; keys and values read by position from k/v [hkv, n_kv, d]. Acc = double
// is the oracle, Acc = float the naive float32 baseline for the tolerance. No key: zeros.
template <class Acc>
Buf masked_attention(const Buf& q, const Buf& k, const Buf& v, int64_t q_pos0,
                     const KeyFilter& visible);

// The float32 baseline with the roundings of the CUDA tensor-core attention kernels (as
// ref::naive_lowp): q, k, v and the probabilities rounded to bf16 (f16 when k is f16) before
// their products, float32 sums, the softmax denominator over the unrounded probabilities.
// Sizes the tolerance of tensor-core outputs (docs/numerics.md, "CUDA").
Buf masked_attention_lowp(const Buf& q, const Buf& k, const Buf& v, int64_t q_pos0,
                          const KeyFilter& visible);

// Softmax probabilities (float64) of query (h, i) over the visible keys: a vector of length
// n_kv with zeros for invisible keys.
std::vector<double> attention_probs(const Buf& q, const Buf& k, int64_t h, int64_t i,
                                    int64_t q_pos0, const KeyFilter& visible);

// Decode compaction score of the block of slots [g0, g0 + b) of KV head kvh (M7): the mean over
// the group's query heads and the scorer queries of a softmax over that block only (float64).
std::vector<double> compaction_scores(const Buf& q, const Buf& k_cache, int64_t kvh, int64_t g0,
                                      int64_t b);

// The indices of the `keep` largest values (ties: lower index), ascending, and the smallest
// gap between a kept and a dropped value (+inf when nothing or everything is kept).
std::vector<int64_t> top_k(const std::vector<double>& v, int64_t keep, double* margin = nullptr);

// The selection pipeline of M2-M5 on one backend: token_importance (q_obs = the last queries)
// -> block_score -> block_budget (psi per KV head, each of length n_blocks) -> token_select.
struct Selection {
    Buf scores;       // [hkv, n_kv]
    Buf mass, hhi, block_score;
    Buf keep;         // [hkv, n_blocks]
    std::vector<std::vector<int32_t>> positions;  // per KV head, ascending
};
Status run_selection(Backend backend, const Buf& q_obs, const Buf& k, int64_t n_blocks, int b,
                     float alpha, const std::vector<std::vector<int32_t>>& psi, Selection* out);

// kv_gather on one backend of the given ascending positions per head into a cache of `cap`
// slots.
struct Gathered {
    Buf k, v, slot_pos, n;
};
Status run_gather(Backend backend, const Buf& k, const Buf& v,
                  const std::vector<std::vector<int32_t>>& positions, int64_t cap, Gathered* out);

}  // namespace tca::test
