// Parity of kv_compact: the backend's in-place compaction must give exactly the reference's
// cache (bits, positions, counts) for random kept sets, empty and full kept sets, untouched
// heads, regions ending before the last slot, and every storage type. The large cases (8-16
// heads, 8K-16K slots, head_dim 64/128) give the CUDA kernels many row chunks per head, grid
// stride loops, every copy width (padded rows) and sliced kept views, on the parallel move and
// on the serial one (cuda::set_kv_compact_serial); CUDA alone checks that heads breaking the
// invariants are left untouched (the CPU and the reference assert instead).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "parity/parity_common.h"
#if TCA_TEST_CUDA
#include "backend/cuda/cuda_ops.h"
#endif

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

// ---- Large caches ---------------------------------------------------------------------------

struct LargeCase {
    std::string name;
    DType kv;
    int64_t hkv, cap, d;
    int64_t row_pad;   // extra elements per cache row: row stride d + row_pad (narrower copy units)
    int64_t kept_pad;  // extra columns of the kept buffer: kept is a sliced view, as in the engine
    uint64_t seed;
    bool serial;       // CUDA: the single-CTA-per-head move (cuda::set_kv_compact_serial)
};
std::ostream& operator<<(std::ostream& os, const LargeCase& c) { return os << c.name; }

// One head's counts before compaction and its kept offsets.
struct HeadPlan {
    int32_t n_global = 0, n_slots = 0, region = -1;
    std::vector<int32_t> kept;
};

// Head h of a cache of `cap` slots: eight shapes in turn, each with a random part.
HeadPlan plan_head(int64_t h, int64_t cap, Rng& rng) {
    HeadPlan p;
    const auto c = static_cast<int32_t>(cap);
    const auto jitter = [&](int32_t n) { return static_cast<int32_t>(rng.below(static_cast<uint64_t>(n))); };
    switch (h % 8) {
        case 0:  // untouched
            p.n_slots = c - 5;
            p.n_global = 100;
            p.region = -1;
            break;
        case 1:  // a full cache, nothing kept: the 100 tail rows move down to slot 0
            p.n_slots = c;
            p.region = c - 100;
            break;
        case 2:  // everything kept, no tail: nothing moves
            p.n_slots = c - jitter(50);
            p.n_global = 64;
            p.region = p.n_slots - p.n_global;
            p.kept = random_subset(0, p.region, 1.0, rng);
            break;
        case 3:  // dense
            p.n_slots = c - 3;
            p.n_global = 300 + jitter(7);
            p.region = p.n_slots - p.n_global - 777;
            p.kept = random_subset(0, p.region, 0.9, rng);
            break;
        case 4:  // sparse
            p.n_slots = c - 1000;
            p.n_global = 17;
            p.region = p.n_slots - p.n_global - 1500 - jitter(64);
            p.kept = random_subset(0, p.region, 0.05, rng);
            break;
        case 5:  // half, one tail row
            p.n_slots = c - 1 - jitter(30);
            p.n_global = 1000;
            p.region = p.n_slots - p.n_global - 1;
            p.kept = random_subset(0, p.region, 0.5, rng);
            break;
        case 6:  // an empty region: nothing moves, the counts stay
            p.n_slots = c / 2;
            p.n_global = 11;
            p.region = 0;
            break;
        default: {  // the prompt end: 64 sink rows kept in place, 30%, a local window of 1031
            p.n_slots = c - jitter(9);
            p.region = p.n_slots - 1031;
            for (int32_t i = 0; i < 64; ++i) p.kept.push_back(i);
            for (int32_t i : random_subset(64, p.region, 0.3, rng)) p.kept.push_back(i);
            break;
        }
    }
    return p;
}

// Byte offset of element (h, s, 0) of a cache view.
size_t row_offset(const TensorView& t, int64_t h, int64_t s) {
    return static_cast<size_t>(h * t.stride[0] + s * t.stride[1]) * dtype_size(t.dtype);
}

class KvCompactLarge : public ::testing::TestWithParam<LargeCase> {};

TEST_P(KvCompactLarge, EqualsTheReference) {
    const LargeCase& c = GetParam();
    Rng rng(c.seed);
    const int64_t row = c.d + c.row_pad;
    Buf k(c.kv, {c.hkv, c.cap, row}), v(c.kv, {c.hkv, c.cap, row}), pos(DType::kI32, {c.hkv, c.cap});
    fill_normal(k, rng);
    fill_normal(v, rng);
    for (int64_t h = 0; h < c.hkv; ++h) {
        for (int64_t s = 0; s < c.cap; ++s) pos.put({h, s}, static_cast<double>(c.hkv * s + h));
    }
    std::vector<HeadPlan> plan;
    std::vector<int32_t> n_global, n_slots, region, n_kept;
    std::vector<std::vector<int32_t>> kept;
    for (int64_t h = 0; h < c.hkv; ++h) {
        plan.push_back(plan_head(h, c.cap, rng));
        n_global.push_back(plan.back().n_global);
        n_slots.push_back(plan.back().n_slots);
        region.push_back(plan.back().region);
        n_kept.push_back(static_cast<int32_t>(plan.back().kept.size()));
        kept.push_back(plan.back().kept);
    }
    Buf kept_buf = i32_buf_2d(kept, c.cap + c.kept_pad, -1);
    const TensorView kept_view = slice(kept_buf.view(), 1, 0, c.cap);
    const Buf n_kept_buf = i32_buf(n_kept), region_buf = i32_buf(region);
    struct Run {
        Buf k, v, pos, n_global, n_slots;
    };
    auto run_on = [&](Backend b) {
        Run r{k.clone(), v.clone(), pos.clone(), i32_buf(n_global), i32_buf(n_slots)};
        KvCompactParams p{slice(r.k.view(), 2, 0, c.d), slice(r.v.view(), 2, 0, c.d), r.pos.view(),
                          r.n_global.view(), r.n_slots.view(), kept_view, n_kept_buf.view(),
                          region_buf.view()};
#if TCA_TEST_CUDA
        const bool was_serial = cuda::kv_compact_serial();
        cuda::set_kv_compact_serial(c.serial);
#endif
        const Status s = run(b, p);
#if TCA_TEST_CUDA
        cuda::set_kv_compact_serial(was_serial);
#endif
        EXPECT_TRUE(s.ok()) << s.to_string();
        return r;
    };
    const Run ref = run_on(Backend::kRef), got = run_on(kUnderTest);
    EXPECT_TRUE(all_equal(got.n_global, ref.n_global, "n_global"));
    EXPECT_TRUE(all_equal(got.n_slots, ref.n_slots, "n_slots"));
    EXPECT_TRUE(got.k.canaries_intact("k_cache"));
    EXPECT_TRUE(got.v.canaries_intact("v_cache"));
    EXPECT_TRUE(got.pos.canaries_intact("slot_pos"));
    const size_t es = dtype_size(c.kv), data_bytes = static_cast<size_t>(c.d) * es;
    const size_t pad_bytes = static_cast<size_t>(c.row_pad) * es;
    const auto* in_k = static_cast<const unsigned char*>(k.view().data);
    const auto* in_v = static_cast<const unsigned char*>(v.view().data);
    for (int64_t h = 0; h < c.hkv; ++h) {
        const HeadPlan& hp = plan[static_cast<size_t>(h)];
        const int64_t n = static_cast<int64_t>(ref.n_slots.at({h}));
        const int64_t want_n =
            hp.region < 0 ? hp.n_slots : hp.n_slots - hp.region + static_cast<int64_t>(hp.kept.size());
        ASSERT_EQ(n, want_n) << "head " << h;
        ASSERT_EQ(static_cast<int64_t>(ref.n_global.at({h})),
                  hp.n_global + (hp.region < 0 ? 0 : static_cast<int64_t>(hp.kept.size())))
            << "head " << h;
        for (int64_t s = 0; s < n; ++s) {
            ASSERT_EQ(got.pos.at({h, s}), ref.pos.at({h, s})) << "head " << h << " slot " << s;
            if (s > 0) {
                ASSERT_GT(ref.pos.at({h, s}), ref.pos.at({h, s - 1})) << "positions ascend";
            }
            const size_t o = row_offset(k.view(), h, s);
            const auto* gk = static_cast<const unsigned char*>(got.k.view().data) + o;
            const auto* gv = static_cast<const unsigned char*>(got.v.view().data) + o;
            const auto* rk = static_cast<const unsigned char*>(ref.k.view().data) + o;
            const auto* rv = static_cast<const unsigned char*>(ref.v.view().data) + o;
            ASSERT_EQ(std::memcmp(gk, rk, data_bytes), 0) << "k_cache head " << h << " slot " << s;
            ASSERT_EQ(std::memcmp(gv, rv, data_bytes), 0) << "v_cache head " << h << " slot " << s;
            // The padding of every row stays as it was.
            ASSERT_EQ(std::memcmp(gk + data_bytes, in_k + o + data_bytes, pad_bytes), 0)
                << "k_cache padding, head " << h << " slot " << s;
            ASSERT_EQ(std::memcmp(gv + data_bytes, in_v + o + data_bytes, pad_bytes), 0)
                << "v_cache padding, head " << h << " slot " << s;
        }
        if (hp.region < 0) {  // untouched: every slot as it was
            for (int64_t s = 0; s < c.cap; ++s) {
                const size_t o = row_offset(k.view(), h, s);
                ASSERT_EQ(std::memcmp(static_cast<const unsigned char*>(got.k.view().data) + o, in_k + o,
                                      data_bytes + pad_bytes),
                          0)
                    << "untouched head " << h << " slot " << s;
                ASSERT_EQ(std::memcmp(static_cast<const unsigned char*>(got.v.view().data) + o, in_v + o,
                                      data_bytes + pad_bytes),
                          0)
                    << "untouched head " << h << " slot " << s;
                ASSERT_EQ(got.pos.at({h, s}), pos.at({h, s})) << "untouched head " << h << " slot " << s;
            }
        }
    }
}

std::vector<LargeCase> large_cases() {
    // Row copy units of the CUDA kernels: 16 bytes (contiguous rows), 8 (f32, d + 2), 4 (f16/bf16,
    // d + 2) and 2 (f16, d + 1). bf16 d 128 with 8 heads is the 8K-prompt shape of LLaMA-3-8B.
    return {
        {"bf16_h8_d128_cap8229", DType::kBF16, 8, 8229, 128, 0, 0, 11, false},
        {"f32_h8_d128_cap8229", DType::kF32, 8, 8229, 128, 0, 0, 12, false},
        {"f16_h8_d128_cap8199_unit2", DType::kF16, 8, 8199, 128, 1, 0, 13, false},
        {"bf16_h8_d128_cap8192_unit4", DType::kBF16, 8, 8192, 128, 2, 0, 14, false},
        {"f32_h16_d64_cap9001_unit8", DType::kF32, 16, 9001, 64, 2, 0, 15, false},
        {"bf16_h8_d128_cap16389_kept_slice", DType::kBF16, 8, 16389, 128, 0, 100, 16, false},
        {"serial_bf16_h8_d128_cap8229", DType::kBF16, 8, 8229, 128, 0, 0, 11, true},
        {"serial_f32_h16_d64_cap9001_unit4", DType::kF32, 16, 9001, 64, 1, 3, 17, true},
    };
}

struct LargeCaseName {
    std::string operator()(const ::testing::TestParamInfo<LargeCase>& i) const { return i.param.name; }
};
INSTANTIATE_TEST_SUITE_P(Large, KvCompactLarge, ::testing::ValuesIn(large_cases()), LargeCaseName());

#if TCA_TEST_CUDA
// Heads that break the invariants (the CPU backend and the reference assert) are left as they
// are, on both moves, while the valid heads of the same call compact as the reference does.
TEST(KvCompactInvalidHeads, AreLeftUntouched) {
    for (const bool serial : {false, true}) {
        SCOPED_TRACE(serial ? "serial" : "parallel");
        const int64_t hkv = 8, cap = 4100, d = 128, kept_cap = 3000;
        Rng rng(21);
        Buf k(DType::kBF16, {hkv, cap, d}), v(DType::kBF16, {hkv, cap, d}), pos(DType::kI32, {hkv, cap});
        fill_normal(k, rng);
        fill_normal(v, rng);
        for (int64_t h = 0; h < hkv; ++h) {
            for (int64_t s = 0; s < cap; ++s) pos.put({h, s}, static_cast<double>(hkv * s + h));
        }
        // Heads 1-5 break one rule each: 1 n_global < 0, 2 n_kept > region, 3 n_global + region >
        // n_slots, 4 n_slots > cap, 5 n_kept > the kept view's columns. 0, 6 and 7 are valid.
        const std::vector<int32_t> n_global = {10, -1, 10, 10, 10, 10, 0, 5};
        const std::vector<int32_t> n_slots = {4000, 4000, 4000, 4000, 4101, 4000, 4100, 3000};
        const std::vector<int32_t> region = {3000, 3000, 3000, 3991, 3000, 3500, 4000, 2000};
        const std::vector<int32_t> n_kept = {1000, 1000, 3001, 1000, 1000, 3001, 3000, 0};
        std::vector<std::vector<int32_t>> kept(static_cast<size_t>(hkv));
        for (int64_t h = 0; h < hkv; ++h) {
            const auto u = static_cast<size_t>(h);
            const int32_t r = std::max(region[u], 0);
            const int32_t nk = std::min(n_kept[u], r);  // ascending offsets spread over the region
            for (int32_t i = 0; i < nk; ++i) kept[u].push_back(i * r / std::max(n_kept[u], 1));
        }
        // kept_cap columns, then the extra column head 5 reads past (a sliced view).
        Buf kept_buf = i32_buf_2d(kept, kept_cap + 64, 0);
        const TensorView kept_view = slice(kept_buf.view(), 1, 0, kept_cap);
        std::vector<int32_t> ref_region = region;
        for (int64_t h = 1; h <= 5; ++h) ref_region[static_cast<size_t>(h)] = -1;
        const Buf n_kept_buf = i32_buf(n_kept), region_buf = i32_buf(region);
        const Buf ref_region_buf = i32_buf(ref_region);
        struct Run {
            Buf k, v, pos, n_global, n_slots;
        };
        auto run_on = [&](Backend b, const Buf& rg) {
            Run r{k.clone(), v.clone(), pos.clone(), i32_buf(n_global), i32_buf(n_slots)};
            KvCompactParams p{r.k.view(), r.v.view(), r.pos.view(), r.n_global.view(), r.n_slots.view(),
                              kept_view, n_kept_buf.view(), rg.view()};
            const bool was_serial = cuda::kv_compact_serial();
            cuda::set_kv_compact_serial(serial);
            const Status s = run(b, p);
            cuda::set_kv_compact_serial(was_serial);
            EXPECT_TRUE(s.ok()) << s.to_string();
            return r;
        };
        // The reference skips the invalid heads through region -1 (it would assert on them).
        const Run ref = run_on(Backend::kRef, ref_region_buf), got = run_on(Backend::kCuda, region_buf);
        EXPECT_TRUE(all_equal(got.n_global, ref.n_global, "n_global"));
        EXPECT_TRUE(all_equal(got.n_slots, ref.n_slots, "n_slots"));
        EXPECT_TRUE(all_equal(got.pos, ref.pos, "slot_pos"));
        EXPECT_TRUE(all_equal(got.k, ref.k, "k_cache"));
        EXPECT_TRUE(all_equal(got.v, ref.v, "v_cache"));
    }
}
#endif

}  // namespace
}  // namespace tca::test
