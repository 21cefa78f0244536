// Independent oracles (oracles.h).
#include "support/oracles.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/half.h"

namespace tca::test {

namespace {

// The masked-attention loops, accumulating in Acc; `rnd` maps each q, K and V element and each
// probability P to the value the modelled kernel multiplies (identity, or a bf16/f16 rounding).
template <class Acc, class Round>
Buf masked_attention_impl(const Buf& q, const Buf& k, const Buf& v, int64_t q_pos0,
                          const KeyFilter& visible, Round rnd) {
    const int64_t hq = q.dim(0), n_q = q.dim(1), d = q.dim(2), hkv = k.dim(0), n_kv = k.dim(1);
    const int64_t g = hq / hkv;
    const Acc scale = static_cast<Acc>(1.0 / std::sqrt(static_cast<double>(d)));
    // Flat copies (exact: every storage type converts exactly to double, then to Acc >= f32).
    const std::vector<double> qv = q.values(), kv = k.values(), vv = v.values();
    std::vector<double> res(static_cast<size_t>(hq * n_q * d));
    for (int64_t h = 0; h < hq; ++h) {
        const int64_t kvh = h / g;
        for (int64_t i = 0; i < n_q; ++i) {
            const double* qr = &qv[((h * n_q) + i) * d];
            std::vector<int64_t> keys;
            for (int64_t j = 0; j < n_kv; ++j) {
                if (visible(kvh, q_pos0 + i, j)) keys.push_back(j);
            }
            std::vector<Acc> s(keys.size());
            Acc mx = -INFINITY;
            for (size_t r = 0; r < keys.size(); ++r) {
                const double* kr = &kv[((kvh * n_kv) + keys[r]) * d];
                Acc dot = 0;
                for (int64_t c = 0; c < d; ++c) dot += rnd(qr[c]) * rnd(kr[c]);
                s[r] = dot * scale;
                mx = std::max(mx, s[r]);
            }
            Acc denom = 0;
            for (Acc& x : s) {
                x = std::exp(x - mx);
                denom += x;
            }
            for (int64_t c = 0; c < d; ++c) {
                Acc acc = 0;
                for (size_t r = 0; r < keys.size(); ++r) {
                    acc += rnd(static_cast<double>(s[r])) * rnd(vv[((kvh * n_kv) + keys[r]) * d + c]);
                }
                res[((h * n_q) + i) * d + c] = keys.empty() ? 0.0 : static_cast<double>(acc / denom);
            }
        }
    }
    Buf out(DType::kF32, {hq, n_q, d});
    for (int64_t e = 0; e < out.numel(); ++e) out.set(e, res[e]);
    return out;
}

}  // namespace

template <class Acc>
Buf masked_attention(const Buf& q, const Buf& k, const Buf& v, int64_t q_pos0,
                     const KeyFilter& visible) {
    return masked_attention_impl<Acc>(q, k, v, q_pos0, visible,
                                      [](double x) { return static_cast<Acc>(x); });
}

template Buf masked_attention<double>(const Buf&, const Buf&, const Buf&, int64_t, const KeyFilter&);
template Buf masked_attention<float>(const Buf&, const Buf&, const Buf&, int64_t, const KeyFilter&);

Buf masked_attention_lowp(const Buf& q, const Buf& k, const Buf& v, int64_t q_pos0,
                          const KeyFilter& visible) {
    const bool f16 = k.dtype() == DType::kF16;
    return masked_attention_impl<float>(q, k, v, q_pos0, visible, [f16](double x) {
        const float f = static_cast<float>(x);
        return f16 ? f16_to_f32(f32_to_f16(f)) : bf16_to_f32(f32_to_bf16(f));
    });
}

std::vector<double> attention_probs(const Buf& q, const Buf& k, int64_t h, int64_t i,
                                    int64_t q_pos0, const KeyFilter& visible) {
    const int64_t hq = q.dim(0), d = q.dim(2), hkv = k.dim(0), n_kv = k.dim(1);
    const int64_t kvh = h / (hq / hkv);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    std::vector<double> p(static_cast<size_t>(n_kv), 0.0);
    double mx = -INFINITY;
    std::vector<bool> vis(static_cast<size_t>(n_kv));
    std::vector<double> qr(static_cast<size_t>(d));
    for (int64_t c = 0; c < d; ++c) qr[c] = q.at({h, i, c});
    for (int64_t j = 0; j < n_kv; ++j) {
        vis[j] = visible(kvh, q_pos0 + i, j);
        if (!vis[j]) continue;
        double dot = 0.0;
        const int64_t base = k.flat({kvh, j, 0});
        for (int64_t c = 0; c < d; ++c) dot += qr[c] * k.get(base + c);
        p[j] = dot * scale;
        mx = std::max(mx, p[j]);
    }
    double denom = 0.0;
    for (int64_t j = 0; j < n_kv; ++j) {
        if (!vis[j]) continue;
        p[j] = std::exp(p[j] - mx);
        denom += p[j];
    }
    for (int64_t j = 0; j < n_kv; ++j) {
        if (vis[j]) p[j] /= denom;
    }
    return p;
}

std::vector<double> compaction_scores(const Buf& q, const Buf& k_cache, int64_t kvh, int64_t g0,
                                      int64_t b) {
    const int64_t hq = q.dim(0), n_q = q.dim(1), d = q.dim(2);
    const int64_t g = hq / k_cache.dim(0);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    std::vector<double> score(static_cast<size_t>(b), 0.0);
    for (int64_t h = kvh * g; h < (kvh + 1) * g; ++h) {
        for (int64_t i = 0; i < n_q; ++i) {
            std::vector<double> s(static_cast<size_t>(b));
            double mx = -INFINITY;
            for (int64_t j = 0; j < b; ++j) {
                double dot = 0.0;
                for (int64_t c = 0; c < d; ++c) dot += q.at({h, i, c}) * k_cache.at({kvh, g0 + j, c});
                s[j] = dot * scale;
                mx = std::max(mx, s[j]);
            }
            double denom = 0.0;
            for (double& x : s) {
                x = std::exp(x - mx);
                denom += x;
            }
            for (int64_t j = 0; j < b; ++j) score[j] += s[j] / denom / static_cast<double>(g * n_q);
        }
    }
    return score;
}

std::vector<int64_t> top_k(const std::vector<double>& v, int64_t keep, double* margin) {
    std::vector<int64_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), int64_t{0});
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
    if (margin) {
        *margin = INFINITY;
        if (keep > 0 && keep < static_cast<int64_t>(v.size())) *margin = v[idx[keep - 1]] - v[idx[keep]];
    }
    idx.resize(static_cast<size_t>(std::max<int64_t>(0, keep)));
    std::sort(idx.begin(), idx.end());
    return idx;
}

Status run_selection(Backend backend, const Buf& q_obs, const Buf& k, int64_t n_blocks, int b,
                     float alpha, const std::vector<std::vector<int32_t>>& psi, Selection* out) {
    const int64_t hkv = k.dim(0), n_kv = k.dim(1);
    out->scores = Buf(DType::kF32, {hkv, n_kv});
    TokenImportanceParams ti;
    ti.q = q_obs.view();
    ti.k = k.view();
    ti.scores = out->scores.view();
    TCA_RETURN_IF_ERROR(run(backend, ti));

    out->mass = Buf(DType::kF32, {hkv, n_blocks});
    out->hhi = Buf(DType::kF32, {hkv, n_blocks});
    out->block_score = Buf(DType::kF32, {hkv, n_blocks});
    BlockScoreParams bs;
    bs.scores = out->scores.view();
    bs.mass = out->mass.view();
    bs.hhi = out->hhi.view();
    bs.block_score = out->block_score.view();
    bs.block_size = b;
    bs.alpha = alpha;
    TCA_RETURN_IF_ERROR(run(backend, bs));

    Buf psi_buf = i32_buf_2d(psi, n_blocks, 0);
    out->keep = Buf(DType::kI32, {hkv, n_blocks});
    BlockBudgetParams bb;
    bb.block_score = out->block_score.view();
    bb.psi = psi_buf.view();
    bb.keep = out->keep.view();
    bb.block_size = b;
    TCA_RETURN_IF_ERROR(run(backend, bb));

    Buf selected(DType::kI32, {hkv, std::max<int64_t>(1, n_blocks * b)});
    Buf n_selected(DType::kI32, {hkv});
    TokenSelectParams ts;
    ts.scores = out->scores.view();
    ts.keep = out->keep.view();
    ts.selected = selected.view();
    ts.n_selected = n_selected.view();
    ts.block_size = b;
    TCA_RETURN_IF_ERROR(run(backend, ts));
    out->positions.assign(static_cast<size_t>(hkv), {});
    for (int64_t h = 0; h < hkv; ++h) {
        const auto n = static_cast<int64_t>(n_selected.get(h));
        for (int64_t s = 0; s < n; ++s) {
            out->positions[h].push_back(static_cast<int32_t>(selected.at({h, s})));
        }
    }
    return Status();
}

Status run_gather(Backend backend, const Buf& k, const Buf& v,
                  const std::vector<std::vector<int32_t>>& positions, int64_t cap, Gathered* out) {
    const int64_t hkv = k.dim(0), d = k.dim(2);
    int64_t longest = 1;
    std::vector<int32_t> counts;
    for (const auto& p : positions) {
        longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
        counts.push_back(static_cast<int32_t>(p.size()));
    }
    Buf pos = i32_buf_2d(positions, longest, -1);
    out->n = i32_buf(counts);
    out->k = Buf(k.dtype(), {hkv, cap, d});
    out->v = Buf(k.dtype(), {hkv, cap, d});
    out->slot_pos = Buf(DType::kI32, {hkv, cap});
    out->slot_pos.fill(-1);
    KvGatherParams p;
    p.k = k.view();
    p.v = v.view();
    p.positions = pos.view();
    p.n_positions = out->n.view();
    p.k_out = out->k.view();
    p.v_out = out->v.view();
    p.slot_pos = out->slot_pos.view();
    return run(backend, p);
}

}  // namespace tca::test
