// Float64 references of the model ops (matmul, rms_norm, rope, swiglu, embed, add) and their
// naive float32 twins (tolerance sizing only, docs/numerics.md). Declared here until the ops
// join TCA_FOR_EACH_OP; afterwards reference/ref_ops.h declares the same functions.
#pragma once

#include "backend/ops.h"

namespace tca::ref {
#define TCA_DECLARE_REF_MODEL_OP(name, Params) Status name(const Params& p);
TCA_FOR_EACH_MODEL_OP(TCA_DECLARE_REF_MODEL_OP)
namespace naive_f32 {
TCA_FOR_EACH_MODEL_OP(TCA_DECLARE_REF_MODEL_OP)
}  // namespace naive_f32
#undef TCA_DECLARE_REF_MODEL_OP
}  // namespace tca::ref
