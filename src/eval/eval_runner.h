// The `tca eval` runner: for every context size, builds the items of every task once (with
// the model's tokenizer) and answers them with each attention policy in turn, so dense and
// every sparse policy see identical prompts. Answers are greedy, scored by string_match_all.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/eval_report.h"
#include "eval/eval_tasks.h"
#include "runtime/engine.h"

namespace tca {

struct EvalPolicy {
    std::string name;      // the label in the outputs: "dense", "tca", ...
    EngineOptions engine;  // model, threads, KV type and attention; ctx_size is set per context
};

struct EvalRunOptions {
    std::vector<EvalTask> tasks;
    std::vector<int64_t> ctxs;
    int64_t n_samples = 1;
    uint64_t seed = 0;
    int64_t answer_tokens = 0;  // 0: default_answer_tokens(task)
    bool bos = true;            // prepend BOS when the model expects it
    Haystack haystack;
};

// Runs every (ctx, policy, task, sample); on_record receives each answered item as soon as it
// is scored (items.jsonl is streamed from it). Returns the first error.
Status run_eval(const EvalRunOptions& opt, const std::vector<EvalPolicy>& policies,
                const std::function<Status(const EvalRecord&)>& on_record);

}  // namespace tca
