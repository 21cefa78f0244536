// Float64 reference ops, written straight from tca-method M2-M7 with no optimisation: every
// sum in double, every softmax max-subtracted, every selection by explicit sorting.
//
// The bodies are templates on the accumulation type `Acc`: Acc = double is the oracle
// (tca::ref::*); Acc = float is the same naive loop in float32 (tca::ref::naive_f32::*), used
// only to size parity tolerances (docs/numerics.md, the FlashAttention-3 rule). Loads convert
// the stored value exactly to Acc; nothing else differs between the two.
#include "reference/ref_ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace tca::ref {
namespace {

// Element (i0, i1, i2) of a float-storage 3-d view as an Acc (exact: storage is <= f32).
template <class Acc = double>
Acc ld3(const TensorView& t, int64_t i0, int64_t i1, int64_t i2) {
    return load_as_f32(t.data, i0 * t.stride[0] + i1 * t.stride[1] + i2 * t.stride[2], t.dtype);
}
template <class Acc = double>
Acc ld2(const TensorView& t, int64_t i0, int64_t i1) {
    return load_as_f32(t.data, i0 * t.stride[0] + i1 * t.stride[1], t.dtype);
}
float* f32_2(const TensorView& t, int64_t i0, int64_t i1) {
    return t.ptr<float>() + i0 * t.stride[0] + i1 * t.stride[1];
}
float* f32_3(const TensorView& t, int64_t i0, int64_t i1, int64_t i2) {
    return t.ptr<float>() + i0 * t.stride[0] + i1 * t.stride[1] + i2 * t.stride[2];
}
int32_t& i32_1(const TensorView& t, int64_t i0) { return t.ptr<int32_t>()[i0 * t.stride[0]]; }
int32_t& i32_2(const TensorView& t, int64_t i0, int64_t i1) {
    return t.ptr<int32_t>()[i0 * t.stride[0] + i1 * t.stride[1]];
}

// One key/value row: row `row` of KV head `head` in tensors k and v.
struct KvRow {
    const TensorView* k;
    const TensorView* v;
    int64_t head;
    int64_t row;
};

// softmax(scale * q . k) over `rows`, times V, written to out[0..d). Empty set: zeros.
template <class Acc>
void attend(const TensorView& q, int64_t qh, int64_t qi, const std::vector<KvRow>& rows,
            Acc scale, const TensorView& out) {
    const int64_t d = q.shape[2];
    std::vector<Acc> s(rows.size());
    Acc mx = -INFINITY;
    for (size_t r = 0; r < rows.size(); ++r) {
        Acc dot = 0;
        for (int64_t c = 0; c < d; ++c) {
            dot += ld3<Acc>(q, qh, qi, c) * ld3<Acc>(*rows[r].k, rows[r].head, rows[r].row, c);
        }
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
        for (size_t r = 0; r < rows.size(); ++r) {
            acc += s[r] * ld3<Acc>(*rows[r].v, rows[r].head, rows[r].row, c);
        }
        *f32_3(out, qh, qi, c) = rows.empty() ? 0.0f : static_cast<float>(acc / denom);
    }
}

// Causal softmax probabilities of query (qh, qi) over keys [0, n_keys) of KV head kvh.
template <class Acc>
std::vector<Acc> softmax_row(const TensorView& q, int64_t qh, int64_t qi, const TensorView& k,
                             int64_t kvh, int64_t first, int64_t n_keys, Acc scale) {
    const int64_t d = q.shape[2];
    std::vector<Acc> s(static_cast<size_t>(n_keys));
    Acc mx = -INFINITY;
    for (int64_t j = 0; j < n_keys; ++j) {
        Acc dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += ld3<Acc>(q, qh, qi, c) * ld3<Acc>(k, kvh, first + j, c);
        s[static_cast<size_t>(j)] = dot * scale;
        mx = std::max(mx, s[static_cast<size_t>(j)]);
    }
    Acc denom = 0;
    for (Acc& x : s) {
        x = std::exp(x - mx);
        denom += x;
    }
    for (Acc& x : s) x /= denom;
    return s;
}

// Indices of the `keep` best entries, ascending: by `first` descending, then `second`
// descending, then lower index.
template <class Acc>
std::vector<int64_t> top_indices(const std::vector<Acc>& first, const std::vector<Acc>& second,
                                 int64_t keep) {
    std::vector<int64_t> idx(first.size());
    std::iota(idx.begin(), idx.end(), int64_t{0});
    std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
        const Acc fa = first[static_cast<size_t>(a)], fb = first[static_cast<size_t>(b)];
        if (fa != fb) return fa > fb;
        const Acc sa = second[static_cast<size_t>(a)], sb = second[static_cast<size_t>(b)];
        if (sa != sb) return sa > sb;
        return a < b;
    });
    idx.resize(static_cast<size_t>(keep));
    std::sort(idx.begin(), idx.end());
    return idx;
}

// Indices of the `keep` largest values of `score` (ties: lower index), ascending.
template <class Acc>
std::vector<int64_t> top_indices(const std::vector<Acc>& score, int64_t keep) {
    return top_indices(score, score, keep);
}

}  // namespace

namespace detail {

template <class Acc>
Status attention_dense(const AttentionDenseParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_q = p.q.shape[1], g = hq / p.k.shape[0];
    const Acc scale = effective_scale(p.scale, p.q.shape[2]);
    for (int64_t h = 0; h < hq; ++h) {
        for (int64_t i = 0; i < n_q; ++i) {
            std::vector<KvRow> rows;
            for (int64_t j = 0; j <= p.q_pos0 + i; ++j) rows.push_back({&p.k, &p.v, h / g, j});
            attend<Acc>(p.q, h, i, rows, scale, p.out);
        }
    }
    return Status();
}

template <class Acc>
Status token_importance(const TokenImportanceParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_obs = p.q.shape[1];
    const int64_t hkv = p.k.shape[0], n_kv = p.k.shape[1], g = hq / hkv;
    const int64_t pos0 = p.q_pos0 < 0 ? n_kv - n_obs : p.q_pos0;
    const Acc scale = effective_scale(p.scale, p.q.shape[2]);
    for (int64_t kvh = 0; kvh < hkv; ++kvh) {
        std::vector<Acc> acc(static_cast<size_t>(n_kv), Acc{0});
        for (int64_t h = kvh * g; h < (kvh + 1) * g; ++h) {
            for (int64_t t = 0; t < n_obs; ++t) {
                const auto s = softmax_row<Acc>(p.q, h, t, p.k, kvh, 0, pos0 + t + 1, scale);
                for (size_t j = 0; j < s.size(); ++j) acc[j] += s[j];
            }
        }
        for (int64_t j = 0; j < n_kv; ++j) {
            *f32_2(p.scores, kvh, j) =
                static_cast<float>(acc[static_cast<size_t>(j)] / static_cast<Acc>(g * n_obs));
        }
    }
    return Status();
}

template <class Acc>
Status block_score(const BlockScoreParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.scores.shape[0], nb = p.mass.shape[1], b = p.block_size;
    const Acc alpha = p.alpha;
    for (int64_t kvh = 0; kvh < hkv; ++kvh) {
        std::vector<Acc> mass(static_cast<size_t>(nb)), hhi(static_cast<size_t>(nb));
        Acc mmax = 0;
        for (int64_t j = 0; j < nb; ++j) {
            Acc m = 0, sq = 0;
            for (int64_t i = j * b; i < (j + 1) * b; ++i) {
                const Acc s = ld2<Acc>(p.scores, kvh, i);
                m += s;
                sq += s * s;
            }
            mass[static_cast<size_t>(j)] = m;
            hhi[static_cast<size_t>(j)] = m > 0 ? sq / (m * m) : Acc{1};
            mmax = std::max(mmax, m);
        }
        for (int64_t j = 0; j < nb; ++j) {
            const Acc m = mass[static_cast<size_t>(j)];
            const Acc mn = p.mass_norm == MassNorm::kMax ? (mmax > 0 ? m / mmax : Acc{0}) : m;
            *f32_2(p.mass, kvh, j) = static_cast<float>(m);
            *f32_2(p.hhi, kvh, j) = static_cast<float>(hhi[static_cast<size_t>(j)]);
            *f32_2(p.block_score, kvh, j) =
                static_cast<float>((1 - alpha) * mn + alpha * (1 - hhi[static_cast<size_t>(j)]));
        }
    }
    return Status();
}

template <class Acc>
Status block_budget(const BlockBudgetParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.block_score.shape[0], nb = p.block_score.shape[1];
    for (int64_t kvh = 0; kvh < hkv; ++kvh) {
        for (int64_t j = 0; j + 1 < nb; ++j) {
            TCA_ASSERT(i32_2(p.psi, kvh, j) >= i32_2(p.psi, kvh, j + 1), "psi must not increase");
        }
        for (int64_t j = 0; j < nb; ++j) {
            const Acc hj = ld2<Acc>(p.block_score, kvh, j);
            int64_t rank = 0;
            for (int64_t o = 0; o < nb; ++o) {
                const Acc ho = ld2<Acc>(p.block_score, kvh, o);
                if (ho > hj || (ho == hj && o < j)) ++rank;
            }
            const int32_t t = i32_2(p.psi, kvh, rank);
            TCA_ASSERT(t >= 0 && t <= p.block_size, "psi entry %d outside [0, %d]", t, p.block_size);
            i32_2(p.keep, kvh, j) = t;
        }
    }
    return Status();
}

template <class Acc>
Status token_select(const TokenSelectParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.scores.shape[0], nb = p.keep.shape[1], b = p.block_size;
    const int64_t n_kv = p.scores.shape[1];
    for (int64_t kvh = 0; kvh < hkv; ++kvh) {
        // Own and pooled score (max over [pos - pool, pos + pool] clipped to the scores, the M5
        // pool option) of every candidate token.
        std::vector<Acc> s(static_cast<size_t>(nb * b)), pooled(static_cast<size_t>(nb * b));
        for (int64_t pos = 0; pos < nb * b; ++pos) {
            s[static_cast<size_t>(pos)] = ld2<Acc>(p.scores, kvh, pos);
            Acc m = s[static_cast<size_t>(pos)];
            for (int64_t c = std::max<int64_t>(0, pos - p.pool);
                 c <= std::min<int64_t>(n_kv - 1, pos + p.pool); ++c) {
                m = std::max(m, ld2<Acc>(p.scores, kvh, c));
            }
            pooled[static_cast<size_t>(pos)] = m;
        }
        int64_t n = 0, total = 0;
        for (int64_t j = 0; j < nb; ++j) {
            const int32_t t = i32_2(p.keep, kvh, j);
            TCA_ASSERT(t >= 0 && t <= b, "keep[%lld] = %d outside [0, %lld]",
                       static_cast<long long>(j), t, static_cast<long long>(b));
            total += t;
            if (p.global) continue;
            const auto first = static_cast<size_t>(j * b);
            const std::vector<Acc> sj(s.begin() + first, s.begin() + first + b);
            const std::vector<Acc> pj(pooled.begin() + first, pooled.begin() + first + b);
            for (int64_t i : top_indices(pj, sj, t)) i32_2(p.selected, kvh, n++) = static_cast<int32_t>(j * b + i);
        }
        if (p.global) {  // the `total` best of the whole region (Selection::kGlobal)
            for (int64_t pos : top_indices(pooled, s, total)) i32_2(p.selected, kvh, n++) = static_cast<int32_t>(pos);
        }
        i32_1(p.n_selected, kvh) = static_cast<int32_t>(n);
    }
    return Status();
}

template <class Acc>
Status kv_gather(const KvGatherParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.k.shape[0], n_kv = p.k.shape[1], d = p.k.shape[2];
    for (int64_t kvh = 0; kvh < hkv; ++kvh) {
        const int64_t n = i32_1(p.n_positions, kvh);
        TCA_ASSERT(n >= 0 && n <= p.positions.shape[1] && n <= p.k_out.shape[1],
                   "n_positions %lld exceeds a capacity", static_cast<long long>(n));
        for (int64_t s = 0; s < n; ++s) {
            const int64_t pos = i32_2(p.positions, kvh, s);
            TCA_ASSERT(pos >= 0 && pos < n_kv, "position %lld outside [0, %lld)",
                       static_cast<long long>(pos), static_cast<long long>(n_kv));
            TCA_ASSERT(s == 0 || pos > i32_2(p.positions, kvh, s - 1), "positions must ascend");
            for (int64_t c = 0; c < d; ++c) {
                const int64_t src_k = kvh * p.k.stride[0] + pos * p.k.stride[1] + c;
                const int64_t src_v = kvh * p.v.stride[0] + pos * p.v.stride[1] + c;
                store_from_f32(p.k_out.data, kvh * p.k_out.stride[0] + s * p.k_out.stride[1] + c,
                               p.k_out.dtype, load_as_f32(p.k.data, src_k, p.k.dtype));
                store_from_f32(p.v_out.data, kvh * p.v_out.stride[0] + s * p.v_out.stride[1] + c,
                               p.v_out.dtype, load_as_f32(p.v.data, src_v, p.v.dtype));
            }
            i32_2(p.slot_pos, kvh, s) = static_cast<int32_t>(pos);
        }
    }
    return Status();
}

template <class Acc>
Status sparse_prefill(const SparsePrefillParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_q = p.q.shape[1], hkv = p.k.shape[0], g = hq / hkv;
    const Acc scale = effective_scale(p.scale, p.q.shape[2]);
    const int64_t b = p.block_size;
    for (int64_t kvh = 0; kvh < hkv; ++kvh) {
        const int64_t ng = i32_1(p.n_global, kvh);
        TCA_ASSERT(ng >= 0 && ng <= p.global_pos.shape[1], "n_global %lld", static_cast<long long>(ng));
        for (int64_t s = 0; s < ng; ++s) {
            TCA_ASSERT(i32_2(p.global_pos, kvh, s) < p.n_blocks * b, "global slot in the band");
            TCA_ASSERT(s == 0 || i32_2(p.global_pos, kvh, s) > i32_2(p.global_pos, kvh, s - 1),
                       "global positions must ascend");
        }
    }
    for (int64_t h = 0; h < hq; ++h) {
        const int64_t kvh = h / g;
        const int64_t ng = i32_1(p.n_global, kvh);
        for (int64_t i = 0; i < n_q; ++i) {
            const int64_t pos = p.q_pos0 + i;
            const int64_t band0 = visible_blocks(pos, p.local_window, b, p.n_blocks) * b;
            std::vector<KvRow> rows;
            // Global tokens read from the full K/V by position, independent of the gather.
            for (int64_t s = 0; s < ng; ++s) {
                const int64_t gp = i32_2(p.global_pos, kvh, s);
                if (gp < band0) rows.push_back({&p.k, &p.v, kvh, gp});
            }
            for (int64_t j = band0; j <= pos; ++j) rows.push_back({&p.k, &p.v, kvh, j});
            attend<Acc>(p.q, h, i, rows, scale, p.out);
        }
    }
    return Status();
}

template <class Acc>
Status decode_attention(const DecodeAttentionParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_q = p.q.shape[1], hkv = p.k_cache.shape[0], g = hq / hkv;
    const Acc scale = effective_scale(p.scale, p.q.shape[2]);
    for (int64_t h = 0; h < hq; ++h) {
        const int64_t kvh = h / g;
        const int64_t n = i32_1(p.n_slots, kvh);
        TCA_ASSERT(n >= 0 && n <= p.k_cache.shape[1], "n_slots %lld", static_cast<long long>(n));
        for (int64_t i = 0; i < n_q; ++i) {
            std::vector<KvRow> rows;
            for (int64_t s = 0; s < n; ++s) {
                if (i32_2(p.slot_pos, kvh, s) <= p.q_pos0 + i) {
                    rows.push_back({&p.k_cache, &p.v_cache, kvh, s});
                }
            }
            attend<Acc>(p.q, h, i, rows, scale, p.out);
        }
    }
    return Status();
}

template <class Acc>
Status block_compact(const BlockCompactParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_q = p.q.shape[1], hkv = p.k_cache.shape[0], g = hq / hkv;
    const int64_t d = p.k_cache.shape[2], b = p.block_size;
    const Acc scale = effective_scale(p.scale, p.q.shape[2]);
    for (int64_t kvh = 0; kvh < hkv; ++kvh) {
        const int64_t keep = i32_1(p.keep, kvh);
        if (keep < 0) continue;
        const int64_t g0 = i32_1(p.n_global, kvh), n = i32_1(p.n_slots, kvh);
        if (n - g0 < p.min_local) continue;
        TCA_ASSERT(keep <= b && n - g0 >= b && g0 >= 0 && n <= p.k_cache.shape[1],
                   "block_compact: keep %lld, n_global %lld, n_slots %lld", static_cast<long long>(keep),
                   static_cast<long long>(g0), static_cast<long long>(n));
        std::vector<Acc> score(static_cast<size_t>(b), Acc{0});
        for (int64_t h = kvh * g; h < (kvh + 1) * g; ++h) {
            for (int64_t i = 0; i < n_q; ++i) {
                const auto s = softmax_row<Acc>(p.q, h, i, p.k_cache, kvh, g0, b, scale);
                for (size_t j = 0; j < s.size(); ++j) score[j] += s[j] / static_cast<Acc>(g * n_q);
            }
        }
        // New order of the slots from g0 on: the kept block tokens, then the rest of the local part.
        std::vector<int64_t> order;
        for (int64_t j : top_indices(score, keep)) order.push_back(g0 + j);
        for (int64_t s = g0 + b; s < n; ++s) order.push_back(s);
        std::vector<float> kbuf(order.size() * static_cast<size_t>(d)), vbuf(kbuf.size());
        std::vector<int32_t> pbuf(order.size());
        for (size_t r = 0; r < order.size(); ++r) {
            for (int64_t c = 0; c < d; ++c) {
                kbuf[r * static_cast<size_t>(d) + static_cast<size_t>(c)] =
                    static_cast<float>(ld3(p.k_cache, kvh, order[r], c));
                vbuf[r * static_cast<size_t>(d) + static_cast<size_t>(c)] =
                    static_cast<float>(ld3(p.v_cache, kvh, order[r], c));
            }
            pbuf[r] = i32_2(p.slot_pos, kvh, order[r]);
        }
        for (size_t r = 0; r < order.size(); ++r) {
            const int64_t s = g0 + static_cast<int64_t>(r);
            for (int64_t c = 0; c < d; ++c) {
                // Round trip through f32 is exact for every storage type.
                store_from_f32(p.k_cache.data, kvh * p.k_cache.stride[0] + s * p.k_cache.stride[1] + c,
                               p.k_cache.dtype, kbuf[r * static_cast<size_t>(d) + static_cast<size_t>(c)]);
                store_from_f32(p.v_cache.data, kvh * p.v_cache.stride[0] + s * p.v_cache.stride[1] + c,
                               p.v_cache.dtype, vbuf[r * static_cast<size_t>(d) + static_cast<size_t>(c)]);
            }
            i32_2(p.slot_pos, kvh, s) = pbuf[r];
        }
        i32_1(p.n_global, kvh) = static_cast<int32_t>(g0 + keep);
        i32_1(p.n_slots, kvh) = static_cast<int32_t>(n - (b - keep));
    }
    return Status();
}

}  // namespace detail

// The ops defined in this file (an op of TCA_FOR_EACH_OP may have its reference elsewhere,
// e.g. kv_append in ref_kv_ops.cpp). Acc = double: the oracle; Acc = float: the naive float32
// baseline of the same loops.
#define TCA_REF_TEMPLATED_OPS(X)               \
    X(attention_dense, AttentionDenseParams)   \
    X(token_importance, TokenImportanceParams) \
    X(block_score, BlockScoreParams)           \
    X(block_budget, BlockBudgetParams)         \
    X(token_select, TokenSelectParams)         \
    X(kv_gather, KvGatherParams)               \
    X(sparse_prefill, SparsePrefillParams)     \
    X(decode_attention, DecodeAttentionParams) \
    X(block_compact, BlockCompactParams)

#define TCA_DEFINE_REF_OP(name, Params) \
    Status name(const Params& p) { return detail::name<double>(p); }
TCA_REF_TEMPLATED_OPS(TCA_DEFINE_REF_OP)
#undef TCA_DEFINE_REF_OP

namespace naive_f32 {
#define TCA_DEFINE_NAIVE_OP(name, Params) \
    Status name(const Params& p) { return detail::name<float>(p); }
TCA_REF_TEMPLATED_OPS(TCA_DEFINE_NAIVE_OP)
#undef TCA_DEFINE_NAIVE_OP
}  // namespace naive_f32

}  // namespace tca::ref
