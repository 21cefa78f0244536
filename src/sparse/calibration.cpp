// Calibration statistic and choice (calibration.h, tca-method M8). One work item is a chunk
// of query rows of one KV head: for each row it computes the G causal softmax rows (float
// logits and exp, double sums), their group mean P[i, :], and adds the band mass and the
// after[k] contributions into the chunk's own partial; partials are reduced in chunk order.
// Chunk sizes depend only on L and row_stride, so the result is bit-identical for any
// thread count. Cost: G * N_q * L / 2 dot products of length d per KV head.
#include "sparse/calibration.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/thread_pool.h"

namespace tca {
namespace {

constexpr int64_t kMinChunkRows = 16;  // rows per work item, at least
constexpr int64_t kMaxChunks = 64;     // chunks per KV head, at most (bounds partial memory)

float dot(const float* a, const float* b, int64_t d) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int64_t c = 0;
    for (; c + 4 <= d; c += 4) {
        s0 += a[c] * b[c];
        s1 += a[c + 1] * b[c + 1];
        s2 += a[c + 2] * b[c + 2];
        s3 += a[c + 3] * b[c + 3];
    }
    for (; c < d; ++c) s0 += a[c] * b[c];
    return (s0 + s1) + (s2 + s3);
}

// Views of one layer: q [H, L, d], k [Hkv, L, d], both f32 with a contiguous last dim.
struct LayerInput {
    const float* q = nullptr;
    const float* k = nullptr;
    int64_t qs0 = 0, qs1 = 0, ks0 = 0, ks1 = 0;
    int64_t n_q_heads = 0, n_kv_heads = 0, group = 0, n_tokens = 0, head_dim = 0;
    float scale = 1.0f;
};

Result<LayerInput> check_layer_input(const TensorView& q, const TensorView& k,
                                     const CalibrationOptions& opt) {
    TCA_RETURN_IF_ERROR(validate(opt));
    if (q.ndim != 3 || k.ndim != 3) {
        return invalid_argument("calibration: q must be [H, L, d] and k [Hkv, L, d], got %s and %s",
                                q.shape_string().c_str(), k.shape_string().c_str());
    }
    if (q.dtype != DType::kF32 || k.dtype != DType::kF32 || q.empty() || k.empty()) {
        return invalid_argument("calibration: q and k must be f32, got %s and %s",
                                q.shape_string().c_str(), k.shape_string().c_str());
    }
    if (q.stride[2] != 1 || k.stride[2] != 1) {
        return invalid_argument("calibration: q and k need a contiguous head_dim");
    }
    LayerInput in;
    in.n_q_heads = q.shape[0];
    in.n_kv_heads = k.shape[0];
    in.n_tokens = q.shape[1];
    in.head_dim = q.shape[2];
    if (in.n_kv_heads < 1 || in.n_q_heads % in.n_kv_heads != 0 || k.shape[1] != in.n_tokens ||
        k.shape[2] != in.head_dim || in.head_dim < 1) {
        return invalid_argument("calibration: q %s and k %s do not match (H a multiple of Hkv, same "
                                "L and d)", q.shape_string().c_str(), k.shape_string().c_str());
    }
    const int64_t w = opt.sparse.local_window, b = opt.sparse.block_size;
    if (in.n_tokens < w + b) {
        return invalid_argument("calibration needs candidate blocks: %lld tokens is shorter than "
                                "local window + block size = %lld + %lld = %lld",
                                static_cast<long long>(in.n_tokens), static_cast<long long>(w),
                                static_cast<long long>(b), static_cast<long long>(w + b));
    }
    in.q = q.ptr<const float>();
    in.k = k.ptr<const float>();
    in.qs0 = q.stride[0];
    in.qs1 = q.stride[1];
    in.ks0 = k.stride[0];
    in.ks1 = k.stride[1];
    in.group = in.n_q_heads / in.n_kv_heads;
    in.scale = 1.0f / std::sqrt(static_cast<float>(in.head_dim));
    return in;
}

struct Scratch {
    std::vector<float> logits;  // [L]
    std::vector<double> prob;   // [L]
};

// prob[0..i] += weight * mean over the group's query heads of query i's causal softmax.
void add_group_probs(const LayerInput& in, int64_t kvh, int64_t i, double weight, Scratch& s) {
    float* lg = s.logits.data();
    double* pr = s.prob.data();
    const float* kb = in.k + kvh * in.ks0;
    for (int64_t g = 0; g < in.group; ++g) {
        const float* qr = in.q + (kvh * in.group + g) * in.qs0 + i * in.qs1;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t key = 0; key <= i; ++key) {
            const float x = dot(qr, kb + key * in.ks1, in.head_dim) * in.scale;
            lg[key] = x;
            m = std::max(m, x);
        }
        double sum = 0.0;
        for (int64_t key = 0; key <= i; ++key) {
            const float e = std::exp(lg[key] - m);
            lg[key] = e;
            sum += static_cast<double>(e);
        }
        const double inv = weight / (sum * static_cast<double>(in.group));
        for (int64_t key = 0; key <= i; ++key) pr[key] += static_cast<double>(lg[key]) * inv;
    }
}

struct ChunkPartial {
    double band = 0.0;
    std::vector<double> after;  // [n * b]
};

}  // namespace

const char* mass_statistic_name(MassStatistic s) { return s == MassStatistic::kFar ? "far" : "total"; }

Result<MassStatistic> parse_mass_statistic(const std::string& name) {
    if (name == "total") return MassStatistic::kTotal;
    if (name == "far") return MassStatistic::kFar;
    return invalid_argument("statistic must be 'total' or 'far', got '%s'", name.c_str());
}

Status validate(const CalibrationOptions& opt) {
    TCA_RETURN_IF_ERROR(validate(opt.sparse));
    if (opt.row_stride < 1) {
        return invalid_argument("row_stride must be >= 1, got %lld",
                                static_cast<long long>(opt.row_stride));
    }
    if (opt.n_candidates < 2 || opt.n_candidates > 64) {
        return invalid_argument("n_candidates must be in [2, 64], got %d", opt.n_candidates);
    }
    if (!(opt.min_keep >= 0.0 && opt.min_keep <= 1.0)) {
        return invalid_argument("min_keep must be in [0, 1], got %g", opt.min_keep);
    }
    return Status();
}

Result<std::vector<HeadStatistic>> layer_statistics(const TensorView& q, const TensorView& k,
                                                    const CalibrationOptions& opt) {
    TCA_ASSIGN_OR_RETURN(const LayerInput in, check_layer_input(q, k, opt));
    const int64_t L = in.n_tokens, hkv = in.n_kv_heads;
    const int64_t w = opt.sparse.local_window, b = opt.sparse.block_size;
    const int64_t n = n_candidate_blocks(L, w, b), nb_tokens = n * b;
    // Sampled rows of the sparse regime (v(i) >= 1): i = first + r * stride (M8 step 2).
    const int64_t first = w + b - 1, stride = opt.row_stride;
    const int64_t n_rows = (L - 1 - first) / stride + 1;
    const int64_t chunk_rows =
        std::max(kMinChunkRows, (n_rows + kMaxChunks - 1) / kMaxChunks);
    const int64_t n_chunks = (n_rows + chunk_rows - 1) / chunk_rows;
    const int64_t n_obs = std::min<int64_t>(opt.sparse.obs_window, L);

    std::vector<HeadStatistic> stats(static_cast<size_t>(hkv));
    std::vector<ChunkPartial> partial(static_cast<size_t>(hkv * n_chunks));
    ThreadPool& pool = thread_pool();
    std::vector<Scratch> scratch(static_cast<size_t>(pool.n_threads()));
    for (Scratch& s : scratch) {
        s.logits.resize(static_cast<size_t>(L));
        s.prob.resize(static_cast<size_t>(L));
    }
    // Items [0, hkv * n_chunks): row chunks; [hkv * n_chunks, + hkv): token importance (M2).
    pool.parallel_for(hkv * n_chunks + hkv, [&](int64_t item, int thread) {
        Scratch& s = scratch[static_cast<size_t>(thread)];
        if (item >= hkv * n_chunks) {
            const int64_t kvh = item - hkv * n_chunks;
            std::fill(s.prob.begin(), s.prob.end(), 0.0);
            // Mean over the last n_obs queries and the group (token_importance, M2).
            for (int64_t t = L - n_obs; t < L; ++t) {
                add_group_probs(in, kvh, t, 1.0 / static_cast<double>(n_obs), s);
            }
            HeadStatistic& st = stats[static_cast<size_t>(kvh)];
            st.importance.resize(static_cast<size_t>(L));
            for (int64_t key = 0; key < L; ++key) {
                st.importance[static_cast<size_t>(key)] = static_cast<float>(s.prob[static_cast<size_t>(key)]);
            }
            return;
        }
        const int64_t kvh = item / n_chunks, c = item % n_chunks;
        ChunkPartial& part = partial[static_cast<size_t>(item)];
        part.after.assign(static_cast<size_t>(nb_tokens), 0.0);
        const int64_t r1 = std::min(n_rows, (c + 1) * chunk_rows);
        for (int64_t r = c * chunk_rows; r < r1; ++r) {
            const int64_t i = first + r * stride;
            std::fill(s.prob.begin(), s.prob.begin() + i + 1, 0.0);
            add_group_probs(in, kvh, i, 1.0, s);
            // Band [v(i) * b, i] is seen densely; keys before v(i) * b only when selected (M6).
            const int64_t vb = visible_blocks(i, w, b, n) * b;
            double band = 0.0;
            for (int64_t key = vb; key <= i; ++key) band += s.prob[static_cast<size_t>(key)];
            part.band += band;
            for (int64_t key = 0; key < vb; ++key) {
                part.after[static_cast<size_t>(key)] += s.prob[static_cast<size_t>(key)];
            }
        }
    });
    for (int64_t kvh = 0; kvh < hkv; ++kvh) {
        HeadStatistic& st = stats[static_cast<size_t>(kvh)];
        st.n_tokens = L;
        st.n_blocks = n;
        st.n_queries = n_rows;
        st.after.assign(static_cast<size_t>(nb_tokens), 0.0);
        for (int64_t c = 0; c < n_chunks; ++c) {  // fixed order: deterministic sums
            const ChunkPartial& part = partial[static_cast<size_t>(kvh * n_chunks + c)];
            st.band_sum += part.band;
            for (int64_t key = 0; key < nb_tokens; ++key) {
                st.after[static_cast<size_t>(key)] += part.after[static_cast<size_t>(key)];
            }
        }
    }
    return stats;
}

Result<HeadStatistic> head_statistic(const TensorView& q, const TensorView& k,
                                     const CalibrationOptions& opt) {
    if (k.ndim != 2) {
        return invalid_argument("calibration: k must be [L, d], got %s", k.shape_string().c_str());
    }
    TensorView k3 = k;  // [1, L, d]
    k3.ndim = 3;
    k3.shape = {1, k.shape[0], k.shape[1], 0};
    k3.stride = {k.shape[0] * k.stride[0], k.stride[0], k.stride[1], 0};
    TCA_ASSIGN_OR_RETURN(std::vector<HeadStatistic> all, layer_statistics(q, k3, opt));
    return std::move(all[0]);
}

Result<std::vector<int32_t>> select_positions(const std::vector<float>& importance,
                                              int64_t n_blocks, const HeadConfig& config,
                                              const SparseOptions& opt) {
    const int64_t b = opt.block_size;
    if (n_blocks < 0 || static_cast<int64_t>(importance.size()) < n_blocks * b) {
        return invalid_argument("select_positions: %lld blocks of %lld need %lld scores, got %zu",
                                static_cast<long long>(n_blocks), static_cast<long long>(b),
                                static_cast<long long>(n_blocks * b), importance.size());
    }
    TCA_ASSIGN_OR_RETURN(const std::vector<int32_t> psi, make_psi(config.p, n_blocks, opt.block_size));
    const size_t nb = static_cast<size_t>(n_blocks);
    // Block mass, HHI and score h_j (M3), as the block_score op: double sums, float score.
    std::vector<double> mass(nb), hhi(nb);
    double mmax = 0.0;
    for (size_t j = 0; j < nb; ++j) {
        double m = 0.0, sq = 0.0;
        for (int64_t t = 0; t < b; ++t) {
            const double x = importance[j * static_cast<size_t>(b) + static_cast<size_t>(t)];
            m += x;
            sq += x * x;
        }
        mass[j] = m;
        hhi[j] = m > 0.0 ? sq / (m * m) : 1.0;
        mmax = std::max(mmax, m);
    }
    std::vector<float> h(nb);
    for (size_t j = 0; j < nb; ++j) {
        const double mn =
            opt.mass_norm == MassNorm::kMax ? (mmax > 0.0 ? mass[j] / mmax : 0.0) : mass[j];
        h[j] = static_cast<float>((1.0 - opt.alpha) * mn + opt.alpha * (1.0 - hhi[j]));
    }
    // Rank by h_j descending, ties to the lower j; block of rank r keeps psi[r] (M4).
    std::vector<size_t> order(nb);
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t c) { return h[a] > h[c]; });
    std::vector<int32_t> keep(nb);
    for (size_t r = 0; r < nb; ++r) keep[order[r]] = psi[r];
    // Top keep[j] tokens of each block (or the sum of keep best of the region, global) by the
    // pooled s, then s, then the lower position: the token_select op's own host selection.
    std::vector<int32_t> selected(static_cast<size_t>(n_blocks * b));
    const int64_t n_sel = select_tokens(importance.data(), static_cast<int64_t>(importance.size()),
                                        keep.data(), n_blocks, static_cast<int>(b), opt.pool,
                                        opt.selection == Selection::kGlobal, selected.data());
    selected.resize(static_cast<size_t>(n_sel));
    return selected;
}

Result<HeadCalibration> choose_head_config(const HeadStatistic& st, const CalibrationOptions& opt) {
    TCA_RETURN_IF_ERROR(validate(opt));
    const int64_t b = opt.sparse.block_size;
    if (st.n_queries < 1 || st.n_blocks < 1 ||
        static_cast<int64_t>(st.after.size()) != st.n_blocks * b) {
        return invalid_argument("calibration: statistic without candidate blocks or queries "
                                "(%lld blocks, %lld queries)", static_cast<long long>(st.n_blocks),
                                static_cast<long long>(st.n_queries));
    }
    const std::vector<HeadConfig> cands = calibration_candidates(opt.sparse.block_size, opt.n_candidates);
    HeadCalibration out;
    out.n_tokens = st.n_tokens;
    out.n_blocks = st.n_blocks;
    out.n_queries = st.n_queries;
    const auto nq = static_cast<double>(st.n_queries);
    double far = 0.0;  // sum_k after[k]: the attention mass that leaves the band
    for (const double x : st.after) far += x;
    const bool far_stat = opt.statistic == MassStatistic::kFar;
    for (const HeadConfig& c : cands) {
        TCA_ASSIGN_OR_RETURN(const std::vector<int32_t> sel,
                             select_positions(st.importance, st.n_blocks, c, opt.sparse));
        double kept = 0.0;
        for (const int32_t pos : sel) kept += st.after[static_cast<size_t>(pos)];
        out.retained.push_back(far_stat ? (far > 0.0 ? kept / far : 1.0) : (st.band_sum + kept) / nq);
        out.n_selected.push_back(static_cast<int64_t>(sel.size()));
    }
    // Valid: a(p) >= tau and the budget floor; the fewest selected tokens wins, ties to the
    // lower index (M8 step 3).
    for (size_t i = 0; i < cands.size(); ++i) {
        if (out.retained[i] < opt.sparse.tau) continue;
        if (expected_keep_fraction(cands[i].p, opt.sparse.block_size) < opt.min_keep) continue;
        if (out.chosen < 0 || out.n_selected[i] < out.n_selected[static_cast<size_t>(out.chosen)]) {
            out.chosen = static_cast<int>(i);
        }
    }
    if (out.chosen >= 0) {
        out.config = cands[static_cast<size_t>(out.chosen)];
        out.retained_mass = out.retained[static_cast<size_t>(out.chosen)];
    } else {
        out.config = dense_config(opt.sparse.block_size);
        out.retained_mass = far_stat ? 1.0 : (st.band_sum + far) / nq;
    }
    out.kept_fraction = expected_keep_fraction(out.config.p, opt.sparse.block_size);
    return out;
}

Result<std::vector<HeadCalibration>> calibrate_layer(const TensorView& q, const TensorView& k,
                                                     const CalibrationOptions& opt) {
    TCA_ASSIGN_OR_RETURN(const std::vector<HeadStatistic> stats, layer_statistics(q, k, opt));
    std::vector<Result<HeadCalibration>> res(stats.size(), Result<HeadCalibration>(invalid_argument("unset")));
    thread_pool().parallel_for(static_cast<int64_t>(stats.size()), [&](int64_t h, int) {
        res[static_cast<size_t>(h)] = choose_head_config(stats[static_cast<size_t>(h)], opt);
    });
    std::vector<HeadCalibration> out;
    for (auto& r : res) {
        if (!r.ok()) return r.status();
        out.push_back(std::move(r).value());
    }
    return out;
}

}  // namespace tca
