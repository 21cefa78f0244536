// The `tca eval` runner (eval_runner.h): one Engine per (ctx, policy), items built once per
// ctx, the KV fraction read from the engine's stats right after the prompt.
#include "eval/eval_runner.h"

#include <chrono>

#include "core/log.h"
#include "core/progress.h"
#include "sampling/sampler.h"

namespace tca {

namespace {

struct PreparedItem {
    EvalItem item;
    std::vector<int32_t> ids;
    std::string hash;
};

Result<std::vector<PreparedItem>> prepare_items(const EvalRunOptions& opt, int64_t ctx,
                                                const Tokenizer& tok) {
    const bool add_bos = opt.bos && tok.add_bos_default();
    const TokenCounter count = [&](std::string_view text) {
        return static_cast<int64_t>(tok.encode(text, add_bos, false).size());
    };
    std::vector<PreparedItem> items;
    for (EvalTask task : opt.tasks) {
        for (int64_t s = 0; s < opt.n_samples; ++s) {
            EvalItemSpec spec;
            spec.task = task;
            spec.ctx = ctx;
            spec.sample = s;
            spec.n_samples = opt.n_samples;
            spec.seed = opt.seed;
            spec.answer_tokens = opt.answer_tokens;
            TCA_ASSIGN_OR_RETURN(EvalItem item, make_eval_item(spec, opt.haystack, count));
            PreparedItem p;
            p.ids = tok.encode(item.prompt, add_bos, false);
            p.hash = fnv1a_hex(item.prompt);
            p.item = std::move(item);
            items.push_back(std::move(p));
        }
    }
    return items;
}

Result<EvalRecord> answer(Engine& engine, const PreparedItem& p, const std::string& policy) {
    engine.reset();
    const EngineStats before = engine.stats();
    TCA_RETURN_IF_ERROR(engine.eval(p.ids, nullptr));
    const EngineStats after = engine.stats();
    EvalRecord r;
    r.task = eval_task_name(p.item.task);
    r.ctx = p.item.ctx;
    r.policy = policy;
    r.sample = p.item.sample;
    r.depth = p.item.depth;
    r.references = p.item.references;
    r.n_prompt_tokens = static_cast<int64_t>(p.ids.size());
    r.kv_fraction = after.kv_bytes_dense > 0 ? static_cast<double>(after.kv_bytes) /
                                                   static_cast<double>(after.kv_bytes_dense)
                                             : 1.0;
    r.kv_bytes = static_cast<int64_t>(after.kv_bytes);
    r.prefill_ms = after.prefill_ms - before.prefill_ms;
    r.prompt_hash = p.hash;
    const AttentionProbe& probe = engine.attention().probe();
    if (probe.rows > 0) {
        r.attn_recall = probe.recall;
        r.attn_prefill_error = probe.prefill_error;
        r.attn_decode_error = probe.decode_error;
    }
    Sampler greedy(SamplerOptions{}, engine.config().n_vocab);
    std::vector<int32_t> out;
    TCA_RETURN_IF_ERROR(engine.generate(p.item.n_answer_tokens, greedy, [&](int32_t id) {
        out.push_back(id);
        return true;
    }));
    TCA_ASSIGN_OR_RETURN(r.prediction, engine.tokenizer().decode(out));
    r.score = string_match_all(r.prediction, r.references);
    return r;
}

}  // namespace

Status run_eval(const EvalRunOptions& opt, const std::vector<EvalPolicy>& policies,
                const std::function<Status(const EvalRecord&)>& on_record) {
    TCA_ASSERT(!policies.empty() && !opt.tasks.empty() && !opt.ctxs.empty() && opt.n_samples >= 1,
               "empty evaluation");
    const auto total = static_cast<int64_t>(opt.ctxs.size() * policies.size() * opt.tasks.size()) *
                       opt.n_samples;
    Progress progress("eval", total, 1.0);
    int64_t done = 0;
    for (int64_t ctx : opt.ctxs) {
        std::vector<PreparedItem> items;
        for (const EvalPolicy& policy : policies) {
            EngineOptions eo = policy.engine;
            eo.ctx_size = ctx;
            TCA_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::create(eo));
            if (items.empty()) {
                const auto t0 = std::chrono::steady_clock::now();
                TCA_ASSIGN_OR_RETURN(items, prepare_items(opt, ctx, engine->tokenizer()));
                TCA_LOG_INFO("ctx %lld: %zu items built in %.1f s (haystack: %s)",
                             static_cast<long long>(ctx), items.size(),
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                             opt.haystack.source.c_str());
            }
            const auto t0 = std::chrono::steady_clock::now();
            double sum_score = 0, sum_kv = 0;
            for (const PreparedItem& p : items) {
                TCA_ASSIGN_OR_RETURN(EvalRecord r, answer(*engine, p, policy.name));
                sum_score += r.score;
                sum_kv += r.kv_fraction;
                TCA_RETURN_IF_ERROR(on_record(r));
                progress.update(++done);
            }
            const auto n = static_cast<double>(items.size());
            TCA_LOG_INFO("ctx %lld %s: mean accuracy %.3f, kv fraction %.3f, %zu items in %.1f s",
                         static_cast<long long>(ctx), policy.name.c_str(), sum_score / n, sum_kv / n,
                         items.size(),
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
    }
    progress.done();
    return Status();
}

}  // namespace tca
