// KV movement ops on the CPU (tca-method M7): kv_gather (row copies in the stored dtype,
// parallel over KV heads) and block_compact (group-mean softmax over the oldest local block with
// score_kernel.h, top-t with ties to the lower position, rows moved down in place; parallel over
// KV heads). Match ref::kv_gather and ref::block_compact.
#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/score_kernel.h"
#include "core/thread_pool.h"

namespace tca::cpu {
namespace {

int32_t& i32_at(const TensorView& t, int64_t i0, int64_t i1) {
    return t.ptr<int32_t>()[i0 * t.stride[0] + i1 * t.stride[1]];
}
int32_t& i32_at(const TensorView& t, int64_t i0) { return t.ptr<int32_t>()[i0 * t.stride[0]]; }

// Address of row (head, row) of a 3-d view.
char* row_ptr(const TensorView& t, int64_t head, int64_t row) {
    return static_cast<char*>(t.data) +
           (head * t.stride[0] + row * t.stride[1]) * static_cast<int64_t>(dtype_size(t.dtype));
}

// Per pool thread scratch of block_compact: transposed queries, score statistics, block
// scores and the ranking. Vectors keep their capacity across calls (assign within capacity
// does not allocate).
struct CompactScratch {
    std::vector<float> q_t, m, l, w, score;
    std::vector<int32_t> hi;
    std::vector<int64_t> idx;
    ScoreScratch score_scratch;
};

}  // namespace

Status kv_gather(const KvGatherParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.k.shape[0], n_kv = p.k.shape[1], d = p.k.shape[2];
    const size_t row_bytes = static_cast<size_t>(d) * dtype_size(p.k.dtype);
    thread_pool().parallel_for(hkv, [&](int64_t kvh, int) {
        const int64_t n = i32_at(p.n_positions, kvh);
        TCA_ASSERT(n >= 0 && n <= p.positions.shape[1] && n <= p.k_out.shape[1],
                   "kv_gather: n_positions %lld exceeds a capacity", static_cast<long long>(n));
        int64_t prev = -1;
        for (int64_t s = 0; s < n; ++s) {
            const int64_t pos = i32_at(p.positions, kvh, s);
            TCA_ASSERT(pos > prev && pos < n_kv, "kv_gather: position %lld not ascending within [0, %lld)",
                       static_cast<long long>(pos), static_cast<long long>(n_kv));
            prev = pos;
            std::memcpy(row_ptr(p.k_out, kvh, s), row_ptr(p.k, kvh, pos), row_bytes);
            std::memcpy(row_ptr(p.v_out, kvh, s), row_ptr(p.v, kvh, pos), row_bytes);
            i32_at(p.slot_pos, kvh, s) = static_cast<int32_t>(pos);
        }
    });
    return Status();
}

Status block_compact(const BlockCompactParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_q = p.q.shape[1], hkv = p.k_cache.shape[0], g = hq / hkv;
    const int64_t d = p.k_cache.shape[2], b = p.block_size;
    const float qscale = effective_scale(p.scale, d) * kLog2e;
    const size_t row_bytes = static_cast<size_t>(d) * dtype_size(p.k_cache.dtype);
    const int64_t rows = g * n_q, ld = (rows + 7) / 8 * 8;
    ThreadPool& pool = thread_pool();
    // One scratch per pool thread index, owned by the calling thread and sized here (not by
    // whichever pool thread first claims a head), so calls after the first allocate nothing.
    // (A local reference: in the lambda the thread_local's name would be the pool thread's.)
    thread_local std::vector<CompactScratch> t_scratch;
    std::vector<CompactScratch>& scratch = t_scratch;
    if (scratch.size() < static_cast<size_t>(pool.n_threads())) {
        scratch.resize(static_cast<size_t>(pool.n_threads()));
    }
    for (CompactScratch& s : scratch) {
        s.q_t.reserve(static_cast<size_t>(d * ld));
        for (std::vector<float>* v : {&s.m, &s.l, &s.w}) v->reserve(static_cast<size_t>(ld));
        s.hi.reserve(static_cast<size_t>(ld));
        s.score.reserve(static_cast<size_t>(b));
        s.idx.reserve(static_cast<size_t>(b));
        reserve_score_scratch(s.score_scratch, d);
    }
    pool.parallel_for(hkv, [&](int64_t kvh, int thread) {
        const int64_t keep = i32_at(p.keep, kvh);
        if (keep < 0) return;
        const int64_t g0 = i32_at(p.n_global, kvh), n = i32_at(p.n_slots, kvh);
        if (n - g0 < p.min_local) return;
        TCA_ASSERT(keep <= b && g0 >= 0 && n - g0 >= b && n <= p.k_cache.shape[1],
                   "block_compact: keep %lld, n_global %lld, n_slots %lld",
                   static_cast<long long>(keep), static_cast<long long>(g0), static_cast<long long>(n));
        CompactScratch& cs = scratch[static_cast<size_t>(thread)];
        // Score the block [g0, g0 + b): softmax over the block only, mean over G x n_q rows.
        std::vector<float>& q_t = cs.q_t;
        std::vector<int32_t>& hi = cs.hi;
        q_t.assign(static_cast<size_t>(d * ld), 0.0f);
        hi.assign(static_cast<size_t>(ld), 0);
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t t = r / g, h = kvh * g + r % g;
            const float* src = p.q.ptr<float>() + h * p.q.stride[0] + t * p.q.stride[1];
            for (int64_t c = 0; c < d; ++c) q_t[static_cast<size_t>(c * ld + r)] = src[c] * qscale;
            hi[static_cast<size_t>(r)] = static_cast<int32_t>(g0 + b);
        }
        ScoreRows q;
        q.q_t = q_t.data();
        q.hi = hi.data();
        q.ld = ld;
        q.head_dim = d;
        const void* kbase = row_ptr(p.k_cache, kvh, 0);
        ScoreScratch& sc = cs.score_scratch;
        std::vector<float>& m = cs.m;
        std::vector<float>& l = cs.l;
        std::vector<float>& w = cs.w;
        m.assign(static_cast<size_t>(ld), -std::numeric_limits<float>::infinity());
        l.assign(static_cast<size_t>(ld), 0.0f);
        row_stats(q, kbase, p.k_cache.dtype, p.k_cache.stride[1], g0, g0 + b, m.data(), l.data(), sc);
        w.assign(static_cast<size_t>(ld), 0.0f);
        for (int64_t r = 0; r < rows; ++r) {
            w[static_cast<size_t>(r)] = 1.0f / (l[static_cast<size_t>(r)] * static_cast<float>(rows));
        }
        std::vector<float>& score = cs.score;
        score.resize(static_cast<size_t>(b));
        accumulate_probs(q, kbase, p.k_cache.dtype, p.k_cache.stride[1], g0, g0 + b, m.data(),
                         w.data(), score.data(), sc);
        // Top keep (ties: lower position, i.e. lower slot since positions ascend), ascending.
        std::vector<int64_t>& idx = cs.idx;
        idx.resize(static_cast<size_t>(b));
        std::iota(idx.begin(), idx.end(), int64_t{0});
        if (keep > 0 && keep < b) {
            std::nth_element(idx.begin(), idx.begin() + (keep - 1), idx.end(), [&](int64_t x, int64_t y) {
                const float sx = score[static_cast<size_t>(x)], sy = score[static_cast<size_t>(y)];
                return sx != sy ? sx > sy : x < y;
            });
            std::sort(idx.begin(), idx.begin() + keep);
        }
        // Move rows down in ascending order: each destination slot is <= its source slot.
        auto move_row = [&](int64_t dst, int64_t src) {
            if (dst == src) return;
            std::memmove(row_ptr(p.k_cache, kvh, dst), row_ptr(p.k_cache, kvh, src), row_bytes);
            std::memmove(row_ptr(p.v_cache, kvh, dst), row_ptr(p.v_cache, kvh, src), row_bytes);
            i32_at(p.slot_pos, kvh, dst) = i32_at(p.slot_pos, kvh, src);
        };
        for (int64_t r = 0; r < keep; ++r) move_row(g0 + r, g0 + idx[static_cast<size_t>(r)]);
        for (int64_t s = g0 + b; s < n; ++s) move_row(s - (b - keep), s);
        i32_at(p.n_global, kvh) = static_cast<int32_t>(g0 + keep);
        i32_at(p.n_slots, kvh) = static_cast<int32_t>(n - (b - keep));
    });
    return Status();
}

}  // namespace tca::cpu
