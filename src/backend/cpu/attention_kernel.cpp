// AttentionTile (the shared flash-attention inner kernel) and run_attention (work items on the
// thread pool, split-K for few items). Matches ref::attend in src/reference/ref_ops.cpp: one
// softmax over the union of visible keys, f32 compute, zeros for an empty set.
// Both products are 6 x 16 register-blocked FMA kernels (12 accumulators + 2 B + 1 broadcast
// = 15 of 16 ymm registers; 8 loads per 12 FMAs); ~80% of the time is in them. Measured on the
// 2-core EPYC (shared, loaded machine, so also per CPU-second): dense causal G=4, d=128, bf16,
// 1 thread, L=4096: 38 GFLOP/s wall, ~73 GFLOP per CPU-second (14 before naming the
// accumulators: GCC spilled an __m256 array on every k step). TCA sparse prefill keeps the
// same rate (25.9 vs 27.0 GFLOP/s dense at 32K), so its speedup tracks the FLOP ratio.
#include "backend/cpu/attention_kernel.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/thread_pool.h"

namespace tca::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// C[RM][NV*8] (+)= A[RM][kdim] . B[kdim][NV*8]; A element (r, k) at a[r * a_rs + k * a_ks],
// B row k at b + k * ldb. c_scale == nullptr: C = A.B; else C = C * c_scale[r] + A.B.
template <int RM, int NV>
void gemm_kernel(const float* a, int64_t a_rs, int64_t a_ks, const float* b, int64_t ldb,
                 int64_t kdim, float* c, int64_t ldc, const float* c_scale) {
#if TCA_CPU_AVX2
    // Named accumulators (GCC spills an __m256 array to the stack on every iteration);
    // the unused ones of RM < 6 or NV == 1 are compiled away.
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
#define TCA_GEMM_ROWS(X) X(0, c00, c01) X(1, c10, c11) X(2, c20, c21) X(3, c30, c31) X(4, c40, c41) X(5, c50, c51)
#define TCA_GEMM_INIT(r, x0, x1)                                                          \
    if constexpr (RM > r) {                                                               \
        if (c_scale) {                                                                    \
            const __m256 s = _mm256_set1_ps(c_scale[r]);                                  \
            x0 = _mm256_mul_ps(_mm256_loadu_ps(c + r * ldc), s);                          \
            if constexpr (NV > 1) x1 = _mm256_mul_ps(_mm256_loadu_ps(c + r * ldc + 8), s); \
        }                                                                                 \
    }
    TCA_GEMM_ROWS(TCA_GEMM_INIT)
#undef TCA_GEMM_INIT
    const float* ak = a;
    const float* bk = b;
    for (int64_t k = 0; k < kdim; ++k, ak += a_ks, bk += ldb) {
        const __m256 b0 = _mm256_loadu_ps(bk);
        const __m256 b1 = NV > 1 ? _mm256_loadu_ps(bk + 8) : b0;
#define TCA_GEMM_STEP(r, x0, x1)                                       \
    if constexpr (RM > r) {                                            \
        const __m256 av = _mm256_broadcast_ss(ak + r * a_rs);          \
        x0 = _mm256_fmadd_ps(av, b0, x0);                              \
        if constexpr (NV > 1) x1 = _mm256_fmadd_ps(av, b1, x1);        \
    }
        TCA_GEMM_ROWS(TCA_GEMM_STEP)
#undef TCA_GEMM_STEP
    }
#define TCA_GEMM_STORE(r, x0, x1)                                       \
    if constexpr (RM > r) {                                             \
        _mm256_storeu_ps(c + r * ldc, x0);                              \
        if constexpr (NV > 1) _mm256_storeu_ps(c + r * ldc + 8, x1);    \
    }
    TCA_GEMM_ROWS(TCA_GEMM_STORE)
#undef TCA_GEMM_STORE
#undef TCA_GEMM_ROWS
#else
    float acc[RM][NV * 8];
    for (int r = 0; r < RM; ++r) {
        for (int x = 0; x < NV * 8; ++x) acc[r][x] = c_scale ? c[r * ldc + x] * c_scale[r] : 0.0f;
    }
    for (int64_t k = 0; k < kdim; ++k) {
        const float* bk = b + k * ldb;
        for (int r = 0; r < RM; ++r) {
            const float av = a[r * a_rs + k * a_ks];
            for (int x = 0; x < NV * 8; ++x) acc[r][x] = std::fma(av, bk[x], acc[r][x]);
        }
    }
    for (int r = 0; r < RM; ++r) {
        for (int x = 0; x < NV * 8; ++x) c[r * ldc + x] = acc[r][x];
    }
#endif
}

using GemmFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*,
                        int64_t, const float*);
constexpr int kMr = 6;
constexpr GemmFn kGemm[kMr][2] = {
    {gemm_kernel<1, 1>, gemm_kernel<1, 2>}, {gemm_kernel<2, 1>, gemm_kernel<2, 2>},
    {gemm_kernel<3, 1>, gemm_kernel<3, 2>}, {gemm_kernel<4, 1>, gemm_kernel<4, 2>},
    {gemm_kernel<5, 1>, gemm_kernel<5, 2>}, {gemm_kernel<6, 1>, gemm_kernel<6, 2>},
};

// acc[r0..r1) = acc * alpha + P . V: P^T stored as st[j * ldst + r], V rows at v + j * ldv.
void pv_tile(const float* st, int64_t ldst, const float* v, int64_t ldv, int64_t nk, int64_t d,
             int64_t r0, int64_t r1, const float* alpha, float* acc) {
    for (int64_t r = r0; r < r1; r += kMr) {
        const int64_t rm = std::min<int64_t>(kMr, r1 - r);
        for (int64_t c = 0; c < d; c += 16) {
            const int nv = d - c >= 16 ? 2 : 1;
            kGemm[rm - 1][nv - 1](st + r, 1, ldst, v + c, ldv, nk, acc + r * d + c, d, alpha + r);
        }
    }
}

// st[j * ldst + r] = k_j . q_r for keys j < nk and N rows r of q ([N][d], row-major): the
// scores of a tile of at most kDotRows query rows (a decode step: the G query heads of one
// token). The 8-lane kernel (qk_tile) computes 8 rows whatever the tile holds, 8x the work for
// one row; here each key row is read once and dotted with every query row.
template <int N>
void qk_rows(const float* k, int64_t ldk, int64_t nk, const float* q, int64_t d, float* st, int64_t ldst) {
#if TCA_CPU_AVX2
    const int64_t d8 = d / 8 * 8;
    for (int64_t j = 0; j < nk; ++j) {
        const float* kr = k + j * ldk;
        // Named accumulators (an __m256 array is spilled by GCC), unused ones compiled away.
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t c = 0; c < d8; c += 8) {
            const __m256 kv = _mm256_loadu_ps(kr + c);
            a0 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q + c), a0);
            if constexpr (N > 1) a1 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q + d + c), a1);
            if constexpr (N > 2) a2 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q + 2 * d + c), a2);
            if constexpr (N > 3) a3 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q + 3 * d + c), a3);
        }
        float sums[4] = {hsum_ps(a0), N > 1 ? hsum_ps(a1) : 0.0f, N > 2 ? hsum_ps(a2) : 0.0f,
                         N > 3 ? hsum_ps(a3) : 0.0f};
        for (int r = 0; r < N; ++r) {
            for (int64_t c = d8; c < d; ++c) sums[r] = std::fma(kr[c], q[r * d + c], sums[r]);
            st[j * ldst + r] = sums[r];
        }
    }
#else
    for (int64_t j = 0; j < nk; ++j) {
        for (int r = 0; r < N; ++r) {
            float sum = 0.0f;
            for (int64_t c = 0; c < d; ++c) sum = std::fma(k[j * ldk + c], q[r * d + c], sum);
            st[j * ldst + r] = sum;
        }
    }
#endif
}

using QkRowsFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t);
static_assert(kDotRows == 4, "one qk_rows instance per row count");
constexpr QkRowsFn kQkRows[kDotRows] = {qk_rows<1>, qk_rows<2>, qk_rows<3>, qk_rows<4>};

// Software prefetch of K/V rows [r0, r1) (the next tile) into L2 while this tile computes:
// long contexts stream K/V from DRAM (64K keys x 128 dims bf16 = 16 MiB per KV head for K).
void prefetch_rows(const KvRows& kv, int64_t r0, int64_t r1, int64_t d) {
#if TCA_CPU_AVX2
    const int64_t es = static_cast<int64_t>(dtype_size(kv.dtype));
    const int64_t row_bytes = d * es;
    for (int64_t r = r0; r < r1; ++r) {
        const char* kr = static_cast<const char*>(kv.k) + r * kv.k_stride * es;
        const char* vr = static_cast<const char*>(kv.v) + r * kv.v_stride * es;
        for (int64_t off = 0; off < row_bytes; off += 64) {
            _mm_prefetch(kr + off, _MM_HINT_T1);
            _mm_prefetch(vr + off, _MM_HINT_T1);
        }
    }
#else
    (void)kv, (void)r0, (void)r1, (void)d;
#endif
}

}  // namespace

KvRows kv_rows(const TensorView& k, const TensorView& v, int64_t head) {
    KvRows r;
    r.dtype = k.dtype;
    r.k = static_cast<const char*>(k.data) + head * k.stride[0] * static_cast<int64_t>(dtype_size(k.dtype));
    r.v = static_cast<const char*>(v.data) + head * v.stride[0] * static_cast<int64_t>(dtype_size(v.dtype));
    r.k_stride = k.stride[1];
    r.v_stride = v.stride[1];
    return r;
}

const float* rows_f32(const void* base, DType dt, int64_t stride, int64_t r0, int64_t n,
                      int64_t d, float* scratch, int64_t* ld) {
    if (dt == DType::kF32) {
        *ld = stride;
        return static_cast<const float*>(base) + r0 * stride;
    }
    for (int64_t j = 0; j < n; ++j) convert_row_f32(base, (r0 + j) * stride, dt, d, scratch + j * d);
    *ld = d;
    return scratch;
}

void qk_tile(const float* k, int64_t ldk, int64_t nk, const float* q_t, int64_t ldq, int64_t d,
             int64_t lane0, int64_t lane1, float* st, int64_t ldst) {
    for (int64_t lane = lane0; lane < lane1; lane += 16) {
        const int nv = lane1 - lane >= 16 ? 2 : 1;
        for (int64_t j = 0; j < nk; j += kMr) {
            const int64_t rm = std::min<int64_t>(kMr, nk - j);
            kGemm[rm - 1][nv - 1](k + j * ldk, ldk, 1, q_t + lane, ldq, d, st + j * ldst + lane,
                                  ldst, nullptr);
        }
    }
}

void AttentionTile::reserve(int64_t n_rows, int64_t head_dim) {
    const size_t lanes = static_cast<size_t>((n_rows + 7) / 8 * 8), d = static_cast<size_t>(head_dim);
    q_t_.reserve(lanes * d);
    q_rows_.reserve(static_cast<size_t>(kDotRows) * d);
    st_.reserve(static_cast<size_t>(kTileKeys) * lanes);
    k_buf_.reserve(static_cast<size_t>(kTileKeys) * d);
    v_buf_.reserve(static_cast<size_t>(kTileKeys) * d);
    acc_.reserve(lanes * d);
    for (AlignedBuffer<float>* b : {&m_, &l_, &alpha_}) b->reserve(lanes);
    lo_.reserve(lanes);
    hi_.reserve(lanes);
}

void AttentionTile::begin(int64_t n_rows, int64_t head_dim) {
    reserve(n_rows, head_dim);
    n_rows_ = n_rows;
    d_ = head_dim;
    lanes_ = (n_rows + 7) / 8 * 8;
    const size_t lanes = static_cast<size_t>(lanes_), d = static_cast<size_t>(head_dim);
    std::fill_n(q_t_.data(), lanes * d, 0.0f);
    std::fill_n(acc_.data(), lanes * d, 0.0f);
    std::fill_n(m_.data(), lanes, kNegInf);
    std::fill_n(l_.data(), lanes, 0.0f);
    std::fill_n(alpha_.data(), lanes, 1.0f);
    std::fill_n(lo_.data(), lanes, 0);
    std::fill_n(hi_.data(), lanes, 0);
}

void AttentionTile::attend(const KvRows& kv, int64_t kb, int64_t ke) {
    const int64_t n = n_rows_, ld = lanes_, d = d_;
    const int32_t* lo = lo_.data();
    const int32_t* hi = hi_.data();
    // Lanes >= n_rows keep lo = hi = 0 from begin() unless a caller wrote them: clear them.
    for (int64_t r = n; r < ld; ++r) lo_.data()[r] = hi_.data()[r] = 0;
    int64_t lo_max = 0, hi_min = std::numeric_limits<int64_t>::max();
    for (int64_t r = 0; r < n; ++r) {
        lo_max = std::max<int64_t>(lo_max, lo[r]);
        hi_min = std::min<int64_t>(hi_min, hi[r]);
    }
    float* st = st_.data();
    float* m = m_.data();
    float* l = l_.data();
    float* alpha = alpha_.data();
    // Few rows: their queries row-major for qk_rows (the padding lanes' scores stay 0).
    const bool by_rows = n <= kDotRows;
    if (by_rows) {
        for (int64_t r = 0; r < n; ++r) {
            for (int64_t c = 0; c < d; ++c) q_rows_.data()[r * d + c] = q_t_.data()[c * ld + r];
        }
    }
    for (int64_t k0 = kb; k0 < ke; k0 += kTileKeys) {
        const int64_t nk = std::min(kTileKeys, ke - k0), k1 = k0 + nk;
        int64_t r_first = -1, r_last = -1;
        for (int64_t r = 0; r < n; ++r) {
            if (hi[r] > k0 && lo[r] < k1 && lo[r] < hi[r]) {
                if (r_first < 0) r_first = r;
                r_last = r;
            }
        }
        if (r_first < 0) continue;  // no row sees this tile
        const int64_t lane0 = r_first / 8 * 8, lane1 = (r_last + 8) / 8 * 8;
        int64_t ldk = 0, ldv = 0;
        const float* kt = rows_f32(kv.k, kv.dtype, kv.k_stride, k0, nk, d, k_buf_.data(), &ldk);
        const float* vt = rows_f32(kv.v, kv.dtype, kv.v_stride, k0, nk, d, v_buf_.data(), &ldv);
        prefetch_rows(kv, k1, std::min(ke, k1 + kTileKeys), d);
        if (by_rows) {
            kQkRows[n - 1](kt, ldk, nk, q_rows_.data(), d, st, ld);
            // Padding lanes score 0, as with the zero queries of qk_tile (finite, never used).
            for (int64_t j = 0; j < nk; ++j) std::fill(st + j * ld + n, st + (j + 1) * ld, 0.0f);
        } else {
            qk_tile(kt, ldk, nk, q_t_.data(), ld, d, lane0, lane1, st, ld);
        }
        const bool interior = k0 >= lo_max && k1 <= hi_min;
#if TCA_CPU_AVX2
        const __m256 neg_inf = _mm256_set1_ps(kNegInf);
        if (!interior) {
            for (int64_t lane = lane0; lane < lane1; lane += 8) {
                const __m256i vlo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo + lane));
                const __m256i vhi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi + lane));
                for (int64_t j = 0; j < nk; ++j) {
                    const __m256i key = _mm256_set1_epi32(static_cast<int32_t>(k0 + j));
                    // visible: lo <= key < hi
                    const __m256i in = _mm256_andnot_si256(_mm256_cmpgt_epi32(vlo, key),
                                                           _mm256_cmpgt_epi32(vhi, key));
                    float* s = st + j * ld + lane;
                    _mm256_storeu_ps(s, _mm256_blendv_ps(neg_inf, _mm256_loadu_ps(s),
                                                         _mm256_castsi256_ps(in)));
                }
            }
        }
        for (int64_t lane = lane0; lane < lane1; lane += 8) {
            __m256 mx = neg_inf;
            for (int64_t j = 0; j < nk; ++j) mx = _mm256_max_ps(mx, _mm256_loadu_ps(st + j * ld + lane));
            const __m256 m_old = _mm256_loadu_ps(m + lane);
            const __m256 m_new = _mm256_max_ps(m_old, mx);
            // A row with nothing visible yet subtracts 0 so exp2(-inf - 0) = 0, never NaN.
            const __m256 m_use =
                _mm256_blendv_ps(m_new, _mm256_setzero_ps(), _mm256_cmp_ps(m_new, neg_inf, _CMP_EQ_OQ));
            const __m256 a = exp2_ps(_mm256_sub_ps(m_old, m_use));
            __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
            int64_t j = 0;
            for (; j + 1 < nk; j += 2) {
                float* s0 = st + j * ld + lane;
                float* s1 = s0 + ld;
                const __m256 p0 = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s0), m_use));
                const __m256 p1 = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s1), m_use));
                _mm256_storeu_ps(s0, p0);
                _mm256_storeu_ps(s1, p1);
                sum0 = _mm256_add_ps(sum0, p0);
                sum1 = _mm256_add_ps(sum1, p1);
            }
            if (j < nk) {
                float* s0 = st + j * ld + lane;
                const __m256 p0 = exp2_ps(_mm256_sub_ps(_mm256_loadu_ps(s0), m_use));
                _mm256_storeu_ps(s0, p0);
                sum0 = _mm256_add_ps(sum0, p0);
            }
            const __m256 l_new = _mm256_fmadd_ps(_mm256_loadu_ps(l + lane), a, _mm256_add_ps(sum0, sum1));
            _mm256_storeu_ps(l + lane, l_new);
            _mm256_storeu_ps(m + lane, m_new);
            _mm256_storeu_ps(alpha + lane, a);
        }
#else
        for (int64_t lane = lane0; lane < lane1; ++lane) {
            if (!interior) {
                for (int64_t j = 0; j < nk; ++j) {
                    if (k0 + j < lo[lane] || k0 + j >= hi[lane]) st[j * ld + lane] = kNegInf;
                }
            }
            float mx = kNegInf;
            for (int64_t j = 0; j < nk; ++j) mx = std::max(mx, st[j * ld + lane]);
            const float m_new = std::max(m[lane], mx);
            const float m_use = m_new == kNegInf ? 0.0f : m_new;
            const float a = exp2_scalar(m[lane] - m_use);
            float sum = 0.0f;
            for (int64_t j = 0; j < nk; ++j) {
                const float p = exp2_scalar(st[j * ld + lane] - m_use);
                st[j * ld + lane] = p;
                sum += p;
            }
            l[lane] = l[lane] * a + sum;
            m[lane] = m_new;
            alpha[lane] = a;
        }
#endif
        pv_tile(st, ld, vt, ldv, nk, d, lane0, std::min(lane1, n), alpha, acc_.data());
    }
}

void AttentionTile::finalize_row(int64_t r, float* out) const {
    const float lr = l_.data()[r];
    const float inv = lr > 0.0f ? 1.0f / lr : 0.0f;
    const float* a = acc_.data() + r * d_;
    for (int64_t c = 0; c < d_; ++c) out[c] = a[c] * inv;
}

namespace {

struct WorkItem {
    int64_t base;   // kv_head * n_tiles + query tile
    int64_t split;  // piece of the key range
    int64_t cost;   // visible (query, key) pairs, for ordering
};

}  // namespace

void run_attention(const AttentionProblem& p) {
    const int64_t hkv = p.n_kv_heads, hq = p.q.shape[0], n_q = p.q.shape[1], d = p.q.shape[2];
    const int64_t g = hq / hkv;
    if (n_q == 0 || hq == 0) return;
    const int64_t tq = std::max<int64_t>(1, kTargetRows / g);
    const int64_t n_tiles = (n_q + tq - 1) / tq;
    const int64_t n_base = hkv * n_tiles;
    const float qscale = p.scale * kLog2e;

    // Scratch of the calling thread, reused across calls: assign/clear/resize within the
    // capacity reached by earlier calls of the same shape allocate nothing. Bound to local
    // references: inside the parallel_for lambdas a thread_local name would denote the pool
    // thread's own (empty) instance.
    thread_local std::vector<int64_t> t_cost;
    thread_local std::vector<WorkItem> t_items;
    thread_local std::vector<float> t_partial;
    thread_local std::vector<AttentionTile> t_tiles;  // [pool thread index]
    std::vector<int64_t>& cost = t_cost;
    std::vector<WorkItem>& items = t_items;
    std::vector<float>& partial = t_partial;
    std::vector<AttentionTile>& tiles = t_tiles;

    // Cost of each (KV head, query tile) and the longest key span of one segment in tiles.
    cost.assign(static_cast<size_t>(n_base), 0);
    int64_t max_span_tiles = 0;
    for (int64_t b = 0; b < n_base; ++b) {
        const int64_t kvh = b / n_tiles, t0 = (b % n_tiles) * tq, t1 = std::min(n_q, t0 + tq);
        for (const AttentionSegment& seg : p.segments) {
            int64_t kb = std::numeric_limits<int64_t>::max(), ke = 0;
            for (int64_t t = t0; t < t1; ++t) {
                const int64_t lo = seg.lo[static_cast<size_t>(kvh * n_q + t)];
                const int64_t hi = seg.hi[static_cast<size_t>(kvh * n_q + t)];
                if (hi > lo) {
                    cost[static_cast<size_t>(b)] += hi - lo;
                    kb = std::min(kb, lo);
                    ke = std::max(ke, hi);
                }
            }
            if (ke > kb) max_span_tiles = std::max(max_span_tiles, (ke - kb + kTileKeys - 1) / kTileKeys);
        }
    }

    ThreadPool& pool = thread_pool();
    const int64_t n_threads = pool.n_threads();
    // Split-K when there are too few items to keep every thread busy (decoding, short chunks):
    // at least 4 items per thread, each piece at least 2 key tiles.
    int64_t n_split = 1;
    if (n_threads > 1 && n_base < 4 * n_threads) {
        n_split = std::min((4 * n_threads + n_base - 1) / n_base, std::max<int64_t>(1, max_span_tiles / 2));
    }
    items.clear();
    for (int64_t b = 0; b < n_base; ++b) {
        for (int64_t s = 0; s < n_split; ++s) items.push_back({b, s, cost[static_cast<size_t>(b)]});
    }
    // Most expensive first; equal costs keep their (base, split) order. std::sort with that
    // tie-break gives the order std::stable_sort would, without its temporary buffer.
    std::sort(items.begin(), items.end(), [](const WorkItem& x, const WorkItem& y) {
        if (x.cost != y.cost) return x.cost > y.cost;
        return x.base != y.base ? x.base < y.base : x.split < y.split;
    });

    // Partial states of split items: per (base, split) m and l [lanes] then acc [rows][d].
    const int64_t max_rows = tq * g, max_lanes = (max_rows + 7) / 8 * 8;
    const int64_t part_stride = 2 * max_lanes + max_rows * d;
    if (n_split > 1) partial.resize(static_cast<size_t>(n_base * n_split * part_stride));

    // One tile per pool thread index, grown here on the calling thread: which pool thread
    // claims which item varies from call to call, so lazily grown per-thread tiles could
    // allocate on any later call.
    if (tiles.size() < static_cast<size_t>(n_threads)) tiles.resize(static_cast<size_t>(n_threads));
    for (AttentionTile& t : tiles) t.reserve(max_rows, d);

    const float* qdata = p.q.ptr<float>();
    float* odata = p.out.ptr<float>();
    pool.parallel_for(static_cast<int64_t>(items.size()), [&](int64_t item, int thread) {
        const WorkItem& w = items[static_cast<size_t>(item)];
        AttentionTile& tile = tiles[static_cast<size_t>(thread)];
        const int64_t kvh = w.base / n_tiles, t0 = (w.base % n_tiles) * tq;
        const int64_t nt = std::min(tq, n_q - t0), rows = nt * g;
        tile.begin(rows, d);
        const int64_t ld = tile.lanes();
        float* q_t = tile.q_t();
        for (int64_t t = 0; t < nt; ++t) {
            for (int64_t gi = 0; gi < g; ++gi) {
                const float* src = qdata + (kvh * g + gi) * p.q.stride[0] + (t0 + t) * p.q.stride[1];
                const int64_t r = t * g + gi;
                for (int64_t c = 0; c < d; ++c) q_t[c * ld + r] = src[c] * qscale;
            }
        }
        for (const AttentionSegment& seg : p.segments) {
            int64_t kb = std::numeric_limits<int64_t>::max(), ke = 0;
            for (int64_t t = 0; t < nt; ++t) {
                const int32_t lo = seg.lo[static_cast<size_t>(kvh * n_q + t0 + t)];
                const int32_t hi = seg.hi[static_cast<size_t>(kvh * n_q + t0 + t)];
                for (int64_t gi = 0; gi < g; ++gi) {
                    tile.lo()[t * g + gi] = lo;
                    tile.hi()[t * g + gi] = hi;
                }
                if (hi > lo) {
                    kb = std::min<int64_t>(kb, lo);
                    ke = std::max<int64_t>(ke, hi);
                }
            }
            if (ke <= kb) continue;
            const int64_t span_tiles = (ke - kb + kTileKeys - 1) / kTileKeys;
            const int64_t a = kb + (w.split * span_tiles / n_split) * kTileKeys;
            const int64_t e = std::min(ke, kb + ((w.split + 1) * span_tiles / n_split) * kTileKeys);
            if (e > a) tile.attend(seg.kv[static_cast<size_t>(kvh)], a, e);
        }
        if (n_split == 1) {
            for (int64_t r = 0; r < rows; ++r) {
                const int64_t t = r / g, gi = r % g;
                tile.finalize_row(r, odata + (kvh * g + gi) * p.out.stride[0] + (t0 + t) * p.out.stride[1]);
            }
            return;
        }
        float* part = partial.data() + (w.base * n_split + w.split) * part_stride;
        std::copy_n(tile.m(), rows, part);
        std::copy_n(tile.l(), rows, part + max_lanes);
        std::copy_n(tile.acc(), rows * d, part + 2 * max_lanes);
    });
    if (n_split == 1) return;

    // Merge the pieces: M = max m_s, out = sum_s 2^(m_s - M) acc_s / sum_s 2^(m_s - M) l_s.
    pool.parallel_for(n_base, [&](int64_t b, int) {
        const int64_t kvh = b / n_tiles, t0 = (b % n_tiles) * tq;
        const int64_t nt = std::min(tq, n_q - t0), rows = nt * g;
        const float* parts = partial.data() + b * n_split * part_stride;
        for (int64_t r = 0; r < rows; ++r) {
            float mmax = kNegInf;
            for (int64_t s = 0; s < n_split; ++s) mmax = std::max(mmax, parts[s * part_stride + r]);
            const int64_t t = r / g, gi = r % g;
            float* out = odata + (kvh * g + gi) * p.out.stride[0] + (t0 + t) * p.out.stride[1];
            std::fill_n(out, d, 0.0f);
            if (mmax == kNegInf) continue;
            float lsum = 0.0f;
            for (int64_t s = 0; s < n_split; ++s) {
                const float* part = parts + s * part_stride;
                if (part[r] == kNegInf) continue;
                const float w = exp2_scalar(part[r] - mmax);
                lsum += w * part[max_lanes + r];
                const float* acc = part + 2 * max_lanes + r * d;
                for (int64_t c = 0; c < d; ++c) out[c] += w * acc[c];
            }
            const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
            for (int64_t c = 0; c < d; ++c) out[c] *= inv;
        }
    });
}

}  // namespace tca::cpu
