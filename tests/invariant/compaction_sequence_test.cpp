// Prefill, then decode token by token with block_compact whenever the local part reaches
// w + b tokens (tca-method M7), on ref and cpu, against a float64 simulation of the rule:
// slot positions ascend, n_global/n_slots stay consistent, the cache holds exactly the tokens
// the simulation keeps, and every step's output equals attention over those tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "invariant/invariant_common.h"

namespace tca::test {
namespace {

constexpr int kB = 8, kW = 16;

class CompactionSequence : public BackendTest {};

TEST_P(CompactionSequence, DecodeWithCompactionMatchesSimulation) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
        Rng rng(dt == DType::kF32 ? 101 : 202);
        const int64_t hq = 4, hkv = 2, d = 16, L0 = 50, steps = 70, total = L0 + steps;
        const int64_t cap = total;
        const std::vector<int32_t> t = {3, 1};  // decode budget per KV head
        // Every token's K/V and query, by position.
        const Qkv all = make_qkv(hq, hkv, total, total, d, dt, Input::kNormal, rng);
        // After prefill: a random selection of the candidate blocks plus the band [n*b, L0).
        const int64_t n = n_candidate_blocks(L0, kW, kB);
        std::vector<std::vector<int32_t>> sim(static_cast<size_t>(hkv));  // kept positions
        std::vector<int32_t> n_global;
        for (int64_t h = 0; h < hkv; ++h) {
            sim[h] = random_subset(0, n * kB, 0.3 + 0.3 * static_cast<double>(h), rng);
            n_global.push_back(static_cast<int32_t>(sim[h].size()));
            for (int64_t p = n * kB; p < L0; ++p) sim[h].push_back(static_cast<int32_t>(p));
        }
        Gathered cache;
        ASSERT_TRUE(run_gather(backend(), all.k, all.v, sim, cap, &cache).ok());
        Buf ng = i32_buf(n_global);
        Buf& ns = cache.n;
        int compactions = 0;
        for (int64_t pos = L0; pos < total; ++pos) {
            // Append the new token to the local part of every head.
            for (int64_t h = 0; h < hkv; ++h) {
                const auto s = static_cast<int64_t>(ns.get(h));
                for (int64_t c = 0; c < d; ++c) {
                    cache.k.put({h, s, c}, all.k.at({h, pos, c}));
                    cache.v.put({h, s, c}, all.v.at({h, pos, c}));
                }
                cache.slot_pos.put({h, s}, static_cast<double>(pos));
                ns.set(h, static_cast<double>(s + 1));
                sim[h].push_back(static_cast<int32_t>(pos));
            }
            Buf q(DType::kF32, {hq, 1, d});
            for (int64_t h = 0; h < hq; ++h) {
                for (int64_t c = 0; c < d; ++c) q.put({h, 0, c}, all.q.at({h, pos, c}));
            }
            Buf out(DType::kF32, {hq, 1, d});
            out.fill_poison();
            DecodeAttentionParams dp;
            dp.q = q.view();
            dp.k_cache = cache.k.view();
            dp.v_cache = cache.v.view();
            dp.slot_pos = cache.slot_pos.view();
            dp.n_slots = ns.view();
            dp.out = out.view();
            dp.q_pos0 = pos;
            ASSERT_TRUE(run(backend(), dp).ok());
            std::vector<std::set<int64_t>> sets;
            for (const auto& s : sim) sets.emplace_back(s.begin(), s.end());
            const KeyFilter kept = [&](int64_t kvh, int64_t qp, int64_t kp) {
                return kp <= qp && sets[kvh].count(kp) > 0;
            };
            ASSERT_TRUE(matches_masked_attention(out, q, all.k, all.v, pos, kept,
                                                 bname() + " decode step at position " +
                                                     std::to_string(pos)));
            // Compact when the local part holds w + b tokens (all heads reach it together).
            std::vector<int32_t> keep(static_cast<size_t>(hkv), -1);
            bool any = false;
            for (int64_t h = 0; h < hkv; ++h) {
                const int64_t local = static_cast<int64_t>(ns.get(h)) - static_cast<int64_t>(ng.get(h));
                ASSERT_LE(local, kW + kB);
                if (local < kW + kB) continue;
                keep[h] = t[h];
                any = true;
                // Simulation: score the oldest local block with this step's queries.
                const int64_t g0 = static_cast<int64_t>(ng.get(h));
                Buf blk(dt, {hkv, kB, d});
                for (int64_t j = 0; j < kB; ++j) {
                    for (int64_t c = 0; c < d; ++c) blk.put({h, j, c}, all.k.at({h, sim[h][g0 + j], c}));
                }
                double margin = 0.0;
                const auto top = top_k(compaction_scores(q, blk, h, 0, kB), t[h], &margin);
                ASSERT_GT(margin, 1e-6) << "input without a margin: pick another seed";
                std::vector<int32_t> next(sim[h].begin(), sim[h].begin() + g0);
                for (int64_t j : top) next.push_back(sim[h][g0 + j]);
                next.insert(next.end(), sim[h].begin() + g0 + kB, sim[h].end());
                sim[h] = std::move(next);
            }
            if (!any) continue;
            ++compactions;
            Buf keep_buf = i32_buf(keep);
            BlockCompactParams cp;
            cp.q = q.view();
            cp.k_cache = cache.k.view();
            cp.v_cache = cache.v.view();
            cp.slot_pos = cache.slot_pos.view();
            cp.n_global = ng.view();
            cp.n_slots = ns.view();
            cp.keep = keep_buf.view();
            cp.block_size = kB;
            ASSERT_TRUE(run(backend(), cp).ok());
            for (int64_t h = 0; h < hkv; ++h) {
                const auto nsl = static_cast<int64_t>(ns.get(h));
                const auto ngl = static_cast<int64_t>(ng.get(h));
                ASSERT_EQ(nsl, static_cast<int64_t>(sim[h].size())) << "n_slots, head " << h;
                ASSERT_LE(ngl, nsl);
                ASSERT_EQ(nsl - ngl, kW) << "local part after compaction, head " << h;
                for (int64_t s = 0; s < nsl; ++s) {
                    ASSERT_EQ(cache.slot_pos.at({h, s}), sim[h][s])
                        << bname() << " " << dtype_name(dt) << " position " << pos << " head " << h
                        << " slot " << s;
                    if (s > 0) {
                        ASSERT_LT(cache.slot_pos.at({h, s - 1}), cache.slot_pos.at({h, s}));
                    }
                    for (int64_t c = 0; c < d; ++c) {
                        ASSERT_EQ(cache.k.bits(cache.k.flat({h, s, c})),
                                  all.k.bits(all.k.flat({h, sim[h][s], c})));
                        ASSERT_EQ(cache.v.bits(cache.v.flat({h, s, c})),
                                  all.v.bits(all.v.flat({h, sim[h][s], c})));
                    }
                }
            }
        }
        EXPECT_GE(compactions, 7) << "the sequence must exercise compaction repeatedly";
        EXPECT_TRUE(cache.k.canaries_intact("k_cache"));
        EXPECT_TRUE(cache.slot_pos.canaries_intact("slot_pos"));
    }
}

TCA_INSTANTIATE_BACKENDS(CompactionSequence);

}  // namespace
}  // namespace tca::test
