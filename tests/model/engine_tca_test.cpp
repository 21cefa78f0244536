// TCA and the baselines in the engine, on the real stories260K model (tca-method M6, M7):
// full budget equals dense, short prompts fall back to dense, the cache after prefill holds
// exactly the selection plus the band, decode and continuation compaction follow M7, and the
// KV accounting of every policy equals the bytes the cache holds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include "core/half.h"
#include "reference/ref_ops.h"
#include "runtime/engine.h"

namespace tca {
namespace {

const std::string kModel = std::string(TCA_SHARED_DIR) + "/models/stories260K.gguf";
constexpr const char* kStory =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big red ball. She ran to get it, but it rolled into the pond. "
    "Lily was sad. Her mom came and said they could get a stick. They got the ball back and "
    "Lily was very happy. She said thank you to her mom and they went home.";

SparseOptions small_tca() {
    SparseOptions o;
    o.block_size = 8;
    o.local_window = 16;
    return o;
}

std::unique_ptr<Engine> make_engine(const AttentionPolicy& policy, bool all_logits = true,
                                    DType kv_dtype = DType::kF32) {
    EngineOptions opt;
    opt.kv_dtype = kv_dtype;
    opt.model_path = kModel;
    opt.ctx_size = 400;
    opt.n_threads = 1;
    opt.all_logits = all_logits;
    opt.attention = policy;
    auto e = Engine::create(opt);
    EXPECT_TRUE(e.ok()) << e.status().to_string();
    return e.ok() ? std::move(e).value() : nullptr;
}

AttentionPolicy tca_policy(const HeadConfig& c) {
    AttentionPolicy p;
    p.kind = AttentionKind::kTca;
    p.budgets.options = small_tca();
    p.uniform = c;
    p.min_prefill_gain = 0.0;  // these tests exercise the sparse prefill at every keep rate
    return p;
}

std::vector<int32_t> greedy(Engine& e, int n) {
    Sampler s(SamplerOptions{}, e.config().n_vocab);
    std::vector<int32_t> out;
    EXPECT_TRUE(e.generate(n, s, [&](int32_t id) {
        out.push_back(id);
        return true;
    }).ok());
    return out;
}

// K/V bytes of the cache computed from its counters, independently of held_bytes().
uint64_t counted_bytes(const KvCache& c) {
    uint64_t slots = 0;
    for (int64_t l = 0; l < c.n_layers(); ++l) {
        for (int64_t h = 0; h < c.n_kv_heads(); ++h) slots += static_cast<uint64_t>(c.layer(l).n_slots.data<int32_t>()[h]);
    }
    return slots * 2 * static_cast<uint64_t>(c.head_dim()) * dtype_size(c.dtype());
}

// Slot positions of every head ascend; the local part is [n_global, n_slots).
void expect_cache_well_formed(const KvCache& c) {
    for (int64_t l = 0; l < c.n_layers(); ++l) {
        const KvLayer& kv = c.layer(l);
        for (int64_t h = 0; h < c.n_kv_heads(); ++h) {
            const int32_t n = kv.n_slots.data<int32_t>()[h];
            const int32_t* pos = kv.slot_pos.data<int32_t>() + h * kv.slot_pos.view().stride[0];
            ASSERT_LE(kv.n_global.data<int32_t>()[h], n);
            for (int32_t s = 1; s < n; ++s) ASSERT_LT(pos[s - 1], pos[s]) << "layer " << l << " head " << h;
        }
    }
}

class EngineTca : public ::testing::Test {
protected:
    void SetUp() override {
        if (!std::filesystem::exists(kModel)) GTEST_SKIP() << kModel << " absent (shared test assets)";
    }
};

TEST_F(EngineTca, FullBudgetEqualsDense) {
    auto dense = make_engine(AttentionPolicy{});
    auto full = make_engine(tca_policy(dense_config(8)));
    const auto ids = dense->tokenizer().encode(kStory, true, true);
    ASSERT_GT(ids.size(), 40u);
    std::vector<float> a, b;
    ASSERT_TRUE(dense->eval(ids, &a).ok());
    ASSERT_TRUE(full->eval(ids, &b).ok());
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
    EXPECT_LT(worst, 1e-4) << "prompt logits, full-budget tca vs dense";
    EXPECT_EQ(greedy(*dense, 48), greedy(*full, 48));
    EXPECT_EQ(full->stats().kv_bytes, full->stats().kv_bytes_dense);  // nothing dropped
}

// performance.md P8: when the sparse prefill would not save min_prefill_gain x the dense work
// (a full budget saves nothing), the prompt is attended densely (and a full budget keeps every
// token).
TEST_F(EngineTca, PromptStaysDenseWhenSparseDoesNotPayOff) {
    AttentionPolicy p = tca_policy(dense_config(8));
    p.min_prefill_gain = 1.3;
    auto dense = make_engine(AttentionPolicy{});
    auto tca = make_engine(p);
    const auto ids = dense->tokenizer().encode(kStory, true, true);
    ASSERT_GT(static_cast<int64_t>(ids.size()), 16 + 8);  // there are candidate blocks
    EXPECT_LT(sparse_prefill_gain(static_cast<int64_t>(ids.size()), small_tca(), 1.0), 1.3);
    std::vector<float> a, b;
    ASSERT_TRUE(dense->eval(ids, &a).ok());
    ASSERT_TRUE(tca->eval(ids, &b).ok());
    EXPECT_EQ(a, b);
    EXPECT_EQ(tca->stats().kv_bytes, tca->stats().kv_bytes_dense);
    // The same prompt with a small keep rate does pay off: sparse, and the cache shrinks.
    AttentionPolicy q = tca_policy(log_gaussian_config(0.5, 1.0, 8));
    q.min_prefill_gain = 1.3;
    const double keep = expected_keep_fraction(log_gaussian_config(0.5, 1.0, 8).p, 8);
    ASSERT_GE(sparse_prefill_gain(static_cast<int64_t>(ids.size()), small_tca(), keep), 1.3);
    auto sparse = make_engine(q);
    ASSERT_TRUE(sparse->eval(ids, nullptr).ok());
    EXPECT_LT(sparse->stats().kv_bytes, sparse->stats().kv_bytes_dense);
}

// A prompt attended densely because the sparse prefill does not pay off is compacted at once
// when it ends, like a chunk (tca-method M7): its logits are dense, its cache keeps the Psi
// budgets of every overflow block plus the local part, and decoding from it appends without
// compacting until the local part fills again (no per-step catch-up of an oversized local part).
TEST_F(EngineTca, PromptKeptDenseIsCompactedAtOnce) {
    const HeadConfig cfg = log_gaussian_config(1.0, 1.0, 8);
    AttentionPolicy p = tca_policy(cfg);
    p.min_prefill_gain = 1e6;  // never sparse
    auto dense = make_engine(AttentionPolicy{});
    auto tca = make_engine(p);
    const auto ids = dense->tokenizer().encode(kStory, true, true);
    const auto L = static_cast<int64_t>(ids.size());
    std::vector<float> a, b;
    ASSERT_TRUE(dense->eval(ids, &a).ok());
    ASSERT_TRUE(tca->eval(ids, &b).ok());
    EXPECT_EQ(a, b) << "the prompt is attended densely";
    const int64_t m = (L - 16) / 8;  // overflow blocks: the local part keeps w..w+b-1 tokens
    ASSERT_GT(m, 2);
    auto psi = make_psi(cfg.p, m, 8);
    ASSERT_TRUE(psi.ok());
    int64_t kept = 0;
    for (int32_t t : *psi) kept += t;
    ASSERT_LT(kept, m * 8);
    const KvCache& c = tca->cache();
    expect_cache_well_formed(c);
    for (int64_t l = 0; l < c.n_layers(); ++l) {
        for (int64_t h = 0; h < c.n_kv_heads(); ++h) {
            EXPECT_EQ(c.layer(l).n_global.data<int32_t>()[h], kept) << "layer " << l << " head " << h;
            EXPECT_EQ(c.layer(l).n_slots.data<int32_t>()[h], kept + L - m * 8);
        }
    }
    // Decoding appends one token per step while the local part is below w + b = 24.
    const int64_t local = L - m * 8;
    const int64_t quiet = 24 - 1 - local;
    ASSERT_GE(quiet, 1);
    greedy(*tca, static_cast<int>(quiet + 1));  // the first token needs no forward pass
    for (int64_t l = 0; l < c.n_layers(); ++l) {
        for (int64_t h = 0; h < c.n_kv_heads(); ++h) {
            EXPECT_EQ(c.layer(l).n_global.data<int32_t>()[h], kept);
            EXPECT_EQ(c.layer(l).n_slots.data<int32_t>()[h], kept + local + quiet);
        }
    }
    EXPECT_EQ(tca->stats().kv_bytes, counted_bytes(c));
}

// The prompt kept dense keeps what the sparse prefill would have selected (M7): layer 0 sees
// the same queries and keys either way, so its cache holds the same positions; every layer
// holds the same counts (the Psi budgets of the overflow blocks).
TEST_F(EngineTca, PromptKeptDenseKeepsTheSparsePrefillSelection) {
    const HeadConfig cfg = log_gaussian_config(1.0, 1.0, 8);
    AttentionPolicy kept_dense = tca_policy(cfg), sparse = tca_policy(cfg);
    kept_dense.min_prefill_gain = 1e6;  // never sparse
    sparse.min_prefill_gain = 0.0;      // always sparse
    auto a = make_engine(kept_dense);
    auto b = make_engine(sparse);
    const auto ids = a->tokenizer().encode(kStory, true, true);
    ASSERT_TRUE(a->eval(ids, nullptr).ok());
    ASSERT_TRUE(b->eval(ids, nullptr).ok());
    const KvCache &ca = a->cache(), &cb = b->cache();
    expect_cache_well_formed(ca);
    int64_t dropped = 0;
    for (int64_t l = 0; l < ca.n_layers(); ++l) {
        const KvLayer &x = ca.layer(l), &y = cb.layer(l);
        for (int64_t h = 0; h < ca.n_kv_heads(); ++h) {
            const int32_t n = x.n_slots.data<int32_t>()[h];
            ASSERT_EQ(n, y.n_slots.data<int32_t>()[h]) << "layer " << l << " head " << h;
            ASSERT_EQ(x.n_global.data<int32_t>()[h], y.n_global.data<int32_t>()[h]);
            dropped += static_cast<int64_t>(ids.size()) - n;
            if (l != 0) continue;
            const int32_t* px = x.slot_pos.data<int32_t>() + h * x.slot_pos.view().stride[0];
            const int32_t* py = y.slot_pos.data<int32_t>() + h * y.slot_pos.view().stride[0];
            EXPECT_EQ(std::vector<int32_t>(px, px + n), std::vector<int32_t>(py, py + n)) << "head " << h;
        }
    }
    EXPECT_GT(dropped, 0);
}

// Engine::warmup (tca run --warmup) leaves nothing behind: after warming up with a prompt long
// enough for the prompt-end selection, a real prompt gives bitwise the logits, greedy tokens,
// cache and statistics of a fresh engine, for dense, TCA kept dense and TCA sparse.
TEST_F(EngineTca, WarmupLeavesNoTrace) {
    AttentionPolicy kept_dense = tca_policy(log_gaussian_config(1.0, 1.0, 8));
    kept_dense.min_prefill_gain = 1e6;
    for (const AttentionPolicy& p : {AttentionPolicy{}, kept_dense, tca_policy(log_gaussian_config(0.5, 1.0, 8))}) {
        auto fresh = make_engine(p);
        auto warm = make_engine(p);
        ASSERT_TRUE(warm->warmup(100).ok());
        EXPECT_EQ(warm->n_past(), 0);
        EXPECT_EQ(warm->stats().n_prompt_tokens, 0);
        EXPECT_EQ(warm->stats().prefill_ms, 0.0);
        const auto ids = fresh->tokenizer().encode(kStory, true, true);
        std::vector<float> a, b;
        ASSERT_TRUE(fresh->eval(ids, &a).ok());
        ASSERT_TRUE(warm->eval(ids, &b).ok());
        EXPECT_EQ(a, b) << attention_kind_name(p.kind);
        EXPECT_EQ(greedy(*fresh, 24), greedy(*warm, 24));
        EXPECT_EQ(fresh->stats().kv_bytes, warm->stats().kv_bytes);
        EXPECT_EQ(fresh->stats().n_prompt_tokens, warm->stats().n_prompt_tokens);
        expect_cache_well_formed(warm->cache());
    }
    // Longer than the context: capped (one slot stays free for the decode step); negative and
    // after a prompt: errors.
    auto e = make_engine(AttentionPolicy{});
    EXPECT_TRUE(e->warmup(100000).ok());
    EXPECT_EQ(e->warmup(-1).code(), StatusCode::kInvalidArgument);
    ASSERT_TRUE(e->eval(e->tokenizer().encode(kStory, true, true), nullptr).ok());
    EXPECT_EQ(e->warmup(10).code(), StatusCode::kInvalidArgument);
}

TEST(SparsePrefillGain, FullBudgetGainsNothingAndGainGrowsWithLength) {
    SparseOptions o;
    o.block_size = 128;
    o.local_window = 4096;
    EXPECT_DOUBLE_EQ(sparse_prefill_gain(4096, o, 0.2), 1.0);  // no candidate block
    EXPECT_NEAR(sparse_prefill_gain(32768, o, 1.0), 1.0, 1e-12);
    double prev = 1.0;
    for (int64_t L : {8192, 16384, 32768, 65536, 131072}) {
        const double g = sparse_prefill_gain(L, o, 0.2);
        EXPECT_GT(g, prev) << L;
        prev = g;
    }
    // 8K falls back to dense at the default 1.3, 16K and longer run sparse (w 4096, 20% keep).
    EXPECT_LT(sparse_prefill_gain(8192, o, 0.2), 1.3);
    EXPECT_GT(sparse_prefill_gain(16384, o, 0.2), 1.3);
    EXPECT_LT(sparse_prefill_gain(131072, o, 0.2), 5.0);  // bounded by 1 / keep
}

TEST_F(EngineTca, ShortPromptIsDense) {
    auto dense = make_engine(AttentionPolicy{});
    auto tca = make_engine(tca_policy(log_gaussian_config(1.0, 1.0, 8)));
    const auto ids = dense->tokenizer().encode("Once upon a time, there was a girl", true, true);
    ASSERT_LT(ids.size(), 24u);  // < w + b: no candidate block
    std::vector<float> a, b;
    ASSERT_TRUE(dense->eval(ids, &a).ok());
    ASSERT_TRUE(tca->eval(ids, &b).ok());
    EXPECT_EQ(a, b);
}

// Both selections (M5 and its global option) hold the same number of tokens: the sum of the
// block budgets; global places them anywhere in the candidate blocks.
TEST_F(EngineTca, CacheAfterPrefillHoldsSelectionAndBand) {
    const HeadConfig cfg = log_gaussian_config(1.0, 1.0, 8);
    std::map<Selection, std::vector<int32_t>> kept;  // every head's global positions, in order
    for (const Selection selection : {Selection::kBlock, Selection::kGlobal}) {
        SCOPED_TRACE(selection_name(selection));
        AttentionPolicy policy = tca_policy(cfg);
        policy.budgets.options.selection = selection;
        auto e = make_engine(policy);
        const auto ids = e->tokenizer().encode(kStory, true, true);
        const auto L = static_cast<int64_t>(ids.size());
        ASSERT_TRUE(e->eval(ids, nullptr).ok());
        const int64_t n = n_candidate_blocks(L, 16, 8);
        auto psi = make_psi(cfg.p, n, 8);
        ASSERT_TRUE(psi.ok());
        int64_t budget = 0;
        for (int32_t t : *psi) budget += t;
        const KvCache& c = e->cache();
        expect_cache_well_formed(c);
        for (int64_t l = 0; l < c.n_layers(); ++l) {
            const KvLayer& kv = c.layer(l);
            for (int64_t h = 0; h < c.n_kv_heads(); ++h) {
                const int32_t ng = kv.n_global.data<int32_t>()[h];
                EXPECT_EQ(ng, budget) << "global part = sum of the block budgets (M4)";
                EXPECT_EQ(kv.n_slots.data<int32_t>()[h], ng + (L - n * 8));
                const int32_t* pos = kv.slot_pos.data<int32_t>() + h * kv.slot_pos.view().stride[0];
                for (int32_t s = 0; s < ng; ++s) EXPECT_LT(pos[s], n * 8) << "selection lies in candidate blocks";
                for (int64_t s = ng; s < ng + (L - n * 8); ++s) EXPECT_EQ(pos[s], n * 8 + (s - ng)) << "the band is dense";
                kept[selection].insert(kept[selection].end(), pos, pos + ng);
            }
        }
        EXPECT_EQ(e->stats().kv_bytes, counted_bytes(c));
        EXPECT_LT(e->stats().kv_bytes, e->stats().kv_bytes_dense);
    }
    EXPECT_NE(kept[Selection::kBlock], kept[Selection::kGlobal]) << "global selection placed every token as the per-block one";
}

TEST_F(EngineTca, DecodeCompactsBlockByBlock) {
    const HeadConfig cfg = log_gaussian_config(1.5, 1.0, 8);
    auto e = make_engine(tca_policy(cfg), false);
    const auto ids = e->tokenizer().encode(kStory, true, true);
    ASSERT_TRUE(e->eval(ids, nullptr).ok());
    std::vector<int32_t> global_before;
    for (int64_t l = 0; l < e->cache().n_layers(); ++l) {
        for (int64_t h = 0; h < e->cache().n_kv_heads(); ++h) global_before.push_back(e->cache().layer(l).n_global.data<int32_t>()[h]);
    }
    const int64_t steps = 70;
    EXPECT_EQ(static_cast<int64_t>(greedy(*e, static_cast<int>(steps)).size()), steps);
    const KvCache& c = e->cache();
    expect_cache_well_formed(c);
    const int32_t t = decode_budget(cfg.p);
    size_t i = 0;
    for (int64_t l = 0; l < c.n_layers(); ++l) {
        for (int64_t h = 0; h < c.n_kv_heads(); ++h, ++i) {
            const int32_t ng = c.layer(l).n_global.data<int32_t>()[h], ns = c.layer(l).n_slots.data<int32_t>()[h];
            EXPECT_LT(ns - ng, 16 + 8) << "the local part stays below w + b";
            EXPECT_GE(ns - ng, 16);
            EXPECT_EQ((ng - global_before[i]) % t, 0) << "each compaction adds t = " << t << " tokens";
            EXPECT_GT(ng, global_before[i]);
        }
    }
    EXPECT_EQ(e->stats().kv_bytes, counted_bytes(c));
}

TEST_F(EngineTca, ContinuationCompactsOverflowBlocksByM4) {
    const HeadConfig cfg = log_gaussian_config(1.0, 1.0, 8);
    auto e = make_engine(tca_policy(cfg), false);
    const Tokenizer& tok = e->tokenizer();
    ASSERT_TRUE(e->eval(tok.encode(kStory, true, true), nullptr).ok());
    greedy(*e, 10);
    std::vector<int32_t> ng0, local0;
    for (int64_t l = 0; l < e->cache().n_layers(); ++l) {
        for (int64_t h = 0; h < e->cache().n_kv_heads(); ++h) {
            ng0.push_back(e->cache().layer(l).n_global.data<int32_t>()[h]);
            local0.push_back(e->cache().layer(l).n_slots.data<int32_t>()[h] - ng0.back());
        }
    }
    const auto more = tok.encode(" The next day, Lily and her mom went back to the park to play with the ball again.", false, true);
    const auto c_len = static_cast<int64_t>(more.size());
    ASSERT_GT(c_len, 8);
    ASSERT_TRUE(e->eval(more, nullptr).ok());
    const KvCache& c = e->cache();
    expect_cache_well_formed(c);
    size_t i = 0;
    for (int64_t l = 0; l < c.n_layers(); ++l) {
        for (int64_t h = 0; h < c.n_kv_heads(); ++h, ++i) {
            const int64_t local = local0[i] + c_len;
            const int64_t m = local >= 24 ? (local - 16) / 8 : 0;
            int64_t kept = 0;
            if (m > 0) {
                auto psi = make_psi(cfg.p, m, 8);
                ASSERT_TRUE(psi.ok());
                for (int32_t t : *psi) kept += t;
            }
            EXPECT_EQ(c.layer(l).n_global.data<int32_t>()[h], ng0[i] + kept);
            EXPECT_EQ(c.layer(l).n_slots.data<int32_t>()[h], ng0[i] + kept + (local - m * 8));
        }
    }
}

TEST_F(EngineTca, EveryPolicyAccountsTheBytesItHolds) {
    for (AttentionKind k : {AttentionKind::kDense, AttentionKind::kTca, AttentionKind::kStreaming,
                            AttentionKind::kSnapKv, AttentionKind::kOracle}) {
        AttentionPolicy p = k == AttentionKind::kTca ? tca_policy(log_gaussian_config(1.0, 1.0, 8)) : AttentionPolicy{};
        p.kind = k;
        p.kv_budget = 24;
        p.n_sink = 2;
        p.obs_window = 4;
        auto e = make_engine(p, false);
        ASSERT_TRUE(e->eval(e->tokenizer().encode(kStory, true, true), nullptr).ok());
        greedy(*e, 12);
        SCOPED_TRACE(attention_kind_name(k));
        expect_cache_well_formed(e->cache());
        const EngineStats s = e->stats();
        EXPECT_EQ(s.kv_bytes, counted_bytes(e->cache()));
        EXPECT_EQ(s.kv_bytes_dense, 2ull * 5 * 4 * static_cast<uint64_t>(s.n_positions) * 8 * 4);
        if (k == AttentionKind::kStreaming) {
            for (int64_t h = 0; h < 4; ++h) EXPECT_EQ(e->cache().layer(0).n_slots.data<int32_t>()[h], 24);
        }
        if (k == AttentionKind::kSnapKv || k == AttentionKind::kOracle) {
            // the compressed prompt (24 tokens) plus the 11 decoded tokens that went through a forward pass
            for (int64_t h = 0; h < 4; ++h) EXPECT_EQ(e->cache().layer(0).n_slots.data<int32_t>()[h], 24 + 11);
        }
    }
}

// Element c of row `row` of KV head h of a cache tensor, as a double (exact for every storage).
double cache_elem(const TensorView& t, int64_t h, int64_t row, int64_t c) {
    const void* p = t.at({h, row, c});
    switch (t.dtype) {
        case DType::kF16: return f16_to_f32(*static_cast<const uint16_t*>(p));
        case DType::kBF16: return bf16_to_f32(*static_cast<const uint16_t*>(p));
        default: return *static_cast<const float*>(p);
    }
}

// Masked dense attention of one query row over the recorded K/V history: softmax over the
// visible positions only, accumulated in Acc (double = oracle, float = naive twin).
template <class Acc>
std::vector<Acc> masked_dense_row(const TensorView& q, int64_t qh, const std::vector<std::vector<double>>& krows,
                                  const std::vector<std::vector<double>>& vrows) {
    const int64_t d = q.shape[2];
    const Acc scale = static_cast<Acc>(1.0 / std::sqrt(static_cast<double>(d)));
    std::vector<Acc> s(krows.size());
    Acc mx = -INFINITY;
    for (size_t j = 0; j < krows.size(); ++j) {
        Acc dot = 0;
        for (int64_t c = 0; c < d; ++c) {
            dot += static_cast<Acc>(*static_cast<const float*>(q.at({qh, 0, c}))) *
                   static_cast<Acc>(krows[j][static_cast<size_t>(c)]);
        }
        s[j] = dot * scale;
        mx = std::max(mx, s[j]);
    }
    Acc den = 0;
    for (Acc& x : s) den += (x = std::exp(x - mx));
    std::vector<Acc> out(static_cast<size_t>(d), 0);
    for (size_t j = 0; j < krows.size(); ++j) {
        for (int64_t c = 0; c < d; ++c) out[static_cast<size_t>(c)] += s[j] / den * static_cast<Acc>(vrows[j][static_cast<size_t>(c)]);
    }
    return out;
}

// tca-method M7 at engine level: decoding on the compacted cache (selection + band after the
// sparse prefill, then block-by-block compaction) equals dense attention over the whole K/V
// history with the dropped tokens masked out. Every token's K/V row is recorded when it first
// appears; at each decode step and layer the attention output must equal the masked-dense
// oracle over the positions held before the step plus the new token (FA3 rule: 2 x the naive
// float32 error of the same oracle + 8 ulps), and every held row must still equal its record.
TEST_F(EngineTca, CompactedDecodeEqualsMaskedDenseDecode) {
    for (DType kv_dtype : {DType::kF32, DType::kF16}) {
        SCOPED_TRACE(dtype_name(kv_dtype));
        auto e = make_engine(tca_policy(log_gaussian_config(0.5, 1.0, 8)), false, kv_dtype);
        const auto prompt = e->tokenizer().encode(kStory, true, true);
        const int64_t hkv = e->config().n_head_kv, nh = e->config().n_head;
        const int64_t group = nh / hkv;
        // (layer, head, position) -> K and V rows as first seen; positions held per (layer, head).
        std::map<std::tuple<int64_t, int64_t, int64_t>, std::pair<std::vector<double>, std::vector<double>>> hist;
        std::map<std::pair<int64_t, int64_t>, std::set<int64_t>> held;
        int64_t checked = 0, compactions = 0;
        const LayerObserver obs = [&](int64_t layer, const TensorView& q, const KvLayer& kv, int64_t pos0,
                                      const TensorView& out) -> Status {
            const int64_t n = q.shape[1], d = q.shape[2];
            std::vector<double> step_got, step_want, step_naive;  // this layer's output tensor
            for (int64_t h = 0; h < hkv; ++h) {
                const int32_t ns = kv.n_slots.data<int32_t>()[h];
                const int32_t* pos = kv.slot_pos.data<int32_t>() + h * kv.slot_pos.view().stride[0];
                std::set<int64_t>& prev = held[{layer, h}];
                std::set<int64_t> now;
                for (int32_t s = 0; s < ns; ++s) {
                    std::vector<double> kr(static_cast<size_t>(d)), vr(static_cast<size_t>(d));
                    for (int64_t c = 0; c < d; ++c) {
                        kr[static_cast<size_t>(c)] = cache_elem(kv.k.view(), h, s, c);
                        vr[static_cast<size_t>(c)] = cache_elem(kv.v.view(), h, s, c);
                    }
                    auto [it, fresh] = hist.try_emplace({layer, h, pos[s]}, kr, vr);
                    EXPECT_TRUE(fresh || (it->second.first == kr && it->second.second == vr))
                        << "layer " << layer << " head " << h << ": the row of position " << pos[s]
                        << " changed while it moved through the cache";
                    now.insert(pos[s]);
                }
                if (n == 1 && pos0 > 0) {  // a decode step: check the attention it just did
                    std::set<int64_t> visible = prev;
                    visible.insert(pos0);
                    for (int64_t p : now) EXPECT_TRUE(visible.count(p)) << "position " << p << " reappeared";
                    if (now.size() < visible.size()) ++compactions;
                    std::vector<std::vector<double>> krows, vrows;
                    for (int64_t p : visible) {
                        const auto& r = hist.at({layer, h, p});
                        krows.push_back(r.first);
                        vrows.push_back(r.second);
                    }
                    for (int64_t g = 0; g < group; ++g) {
                        const int64_t qh = h * group + g;
                        const auto want = masked_dense_row<double>(q, qh, krows, vrows);
                        const auto naive = masked_dense_row<float>(q, qh, krows, vrows);
                        for (int64_t c = 0; c < d; ++c) {
                            step_got.push_back(*static_cast<const float*>(out.at({qh, 0, c})));
                            step_want.push_back(want[static_cast<size_t>(c)]);
                            step_naive.push_back(naive[static_cast<size_t>(c)]);
                        }
                        ++checked;
                    }
                }
                prev = now;
            }
            // The FA3 rule over the layer's output tensor, as in the parity suite.
            double naive_err = 0, max_want = 0;
            for (size_t i = 0; i < step_want.size(); ++i) {
                naive_err = std::max(naive_err, std::fabs(step_naive[i] - step_want[i]));
                max_want = std::max(max_want, std::fabs(step_want[i]));
            }
            const double tol = 2 * naive_err + 8 * 1.1920928955078125e-07 * max_want;
            for (size_t i = 0; i < step_want.size(); ++i) {
                EXPECT_NEAR(step_got[i], step_want[i], tol)
                    << "layer " << layer << " element " << i << " at position " << pos0;
            }
            return Status();
        };
        ASSERT_TRUE(e->eval(prompt, nullptr, &obs).ok());
        // Decode greedily, one token per eval, past two block compactions per head.
        for (int step = 0; step < 40; ++step) {
            const float* lg = e->last_logits();
            const int32_t next = static_cast<int32_t>(std::max_element(lg, lg + e->config().n_vocab) - lg);
            const int32_t one[1] = {next};
            ASSERT_TRUE(e->eval(one, nullptr, &obs).ok());
        }
        EXPECT_EQ(checked, 40 * e->config().n_layer * nh);
        EXPECT_GT(compactions, 0) << "decode never compacted a block: the test would not cover M7";
    }
}

// ---- attention probe (tca eval --attn-stats) --------------------------------------------

// ||a - b|| / ||b||.
double rel_error(const HostTensor& a, const HostTensor& b) {
    double d = 0, r = 0;
    for (int64_t i = 0; i < b.numel(); ++i) {
        const double x = a.data<float>()[i], y = b.data<float>()[i];
        d += (x - y) * (x - y);
        r += y * y;
    }
    return std::sqrt(d / r);
}

// Engine options of the probe tests: stories260K at 400 tokens, one thread.
EngineOptions probe_options(const AttentionPolicy& policy, int64_t rows) {
    EngineOptions opt;
    opt.model_path = kModel;
    opt.ctx_size = 400;
    opt.n_threads = 1;
    opt.attention = policy;
    opt.probe_rows = rows;
    return opt;
}

HostTensor host_copy(const TensorView& v) {
    auto h = to_host(v, host_memory());
    EXPECT_TRUE(h.ok()) << h.status().to_string();
    return std::move(h).value();
}

// Dense attention measures nothing lost: recall 1 and no error at every layer.
TEST_F(EngineTca, ProbeOfDenseIsExact) {
    auto e = Engine::create(probe_options(AttentionPolicy{}, 8));
    ASSERT_TRUE(e.ok()) << e.status().to_string();
    ASSERT_TRUE((*e)->eval((*e)->tokenizer().encode(kStory, true, true), nullptr).ok());
    const AttentionProbe& p = (*e)->attention().probe();
    ASSERT_EQ(static_cast<int64_t>(p.recall.size()), (*e)->config().n_layer);
    for (size_t l = 0; l < p.recall.size(); ++l) {
        EXPECT_NEAR(p.recall[l], 1.0, 1e-5) << "layer " << l;
        EXPECT_LT(p.prefill_error[l], 1e-5) << "layer " << l;
        EXPECT_LT(p.decode_error[l], 1e-5) << "layer " << l;
    }
    // Decoding does not touch the measurement of the prompt.
    const AttentionProbe before = p;
    greedy(**e, 4);
    EXPECT_EQ((*e)->attention().probe().recall, before.recall);
}

// The probe against the float64 reference ops at layer 0, where every policy sees the same
// queries, keys and values as dense: recall from the dense softmax of the last query over the
// positions the policy's cache kept, the prefill error of the policy's own output rows, and
// the decode error of the last query over the kept cache.
TEST_F(EngineTca, ProbeMatchesTheFloat64ReferenceAtLayerZero) {
    constexpr int64_t kRows = 8;
    // Layer 0 of dense: the queries and the whole prompt's K/V.
    HostTensor q0, k0, v0;
    int64_t L = 0;
    LayerObserver dense_obs = [&](int64_t layer, const TensorView& q, const KvLayer& kv, int64_t,
                                  const TensorView&) -> Status {
        if (layer != 0) return Status();
        L = q.shape[1];
        q0 = host_copy(q);
        k0 = host_copy(slice(kv.k.view(), 1, 0, L));
        v0 = host_copy(slice(kv.v.view(), 1, 0, L));
        return Status();
    };
    auto dense = make_engine(AttentionPolicy{});
    const auto ids = dense->tokenizer().encode(kStory, true, true);
    ASSERT_TRUE(dense->eval(ids, nullptr, &dense_obs).ok());
    ASSERT_EQ(L, static_cast<int64_t>(ids.size()));
    const int64_t nh = q0.view().shape[0], nkv = k0.view().shape[0], d = q0.view().shape[2];
    const TensorView q_last = slice(q0.view(), 1, L - 1, 1);
    HostTensor probs(DType::kF32, {nkv, L}), ref_rows(DType::kF32, {nh, kRows, d}), ref_last(DType::kF32, {nh, 1, d});
    ASSERT_TRUE(ref::token_importance(TokenImportanceParams{q_last, k0.view(), probs.view(), L - 1, 0.0f}).ok());
    ASSERT_TRUE(ref::attention_dense(AttentionDenseParams{slice(q0.view(), 1, L - kRows, kRows), k0.view(), v0.view(),
                                                          ref_rows.view(), L - kRows, 0.0f}).ok());
    ASSERT_TRUE(ref::attention_dense(AttentionDenseParams{q_last, k0.view(), v0.view(), ref_last.view(), L - 1, 0.0f}).ok());

    std::vector<std::pair<std::string, AttentionPolicy>> policies;
    policies.emplace_back("tca", tca_policy(log_gaussian_config(1.0, 1.0, 8)));
    for (AttentionKind kind : {AttentionKind::kSnapKv, AttentionKind::kOracle, AttentionKind::kStreaming}) {
        AttentionPolicy p;
        p.kind = kind;
        p.kv_budget = 40;
        policies.emplace_back(attention_kind_name(kind), p);
    }
    for (const auto& [name, policy] : policies) {
        SCOPED_TRACE(name);
        auto e = Engine::create(probe_options(policy, kRows));
        ASSERT_TRUE(e.ok()) << e.status().to_string();
        HostTensor out_rows;
        LayerObserver obs = [&](int64_t layer, const TensorView&, const KvLayer&, int64_t, const TensorView& out) {
            if (layer == 0) out_rows = host_copy(slice(out, 1, L - kRows, kRows));
            return Status();
        };
        ASSERT_TRUE((*e)->eval(ids, nullptr, &obs).ok());
        const KvLayer& kv = (*e)->cache().layer(0);
        double recall = 0;
        for (int64_t h = 0; h < nkv; ++h) {
            const int32_t* pos = kv.slot_pos.data<int32_t>() + h * kv.slot_pos.view().stride[0];
            for (int32_t s = 0; s < kv.n_slots.data<int32_t>()[h]; ++s) recall += probs.data<float>()[h * L + pos[s]];
        }
        recall /= static_cast<double>(nkv);
        HostTensor kept_last(DType::kF32, {nh, 1, d});
        ASSERT_TRUE(ref::decode_attention(DecodeAttentionParams{q_last, kv.k.view(), kv.v.view(), kv.slot_pos.view(),
                                                                kv.n_slots.view(), kept_last.view(), L - 1, 0.0f}).ok());
        const AttentionProbe& p = (*e)->attention().probe();
        ASSERT_EQ(static_cast<int64_t>(p.recall.size()), (*e)->config().n_layer);
        EXPECT_LT(recall, 0.999) << "the policy kept every position: the test would not cover a loss";
        EXPECT_NEAR(p.recall[0], recall, 1e-5);
        EXPECT_NEAR(p.prefill_error[0], rel_error(out_rows, ref_rows), 1e-5);
        EXPECT_NEAR(p.decode_error[0], rel_error(kept_last, ref_last), 1e-5);
        EXPECT_GT(p.decode_error[0], 1e-4);
        if (name == "tca") {
            EXPECT_GT(p.prefill_error[0], 1e-4) << "TCA's sparse prefill differs from dense";
        } else {
            EXPECT_LT(p.prefill_error[0], 1e-5) << "the baselines prefill densely";
        }
        for (size_t l = 0; l < p.recall.size(); ++l) {
            EXPECT_GT(p.recall[l], 0.0);
            EXPECT_LE(p.recall[l], 1.0 + 1e-6);
        }
    }
}

TEST_F(EngineTca, ProbeWithTensorParallelIsAUsageError) {
    EngineOptions opt = probe_options(AttentionPolicy{}, 8);
    opt.tensor_parallel = 2;
    auto e = Engine::create(opt);
    ASSERT_FALSE(e.ok());
    EXPECT_NE(e.status().message().find("--attn-stats"), std::string::npos) << e.status().message();
}

}  // namespace
}  // namespace tca
