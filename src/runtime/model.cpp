// Model preparation and the forward pass (model.h): per layer RMSNorm -> q/k/v projections
// (+bias) -> RoPE -> attention under the engine's policy (KV append, attend, compact) ->
// output projection + residual
// -> RMSNorm -> SwiGLU MLP + residual; then the final norm and the output projection. Every
// step is a backend op (src/backend/ops.h), so the same code runs on every device.
#include "runtime/model.h"

#include <cstring>
#include <new>

#include <algorithm>
#include <utility>

#include "backend/rope_freqs.h"
#include "core/half.h"
#include "core/strings.h"
#include "core/thread_pool.h"

namespace tca {
namespace {

// A 1-d weight (norm or bias) dequantized to f32 on the host.
Result<HostTensor> to_f32(const WeightView& w) {
    HostTensor t(DType::kF32, {w.row_elems() * w.n_rows()});
    TCA_RETURN_IF_ERROR(w.dequantize_rows(0, w.n_rows(), t.data<float>()));
    return t;
}

// The same in `space` (dequantized in place on the host, uploaded to a device).
Result<DeviceTensor> to_f32(const WeightView& w, const MemorySpace& space) {
    TCA_ASSIGN_OR_RETURN(DeviceTensor t, DeviceTensor::create(space, DType::kF32, {w.row_elems() * w.n_rows()}));
    if (t.on_host()) {
        TCA_RETURN_IF_ERROR(w.dequantize_rows(0, w.n_rows(), t.data<float>()));
        return t;
    }
    TCA_ASSIGN_OR_RETURN(HostTensor h, to_f32(w));
    TCA_RETURN_IF_ERROR(t.upload(h.view().data, h.nbytes()));
    return t;
}

// Host floats into a new f32 tensor of `space`.
Result<DeviceTensor> f32_tensor(const std::vector<float>& v, const MemorySpace& space) {
    TCA_ASSIGN_OR_RETURN(DeviceTensor t, DeviceTensor::create(space, DType::kF32, {static_cast<int64_t>(v.size())}));
    TCA_RETURN_IF_ERROR(t.upload(v.data(), v.size() * sizeof(float)));
    return t;
}

bool device_native(GgmlType t) { return t == GgmlType::kF32 || t == GgmlType::kF16 || t == GgmlType::kBF16; }

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
TensorView rows_of(const DeviceTensor& t, int64_t rows) { return slice(t.view(), 0, 0, rows); }

// [n, heads * d] viewed as [n, heads, d].
TensorView as_token_heads(const DeviceTensor& t, int64_t n, int64_t heads, int64_t d) {
    TensorView v = rows_of(t, n);
    v.ndim = 3;
    v.shape = {n, heads, d, 0};
    v.stride = {heads * d, d, 1, 0};
    return v;
}

// [n, heads * d] viewed head-major as [heads, n, d] (strided, no copy).
TensorView as_head_tokens(const DeviceTensor& t, int64_t n, int64_t heads, int64_t d) {
    TensorView v = rows_of(t, n);
    v.ndim = 3;
    v.shape = {heads, n, d, 0};
    v.stride = {d, heads * d, 1, 0};
    return v;
}

}  // namespace

Result<MatrixView> Model::place_matrix(const WeightView& w) {
    TCA_RETURN_IF_ERROR(check_matrix(w));
    const MatrixView host = matrix(w);
    if (space_->is_host()) return host;
    for (const Placed& p : placed_) {  // tied embeddings: one upload for both uses
        if (p.source == w.data) return p.view;
    }
    const GgmlType type = device_native(w.type) ? w.type : GgmlType::kBF16;
    TCA_ASSIGN_OR_RETURN(const uint64_t row_bytes, ggml_row_bytes(type, host.n_cols));
    const uint64_t bytes = row_bytes * static_cast<uint64_t>(host.n_rows);
    Result<DeviceTensor> t = DeviceTensor::create(*space_, DType::kU8, {static_cast<int64_t>(bytes)});
    if (!t.ok()) {
        return Status(t.status().code(), strformat("tensor %s (%s): %s", w.name.c_str(),
                                                   format_bytes(bytes).c_str(), t.status().message().c_str()));
    }
    DeviceTensor dev = std::move(t.value());
    if (type == w.type) {
        TCA_RETURN_IF_ERROR(dev.upload(w.data, bytes));
    } else {
        // Quantized: dequantize on the host in chunks of rows, round to bf16, upload.
        const std::string label = ggml_type_label(static_cast<uint32_t>(w.type));
        if (conversion_.find(label) == std::string::npos) conversion_ += (conversion_.empty() ? "" : ", ") + label;
        const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, host.n_cols));
        std::vector<float> f32(static_cast<size_t>(chunk * host.n_cols));
        std::vector<uint16_t> bf16(f32.size());
        for (int64_t r0 = 0; r0 < host.n_rows; r0 += chunk) {
            const int64_t n = std::min(chunk, host.n_rows - r0);
            const int64_t elems = n * host.n_cols;
            TCA_RETURN_IF_ERROR(w.dequantize_rows(r0, n, f32.data()));
            thread_pool().parallel_for((elems + 4095) / 4096, [&](int64_t item, int) {
                const int64_t e1 = std::min(elems, (item + 1) * 4096);
                for (int64_t e = item * 4096; e < e1; ++e) {
                    bf16[static_cast<size_t>(e)] = f32_to_bf16(f32[static_cast<size_t>(e)]);
                }
            });
            TCA_RETURN_IF_ERROR(dev.upload(bf16.data(), static_cast<size_t>(elems) * sizeof(uint16_t),
                                           static_cast<size_t>(r0) * row_bytes));
        }
    }
    const MatrixView view{dev.view().data, type, host.n_rows, host.n_cols};
    uploaded_bytes_ += bytes;
    placed_.push_back(Placed{w.data, view});
    uploaded_.push_back(std::move(dev));
    return view;
}

uint64_t Model::weight_bytes() const {
    if (!space_->is_host()) return uploaded_bytes_;
    if (shard_.n_ranks == 1) return weights_->total_bytes();
    // A shard reads its slices of the per-layer matrices plus the whole rest.
    uint64_t layer_bytes = 0;
    for (const LayerWeights& lw : weights_->layers) {
        for (const WeightView* mw : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) {
            layer_bytes += mw->n_bytes;
        }
    }
    return weights_->total_bytes() - layer_bytes + layer_bytes / static_cast<uint64_t>(shard_.n_ranks);
}

Status check_tensor_parallel(const ModelConfig& c, int n_ranks) {
    if (n_ranks < 1) return usage_error("--tensor-parallel must be >= 1, got %d", n_ranks);
    if (c.n_head_kv % n_ranks != 0 || c.n_head % n_ranks != 0 || c.n_ff % n_ranks != 0) {
        return usage_error("--tensor-parallel %d: the model's %lld query heads, %lld KV heads and "
                           "MLP size %lld must all be divisible by %d",
                           n_ranks, static_cast<long long>(c.n_head), static_cast<long long>(c.n_head_kv),
                           static_cast<long long>(c.n_ff), n_ranks);
    }
    return Status();
}

Result<WeightView> Model::shard_rows(const WeightView& w, int64_t per_rank) {
    if (shard_.n_ranks == 1) return w;
    TCA_ASSERT(w.ndim == 2 && w.shape[0] == per_rank * shard_.n_ranks, "%s rows", w.name.c_str());
    WeightView s = w;
    s.shape[0] = per_rank;
    s.data = w.data + static_cast<uint64_t>(per_rank * shard_.rank) * w.row_bytes();
    s.n_bytes = static_cast<uint64_t>(per_rank) * w.row_bytes();
    return s;
}

Result<WeightView> Model::shard_cols(const WeightView& w, int64_t per_rank) {
    if (shard_.n_ranks == 1) return w;
    TCA_ASSERT(w.ndim == 2 && w.shape[1] == per_rank * shard_.n_ranks, "%s cols", w.name.c_str());
    const int64_t rows = w.shape[0], c0 = per_rank * shard_.rank;
    WeightView s = w;
    s.shape[1] = per_rank;
    Result<uint64_t> skip = ggml_row_bytes(w.type, c0), keep = ggml_row_bytes(w.type, per_rank);
    std::vector<uint8_t> bytes;
    try {
        if (skip.ok() && keep.ok()) {
            // Whole blocks: each row's slice is a byte range of the row, kept as it is (the
            // matmul then computes exactly the TP=1 partial sums of these columns).
            bytes.resize(*keep * static_cast<uint64_t>(rows));
            for (int64_t r = 0; r < rows; ++r) {
                std::memcpy(bytes.data() + *keep * static_cast<uint64_t>(r),
                            w.data + w.row_bytes() * static_cast<uint64_t>(r) + *skip, *keep);
            }
            s.n_bytes = bytes.size();
        } else {
            s.type = GgmlType::kF32;
            bytes.resize(static_cast<size_t>(rows * per_rank) * sizeof(float));
            std::vector<float> row(static_cast<size_t>(w.shape[1]));
            for (int64_t r = 0; r < rows; ++r) {
                TCA_RETURN_IF_ERROR(w.dequantize_rows(r, 1, row.data()));
                std::memcpy(bytes.data() + static_cast<size_t>(r * per_rank) * sizeof(float),
                            row.data() + c0, static_cast<size_t>(per_rank) * sizeof(float));
            }
            s.n_bytes = bytes.size();
        }
    } catch (const std::bad_alloc&) {
        return out_of_memory("tensor %s: cannot allocate its shard", w.name.c_str());
    }
    s.data = bytes.data();
    host_copies_.push_back(std::move(bytes));
    return s;
}

Result<DeviceTensor> Model::shard_bias(const WeightView& w, int64_t per_rank) {
    if (shard_.n_ranks == 1) return to_f32(w, *space_);
    TCA_ASSIGN_OR_RETURN(HostTensor all, to_f32(w));
    const float* p = all.data<float>() + per_rank * shard_.rank;
    return f32_tensor(std::vector<float>(p, p + per_rank), *space_);
}

Result<std::unique_ptr<Model>> Model::create(ModelWeights weights, const MemorySpace& space) {
    std::shared_ptr<const ModelWeights> shared;
    try {
        shared = std::make_shared<const ModelWeights>(std::move(weights));
    } catch (const std::bad_alloc&) {
        return out_of_memory("model: cannot allocate");
    }
    return create_shard(std::move(shared), space, TensorShard{});
}

Result<std::unique_ptr<Model>> Model::create_shard(std::shared_ptr<const ModelWeights> weights,
                                                   const MemorySpace& space, TensorShard shard) {
    auto m = std::unique_ptr<Model>(new (std::nothrow) Model());
    if (!m) return out_of_memory("model: cannot allocate");
    TCA_ASSERT(shard.n_ranks >= 1 && shard.rank >= 0 && shard.rank < shard.n_ranks, "shard %d of %d",
               shard.rank, shard.n_ranks);
    TCA_RETURN_IF_ERROR(check_tensor_parallel(weights->config, shard.n_ranks));
    m->weights_ = std::move(weights);
    m->space_ = &space;
    m->shard_ = shard;
    const ModelWeights& w = *m->weights_;
    m->config_ = w.config;
    m->config_.n_head /= shard.n_ranks;
    m->config_.n_head_kv /= shard.n_ranks;
    m->config_.n_ff /= shard.n_ranks;
    const ModelConfig& c = m->config_;
    TCA_ASSIGN_OR_RETURN(m->token_embd_, m->place_matrix(w.token_embd));
    TCA_ASSIGN_OR_RETURN(m->output_, m->place_matrix(w.output));
    TCA_ASSIGN_OR_RETURN(m->output_norm_, to_f32(w.output_norm, space));
    for (const LayerWeights& lw : w.layers) {
        LayerViews lv;
        TCA_ASSIGN_OR_RETURN(lv.attn_norm, to_f32(lw.attn_norm, space));
        TCA_ASSIGN_OR_RETURN(lv.ffn_norm, to_f32(lw.ffn_norm, space));
        if (c.attn_bias) {
            TCA_ASSIGN_OR_RETURN(lv.bq, m->shard_bias(lw.bq, c.q_dim()));
            TCA_ASSIGN_OR_RETURN(lv.bk, m->shard_bias(lw.bk, c.kv_dim()));
            TCA_ASSIGN_OR_RETURN(lv.bv, m->shard_bias(lw.bv, c.kv_dim()));
        }
        for (const WeightView* mw : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) {
            TCA_RETURN_IF_ERROR(check_matrix(*mw));
        }
        TCA_ASSIGN_OR_RETURN(const WeightView wq, m->shard_rows(lw.wq, c.q_dim()));
        TCA_ASSIGN_OR_RETURN(const WeightView wk, m->shard_rows(lw.wk, c.kv_dim()));
        TCA_ASSIGN_OR_RETURN(const WeightView wv, m->shard_rows(lw.wv, c.kv_dim()));
        TCA_ASSIGN_OR_RETURN(const WeightView wo, m->shard_cols(lw.wo, c.q_dim()));
        TCA_ASSIGN_OR_RETURN(const WeightView w_gate, m->shard_rows(lw.w_gate, c.n_ff));
        TCA_ASSIGN_OR_RETURN(const WeightView w_up, m->shard_rows(lw.w_up, c.n_ff));
        TCA_ASSIGN_OR_RETURN(const WeightView w_down, m->shard_cols(lw.w_down, c.n_ff));
        TCA_ASSIGN_OR_RETURN(lv.wq, m->place_matrix(wq));
        TCA_ASSIGN_OR_RETURN(lv.wk, m->place_matrix(wk));
        TCA_ASSIGN_OR_RETURN(lv.wv, m->place_matrix(wv));
        TCA_ASSIGN_OR_RETURN(lv.wo, m->place_matrix(wo));
        TCA_ASSIGN_OR_RETURN(lv.w_gate, m->place_matrix(w_gate));
        TCA_ASSIGN_OR_RETURN(lv.w_up, m->place_matrix(w_up));
        TCA_ASSIGN_OR_RETURN(lv.w_down, m->place_matrix(w_down));
        m->layers_.push_back(std::move(lv));
    }
    if (!m->conversion_.empty()) m->conversion_ += " dequantized to bf16 on the host at load";
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
    TCA_ASSIGN_OR_RETURN(m->inv_freq_, f32_tensor(inv, space));
    return m;
}

Result<std::unique_ptr<RunState>> RunState::create(const ModelConfig& c, int64_t batch, bool all,
                                                   const MemorySpace& space) {
    std::unique_ptr<RunState> st(new (std::nothrow) RunState());
    if (!st) return out_of_memory("run state: cannot allocate");
    st->max_batch = batch;
    st->all_logits = all;
    try {
        st->ids = HostTensor(DType::kI32, {batch});
        st->pos = HostTensor(DType::kI32, {batch});
    } catch (const std::bad_alloc&) {
        return out_of_memory("run state: cannot allocate");
    }
    const std::pair<DeviceTensor*, std::vector<int64_t>> buffers[] = {
        {&st->x, {batch, c.n_embd}},   {&st->xn, {batch, c.n_embd}},  {&st->q, {batch, c.q_dim()}},
        {&st->k, {batch, c.kv_dim()}}, {&st->v, {batch, c.kv_dim()}}, {&st->att, {batch, c.q_dim()}},
        {&st->proj, {batch, c.n_embd}}, {&st->gate, {batch, c.n_ff}}, {&st->up, {batch, c.n_ff}},
        {&st->logits, {all ? batch : 1, c.n_vocab}}};
    for (const auto& [t, shape] : buffers) {
        TCA_ASSIGN_OR_RETURN(*t, DeviceTensor::create(space, DType::kF32, shape));
    }
    return st;
}

size_t RunState::nbytes() const {
    return ids.nbytes() + pos.nbytes() + x.nbytes() + xn.nbytes() + q.nbytes() + k.nbytes() +
           v.nbytes() + att.nbytes() + proj.nbytes() + gate.nbytes() + up.nbytes() + logits.nbytes();
}

Status forward(Device device, const Model& model, RunState& st, KvCache& cache,
               AttentionRunner& attention, std::span<const int32_t> ids, int64_t pos0,
               bool prompt_end, const LayerObserver* observer, Communicator* comm) {
    const ModelConfig& c = model.config();
    const auto n = static_cast<int64_t>(ids.size());
    TCA_ASSERT(n >= 1 && n <= st.max_batch, "batch of %lld tokens (max %lld)",
               static_cast<long long>(n), static_cast<long long>(st.max_batch));
    const int64_t hd = c.head_dim;
    const auto eps = static_cast<float>(c.rms_norm_eps);
    const MatmulActivations act = model.matmul_activations();
    TCA_ASSERT((comm ? comm->n_ranks() : 1) == model.shard().n_ranks, "communicator of %d ranks, shard of %d",
               comm ? comm->n_ranks() : 1, model.shard().n_ranks);
    // Tensor parallelism: sums a projection's partial results over the ranks.
    const auto reduce = [&](const TensorView& t) -> Status {
        if (!comm) return Status();
        return comm->all_reduce_sum(static_cast<float*>(t.data), t.shape[0] * t.shape[1]);
    };
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
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.wq, lw.bq.view(), rows_of(st.q, n), act, {}}));
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.wk, lw.bk.view(), rows_of(st.k, n), act, {}}));
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.wv, lw.bv.view(), rows_of(st.v, n), act, {}}));
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
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{rows_of(st.att, n), lw.wo, TensorView{}, proj, act, {}}));
        TCA_RETURN_IF_ERROR(reduce(proj));
        TCA_RETURN_IF_ERROR(ops::add(device, AddParams{x, proj, x}));
        // MLP block.
        TCA_RETURN_IF_ERROR(ops::rms_norm(device, RmsNormParams{x, lw.ffn_norm.view(), xn, eps}));
        const TensorView gate = rows_of(st.gate, n), up = rows_of(st.up, n);
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.w_gate, TensorView{}, gate, act, {}}));
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.w_up, TensorView{}, up, act, {}}));
        TCA_RETURN_IF_ERROR(ops::swiglu(device, SwigluParams{gate, up, gate}));
        TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{gate, lw.w_down, TensorView{}, proj, act, {}}));
        TCA_RETURN_IF_ERROR(reduce(proj));
        TCA_RETURN_IF_ERROR(ops::add(device, AddParams{x, proj, x}));
    }
    // Final norm and logits (every row, or only the last token's).
    const int64_t first = st.all_logits ? 0 : n - 1, rows = n - first;
    const TensorView x_out = slice(x, 0, first, rows), xn_out = slice(xn, 0, first, rows);
    TCA_RETURN_IF_ERROR(ops::rms_norm(device, RmsNormParams{x_out, model.output_norm().view(), xn_out, eps}));
    return ops::matmul(device, MatmulParams{xn_out, model.output(), TensorView{}, rows_of(st.logits, rows), act, {}});
}

}  // namespace tca
