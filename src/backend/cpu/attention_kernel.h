// The one CPU attention kernel shared by attention_dense, sparse_prefill and decode_attention
// (tca-method M6, M7), and the QK building block reused by token_importance/block_compact.
//
// AttentionTile holds a tile of query rows (all G heads of one KV group x Tq consecutive
// queries, row r = t * G + g) and flash-attention online-softmax state (running max m, sum l,
// f32 accumulator) that attend() carries across any number of key ranges of any buffers; each
// row has its own visible key interval [lo_r, hi_r) per call. Keys come in tiles of kTileKeys:
// a tile is converted once to f32 row-major (zero copy for f32 storage) and shared by every row.
//   S^T = K_tile . Q^T : 6 keys x 16 rows register-blocked FMA, rows in the SIMD lanes, so the
//                        softmax max/sum run vertically over keys (no horizontal sums);
//   acc = acc * alpha + P . V_tile : 6 rows x 16 head-dim columns register-blocked FMA.
// Queries are pre-scaled by scale * log2(e) and the softmax uses exp2 (simd.h). Masks are only
// applied on edge tiles; tiles no row sees are skipped before conversion.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/simd.h"
#include "core/tensor_view.h"

namespace tca::cpu {

// Keys per tile and query rows per work item (G x Tq, Tq = 24 for G = 4). Both multiples of
// the 6-row FMA block and of 16 lanes, so no remainder kernels run in the steady state. On the
// 2-core EPYC (Zen 3), dense G=4 d=128 bf16 L=4096, GFLOP per CPU-second: 64x64 68, 96x48 74,
// 96x96 74, 48x48 66; 96 rows halve the K/V bytes per FLOP against 48 for 64K contexts.
// Per thread: 96 x 128 f32 K and V tiles (48 KiB each) + scores (36 KiB) + acc (48 KiB) in L2.
inline constexpr int64_t kTileKeys = 96;
inline constexpr int64_t kTargetRows = 96;
// Tiles of at most this many query rows (decode: the G heads of one token) score keys by
// row-wise dot products instead of the 8-lane transposed kernel.
inline constexpr int kDotRows = 4;

// The rows of one KV head in a K/V buffer pair (strides in elements, rows contiguous).
struct KvRows {
    const void* k = nullptr;
    const void* v = nullptr;
    DType dtype = DType::kF32;
    int64_t k_stride = 0;
    int64_t v_stride = 0;
};
KvRows kv_rows(const TensorView& k, const TensorView& v, int64_t head);

// Rows [r0, r0 + n) of a buffer (row stride `stride` elements, d columns) as f32: a pointer
// into the buffer itself for f32 storage, else converted into `scratch` (n * d floats).
const float* rows_f32(const void* base, DType dt, int64_t stride, int64_t r0, int64_t n,
                      int64_t d, float* scratch, int64_t* ld);

// st[j * ldst + lane] = sum_c k[j * ldk + c] * q_t[c * ldq + lane] for j < nk and lanes
// [lane0, lane1) (multiples of 8): scores of nk keys against query rows held transposed.
void qk_tile(const float* k, int64_t ldk, int64_t nk, const float* q_t, int64_t ldq, int64_t d,
             int64_t lane0, int64_t lane1, float* st, int64_t ldst);

class AttentionTile {
public:
    // Grows the scratch for n_rows query rows of head_dim d (no-op when it is large enough).
    void reserve(int64_t n_rows, int64_t head_dim);
    // Sizes the scratch for n_rows query rows of head_dim d and resets the softmax state.
    void begin(int64_t n_rows, int64_t head_dim);
    int64_t n_rows() const { return n_rows_; }
    int64_t lanes() const { return lanes_; }  // n_rows rounded up to 8
    // Pre-scaled queries, transposed: q_t[c * lanes() + r]; padding lanes are zero.
    float* q_t() { return q_t_.data(); }
    // Visible key interval of each row for the next attend() call, as buffer row indices.
    int32_t* lo() { return lo_.data(); }
    int32_t* hi() { return hi_.data(); }
    // Attends every row to the keys of [kb, ke) that lie within its [lo_r, hi_r).
    void attend(const KvRows& kv, int64_t kb, int64_t ke);

    // State after any number of attend() calls: m (log2 domain) and l per row, acc [n_rows][d].
    const float* m() const { return m_.data(); }
    const float* l() const { return l_.data(); }
    const float* acc() const { return acc_.data(); }
    // out[0..d) = acc_r / l_r, zeros when row r saw no key.
    void finalize_row(int64_t r, float* out) const;

private:
    int64_t n_rows_ = 0, lanes_ = 0, d_ = 0;
    AlignedBuffer<float> q_t_, q_rows_, st_, k_buf_, v_buf_, acc_, m_, l_, alpha_;
    AlignedBuffer<int32_t> lo_, hi_;
};

// One source of keys for an attention op: for KV head h, the buffer kv[h] and for every query
// t the visible row interval [lo[h * n_q + t], hi[h * n_q + t]) of that buffer.
struct AttentionSegment {
    std::vector<KvRows> kv;    // [n_kv_heads]
    std::vector<int32_t> lo;   // [n_kv_heads * n_q]
    std::vector<int32_t> hi;   // [n_kv_heads * n_q]
};

// An attention op after its own geometry is resolved: queries attend to the union of the
// segments with one softmax. Empty union: zeros.
struct AttentionProblem {
    TensorView q;    // [n_q_heads, n_q, head_dim] f32
    TensorView out;  // [n_q_heads, n_q, head_dim] f32
    int64_t n_kv_heads = 0;
    float scale = 0.0f;  // softmax scale (already resolved, > 0)
    std::vector<AttentionSegment> segments;
};

// Runs the problem on thread_pool(): work items (KV head, query tile) ordered by visible key
// count, most expensive first; when there are fewer items than 4 per thread the key range is
// split (split-K) and the partial softmax states merged. Scratch (one tile per pool thread
// index, the work list, the split partials) is thread_local to the calling thread and only
// grows, so repeated calls of the same shape (decode steps) allocate nothing. Not reentrant
// from inside parallel_for.
void run_attention(const AttentionProblem& p);

}  // namespace tca::cpu
