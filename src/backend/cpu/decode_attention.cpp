// decode_attention on the CPU (tca-method M7): attention over the ragged compacted cache
// through the shared AttentionTile kernel. Query i (position q_pos0 + i) sees slots [0, cnt)
// where cnt = number of slots with slot_pos <= q_pos0 + i (slot positions ascend: binary
// search). With few queries run_attention splits the slots across threads (split-K).
// Matches ref::decode_attention.
#include <algorithm>
#include <cstdint>

#include "backend/cpu/attention_kernel.h"
#include "backend/cpu/cpu_ops.h"

namespace tca::cpu {

Status decode_attention(const DecodeAttentionParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.k_cache.shape[0], n_q = p.q.shape[1];
    // Reused by every call on this thread: its vectors keep their capacity, so a decode step
    // (same shape as the last) allocates nothing.
    thread_local AttentionProblem prob;
    prob.q = p.q;
    prob.out = p.out;
    prob.n_kv_heads = hkv;
    prob.scale = effective_scale(p.scale, p.q.shape[2]);
    prob.segments.resize(1);
    AttentionSegment& seg = prob.segments[0];
    const size_t n = static_cast<size_t>(hkv * n_q);
    seg.kv.clear();
    seg.lo.assign(n, 0);
    seg.hi.resize(n);
    for (int64_t h = 0; h < hkv; ++h) {
        const int64_t ns = p.n_slots.ptr<int32_t>()[h * p.n_slots.stride[0]];
        TCA_ASSERT(ns >= 0 && ns <= p.k_cache.shape[1], "decode_attention: n_slots[%lld] = %lld",
                   static_cast<long long>(h), static_cast<long long>(ns));
        const int32_t* spos = p.slot_pos.ptr<int32_t>() + h * p.slot_pos.stride[0];
        for (int64_t s = 1; s < ns; ++s) {
            TCA_ASSERT(spos[s] >= spos[s - 1], "decode_attention: slot positions must ascend");
        }
        seg.kv.push_back(kv_rows(p.k_cache, p.v_cache, h));
        for (int64_t i = 0; i < n_q; ++i) {
            const int64_t pos = p.q_pos0 + i;
            const int64_t cnt =
                pos >= INT32_MAX ? ns
                                 : std::upper_bound(spos, spos + ns, static_cast<int32_t>(pos)) - spos;
            seg.hi[static_cast<size_t>(h * n_q + i)] = static_cast<int32_t>(cnt);
        }
    }
    run_attention(prob);
    return Status();
}

}  // namespace tca::cpu
