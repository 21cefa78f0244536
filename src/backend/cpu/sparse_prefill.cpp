// sparse_prefill on the CPU (tca-method M6) through the shared AttentionTile kernel: query i
// (position q_pos0 + i) attends with one softmax to two segments, (1) the prefix of the
// gathered global slots whose position is < v(i) * b (global_pos ascends, so a prefix found by
// binary search) read from k_global/v_global, and (2) the full rows [v(i) * b, i] of k/v.
// Matches ref::sparse_prefill (which reads the same global tokens from k/v by position).
#include <algorithm>

#include "backend/cpu/attention_kernel.h"
#include "backend/cpu/cpu_ops.h"

namespace tca::cpu {

Status sparse_prefill(const SparsePrefillParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.k.shape[0], n_q = p.q.shape[1], b = p.block_size;
    AttentionProblem prob;
    prob.q = p.q;
    prob.out = p.out;
    prob.n_kv_heads = hkv;
    prob.scale = effective_scale(p.scale, p.q.shape[2]);
    AttentionSegment global, band;
    const size_t n = static_cast<size_t>(hkv * n_q);
    global.lo.assign(n, 0);
    global.hi.resize(n);
    band.lo.resize(n);
    band.hi.resize(n);
    for (int64_t h = 0; h < hkv; ++h) {
        const int64_t ng = p.n_global.ptr<int32_t>()[h * p.n_global.stride[0]];
        TCA_ASSERT(ng >= 0 && ng <= p.global_pos.shape[1], "sparse_prefill: n_global[%lld] = %lld",
                   static_cast<long long>(h), static_cast<long long>(ng));
        const int32_t* gpos = p.global_pos.ptr<int32_t>() + h * p.global_pos.stride[0];
        for (int64_t s = 0; s < ng; ++s) {
            TCA_ASSERT(gpos[s] >= 0 && gpos[s] < p.n_blocks * b && (s == 0 || gpos[s] > gpos[s - 1]),
                       "sparse_prefill: global positions must ascend within [0, n_blocks * b)");
        }
        global.kv.push_back(kv_rows(p.k_global, p.v_global, h));
        band.kv.push_back(kv_rows(p.k, p.v, h));
        for (int64_t i = 0; i < n_q; ++i) {
            const int64_t pos = p.q_pos0 + i;
            const int64_t band0 = visible_blocks(pos, p.local_window, b, p.n_blocks) * b;
            const size_t at = static_cast<size_t>(h * n_q + i);
            global.hi[at] = static_cast<int32_t>(
                std::lower_bound(gpos, gpos + ng, static_cast<int32_t>(band0)) - gpos);
            band.lo[at] = static_cast<int32_t>(band0);
            band.hi[at] = static_cast<int32_t>(pos + 1);
        }
    }
    prob.segments.push_back(std::move(global));
    prob.segments.push_back(std::move(band));
    run_attention(prob);
    return Status();
}

}  // namespace tca::cpu
