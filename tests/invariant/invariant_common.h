// Shared pieces of the invariant suite: tests parametrised by backend (ref and cpu) and a
// comparison of a backend's attention output with an independent float64 oracle over an
// explicit key set, tolerance by the FlashAttention-3 rule (docs/numerics.md).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "support/harness.h"
#include "support/oracles.h"

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
                                               ::tca::test::Backend::kCpu),                \
                             ::tca::test::BackendName())

// `got` (a backend's attention output) equals attention over the keys `visible` selects,
// within 2 x the naive float32 error of that attention + the floor.
inline ::testing::AssertionResult matches_masked_attention(const Buf& got, const Buf& q,
                                                           const Buf& k, const Buf& v,
                                                           int64_t q_pos0,
                                                           const KeyFilter& visible,
                                                           const std::string& what) {
    const Buf want = masked_attention<double>(q, k, v, q_pos0, visible);
    const Buf naive = masked_attention<float>(q, k, v, q_pos0, visible);
    const Tolerance tol = fa3_tolerance(naive, want);
    return all_near(got, want, tol.bound(), what);
}

}  // namespace tca::test
