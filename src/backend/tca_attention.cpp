// TCA prefill attention pipeline (tca_attention.h).
#include "backend/tca_attention.h"

#include <chrono>
#include <new>

#include "backend/device_memory.h"
#include "core/strings.h"

namespace tca {
namespace {

// Host-clock time of one stage. GPU ops are asynchronous: on a device the clock waits for the
// queued work at both ends, so each stage is charged its own time (a few microseconds of idle
// GPU per stage) rather than whatever a later copy happened to wait for. Without a sink (the
// caller asked for no timings) it does nothing: no synchronisation.
class StageClock {
public:
    StageClock(double* sink, Device device) : sink_(sink), device_(device) {
        if (sink_ && device_ != Device::kCpu) (void)synchronize(device_);
        t0_ = std::chrono::steady_clock::now();
    }
    ~StageClock() {
        if (sink_ && device_ != Device::kCpu) (void)synchronize(device_);
        if (sink_) {
            *sink_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_)
                          .count();
        }
    }
    StageClock(const StageClock&) = delete;
    StageClock& operator=(const StageClock&) = delete;

private:
    double* sink_;
    Device device_;
    std::chrono::steady_clock::time_point t0_;
};

}  // namespace

TcaPrefillWorkspace::TcaPrefillWorkspace(int64_t n_kv_heads, int64_t max_tokens, int64_t head_dim,
                                         DType kv_dtype, const SparseOptions& options)
    : opt(options),
      max_blocks(n_candidate_blocks(max_tokens, options.local_window, options.block_size)),
      scores(DType::kF32, {n_kv_heads, max_tokens}),
      mass(DType::kF32, {n_kv_heads, max_blocks}),
      hhi(DType::kF32, {n_kv_heads, max_blocks}),
      block_score(DType::kF32, {n_kv_heads, max_blocks}),
      psi(DType::kI32, {n_kv_heads, max_blocks}),
      keep(DType::kI32, {n_kv_heads, max_blocks}),
      selected(DType::kI32, {n_kv_heads, max_blocks * options.block_size}),
      n_selected(DType::kI32, {n_kv_heads}),
      k_global(kv_dtype, {n_kv_heads, max_blocks * options.block_size, head_dim}),
      v_global(kv_dtype, {n_kv_heads, max_blocks * options.block_size, head_dim}),
      global_pos(DType::kI32, {n_kv_heads, max_blocks * options.block_size}) {}

Result<std::unique_ptr<TcaPrefillWorkspace>> TcaPrefillWorkspace::create(
    const MemorySpace& space, int64_t n_kv_heads, int64_t max_tokens, int64_t head_dim,
    DType kv_dtype, const SparseOptions& options) {
    if (space.is_host()) {
        try {
            return std::make_unique<TcaPrefillWorkspace>(n_kv_heads, max_tokens, head_dim, kv_dtype, options);
        } catch (const std::bad_alloc&) {
            return out_of_memory("tca prefill workspace for %lld tokens does not fit in memory",
                                 static_cast<long long>(max_tokens));
        }
    }
    std::unique_ptr<TcaPrefillWorkspace> ws(new (std::nothrow) TcaPrefillWorkspace());
    if (!ws) return out_of_memory("tca prefill workspace: cannot allocate");
    ws->opt = options;
    const int64_t mb = n_candidate_blocks(max_tokens, options.local_window, options.block_size);
    const int64_t cap = mb * options.block_size;
    ws->max_blocks = mb;
    TCA_ASSIGN_OR_RETURN(ws->scores, DeviceTensor::create(space, DType::kF32, {n_kv_heads, max_tokens}));
    TCA_ASSIGN_OR_RETURN(ws->mass, DeviceTensor::create(space, DType::kF32, {n_kv_heads, mb}));
    TCA_ASSIGN_OR_RETURN(ws->hhi, DeviceTensor::create(space, DType::kF32, {n_kv_heads, mb}));
    TCA_ASSIGN_OR_RETURN(ws->block_score, DeviceTensor::create(space, DType::kF32, {n_kv_heads, mb}));
    TCA_ASSIGN_OR_RETURN(ws->psi, DeviceTensor::create(space, DType::kI32, {n_kv_heads, mb}));
    TCA_ASSIGN_OR_RETURN(ws->keep, DeviceTensor::create(space, DType::kI32, {n_kv_heads, mb}));
    TCA_ASSIGN_OR_RETURN(ws->selected, DeviceTensor::create(space, DType::kI32, {n_kv_heads, cap}));
    TCA_ASSIGN_OR_RETURN(ws->n_selected, DeviceTensor::create(space, DType::kI32, {n_kv_heads}));
    TCA_ASSIGN_OR_RETURN(ws->k_global, DeviceTensor::create(space, kv_dtype, {n_kv_heads, cap, head_dim}));
    TCA_ASSIGN_OR_RETURN(ws->v_global, DeviceTensor::create(space, kv_dtype, {n_kv_heads, cap, head_dim}));
    TCA_ASSIGN_OR_RETURN(ws->global_pos, DeviceTensor::create(space, DType::kI32, {n_kv_heads, cap}));
    try {
        ws->psi_host = HostTensor(DType::kI32, {n_kv_heads, mb});
    } catch (const std::bad_alloc&) {
        return out_of_memory("tca prefill workspace: cannot allocate the host Psi buffer");
    }
    return ws;
}

size_t TcaPrefillWorkspace::nbytes() const {
    return scores.nbytes() + mass.nbytes() + hhi.nbytes() + block_score.nbytes() + psi.nbytes() +
           keep.nbytes() + selected.nbytes() + n_selected.nbytes() + k_global.nbytes() +
           v_global.nbytes() + global_pos.nbytes();
}

namespace {

// The stage field of *t, or null (untimed) when t is null.
double* sink(TcaStageTimings* t, double TcaStageTimings::*field) { return t ? &(t->*field) : nullptr; }

// Shared input checks of tca_select and tca_prefill_attention (`what` names the caller).
Status check_inputs(const char* what, const TensorView& q, const TensorView& k,
                    const std::vector<HeadConfig>& configs, const TcaPrefillWorkspace& ws) {
    TCA_RETURN_IF_ERROR(validate(ws.opt));
    if (k.ndim != 3 || q.ndim != 3) {
        return invalid_argument("%s: q and k must be 3-d, got %s and %s", what, q.shape_string().c_str(),
                                k.shape_string().c_str());
    }
    const int64_t hkv = k.shape[0], n_tokens = k.shape[1];
    if (q.shape[1] != n_tokens) {
        return invalid_argument("%s: q has %lld tokens but k has %lld", what,
                                static_cast<long long>(q.shape[1]), static_cast<long long>(n_tokens));
    }
    if (static_cast<int64_t>(configs.size()) != hkv) {
        return invalid_argument("%s: expected one head configuration per KV head (%lld), got %zu", what,
                                static_cast<long long>(hkv), configs.size());
    }
    if (hkv != ws.scores.view().shape[0] || n_tokens > ws.scores.view().shape[1]) {
        return invalid_argument("%s: %lld KV heads x %lld tokens exceed the workspace (%lld x %lld)", what,
                                static_cast<long long>(hkv), static_cast<long long>(n_tokens),
                                static_cast<long long>(ws.scores.view().shape[0]),
                                static_cast<long long>(ws.scores.view().shape[1]));
    }
    return Status();
}

// M2-M5 over the n >= 1 candidate blocks, inputs already checked.
Status select_stages(Device device, const TensorView& q, const TensorView& k,
                     const std::vector<HeadConfig>& configs, TcaPrefillWorkspace& ws, int64_t n,
                     TcaStageTimings* t) {
    const SparseOptions& opt = ws.opt;
    const int64_t hkv = k.shape[0], n_tokens = k.shape[1];
    // M2: importance from the last obs_window queries.
    const int64_t n_obs = std::min<int64_t>(opt.obs_window, n_tokens);
    const TensorView scores = slice(ws.scores.view(), 1, 0, n_tokens);
    {
        StageClock clock(sink(t, &TcaStageTimings::importance_ms), device);
        TokenImportanceParams ip{slice(q, 1, n_tokens - n_obs, n_obs), k, scores, -1, 0.0f};
        TCA_RETURN_IF_ERROR(ops::token_importance(device, ip));
    }
    // M3: block mass, HHI and scores over the n candidate blocks.
    const TensorView block_score = slice(ws.block_score.view(), 1, 0, n);
    {
        StageClock clock(sink(t, &TcaStageTimings::block_score_ms), device);
        BlockScoreParams bp{scores, slice(ws.mass.view(), 1, 0, n), slice(ws.hhi.view(), 1, 0, n),
                            block_score, opt.block_size, static_cast<float>(opt.alpha),
                            opt.mass_norm};
        TCA_RETURN_IF_ERROR(ops::block_score(device, bp));
    }
    // M4: Psi per KV head (host policy), then per-block budgets by rank.
    const TensorView keep = slice(ws.keep.view(), 1, 0, n);
    {
        StageClock clock(sink(t, &TcaStageTimings::budget_ms), device);
        const TensorView psi = slice(ws.psi.view(), 1, 0, n);
        // Built on the host: in the workspace itself, or in psi_host and uploaded (device).
        const bool host = ws.psi.on_host();
        int32_t* psi_rows = host ? ws.psi.data<int32_t>() : ws.psi_host.data<int32_t>();
        for (int64_t h = 0; h < hkv; ++h) {
            TCA_ASSIGN_OR_RETURN(std::vector<int32_t> list,
                                 make_psi(configs[static_cast<size_t>(h)].p, n, opt.block_size));
            int32_t* row = psi_rows + h * psi.stride[0];
            for (int64_t j = 0; j < n; ++j) row[j] = list[static_cast<size_t>(j)];
        }
        if (!host) TCA_RETURN_IF_ERROR(ws.psi.upload(psi_rows, static_cast<size_t>(hkv * psi.stride[0]) * sizeof(int32_t)));
        BlockBudgetParams bb{block_score, psi, keep, opt.block_size};
        TCA_RETURN_IF_ERROR(ops::block_budget(device, bb));
    }
    // M5: per-block top-t selection (or the global top sum_j t_j, Selection::kGlobal).
    StageClock clock(sink(t, &TcaStageTimings::select_ms), device);
    TokenSelectParams sp{scores, keep, slice(ws.selected.view(), 1, 0, n * opt.block_size), ws.n_selected.view(),
                         opt.block_size, opt.pool, opt.selection == Selection::kGlobal};
    return ops::token_select(device, sp);
}

}  // namespace

Status tca_select(Device device, const TensorView& q, const TensorView& k,
                  const std::vector<HeadConfig>& configs, TcaPrefillWorkspace& ws,
                  TcaStageTimings* timings) {
    TCA_RETURN_IF_ERROR(check_inputs("tca selection", q, k, configs, ws));
    const SparseOptions& opt = ws.opt;
    const int64_t n = n_candidate_blocks(k.shape[1], opt.local_window, opt.block_size);
    if (n == 0) {
        return invalid_argument("tca selection: %lld tokens leave no candidate block (local window %lld, "
                                "block %lld)", static_cast<long long>(k.shape[1]),
                                static_cast<long long>(opt.local_window), static_cast<long long>(opt.block_size));
    }
    return select_stages(device, q, k, configs, ws, n, timings);
}

Status tca_prefill_attention(Device device, const TensorView& q, const TensorView& k,
                             const TensorView& v, const TensorView& out,
                             const std::vector<HeadConfig>& configs, TcaPrefillWorkspace& ws,
                             TcaStageTimings* timings) {
    TCA_RETURN_IF_ERROR(check_inputs("tca prefill", q, k, configs, ws));
    const SparseOptions& opt = ws.opt;
    const int64_t b = opt.block_size;
    const int64_t n = n_candidate_blocks(k.shape[1], opt.local_window, b);
    if (n == 0) {  // The whole prompt is local band: exactly dense (tca-method M3).
        StageClock clock(sink(timings, &TcaStageTimings::attend_ms), device);
        AttentionDenseParams dp{q, k, v, out, 0, 0.0f};
        return ops::attention_dense(device, dp);
    }
    TCA_RETURN_IF_ERROR(select_stages(device, q, k, configs, ws, n, timings));
    const TensorView selected = slice(ws.selected.view(), 1, 0, n * b);
    // Gather the selection into a compact global list (the global part of the cache, M7).
    const TensorView k_global = slice(ws.k_global.view(), 1, 0, n * b);
    const TensorView v_global = slice(ws.v_global.view(), 1, 0, n * b);
    const TensorView global_pos = slice(ws.global_pos.view(), 1, 0, n * b);
    {
        StageClock clock(sink(timings, &TcaStageTimings::gather_ms), device);
        KvGatherParams gp{k, v, selected, ws.n_selected.view(), k_global, v_global, global_pos};
        TCA_RETURN_IF_ERROR(ops::kv_gather(device, gp));
    }
    // M6: one softmax over the visible selection and the causal band.
    StageClock clock(sink(timings, &TcaStageTimings::attend_ms), device);
    SparsePrefillParams pp{q, k, v, k_global, v_global, global_pos, ws.n_selected.view(), out, 0, n,
                           opt.block_size, opt.local_window, 0.0f};
    return ops::sparse_prefill(device, pp);
}

}  // namespace tca
