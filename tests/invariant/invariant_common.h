// Shared pieces of the invariant suite: tests parametrised by backend (ref and cpu) and a
// comparison of a backend's attention output with an independent float64 oracle over an
// explicit key set, tolerance by the FlashAttention-3 rule (docs/numerics.md).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "support/harness.h"
#include "support/oracles.h"
#include "sparse/sparse_options.h"

namespace tca::test {

class BackendTest : public ::testing::TestWithParam<Backend> {
protected:
    Backend backend() const { return GetParam(); }
    std::string bname() const { return backend_name(GetParam()); }
};

struct BackendName {
    std::string operator()(const ::testing::TestParamInfo<Backend>& info) const {
        return backend_name(info.param);
    }
};

#define TCA_INSTANTIATE_BACKENDS(Suite)                                                    \
    INSTANTIATE_TEST_SUITE_P(Backends, Suite,                                              \
                             ::testing::Values(::tca::test::Backend::kRef,                 \
                                               ::tca::test::kUnderTest),                \
                             ::tca::test::BackendName())

// The naive baseline of masked attention that sizes tolerances for the backend under test:
// float32 on the CPU; on CUDA (TCA_TEST_CUDA) the same loops with the tensor-core roundings
// (q, K, V, P in bf16, or f16 for f16 K/V), docs/numerics.md "CUDA".
inline Buf naive_masked_attention(const Buf& q, const Buf& k, const Buf& v, int64_t q_pos0,
                                  const KeyFilter& visible) {
    if constexpr (TCA_TEST_CUDA) {
        return masked_attention_lowp(q, k, v, q_pos0, visible);
    } else {
        return masked_attention<float>(q, k, v, q_pos0, visible);
    }
}

// `got` (a backend's attention output) equals attention over the keys `visible` selects,
// within 2 x the naive error of that attention + the floor (naive: naive_masked_attention).
inline ::testing::AssertionResult matches_masked_attention(const Buf& got, const Buf& q,
                                                           const Buf& k, const Buf& v,
                                                           int64_t q_pos0,
                                                           const KeyFilter& visible,
                                                           const std::string& what) {
    const Buf want = masked_attention<double>(q, k, v, q_pos0, visible);
    const Buf naive = naive_masked_attention(q, k, v, q_pos0, visible);
    const Tolerance tol = fa3_tolerance(naive, want);
    return all_near(got, want, tol.bound(), what);
}

// sparse_prefill on `be` for queries [q_pos0, q_pos0 + n_q) with the given global selection.
inline Status run_prefill(Backend be, const Qkv& in, const std::vector<std::vector<int32_t>>& sel,
                          int64_t q_pos0, Buf* out, int b, int w) {
    const int64_t n_kv = in.k.dim(1);
    const int64_t n = n_candidate_blocks(n_kv, w, b);
    Gathered g;
    TCA_RETURN_IF_ERROR(run_gather(be, in.k, in.v, sel, std::max<int64_t>(1, n * b), &g));
    *out = Buf(DType::kF32, {in.q.dim(0), in.q.dim(1), in.q.dim(2)});
    out->fill_poison();
    SparsePrefillParams p;
    p.q = in.q.view();
    p.k = in.k.view();
    p.v = in.v.view();
    p.k_global = g.k.view();
    p.v_global = g.v.view();
    p.global_pos = g.slot_pos.view();
    p.n_global = g.n.view();
    p.out = out->view();
    p.q_pos0 = q_pos0;
    p.n_blocks = n;
    p.block_size = b;
    p.local_window = w;
    return run(be, p);
}

}  // namespace tca::test
