// The tensors of each op's Params, for code that treats them generically (staging test inputs
// to a device, checking that every view lives in one memory space). for_each_view visits the
// TensorViews that live on the op's device; EmbedParams::ids and RopeParams::positions stay in
// host memory on every device (cuda_ops.h) and are not visited. for_each_matrix visits the
// weight MatrixViews (matmul, embed).
#pragma once

#include "backend/ops.h"

namespace tca {

#define TCA_VIEWS(Params, ...)                                  \
    template <class F>                                          \
    void for_each_view(Params& p, F&& f) {                      \
        for (TensorView* t : {__VA_ARGS__}) f(*t);              \
    }
TCA_VIEWS(AttentionDenseParams, &p.q, &p.k, &p.v, &p.out)
TCA_VIEWS(TokenImportanceParams, &p.q, &p.k, &p.scores)
TCA_VIEWS(BlockScoreParams, &p.scores, &p.mass, &p.hhi, &p.block_score)
TCA_VIEWS(BlockBudgetParams, &p.block_score, &p.psi, &p.keep)
TCA_VIEWS(TokenSelectParams, &p.scores, &p.keep, &p.selected, &p.n_selected)
TCA_VIEWS(KvGatherParams, &p.k, &p.v, &p.positions, &p.n_positions, &p.k_out, &p.v_out,
          &p.slot_pos)
TCA_VIEWS(SparsePrefillParams, &p.q, &p.k, &p.v, &p.k_global, &p.v_global, &p.global_pos,
          &p.n_global, &p.out)
TCA_VIEWS(DecodeAttentionParams, &p.q, &p.k_cache, &p.v_cache, &p.slot_pos, &p.n_slots, &p.out)
TCA_VIEWS(BlockCompactParams, &p.q, &p.k_cache, &p.v_cache, &p.slot_pos, &p.n_global,
          &p.n_slots, &p.keep)
TCA_VIEWS(KvAppendParams, &p.k_new, &p.v_new, &p.k_cache, &p.v_cache, &p.slot_pos, &p.n_slots)
TCA_VIEWS(KvCompactParams, &p.k_cache, &p.v_cache, &p.slot_pos, &p.n_global, &p.n_slots,
          &p.kept, &p.n_kept, &p.region)
TCA_VIEWS(MatmulParams, &p.x, &p.bias, &p.y, &p.residual, &p.norm_weight, &p.up)
TCA_VIEWS(RmsNormParams, &p.x, &p.weight, &p.out)
TCA_VIEWS(RopeParams, &p.x, &p.inv_freq)  // positions: host memory
TCA_VIEWS(SwigluParams, &p.gate, &p.up, &p.out)
TCA_VIEWS(EmbedParams, &p.out)  // ids: host memory
TCA_VIEWS(AddParams, &p.a, &p.b, &p.out)
#undef TCA_VIEWS

template <class Params, class F>
void for_each_matrix(Params&, F&&) {}
template <class F>
void for_each_matrix(MatmulParams& p, F&& f) { f(p.w); }
template <class F>
void for_each_matrix(EmbedParams& p, F&& f) { f(p.table); }

}  // namespace tca
