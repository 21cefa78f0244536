// Tensor parallelism on 2 GPUs (issue 7): stories260K sharded over GPUs 0 and 1 (one rank per
// thread, Model::create_shard, NCCL all-reduce on each device's stream) against the unsharded
// model on GPU 0, for dense and tca: prompt logits within bf16 tolerance, greedy continuations
// equal. Skipped with fewer than 2 GPUs or without NCCL. Drives Model / RunState / KvCache /
// AttentionRunner directly (no Engine: the GPU machine has no ICU for the tokenizer).
#include <gtest/gtest.h>

#include <cstdlib>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backend/communicator.h"
#include "backend/device_memory.h"
#include "runtime/model.h"
#include "sparse/attention_policy.h"
#include "sparse/head_budgets.h"
#include "cuda/cuda_test_common.h"

namespace tca {
namespace {

// Both sides run bf16 tensor-core attention over a bf16 cache; TP=2 adds the per-rank partial
// sums of the output and down projections in another order (f32, ~1e-6 relative) and cuBLAS
// picks its own kernels for the narrower shard matrices: errors of order the bf16 unit roundoff
// per layer (docs/numerics.md "CUDA"), ~1% of the row's logit range for 5 layers; 2% leaves
// margin while a wrong shard or a missing all-reduce errs by ~100%.
constexpr double kRelTol = 0.02;

struct Rank {
    std::unique_ptr<Model> model;
    std::unique_ptr<RunState> state;
    KvCache cache;
    std::unique_ptr<AttentionRunner> attention;
};

Status make_rank(const std::shared_ptr<const ModelWeights>& w, int r, int n, bool tca, int64_t ctx, Rank& out) {
    TCA_RETURN_IF_ERROR(select_device(Device::kCuda, r));
    TCA_ASSIGN_OR_RETURN(const MemorySpace* space, memory_space(Device::kCuda));
    TCA_ASSIGN_OR_RETURN(out.model, Model::create_shard(w, *space, TensorShard{r, n}));
    const ModelConfig& c = out.model->config();
    TCA_ASSIGN_OR_RETURN(out.cache, KvCache::create(c.n_layer, c.n_head_kv, ctx, c.head_dim, DType::kBF16, 0, *space));
    const AttentionPolicy policy = test::small_test_policy(tca, w->config.n_layer, w->config.n_head_kv);
    TCA_ASSIGN_OR_RETURN(out.attention, AttentionRunner::create(policy, c.n_head, c.n_head_kv, c.head_dim, ctx,
                                                                DType::kBF16, *space, r * c.n_head_kv));
    TCA_ASSIGN_OR_RETURN(out.state, RunState::create(c, ctx, true, *space));
    return Status();
}

std::vector<float> logits_rows(const Rank& r, int64_t n) {
    const TensorView rows = slice(r.state->logits.view(), 0, 0, n);
    Result<HostTensor> h = to_host(rows, r.state->logits.space());
    EXPECT_TRUE(h.ok()) << h.status().to_string();
    if (!h.ok()) return {};
    return std::vector<float>(h.value().data<float>(), h.value().data<float>() + h.value().numel());
}

struct Trace {
    std::vector<float> prompt_logits;
    std::vector<int32_t> tokens;
};

// Prompt then n_gen greedy tokens on every rank (one thread per rank; comms empty: one rank).
Trace run(std::vector<Rank>& ranks, std::vector<std::unique_ptr<Communicator>>& comms,
          const std::vector<int32_t>& prompt, int n_gen) {
    Trace t;
    const int64_t V = ranks[0].model->weights().config.n_vocab;
    const auto n = static_cast<int64_t>(prompt.size());
    auto step = [&](std::span<const int32_t> ids, int64_t pos0, bool prompt_end) {
        std::vector<Status> st(ranks.size());
        std::vector<std::thread> threads;
        for (size_t r = 0; r < ranks.size(); ++r) {
            threads.emplace_back([&, r] {
                Status s = select_device(Device::kCuda, static_cast<int>(r));
                Rank& k = ranks[r];
                if (s.ok()) {
                    s = forward(Device::kCuda, *k.model, *k.state, k.cache, *k.attention, ids, pos0, prompt_end,
                                nullptr, comms.empty() ? nullptr : comms[r].get());
                }
                if (s.ok()) s = synchronize(Device::kCuda);
                st[r] = s;
            });
        }
        for (std::thread& th : threads) th.join();
        for (const Status& s : st) EXPECT_TRUE(s.ok()) << s.to_string();
        EXPECT_TRUE(select_device(Device::kCuda, 0).ok());
    };
    step(prompt, 0, true);
    t.prompt_logits = logits_rows(ranks[0], n);
    std::vector<float> last(t.prompt_logits.end() - V, t.prompt_logits.end());
    for (int i = 0; i < n_gen; ++i) {
        const auto id = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
        t.tokens.push_back(id);
        const int32_t one[1] = {id};
        step(one, n + i, false);
        last = logits_rows(ranks[0], 1);
    }
    return t;
}

void compare(bool tca) {
    if (!memory_space(Device::kCuda).ok()) GTEST_SKIP() << "no CUDA device";
    std::vector<std::unique_ptr<Communicator>> comms;
    {
        auto c = create_nccl_communicators(2);
        if (!c.ok()) GTEST_SKIP() << c.status().message();
        comms = std::move(c.value());
    }
    const std::string path = test::models_dir() + "stories260K.gguf";
    auto w = load_model(path);
    if (!w.ok()) GTEST_SKIP() << path << ": " << w.status().message();
    auto shared = std::make_shared<const ModelWeights>(std::move(w.value()));
    const int64_t ctx = 256;
    std::vector<Rank> one(1), two(2);
    ASSERT_TRUE(make_rank(shared, 0, 1, tca, ctx, one[0]).ok());
    for (int r = 0; r < 2; ++r) ASSERT_TRUE(make_rank(shared, r, 2, tca, ctx, two[static_cast<size_t>(r)]).ok());
    std::vector<int32_t> prompt{1};
    uint32_t x = 12345;
    while (prompt.size() < 160) {
        x = x * 1664525u + 1013904223u;
        prompt.push_back(static_cast<int32_t>(3 + (x >> 8) % 500u));
    }
    std::vector<std::unique_ptr<Communicator>> none;
    const Trace a = run(one, none, prompt, 16), b = run(two, comms, prompt, 16);
    ASSERT_EQ(a.prompt_logits.size(), b.prompt_logits.size());
    const size_t V = static_cast<size_t>(shared->config.n_vocab);
    for (size_t row = 0; row < a.prompt_logits.size() / V; ++row) {
        double scale = 0.0, worst = 0.0;
        for (size_t i = row * V; i < (row + 1) * V; ++i) {
            scale = std::max(scale, std::fabs(static_cast<double>(a.prompt_logits[i])));
            worst = std::max(worst, std::fabs(static_cast<double>(a.prompt_logits[i]) - b.prompt_logits[i]));
        }
        ASSERT_LE(worst, kRelTol * scale) << "row " << row;
    }
    EXPECT_EQ(a.tokens, b.tokens);
}

TEST(TensorParallelCuda, DenseTwoGpusMatchOne) { compare(false); }
TEST(TensorParallelCuda, TcaTwoGpusMatchOne) { compare(true); }

}  // namespace
}  // namespace tca
