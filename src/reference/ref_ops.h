// Float64 reference of every op in backend/ops.h: naive loops written straight from
// tca-method M2-M7, the oracle for parity tests on every backend. Linked only by tests and
// benchmarks. Each function validates its Params exactly like the backends.
#pragma once

#include "backend/ops.h"

namespace tca::ref {
#define TCA_DECLARE_REF_OP(name, Params) Status name(const Params& p);
TCA_FOR_EACH_OP(TCA_DECLARE_REF_OP)

// The same loops accumulating in float32 instead of float64 ("naive f32"): not an oracle but
// the baseline error that sizes parity tolerances (docs/numerics.md, FlashAttention-3 rule).
namespace naive_f32 {
TCA_FOR_EACH_OP(TCA_DECLARE_REF_OP)
}  // namespace naive_f32
#undef TCA_DECLARE_REF_OP

// The naive float32 loops of attention_dense and sparse_prefill with the roundings of the CUDA
// tensor-core kernels: q, K, V and the probabilities P rounded to bf16 (f16 when K/V are f16),
// f32 sums (ref_lowp.cpp). The baseline that sizes CUDA tolerances (docs/numerics.md, "CUDA").
namespace naive_lowp {
Status attention_dense(const AttentionDenseParams& p);
Status sparse_prefill(const SparsePrefillParams& p);
}  // namespace naive_lowp
}  // namespace tca::ref
