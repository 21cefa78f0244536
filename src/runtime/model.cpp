// Model preparation and the forward pass (model.h): per layer RMSNorm -> q/k/v projections
// (+bias) -> RoPE -> attention under the engine's policy (KV append, attend, compact) ->
// output projection + residual -> RMSNorm -> SwiGLU MLP + residual; then the final norm and
// the output projection. Every step is a backend op (src/backend/ops.h), so the same code runs
// on every device. One-token steps add the residual in the projections (MatmulParams::residual,
// in place) except under tensor parallelism, and on device models run the fused q/k/v and
// gate/up matrices (LayerViews::w_qkv, w_gate_up) with the RMSNorms and SwiGLU computed inside
// the matmuls that read them (MatmulInput).
#include "runtime/model.h"

#include <cstdlib>
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

// The type a matrix of type t has on a device (quantized types are dequantized to BF16).
GgmlType device_type(GgmlType t) { return device_native(t) ? t : GgmlType::kBF16; }

// `bytes` of device memory for matrix `name`; the error names it and the size.
Result<DeviceTensor> allocate_matrix(const MemorySpace& space, const std::string& name, uint64_t bytes) {
    Result<DeviceTensor> t = DeviceTensor::create(space, DType::kU8, {static_cast<int64_t>(bytes)});
    if (!t.ok()) {
        return Status(t.status().code(), strformat("tensor %s (%s): %s", name.c_str(),
                                                   format_bytes(bytes).c_str(), t.status().message().c_str()));
    }
    return std::move(t.value());
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
TensorView rows_of(const DeviceTensor& t, int64_t rows) { return slice(t.view(), 0, 0, rows); }

// Columns [col0, col0 + heads * d) of the rows [n, *] viewed as [n, heads, d].
TensorView token_heads(const TensorView& rows, int64_t col0, int64_t heads, int64_t d) {
    TensorView v = slice(rows, 1, col0, heads * d);
    v.ndim = 3;
    v.shape = {rows.shape[0], heads, d, 0};
    v.stride = {rows.stride[0], d, 1, 0};
    return v;
}

// The same columns viewed head-major as [heads, n, d] (strided, no copy).
TensorView head_tokens(const TensorView& rows, int64_t col0, int64_t heads, int64_t d) {
    TensorView v = slice(rows, 1, col0, heads * d);
    v.ndim = 3;
    v.shape = {heads, rows.shape[0], d, 0};
    v.stride = {d, rows.stride[0], 1, 0};
    return v;
}

// [n, heads * d] buffers (the first n rows) in the two layouts above.
TensorView as_token_heads(const DeviceTensor& t, int64_t n, int64_t heads, int64_t d) {
    return token_heads(rows_of(t, n), 0, heads, d);
}
TensorView as_head_tokens(const DeviceTensor& t, int64_t n, int64_t heads, int64_t d) {
    return head_tokens(rows_of(t, n), 0, heads, d);
}

}  // namespace

Status Model::upload_rows(const WeightView& w, GgmlType type, DeviceTensor& dev, uint64_t offset) {
    const MatrixView host = matrix(w);
    TCA_ASSIGN_OR_RETURN(const uint64_t row_bytes, ggml_row_bytes(type, host.n_cols));
    if (type == w.type) return dev.upload(w.data, row_bytes * static_cast<uint64_t>(host.n_rows), offset);
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
                                       offset + static_cast<size_t>(r0) * row_bytes));
    }
    return Status();
}

Result<MatrixView> Model::place_matrix(const WeightView& w) {
    TCA_RETURN_IF_ERROR(check_matrix(w));
    const MatrixView host = matrix(w);
    if (space_->is_host()) return host;
    for (const Placed& p : placed_) {  // tied embeddings: one upload for both uses
        if (p.source == w.data) return p.view;
    }
    MatrixView view;
    TCA_RETURN_IF_ERROR(upload_group({&w}, {&view}, w.name).status());
    return view;
}

Result<MatrixView> Model::upload_group(std::initializer_list<const WeightView*> parts,
                                       std::initializer_list<MatrixView*> views, const std::string& name) {
    const WeightView& first = **parts.begin();
    const GgmlType type = device_type(first.type);
    const int64_t cols = first.shape[1];
    TCA_ASSIGN_OR_RETURN(const uint64_t row_bytes, ggml_row_bytes(type, cols));
    int64_t rows = 0;
    for (const WeightView* w : parts) rows += w->shape[0];
    const uint64_t bytes = row_bytes * static_cast<uint64_t>(rows);
    TCA_ASSIGN_OR_RETURN(DeviceTensor dev, allocate_matrix(*space_, name, bytes));
    auto v = views.begin();
    uint64_t offset = 0;
    for (const WeightView* w : parts) {
        TCA_RETURN_IF_ERROR(upload_rows(*w, type, dev, offset));
        **v = MatrixView{static_cast<uint8_t*>(dev.view().data) + offset, type, w->shape[0], cols};
        placed_.push_back(Placed{w->data, **v});
        offset += row_bytes * static_cast<uint64_t>(w->shape[0]);
        ++v;
    }
    const MatrixView all{dev.view().data, type, rows, cols};
    uploaded_bytes_ += bytes;
    uploaded_.push_back(std::move(dev));
    return all;
}

Result<MatrixView> Model::place_fused(std::initializer_list<const WeightView*> parts,
                                      std::initializer_list<MatrixView*> views) {
    TCA_ASSERT(parts.size() == views.size() && parts.size() > 0, "place_fused: %zu parts, %zu views",
               parts.size(), views.size());
    const WeightView& first = **parts.begin();
    bool fuse = !space_->is_host();
    for (const WeightView* w : parts) {
        TCA_RETURN_IF_ERROR(check_matrix(*w));
        fuse = fuse && device_type(w->type) == device_type(first.type) && w->shape[1] == first.shape[1];
        for (const Placed& p : placed_) fuse = fuse && p.source != w->data;
    }
    if (fuse) return upload_group(parts, views, first.name + " (fused)");
    auto v = views.begin();
    for (const WeightView* w : parts) {
        TCA_ASSIGN_OR_RETURN(**v, place_matrix(*w));
        ++v;
    }
    return MatrixView{};
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

Result<std::vector<float>> Model::shard_bias(const WeightView& w, int64_t per_rank) {
    TCA_ASSIGN_OR_RETURN(HostTensor all, to_f32(w));
    if (all.numel() != per_rank * shard_.n_ranks) {
        return data_loss("tensor %s: expected %lld values, got %lld", w.name.c_str(),
                         static_cast<long long>(per_rank * shard_.n_ranks), static_cast<long long>(all.numel()));
    }
    const float* p = all.data<float>() + per_rank * shard_.rank;
    return std::vector<float>(p, p + per_rank);
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
    const char* fused_env = std::getenv("TCA_CUDA_FUSED");  // "0": A/B runs without the fusion
    m->fused_decode_ = !(fused_env && std::string(fused_env) == "0");
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
            // One f32 buffer: the fused q/k/v matmul's bias, and bq, bk, bv as its ranges.
            TCA_ASSIGN_OR_RETURN(std::vector<float> b, m->shard_bias(lw.bq, c.q_dim()));
            TCA_ASSIGN_OR_RETURN(const std::vector<float> bk, m->shard_bias(lw.bk, c.kv_dim()));
            TCA_ASSIGN_OR_RETURN(const std::vector<float> bv, m->shard_bias(lw.bv, c.kv_dim()));
            b.insert(b.end(), bk.begin(), bk.end());
            b.insert(b.end(), bv.begin(), bv.end());
            TCA_ASSIGN_OR_RETURN(lv.b_qkv, f32_tensor(b, space));
            lv.bq = slice(lv.b_qkv.view(), 0, 0, c.q_dim());
            lv.bk = slice(lv.b_qkv.view(), 0, c.q_dim(), c.kv_dim());
            lv.bv = slice(lv.b_qkv.view(), 0, c.q_dim() + c.kv_dim(), c.kv_dim());
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
        // Tensor parallelism fuses each rank's own row ranges (its heads and its MLP slice).
        TCA_ASSIGN_OR_RETURN(lv.w_qkv, m->place_fused({&wq, &wk, &wv}, {&lv.wq, &lv.wk, &lv.wv}));
        TCA_ASSIGN_OR_RETURN(lv.wo, m->place_matrix(wo));
        TCA_ASSIGN_OR_RETURN(lv.w_gate_up, m->place_fused({&w_gate, &w_up}, {&lv.w_gate, &lv.w_up}));
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
    if (!space.is_host()) {
        TCA_ASSIGN_OR_RETURN(st->qkv, DeviceTensor::create(space, DType::kF32, {1, c.q_dim() + 2 * c.kv_dim()}));
        TCA_ASSIGN_OR_RETURN(st->gate_up, DeviceTensor::create(space, DType::kF32, {1, 2 * c.n_ff}));
    }
    return st;
}

size_t RunState::nbytes() const {
    return ids.nbytes() + pos.nbytes() + x.nbytes() + xn.nbytes() + q.nbytes() + k.nbytes() +
           v.nbytes() + att.nbytes() + proj.nbytes() + gate.nbytes() + up.nbytes() + qkv.nbytes() +
           gate_up.nbytes() + logits.nbytes();
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
    // x += in * w^T: for one token, one matmul with the residual in place (one launch fewer per
    // projection); for a prompt (launches don't matter, and an in-place residual would need a
    // prompt-sized scratch on the GPU) or under tensor parallelism, the product into proj
    // (all-reduced over the ranks), then added.
    // mp: the input (x and MatmulInput) and the weights; y, residual and act are set here.
    const auto project_add = [&](MatmulParams mp) -> Status {
        mp.act = act;
        if (!comm && n == 1) {
            mp.y = x;
            mp.residual = x;
            return ops::matmul(device, mp);
        }
        mp.y = proj;
        TCA_RETURN_IF_ERROR(ops::matmul(device, mp));
        TCA_RETURN_IF_ERROR(reduce(proj));
        return ops::add(device, AddParams{x, proj, x});
    };

    // One-token steps of a fused model: one matmul for q/k/v, one RoPE over q and k (adjacent
    // in the qkv row), one for gate/up; each output row is the same GEMV row as unfused. The
    // RMSNorms and SwiGLU are inputs of the matmuls that read them (MatmulInput): the same
    // values; the staged GEMV kernel (TCA_CUDA_GEMV=2) computes them itself, one launch fewer
    // each.
    const bool fused = n == 1 && model.fused_decode() && !st.qkv.view().empty();
    const int64_t qd = c.q_dim(), kvd = c.kv_dim();
    // rms_norm(x) as the input of a matmul: computed in the matmul when fused, else into xn.
    const auto normed = [&](const TensorView& norm_w, MatmulParams mp) -> Result<MatmulParams> {
        if (fused) {
            mp.x = x;
            mp.input = MatmulInput::kRmsNorm;
            mp.norm_weight = norm_w;
            mp.norm_eps = eps;
            return mp;
        }
        TCA_RETURN_IF_ERROR(ops::rms_norm(device, RmsNormParams{x, norm_w, xn, eps}));
        mp.x = xn;
        return mp;
    };
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const LayerViews& lw = model.layer(l);
        KvLayer& kv = cache.layer(l);
        // Attention block.
        TensorView q_heads, k3, v3;  // [n_head, n, hd], [n, n_head_kv, hd] x 2
        if (fused && lw.w_qkv.data != nullptr) {
            const TensorView qkv = rows_of(st.qkv, 1);  // [1, q_dim + 2 kv_dim]
            TCA_ASSIGN_OR_RETURN(const MatmulParams mp, normed(lw.attn_norm.view(), MatmulParams{{}, lw.w_qkv, lw.b_qkv.view(), qkv, act, {}}));
            TCA_RETURN_IF_ERROR(ops::matmul(device, mp));
            const TensorView qk3 = token_heads(qkv, 0, c.n_head + c.n_head_kv, hd);
            TCA_RETURN_IF_ERROR(ops::rope(device, RopeParams{qk3, pos_v, model.inv_freq().view(), c.rope_style}));
            q_heads = head_tokens(qkv, 0, c.n_head, hd);
            k3 = token_heads(qkv, qd, c.n_head_kv, hd);
            v3 = token_heads(qkv, qd + kvd, c.n_head_kv, hd);
        } else {
            TCA_RETURN_IF_ERROR(ops::rms_norm(device, RmsNormParams{x, lw.attn_norm.view(), xn, eps}));
            TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.wq, lw.bq, rows_of(st.q, n), act, {}}));
            TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.wk, lw.bk, rows_of(st.k, n), act, {}}));
            TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.wv, lw.bv, rows_of(st.v, n), act, {}}));
            const TensorView q3 = as_token_heads(st.q, n, c.n_head, hd);
            k3 = as_token_heads(st.k, n, c.n_head_kv, hd);
            TCA_RETURN_IF_ERROR(ops::rope(device, RopeParams{q3, pos_v, model.inv_freq().view(), c.rope_style}));
            TCA_RETURN_IF_ERROR(ops::rope(device, RopeParams{k3, pos_v, model.inv_freq().view(), c.rope_style}));
            q_heads = as_head_tokens(st.q, n, c.n_head, hd);
            v3 = as_token_heads(st.v, n, c.n_head_kv, hd);
        }
        const TensorView att_heads = as_head_tokens(st.att, n, c.n_head, hd);
        TCA_RETURN_IF_ERROR(attention.run(device, l, q_heads, k3, v3, kv, pos0, prompt_end, att_heads));
        if (observer && *observer) TCA_RETURN_IF_ERROR((*observer)(l, q_heads, kv, pos0, att_heads));
        // Output projection and residual: added by the matmul (x updated in place), or after
        // the all-reduce of the ranks' partial sums under tensor parallelism.
        TCA_RETURN_IF_ERROR(project_add(MatmulParams{rows_of(st.att, n), lw.wo}));
        // MLP block.
        if (fused && lw.w_gate_up.data != nullptr) {
            const TensorView gu = rows_of(st.gate_up, 1);  // [1, 2 n_ff]
            TCA_ASSIGN_OR_RETURN(const MatmulParams mp, normed(lw.ffn_norm.view(), MatmulParams{{}, lw.w_gate_up, TensorView{}, gu, act, {}}));
            TCA_RETURN_IF_ERROR(ops::matmul(device, mp));
            MatmulParams down{slice(gu, 1, 0, c.n_ff), lw.w_down};  // down(swiglu(gate, up))
            down.input = MatmulInput::kSwiglu;
            down.up = slice(gu, 1, c.n_ff, c.n_ff);
            TCA_RETURN_IF_ERROR(project_add(down));
        } else {
            TCA_RETURN_IF_ERROR(ops::rms_norm(device, RmsNormParams{x, lw.ffn_norm.view(), xn, eps}));
            const TensorView gate = rows_of(st.gate, n), up = rows_of(st.up, n);
            TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.w_gate, TensorView{}, gate, act, {}}));
            TCA_RETURN_IF_ERROR(ops::matmul(device, MatmulParams{xn, lw.w_up, TensorView{}, up, act, {}}));
            TCA_RETURN_IF_ERROR(ops::swiglu(device, SwigluParams{gate, up, gate}));
            TCA_RETURN_IF_ERROR(project_add(MatmulParams{gate, lw.w_down}));
        }
    }
    // Final norm and logits (every row, or only the last token's).
    const int64_t first = st.all_logits ? 0 : n - 1, rows = n - first;
    const TensorView x_out = slice(x, 0, first, rows), xn_out = slice(xn, 0, first, rows);
    MatmulParams out{x_out, model.output(), TensorView{}, rows_of(st.logits, rows), act, {}};
    if (fused) {
        out.input = MatmulInput::kRmsNorm;
        out.norm_weight = model.output_norm().view();
        out.norm_eps = eps;
    } else {
        TCA_RETURN_IF_ERROR(ops::rms_norm(device, RmsNormParams{x_out, model.output_norm().view(), xn_out, eps}));
        out.x = xn_out;
    }
    return ops::matmul(device, out);
}

}  // namespace tca
