// Invariants of the selection (tca-method M2-M5, M9), on ref and cpu: Theorem 1's error bound
// per query, monotonicity of the selection in the budget, tie-breaking to the lower position,
// and the end-to-end selection of the cpu backend equal to the reference's as sets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "invariant/invariant_common.h"
#include "sparse/head_budgets.h"

namespace tca::test {
namespace {

constexpr int kB = 8, kW = 16;

Buf last_queries(const Buf& q, int64_t n_obs) {
    const int64_t hq = q.dim(0), n_q = q.dim(1), d = q.dim(2);
    Buf o(DType::kF32, {hq, n_obs, d});
    for (int64_t h = 0; h < hq; ++h) {
        for (int64_t i = 0; i < n_obs; ++i) {
            for (int64_t c = 0; c < d; ++c) o.put({h, i, c}, q.at({h, n_q - n_obs + i, c}));
        }
    }
    return o;
}

std::vector<std::vector<int32_t>> psi_for(int64_t hkv, int64_t n, double keep) {
    const auto cfg = config_for_keep_fraction(keep, kB);
    TCA_ASSERT(cfg.ok(), "config");
    const auto psi = make_psi(cfg->p, n, kB);
    TCA_ASSERT(psi.ok(), "psi");
    return std::vector<std::vector<int32_t>>(static_cast<size_t>(hkv), *psi);
}

// Retained mass of the last query (M8's statistic for q_last): the importance of the selected
// tokens plus the band [n * b, L), summed in double.
double retained_mass(const Buf& scores, int64_t h, const std::vector<int32_t>& sel, int64_t n) {
    double m = 0.0;
    for (int32_t p : sel) m += scores.at({h, p});
    for (int64_t j = n * kB; j < scores.dim(1); ++j) m += scores.at({h, j});
    return m;
}

class SelectionInvariant : public BackendTest {};

// M9 Theorem 1: || Att_i - Att_hat_i ||_1 <= 2 gamma_i max_k || v_k ||_1, gamma_i the dense
// attention mass of the keys query i does not see. Checked exactly on the float64 oracle and,
// with the float32 parity tolerance per element as slack, on the backend's sparse_prefill.
TEST_P(SelectionInvariant, Theorem1BoundPerQuery) {
    for (Input input : {Input::kNormal, Input::kSpiky, Input::kTies}) {
        for (double keep : {0.15, 0.5}) {
            Rng rng(61 + static_cast<uint64_t>(input) * 10 + static_cast<uint64_t>(keep * 100));
            const int64_t hq = 4, hkv = 2, d = 32, L = 160, n = n_candidate_blocks(L, kW, kB);
            Qkv in = make_qkv(hq, hkv, L, L, d, DType::kF32, input, rng);
            if (input == Input::kTies) fill_normal(in.v, rng, 1.0, 0.5);
            Selection s;
            ASSERT_TRUE(run_selection(backend(), last_queries(in.q, 1), in.k, n, kB, 0.5f,
                                      psi_for(hkv, n, keep), &s).ok());
            std::vector<std::set<int64_t>> sets;
            for (const auto& p : s.positions) sets.emplace_back(p.begin(), p.end());
            const KeyFilter m6 = [&](int64_t kvh, int64_t qp, int64_t kp) {
                const int64_t band0 = visible_blocks(qp, kW, kB, n) * kB;
                return kp >= band0 ? kp <= qp : sets[kvh].count(kp) > 0;
            };
            const KeyFilter causal = [](int64_t, int64_t qp, int64_t kp) { return kp <= qp; };
            Buf out;
            ASSERT_TRUE(run_prefill(backend(), in, s.positions, 0, &out, kB, kW).ok());
            const Buf dense = masked_attention<double>(in.q, in.k, in.v, 0, causal);
            const Buf sparse64 = masked_attention<double>(in.q, in.k, in.v, 0, m6);
            const Buf sparse32 = naive_masked_attention(in.q, in.k, in.v, 0, m6);
            const double elem_tol = fa3_tolerance(sparse32, sparse64).bound();
            for (int64_t h = 0; h < hq; ++h) {
                const int64_t kvh = h / (hq / hkv);
                double maxv = 0.0;
                for (int64_t i = 0; i < L; ++i) {
                    double v1 = 0.0;
                    for (int64_t c = 0; c < d; ++c) v1 += std::fabs(in.v.at({kvh, i, c}));
                    maxv = std::max(maxv, v1);  // max over keys 0..i (grows with i)
                    const auto p = attention_probs(in.q, in.k, h, i, 0, causal);
                    double gamma = 0.0;
                    for (int64_t j = 0; j <= i; ++j) {
                        if (!m6(kvh, i, j)) gamma += p[j];
                    }
                    double err64 = 0.0, err = 0.0;
                    for (int64_t c = 0; c < d; ++c) {
                        err64 += std::fabs(dense.at({h, i, c}) - sparse64.at({h, i, c}));
                        err += std::fabs(dense.at({h, i, c}) - out.at({h, i, c}));
                    }
                    const double bound = 2.0 * gamma * maxv;
                    // The oracle's outputs are float32-rounded: d half-ulps of slack.
                    ASSERT_LE(err64, bound + static_cast<double>(d) * 1e-7 * std::max(1.0, maxv))
                        << "float64 oracle, head " << h << " query " << i << " gamma " << gamma;
                    ASSERT_LE(err, bound + static_cast<double>(d) * elem_tol)
                        << bname() << " sparse_prefill, head " << h << " query " << i << " gamma "
                        << gamma << " input " << input_name(input) << " keep " << keep;
                    if (i < kW + kB - 1) {
                        ASSERT_EQ(gamma, 0.0) << "queries before w + b - 1 see full attention";
                    }
                }
            }
        }
    }
}

// M4/M5: with the block ranking fixed by the scores, a Psi that is element-wise larger gives
// t_j element-wise larger, each block's top-t_j a prefix of the same order, hence a superset
// selection and a retained mass that never drops. (A larger keep *fraction* alone does not
// guarantee this: largest-remainder rounding can lower a Psi entry; see docs/numerics.md.)
TEST_P(SelectionInvariant, LargerPsiGivesSupersetAndMoreMass) {
    for (Input input : {Input::kNormal, Input::kSpiky, Input::kTies}) {
        Rng rng(71 + static_cast<uint64_t>(input));
        const int64_t hq = 8, hkv = 2, d = 16, L = 300, n = n_candidate_blocks(L, kW, kB);
        const Qkv in = make_qkv(hq, hkv, 2, L, d, DType::kF16, input, rng);
        std::vector<std::vector<int32_t>> psi = psi_for(hkv, n, 0.13);
        Selection prev;
        ASSERT_TRUE(run_selection(backend(), in.q, in.k, n, kB, 0.5f, psi, &prev).ok());
        for (int step = 0; step < 6; ++step) {
            // Raise random entries, re-sort descending: element-wise >= the previous Psi.
            for (auto& row : psi) {
                for (int32_t& x : row) {
                    if (rng.uniform() < 0.3) x = std::min<int32_t>(kB, x + 1 + static_cast<int32_t>(rng.below(3)));
                }
                std::sort(row.begin(), row.end(), std::greater<>());
            }
            Selection next;
            ASSERT_TRUE(run_selection(backend(), in.q, in.k, n, kB, 0.5f, psi, &next).ok());
            for (int64_t h = 0; h < hkv; ++h) {
                for (int64_t j = 0; j < n; ++j) {
                    ASSERT_GE(next.keep.at({h, j}), prev.keep.at({h, j})) << "t_j of block " << j;
                }
                const std::set<int32_t> big(next.positions[h].begin(), next.positions[h].end());
                for (int32_t p : prev.positions[h]) {
                    ASSERT_TRUE(big.count(p)) << bname() << " step " << step << " head " << h
                                              << ": position " << p << " dropped by a larger Psi";
                }
                EXPECT_GE(retained_mass(next.scores, h, next.positions[h], n),
                          retained_mass(prev.scores, h, prev.positions[h], n));
            }
            prev = std::move(next);
        }
    }
}

// Consecutive calibration candidates (M8, mu increasing) give nested Psi for the block counts
// tested, hence nested selections and non-decreasing retained mass of q_last.
TEST_P(SelectionInvariant, CalibrationCandidatesAreNested) {
    Rng rng(81);
    const int64_t hq = 4, hkv = 1, d = 16, L = 400, n = n_candidate_blocks(L, kW, kB);
    const Qkv in = make_qkv(hq, hkv, 1, L, d, DType::kF32, Input::kSpiky, rng);
    const auto cands = calibration_candidates(kB);
    std::vector<int32_t> prev_sel;
    double prev_mass = -1.0, first_mass = -1.0;
    std::vector<int32_t> prev_psi;
    for (const HeadConfig& c : cands) {
        const auto psi = make_psi(c.p, n, kB);
        ASSERT_TRUE(psi.ok());
        for (size_t j = 0; j < prev_psi.size(); ++j) {
            ASSERT_GE((*psi)[j], prev_psi[j]) << "mu " << c.mu << " block rank " << j;
        }
        Selection s;
        ASSERT_TRUE(run_selection(backend(), in.q, in.k, n, kB, 0.5f, {*psi}, &s).ok());
        const std::set<int32_t> now(s.positions[0].begin(), s.positions[0].end());
        for (int32_t p : prev_sel) ASSERT_TRUE(now.count(p)) << "mu " << c.mu << " dropped " << p;
        const double m = retained_mass(s.scores, 0, s.positions[0], n);
        EXPECT_GE(m, prev_mass) << "mu " << c.mu;
        if (first_mass < 0.0) first_mass = m;
        prev_mass = m;
        prev_sel = s.positions[0];
        prev_psi = *psi;
    }
    EXPECT_GT(prev_mass, first_mass) << "the candidates must span different budgets";
}

// Exact ties break to the lower position (token_select, block_compact) and the lower block
// index (block_budget); token_importance gives tied keys bitwise equal scores.
TEST_P(SelectionInvariant, TiesBreakToTheLowerPosition) {
    Rng rng(91);
    const int64_t hq = 4, hkv = 2, d = 64, L = 100, n = n_candidate_blocks(L, kW, kB);
    Qkv in = make_qkv(hq, hkv, 1, L, d, DType::kBF16, Input::kTies, rng);
    // Psi with distinct entries so the rank order is visible in keep.
    std::vector<int32_t> row;
    for (int64_t j = 0; j < n; ++j) row.push_back(static_cast<int32_t>(std::max<int64_t>(0, kB - j)));
    Selection s;
    ASSERT_TRUE(run_selection(backend(), in.q, in.k, n, kB, 0.5f, {row, row}, &s).ok());
    for (int64_t h = 0; h < hkv; ++h) {
        for (int64_t j = 0; j < L; ++j) {
            ASSERT_EQ(s.scores.bits(s.scores.flat({h, j})), s.scores.bits(s.scores.flat({h, 0})))
                << "tied keys must score equal, key " << j;
        }
        std::vector<int32_t> want;
        for (int64_t j = 0; j < n; ++j) {
            ASSERT_EQ(s.keep.at({h, j}), row[j]) << "equal block scores rank by index, block " << j;
            for (int32_t t = 0; t < row[j]; ++t) want.push_back(static_cast<int32_t>(j * kB + t));
        }
        EXPECT_EQ(s.positions[h], want) << "lowest positions of each block";
    }
    // block_compact on a tied block keeps its first `keep` slots.
    std::vector<std::vector<int32_t>> pos(2);
    for (int64_t s2 = 0; s2 < 40; ++s2) {
        pos[0].push_back(static_cast<int32_t>(3 * s2));
        pos[1].push_back(static_cast<int32_t>(s2));
    }
    Buf sp = i32_buf_2d(pos, L), ng = i32_buf({4, 0}), ns = i32_buf({40, 40}), keep = i32_buf({3, 5});
    BlockCompactParams p;
    p.q = in.q.view();
    p.k_cache = in.k.view();
    p.v_cache = in.v.view();
    p.slot_pos = sp.view();
    p.n_global = ng.view();
    p.n_slots = ns.view();
    p.keep = keep.view();
    p.block_size = kB;
    ASSERT_TRUE(run(backend(), p).ok());
    for (int64_t t = 0; t < 3; ++t) EXPECT_EQ(sp.at({0, 4 + t}), pos[0][4 + t]);
    EXPECT_EQ(sp.at({0, 7}), pos[0][4 + kB]) << "the rest of the local part moves down";
    for (int64_t t = 0; t < 5; ++t) EXPECT_EQ(sp.at({1, t}), t);
    EXPECT_EQ(sp.at({1, 5}), kB);
}

TCA_INSTANTIATE_BACKENDS(SelectionInvariant);

// The end-to-end selection (token_importance -> block_score -> block_budget -> token_select)
// of the cpu backend equals the reference's, as sets, on inputs with a margin: block scores
// and each block's keep boundary separated by far more than float32 error.
TEST(SelectionPipeline, CpuEqualsReferenceAsSets) {
    int tested = 0;
    for (uint64_t seed = 1; tested < 6 && seed < 200; ++seed) {
        Rng rng(seed * 1013);
        const int64_t hq = seed % 2 ? 8 : 4, hkv = 2, d = seed % 3 ? 64 : 128, L = 240;
        const int64_t n = n_candidate_blocks(L, kW, kB);
        const Input input = seed % 2 ? Input::kNormal : Input::kSpiky;
        const Qkv in = make_qkv(hq, hkv, 2, L, d, DType::kF32, input, rng);
        const auto psi = psi_for(hkv, n, 0.2 + 0.1 * static_cast<double>(seed % 5));
        Selection ref, cpu;
        ASSERT_TRUE(run_selection(Backend::kRef, in.q, in.k, n, kB, 0.5f, psi, &ref).ok());
        // Margins from the float64 pipeline.
        bool ok = true;
        for (int64_t h = 0; h < hkv && ok; ++h) {
            std::vector<double> hs;
            for (int64_t j = 0; j < n; ++j) hs.push_back(ref.block_score.at({h, j}));
            std::sort(hs.begin(), hs.end());
            for (size_t j = 1; j < hs.size(); ++j) ok = ok && hs[j] - hs[j - 1] > 1e-4;
            for (int64_t j = 0; j < n && ok; ++j) {
                std::vector<double> sc;
                for (int64_t i = 0; i < kB; ++i) sc.push_back(ref.scores.at({h, j * kB + i}));
                double margin = 0.0;
                top_k(sc, static_cast<int64_t>(ref.keep.at({h, j})), &margin);
                ok = margin > 1e-4 * *std::max_element(sc.begin(), sc.end());
            }
        }
        if (!ok) continue;
        ++tested;
        ASSERT_TRUE(run_selection(kUnderTest, in.q, in.k, n, kB, 0.5f, psi, &cpu).ok());
        for (int64_t h = 0; h < hkv; ++h) {
            EXPECT_TRUE(all_equal(cpu.keep, ref.keep, "keep")) << "seed " << seed;
            const std::set<int32_t> a(cpu.positions[h].begin(), cpu.positions[h].end());
            const std::set<int32_t> b(ref.positions[h].begin(), ref.positions[h].end());
            EXPECT_EQ(a, b) << "seed " << seed << " head " << h;
            EXPECT_TRUE(std::is_sorted(cpu.positions[h].begin(), cpu.positions[h].end()));
        }
    }
    EXPECT_EQ(tested, 6) << "not enough inputs with a margin";
}

}  // namespace
}  // namespace tca::test
