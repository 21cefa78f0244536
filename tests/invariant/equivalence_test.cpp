// Equivalences of TCA-Attention with plain attention (tca-method M6, M7), on ref and cpu:
// full budget = dense, budget 0 = band only, attention over a compacted cache = attention over
// the full cache with the dropped positions masked, and no query ever attends a later position.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "invariant/invariant_common.h"

namespace tca::test {
namespace {

constexpr int kB = 8, kW = 16;

std::vector<std::vector<int32_t>> psi_all(int64_t hkv, int64_t n, int32_t value) {
    return std::vector<std::vector<int32_t>>(static_cast<size_t>(hkv),
                                             std::vector<int32_t>(static_cast<size_t>(n), value));
}

class Equivalence : public BackendTest {};

// M6 with psi all b: the pipeline selects every candidate token and sparse prefill is dense.
TEST_P(Equivalence, FullBudgetPrefillEqualsDense) {
    for (DType dt : {DType::kF32, DType::kF16}) {
        for (int64_t hq : {2, 8}) {
            Rng rng(11 + static_cast<uint64_t>(hq));
            const int64_t L = 123, hkv = 2, n = n_candidate_blocks(L, kW, kB);
            const Qkv in = make_qkv(hq, hkv, L, L, 64, dt, Input::kNormal, rng);
            Buf q_obs(DType::kF32, {hq, 1, 64});
            for (int64_t h = 0; h < hq; ++h) {
                for (int64_t c = 0; c < 64; ++c) q_obs.put({h, 0, c}, in.q.at({h, L - 1, c}));
            }
            Selection s;
            ASSERT_TRUE(run_selection(backend(), q_obs, in.k, n, kB, 0.5f, psi_all(hkv, n, kB), &s).ok());
            for (int64_t h = 0; h < hkv; ++h) {
                ASSERT_EQ(static_cast<int64_t>(s.positions[h].size()), n * kB) << "head " << h;
                for (int64_t i = 0; i < n * kB; ++i) ASSERT_EQ(s.positions[h][i], i);
            }
            Buf sparse, dense(DType::kF32, {hq, L, 64});
            ASSERT_TRUE(run_prefill(backend(), in, s.positions, 0, &sparse, kB, kW).ok());
            AttentionDenseParams p;
            p.q = in.q.view();
            p.k = in.k.view();
            p.v = in.v.view();
            p.out = dense.view();
            ASSERT_TRUE(run(backend(), p).ok());
            const KeyFilter causal = [](int64_t, int64_t qp, int64_t kp) { return kp <= qp; };
            const Buf want = masked_attention<double>(in.q, in.k, in.v, 0, causal);
            const double tol =
                fa3_tolerance(naive_masked_attention(in.q, in.k, in.v, 0, causal), want).bound();
            EXPECT_TRUE(all_near(sparse, want, tol, bname() + " sparse_prefill (psi all b) vs dense"));
            EXPECT_TRUE(all_near(dense, want, tol, bname() + " attention_dense"));
        }
    }
}

// M7: compacting with keep = b keeps every token: the cache is unchanged, only the global part
// grows by b, and decoding gives the same output.
TEST_P(Equivalence, CompactWithFullKeepChangesNothing) {
    Rng rng(5);
    const int64_t hq = 8, hkv = 2, d = 64, cap = 90, n = 70;
    Qkv in = make_qkv(hq, hkv, 1, cap, d, DType::kBF16, Input::kNormal, rng);
    std::vector<std::vector<int32_t>> pos(2);
    for (int64_t s = 0; s < n; ++s) pos[0].push_back(static_cast<int32_t>(2 * s));
    for (int64_t s = 0; s < n; ++s) pos[1].push_back(static_cast<int32_t>(s + 5));
    Buf slot_pos = i32_buf_2d(pos, cap, -1);
    Buf n_global = i32_buf({10, 40}), n_slots = i32_buf({70, 70});
    auto decode = [&](const Buf& k, const Buf& v, const Buf& sp, const Buf& ns) {
        Buf out(DType::kF32, {hq, 1, d});
        DecodeAttentionParams p;
        p.q = in.q.view();
        p.k_cache = k.view();
        p.v_cache = v.view();
        p.slot_pos = sp.view();
        p.n_slots = ns.view();
        p.out = out.view();
        p.q_pos0 = 200;
        EXPECT_TRUE(run(backend(), p).ok());
        return out;
    };
    const Buf before = decode(in.k, in.v, slot_pos, n_slots);
    Buf k = in.k.clone(), v = in.v.clone(), sp = slot_pos.clone();
    Buf keep = i32_buf({kB, kB});
    BlockCompactParams p;
    p.q = in.q.view();
    p.k_cache = k.view();
    p.v_cache = v.view();
    p.slot_pos = sp.view();
    p.n_global = n_global.view();
    p.n_slots = n_slots.view();
    p.keep = keep.view();
    p.block_size = kB;
    ASSERT_TRUE(run(backend(), p).ok());
    EXPECT_EQ(n_global.get(0), 10 + kB);
    EXPECT_EQ(n_global.get(1), 40 + kB);
    EXPECT_EQ(n_slots.get(0), 70);
    EXPECT_EQ(n_slots.get(1), 70);
    for (int64_t h = 0; h < hkv; ++h) {
        for (int64_t s = 0; s < n; ++s) {
            ASSERT_EQ(sp.at({h, s}), slot_pos.at({h, s})) << "slot " << s;
            for (int64_t c = 0; c < d; ++c) {
                ASSERT_EQ(k.bits(k.flat({h, s, c})), in.k.bits(in.k.flat({h, s, c})));
                ASSERT_EQ(v.bits(v.flat({h, s, c})), in.v.bits(in.v.flat({h, s, c})));
            }
        }
    }
    const Buf after = decode(k, v, sp, n_slots);
    EXPECT_TRUE(all_equal(after, before, bname() + " decode after keep-b compaction"));
}

// M6 with psi all 0: no global token; query i sees exactly [v(i) * b, i]. Rows before the
// band of the first query are NaN, so reading any of them would show.
TEST_P(Equivalence, ZeroBudgetPrefillIsBandOnly) {
    for (int64_t hq : {1, 4, 8}) {
        Rng rng(21 + static_cast<uint64_t>(hq));
        const int64_t L = 131, hkv = 1, n = n_candidate_blocks(L, kW, kB), d = 8;
        Qkv in = make_qkv(hq, hkv, L, L, d, DType::kF32, Input::kNormal, rng);
        Buf q_obs(DType::kF32, {hq, 1, d});
        for (int64_t h = 0; h < hq; ++h) {
            for (int64_t c = 0; c < d; ++c) q_obs.put({h, 0, c}, in.q.at({h, L - 1, c}));
        }
        Selection s;
        ASSERT_TRUE(run_selection(backend(), q_obs, in.k, n, kB, 0.5f, psi_all(hkv, n, 0), &s).ok());
        ASSERT_TRUE(s.positions[0].empty());
        const KeyFilter band = [n](int64_t, int64_t qp, int64_t kp) {
            return kp >= visible_blocks(qp, kW, kB, n) * kB && kp <= qp;
        };
        Buf out;
        ASSERT_TRUE(run_prefill(backend(), in, s.positions, 0, &out, kB, kW).ok());
        EXPECT_TRUE(matches_masked_attention(out, in.q, in.k, in.v, 0, band, bname() + " band only"));

        // The last 20 queries: poison everything before the band of the first of them.
        const int64_t q0 = L - 20;
        Qkv tail{Buf(DType::kF32, {hq, 20, d}), in.k.clone(), in.v.clone()};
        for (int64_t h = 0; h < hq; ++h) {
            for (int64_t i = 0; i < 20; ++i) {
                for (int64_t c = 0; c < d; ++c) tail.q.put({h, i, c}, in.q.at({h, q0 + i, c}));
            }
        }
        const int64_t band0 = visible_blocks(q0, kW, kB, n) * kB;
        ASSERT_GT(band0, 0);
        const Buf want = masked_attention<double>(tail.q, tail.k, tail.v, q0, band);
        for (int64_t j = 0; j < band0; ++j) {
            for (int64_t c = 0; c < d; ++c) {
                tail.k.put({0, j, c}, std::numeric_limits<double>::quiet_NaN());
                tail.v.put({0, j, c}, 1e30);
            }
        }
        Buf out_tail;
        ASSERT_TRUE(run_prefill(backend(), tail, s.positions, q0, &out_tail, kB, kW).ok());
        const Buf naive = naive_masked_attention(tail.q, tail.k, tail.v, q0, band);
        EXPECT_TRUE(all_near(out_tail, want, fa3_tolerance(naive, want).bound(),
                             bname() + " band only, rows before the band poisoned"));
    }
}

// M6 as written: query i sees the selected tokens below v(i) * b and [v(i) * b, i] densely;
// sparse_prefill with any ascending selection equals attention over exactly those keys.
TEST_P(Equivalence, SparsePrefillEqualsMaskedAttention) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
        for (int64_t hq : {2, 8}) {
            Rng rng(31 + static_cast<uint64_t>(hq));
            const int64_t L = 150, hkv = 2, n = n_candidate_blocks(L, kW, kB), d = 64;
            const Qkv in = make_qkv(hq, hkv, L, L, d, dt, Input::kSpiky, rng);
            std::vector<std::vector<int32_t>> sel;
            std::vector<std::set<int64_t>> sets;
            for (int64_t h = 0; h < hkv; ++h) {
                sel.push_back(random_subset(0, n * kB, h == 0 ? 0.2 : 0.6, rng));
                sets.emplace_back(sel.back().begin(), sel.back().end());
            }
            const KeyFilter m6 = [&](int64_t kvh, int64_t qp, int64_t kp) {
                const int64_t band0 = visible_blocks(qp, kW, kB, n) * kB;
                if (kp >= band0) return kp <= qp;
                return sets[kvh].count(kp) > 0;
            };
            Buf out;
            ASSERT_TRUE(run_prefill(backend(), in, sel, 0, &out, kB, kW).ok());
            EXPECT_TRUE(matches_masked_attention(out, in.q, in.k, in.v, 0, m6, bname() + " M6 mask"));
        }
    }
}

// M7: the cache after kv_gather of any ascending subset plus the band keeps positions, so
// decoding over it equals attention over the full cache with the dropped positions masked.
TEST_P(Equivalence, CompactedCacheEqualsMaskedFullCache) {
    for (DType dt : {DType::kF32, DType::kF16}) {
        Rng rng(41);
        const int64_t hq = 8, hkv = 2, d = 64, L = 200, band0 = 150, n_q = 6;
        // Keys up to L - 1; the chunk is the last n_q positions, which are in the cache.
        const Qkv in = make_qkv(hq, hkv, n_q, L, d, dt, Input::kNormal, rng);
        std::vector<std::vector<int32_t>> kept;
        std::vector<std::set<int64_t>> sets;
        for (int64_t h = 0; h < hkv; ++h) {
            auto s = random_subset(0, band0, h == 0 ? 0.1 : 0.5, rng);
            for (int64_t p = band0; p < L; ++p) s.push_back(static_cast<int32_t>(p));
            sets.emplace_back(s.begin(), s.end());
            kept.push_back(std::move(s));
        }
        Gathered g;
        ASSERT_TRUE(run_gather(backend(), in.k, in.v, kept, L, &g).ok());
        for (int64_t h = 0; h < hkv; ++h) {
            for (size_t s = 0; s < kept[h].size(); ++s) {
                ASSERT_EQ(g.slot_pos.at({h, static_cast<int64_t>(s)}), kept[h][s]) << "positions preserved";
            }
        }
        Buf out(DType::kF32, {hq, n_q, d});
        out.fill_poison();
        DecodeAttentionParams p;
        p.q = in.q.view();
        p.k_cache = g.k.view();
        p.v_cache = g.v.view();
        p.slot_pos = g.slot_pos.view();
        p.n_slots = g.n.view();
        p.out = out.view();
        p.q_pos0 = L - n_q;
        ASSERT_TRUE(run(backend(), p).ok());
        const KeyFilter masked = [&](int64_t kvh, int64_t qp, int64_t kp) {
            return kp <= qp && sets[kvh].count(kp) > 0;
        };
        EXPECT_TRUE(matches_masked_attention(out, in.q, in.k, in.v, L - n_q, masked,
                                             bname() + " decode over compacted cache"));
    }
}

// No query attends a later position: K/V rows after the last query are NaN or huge, and the
// outputs still equal attention over the clean causal prefix.
TEST_P(Equivalence, NoQueryAttendsALaterPosition) {
    Rng rng(51);
    const int64_t hq = 4, hkv = 2, d = 64, L = 140, q0 = 90, n_q = 20;
    const int64_t last = q0 + n_q - 1;
    const int64_t n = n_candidate_blocks(L, kW, kB);
    Qkv clean = make_qkv(hq, hkv, n_q, L, d, DType::kF32, Input::kNormal, rng);
    std::vector<std::vector<int32_t>> sel;
    std::vector<std::set<int64_t>> sets;
    for (int64_t h = 0; h < hkv; ++h) {
        sel.push_back(random_subset(0, n * kB, 0.4, rng));
        sets.emplace_back(sel.back().begin(), sel.back().end());
    }
    for (double poison : {std::numeric_limits<double>::quiet_NaN(), 1e30}) {
        Qkv in{clean.q.clone(), clean.k.clone(), clean.v.clone()};
        for (int64_t h = 0; h < hkv; ++h) {
            for (int64_t j = last + 1; j < L; ++j) {
                for (int64_t c = 0; c < d; ++c) {
                    in.k.put({h, j, c}, poison);
                    in.v.put({h, j, c}, poison);
                }
            }
        }
        const std::string tag = bname() + (std::isnan(poison) ? " NaN" : " 1e30") + " future rows: ";
        const KeyFilter causal = [](int64_t, int64_t qp, int64_t kp) { return kp <= qp; };
        {
            Buf out(DType::kF32, {hq, n_q, d});
            AttentionDenseParams p;
            p.q = in.q.view();
            p.k = in.k.view();
            p.v = in.v.view();
            p.out = out.view();
            p.q_pos0 = q0;
            ASSERT_TRUE(run(backend(), p).ok());
            EXPECT_TRUE(matches_masked_attention(out, clean.q, clean.k, clean.v, q0, causal,
                                                 tag + "attention_dense"));
        }
        {
            // The selection lies in the candidate blocks, all before q0.
            Buf out;
            ASSERT_TRUE(run_prefill(backend(), in, sel, q0, &out, kB, kW).ok());
            const KeyFilter m6 = [&](int64_t kvh, int64_t qp, int64_t kp) {
                const int64_t band0 = visible_blocks(qp, kW, kB, n) * kB;
                return kp >= band0 ? kp <= qp : sets[kvh].count(kp) > 0;
            };
            EXPECT_TRUE(matches_masked_attention(out, clean.q, clean.k, clean.v, q0, m6,
                                                 tag + "sparse_prefill"));
        }
        {
            // The full cache as decode slots (slot s at position s).
            std::vector<std::vector<int32_t>> all(static_cast<size_t>(hkv));
            for (auto& a : all) {
                for (int64_t j = 0; j < L; ++j) a.push_back(static_cast<int32_t>(j));
            }
            Buf sp = i32_buf_2d(all, L), ns = i32_buf({static_cast<int32_t>(L), static_cast<int32_t>(L)});
            Buf out(DType::kF32, {hq, n_q, d});
            DecodeAttentionParams p;
            p.q = in.q.view();
            p.k_cache = in.k.view();
            p.v_cache = in.v.view();
            p.slot_pos = sp.view();
            p.n_slots = ns.view();
            p.out = out.view();
            p.q_pos0 = q0;
            ASSERT_TRUE(run(backend(), p).ok());
            EXPECT_TRUE(matches_masked_attention(out, clean.q, clean.k, clean.v, q0, causal,
                                                 tag + "decode_attention"));
        }
        {
            // Token importance of the last n_obs = 3 queries at q_pos0 = last - 2.
            Buf q_obs(DType::kF32, {hq, 3, d});
            for (int64_t h = 0; h < hq; ++h) {
                for (int64_t i = 0; i < 3; ++i) {
                    for (int64_t c = 0; c < d; ++c) q_obs.put({h, i, c}, in.q.at({h, n_q - 3 + i, c}));
                }
            }
            Buf sc_clean(DType::kF32, {hkv, L}), sc(DType::kF32, {hkv, L});
            TokenImportanceParams p;
            p.q = q_obs.view();
            p.k = clean.k.view();
            p.scores = sc_clean.view();
            p.q_pos0 = last - 2;
            ASSERT_TRUE(run(Backend::kRef, p).ok());
            p.k = in.k.view();
            p.scores = sc.view();
            ASSERT_TRUE(run(backend(), p).ok());
            Buf naive(DType::kF32, {hkv, L});
            p.k = clean.k.view();
            p.scores = naive.view();
            ASSERT_TRUE(run(Backend::kNaiveF32, p).ok());
            EXPECT_TRUE(all_near(sc, sc_clean, fa3_tolerance(naive, sc_clean).bound(),
                                 tag + "token_importance"));
        }
    }
}

TCA_INSTANTIATE_BACKENDS(Equivalence);

}  // namespace
}  // namespace tca::test
