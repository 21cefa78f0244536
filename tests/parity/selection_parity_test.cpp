// Parity of the selection ops (token_importance, block_score: FlashAttention-3 rule;
// block_budget, token_select: exact, since they are pure functions of their float inputs,
// ties included).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "parity/parity_common.h"
#include "sparse/head_budgets.h"

namespace tca::test {
namespace {

const std::vector<int64_t>& edge_lengths() {
    static const std::vector<int64_t> l = {1, 15, 16, 17, 55, 63, 64, 80, 1000};
    return l;
}

// Importance-like scores [hkv, L]: positive, each row summing to 1 (normal), a few spikes and
// an all-zero block (spiky), or all equal (ties).
Buf make_scores(int64_t hkv, int64_t L, int b, Input in, Rng& rng) {
    Buf s(DType::kF32, {hkv, L});
    for (int64_t h = 0; h < hkv; ++h) {
        std::vector<double> row(static_cast<size_t>(L));
        for (double& x : row) {
            const double u = rng.uniform();
            x = in == Input::kTies ? 1.0 : in == Input::kSpiky ? 1e-4 * u : u * u * u;
        }
        if (in == Input::kSpiky) {
            for (int k = 0; k < 4 && L > 0; ++k) row[rng.below(static_cast<uint64_t>(L))] = 0.2 + 0.1 * k;
            if (L >= 2 * b) std::fill(row.begin() + b, row.begin() + 2 * b, 0.0);  // block 1 empty
        }
        double total = 0.0;
        for (double x : row) total += x;
        for (int64_t i = 0; i < L; ++i) s.put({h, i}, row[i] / total);
    }
    return s;
}

// ---- token_importance -----------------------------------------------------------------------

std::vector<OpCase> importance_cases() {
    const char* op = "token_importance";
    std::vector<OpCase> v;
    for (int64_t L : edge_lengths()) v.push_back(mk(op, L, 4, 1, 8, 1, -1));
    v.push_back(mk(op, 80, 2, 2, 64, 4, -1));               // obs_window 4, GQA 1
    v.push_back(mk(op, 80, 8, 2, 64, 4, -1, DType::kF16));  // GQA 4
    v.push_back(mk(op, 80, 8, 1, 64, 1, -1, DType::kBF16)); // GQA 8
    v.push_back(mk(op, 33, 4, 1, 128, 2, -1));
    v.push_back(mk(op, 200, 4, 2, 8, 3, 100));              // q_pos0 given: later keys score 0
    v.push_back(mk(op, 1000, 4, 1, 64, 1, -1, DType::kF32, Input::kSpiky));
    v.push_back(mk(op, 64, 4, 1, 64, 2, -1, DType::kF32, Input::kTies));
    return registered(std::move(v));
}

class TokenImportanceParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(TokenImportanceParity, MatchesFloat64) {
    const OpCase& c = GetParam();
    Rng rng(c.seed * 31 + static_cast<uint64_t>(c.length));
    const Qkv in = make_qkv(c.hq, c.hkv, c.n_q, c.length, c.d, c.kv, c.input, rng);
    Out3 out(DType::kF32, {c.hkv, c.length});
    for (Backend be : parity_backends()) {
        TokenImportanceParams p;
        p.q = in.q.view();
        p.k = in.k.view();
        p.scores = out.of(be).view();
        p.q_pos0 = c.q_pos0;
        const Status st = run(be, p);
        ASSERT_TRUE(st.ok()) << backend_name(be) << ": " << st.to_string();
    }
    expect_canaries(out, "scores");
    expect_fa3(c, "scores", out);
    // Keys after the last observation query score exactly 0.
    const int64_t last = (c.q_pos0 < 0 ? c.length - c.n_q : c.q_pos0) + c.n_q - 1;
    for (int64_t h = 0; h < c.hkv; ++h) {
        for (int64_t j = last + 1; j < c.length; ++j) {
            ASSERT_EQ(out.cpu.at({h, j}), 0.0) << "cpu scores[" << h << ", " << j << "]";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Edges, TokenImportanceParity, ::testing::ValuesIn(importance_cases()),
                         OpCaseName());

// ---- block_score ----------------------------------------------------------------------------

std::vector<OpCase> block_score_cases() {
    const char* op = "block_score";
    std::vector<OpCase> v;
    // n_blocks = floor(L / b): lengths below b give 0 blocks.
    for (int64_t L : edge_lengths()) v.push_back(mk(op, L, 1, 2, 8, 1, -1));
    for (float alpha : {0.0f, 1.0f, 0.3f}) {
        OpCase c = mk(op, 200, 1, 2, 8, 1, -1);
        c.alpha = alpha;
        v.push_back(c);
    }
    OpCase none = mk(op, 1000, 1, 2, 8, 1, -1, DType::kF32, Input::kNormal, 16, 64, 2);
    none.mass_norm = MassNorm::kNone;
    v.push_back(none);
    v.push_back(mk(op, 1000, 1, 2, 8, 1, -1, DType::kF32, Input::kSpiky));
    v.push_back(mk(op, 200, 1, 2, 8, 1, -1, DType::kF32, Input::kTies));
    v.push_back(mk(op, 1000, 1, 8, 8, 1, -1, DType::kF32, Input::kNormal, 128, 256));
    return registered(std::move(v));
}

class BlockScoreParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(BlockScoreParity, MatchesFloat64) {
    const OpCase& c = GetParam();
    Rng rng(c.seed * 131 + static_cast<uint64_t>(c.length));
    const Buf scores = make_scores(c.hkv, c.length, c.b, c.input, rng);
    const int64_t nb = c.length / c.b;
    Out3 mass(DType::kF32, {c.hkv, nb}), hhi(DType::kF32, {c.hkv, nb}), h(DType::kF32, {c.hkv, nb});
    for (Backend be : parity_backends()) {
        BlockScoreParams p;
        p.scores = scores.view();
        p.mass = mass.of(be).view();
        p.hhi = hhi.of(be).view();
        p.block_score = h.of(be).view();
        p.block_size = c.b;
        p.alpha = c.alpha;
        p.mass_norm = c.mass_norm;
        const Status st = run(be, p);
        ASSERT_TRUE(st.ok()) << backend_name(be) << ": " << st.to_string();
    }
    expect_canaries(mass, "mass");
    expect_canaries(hhi, "hhi");
    expect_canaries(h, "block_score");
    expect_fa3(c, "mass", mass);
    expect_fa3(c, "hhi", hhi);
    expect_fa3(c, "block_score", h);
    if (c.input == Input::kSpiky && nb >= 2) {
        for (int64_t kvh = 0; kvh < c.hkv; ++kvh) {
            EXPECT_EQ(mass.cpu.at({kvh, 1}), 0.0) << "empty block: mass 0";
            EXPECT_EQ(hhi.cpu.at({kvh, 1}), 1.0) << "empty block: HHI is 1 by definition (M3)";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Edges, BlockScoreParity, ::testing::ValuesIn(block_score_cases()),
                         OpCaseName());

// ---- block_budget ---------------------------------------------------------------------------

std::vector<OpCase> block_budget_cases() {
    const char* op = "block_budget";
    std::vector<OpCase> v;
    // length = n_blocks.
    for (int64_t nb : edge_lengths()) v.push_back(mk(op, nb, 1, 3, 8, 1, -1));
    for (int64_t nb : {17, 1000}) v.push_back(mk(op, nb, 1, 3, 8, 1, -1, DType::kF32, Input::kTies));
    for (double frac : {0.0, 1.0, 0.07}) {
        OpCase c = mk(op, 55, 1, 2, 8, 1, -1);
        c.frac = frac;
        v.push_back(c);
    }
    v.push_back(mk(op, 100, 1, 2, 8, 1, -1, DType::kF32, Input::kNormal, 128, 256));
    return registered(std::move(v));
}

// Psi per head: all 0 (frac 0), all b (frac 1), else make_psi of the log-Gaussian
// configuration hitting keep fraction frac + 0.25 h (clamped).
std::vector<std::vector<int32_t>> make_psis(const OpCase& c, int64_t nb) {
    std::vector<std::vector<int32_t>> psi;
    for (int64_t h = 0; h < c.hkv; ++h) {
        if (c.frac == 0.0 || c.frac == 1.0) {
            psi.emplace_back(static_cast<size_t>(nb), c.frac == 0.0 ? 0 : c.b);
            continue;
        }
        const double keep = std::min(1.0, c.frac + 0.25 * static_cast<double>(h));
        const auto cfg = config_for_keep_fraction(keep, c.b);
        TCA_ASSERT(cfg.ok(), "config");
        auto p = make_psi(cfg->p, nb, c.b);
        TCA_ASSERT(p.ok(), "psi");
        psi.push_back(*p);
    }
    return psi;
}

class BlockBudgetParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(BlockBudgetParity, MatchesReferenceExactly) {
    const OpCase& c = GetParam();
    Rng rng(c.seed * 17 + static_cast<uint64_t>(c.length));
    const int64_t nb = c.length;
    Buf hs(DType::kF32, {c.hkv, nb});
    for (int64_t i = 0; i < hs.numel(); ++i) {
        // Ties: three levels only, so most blocks tie and the lower index must rank first.
        hs.set(i, c.input == Input::kTies ? 0.25 * static_cast<double>(1 + rng.below(3)) : rng.uniform());
    }
    Buf psi = i32_buf_2d(make_psis(c, nb), nb, 0);
    Out3 keep(DType::kI32, {c.hkv, nb});
    for (Backend be : {Backend::kRef, kUnderTest}) {
        BlockBudgetParams p;
        p.block_score = hs.view();
        p.psi = psi.view();
        p.keep = keep.of(be).view();
        p.block_size = c.b;
        const Status st = run(be, p);
        ASSERT_TRUE(st.ok()) << backend_name(be) << ": " << st.to_string();
    }
    EXPECT_TRUE(keep.ref.canaries_intact("ref keep"));
    EXPECT_TRUE(keep.cpu.canaries_intact("cpu keep"));
    EXPECT_TRUE(all_equal(keep.cpu, keep.ref, "block_budget.keep cpu vs ref"));
}

INSTANTIATE_TEST_SUITE_P(Edges, BlockBudgetParity, ::testing::ValuesIn(block_budget_cases()),
                         OpCaseName());

// ---- token_select ---------------------------------------------------------------------------

std::vector<OpCase> token_select_cases() {
    const char* op = "token_select";
    std::vector<OpCase> v;
    // n_blocks = floor(L / b); keep drawn per block from {0, 1, random, b}.
    for (int64_t L : edge_lengths()) v.push_back(mk(op, L, 1, 2, 8, 1, -1));
    for (int64_t L : {63, 1000}) v.push_back(mk(op, L, 1, 2, 8, 1, -1, DType::kF32, Input::kTies));
    v.push_back(mk(op, 1000, 1, 2, 8, 1, -1, DType::kF32, Input::kSpiky));
    v.push_back(mk(op, 1000, 1, 8, 8, 1, -1, DType::kF32, Input::kNormal, 128, 256));
    v.push_back(mk(op, 80, 1, 1, 8, 1, -1, DType::kF32, Input::kNormal, 1, 4));
    // Long enough for every radix pass of the CUDA global selection to see many keys.
    v.push_back(mk(op, 20000, 1, 2, 8, 1, -1, DType::kF32, Input::kNormal, 64, 1024));
    v.push_back(mk(op, 20000, 1, 2, 8, 1, -1, DType::kF32, Input::kTies, 64, 1024));
    return registered(std::move(v));
}

class TokenSelectParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(TokenSelectParity, MatchesReferenceExactly) {
    const OpCase& c = GetParam();
    Rng rng(c.seed * 61 + static_cast<uint64_t>(c.length));
    Buf scores = make_scores(c.hkv, c.length, c.b, c.input, rng);
    if (c.input == Input::kTies) {  // a few levels: ties inside every block
        for (int64_t i = 0; i < scores.numel(); ++i) scores.set(i, static_cast<double>(rng.below(3)));
    }
    const int64_t nb = c.length / c.b;
    Buf keep(DType::kI32, {c.hkv, nb});
    for (int64_t i = 0; i < keep.numel(); ++i) {
        const uint64_t r = rng.below(4);
        keep.set(i, r == 0 ? 0 : r == 1 ? c.b : r == 2 ? 1 : static_cast<double>(rng.below(static_cast<uint64_t>(c.b) + 1)));
    }
    // pool (the M5 option): 0 = the paper; 1 and 5 inside a block; 17 reaches across blocks.
    // global (Selection::kGlobal): the sum of keep best tokens of the whole region.
    for (const int pool : {0, 1, 5, 17})
    for (const bool global : {false, true}) {
        SCOPED_TRACE("pool " + std::to_string(pool) + (global ? ", global" : ", block"));
        Out3 sel(DType::kI32, {c.hkv, nb * c.b}), n(DType::kI32, {c.hkv});
        for (Backend be : {Backend::kRef, kUnderTest}) {
            TokenSelectParams p;
            p.scores = scores.view();
            p.keep = keep.view();
            p.selected = sel.of(be).view();
            p.n_selected = n.of(be).view();
            p.block_size = c.b;
            p.pool = pool;
            p.global = global;
            const Status st = run(be, p);
            ASSERT_TRUE(st.ok()) << backend_name(be) << ": " << st.to_string();
        }
        for (const Buf* b : {&sel.ref, &sel.cpu, &n.ref, &n.cpu}) EXPECT_TRUE(b->canaries_intact("token_select out"));
        ASSERT_TRUE(all_equal(n.cpu, n.ref, "token_select.n_selected cpu vs ref"));
        for (int64_t h = 0; h < c.hkv; ++h) {
            const auto cnt = static_cast<int64_t>(n.ref.get(h));
            int64_t want_cnt = 0;
            for (int64_t j = 0; j < nb; ++j) want_cnt += static_cast<int64_t>(keep.at({h, j}));
            EXPECT_EQ(cnt, want_cnt) << "n_selected = sum of keep, head " << h;
            for (int64_t s = 0; s < cnt; ++s) {
                ASSERT_EQ(sel.cpu.at({h, s}), sel.ref.at({h, s})) << "selected[" << h << ", " << s << "]";
            }
        }
    }
}

// The pool option keeps the neighbours of a peak: one spike per block, keep 5 and pool 2
// select the spike and the two tokens on each side; without pooling the 5 largest raw scores.
TEST(TokenSelectPool, KeepsTheSpanAroundAPeak) {
    const int64_t b = 16, nb = 3, L = nb * b;
    Buf scores(DType::kF32, {1, L});
    for (int64_t i = 0; i < L; ++i) scores.set(i, 0.001 * static_cast<double>((i * 7) % 11));
    scores.set(20, 0.9);  // the peak, in block 1
    Buf keep(DType::kI32, {1, nb});
    keep.set(0, 0);
    keep.set(1, 5);
    keep.set(2, 0);
    for (Backend be : parity_backends()) {
        for (const int pool : {0, 2}) {
            Buf sel(DType::kI32, {1, L}), n(DType::kI32, {1});
            TokenSelectParams p{scores.view(), keep.view(), sel.view(), n.view(), static_cast<int>(b), pool};
            ASSERT_TRUE(run(be, p).ok()) << backend_name(be);
            ASSERT_EQ(n.get(0), 5.0);
            std::vector<int> got;
            for (int64_t s = 0; s < 5; ++s) got.push_back(static_cast<int>(sel.at({0, s})));
            if (pool == 2) {
                EXPECT_EQ(got, (std::vector<int>{18, 19, 20, 21, 22})) << backend_name(be);
            } else {
                EXPECT_NE(got, (std::vector<int>{18, 19, 20, 21, 22})) << backend_name(be);
                EXPECT_NE(std::find(got.begin(), got.end(), 20), got.end()) << backend_name(be);
            }
        }
    }
}

// Global selection takes the best tokens wherever they are: block 1 holds six high scores,
// the others none. keep = {2, 2, 2}: the paper keeps two per block; global keeps the six of
// block 1 (T = 6), in position order. With every score equal, ties go to the lower
// positions: the first two of each block, or the six first tokens.
TEST(TokenSelectGlobal, TakesTheBestTokensAcrossBlocks) {
    const int64_t b = 8, nb = 3, L = nb * b;
    Buf scores(DType::kF32, {1, L});
    for (int64_t i = 0; i < L; ++i) scores.set(i, 0.001 * static_cast<double>((i * 5) % 7));
    for (const int64_t i : {9, 10, 11, 13, 14, 15}) scores.set(i, 0.5 + 0.01 * static_cast<double>(i));
    Buf keep(DType::kI32, {1, nb});
    for (int64_t j = 0; j < nb; ++j) keep.set(j, 2);
    Buf flat(DType::kF32, {1, L});
    for (int64_t i = 0; i < L; ++i) flat.set(i, 0.25);
    for (Backend be : parity_backends()) {
        for (const bool global : {false, true}) {
            for (const Buf* sc : {&scores, &flat}) {
                Buf sel(DType::kI32, {1, L}), n(DType::kI32, {1});
                TokenSelectParams p{sc->view(), keep.view(), sel.view(), n.view(), static_cast<int>(b), 0, global};
                ASSERT_TRUE(run(be, p).ok()) << backend_name(be);
                ASSERT_EQ(n.get(0), 6.0) << backend_name(be);
                std::vector<int> got;
                for (int64_t s = 0; s < 6; ++s) got.push_back(static_cast<int>(sel.at({0, s})));
                std::vector<int> want;
                if (sc == &flat) {
                    want = global ? std::vector<int>{0, 1, 2, 3, 4, 5} : std::vector<int>{0, 1, 8, 9, 16, 17};
                } else if (global) {
                    want = {9, 10, 11, 13, 14, 15};
                } else {  // each block's two best: (i * 5) % 7 peaks at 1, 4 and 18, 22
                    want = {1, 4, 14, 15, 18, 22};
                }
                EXPECT_EQ(got, want) << backend_name(be) << (global ? " global" : " block")
                                     << (sc == &flat ? " flat" : "");
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Edges, TokenSelectParity, ::testing::ValuesIn(token_select_cases()),
                         OpCaseName());

}  // namespace
}  // namespace tca::test
