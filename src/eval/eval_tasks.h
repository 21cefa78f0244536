// RULER-style synthetic long-context tasks for `tca eval` (docs/eval.md): needle retrieval
// (single, multi-key, multi-value, multi-query), variable tracking and common-words extraction.
// An item is a deterministic function of (seed, task, ctx, sample): every attention policy is
// scored on identical prompts. Prompts are fitted to the context with a token counter (the
// model's tokenizer in the runner, a stand-in in unit tests) so that prompt + answer <= ctx.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tca {

enum class EvalTask {
    kNiahSingleNumber,  // one needle, 7-digit number value
    kNiahSingleWord,    // one needle, word value (adjective-noun)
    kNiahSingleUuid,    // one needle, UUID value
    kNiahMultikey,      // 4 needles with distinct keys, one key asked
    kNiahMultivalue,    // 4 needles with the same key, all 4 values asked
    kNiahMultiquery,    // 4 needles with distinct keys, all 4 keys asked
    kVariableTracking,  // a chain of 5 variables assigned one value (4 hops), all names asked
    kCommonWords,       // numbered word list, the 10 most frequent words asked
};
constexpr int kNumEvalTasks = 8;

const char* eval_task_name(EvalTask task);
// A comma list of task names; "all" = every task, "niah_single" = its three value types.
// Unknown names, empty lists and duplicates are usage errors naming the value.
Result<std::vector<EvalTask>> parse_eval_tasks(const std::string& list);
// Greedy answer tokens generated per item when --max-answer-tokens is 0.
int64_t default_answer_tokens(EvalTask task);

// The text that fills the context around the needles: sentences taken in order from a file
// (from a seeded start, wrapping around), or generated filler sentences (the default, so the
// command works on a fresh machine).
struct Haystack {
    std::vector<std::string> sentences;
    bool from_file = false;
    std::string source;  // file path or "generated"
};
Haystack generated_haystack();
// Reads FILE, collapses whitespace and splits it into sentences (after . ! ? and a space).
Result<Haystack> load_haystack(const std::string& path);

struct EvalItem {
    EvalTask task = EvalTask::kNiahSingleNumber;
    int64_t ctx = 0;     // the context size the item was fitted to
    int64_t sample = 0;  // index in [0, n_samples)
    // Relative position in [0, 1] of the first (asked) needle or chain statement within the
    // context; negative for common words (no needle).
    double depth = -1.0;
    std::string prompt;                   // instruction + context + question + answer prefix
    std::vector<std::string> references;  // strings a correct answer contains
    int64_t n_prompt_tokens = 0;          // as counted by the generator's token counter
    int64_t n_answer_tokens = 0;          // tokens left for the answer: prompt + answer <= ctx
};

// Token count of a prompt exactly as the engine will see it (BOS included).
using TokenCounter = std::function<int64_t(std::string_view)>;

struct EvalItemSpec {
    EvalTask task = EvalTask::kNiahSingleNumber;
    int64_t ctx = 0;
    int64_t sample = 0;
    int64_t n_samples = 1;      // single-needle depths are spread evenly over the samples
    uint64_t seed = 0;
    int64_t answer_tokens = 0;  // 0: default_answer_tokens(task)
};

// Builds one item whose prompt has the most context that fits in ctx - answer tokens. Errors
// (kInvalidArgument) when even an empty context does not fit.
Result<EvalItem> make_eval_item(const EvalItemSpec& spec, const Haystack& haystack,
                                const TokenCounter& count_tokens);

// Training items (`tca eval --export-train`, tools/train) come from the same generators with
// seeds >= kTrainSeedBase; `tca eval` refuses those seeds, so no evaluation item is trained on
// (items are a hash of (seed, task, ctx, sample): distinct seeds give unrelated items).
inline constexpr uint64_t kTrainSeedBase = 1000000;

// The text a correct answer continues the prompt with: " VALUE." for one reference, " A, B, C
// and D." for several (the answer prefix of every task ends just before it).
std::string reference_answer_text(const EvalItem& item);

// Dense associative recall, the first stage of the training curriculum (issue 6): many needles
// "One of the special magic numbers for KEY is: VALUE." with unique keys and, interleaved, the
// eval's questions about keys seen so far, each answered with the eval's answer prefix and the
// value; no filler. The text ends with an answer.
struct AssocRecallSpec {
    uint64_t seed = kTrainSeedBase;
    int64_t sample = 0;
    int64_t n_tokens = 512;    // the text has at most this many tokens (BOS included)
    double query_rate = 0.35;  // chance that the next line is a question (once a needle exists)
};
struct AssocRecallItem {
    std::string text;
    // [begin, end) byte offsets in `text` of every answer (" VALUE."), in order; the last one
    // ends the text.
    std::vector<std::pair<size_t, size_t>> answer_spans;
    int64_t n_tokens = 0;  // as counted by the token counter
    int n_needles = 0;
};
// Errors when not even one needle and its question fit.
Result<AssocRecallItem> make_assoc_recall_item(const AssocRecallSpec& spec, const TokenCounter& count_tokens);

// FNV-1a 64-bit hash of a text, 16 hex digits (items.jsonl identifies prompts by it).
std::string fnv1a_hex(std::string_view text);

}  // namespace tca
