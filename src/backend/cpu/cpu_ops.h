// CPU implementations of every op in backend/ops.h: f32 compute over f32/f16/bf16 storage,
// multithreaded over heads and query tiles (core/thread_pool.h). Each function validates its
// Params (same rules as every backend) and must match the float64 reference within the
// tolerances of docs/numerics.md.
#pragma once

#include "backend/ops.h"

namespace tca::cpu {
#define TCA_DECLARE_CPU_OP(name, Params) Status name(const Params& p);
TCA_FOR_EACH_OP(TCA_DECLARE_CPU_OP)
TCA_FOR_EACH_MODEL_OP(TCA_DECLARE_CPU_OP)  // matmul.cpp, model_ops.cpp
#undef TCA_DECLARE_CPU_OP
}  // namespace tca::cpu
