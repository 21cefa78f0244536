// Parity of the Hopper wgmma attention kernel (backend/cuda/attention_wgmma.h, not yet behind
// the public dispatch) with the float64 reference, by the rule the parity suite applies to
// attention_dense on CUDA (parity_common.h expect_fa3): error <= 2 x the error of the naive
// low-precision twin (q, K, V, P rounded to bf16) + 8 float32 ulps of max |out|. Causal prefill,
// GQA 4, bf16 K/V, q_pos0 0 and offsets. Skips without a compute capability 9.0 device.
#include <gtest/gtest.h>

#include <string>

#include "support/device_staging.h"
#include "support/harness.h"
#if TCA_HAVE_CUDA
#include "backend/cuda/attention_wgmma.h"
#include "backend/cuda/cuda_runtime.h"
#endif

namespace tca::test {
namespace {

struct WgCase {
    int64_t length, n_q, q_pos0, d;
};

std::string case_name(const ::testing::TestParamInfo<WgCase>& i) {
    return "L" + std::to_string(i.param.length) + "_nq" + std::to_string(i.param.n_q) + "_pos" +
           std::to_string(i.param.q_pos0) + "_d" + std::to_string(i.param.d);
}

class AttentionWgmmaParity : public ::testing::TestWithParam<WgCase> {};

#if TCA_HAVE_CUDA
// Stages q/k/v to the device, runs attention_dense_wgmma, copies out back into `out`.
Status run_wgmma(const Qkv& in, const Buf& out, int64_t q_pos0) {
    auto stage = [](const Buf& b) -> Result<cuda::DeviceBuffer> {
        const size_t bytes = static_cast<size_t>(b.numel()) * dtype_size(b.dtype());
        TCA_ASSIGN_OR_RETURN(cuda::DeviceBuffer d, cuda::DeviceBuffer::allocate(bytes));
        TCA_RETURN_IF_ERROR(cuda::copy_to_device(d.get(), b.view().data, bytes));
        return d;
    };
    TCA_ASSIGN_OR_RETURN(cuda::DeviceBuffer dq, stage(in.q));
    TCA_ASSIGN_OR_RETURN(cuda::DeviceBuffer dk, stage(in.k));
    TCA_ASSIGN_OR_RETURN(cuda::DeviceBuffer dv, stage(in.v));
    TCA_ASSIGN_OR_RETURN(cuda::DeviceBuffer dout, stage(out));  // NaN-poisoned
    AttentionDenseParams p;
    p.q = in.q.view();
    p.q.data = dq.get();
    p.k = in.k.view();
    p.k.data = dk.get();
    p.v = in.v.view();
    p.v.data = dv.get();
    p.out = out.view();
    p.out.data = dout.get();
    p.q_pos0 = q_pos0;
    TCA_RETURN_IF_ERROR(cuda::attention_dense_wgmma(p));
    TCA_RETURN_IF_ERROR(cuda::synchronize());
    return cuda::copy_to_host(out.view().data, dout.get(),
                              static_cast<size_t>(out.numel()) * sizeof(float));
}
#endif

TEST_P(AttentionWgmmaParity, MatchesFloat64) {
#if TCA_HAVE_CUDA
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    if (!cuda::attention_wgmma_available()) GTEST_SKIP() << "needs a compute capability 9.0 device";
    const WgCase& c = GetParam();
    const int64_t hq = 8, hkv = 2;  // GQA 4
    Rng rng(static_cast<uint64_t>(c.length * 131 + c.n_q * 7 + c.q_pos0 + c.d));
    const Qkv in = make_qkv(hq, hkv, c.n_q, c.length, c.d, DType::kBF16, Input::kNormal, rng);
    Buf ref(DType::kF32, {hq, c.n_q, c.d}), naive(DType::kF32, {hq, c.n_q, c.d}),
        got(DType::kF32, {hq, c.n_q, c.d});
    ref.fill_poison();
    naive.fill_poison();
    got.fill_poison();
    AttentionDenseParams p;
    p.q = in.q.view();
    p.k = in.k.view();
    p.v = in.v.view();
    p.q_pos0 = c.q_pos0;
    p.out = ref.view();
    ASSERT_TRUE(run(Backend::kRef, p).ok());
    p.out = naive.view();
    ASSERT_TRUE(run(Backend::kNaiveLowp, p).ok());
    const Status st = run_wgmma(in, got, c.q_pos0);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(got.canaries_intact("wgmma out"));
    const Tolerance tol = fa3_tolerance(naive, ref);
    const ErrorStats s = error_stats(got, ref);
    EXPECT_TRUE(all_near(got, ref, tol.bound(), "attention_dense_wgmma vs float64"))
        << "tolerance = 2 x naive_lowp error " << tol.naive_err << " + floor " << tol.floor
        << "; wgmma max abs error " << s.max_abs;
#else
    GTEST_SKIP() << "built without CUDA";
#endif
}

// Full causal prefill (q_pos0 0) at lengths around the 128-row / 128-key tiles, the first
// queries of a long prompt, and query slices at an offset (chunked prefill); head_dim 128 and 64.
INSTANTIATE_TEST_SUITE_P(
    Causal, AttentionWgmmaParity,
    ::testing::Values(WgCase{128, 128, 0, 128}, WgCase{200, 200, 0, 128},
                      WgCase{1000, 1000, 0, 128}, WgCase{4096, 1024, 0, 128},
                      WgCase{128, 50, 78, 128}, WgCase{200, 77, 123, 128},
                      WgCase{1000, 333, 600, 128}, WgCase{4096, 700, 3396, 128},
                      WgCase{1000, 1000, 0, 64}, WgCase{4096, 300, 1900, 64}),
    case_name);

}  // namespace
}  // namespace tca::test
