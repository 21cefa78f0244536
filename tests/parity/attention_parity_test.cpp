// Parity of the attention ops (attention_dense, sparse_prefill, decode_attention): CPU against
// the float64 reference on edge shapes, tolerance by the FlashAttention-3 rule.
#include <gtest/gtest.h>

#include <algorithm>

#include "parity/parity_common.h"
#include "support/oracles.h"

namespace tca::test {
namespace {

int64_t pos0_of(const OpCase& c) { return c.q_pos0 < 0 ? c.length - c.n_q : c.q_pos0; }

// ---- attention_dense ------------------------------------------------------------------------

std::vector<OpCase> dense_cases() {
    const char* op = "attention_dense";
    std::vector<OpCase> v;
    // Full causal prefill over the edge lengths (b = 16, w = 64), GQA 4.
    for (int64_t L : {1, 15, 16, 17, 55, 63, 64, 80}) v.push_back(mk(op, L, 4, 1, 8, L, 0));
    // Long, non-power-of-two: the last queries only (keeps the float64 reference fast).
    v.push_back(mk(op, 1000, 2, 2, 8, 5, -1));
    v.push_back(mk(op, 1000, 8, 1, 64, 2, 300));
    // GQA group sizes 1, 4, 8 at head_dim 64, a q_pos0 offset in the middle.
    v.push_back(mk(op, 80, 2, 2, 64, 17, 30));
    v.push_back(mk(op, 80, 8, 2, 64, 17, 30));
    v.push_back(mk(op, 80, 8, 1, 64, 17, 30));
    // head_dim 128 with short lengths, f16/bf16 storage.
    v.push_back(mk(op, 17, 4, 1, 128, 17, 0));
    v.push_back(mk(op, 55, 4, 2, 64, 55, 0, DType::kF16));
    v.push_back(mk(op, 55, 4, 2, 64, 55, 0, DType::kBF16));
    v.push_back(mk(op, 33, 8, 1, 128, 9, 24, DType::kBF16));
    // Structured inputs: a few dominating keys; exact ties.
    v.push_back(mk(op, 80, 4, 1, 64, 80, 0, DType::kF32, Input::kSpiky));
    v.push_back(mk(op, 64, 4, 1, 64, 64, 0, DType::kF32, Input::kTies));
    v.push_back(mk(op, 63, 4, 1, 64, 20, 43, DType::kF16, Input::kSpiky));
    return registered(std::move(v));
}

class AttentionDenseParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(AttentionDenseParity, MatchesFloat64) {
    const OpCase& c = GetParam();
    Rng rng(c.seed * 7919 + static_cast<uint64_t>(c.length));
    const Qkv in = make_qkv(c.hq, c.hkv, c.n_q, c.length, c.d, c.kv, c.input, rng);
    Out3 out(DType::kF32, {c.hq, c.n_q, c.d});
    for (Backend be : parity_backends()) {
        AttentionDenseParams p;
        p.q = in.q.view();
        p.k = in.k.view();
        p.v = in.v.view();
        p.out = out.of(be).view();
        p.q_pos0 = pos0_of(c);
        const Status st = run(be, p);
        ASSERT_TRUE(st.ok()) << backend_name(be) << ": " << st.to_string();
    }
    expect_canaries(out, "out");
    expect_fa3(c, "out", out);
}

INSTANTIATE_TEST_SUITE_P(Edges, AttentionDenseParity, ::testing::ValuesIn(dense_cases()),
                         OpCaseName());

// ---- sparse_prefill -------------------------------------------------------------------------

std::vector<OpCase> prefill_cases() {
    const char* op = "sparse_prefill";
    std::vector<OpCase> v;
    // b = 16, w = 64: dense below w + b, one candidate block at 80.
    for (int64_t L : {1, 15, 16, 17, 55, 63, 64, 80}) v.push_back(mk(op, L, 4, 1, 8, L, 0));
    // b = 8, w = 16: the same edge lengths relative to b and w, now mostly in the sparse regime.
    for (int64_t L : {7, 8, 9, 15, 16, 24, 31, 57}) {
        v.push_back(mk(op, L, 4, 1, 8, L, 0, DType::kF32, Input::kNormal, 8, 16));
    }
    // Long: 58 candidate blocks; the last queries and a middle slice.
    v.push_back(mk(op, 1000, 4, 2, 8, 8, -1));
    v.push_back(mk(op, 1000, 2, 1, 8, 4, 500, DType::kBF16));
    // GQA 1/4/8 at head_dim 64; head_dim 128; f16/bf16.
    v.push_back(mk(op, 100, 2, 2, 64, 30, 70, DType::kF32, Input::kNormal, 8, 32));
    v.push_back(mk(op, 100, 8, 2, 64, 30, 70, DType::kF16, Input::kNormal, 8, 32));
    v.push_back(mk(op, 100, 8, 1, 64, 30, 70, DType::kBF16, Input::kNormal, 8, 32));
    v.push_back(mk(op, 60, 4, 1, 128, 60, 0, DType::kF32, Input::kNormal, 8, 16));
    // Structured inputs.
    v.push_back(mk(op, 120, 4, 1, 64, 120, 0, DType::kF32, Input::kSpiky, 8, 32));
    v.push_back(mk(op, 120, 4, 1, 64, 40, 80, DType::kF32, Input::kTies, 8, 32));
    // Selection shares: none (band only) and everything (dense).
    OpCase none = mk(op, 200, 4, 2, 8, 50, 150, DType::kF32, Input::kNormal, 16, 64, 2);
    none.frac = 0.0;
    v.push_back(none);
    OpCase all = mk(op, 200, 4, 2, 8, 50, 150, DType::kF16, Input::kNormal, 16, 64, 3);
    all.frac = 1.0;
    v.push_back(all);
    return registered(std::move(v));
}

class SparsePrefillParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(SparsePrefillParity, MatchesFloat64) {
    const OpCase& c = GetParam();
    Rng rng(c.seed * 104729 + static_cast<uint64_t>(c.length));
    const Qkv in = make_qkv(c.hq, c.hkv, c.n_q, c.length, c.d, c.kv, c.input, rng);
    const int64_t n = n_candidate_blocks(c.length, c.w, c.b);
    std::vector<std::vector<int32_t>> sel;
    for (int64_t h = 0; h < c.hkv; ++h) sel.push_back(random_subset(0, n * c.b, c.frac, rng));
    Gathered g;
    ASSERT_TRUE(run_gather(Backend::kRef, in.k, in.v, sel, std::max<int64_t>(1, n * c.b), &g).ok());
    Out3 out(DType::kF32, {c.hq, c.n_q, c.d});
    for (Backend be : parity_backends()) {
        SparsePrefillParams p;
        p.q = in.q.view();
        p.k = in.k.view();
        p.v = in.v.view();
        p.k_global = g.k.view();
        p.v_global = g.v.view();
        p.global_pos = g.slot_pos.view();
        p.n_global = g.n.view();
        p.out = out.of(be).view();
        p.q_pos0 = pos0_of(c);
        p.n_blocks = n;
        p.block_size = c.b;
        p.local_window = c.w;
        const Status st = run(be, p);
        ASSERT_TRUE(st.ok()) << backend_name(be) << ": " << st.to_string();
    }
    expect_canaries(out, "out");
    expect_fa3(c, "out", out);
}

INSTANTIATE_TEST_SUITE_P(Edges, SparsePrefillParity, ::testing::ValuesIn(prefill_cases()),
                         OpCaseName());

// ---- decode_attention -----------------------------------------------------------------------

std::vector<OpCase> decode_cases() {
    const char* op = "decode_attention";
    std::vector<OpCase> v;
    // length = cache capacity; head 0 holds `length` slots, others are ragged (see the test).
    for (int64_t L : {1, 15, 16, 17, 55, 63, 64, 80, 1000}) v.push_back(mk(op, L, 4, 2, 8, 1, -1));
    // Chunks (n_q > 1) that overlap the newest slots, so causality inside the chunk matters.
    v.push_back(mk(op, 80, 4, 1, 8, 7, -1));
    v.push_back(mk(op, 300, 8, 2, 64, 16, -1, DType::kF16));
    v.push_back(mk(op, 300, 8, 1, 64, 16, -1, DType::kBF16));
    v.push_back(mk(op, 100, 2, 2, 64, 5, -1));
    v.push_back(mk(op, 48, 4, 1, 128, 4, -1));
    v.push_back(mk(op, 48, 4, 2, 128, 1, -1, DType::kBF16));
    // A chunk lying before some slots (q_pos0 given): later slots are invisible.
    v.push_back(mk(op, 80, 4, 2, 64, 3, 40));
    v.push_back(mk(op, 80, 4, 1, 64, 8, -1, DType::kF32, Input::kSpiky));
    v.push_back(mk(op, 64, 4, 1, 64, 8, -1, DType::kF32, Input::kTies));
    return registered(std::move(v));
}

class DecodeAttentionParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(DecodeAttentionParity, MatchesFloat64) {
    const OpCase& c = GetParam();
    Rng rng(c.seed * 15485863 + static_cast<uint64_t>(c.length));
    const int64_t cap = c.length;
    // Cache slots: ascending, gapped positions (a compacted cache); head h holds
    // max(0, cap - h * (cap / 3 + 1)) slots (ragged). Slots past n_slots keep random K/V and
    // position -7, which every query would see if a backend read past n_slots.
    Qkv in = make_qkv(c.hq, c.hkv, c.n_q, cap, c.d, c.kv, c.input, rng);
    std::vector<std::vector<int32_t>> pos(static_cast<size_t>(c.hkv));
    std::vector<int32_t> n_slots;
    int32_t max_pos = 0;
    for (int64_t h = 0; h < c.hkv; ++h) {
        const int64_t n = std::max<int64_t>(0, cap - h * (cap / 3 + 1));
        int32_t p = 0;
        for (int64_t s = 0; s < n; ++s) {
            p += 1 + static_cast<int32_t>(rng.below(3));
            pos[h].push_back(p);
        }
        if (!pos[h].empty()) max_pos = std::max(max_pos, pos[h].back());
        n_slots.push_back(static_cast<int32_t>(n));
    }
    // The chunk ends at the newest slot by default: its earlier queries do not see the newest.
    const int64_t q_pos0 = c.q_pos0 >= 0 ? c.q_pos0 : std::max<int64_t>(0, max_pos - c.n_q + 1);
    Buf slot_pos = i32_buf_2d(pos, cap, -7);
    Buf ns = i32_buf(n_slots);
    Out3 out(DType::kF32, {c.hq, c.n_q, c.d});
    for (Backend be : parity_backends()) {
        DecodeAttentionParams p;
        p.q = in.q.view();
        p.k_cache = in.k.view();
        p.v_cache = in.v.view();
        p.slot_pos = slot_pos.view();
        p.n_slots = ns.view();
        p.out = out.of(be).view();
        p.q_pos0 = q_pos0;
        const Status st = run(be, p);
        ASSERT_TRUE(st.ok()) << backend_name(be) << ": " << st.to_string();
    }
    expect_canaries(out, "out");
    expect_fa3(c, "out", out);
}

INSTANTIATE_TEST_SUITE_P(Edges, DecodeAttentionParity, ::testing::ValuesIn(decode_cases()),
                         OpCaseName());

}  // namespace
}  // namespace tca::test
