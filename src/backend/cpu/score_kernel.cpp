// The two score passes of score_kernel.h. Cost is tiny next to attention (n_obs * G rows
// against L keys, twice), so clarity wins over the last few percent here.
#include "backend/cpu/score_kernel.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tca::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// st[j][0..w) = scores of keys k0 + j (j < nk) against lanes [c0, c0 + w), masked to -inf
// where k0 + j >= hi[lane].
void score_tile(const ScoreRows& q, const void* k, DType dt, int64_t stride, int64_t k0,
                int64_t nk, int64_t c0, int64_t w, ScoreScratch& sc) {
    const int64_t d = q.head_dim;
    int64_t ldk = 0;
    const float* kt = rows_f32(k, dt, stride, k0, nk, d, sc.kbuf.data(), &ldk);
    float* st = sc.st.data();
    qk_tile(kt, ldk, nk, q.q_t + c0, q.ld, d, 0, w, st, kScoreLanes);
    for (int64_t lane = 0; lane < w; ++lane) {
        const int64_t hi = q.hi[c0 + lane];
        if (hi >= k0 + nk) continue;
        for (int64_t j = std::max<int64_t>(0, hi - k0); j < nk; ++j) st[j * kScoreLanes + lane] = kNegInf;
    }
}

}  // namespace

void reserve_score_scratch(ScoreScratch& sc, int64_t d) {
    sc.st.reserve(static_cast<size_t>(kTileKeys * kScoreLanes));
    sc.kbuf.reserve(static_cast<size_t>(kTileKeys * d));
}

void row_stats(const ScoreRows& q, const void* k, DType dt, int64_t stride, int64_t k0,
               int64_t k1, float* m, float* l, ScoreScratch& sc) {
    reserve_score_scratch(sc, q.head_dim);
    const float* st = sc.st.data();
    for (int64_t c0 = 0; c0 < q.ld; c0 += kScoreLanes) {
        const int64_t w = std::min(kScoreLanes, q.ld - c0);
        for (int64_t j0 = k0; j0 < k1; j0 += kTileKeys) {
            const int64_t nk = std::min(kTileKeys, k1 - j0);
            score_tile(q, k, dt, stride, j0, nk, c0, w, sc);
            for (int64_t lane = 0; lane < w; lane += 8) {
                float* ml = m + c0 + lane;
                float* ll = l + c0 + lane;
#if TCA_CPU_AVX2
                const __m256 neg_inf = _mm256_set1_ps(kNegInf);
                __m256 mx = neg_inf;
                for (int64_t j = 0; j < nk; ++j) mx = _mm256_max_ps(mx, _mm256_loadu_ps(st + j * kScoreLanes + lane));
                const __m256 m_old = _mm256_loadu_ps(ml);
                const __m256 m_new = _mm256_max_ps(m_old, mx);
                const __m256 m_use = _mm256_blendv_ps(m_new, _mm256_setzero_ps(),
                                                      _mm256_cmp_ps(m_new, neg_inf, _CMP_EQ_OQ));
                __m256 sum = _mm256_setzero_ps();
                for (int64_t j = 0; j < nk; ++j) {
                    sum = _mm256_add_ps(sum, exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(st + j * kScoreLanes + lane), m_use)));
                }
                _mm256_storeu_ps(ll, _mm256_fmadd_ps(_mm256_loadu_ps(ll), exp2_ps(_mm256_sub_ps(m_old, m_use)), sum));
                _mm256_storeu_ps(ml, m_new);
#else
                for (int64_t x = 0; x < 8; ++x) {
                    float mx = kNegInf;
                    for (int64_t j = 0; j < nk; ++j) mx = std::max(mx, st[j * kScoreLanes + lane + x]);
                    const float m_new = std::max(ml[x], mx);
                    const float m_use = m_new == kNegInf ? 0.0f : m_new;
                    float sum = 0.0f;
                    for (int64_t j = 0; j < nk; ++j) sum += exp2_scalar(st[j * kScoreLanes + lane + x] - m_use);
                    ll[x] = ll[x] * exp2_scalar(ml[x] - m_use) + sum;
                    ml[x] = m_new;
                }
#endif
            }
        }
    }
}

void accumulate_probs(const ScoreRows& q, const void* k, DType dt, int64_t stride, int64_t k0,
                      int64_t k1, const float* m, const float* w, float* out, ScoreScratch& sc) {
    reserve_score_scratch(sc, q.head_dim);
    std::fill(out, out + (k1 - k0), 0.0f);
    const float* st = sc.st.data();
    for (int64_t c0 = 0; c0 < q.ld; c0 += kScoreLanes) {
        const int64_t nl = std::min(kScoreLanes, q.ld - c0);
        for (int64_t j0 = k0; j0 < k1; j0 += kTileKeys) {
            const int64_t nk = std::min(kTileKeys, k1 - j0);
            score_tile(q, k, dt, stride, j0, nk, c0, nl, sc);
            for (int64_t j = 0; j < nk; ++j) {
                const float* s = st + j * kScoreLanes;
#if TCA_CPU_AVX2
                __m256 sum = _mm256_setzero_ps();
                for (int64_t lane = 0; lane < nl; lane += 8) {
                    // m of a lane that saw nothing is -inf; its weight is 0 and s is -inf too.
                    const __m256 ml = _mm256_loadu_ps(m + c0 + lane);
                    const __m256 m_use = _mm256_blendv_ps(
                        ml, _mm256_setzero_ps(), _mm256_cmp_ps(ml, _mm256_set1_ps(kNegInf), _CMP_EQ_OQ));
                    const __m256 p = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s + lane), m_use));
                    sum = _mm256_fmadd_ps(p, _mm256_loadu_ps(w + c0 + lane), sum);
                }
                out[j0 - k0 + j] += hsum_ps(sum);
#else
                float sum = 0.0f;
                for (int64_t lane = 0; lane < nl; ++lane) {
                    const float ml = m[c0 + lane] == kNegInf ? 0.0f : m[c0 + lane];
                    sum += exp2_scalar(s[lane] - ml) * w[c0 + lane];
                }
                out[j0 - k0 + j] += sum;
#endif
            }
        }
    }
}

}  // namespace tca::cpu
