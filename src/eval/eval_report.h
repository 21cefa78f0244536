// Scoring and reporting for `tca eval` (docs/eval.md): RULER's string_match_all, the per
// (task, ctx, policy) summary, and the output files (items.jsonl lines, summary.json,
// summary.md, the accuracy-versus-KV-fraction chart).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/png_writer.h"
#include "eval/eval_tasks.h"

namespace tca {

// The fraction of references that occur in the prediction, case-insensitively (ASCII), in
// [0, 1]; 0 when there are no references. RULER's string_match_all, per item.
double string_match_all(std::string_view prediction, const std::vector<std::string>& references);

// One item answered by one policy (a line of items.jsonl).
struct EvalRecord {
    std::string task;
    int64_t ctx = 0;
    std::string policy;
    int64_t sample = 0;
    double depth = -1.0;  // negative: no needle (written as null)
    std::vector<std::string> references;
    std::string prediction;
    double score = 0.0;  // string_match_all
    int64_t n_prompt_tokens = 0;
    double kv_fraction = 1.0;  // KV bytes held after the prompt / dense KV bytes
    int64_t kv_bytes = 0;      // KV bytes held after the prompt
    double prefill_ms = 0.0;
    std::string prompt_hash;  // fnv1a_hex of the prompt: identical across policies
    // tca eval --attn-stats: per layer, attention fidelity against dense on the same inputs
    // (AttentionProbe, runtime/attention_runner.h); empty otherwise.
    std::vector<double> attn_recall, attn_prefill_error, attn_decode_error;
};
std::string record_json(const EvalRecord& r);  // one line, no newline

// The mean over the items of one (task, ctx, policy).
struct EvalSummaryRow {
    std::string task;
    int64_t ctx = 0;
    std::string policy;
    double accuracy = 0.0;     // mean score, in [0, 1]
    double kv_fraction = 0.0;  // mean kv_fraction
    int64_t n_samples = 0;
    // Paired difference with dense on the same items (accuracy - dense accuracy) and its 95%
    // bootstrap interval; has_delta is false for dense itself or when dense was not run.
    // A tagged label "P:TAG" (tca eval --tag) pairs with "dense:TAG", else with "dense".
    bool has_delta = false;
    double delta = 0.0, delta_lo = 0.0, delta_hi = 0.0;
    // --attn-stats: the per-layer means over the items (empty when any item lacks them).
    std::vector<double> attn_recall, attn_prefill_error, attn_decode_error;
};
// Rows in first-appearance order of task, then ctx, then policy. The bootstrap resamples
// items with a fixed seed (1000 resamples), so the summary is deterministic.
std::vector<EvalSummaryRow> summarize(const std::vector<EvalRecord>& records);

// The policy of a label: "tca" for "tca" and for "tca:tau0.9" (tca eval --tag); the tag is
// the rest after the first ':' (empty when there is none).
std::string_view label_policy(std::string_view label);
std::string_view label_tag(std::string_view label);

std::string summary_json(const std::vector<EvalSummaryRow>& rows, const std::string& model,
                         uint64_t seed, const std::string& haystack);
// The results table; with --attn-stats also the attention-fidelity table (per ctx and policy,
// averaged over tasks: recall and errors averaged over layers, then per layer).
std::string summary_markdown(const std::vector<EvalSummaryRow>& rows);

// Scatter chart: x = KV fraction, y = accuracy, both [0, 1] with a grid at 0.25 steps; one
// colour per policy, one mark shape per task (rows averaged over ctx), and a legend.
RgbImage render_accuracy_chart(const std::vector<EvalSummaryRow>& rows);

}  // namespace tca
