// Parity of kv_append: the CPU copy into the cache (with rounding to f16/bf16) must equal the
// reference bit for bit, leave every other slot untouched, and advance n_slots.
#include <gtest/gtest.h>

#include "parity/parity_common.h"

namespace tca::test {
namespace {

std::vector<OpCase> append_cases() {
    std::vector<OpCase> v;
    auto mk = [](int64_t n_new, int64_t hkv, int64_t d, DType kv, uint64_t seed) {
        OpCase c;
        c.op = "kv_append";
        c.length = n_new;  // tokens appended
        c.hkv = hkv;
        c.d = d;
        c.kv = kv;
        c.seed = seed;
        return c;
    };
    for (int64_t n : {1, 15, 16, 17, 55, 63, 64, 80, 1000}) v.push_back(mk(n, 2, 8, DType::kF32, 1));
    for (DType t : {DType::kF16, DType::kBF16}) v.push_back(mk(17, 8, 128, t, 2));
    v.push_back(mk(3, 1, 64, DType::kBF16, 3));
    return registered(std::move(v));
}

class KvAppendParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(KvAppendParity, CopiesExactlyAfterTheLastSlot) {
    const OpCase& c = GetParam();
    Rng rng(c.seed * 31 + static_cast<uint64_t>(c.length));
    const int64_t n = c.length, cap = n + 7;
    // Token-major projections [n, hkv, d] as the matmul writes them.
    Buf k_new(DType::kF32, {n, c.hkv, c.d}), v_new(DType::kF32, {n, c.hkv, c.d});
    fill_normal(k_new, rng, 3.0);
    fill_normal(v_new, rng, 3.0);
    // Each head already holds a different number of slots (0..5).
    std::vector<int32_t> fill(static_cast<size_t>(c.hkv));
    for (auto& f : fill) f = static_cast<int32_t>(rng.below(6));
    Buf before_k(c.kv, {c.hkv, cap, c.d}), before_v(c.kv, {c.hkv, cap, c.d});
    Buf before_pos(DType::kI32, {c.hkv, cap});
    fill_normal(before_k, rng);
    fill_normal(before_v, rng);
    before_pos.fill(-5);
    const int64_t pos0 = 100;
    struct Run {
        Buf k, v, pos, n;
    };
    auto run_on = [&](Backend b) {
        Run r{before_k.clone(), before_v.clone(), before_pos.clone(), i32_buf(fill)};
        KvAppendParams p{k_new.view(), v_new.view(), r.k.view(), r.v.view(), r.pos.view(),
                         r.n.view(), pos0};
        const Status s = run(b, p);
        EXPECT_TRUE(s.ok()) << s.to_string();
        return r;
    };
    Run ref = run_on(Backend::kRef), cpu = run_on(kUnderTest);
    EXPECT_TRUE(all_equal(cpu.k, ref.k, "k_cache"));
    EXPECT_TRUE(all_equal(cpu.v, ref.v, "v_cache"));
    EXPECT_TRUE(all_equal(cpu.pos, ref.pos, "slot_pos"));
    EXPECT_TRUE(all_equal(cpu.n, ref.n, "n_slots"));
    EXPECT_TRUE(cpu.k.canaries_intact("cpu k_cache"));
    for (int64_t h = 0; h < c.hkv; ++h) {
        const int64_t f = fill[static_cast<size_t>(h)];
        EXPECT_EQ(cpu.n.at({h}), f + n);
        for (int64_t s = 0; s < cap; ++s) {
            const bool appended = s >= f && s < f + n;
            ASSERT_EQ(cpu.pos.at({h, s}), appended ? pos0 + s - f : -5) << "slot " << s;
            for (int64_t e = 0; e < c.d; ++e) {
                const double want = appended ? k_new.at({s - f, h, e}) : before_k.at({h, s, e});
                // f16/bf16 rounding of the new rows; untouched slots keep their exact bits.
                if (appended) {
                    ASSERT_NEAR(cpu.k.at({h, s, e}), want, std::fabs(want) * 1e-2 + 1e-6);
                } else {
                    ASSERT_EQ(cpu.k.bits(cpu.k.flat({h, s, e})), before_k.bits(before_k.flat({h, s, e})));
                }
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Edges, KvAppendParity, ::testing::ValuesIn(append_cases()), OpCaseName());

TEST(KvAppendValidation, NamesTheTensor) {
    Buf k_new(DType::kF32, {2, 3, 8}), v_new(DType::kF32, {2, 3, 8});
    Buf kc(DType::kF32, {2, 4, 8}), vc(DType::kF32, {2, 4, 8}), pos(DType::kI32, {2, 4});
    Buf n = i32_buf({0, 0});
    KvAppendParams p{k_new.view(), v_new.view(), kc.view(), vc.view(), pos.view(), n.view(), 0};
    const Status s = run(kUnderTest, p);
    EXPECT_EQ(s.message(), "kv_append: tensor k_new: expected [*, 2, 8], got [2, 3, 8] f32");
}

}  // namespace
}  // namespace tca::test
