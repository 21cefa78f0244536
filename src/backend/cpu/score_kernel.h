// Group-mean softmax scores of keys (tca-method M2 token importance, M7 block compaction):
// query rows held transposed and pre-scaled by scale * log2(e) (rows in the SIMD lanes), keys
// scored a tile at a time with the attention kernel's qk_tile. Two passes over the keys:
// row_stats (online max and sum per row), then accumulate_probs (sum over rows of the
// normalised probabilities per key). Used by selection.cpp and kv_ops.cpp.
#pragma once

#include <cstdint>

#include "backend/cpu/attention_kernel.h"

namespace tca::cpu {

// Per-thread scratch of the score passes.
struct ScoreScratch {
    AlignedBuffer<float> st;    // [kTileKeys][kScoreLanes]
    AlignedBuffer<float> kbuf;  // [kTileKeys][d]
};
inline constexpr int64_t kScoreLanes = 128;
// Grows the scratch for head dim d (the passes call it too; no-op once large enough).
void reserve_score_scratch(ScoreScratch& scratch, int64_t d);

// Query rows: q_t[c * ld + r] for r < n_rows (ld a multiple of 8, padding lanes zero); row r
// sees the keys with index < hi[r] (hi padded to ld entries; padding lanes hi = 0).
struct ScoreRows {
    const float* q_t = nullptr;
    const int32_t* hi = nullptr;
    int64_t ld = 0;
    int64_t head_dim = 0;
};

// Online softmax statistics of every lane over keys [k0, k1) of the buffer (rows of f32/f16/
// bf16, row stride `stride`): m (log2 domain, -inf when nothing seen) and l are updated.
void row_stats(const ScoreRows& q, const void* k, DType dt, int64_t stride, int64_t k0,
               int64_t k1, float* m, float* l, ScoreScratch& scratch);

// out[j - k0] = sum over lanes of 2^(s - m[lane]) * w[lane] for keys j in [k0, k1); w is the
// per-lane weight (1 / (l * n_rows), 0 for padding lanes).
void accumulate_probs(const ScoreRows& q, const void* k, DType dt, int64_t stride, int64_t k0,
                      int64_t k1, const float* m, const float* w, float* out,
                      ScoreScratch& scratch);

}  // namespace tca::cpu
