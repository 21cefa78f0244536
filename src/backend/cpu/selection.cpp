// Selection ops on the CPU (tca-method M2-M5): token_importance (two score passes of
// score_kernel.h, work items = (KV head, key chunk) on the thread pool), block_score,
// block_budget and token_select (O(L) per KV head, parallel over KV heads). Each matches its
// ref:: twin in src/reference/ref_ops.cpp, ties included: ranks tie to the lower block index,
// selections to the lower position. Measured at 64K tokens (w 4096, b 128, 20% keep, G=4,
// d=128, bf16, 2 threads): importance 76 ms + score/budget/select 1.3 ms + gather 45 ms =
// 0.11% of TCA prefill (n_obs * G rows against L keys vs L * (|G| + w) per query head).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/score_kernel.h"
#include "core/thread_pool.h"

namespace tca::cpu {
namespace {

constexpr int64_t kImportanceChunk = 2048;  // keys per token_importance work item

int32_t& i32_at(const TensorView& t, int64_t i0, int64_t i1) {
    return t.ptr<int32_t>()[i0 * t.stride[0] + i1 * t.stride[1]];
}
float& f32_at(const TensorView& t, int64_t i0, int64_t i1) {
    return t.ptr<float>()[i0 * t.stride[0] + i1 * t.stride[1]];
}

}  // namespace

Status token_importance(const TokenImportanceParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_obs = p.q.shape[1], d = p.q.shape[2];
    const int64_t hkv = p.k.shape[0], n_kv = p.k.shape[1], g = hq / hkv;
    const int64_t pos0 = p.q_pos0 < 0 ? n_kv - n_obs : p.q_pos0;
    const float qscale = effective_scale(p.scale, d) * kLog2e;
    // Rows r = t * G + g; every key >= pos0 + n_obs is seen by no row and scores 0.
    const int64_t rows = g * n_obs, ld = (rows + 7) / 8 * 8, k_end = pos0 + n_obs;
    std::vector<float> q_t(static_cast<size_t>(hkv * d * ld), 0.0f);
    std::vector<int32_t> hi(static_cast<size_t>(ld), 0);
    for (int64_t r = 0; r < rows; ++r) hi[static_cast<size_t>(r)] = static_cast<int32_t>(pos0 + r / g + 1);
    for (int64_t h = 0; h < hq; ++h) {
        const int64_t kvh = h / g, gi = h % g;
        float* qt = q_t.data() + kvh * d * ld;
        for (int64_t t = 0; t < n_obs; ++t) {
            const float* src = p.q.ptr<float>() + h * p.q.stride[0] + t * p.q.stride[1];
            for (int64_t c = 0; c < d; ++c) qt[c * ld + t * g + gi] = src[c] * qscale;
        }
    }
    ThreadPool& pool = thread_pool();
    std::vector<ScoreScratch> scratch(static_cast<size_t>(pool.n_threads()));
    const int64_t n_chunks = (k_end + kImportanceChunk - 1) / kImportanceChunk;
    const int64_t n_items = hkv * n_chunks;
    const size_t lanes = static_cast<size_t>(ld);
    std::vector<float> part_m(static_cast<size_t>(n_items) * lanes, -std::numeric_limits<float>::infinity());
    std::vector<float> part_l(static_cast<size_t>(n_items) * lanes, 0.0f);
    auto rows_of = [&](int64_t kvh) {
        ScoreRows q;
        q.q_t = q_t.data() + kvh * d * ld;
        q.hi = hi.data();
        q.ld = ld;
        q.head_dim = d;
        return q;
    };
    auto k_base = [&](int64_t kvh) {
        return static_cast<const char*>(p.k.data) +
               kvh * p.k.stride[0] * static_cast<int64_t>(dtype_size(p.k.dtype));
    };
    pool.parallel_for(n_items, [&](int64_t item, int thread) {
        const int64_t kvh = item / n_chunks, c = item % n_chunks;
        const int64_t k0 = c * kImportanceChunk, k1 = std::min(k_end, k0 + kImportanceChunk);
        row_stats(rows_of(kvh), k_base(kvh), p.k.dtype, p.k.stride[1], k0, k1,
                  part_m.data() + item * ld, part_l.data() + item * ld,
                  scratch[static_cast<size_t>(thread)]);
    });
    // Merge the chunks' statistics: per lane M = max m, L = sum l * 2^(m - M); the weight of
    // a lane is 1 / (L * G * n_obs) so accumulate_probs yields the group and query mean.
    std::vector<float> m(static_cast<size_t>(hkv) * lanes), w(static_cast<size_t>(hkv) * lanes, 0.0f);
    for (int64_t kvh = 0; kvh < hkv; ++kvh) {
        for (int64_t r = 0; r < ld; ++r) {
            float mm = -std::numeric_limits<float>::infinity();
            for (int64_t c = 0; c < n_chunks; ++c) mm = std::max(mm, part_m[static_cast<size_t>((kvh * n_chunks + c) * ld + r)]);
            double l = 0.0;
            for (int64_t c = 0; c < n_chunks && r < rows; ++c) {
                const size_t at = static_cast<size_t>((kvh * n_chunks + c) * ld + r);
                if (part_l[at] > 0.0f) l += static_cast<double>(part_l[at]) * std::exp2(static_cast<double>(part_m[at] - mm));
            }
            m[static_cast<size_t>(kvh * ld + r)] = mm;
            w[static_cast<size_t>(kvh * ld + r)] = l > 0.0 ? static_cast<float>(1.0 / (l * static_cast<double>(rows))) : 0.0f;
        }
    }
    pool.parallel_for(hkv * (n_chunks + 1), [&](int64_t item, int thread) {
        const int64_t kvh = item / (n_chunks + 1), c = item % (n_chunks + 1);
        float* out = &f32_at(p.scores, kvh, 0);
        if (c == n_chunks) {  // keys after every observation query
            std::fill(out + k_end, out + n_kv, 0.0f);
            return;
        }
        const int64_t k0 = c * kImportanceChunk, k1 = std::min(k_end, k0 + kImportanceChunk);
        accumulate_probs(rows_of(kvh), k_base(kvh), p.k.dtype, p.k.stride[1], k0, k1,
                         m.data() + kvh * ld, w.data() + kvh * ld, out + k0,
                         scratch[static_cast<size_t>(thread)]);
    });
    return Status();
}

Status block_score(const BlockScoreParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.scores.shape[0], nb = p.mass.shape[1], b = p.block_size;
    const double alpha = p.alpha;
    thread_pool().parallel_for(hkv, [&](int64_t kvh, int) {
        std::vector<double> mass(static_cast<size_t>(nb)), hhi(static_cast<size_t>(nb));
        double mmax = 0.0;
        const float* s = &f32_at(p.scores, kvh, 0);
        for (int64_t j = 0; j < nb; ++j) {
            double m = 0.0, sq = 0.0;
            for (int64_t i = j * b; i < (j + 1) * b; ++i) {
                const double x = s[i];
                m += x;
                sq += x * x;
            }
            mass[static_cast<size_t>(j)] = m;
            hhi[static_cast<size_t>(j)] = m > 0.0 ? sq / (m * m) : 1.0;
            mmax = std::max(mmax, m);
        }
        for (int64_t j = 0; j < nb; ++j) {
            const double m = mass[static_cast<size_t>(j)], h = hhi[static_cast<size_t>(j)];
            const double mn = p.mass_norm == MassNorm::kMax ? (mmax > 0.0 ? m / mmax : 0.0) : m;
            f32_at(p.mass, kvh, j) = static_cast<float>(m);
            f32_at(p.hhi, kvh, j) = static_cast<float>(h);
            f32_at(p.block_score, kvh, j) = static_cast<float>((1.0 - alpha) * mn + alpha * (1.0 - h));
        }
    });
    return Status();
}

Status block_budget(const BlockBudgetParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.block_score.shape[0], nb = p.block_score.shape[1];
    thread_pool().parallel_for(hkv, [&](int64_t kvh, int) {
        for (int64_t j = 0; j < nb; ++j) {
            const int32_t t = i32_at(p.psi, kvh, j);
            TCA_ASSERT(t >= 0 && t <= p.block_size, "psi entry %d outside [0, %d]", t, p.block_size);
            TCA_ASSERT(j == 0 || i32_at(p.psi, kvh, j - 1) >= t, "psi must not increase");
        }
        // Blocks by h_j descending, ties to the lower j (stable sort of ascending indices).
        std::vector<int64_t> order(static_cast<size_t>(nb));
        std::iota(order.begin(), order.end(), int64_t{0});
        const float* h = &f32_at(p.block_score, kvh, 0);
        const int64_t hs = p.block_score.stride[1];
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return h[a * hs] > h[b * hs]; });
        for (int64_t rank = 0; rank < nb; ++rank) {
            i32_at(p.keep, kvh, order[static_cast<size_t>(rank)]) = i32_at(p.psi, kvh, rank);
        }
    });
    return Status();
}

Status token_select(const TokenSelectParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.scores.shape[0], nb = p.keep.shape[1], b = p.block_size;
    const int64_t n_kv = p.scores.shape[1];
    thread_pool().parallel_for(hkv, [&](int64_t kvh, int) {
        std::vector<int32_t> keep(static_cast<size_t>(nb));
        for (int64_t j = 0; j < nb; ++j) {
            const int32_t t = i32_at(p.keep, kvh, j);
            TCA_ASSERT(t >= 0 && t <= b, "keep[%lld] = %d outside [0, %lld]",
                       static_cast<long long>(j), t, static_cast<long long>(b));
            keep[static_cast<size_t>(j)] = t;
        }
        const int64_t n = select_tokens(&f32_at(p.scores, kvh, 0), n_kv, keep.data(), nb,
                                        static_cast<int>(b), p.pool, p.global, &i32_at(p.selected, kvh, 0));
        p.n_selected.ptr<int32_t>()[kvh * p.n_selected.stride[0]] = static_cast<int32_t>(n);
    });
    return Status();
}

}  // namespace tca::cpu
