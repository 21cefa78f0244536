// Parity of the cache ops: kv_gather (an exact copy) and block_compact (exact cache contents;
// the kept set is compared as a set, on inputs whose compaction scores have a margin so the
// top-k is unambiguous in float32, or with exact ties, which must break to the lower position).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "parity/parity_common.h"
#include "support/oracles.h"

namespace tca::test {
namespace {

OpCase mk(const char* op, int64_t length, int64_t hq, int64_t hkv, int64_t d, int64_t n_q,
          DType kv = DType::kF32, Input in = Input::kNormal, int b = 16, int w = 64,
          uint64_t seed = 1) {
    OpCase c;
    c.op = op;
    c.length = length;
    c.hq = hq;
    c.hkv = hkv;
    c.d = d;
    c.n_q = n_q;
    c.kv = kv;
    c.input = in;
    c.b = b;
    c.w = w;
    c.seed = seed;
    return c;
}

const std::vector<int64_t>& edge_lengths() {
    static const std::vector<int64_t> l = {1, 15, 16, 17, 55, 63, 64, 80, 1000};
    return l;
}

// ---- kv_gather ------------------------------------------------------------------------------

std::vector<OpCase> gather_cases() {
    const char* op = "kv_gather";
    std::vector<OpCase> v;
    for (int64_t L : edge_lengths()) v.push_back(mk(op, L, 1, 2, 8, 1));
    for (DType t : {DType::kF16, DType::kBF16}) v.push_back(mk(op, 80, 1, 2, 64, 1, t));
    v.push_back(mk(op, 17, 1, 8, 128, 1, DType::kBF16));
    for (double frac : {0.0, 1.0}) {
        OpCase c = mk(op, 55, 1, 2, 64, 1, DType::kF16);
        c.frac = frac;
        v.push_back(c);
    }
    return registered(std::move(v));
}

class KvGatherParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(KvGatherParity, CopiesExactly) {
    const OpCase& c = GetParam();
    Rng rng(c.seed * 29 + static_cast<uint64_t>(c.length));
    const Qkv in = make_qkv(1, c.hkv, 1, c.length, c.d, c.kv, c.input, rng);
    std::vector<std::vector<int32_t>> pos;
    int64_t longest = 0;
    for (int64_t h = 0; h < c.hkv; ++h) {
        // Head 1 keeps everything and head 0 the chosen share, so both extremes appear.
        pos.push_back(random_subset(0, c.length, h == 1 ? 1.0 : c.frac, rng));
        longest = std::max<int64_t>(longest, static_cast<int64_t>(pos.back().size()));
    }
    const int64_t cap = longest + 3;
    Gathered ref, cpu;
    ASSERT_TRUE(run_gather(Backend::kRef, in.k, in.v, pos, cap, &ref).ok());
    // The CPU run writes into NaN-prefilled outputs.
    Buf positions = i32_buf_2d(pos, std::max<int64_t>(1, longest), -1);
    Buf n = ref.n.clone();
    Buf k_out(c.kv, {c.hkv, cap, c.d}), v_out(c.kv, {c.hkv, cap, c.d}), slot_pos(DType::kI32, {c.hkv, cap});
    k_out.fill_poison();
    v_out.fill_poison();
    slot_pos.fill_poison();
    KvGatherParams p;
    p.k = in.k.view();
    p.v = in.v.view();
    p.positions = positions.view();
    p.n_positions = n.view();
    p.k_out = k_out.view();
    p.v_out = v_out.view();
    p.slot_pos = slot_pos.view();
    const Status st = run(kUnderTest, p);
    ASSERT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(k_out.canaries_intact("cpu k_out"));
    EXPECT_TRUE(v_out.canaries_intact("cpu v_out"));
    EXPECT_TRUE(slot_pos.canaries_intact("cpu slot_pos"));
    for (int64_t h = 0; h < c.hkv; ++h) {
        for (size_t s = 0; s < pos[h].size(); ++s) {
            const auto si = static_cast<int64_t>(s);
            ASSERT_EQ(slot_pos.at({h, si}), pos[h][s]) << "slot_pos[" << h << ", " << s << "]";
            for (int64_t c2 = 0; c2 < c.d; ++c2) {
                ASSERT_EQ(k_out.bits(k_out.flat({h, si, c2})), in.k.bits(in.k.flat({h, pos[h][s], c2})))
                    << "k_out[" << h << ", " << s << ", " << c2 << "]";
                ASSERT_EQ(v_out.bits(v_out.flat({h, si, c2})), in.v.bits(in.v.flat({h, pos[h][s], c2})))
                    << "v_out[" << h << ", " << s << ", " << c2 << "]";
                ASSERT_EQ(k_out.bits(k_out.flat({h, si, c2})), ref.k.bits(ref.k.flat({h, si, c2})));
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Edges, KvGatherParity, ::testing::ValuesIn(gather_cases()), OpCaseName());

// ---- block_compact --------------------------------------------------------------------------

std::vector<OpCase> compact_cases() {
    const char* op = "block_compact";
    std::vector<OpCase> v;
    // length = n_slots of every head; heads whose local part is shorter than b get keep = -1
    // (left alone), so lengths 1 and b-1 check that nothing is touched.
    for (int64_t L : edge_lengths()) v.push_back(mk(op, L, 4, 2, 8, 1));
    v.push_back(mk(op, 80, 8, 1, 64, 3, DType::kF16));
    v.push_back(mk(op, 80, 8, 2, 64, 1, DType::kBF16));
    v.push_back(mk(op, 80, 2, 2, 64, 2));
    v.push_back(mk(op, 40, 4, 1, 128, 2));
    v.push_back(mk(op, 80, 4, 2, 64, 1, DType::kF32, Input::kSpiky));
    v.push_back(mk(op, 80, 4, 2, 64, 2, DType::kF32, Input::kTies));
    v.push_back(mk(op, 300, 4, 2, 8, 1, DType::kF32, Input::kNormal, 128, 256));
    return registered(std::move(v));
}

struct CompactState {
    Buf k, v, slot_pos, n_global, n_slots;
};

// Compacts the oldest local block of each head on the reference and the backend under test and
// compares the caches. With `min_local` every head gets a budget and the op itself leaves the
// heads whose local part is below min_local (the decode path, BlockCompactParams::min_local);
// without it the caller leaves them with keep = -1.
void check_block_compact(const OpCase& c, bool use_min_local) {
    const int64_t cap = c.length + 2, b = c.b;
    const int64_t min_local = use_min_local && cap >= b ? std::min(cap, b + b / 2) : 0;
    // Draw inputs until every compacted block's f64 scores have a margin at the keep boundary
    // (exact ties excepted: they must break to the lower position on every backend).
    for (uint64_t attempt = 0;; ++attempt) {
        ASSERT_LT(attempt, 200u) << "no input with a margin found";
        Rng rng(c.seed * 977 + attempt * 7 + static_cast<uint64_t>(c.length));
        Qkv in = make_qkv(c.hq, c.hkv, c.n_q, cap, c.d, c.kv, c.input, rng);
        std::vector<int32_t> n_global, n_slots, keep;
        std::vector<std::vector<int32_t>> pos(static_cast<size_t>(c.hkv));
        bool margin_ok = true;
        for (int64_t h = 0; h < c.hkv; ++h) {
            const int64_t n = c.length;
            const int64_t g0 = n >= b ? static_cast<int64_t>(rng.below(static_cast<uint64_t>(n - b + 1))) : 0;
            int32_t p = 0;
            for (int64_t s = 0; s < n; ++s) pos[h].push_back(p += 1 + static_cast<int32_t>(rng.below(2)));
            n_global.push_back(static_cast<int32_t>(g0));
            n_slots.push_back(static_cast<int32_t>(n));
            int32_t t = -1;
            if (n - g0 >= std::max(b, min_local)) {
                const int32_t choices[] = {0, 1, static_cast<int32_t>(b / 2), static_cast<int32_t>(b),
                                           static_cast<int32_t>(1 + rng.below(static_cast<uint64_t>(b)))};
                t = choices[(static_cast<uint64_t>(h) + c.seed) % 5];
                double margin = 0.0;
                const auto sc = compaction_scores(in.q, in.k, h, g0, b);
                top_k(sc, t, &margin);
                const double mx = *std::max_element(sc.begin(), sc.end());
                if (c.input != Input::kTies && margin < 1e-4 * mx) margin_ok = false;
            }
            keep.push_back(t);
        }
        if (!margin_ok) continue;
        // What the op is given: under min_local the heads it must leave get a budget as well.
        std::vector<int32_t> keep_arg = keep;
        if (min_local > 0) {
            for (int32_t& t : keep_arg) t = t < 0 ? static_cast<int32_t>(b / 2) : t;
        }
        CompactState st[2];
        const Backend backends[2] = {Backend::kRef, kUnderTest};
        for (int r = 0; r < 2; ++r) {
            st[r] = CompactState{in.k.clone(), in.v.clone(), i32_buf_2d(pos, cap, -3), i32_buf(n_global),
                                 i32_buf(n_slots)};
            Buf keep_buf = i32_buf(keep_arg);
            BlockCompactParams p;
            p.q = in.q.view();
            p.k_cache = st[r].k.view();
            p.v_cache = st[r].v.view();
            p.slot_pos = st[r].slot_pos.view();
            p.n_global = st[r].n_global.view();
            p.n_slots = st[r].n_slots.view();
            p.keep = keep_buf.view();
            p.block_size = c.b;
            p.min_local = min_local;
            const Status s = run(backends[r], p);
            ASSERT_TRUE(s.ok()) << backend_name(backends[r]) << ": " << s.to_string();
            for (const Buf* bf : {&st[r].k, &st[r].v, &st[r].slot_pos, &st[r].n_global, &st[r].n_slots}) {
                EXPECT_TRUE(bf->canaries_intact(std::string(backend_name(backends[r])) + " cache"));
            }
        }
        ASSERT_TRUE(all_equal(st[1].n_global, st[0].n_global, "block_compact.n_global cpu vs ref"));
        ASSERT_TRUE(all_equal(st[1].n_slots, st[0].n_slots, "block_compact.n_slots cpu vs ref"));
        for (int64_t h = 0; h < c.hkv; ++h) {
            const auto n = static_cast<int64_t>(st[0].n_slots.get(h));
            if (keep[h] < 0) {
                EXPECT_EQ(n, n_slots[h]) << "head " << h << " with keep -1 changed";
            } else {
                EXPECT_EQ(n, n_slots[h] - (b - keep[h]));
                EXPECT_EQ(st[0].n_global.get(h), n_global[h] + keep[h]);
            }
            // Kept set (positions, in position order) and cache rows: bitwise equal.
            for (int64_t s = 0; s < n; ++s) {
                ASSERT_EQ(st[1].slot_pos.at({h, s}), st[0].slot_pos.at({h, s}))
                    << "slot_pos[" << h << ", " << s << "] keep " << keep[h];
                for (int64_t c2 = 0; c2 < c.d; ++c2) {
                    const int64_t f = st[0].k.flat({h, s, c2});
                    ASSERT_EQ(st[1].k.bits(f), st[0].k.bits(f)) << "k_cache[" << h << ", " << s << "]";
                    ASSERT_EQ(st[1].v.bits(f), st[0].v.bits(f)) << "v_cache[" << h << ", " << s << "]";
                }
            }
            // Exact ties keep the lowest positions of the block.
            if (c.input == Input::kTies && keep[h] > 0) {
                for (int64_t s = 0; s < keep[h]; ++s) {
                    EXPECT_EQ(st[1].slot_pos.at({h, n_global[h] + s}), pos[h][n_global[h] + s])
                        << "ties break to the lower position";
                }
            }
        }
        return;
    }
}

class BlockCompactParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(BlockCompactParity, MatchesReferenceExactly) { check_block_compact(GetParam(), false); }

TEST_P(BlockCompactParity, LeavesHeadsBelowMinLocal) { check_block_compact(GetParam(), true); }

INSTANTIATE_TEST_SUITE_P(Edges, BlockCompactParity, ::testing::ValuesIn(compact_cases()),
                         OpCaseName());

}  // namespace
}  // namespace tca::test
