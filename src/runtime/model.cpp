// Model preparation and the forward pass (model.h): per layer RMSNorm -> q/k/v projections
// (+bias) -> RoPE -> attention under the engine's policy (KV append, attend, compact) ->
// output projection + residual
// -> RMSNorm -> SwiGLU MLP + residual; then the final norm and the output projection. Every
// step is a backend op (src/backend/ops.h), so the same code runs on every device.
#include "runtime/model.h"

#include <new>

#include "backend/rope_freqs.h"
#include "core/strings.h"

namespace tca {
namespace {

// A 1-d weight (norm or bias) dequantized to f32.
Result<HostTensor> to_f32(const WeightView& w) {
    HostTensor t(DType::kF32, {w.row_elems() * w.n_rows()});
    TCA_RETURN_IF_ERROR(w.dequantize_rows(0, w.n_rows(), t.data<float>()));
    return t;
}

MatrixView matrix(const WeightView& w) {
    TCA_ASSERT(w.ndim == 2, "%s is not a matrix", w.name.c_str());
    return MatrixView{w.data, w.type, w.shape[0], w.shape[1]};
}

Status check_matrix(const WeightView& w) {
    if (!is_supported_weight_type(w.type)) {
        return unsupported("tensor %s: type %s is not supported by the matmul kernels",
                           w.name.c_str(), ggml_type_label(static_cast<uint32_t>(w.type)).c_str());
    }
    return Status();
}

// A [rows, cols] view of the first `rows` rows of a row-major buffer.
TensorView rows_of(const HostTensor& t, int64_t rows) { return slice(t.view(), 0, 0, rows); }

// [n, heads * d] viewed as [n, heads, d].
TensorView as_token_heads(const HostTensor& t, int64_t n, int64_t heads, int64_t d) {
    TensorView v = rows_of(t, n);
    v.ndim = 3;
    v.shape = {n, heads, d, 0};
    v.stride = {heads * d, d, 1, 0};
    return v;
}

// [n, heads * d] viewed head-major as [heads, n, d] (strided, no copy).
TensorView as_head_tokens(const HostTensor& t, int64_t n, int64_t heads, int64_t d) {
    TensorView v = rows_of(t, n);
    v.ndim = 3;
    v.shape = {heads, n, d, 0};
    v.stride = {d, heads * d, 1, 0};
    return v;
}

}  // namespace

Result<std::unique_ptr<Model>> Model::create(ModelWeights weights) {
    auto m = std::unique_ptr<Model>(new (std::nothrow) Model());
    if (!m) return out_of_memory("model: cannot allocate");
    m->weights_ = std::move(weights);
    const ModelWeights& w = m->weights_;
    const ModelConfig& c = w.config;
    TCA_RETURN_IF_ERROR(check_matrix(w.token_embd));
    TCA_RETURN_IF_ERROR(check_matrix(w.output));
    m->token_embd_ = matrix(w.token_embd);
    m->output_ = matrix(w.output);
    TCA_ASSIGN_OR_RETURN(m->output_norm_, to_f32(w.output_norm));
    for (const LayerWeights& lw : w.layers) {
        LayerViews lv;
        TCA_ASSIGN_OR_RETURN(lv.attn_norm, to_f32(lw.attn_norm));
        TCA_ASSIGN_OR_RETURN(lv.ffn_norm, to_f32(lw.ffn_norm));
        if (c.attn_bias) {
            TCA_ASSIGN_OR_RETURN(lv.bq, to_f32(lw.bq));
            TCA_ASSIGN_OR_RETURN(lv.bk, to_f32(lw.bk));
            TCA_ASSIGN_OR_RETURN(lv.bv, to_f32(lw.bv));
        }
        for (const WeightView* mw : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) {
            TCA_RETURN_IF_ERROR(check_matrix(*mw));
        }
        lv.wq = matrix(lw.wq);
        lv.wk = matrix(lw.wk);
        lv.wv = matrix(lw.wv);
        lv.wo = matrix(lw.wo);
        lv.w_gate = matrix(lw.w_gate);
        lv.w_up = matrix(lw.w_up);
        lv.w_down = matrix(lw.w_down);
        m->layers_.push_back(std::move(lv));
    }
    // RoPE frequencies: base^(-2i/d) with the config's scaling; a GGUF rope_freqs tensor
    // (Llama 3 files) divides each frequency by its factor instead.
    TCA_ASSIGN_OR_RETURN(std::vector<float> inv,
                         rope_inv_freq(c.head_dim, c.rope_freq_base, c.rope_scaling));
    if (w.rope_freqs.present()) {
        TCA_ASSIGN_OR_RETURN(HostTensor factors, to_f32(w.rope_freqs));
        if (factors.numel() != static_cast<int64_t>(inv.size())) {
            return data_loss("tensor rope_freqs.weight: expected %zu factors, got %lld", inv.size(),
                             static_cast<long long>(factors.numel()));
        }
        for (size_t i = 0; i < inv.size(); ++i) {
            const float f = factors.data<float>()[i];
            if (!(f > 0.0f)) {
                return data_loss("tensor rope_freqs.weight: factor %zu must be > 0, got %g", i,
                                 static_cast<double>(f));
            }
            inv[i] = static_cast<float>(static_cast<double>(inv[i]) / f);
        }
    }
    m->inv_freq_ = HostTensor(DType::kF32, {static_cast<int64_t>(inv.size())});
    std::copy(inv.begin(), inv.end(), m->inv_freq_.data<float>());
    return m;
}

RunState::RunState(const ModelConfig& c, int64_t batch, bool all)
    : max_batch(batch),
      all_logits(all),
      ids(DType::kI32, {batch}),
      pos(DType::kI32, {batch}),
      x(DType::kF32, {batch, c.n_embd}),
      xn(DType::kF32, {batch, c.n_embd}),
      q(DType::kF32, {batch, c.q_dim()}),
      k(DType::kF32, {batch, c.kv_dim()}),
      v(DType::kF32, {batch, c.kv_dim()}),
      att(DType::kF32, {batch, c.q_dim()}),
      proj(DType::kF32, {batch, c.n_embd}),
      gate(DType::kF32, {batch, c.n_ff}),
      up(DType::kF32, {batch, c.n_ff}),
      logits(DType::kF32, {all ? batch : 1, c.n_vocab}) {}

size_t RunState::nbytes() const {
    return ids.nbytes() + pos.nbytes() + x.nbytes() + xn.nbytes() + q.nbytes() + k.nbytes() +
           v.nbytes() + att.nbytes() + proj.nbytes() + gate.nbytes() + up.nbytes() + logits.nbytes();
}

Status forward(Device device, const Model& model, RunState& st, KvCache& cache,
               AttentionRunner& attention, std::span<const int32_t> ids, int64_t pos0,
               bool prompt_end, const LayerObserver* observer) {
    const ModelConfig& c = model.config();
    const auto n = static_cast<int64_t>(ids.size());
    TCA_ASSERT(n >= 1 && n <= st.max_batch, "batch of %lld tokens (max %lld)",
               static_cast<long long>(n), static_cast<long long>(st.max_batch));
    const int64_t hd = c.head_dim;
    const auto eps = static_cast<float>(c.rms_norm_eps);
    const MatmulActivations act = model.matmul_activations();
    for (int64_t t = 0; t < n; ++t) {
        st.ids.data<int32_t>()[t] = ids[static_cast<size_t>(t)];
        st.pos.data<int32_t>()[t] = static_cast<int32_t>(pos0 + t);
    }
    const TensorView ids_v = slice(st.ids.view(), 0, 0, n), pos_v = slice(st.pos.view(), 0, 0, n);
    const TensorView x = rows_of(st.x, n), xn = rows_of(st.xn, n), proj = rows_of(st.proj, n);
    TCA_RETURN_IF_ERROR(ops::embed(device, EmbedParams{model.token_embd(), ids_v, x}));

    for (int64_t l = 0; l < c.n_layer; ++l) {
        const LayerViews& lw = model.layer(l);
        KvLayer& kv = cache.layer(l);
        // Attention block.
        TCA_RETURN_IF_ERROR(ops::rms_norm(device, RmsNormParams{x, lw.attn_norm.view(), xn, eps}));
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.wq, lw.bq.view(), rows_of(st.q, n), act}));
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.wk, lw.bk.view(), rows_of(st.k, n), act}));
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.wv, lw.bv.view(), rows_of(st.v, n), act}));
        const TensorView q3 = as_token_heads(st.q, n, c.n_head, hd);
        const TensorView k3 = as_token_heads(st.k, n, c.n_head_kv, hd);
        TCA_RETURN_IF_ERROR(ops::rope(device, RopeParams{q3, pos_v, model.inv_freq().view(), c.rope_style}));
        TCA_RETURN_IF_ERROR(ops::rope(device, RopeParams{k3, pos_v, model.inv_freq().view(), c.rope_style}));
        const TensorView q_heads = as_head_tokens(st.q, n, c.n_head, hd);
        TCA_RETURN_IF_ERROR(attention.run(device, l, q_heads, k3, as_token_heads(st.v, n, c.n_head_kv, hd),
                                          kv, pos0, prompt_end, as_head_tokens(st.att, n, c.n_head, hd)));
        if (observer && *observer) {
            TCA_RETURN_IF_ERROR((*observer)(l, q_heads, kv, pos0, as_head_tokens(st.att, n, c.n_head, hd)));
        }
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{rows_of(st.att, n), lw.wo, TensorView{}, proj, act}));
        TCA_RETURN_IF_ERROR(ops::add(device, AddParams{x, proj, x}));
        // MLP block.
        TCA_RETURN_IF_ERROR(ops::rms_norm(device, RmsNormParams{x, lw.ffn_norm.view(), xn, eps}));
        const TensorView gate = rows_of(st.gate, n), up = rows_of(st.up, n);
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.w_gate, TensorView{}, gate, act}));
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.w_up, TensorView{}, up, act}));
        TCA_RETURN_IF_ERROR(ops::swiglu(device, SwigluParams{gate, up, gate}));
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{gate, lw.w_down, TensorView{}, proj, act}));
        TCA_RETURN_IF_ERROR(ops::add(device, AddParams{x, proj, x}));
    }
    // Final norm and logits (every row, or only the last token's).
    const int64_t first = st.all_logits ? 0 : n - 1, rows = n - first;
    const TensorView x_out = slice(x, 0, first, rows), xn_out = slice(xn, 0, first, rows);
    TCA_RETURN_IF_ERROR(ops::rms_norm(device, RmsNormParams{x_out, model.output_norm().view(), xn_out, eps}));
    return ops::matmul(device, MatmulParams{xn_out, model.output(), TensorView{}, rows_of(st.logits, rows), act});
}

}  // namespace tca
