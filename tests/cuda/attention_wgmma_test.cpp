// Parity of the Hopper wgmma attention kernels (backend/cuda/attention_wgmma.h) with the float64
// reference, by the rule the parity suite applies to attention_dense / sparse_prefill on CUDA
// (parity_common.h expect_fa3): error <= 2 x the error of the naive low-precision twin (q, K,
// V, P rounded to bf16) + 8 float32 ulps of max |out|. GQA 4, bf16 K/V, head_dim 128 and 64,
// q_pos0 0 and offsets. The kernels are called directly (not through the dispatch, which falls
// back to the mma.sync kernel where wgmma is unsupported), and compared with the mma.sync
// kernel (backend/cuda/attention_prefill.h) on a long sparse prefill. Every case also runs the
// main loop's overlapped schedule, whose output must be bitwise the serial schedule's. Skips
// without a compute capability 9.0 device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include "sparse/sparse_options.h"
#include "support/device_staging.h"
#include "support/harness.h"
#include "support/oracles.h"
#if TCA_HAVE_CUDA
#include "backend/cuda/attention_prefill.h"
#include "backend/cuda/attention_wgmma.h"
#include "backend/cuda/cuda_runtime.h"
#endif

namespace tca::test {
namespace {

#if TCA_HAVE_CUDA
#define TCA_SKIP_WITHOUT_WGMMA()                                                            \
    do {                                                                                    \
        if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";                     \
        if (!cuda::attention_wgmma_available()) {                                           \
            GTEST_SKIP() << "needs a compute capability 9.0 device";                        \
        }                                                                                   \
    } while (0)
#endif

#if TCA_HAVE_CUDA
// Runs fn with the main loop's overlapped schedule (attention_wgmma.h), then restores the one
// selected before.
template <class F>
Status with_overlap(F&& fn) {
    const cuda::WgmmaScheduleScope overlap(cuda::WgmmaSchedule::kOverlap);
    return fn();
}

// The overlapped schedule's output `over` is bitwise the serial schedule's `serial`.
void expect_same_schedules(const Buf& over, const Buf& serial, const std::string& what) {
    EXPECT_TRUE(over.canaries_intact(what + " (overlapped schedule)"));
    EXPECT_TRUE(all_equal(over, serial, what + ": overlapped vs serial schedule"));
}
#endif

// got within the FA3 bound of ref, sized by the naive_lowp output `naive`.
[[maybe_unused]] void expect_fa3_vs(const Buf& got, const Buf& naive, const Buf& ref,
                                    const std::string& what) {
    const Tolerance tol = fa3_tolerance(naive, ref);
    const ErrorStats s = error_stats(got, ref);
    record_error(what, s.max_abs, tol.naive_err, s.max_want);
    EXPECT_TRUE(all_near(got, ref, tol.bound(), what + " vs float64"))
        << "tolerance = 2 x naive_lowp error " << tol.naive_err << " + floor " << tol.floor
        << "; max abs error " << s.max_abs;
}

// ---- attention_dense_wgmma ------------------------------------------------------------------

struct WgCase {
    int64_t length, n_q, q_pos0, d;
};

std::string case_name(const ::testing::TestParamInfo<WgCase>& i) {
    return "L" + std::to_string(i.param.length) + "_nq" + std::to_string(i.param.n_q) + "_pos" +
           std::to_string(i.param.q_pos0) + "_d" + std::to_string(i.param.d);
}

void PrintTo(const WgCase& c, std::ostream* os) {
    *os << "L " << c.length << ", n_q " << c.n_q << ", q_pos0 " << c.q_pos0 << ", d " << c.d;
}

class AttentionWgmmaParity : public ::testing::TestWithParam<WgCase> {};

TEST_P(AttentionWgmmaParity, MatchesFloat64) {
#if TCA_HAVE_CUDA
    TCA_SKIP_WITHOUT_WGMMA();
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
    p.out = got.view();
    const cuda::WgmmaScheduleScope serial(cuda::WgmmaSchedule::kSerial);
    Status st = run_staged_on_cuda_with(p, &cuda::attention_dense_wgmma);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(got.canaries_intact("wgmma out"));
    expect_fa3_vs(got, naive, ref, "attention_dense_wgmma.out");
    Buf over(DType::kF32, {hq, c.n_q, c.d});
    over.fill_poison();
    p.out = over.view();
    st = with_overlap([&] { return run_staged_on_cuda_with(p, &cuda::attention_dense_wgmma); });
    ASSERT_TRUE(st.ok()) << st.to_string();
    expect_same_schedules(over, got, "attention_dense_wgmma.out");
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

// ---- sparse_prefill_wgmma -------------------------------------------------------------------

struct SpCase {
    int64_t length, n_q, q_pos0, d;
    int b, w;
    double frac;  // share of the candidate positions selected per KV head
};

std::string sp_case_name(const ::testing::TestParamInfo<SpCase>& i) {
    const SpCase& c = i.param;
    return "L" + std::to_string(c.length) + "_nq" + std::to_string(c.n_q) + "_pos" +
           std::to_string(c.q_pos0) + "_d" + std::to_string(c.d) + "_b" + std::to_string(c.b) +
           "_w" + std::to_string(c.w) + "_sel" + std::to_string(static_cast<int>(c.frac * 100));
}

void PrintTo(const SpCase& c, std::ostream* os) {
    *os << "L " << c.length << ", n_q " << c.n_q << ", q_pos0 " << c.q_pos0 << ", d " << c.d
        << ", b " << c.b << ", w " << c.w << ", selected " << c.frac;
}

// Inputs of one sparse prefill on the host, built like the parity suite's SparsePrefillParity:
// a random subset of the n * b candidate positions per KV head, gathered by the float64
// reference's kv_gather into a cache of max(1, n * b) slots.
struct SparseInputs {
    Qkv in;
    Gathered g;
    int64_t n_blocks = 0;
};

[[maybe_unused]] Status make_sparse_inputs(int64_t hq, int64_t hkv, int64_t n_q,
                                           int64_t length, int64_t d, int b, int w, double frac,
                                           Rng& rng, SparseInputs* s) {
    s->in = make_qkv(hq, hkv, n_q, length, d, DType::kBF16, Input::kNormal, rng);
    s->n_blocks = n_candidate_blocks(length, w, b);
    std::vector<std::vector<int32_t>> sel;
    for (int64_t h = 0; h < hkv; ++h) sel.push_back(random_subset(0, s->n_blocks * b, frac, rng));
    return run_gather(Backend::kRef, s->in.k, s->in.v, sel,
                      std::max<int64_t>(1, s->n_blocks * b), &s->g);
}

[[maybe_unused]] SparsePrefillParams sparse_params(const SparseInputs& s, int64_t q_pos0, int b,
                                                   int w, const Buf& out) {
    SparsePrefillParams p;
    p.q = s.in.q.view();
    p.k = s.in.k.view();
    p.v = s.in.v.view();
    p.k_global = s.g.k.view();
    p.v_global = s.g.v.view();
    p.global_pos = s.g.slot_pos.view();
    p.n_global = s.g.n.view();
    p.out = out.view();
    p.q_pos0 = q_pos0;
    p.n_blocks = s.n_blocks;
    p.block_size = b;
    p.local_window = w;
    return p;
}

class SparsePrefillWgmmaParity : public ::testing::TestWithParam<SpCase> {};

TEST_P(SparsePrefillWgmmaParity, MatchesFloat64) {
#if TCA_HAVE_CUDA
    TCA_SKIP_WITHOUT_WGMMA();
    const SpCase& c = GetParam();
    const int64_t hq = 8, hkv = 2;  // GQA 4
    Rng rng(static_cast<uint64_t>(c.length * 104729 + c.n_q * 31 + c.q_pos0 * 7 + c.d + c.b +
                                  c.w + static_cast<int64_t>(c.frac * 1000)));
    SparseInputs s;
    ASSERT_TRUE(make_sparse_inputs(hq, hkv, c.n_q, c.length, c.d, c.b, c.w, c.frac, rng, &s).ok());
    Buf ref(DType::kF32, {hq, c.n_q, c.d}), naive(DType::kF32, {hq, c.n_q, c.d}),
        got(DType::kF32, {hq, c.n_q, c.d});
    ref.fill_poison();
    naive.fill_poison();
    got.fill_poison();
    Status st = run(Backend::kRef, sparse_params(s, c.q_pos0, c.b, c.w, ref));
    ASSERT_TRUE(st.ok()) << st.to_string();
    st = run(Backend::kNaiveLowp, sparse_params(s, c.q_pos0, c.b, c.w, naive));
    ASSERT_TRUE(st.ok()) << st.to_string();
    const cuda::WgmmaScheduleScope serial(cuda::WgmmaSchedule::kSerial);
    st = run_staged_on_cuda_with(sparse_params(s, c.q_pos0, c.b, c.w, got),
                                 &cuda::sparse_prefill_wgmma);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(got.canaries_intact("wgmma out"));
    expect_fa3_vs(got, naive, ref, "sparse_prefill_wgmma.out");
    Buf over(DType::kF32, {hq, c.n_q, c.d});
    over.fill_poison();
    st = with_overlap([&] {
        return run_staged_on_cuda_with(sparse_params(s, c.q_pos0, c.b, c.w, over),
                                       &cuda::sparse_prefill_wgmma);
    });
    ASSERT_TRUE(st.ok()) << st.to_string();
    expect_same_schedules(over, got, "sparse_prefill_wgmma.out");
#else
    GTEST_SKIP() << "built without CUDA";
#endif
}

// GQA 4, bf16 K/V. Lengths that are (4096) and are not (1000, 3000, 4096 + 77) multiples of b;
// L = 1000 < w = 1024 is the band alone (no candidate block). Full prefills (q_pos0 0) where
// the float64 reference stays fast, else the last queries or a middle slice (chunked prefill),
// with slice starts off the 128-row tile. Selection shares 0 (band only), 0.2 and 1 (dense).
INSTANTIATE_TEST_SUITE_P(
    Sparse, SparsePrefillWgmmaParity,
    ::testing::Values(
        // head_dim 128
        SpCase{1000, 1000, 0, 128, 64, 256, 0.2}, SpCase{1000, 1000, 0, 128, 128, 256, 0.0},
        SpCase{1000, 1000, 0, 128, 64, 256, 1.0}, SpCase{1000, 1000, 0, 128, 128, 1024, 0.2},
        SpCase{3000, 384, 2616, 128, 128, 1024, 0.2}, SpCase{3000, 300, 1500, 128, 64, 1024, 1.0},
        SpCase{3000, 250, 2750, 128, 128, 256, 0.0}, SpCase{4096, 256, 3840, 128, 128, 1024, 0.2},
        SpCase{4096, 200, 1000, 128, 64, 256, 0.2}, SpCase{4173, 333, 3840, 128, 128, 1024, 0.2},
        SpCase{4173, 200, 3973, 128, 64, 256, 0.0}, SpCase{4173, 177, 3996, 128, 128, 256, 1.0},
        // head_dim 64
        SpCase{1000, 1000, 0, 64, 64, 256, 0.2}, SpCase{1000, 1000, 0, 64, 128, 256, 1.0},
        SpCase{3000, 3000, 0, 64, 128, 256, 0.2}, SpCase{3000, 500, 2500, 64, 128, 1024, 0.2},
        SpCase{4096, 128, 3968, 64, 128, 256, 0.0}, SpCase{4173, 333, 3840, 64, 64, 256, 1.0},
        SpCase{4173, 300, 2000, 64, 64, 1024, 0.2}),
    sp_case_name);

// ---- sparse_prefill: wgmma vs the mma.sync kernel on a long prompt ---------------------------

// L 16384, 32/8 heads, d 128, b 128, w 4096, 20% of the candidate positions: the two kernels
// agree within 2e-2 with no NaN/inf, the public dispatch (ops::sparse_prefill on CUDA) is the
// wgmma kernel on this device (bitwise the same output), and the overlapped schedule gives
// bitwise the serial schedule's output.
TEST(SparsePrefillWgmma, MatchesMmaKernelLong) {
#if TCA_HAVE_CUDA
    TCA_SKIP_WITHOUT_WGMMA();
    const int64_t L = 16384, hq = 32, hkv = 8, d = 128;
    const int b = 128, w = 4096;
    Rng rng(20240917);
    SparseInputs s;
    ASSERT_TRUE(make_sparse_inputs(hq, hkv, L, L, d, b, w, 0.2, rng, &s).ok());
    Buf wg(DType::kF32, {hq, L, d}), mma(DType::kF32, {hq, L, d}), disp(DType::kF32, {hq, L, d}),
        over(DType::kF32, {hq, L, d});
    wg.fill_poison();
    mma.fill_poison();
    disp.fill_poison();
    over.fill_poison();
    const cuda::WgmmaScheduleScope serial(cuda::WgmmaSchedule::kSerial);
    Status st = run_staged_on_cuda_with(sparse_params(s, 0, b, w, wg), &cuda::sparse_prefill_wgmma);
    ASSERT_TRUE(st.ok()) << st.to_string();
    st = run_staged_on_cuda_with(sparse_params(s, 0, b, w, mma), &cuda::sparse_prefill_mma);
    ASSERT_TRUE(st.ok()) << st.to_string();
    st = run(Backend::kCuda, sparse_params(s, 0, b, w, disp));
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(wg.canaries_intact("wgmma out"));
    EXPECT_TRUE(mma.canaries_intact("mma out"));
    EXPECT_TRUE(disp.canaries_intact("dispatch out"));
    int64_t non_finite_wg = 0, non_finite_mma = 0, worst = -1;
    double max_diff = 0.0;
    for (int64_t i = 0; i < wg.numel(); ++i) {
        const double x = wg.get(i), y = mma.get(i);
        if (!std::isfinite(x)) ++non_finite_wg;
        if (!std::isfinite(y)) ++non_finite_mma;
        if (!std::isfinite(x) || !std::isfinite(y)) continue;
        const double e = std::fabs(x - y);
        if (e > max_diff) {
            max_diff = e;
            worst = i;
        }
    }
    EXPECT_EQ(non_finite_wg, 0) << "wgmma output has NaN/inf (unwritten or wrong)";
    EXPECT_EQ(non_finite_mma, 0) << "mma.sync output has NaN/inf";
    EXPECT_LT(max_diff, 2e-2) << "max |wgmma - mma.sync| at " << wg.index_string(worst);
    std::printf("sparse_prefill L=%lld: max |wgmma - mma.sync| = %.3g at %s\n",
                static_cast<long long>(L), max_diff,
                worst < 0 ? "-" : wg.index_string(worst).c_str());
    EXPECT_TRUE(all_equal(disp, wg, "ops::sparse_prefill(cuda) vs sparse_prefill_wgmma"));
    st = with_overlap([&] {
        return run_staged_on_cuda_with(sparse_params(s, 0, b, w, over), &cuda::sparse_prefill_wgmma);
    });
    ASSERT_TRUE(st.ok()) << st.to_string();
    expect_same_schedules(over, wg, "sparse_prefill_wgmma, L 16384");
#else
    GTEST_SKIP() << "built without CUDA";
#endif
}

}  // namespace
}  // namespace tca::test
