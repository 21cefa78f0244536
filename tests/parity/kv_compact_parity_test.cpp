// Parity of kv_compact: the CPU in-place compaction must give exactly the reference's cache
// (bits, positions, counts) for random kept sets, empty and full kept sets, untouched heads,
// regions ending before the last slot, and every storage type.
#include <gtest/gtest.h>

#include "parity/parity_common.h"

namespace tca::test {
namespace {

std::vector<OpCase> compact_cases() {
    std::vector<OpCase> v;
    auto mk = [](int64_t len, int64_t hkv, int64_t d, DType kv, double frac, uint64_t seed) {
        OpCase c;
        c.op = "kv_compact";
        c.length = len;  // slots held by each head before compaction
        c.hkv = hkv;
        c.d = d;
        c.kv = kv;
        c.frac = frac;
        c.seed = seed;
        return c;
    };
    for (int64_t n : {1, 15, 16, 17, 55, 63, 64, 80, 1000}) v.push_back(mk(n, 3, 8, DType::kF32, 0.3, 1));
    for (DType t : {DType::kF16, DType::kBF16}) v.push_back(mk(80, 8, 128, t, 0.5, 2));
    v.push_back(mk(80, 2, 64, DType::kF32, 0.0, 3));
    v.push_back(mk(80, 2, 64, DType::kF32, 1.0, 4));
    return registered(std::move(v));
}

class KvCompactParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(KvCompactParity, EqualsTheReference) {
    const OpCase& c = GetParam();
    Rng rng(c.seed * 37 + static_cast<uint64_t>(c.length));
    const int64_t cap = c.length + 3;
    Buf k(c.kv, {c.hkv, cap, c.d}), v(c.kv, {c.hkv, cap, c.d}), pos(DType::kI32, {c.hkv, cap});
    fill_normal(k, rng);
    fill_normal(v, rng);
    for (int64_t h = 0; h < c.hkv; ++h) {
        for (int64_t s = 0; s < cap; ++s) pos.put({h, s}, static_cast<double>(10 * s + h));
    }
    // Head 0 is left alone; the others compact a random region after a random global part.
    std::vector<int32_t> n_global(static_cast<size_t>(c.hkv)), n_slots(n_global.size()), region(n_global.size());
    std::vector<std::vector<int32_t>> kept(n_global.size());
    for (int64_t h = 0; h < c.hkv; ++h) {
        const auto u = static_cast<size_t>(h);
        n_slots[u] = static_cast<int32_t>(c.length);
        n_global[u] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(c.length / 4 + 1)));
        const int64_t room = c.length - n_global[u];
        region[u] = h == 0 ? -1 : static_cast<int32_t>(rng.below(static_cast<uint64_t>(room + 1)));
        if (region[u] > 0) kept[u] = random_subset(0, region[u], c.frac, rng);
    }
    struct Run {
        Buf k, v, pos, n_global, n_slots;
    };
    Buf kept_buf = i32_buf_2d(kept, std::max<int64_t>(1, c.length), -1);
    std::vector<int32_t> n_kept;
    for (const auto& kv : kept) n_kept.push_back(static_cast<int32_t>(kv.size()));
    Buf n_kept_buf = i32_buf(n_kept), region_buf = i32_buf(region);
    auto run_on = [&](Backend b) {
        Run r{k.clone(), v.clone(), pos.clone(), i32_buf(n_global), i32_buf(n_slots)};
        KvCompactParams p{r.k.view(), r.v.view(), r.pos.view(), r.n_global.view(), r.n_slots.view(),
                          kept_buf.view(), n_kept_buf.view(), region_buf.view()};
        const Status s = run(b, p);
        EXPECT_TRUE(s.ok()) << s.to_string();
        return r;
    };
    Run ref = run_on(Backend::kRef), cpu = run_on(kUnderTest);
    EXPECT_TRUE(all_equal(cpu.n_global, ref.n_global, "n_global"));
    EXPECT_TRUE(all_equal(cpu.n_slots, ref.n_slots, "n_slots"));
    EXPECT_TRUE(cpu.k.canaries_intact("cpu k_cache"));
    for (int64_t h = 0; h < c.hkv; ++h) {
        const auto u = static_cast<size_t>(h);
        const int64_t n = static_cast<int64_t>(ref.n_slots.at({h}));
        const int64_t want_n = region[u] < 0 ? c.length : c.length - region[u] + static_cast<int64_t>(kept[u].size());
        ASSERT_EQ(n, want_n) << "head " << h;
        for (int64_t s = 0; s < n; ++s) {
            ASSERT_EQ(cpu.pos.at({h, s}), ref.pos.at({h, s})) << "head " << h << " slot " << s;
            if (s > 0) {
                ASSERT_GT(ref.pos.at({h, s}), ref.pos.at({h, s - 1})) << "positions ascend";
            }
            for (int64_t e = 0; e < c.d; ++e) {
                ASSERT_EQ(cpu.k.bits(cpu.k.flat({h, s, e})), ref.k.bits(ref.k.flat({h, s, e})));
                ASSERT_EQ(cpu.v.bits(cpu.v.flat({h, s, e})), ref.v.bits(ref.v.flat({h, s, e})));
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Edges, KvCompactParity, ::testing::ValuesIn(compact_cases()), OpCaseName());

}  // namespace
}  // namespace tca::test
