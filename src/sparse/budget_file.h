// The budget file (tca-method M8 step 4): a JSON document with the model's identity, the TCA
// parameters and, for every (layer, KV head), the calibrated configuration p and what
// calibration measured for it. Written by `tca calibrate`, read by `--budget-file` loading.
// The format is documented field by field in docs/formats.md. Reading never trusts the file:
// every field is type- and range-checked and errors are one line naming the field and value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/model_weights.h"
#include "sparse/head_budgets.h"

namespace tca {

inline constexpr int kBudgetFileVersion = 1;

// Which model a budget file belongs to.
struct BudgetFileIdentity {
    std::string architecture;  // model_arch_name(): "llama", "mistral", "qwen2"
    int64_t n_layer = 0;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;
    int64_t head_dim = 0;
    int64_t n_vocab = 0;
    uint64_t weights_checksum = 0;  // weights_checksum() of the calibrated weights
};

// What calibration measured for one (layer, KV head); the configuration itself is in
// ModelBudgets::heads.
struct HeadBudgetRecord {
    double kept_fraction = 1.0;  // expected_keep_fraction(p)
    int32_t decode_budget = 0;   // t = decode_budget(p) (M7)
    double retained_mass = 1.0;  // a(p) achieved on the calibration text (M8 step 2)
    bool dense = false;          // no candidate reached tau: the head stays dense
    int candidate = -1;          // index of the chosen candidate, -1 when dense
};

// The calibration run the file came from.
struct CalibrationSummary {
    int64_t n_tokens = 0;       // tokens of the calibration text used (L)
    int64_t n_query_rows = 0;   // sampled queries of the sparse regime per head (N_q)
    int64_t row_stride = 1;
    int n_candidates = 14;      // M
    std::string text;           // where the text came from (a file name), informational
    std::string statistic = "total";  // what a(p) measured: "total" or "far" (calibration.h)
    double min_keep = 0.0;      // budget floor of the candidates (calibration.h)
};

struct BudgetFile {
    int format_version = kBudgetFileVersion;
    BudgetFileIdentity identity;
    ModelBudgets budgets;  // options (b, w, alpha, mass_norm, obs_window, tau) + p per head
    CalibrationSummary calibration;
    std::vector<std::vector<HeadBudgetRecord>> records;  // [n_layer][n_head_kv]
};
using LoadedBudgets = BudgetFile;

// 64-bit FNV-1a over, for each weight in a fixed order (token_embd, output_norm, output when
// not tied, rope_freqs when present, then per layer attn_norm, attn_q, attn_k, attn_v,
// attn_output, the q/k/v biases when present, ffn_norm, ffn_gate, ffn_up, ffn_down): the
// name, the ggml type id (u32 LE), ndim and every dim (i64 LE), the byte size (u64 LE), and a
// bounded sample of the bytes: all of them up to 64 KiB, else 16 windows of 4 KiB at offsets
// floor(i * (n_bytes - 4096) / 15), i = 0..15 (first and last 4 KiB included). At most 64 KiB
// read per tensor, so a multi-GB model hashes in milliseconds.
uint64_t weights_checksum(const ModelWeights& weights);
BudgetFileIdentity model_identity(const ModelWeights& weights);

// The JSON text (2-space indent, deterministic: same input, same bytes).
std::string budget_file_json(const BudgetFile& file);
Status write_budget_file(const std::string& path, const BudgetFile& file);
// Parses and validates JSON text; `source` names it in messages (usually the path).
Result<BudgetFile> parse_budget_file(const std::string& text, const std::string& source);
Result<BudgetFile> read_budget_file(const std::string& path);

// The file's identity against a model's: the first differing field, e.g. "budget file is for
// another model: n_layer is 32 in the file, 5 in the model".
Status check_identity(const BudgetFileIdentity& file, const BudgetFileIdentity& model);
Status check_budgets_for_model(const BudgetFileIdentity& file, const ModelWeights& weights);

}  // namespace tca
