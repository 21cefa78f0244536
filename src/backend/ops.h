// Backend ops: one Params struct per op, the validation every backend shares, and the device
// dispatch (ops.cpp is the only place that switches on the device). Each op has a float64
// reference (src/reference/ref_ops.h) and a CPU implementation (src/backend/cpu/cpu_ops.h).
//
// Layouts are head-major and contiguous along head_dim. Query head h uses KV head h / G
// (G = n_q_heads / n_kv_heads, consecutive query heads share a KV head, as in LLaMA GQA).
// `pos` is a token position; `slot` is an index into a compacted KV cache (never mixed).
// `scale` 0 means 1/sqrt(head_dim).
#pragma once

#include <cstdint>

#include "core/status.h"
#include "core/tensor_view.h"
#include "model/ggml_types.h"
#include "model/model_config.h"
#include "sparse/sparse_options.h"

namespace tca {

enum class Device { kCpu, kCuda };
const char* device_name(Device d);

// Dense causal attention with GQA. Query i (position q_pos0 + i) sees keys [0, q_pos0 + i].
struct AttentionDenseParams {
    TensorView q;    // [n_q_heads, n_q, head_dim] f32
    TensorView k;    // [n_kv_heads, n_kv, head_dim] f32|f16|bf16; key j at position j
    TensorView v;    // [n_kv_heads, n_kv, head_dim] same dtype as k
    TensorView out;  // [n_q_heads, n_q, head_dim] f32
    int64_t q_pos0 = 0;  // q_pos0 + n_q <= n_kv
    float scale = 0.0f;
};

// Token importance (tca-method M2): per KV head, the mean over its G query heads and the
// n_obs observation queries of each query's causal softmax row over the keys.
struct TokenImportanceParams {
    TensorView q;       // [n_q_heads, n_obs, head_dim] f32: the last n_obs queries
    TensorView k;       // [n_kv_heads, n_kv, head_dim] f32|f16|bf16
    TensorView scores;  // [n_kv_heads, n_kv] f32 out; keys after every obs query score 0
    int64_t q_pos0 = -1;  // position of obs query 0; -1 means n_kv - n_obs
    float scale = 0.0f;
};

// Block mass, HHI and block score h_j over the n candidate blocks (tca-method M3).
struct BlockScoreParams {
    TensorView scores;       // [n_kv_heads, n_kv] f32 token importance
    TensorView mass;         // [n_kv_heads, n_blocks] f32 out: m_j
    TensorView hhi;          // [n_kv_heads, n_blocks] f32 out: HHI_j (1 when m_j == 0)
    TensorView block_score;  // [n_kv_heads, n_blocks] f32 out: h_j
    int block_size = 128;
    float alpha = 0.5f;
    MassNorm mass_norm = MassNorm::kMax;
};

// Per-block budgets (tca-method M4): blocks ranked by h_j descending (ties: lower j first),
// block j keeps t_j = psi[rank_j].
struct BlockBudgetParams {
    TensorView block_score;  // [n_kv_heads, n_blocks] f32 h_j
    TensorView psi;          // [n_kv_heads, n_blocks] i32 non-increasing, each in [0, b]
    TensorView keep;         // [n_kv_heads, n_blocks] i32 out: t_j
    int block_size = 128;
};

// Token selection (tca-method M5): the keep[j] positions of block j with the largest score
// (ties: lower position), all blocks' picks merged in ascending position order. pool > 0
// (SparseOptions::pool): tokens are ranked by the max score over [i - pool, i + pool] clipped
// to [0, n_kv), then by their own score, then by lower position. global (Selection::kGlobal):
// a head selects T = sum_j keep[j] positions, the T best of the whole region [0, n_blocks * b)
// under the same order, whatever block they fall in.
struct TokenSelectParams {
    TensorView scores;      // [n_kv_heads, n_kv] f32
    TensorView keep;        // [n_kv_heads, n_blocks] i32, each in [0, block_size]
    TensorView selected;    // [n_kv_heads, cap] i32 out: positions; cap >= n_blocks * b
    TensorView n_selected;  // [n_kv_heads] i32 out
    int block_size = 128;
    int pool = 0;           // in [0, kMaxPool]
    bool global = false;    // the T best of the region instead of keep[j] per block
};

// Gather rows of K/V at given positions into a compacted cache (tca-method M7): the global
// list for sparse prefill, and the cache after prefill (selection + local band).
struct KvGatherParams {
    TensorView k;            // [n_kv_heads, n_kv, head_dim] f32|f16|bf16
    TensorView v;            // [n_kv_heads, n_kv, head_dim]
    TensorView positions;    // [n_kv_heads, cap] i32 strictly ascending, each < n_kv
    TensorView n_positions;  // [n_kv_heads] i32, <= min(cap, cap_out)
    TensorView k_out;        // [n_kv_heads, cap_out, head_dim] same dtype as k; slots [0, n)
    TensorView v_out;        // [n_kv_heads, cap_out, head_dim]
    TensorView slot_pos;     // [n_kv_heads, cap_out] i32 out: position held by each slot
};

// Sparse prefill attention (tca-method M6). Query at position i sees the selected tokens of
// the first v(i) candidate blocks (global slots with pos < v(i) * b) and every position in
// [v(i) * b, i] densely; one softmax over both.
struct SparsePrefillParams {
    TensorView q;           // [n_q_heads, n_q, head_dim] f32, query i at position q_pos0 + i
    TensorView k;           // [n_kv_heads, n_kv, head_dim] full keys (local band)
    TensorView v;           // [n_kv_heads, n_kv, head_dim]
    TensorView k_global;    // [n_kv_heads, cap, head_dim] gathered selection, ascending pos
    TensorView v_global;    // [n_kv_heads, cap, head_dim]
    TensorView global_pos;  // [n_kv_heads, cap] i32 positions of the gathered slots, < n*b
    TensorView n_global;    // [n_kv_heads] i32
    TensorView out;         // [n_q_heads, n_q, head_dim] f32
    int64_t q_pos0 = 0;
    int64_t n_blocks = 0;   // n candidate blocks (M3)
    int block_size = 128;
    int local_window = 4096;
    float scale = 0.0f;
};

// Attention over the ragged compacted cache (tca-method M7): decoding and chunks after
// prefill. Query i (position q_pos0 + i) sees the slots s < n_slots[h] with
// slot_pos[h, s] <= q_pos0 + i; slot positions ascend within [0, n_slots).
struct DecodeAttentionParams {
    TensorView q;         // [n_q_heads, n_q, head_dim] f32
    TensorView k_cache;   // [n_kv_heads, cap, head_dim] f32|f16|bf16
    TensorView v_cache;   // [n_kv_heads, cap, head_dim]
    TensorView slot_pos;  // [n_kv_heads, cap] i32
    TensorView n_slots;   // [n_kv_heads] i32
    TensorView out;       // [n_q_heads, n_q, head_dim] f32
    int64_t q_pos0 = 0;
    float scale = 0.0f;
};

// Decode-time block compaction (tca-method M7). For each KV head h with keep[h] >= 0, the
// oldest local block, slots [n_global[h], n_global[h] + b), is scored with the given queries
// (group and query mean of a softmax over that block only), its keep[h] best tokens (ties:
// lower position) move to the end of the global part in position order, the other b - keep[h]
// are dropped and the rest of the local part moves down: n_global += keep, n_slots -= b - keep.
// Requires n_slots[h] - n_global[h] >= b for those heads.
struct BlockCompactParams {
    TensorView q;         // [n_q_heads, n_q, head_dim] f32 scorer queries (current step)
    TensorView k_cache;   // [n_kv_heads, cap, head_dim] in/out
    TensorView v_cache;   // [n_kv_heads, cap, head_dim] in/out
    TensorView slot_pos;  // [n_kv_heads, cap] i32 in/out
    TensorView n_global;  // [n_kv_heads] i32 in/out
    TensorView n_slots;   // [n_kv_heads] i32 in/out
    TensorView keep;      // [n_kv_heads] i32: tokens kept from the block, -1 = leave the head
    int block_size = 128;
    float scale = 0.0f;
    // Heads whose local part n_slots - n_global holds fewer tokens are left as they are (the
    // device decides, so a decode step needs no host copy of the counts; 0 = every head with
    // keep >= 0 compacts). Must be 0 or >= block_size.
    int64_t min_local = 0;
};

// Appends n new tokens' K/V rows (the token-major projection outputs, RoPE already applied)
// after the last slot of each KV head: slots [n_slots[h], n_slots[h] + n) receive positions
// pos0 .. pos0 + n - 1, then n_slots[h] += n. Requires n_slots[h] + n <= cap (the runtime
// checks the context length first).
struct KvAppendParams {
    TensorView k_new;     // [n_tokens, n_kv_heads, head_dim] f32, any outer strides
    TensorView v_new;     // [n_tokens, n_kv_heads, head_dim] f32
    TensorView k_cache;   // [n_kv_heads, cap, head_dim] f32|f16|bf16 in/out
    TensorView v_cache;   // [n_kv_heads, cap, head_dim] in/out
    TensorView slot_pos;  // [n_kv_heads, cap] i32 in/out
    TensorView n_slots;   // [n_kv_heads] i32 in/out
    int64_t pos0 = 0;
};

// In-place compaction of a region of each KV head's cache by a list of kept slots
// (tca-method M7: the cache after prefill, chunks after decoding, the baselines' eviction).
// For head h with region[h] >= 0, the region is slots [n_global, n_global + region); the kept
// slots n_global + kept[h, i] (offsets ascending, < region) move to the end of the global part
// in order, the rest of the region is dropped, and slots after the region move down:
// n_global += n_kept, n_slots -= region - n_kept. region[h] = -1 leaves the head untouched.
struct KvCompactParams {
    TensorView k_cache;   // [n_kv_heads, cap, head_dim] f32|f16|bf16 in/out
    TensorView v_cache;   // [n_kv_heads, cap, head_dim] in/out
    TensorView slot_pos;  // [n_kv_heads, cap] i32 in/out
    TensorView n_global;  // [n_kv_heads] i32 in/out
    TensorView n_slots;   // [n_kv_heads] i32 in/out
    TensorView kept;      // [n_kv_heads, cap_kept] i32 slot offsets within the region
    TensorView n_kept;    // [n_kv_heads] i32
    TensorView region;    // [n_kv_heads] i32, -1 = untouched
};

// ---- Model ops: the LLaMA / Qwen2 / Mistral forward pass outside attention ----------------

// A weight matrix in ggml layout: n_rows rows of n_cols elements, each row stored as whole
// ggml blocks (ggml_row_bytes(type, n_cols) bytes), rows back to back. Host memory, read-only.
struct MatrixView {
    const void* data = nullptr;
    GgmlType type = GgmlType::kF32;
    int64_t n_rows = 0;
    int64_t n_cols = 0;
};
// Weight types matmul and embed accept: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K.
bool is_supported_weight_type(GgmlType t);

// What matmul does to the activations before the dot products.
//  kF32: x is used as is (f32 activations times the exactly dequantized weights).
//  kWeightDotType: as ggml's CPU backend (llama.cpp), x is first converted to the weight
//    type's "dot type" (matmul_dot_type): F16 weights -> x rounded to f16 (nearest even),
//    BF16 -> bf16; Q8_0/Q4_0/Q5_0 -> Q8_0 blocks of 32 (amax = max|x|, d = f16(amax / 127),
//    q = nearest-even(x * (127 / amax)), the product in f32); Q4_1/Q5_1 -> Q8_1 (Q8_0 plus
//    s = f16(d_f32 * sum q), the dot adds m_w * s per block); Q4_K/Q6_K -> Q8_K blocks of 256
//    (max = the x of largest |x|, first one on ties; iscale = -127 / max, q = min(127,
//    nearest-even(iscale * x)), d = 1 / iscale in f32). F32 weights: unchanged.
enum class MatmulActivations { kF32, kWeightDotType };
const char* matmul_activations_name(MatmulActivations a);  // "f32" | "native"
// The type the activations take for weights of type t under kWeightDotType (kF32 for F32).
GgmlType matmul_dot_type(GgmlType t);

// What matmul multiplies by the weights: x itself, or the op that precedes a projection in a
// LLaMA layer computed from x inside the matmul (one-token decode steps on the GPU fold it into
// the GEMV: one launch and one activation round trip fewer). The values are what the separate
// op stores (every backend computes them with that op's own math), so the result is bitwise
// the op followed by matmul.
//  kX: x.
//  kRmsNorm: rms_norm(x, norm_weight, norm_eps) (RmsNormParams).
//  kSwiglu: swiglu(x, up) (SwigluParams with gate = x).
enum class MatmulInput { kX, kRmsNorm, kSwiglu };
const char* matmul_input_name(MatmulInput in);  // "x" | "rms_norm" | "swiglu"

// y[t, o] = sum_i in[t, i] * w[o, i] (+ bias[o]) (+ residual[t, o]), in = x or the MatmulInput
// op of x, rounded to f32 as ((dot + bias) + residual): bitwise what matmul followed by add
// gives.
struct MatmulParams {
    TensorView x;     // [n_tokens, n_in] f32, any row stride
    MatrixView w;     // [n_out, n_in] (n_rows = n_out, n_cols = n_in)
    TensorView bias{};  // [n_out] f32, optional (empty = no bias)
    TensorView y{};     // [n_tokens, n_out] f32 out, any row stride; must not overlap x (or up)
    MatmulActivations act = MatmulActivations::kF32;
    // [n_tokens, n_out] f32, optional (empty = none); y may be exactly this view (same data and
    // strides: the residual stream updated in place), any other overlap with y is an error.
    TensorView residual{};
    MatmulInput input = MatmulInput::kX;
    TensorView norm_weight{};  // kRmsNorm: [n_in] f32 (empty otherwise)
    float norm_eps = 1e-5f;    // kRmsNorm: finite, >= 0
    TensorView up{};           // kSwiglu: [n_tokens, n_in] f32 (empty otherwise)
};
// p multiplying `in` (its input op's result, [n_tokens, n_in] f32) instead: x = in, input kX,
// norm_weight and up cleared. Backends that run the input op as its own kernel use it.
MatmulParams matmul_of_input(const MatmulParams& p, const TensorView& in);

// out[t, i] = x[t, i] / sqrt(mean_i(x[t, :]^2) + eps) * weight[i].
struct RmsNormParams {
    TensorView x;       // [n_tokens, dim] f32
    TensorView weight;  // [dim] f32
    TensorView out;     // [n_tokens, dim] f32; may be x itself (in place)
    float eps = 1e-5f;
};

// RopeStyle (model/model_config.h): which elements RoPE rotates together, (x[2i], x[2i+1])
// for GGUF arch llama/mistral, (x[i], x[i + d/2]) for qwen2 and Hugging Face checkpoints.

// In place: pair i of head h of token t rotates by angle positions[t] * inv_freq[i].
struct RopeParams {
    TensorView x;          // [n_tokens, n_heads, head_dim] f32 in/out; head_dim even
    TensorView positions;  // [n_tokens] i32, >= 0
    TensorView inv_freq;   // [head_dim / 2] f32 (backend/rope_freqs.h computes it)
    RopeStyle style = RopeStyle::kAdjacentPairs;
};

// out = silu(gate) * up, silu(g) = g / (1 + exp(-g)).
struct SwigluParams {
    TensorView gate;  // [n_tokens, n_ff] f32
    TensorView up;    // [n_tokens, n_ff] f32
    TensorView out;   // [n_tokens, n_ff] f32; may be gate or up (in place)
};

// out[t] = row ids[t] of the token-embedding table, dequantized to f32.
struct EmbedParams {
    MatrixView table;  // [n_vocab, dim]
    TensorView ids;    // [n_tokens] i32 host memory, each in [0, n_vocab)
    TensorView out;    // [n_tokens, dim] f32
};

// out = a + b (the residual stream).
struct AddParams {
    TensorView a;    // [n_tokens, dim] f32
    TensorView b;    // [n_tokens, dim] f32
    TensorView out;  // [n_tokens, dim] f32; may be a or b (in place)
};

// Validation of the model ops (declared here because the structs come before the op list).
Status validate(const MatmulParams& p);
Status validate(const RmsNormParams& p);
Status validate(const RopeParams& p);
Status validate(const SwigluParams& p);
Status validate(const EmbedParams& p);  // also checks every id against n_vocab
Status validate(const AddParams& p);

#define TCA_FOR_EACH_MODEL_OP(X) \
    X(matmul, MatmulParams)       \
    X(rms_norm, RmsNormParams)    \
    X(rope, RopeParams)           \
    X(swiglu, SwigluParams)       \
    X(embed, EmbedParams)         \
    X(add, AddParams)

// The op list, for dispatch declarations and the coverage test (every op needs a reference,
// a CPU implementation and parity cases).
#define TCA_FOR_EACH_OP(X)                        \
    X(attention_dense, AttentionDenseParams)      \
    X(token_importance, TokenImportanceParams)    \
    X(block_score, BlockScoreParams)              \
    X(block_budget, BlockBudgetParams)            \
    X(token_select, TokenSelectParams)            \
    X(kv_gather, KvGatherParams)                  \
    X(sparse_prefill, SparsePrefillParams)        \
    X(decode_attention, DecodeAttentionParams)    \
    X(block_compact, BlockCompactParams)          \
    X(kv_append, KvAppendParams)                  \
    X(kv_compact, KvCompactParams)

// Shape, dtype and parameter validation shared by every backend. The message names the
// parameter and its value, e.g. "sparse_prefill: block_size must be a power of two, got 100".
#define TCA_DECLARE_VALIDATE(name, Params) Status validate(const Params& p);
TCA_FOR_EACH_OP(TCA_DECLARE_VALIDATE)
#undef TCA_DECLARE_VALIDATE

// Head dims every backend supports: multiples of 8 in [8, 256].
Status validate_head_dim(int64_t head_dim, const char* op);
// 1/sqrt(head_dim) when scale == 0.
float effective_scale(float scale, int64_t head_dim);

// Device dispatch: validates, then runs the op on `device`.
namespace ops {
#define TCA_DECLARE_DISPATCH(name, Params) Status name(Device device, const Params& p);
TCA_FOR_EACH_OP(TCA_DECLARE_DISPATCH)
// The model ops keep their own list (TCA_FOR_EACH_MODEL_OP) while reference/ref_ops.cpp
// defines its functions from TCA_FOR_EACH_OP; folding the lists together means dropping the
// model-op dispatch definitions at the end of ops.cpp.
TCA_FOR_EACH_MODEL_OP(TCA_DECLARE_DISPATCH)
#undef TCA_DECLARE_DISPATCH
}  // namespace ops

}  // namespace tca
