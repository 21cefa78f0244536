// Model: the loaded weights plus what the forward pass derives from them once (f32 copies of
// norm weights and biases, RoPE inverse frequencies, kernel views of the matrices), and the
// run state: every activation buffer, sized once for the largest batch (the decode loop
// allocates nothing). Both live in the memory space of the device the forward pass runs on:
// on the host the matrices are views of the mapped file; on a device F32/F16/BF16 matrices are
// uploaded as they are and quantized ones are dequantized on the host to BF16 first (the device
// matmul and embed read F32/F16/BF16 only), each layer's wq/wk/wv and w_gate/w_up into one
// matrix per group (LayerViews).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/communicator.h"
#include "backend/ops.h"
#include "core/device_tensor.h"
#include "core/host_tensor.h"
#include "kv/kv_cache.h"
#include "model/model_weights.h"
#include "runtime/attention_runner.h"

namespace tca {

struct LayerViews {
    DeviceTensor attn_norm, ffn_norm;  // [n_embd] f32
    DeviceTensor b_qkv;                // [q_dim + 2 kv_dim] f32: bq, bk, bv back to back
    TensorView bq, bk, bv;             // [q_dim] / [kv_dim] f32 views of b_qkv, empty without bias
    MatrixView wq, wk, wv, wo, w_gate, w_up, w_down;
    // Device models: wq, wk, wv are stored as one matrix and w_gate, w_up as another (each a
    // row range of it, nothing stored twice), so a decode step runs one matmul for each group.
    // data == nullptr when not fused (host models: views of the mapped file; parts of other
    // types or row lengths).
    MatrixView w_qkv;      // [q_dim + 2 kv_dim, n_embd]: rows of wq, then wk, then wv
    MatrixView w_gate_up;  // [2 n_ff, n_embd]: rows of w_gate, then w_up
};

// Tensor parallelism: rank `rank` of `n_ranks` holds query heads [rank * n_head / n_ranks, ...),
// the matching KV heads, rows of wq/wk/wv/w_gate/w_up (plain row ranges of the file) and
// the same columns of wo and w_down (copied; quantized rows whose column range is not a whole
// number of blocks are dequantized to f32); embeddings, norms and the output head are whole.
struct TensorShard {
    int rank = 0;
    int n_ranks = 1;
};

// Why a model cannot be split n_ranks ways (n_head_kv and n_ff must be divisible), or OK.
Status check_tensor_parallel(const ModelConfig& c, int n_ranks);

class Model {
public:
    static Result<std::unique_ptr<Model>> create(ModelWeights weights,
                                                 const MemorySpace& space = host_memory());
    // One rank's shard (see TensorShard); its config() has the shard's n_head, n_head_kv and
    // n_ff, so the forward pass and the run state see a smaller model.
    static Result<std::unique_ptr<Model>> create_shard(std::shared_ptr<const ModelWeights> weights,
                                                       const MemorySpace& space, TensorShard shard);

    const ModelConfig& config() const { return config_; }
    const ModelWeights& weights() const { return *weights_; }
    const TensorShard& shard() const { return shard_; }
    const LayerViews& layer(int64_t i) const { return layers_[static_cast<size_t>(i)]; }
    const MatrixView& token_embd() const { return token_embd_; }
    const MatrixView& output() const { return output_; }
    const DeviceTensor& output_norm() const { return output_norm_; }
    const DeviceTensor& inv_freq() const { return inv_freq_; }  // [head_dim / 2] f32
    const MemorySpace& space() const { return *space_; }
    // Bytes of weights the forward pass reads: the file's on the host, the uploaded ones on a
    // device; and what the upload did ("", or e.g. "Q8_0, Q6_K dequantized to bf16 at load").
    uint64_t weight_bytes() const;
    const std::string& weight_conversion() const { return conversion_; }
    // What every matmul of the forward pass does to its activations (ops.h).
    MatmulActivations matmul_activations() const { return matmul_act_; }
    void set_matmul_activations(MatmulActivations a) { matmul_act_ = a; }
    // Whether forward() uses the fused matrices (LayerViews::w_qkv, w_gate_up) for one-token
    // steps: one q/k/v matmul, one RoPE launch over q and k, one gate/up matmul. On by default;
    // TCA_CUDA_FUSED=0 in the environment at load turns it off (A/B runs).
    bool fused_decode() const { return fused_decode_; }
    void set_fused_decode(bool on) { fused_decode_ = on; }

private:
    // The kernel view of a matrix in the model's space (see the top of this file).
    Result<MatrixView> place_matrix(const WeightView& w);
    // The parts as consecutive row ranges of one device matrix (returned; the parts' views go
    // to *views), or an empty view and each part placed alone when they cannot be fused (host
    // space, different device types or row lengths, a part already placed).
    Result<MatrixView> place_fused(std::initializer_list<const WeightView*> parts,
                                   std::initializer_list<MatrixView*> views);
    // The parts (matrices of one device type and row length) as consecutive row ranges of one
    // new device matrix named `name` (returned); each part's view goes to *views and placed_.
    Result<MatrixView> upload_group(std::initializer_list<const WeightView*> parts,
                                    std::initializer_list<MatrixView*> views, const std::string& name);
    // Uploads w's rows (as `type`) to dev at byte offset `offset`.
    Status upload_rows(const WeightView& w, GgmlType type, DeviceTensor& dev, uint64_t offset);
    struct Placed {
        const void* source;
        MatrixView view;
    };

    // The shard of a matrix as a weight of its own: a row range of the file, or a column range
    // copied into host_copies_.
    Result<WeightView> shard_rows(const WeightView& w, int64_t rows_per_rank);
    Result<WeightView> shard_cols(const WeightView& w, int64_t cols_per_rank);
    // The rank's range of a bias vector, as f32.
    Result<std::vector<float>> shard_bias(const WeightView& w, int64_t per_rank);

    std::shared_ptr<const ModelWeights> weights_;
    ModelConfig config_;
    TensorShard shard_;
    std::vector<std::vector<uint8_t>> host_copies_;  // column shards of wo / w_down
    std::vector<LayerViews> layers_;
    MatrixView token_embd_, output_;
    DeviceTensor output_norm_, inv_freq_;
    const MemorySpace* space_ = &host_memory();
    std::vector<DeviceTensor> uploaded_;  // device copies of the matrices (device models)
    std::vector<Placed> placed_;
    uint64_t uploaded_bytes_ = 0;
    std::string conversion_;
    MatmulActivations matmul_act_ = MatmulActivations::kF32;
    bool fused_decode_ = true;
};

// Activation buffers for up to max_batch tokens per forward call, in `space`; ids and pos stay
// on the host on every device (the embed and rope ops read them there).
struct RunState {
    static Result<std::unique_ptr<RunState>> create(const ModelConfig& c, int64_t max_batch,
                                                    bool all_logits,
                                                    const MemorySpace& space = host_memory());
    size_t nbytes() const;

    int64_t max_batch = 0;
    bool all_logits = false;  // logits rows for every token of a batch (else only the last)
    HostTensor ids;       // [max_batch] i32 host
    HostTensor pos;       // [max_batch] i32 host
    DeviceTensor x;       // [max_batch, n_embd] residual stream
    DeviceTensor xn;      // [max_batch, n_embd] normalised
    DeviceTensor q;       // [max_batch, n_head * head_dim]
    DeviceTensor k;       // [max_batch, n_head_kv * head_dim]
    DeviceTensor v;       // [max_batch, n_head_kv * head_dim]
    DeviceTensor att;     // [max_batch, n_head * head_dim] attention output
    DeviceTensor proj;    // [max_batch, n_embd] attention / MLP projection output
    DeviceTensor gate;    // [max_batch, n_ff]
    DeviceTensor up;      // [max_batch, n_ff]
    // One-token steps of fused models (Model::fused_decode); allocated in device spaces only
    // (host models are never fused).
    DeviceTensor qkv;      // [1, q_dim + 2 kv_dim]: q, k, v of the token
    DeviceTensor gate_up;  // [1, 2 n_ff]: gate, then up
    DeviceTensor logits;  // [max_batch or 1, n_vocab]
};

// Called after each layer's attention with that layer's RoPE'd queries of the batch
// (q [n_head, n, head_dim] f32, strided view), its KV cache (which holds the batch's keys, after
// any compaction the policy did in this step) and the attention output (out [n_head, n,
// head_dim] f32): calibration and diagnostics read attention statistics here. The views are in
// the model's memory space (copy them with to_host() on a device).
using LayerObserver = std::function<Status(int64_t layer, const TensorView& q, const KvLayer& kv,
                                           int64_t pos0, const TensorView& out)>;

// Evaluates ids (n <= state.max_batch) at positions pos0 .. pos0 + n - 1: adds their K/V to
// the cache and leaves logits in state.logits (row t for token t when state.all_logits,
// else row 0 = the last token). The caller checks the cache capacity first.
// Each layer's attention runs through `attention` (the engine's policy); prompt_end marks the
// last batch of a prompt.
// Tensor parallelism: with `comm`, the model is one rank's shard and the partial sums of the
// attention output and MLP down projections are all-reduced over the ranks before the residual
// add (every rank then holds the whole residual stream and computes the same logits).
Status forward(Device device, const Model& model, RunState& state, KvCache& cache,
               AttentionRunner& attention, std::span<const int32_t> ids, int64_t pos0,
               bool prompt_end, const LayerObserver* observer = nullptr,
               Communicator* comm = nullptr);

}  // namespace tca
