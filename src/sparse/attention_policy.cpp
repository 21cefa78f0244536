// Attention policy names and validation (attention_policy.h).
#include "sparse/attention_policy.h"

#include <algorithm>

namespace tca {

const char* attention_kind_name(AttentionKind k) {
    switch (k) {
        case AttentionKind::kDense: return "dense";
        case AttentionKind::kTca: return "tca";
        case AttentionKind::kStreaming: return "streaming";
        case AttentionKind::kSnapKv: return "snapkv";
        case AttentionKind::kOracle: return "oracle";
    }
    return "?";
}

Result<AttentionKind> parse_attention_kind(const std::string& name) {
    for (AttentionKind k : {AttentionKind::kDense, AttentionKind::kTca, AttentionKind::kStreaming,
                            AttentionKind::kSnapKv, AttentionKind::kOracle}) {
        if (name == attention_kind_name(k)) return k;
    }
    return usage_error("--attention must be dense, tca, streaming, snapkv or oracle, got '%s'",
                       name.c_str());
}

void expand_uniform(AttentionPolicy& policy, int64_t n_layers, int64_t n_kv_heads) {
    if (!policy.uniform) return;
    policy.budgets = uniform_budgets(policy.budgets.options, n_layers, n_kv_heads, *policy.uniform);
}

double sparse_prefill_gain(int64_t n_tokens, const SparseOptions& opt, double keep) {
    const int64_t b = opt.block_size, w = opt.local_window;
    const int64_t n = n_candidate_blocks(n_tokens, w, b);
    if (n == 0) return 1.0;
    double dense = 0.0, sparse = 0.0;
    // Per block of b queries (the visible-block count v(i) is constant within most of one).
    for (int64_t i0 = 0; i0 < n_tokens; i0 += b) {
        const int64_t i1 = std::min(n_tokens, i0 + b);
        for (int64_t i = i0; i < i1; i += std::max<int64_t>(1, (i1 - i0) / 4)) {
            const double step = static_cast<double>(std::min<int64_t>(std::max<int64_t>(1, (i1 - i0) / 4), i1 - i));
            const int64_t v = visible_blocks(i, w, b, n);
            const double band = static_cast<double>(i + 1 - v * b);
            dense += step * static_cast<double>(i + 1);
            sparse += step * (band + keep * static_cast<double>(v * b));
        }
    }
    return sparse > 0.0 ? dense / sparse : 1.0;
}

Status validate(const AttentionPolicy& p, int64_t n_layers, int64_t n_kv_heads) {
    if (!(p.min_prefill_gain >= 0.0 && p.min_prefill_gain <= 1e6)) {
        return invalid_argument("min_prefill_gain must be in [0, 1e6], got %g", p.min_prefill_gain);
    }
    switch (p.kind) {
        case AttentionKind::kDense:
            return Status();
        case AttentionKind::kTca: {
            TCA_RETURN_IF_ERROR(validate(p.budgets.options));
            if (p.budgets.n_layers() != n_layers) {
                return invalid_argument("budgets cover %lld layers but the model has %lld",
                                        static_cast<long long>(p.budgets.n_layers()),
                                        static_cast<long long>(n_layers));
            }
            for (int64_t l = 0; l < n_layers; ++l) {
                const auto& row = p.budgets.heads[static_cast<size_t>(l)];
                if (static_cast<int64_t>(row.size()) != n_kv_heads) {
                    return invalid_argument("budgets of layer %lld cover %zu KV heads but the model "
                                            "has %lld", static_cast<long long>(l), row.size(),
                                            static_cast<long long>(n_kv_heads));
                }
                for (const HeadConfig& c : row) {
                    TCA_RETURN_IF_ERROR(validate_config(c.p, p.budgets.options.block_size));
                }
            }
            return Status();
        }
        case AttentionKind::kStreaming:
            if (p.n_sink < 0 || p.n_sink >= p.kv_budget) {
                return invalid_argument("--n-sink must be in [0, kv-budget %lld), got %lld",
                                        static_cast<long long>(p.kv_budget), static_cast<long long>(p.n_sink));
            }
            [[fallthrough]];
        case AttentionKind::kSnapKv:
        case AttentionKind::kOracle:
            if (p.kv_budget < 1) {
                return invalid_argument("--kv-budget must be >= 1 token, got %lld",
                                        static_cast<long long>(p.kv_budget));
            }
            if (p.kind == AttentionKind::kSnapKv &&
                (p.obs_window < 1 || p.obs_window > p.kv_budget)) {
                return invalid_argument("--obs-window must be in [1, kv-budget %lld], got %lld",
                                        static_cast<long long>(p.kv_budget),
                                        static_cast<long long>(p.obs_window));
            }
            if (p.pool_kernel < 1 || p.pool_kernel % 2 == 0) {
                return invalid_argument("pool kernel must be odd and >= 1, got %lld",
                                        static_cast<long long>(p.pool_kernel));
            }
            return Status();
    }
    return Status();
}

}  // namespace tca
