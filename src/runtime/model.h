// Model: the loaded weights plus what the forward pass derives from them once (f32 copies of
// norm weights and biases, RoPE inverse frequencies, kernel views of the matrices), and the
// run state: every activation buffer, sized once for the largest batch (the decode loop
// allocates nothing).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "backend/ops.h"
#include "core/host_tensor.h"
#include "kv/kv_cache.h"
#include "model/model_weights.h"
#include "runtime/attention_runner.h"

namespace tca {

struct LayerViews {
    HostTensor attn_norm, ffn_norm;  // [n_embd] f32
    HostTensor bq, bk, bv;           // [q_dim] / [kv_dim] f32, empty without attention bias
    MatrixView wq, wk, wv, wo, w_gate, w_up, w_down;
};

class Model {
public:
    static Result<std::unique_ptr<Model>> create(ModelWeights weights);

    const ModelConfig& config() const { return weights_.config; }
    const ModelWeights& weights() const { return weights_; }
    const LayerViews& layer(int64_t i) const { return layers_[static_cast<size_t>(i)]; }
    const MatrixView& token_embd() const { return token_embd_; }
    const MatrixView& output() const { return output_; }
    const HostTensor& output_norm() const { return output_norm_; }
    const HostTensor& inv_freq() const { return inv_freq_; }  // [head_dim / 2] f32
    // What every matmul of the forward pass does to its activations (ops.h).
    MatmulActivations matmul_activations() const { return matmul_act_; }
    void set_matmul_activations(MatmulActivations a) { matmul_act_ = a; }

private:
    ModelWeights weights_;
    std::vector<LayerViews> layers_;
    MatrixView token_embd_, output_;
    HostTensor output_norm_, inv_freq_;
    MatmulActivations matmul_act_ = MatmulActivations::kF32;
};

// Activation buffers for up to max_batch tokens per forward call.
struct RunState {
    RunState(const ModelConfig& c, int64_t max_batch, bool all_logits);
    size_t nbytes() const;

    int64_t max_batch;
    bool all_logits;    // logits rows for every token of a batch (else only the last)
    HostTensor ids;     // [max_batch] i32
    HostTensor pos;     // [max_batch] i32
    HostTensor x;       // [max_batch, n_embd] residual stream
    HostTensor xn;      // [max_batch, n_embd] normalised
    HostTensor q;       // [max_batch, n_head * head_dim]
    HostTensor k;       // [max_batch, n_head_kv * head_dim]
    HostTensor v;       // [max_batch, n_head_kv * head_dim]
    HostTensor att;     // [max_batch, n_head * head_dim] attention output
    HostTensor proj;    // [max_batch, n_embd] attention / MLP projection output
    HostTensor gate;    // [max_batch, n_ff]
    HostTensor up;      // [max_batch, n_ff]
    HostTensor logits;  // [max_batch or 1, n_vocab]
};

// Called after each layer's attention with that layer's RoPE'd queries of the batch
// (q [n_head, n, head_dim] f32, strided view), its KV cache (which holds the batch's keys, after
// any compaction the policy did in this step) and the attention output (out [n_head, n,
// head_dim] f32): calibration and diagnostics read attention statistics here.
using LayerObserver = std::function<Status(int64_t layer, const TensorView& q, const KvLayer& kv,
                                           int64_t pos0, const TensorView& out)>;

// Evaluates ids (n <= state.max_batch) at positions pos0 .. pos0 + n - 1: adds their K/V to
// the cache and leaves logits in state.logits (row t for token t when state.all_logits,
// else row 0 = the last token). The caller checks the cache capacity first.
// Each layer's attention runs through `attention` (the engine's policy); prompt_end marks the
// last batch of a prompt.
Status forward(Device device, const Model& model, RunState& state, KvCache& cache,
               AttentionRunner& attention, std::span<const int32_t> ids, int64_t pos0,
               bool prompt_end, const LayerObserver* observer = nullptr);

}  // namespace tca
