// TCA prefill attention pipeline (tca_attention.h).
#include "backend/tca_attention.h"

#include <chrono>

#include "core/strings.h"

namespace tca {
namespace {

class StageClock {
public:
    explicit StageClock(double* sink) : sink_(sink), t0_(std::chrono::steady_clock::now()) {}
    ~StageClock() {
        if (sink_) {
            *sink_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_)
                          .count();
        }
    }
    StageClock(const StageClock&) = delete;
    StageClock& operator=(const StageClock&) = delete;

private:
    double* sink_;
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

size_t TcaPrefillWorkspace::nbytes() const {
    return scores.nbytes() + mass.nbytes() + hhi.nbytes() + block_score.nbytes() + psi.nbytes() +
           keep.nbytes() + selected.nbytes() + n_selected.nbytes() + k_global.nbytes() +
           v_global.nbytes() + global_pos.nbytes();
}

Status tca_prefill_attention(Device device, const TensorView& q, const TensorView& k,
                             const TensorView& v, const TensorView& out,
                             const std::vector<HeadConfig>& configs, TcaPrefillWorkspace& ws,
                             TcaStageTimings* timings) {
    const SparseOptions& opt = ws.opt;
    TCA_RETURN_IF_ERROR(validate(opt));
    if (k.ndim != 3 || q.ndim != 3) {
        return invalid_argument("tca prefill: q and k must be 3-d, got %s and %s",
                                q.shape_string().c_str(), k.shape_string().c_str());
    }
    const int64_t hkv = k.shape[0], n_tokens = k.shape[1];
    if (q.shape[1] != n_tokens) {
        return invalid_argument("tca prefill: q has %lld tokens but k has %lld",
                                static_cast<long long>(q.shape[1]), static_cast<long long>(n_tokens));
    }
    if (static_cast<int64_t>(configs.size()) != hkv) {
        return invalid_argument("tca prefill: expected one head configuration per KV head (%lld), "
                                "got %zu", static_cast<long long>(hkv), configs.size());
    }
    if (hkv != ws.scores.view().shape[0] || n_tokens > ws.scores.view().shape[1]) {
        return invalid_argument("tca prefill: %lld KV heads x %lld tokens exceed the workspace "
                                "(%lld x %lld)", static_cast<long long>(hkv),
                                static_cast<long long>(n_tokens),
                                static_cast<long long>(ws.scores.view().shape[0]),
                                static_cast<long long>(ws.scores.view().shape[1]));
    }
    TcaStageTimings local;
    TcaStageTimings& t = timings ? *timings : local;
    const int64_t b = opt.block_size;
    const int64_t n = n_candidate_blocks(n_tokens, opt.local_window, b);
    if (n == 0) {  // The whole prompt is local band: exactly dense (tca-method M3).
        StageClock clock(&t.attend_ms);
        AttentionDenseParams dp{q, k, v, out, 0, 0.0f};
        return ops::attention_dense(device, dp);
    }
    // M2: importance from the last obs_window queries.
    const int64_t n_obs = std::min<int64_t>(opt.obs_window, n_tokens);
    const TensorView scores = slice(ws.scores.view(), 1, 0, n_tokens);
    {
        StageClock clock(&t.importance_ms);
        TokenImportanceParams ip{slice(q, 1, n_tokens - n_obs, n_obs), k, scores, -1, 0.0f};
        TCA_RETURN_IF_ERROR(ops::token_importance(device, ip));
    }
    // M3: block mass, HHI and scores over the n candidate blocks.
    const TensorView block_score = slice(ws.block_score.view(), 1, 0, n);
    {
        StageClock clock(&t.block_score_ms);
        BlockScoreParams bp{scores, slice(ws.mass.view(), 1, 0, n), slice(ws.hhi.view(), 1, 0, n),
                            block_score, opt.block_size, static_cast<float>(opt.alpha),
                            opt.mass_norm};
        TCA_RETURN_IF_ERROR(ops::block_score(device, bp));
    }
    // M4: Psi per KV head (host policy), then per-block budgets by rank.
    const TensorView keep = slice(ws.keep.view(), 1, 0, n);
    {
        StageClock clock(&t.budget_ms);
        const TensorView psi = slice(ws.psi.view(), 1, 0, n);
        for (int64_t h = 0; h < hkv; ++h) {
            TCA_ASSIGN_OR_RETURN(std::vector<int32_t> list,
                                 make_psi(configs[static_cast<size_t>(h)].p, n, opt.block_size));
            int32_t* row = psi.ptr<int32_t>() + h * psi.stride[0];
            for (int64_t j = 0; j < n; ++j) row[j] = list[static_cast<size_t>(j)];
        }
        BlockBudgetParams bb{block_score, psi, keep, opt.block_size};
        TCA_RETURN_IF_ERROR(ops::block_budget(device, bb));
    }
    // M5: per-block top-t selection.
    const TensorView selected = slice(ws.selected.view(), 1, 0, n * b);
    {
        StageClock clock(&t.select_ms);
        TokenSelectParams sp{scores, keep, selected, ws.n_selected.view(), opt.block_size};
        TCA_RETURN_IF_ERROR(ops::token_select(device, sp));
    }
    // Gather the selection into a compact global list (the global part of the cache, M7).
    const TensorView k_global = slice(ws.k_global.view(), 1, 0, n * b);
    const TensorView v_global = slice(ws.v_global.view(), 1, 0, n * b);
    const TensorView global_pos = slice(ws.global_pos.view(), 1, 0, n * b);
    {
        StageClock clock(&t.gather_ms);
        KvGatherParams gp{k, v, selected, ws.n_selected.view(), k_global, v_global, global_pos};
        TCA_RETURN_IF_ERROR(ops::kv_gather(device, gp));
    }
    // M6: one softmax over the visible selection and the causal band.
    StageClock clock(&t.attend_ms);
    SparsePrefillParams pp{q, k, v, k_global, v_global, global_pos, ws.n_selected.view(), out, 0, n,
                           opt.block_size, opt.local_window, 0.0f};
    return ops::sparse_prefill(device, pp);
}

}  // namespace tca
