// Parameter validation of every op in TCA_FOR_EACH_OP, through the float64 reference, the CPU
// backend and the device dispatch: an invalid parameter gives an error Status whose message
// names the op, the parameter and its value, and nothing is written.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "support/harness.h"

namespace tca::test {
namespace {

#define TCA_TEST_DISPATCH(name, Params) \
    [[maybe_unused]] Status s_dispatch(const Params& p) { return ops::name(Device::kCpu, p); }
TCA_FOR_EACH_OP(TCA_TEST_DISPATCH)
#undef TCA_TEST_DISPATCH

// Runs `p` on ref, cpu and ops:: dispatch; each must fail with a message containing the op
// name and every needle, identical across backends (validation is shared).
template <class P>
void expect_invalid(const P& p, const std::string& op, const std::vector<std::string>& needles,
                    const std::string& what) {
    SCOPED_TRACE(op + ": " + what);
    const Status v = validate(p);
    ASSERT_FALSE(v.ok()) << "validate accepted it";
    for (Backend be : {Backend::kRef, Backend::kCpu}) {
        const Status s = run(be, p);
        ASSERT_FALSE(s.ok()) << backend_name(be) << " accepted it";
        EXPECT_EQ(s.message(), v.message()) << backend_name(be);
    }
    EXPECT_EQ(s_dispatch(p).message(), v.message());
    EXPECT_NE(v.message().find(op), std::string::npos) << v.message();
    for (const std::string& n : needles) {
        EXPECT_NE(v.message().find(n), std::string::npos) << "'" << v.message() << "' lacks '" << n << "'";
    }
}

template <class P>
void expect_valid(const P& p, const std::string& op) {
    const Status v = validate(p);
    EXPECT_TRUE(v.ok()) << op << ": the valid base case is rejected: " << v.to_string();
}

// ---- attention_dense ------------------------------------------------------------------------

struct Dense {
    Buf q, k, v, out;
    AttentionDenseParams p;
    Dense(int64_t hq = 4, int64_t hkv = 2, int64_t d = 8, int64_t n_q = 3, int64_t n_kv = 10,
          DType kd = DType::kF32, DType vd = DType::kF32)
        : q(DType::kF32, {hq, n_q, d}), k(kd, {hkv, n_kv, d}), v(vd, {hkv, n_kv, d}),
          out(DType::kF32, {hq, n_q, d}) {
        p.q = q.view();
        p.k = k.view();
        p.v = v.view();
        p.out = out.view();
        p.q_pos0 = n_kv - n_q;
    }
};

TEST(OpValidation, AttentionDense) {
    const std::string op = "attention_dense";
    expect_valid(Dense().p, op);
    for (int64_t d : {7, 12, 512, 0}) {
        Dense t(4, 2, d);
        expect_invalid(t.p, op, {"head_dim", std::to_string(d)}, "head_dim");
    }
    {
        Dense t(3, 2);
        expect_invalid(t.p, op, {"n_q_heads (3)", "n_kv_heads (2)"}, "GQA not divisible");
    }
    {
        Dense t(4, 2, 8, 3, 10, DType::kI32, DType::kI32);
        expect_invalid(t.p, op, {"k", "i32"}, "k dtype");
    }
    {
        Dense t(4, 2, 8, 3, 10, DType::kF32, DType::kF16);
        expect_invalid(t.p, op, {"v", "f16"}, "v dtype differs from k");
    }
    {
        Dense t;
        Buf q16(DType::kF16, {4, 3, 8});
        t.p.q = q16.view();
        expect_invalid(t.p, op, {"q", "f16"}, "q dtype");
    }
    {
        Dense t;
        Buf bad(DType::kF32, {4, 2, 8});
        t.p.out = bad.view();
        expect_invalid(t.p, op, {"out", "[4, 2, 8]"}, "out shape");
    }
    for (int64_t pos0 : {-1, 8, 100}) {
        Dense t;
        t.p.q_pos0 = pos0;
        expect_invalid(t.p, op, {"q_pos0 " + std::to_string(pos0)}, "q_pos0 out of range");
    }
    for (float s : {-1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        Dense t;
        t.p.scale = s;
        expect_invalid(t.p, op, {"scale"}, "scale");
    }
    {
        Dense t;
        t.p.k = TensorView();
        expect_invalid(t.p, op, {"tensor k is missing"}, "missing k");
    }
    {
        Dense t;
        Buf k2(DType::kF32, {2, 10});
        t.p.k = k2.view();
        expect_invalid(t.p, op, {"k", "3 dims"}, "k rank");
    }
}

// ---- token_importance -----------------------------------------------------------------------

struct Importance {
    Buf q, k, scores;
    TokenImportanceParams p;
    Importance(int64_t hq = 4, int64_t hkv = 2, int64_t d = 8, int64_t n_obs = 2, int64_t n_kv = 10)
        : q(DType::kF32, {hq, n_obs, d}), k(DType::kBF16, {hkv, n_kv, d}), scores(DType::kF32, {hkv, n_kv}) {
        p.q = q.view();
        p.k = k.view();
        p.scores = scores.view();
    }
};

TEST(OpValidation, TokenImportance) {
    const std::string op = "token_importance";
    expect_valid(Importance().p, op);
    for (int64_t d : {7, 12, 512}) {
        Importance t(4, 2, d);
        expect_invalid(t.p, op, {"head_dim", std::to_string(d)}, "head_dim");
    }
    {
        Importance t(6, 4);
        expect_invalid(t.p, op, {"n_q_heads (6)", "n_kv_heads (4)"}, "GQA");
    }
    {
        Importance t;
        Buf s(DType::kF32, {2, 9});
        t.p.scores = s.view();
        expect_invalid(t.p, op, {"scores", "[2, 9]"}, "scores shape");
    }
    {
        Importance t;
        Buf s(DType::kI32, {2, 10});
        t.p.scores = s.view();
        expect_invalid(t.p, op, {"scores", "i32"}, "scores dtype");
    }
    for (int64_t pos0 : {9, 20}) {
        Importance t;
        t.p.q_pos0 = pos0;
        expect_invalid(t.p, op, {"q_pos0 " + std::to_string(pos0), "n_kv = 10"}, "q_pos0");
    }
    {
        Importance t(4, 2, 8, 11, 10);  // more observation queries than keys
        expect_invalid(t.p, op, {"obs_window 11"}, "n_obs > n_kv");
    }
}

// ---- block_score ----------------------------------------------------------------------------

struct Score {
    Buf scores, mass, hhi, h;
    BlockScoreParams p;
    Score(int64_t hkv = 2, int64_t n_kv = 100, int64_t nb = 5, int b = 16)
        : scores(DType::kF32, {hkv, n_kv}), mass(DType::kF32, {hkv, nb}), hhi(DType::kF32, {hkv, nb}),
          h(DType::kF32, {hkv, nb}) {
        p.scores = scores.view();
        p.mass = mass.view();
        p.hhi = hhi.view();
        p.block_score = h.view();
        p.block_size = b;
    }
};

TEST(OpValidation, BlockScore) {
    const std::string op = "block_score";
    expect_valid(Score().p, op);
    for (int b : {0, 3, 100, 8192}) {
        Score t;
        t.p.block_size = b;
        expect_invalid(t.p, op, {"block_size", std::to_string(b)}, "block_size");
    }
    {
        Score t(2, 100, 7);  // 7 * 16 > 100
        expect_invalid(t.p, op, {"7 blocks of 16", "n_kv = 100"}, "too many blocks");
    }
    for (float a : {-0.5f, 1.5f}) {
        Score t;
        t.p.alpha = a;
        expect_invalid(t.p, op, {"alpha", a < 0 ? "-0.5" : "1.5"}, "alpha");
    }
    {
        Score t;
        t.p.alpha = std::numeric_limits<float>::quiet_NaN();
        expect_invalid(t.p, op, {"alpha", "nan"}, "alpha NaN");
    }
    {
        Score t;
        Buf bad(DType::kF32, {2, 4});
        t.p.hhi = bad.view();
        expect_invalid(t.p, op, {"hhi", "[2, 4]"}, "hhi shape");
    }
    {
        Score t;
        Buf bad(DType::kF32, {3, 5});
        t.p.mass = bad.view();
        expect_invalid(t.p, op, {"mass", "[3, 5]"}, "mass heads");
    }
    {
        Score t;
        Buf bad(DType::kF16, {2, 100});
        t.p.scores = bad.view();
        expect_invalid(t.p, op, {"scores", "f16"}, "scores dtype");
    }
}

// ---- block_budget ---------------------------------------------------------------------------

struct Budget {
    Buf h, psi, keep;
    BlockBudgetParams p;
    Budget(int64_t hkv = 2, int64_t nb = 5)
        : h(DType::kF32, {hkv, nb}), psi(DType::kI32, {hkv, nb}), keep(DType::kI32, {hkv, nb}) {
        p.block_score = h.view();
        p.psi = psi.view();
        p.keep = keep.view();
        p.block_size = 16;
    }
};

TEST(OpValidation, BlockBudget) {
    const std::string op = "block_budget";
    expect_valid(Budget().p, op);
    for (int b : {-16, 6, 100}) {
        Budget t;
        t.p.block_size = b;
        expect_invalid(t.p, op, {"block_size", std::to_string(b)}, "block_size");
    }
    {
        Budget t;
        Buf bad(DType::kI32, {2, 6});
        t.p.psi = bad.view();
        expect_invalid(t.p, op, {"psi", "[2, 6]"}, "psi shape");
    }
    {
        Budget t;
        Buf bad(DType::kI32, {1, 5});
        t.p.psi = bad.view();
        expect_invalid(t.p, op, {"psi", "[1, 5]"}, "psi heads");
    }
    {
        Budget t;
        Buf bad(DType::kF32, {2, 5});
        t.p.psi = bad.view();
        expect_invalid(t.p, op, {"psi", "f32"}, "psi dtype");
    }
    {
        Budget t;
        Buf bad(DType::kI32, {2, 4});
        t.p.keep = bad.view();
        expect_invalid(t.p, op, {"keep", "[2, 4]"}, "keep shape");
    }
    {
        Budget t;
        Buf bad(DType::kI32, {2, 5});
        t.p.block_score = bad.view();
        expect_invalid(t.p, op, {"block_score", "i32"}, "block_score dtype");
    }
}

// ---- token_select ---------------------------------------------------------------------------

struct Select {
    Buf scores, keep, selected, n;
    TokenSelectParams p;
    Select(int64_t hkv = 2, int64_t n_kv = 100, int64_t nb = 5, int64_t cap = 80)
        : scores(DType::kF32, {hkv, n_kv}), keep(DType::kI32, {hkv, nb}), selected(DType::kI32, {hkv, cap}),
          n(DType::kI32, {hkv}) {
        p.scores = scores.view();
        p.keep = keep.view();
        p.selected = selected.view();
        p.n_selected = n.view();
        p.block_size = 16;
    }
};

TEST(OpValidation, TokenSelect) {
    const std::string op = "token_select";
    expect_valid(Select().p, op);
    for (int b : {0, 12}) {
        Select t;
        t.p.block_size = b;
        expect_invalid(t.p, op, {"block_size", std::to_string(b)}, "block_size");
    }
    {
        Select t(2, 100, 5, 79);
        expect_invalid(t.p, op, {"selected", "80", "79"}, "selected capacity");
    }
    {
        Select t(2, 70, 5, 80);
        expect_invalid(t.p, op, {"5 blocks of 16", "n_kv = 70"}, "too many blocks");
    }
    {
        Select t;
        Buf bad(DType::kI32, {3, 5});
        t.p.keep = bad.view();
        expect_invalid(t.p, op, {"keep", "[3, 5]"}, "keep heads");
    }
    {
        Select t;
        Buf bad(DType::kI32, {3});
        t.p.n_selected = bad.view();
        expect_invalid(t.p, op, {"n_selected", "[3]"}, "n_selected shape");
    }
    {
        Select t;
        Buf bad(DType::kF32, {2, 5});
        t.p.keep = bad.view();
        expect_invalid(t.p, op, {"keep", "f32"}, "keep dtype");
    }
}

// ---- kv_gather ------------------------------------------------------------------------------

struct Gather {
    Buf k, v, pos, n, k_out, v_out, slot_pos;
    KvGatherParams p;
    Gather(int64_t d = 8, DType kd = DType::kF16, DType od = DType::kF16)
        : k(kd, {2, 50, d}), v(kd, {2, 50, d}), pos(DType::kI32, {2, 20}), n(DType::kI32, {2}),
          k_out(od, {2, 30, d}), v_out(od, {2, 30, d}), slot_pos(DType::kI32, {2, 30}) {
        p.k = k.view();
        p.v = v.view();
        p.positions = pos.view();
        p.n_positions = n.view();
        p.k_out = k_out.view();
        p.v_out = v_out.view();
        p.slot_pos = slot_pos.view();
    }
};

TEST(OpValidation, KvGather) {
    const std::string op = "kv_gather";
    expect_valid(Gather().p, op);
    for (int64_t d : {7, 12, 512}) {
        Gather t(d);
        expect_invalid(t.p, op, {"head_dim", std::to_string(d)}, "head_dim");
    }
    {
        Gather t(8, DType::kF16, DType::kBF16);
        expect_invalid(t.p, op, {"k_out", "f16", "bf16"}, "k_out dtype");
    }
    {
        Gather t(8, DType::kI32, DType::kI32);
        expect_invalid(t.p, op, {"k", "i32"}, "k dtype");
    }
    {
        Gather t;
        Buf bad(DType::kI32, {2, 29});
        t.p.slot_pos = bad.view();
        expect_invalid(t.p, op, {"slot_pos", "[2, 29]"}, "slot_pos capacity");
    }
    {
        Gather t;
        Buf bad(DType::kI32, {1, 20});
        t.p.positions = bad.view();
        expect_invalid(t.p, op, {"positions", "[1, 20]"}, "positions heads");
    }
    {
        Gather t;
        Buf bad(DType::kF16, {2, 49, 8});
        t.p.v = bad.view();
        expect_invalid(t.p, op, {"v", "[2, 49, 8]"}, "v shape");
    }
}

// ---- sparse_prefill -------------------------------------------------------------------------

struct Prefill {
    Dense dense;
    Buf kg, vg, gpos, ng;
    SparsePrefillParams p;
    explicit Prefill(int64_t hq = 4, int64_t hkv = 2, int64_t d = 8, DType kd = DType::kF32)
        : dense(hq, hkv, d, 10, 200, kd, kd), kg(kd, {hkv, 64, d}), vg(kd, {hkv, 64, d}),
          gpos(DType::kI32, {hkv, 64}), ng(DType::kI32, {hkv}) {
        p.q = dense.q.view();
        p.k = dense.k.view();
        p.v = dense.v.view();
        p.out = dense.out.view();
        p.k_global = kg.view();
        p.v_global = vg.view();
        p.global_pos = gpos.view();
        p.n_global = ng.view();
        p.q_pos0 = 190;
        p.block_size = 16;
        p.local_window = 64;
        p.n_blocks = 8;  // floor((200 - 64) / 16)
    }
};

TEST(OpValidation, SparsePrefill) {
    const std::string op = "sparse_prefill";
    expect_valid(Prefill().p, op);
    for (int b : {0, 100}) {
        Prefill t;
        t.p.block_size = b;
        expect_invalid(t.p, op, {"block_size", std::to_string(b)}, "block_size");
    }
    for (int w : {0, 8, 100}) {
        Prefill t;
        t.p.local_window = w;
        expect_invalid(t.p, op, {"local_window", std::to_string(w)}, "local_window");
    }
    for (int64_t n : {0, 7, 9, -1}) {
        Prefill t;
        t.p.n_blocks = n;
        expect_invalid(t.p, op, {"n_blocks", "got " + std::to_string(n), "= 8"}, "n_blocks");
    }
    for (int64_t pos0 : {-3, 191}) {
        Prefill t;
        t.p.q_pos0 = pos0;
        expect_invalid(t.p, op, {"q_pos0 " + std::to_string(pos0)}, "q_pos0");
    }
    for (int64_t d : {7, 12, 512}) {
        Prefill t(4, 2, d);
        expect_invalid(t.p, op, {"head_dim", std::to_string(d)}, "head_dim");
    }
    {
        Prefill t(8, 3);
        expect_invalid(t.p, op, {"n_q_heads (8)", "n_kv_heads (3)"}, "GQA");
    }
    {
        Prefill t;
        Buf bad(DType::kBF16, {2, 64, 8});
        t.p.k_global = bad.view();
        expect_invalid(t.p, op, {"k_global", "bf16"}, "k_global dtype");
    }
    {
        Prefill t;
        Buf bad(DType::kI32, {2, 63});
        t.p.global_pos = bad.view();
        expect_invalid(t.p, op, {"global_pos", "[2, 63]"}, "global_pos shape");
    }
    {
        Prefill t;
        Buf bad(DType::kI32, {3});
        t.p.n_global = bad.view();
        expect_invalid(t.p, op, {"n_global", "[3]"}, "n_global shape");
    }
}

// ---- decode_attention -----------------------------------------------------------------------

struct Decode {
    Buf q, k, v, sp, ns, out;
    DecodeAttentionParams p;
    Decode(int64_t hq = 4, int64_t hkv = 2, int64_t d = 8, DType kd = DType::kBF16)
        : q(DType::kF32, {hq, 2, d}), k(kd, {hkv, 40, d}), v(kd, {hkv, 40, d}), sp(DType::kI32, {hkv, 40}),
          ns(DType::kI32, {hkv}), out(DType::kF32, {hq, 2, d}) {
        p.q = q.view();
        p.k_cache = k.view();
        p.v_cache = v.view();
        p.slot_pos = sp.view();
        p.n_slots = ns.view();
        p.out = out.view();
        p.q_pos0 = 100;
    }
};

TEST(OpValidation, DecodeAttention) {
    const std::string op = "decode_attention";
    expect_valid(Decode().p, op);
    {
        Decode t;
        t.p.q_pos0 = -1;
        expect_invalid(t.p, op, {"q_pos0", "-1"}, "q_pos0");
    }
    for (int64_t d : {7, 12, 512}) {
        Decode t(4, 2, d);
        expect_invalid(t.p, op, {"head_dim", std::to_string(d)}, "head_dim");
    }
    {
        Decode t(4, 3);
        expect_invalid(t.p, op, {"n_q_heads (4)", "n_kv_heads (3)"}, "GQA");
    }
    {
        Decode t;
        Buf bad(DType::kF32, {2, 40});
        t.p.slot_pos = bad.view();
        expect_invalid(t.p, op, {"slot_pos", "f32"}, "slot_pos dtype");
    }
    {
        Decode t;
        Buf bad(DType::kI32, {2, 2});
        t.p.n_slots = bad.view();
        expect_invalid(t.p, op, {"n_slots", "[2, 2]"}, "n_slots rank");
    }
    {
        Decode t;
        Buf bad(DType::kF16, {2, 40, 8});
        t.p.v_cache = bad.view();
        expect_invalid(t.p, op, {"v_cache", "f16"}, "v_cache dtype");
    }
}

// ---- block_compact --------------------------------------------------------------------------

struct Compact {
    Decode dec;
    Buf ng, keep;
    BlockCompactParams p;
    Compact() : dec(), ng(DType::kI32, {2}), keep(DType::kI32, {2}) {
        p.q = dec.q.view();
        p.k_cache = dec.k.view();
        p.v_cache = dec.v.view();
        p.slot_pos = dec.sp.view();
        p.n_global = ng.view();
        p.n_slots = dec.ns.view();
        p.keep = keep.view();
        p.block_size = 16;
    }
};

TEST(OpValidation, BlockCompact) {
    const std::string op = "block_compact";
    expect_valid(Compact().p, op);
    for (int b : {6, 0}) {
        Compact t;
        t.p.block_size = b;
        expect_invalid(t.p, op, {"block_size", std::to_string(b)}, "block_size");
    }
    {
        Compact t;
        Buf bad(DType::kI32, {3});
        t.p.keep = bad.view();
        expect_invalid(t.p, op, {"keep", "[3]"}, "keep shape");
    }
    {
        Compact t;
        Buf bad(DType::kF32, {2});
        t.p.n_global = bad.view();
        expect_invalid(t.p, op, {"n_global", "f32"}, "n_global dtype");
    }
    {
        Compact t;
        t.p.scale = -1.0f;
        expect_invalid(t.p, op, {"scale", "-1"}, "scale");
    }
    for (int64_t m : {16, 40}) {
        Compact t;
        t.p.min_local = m;
        expect_valid(t.p, op);
    }
    for (int64_t m : {8, 41, -1}) {
        Compact t;
        t.p.min_local = m;
        expect_invalid(t.p, op, {"min_local", std::to_string(m)}, "min_local");
    }
    {
        Compact t;
        Buf q(DType::kF32, {4, 2, 12});
        t.p.q = q.view();
        expect_invalid(t.p, op, {"k_cache", "[2, 40, 8]"}, "q head_dim differs from the cache");
    }
}

}  // namespace
}  // namespace tca::test
