// attention_dense on the CPU: causal GQA attention through the shared AttentionTile kernel
// (attention_kernel.h). Query i (position q_pos0 + i) sees key rows [0, q_pos0 + i]. Matches
// ref::attention_dense.
#include "backend/cpu/attention_kernel.h"
#include "backend/cpu/cpu_ops.h"

namespace tca::cpu {

Status attention_dense(const AttentionDenseParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.k.shape[0], n_q = p.q.shape[1];
    AttentionProblem prob;
    prob.q = p.q;
    prob.out = p.out;
    prob.n_kv_heads = hkv;
    prob.scale = effective_scale(p.scale, p.q.shape[2]);
    AttentionSegment seg;
    seg.lo.assign(static_cast<size_t>(hkv * n_q), 0);
    seg.hi.resize(static_cast<size_t>(hkv * n_q));
    for (int64_t h = 0; h < hkv; ++h) {
        seg.kv.push_back(kv_rows(p.k, p.v, h));
        for (int64_t i = 0; i < n_q; ++i) {
            seg.hi[static_cast<size_t>(h * n_q + i)] = static_cast<int32_t>(p.q_pos0 + i + 1);
        }
    }
    prob.segments.push_back(std::move(seg));
    run_attention(prob);
    return Status();
}

}  // namespace tca::cpu
