// The tca subcommands. Each takes its arguments (after the command name) and returns the
// process exit code: 0 ok, 1 runtime error (bad file, bad data), 2 usage error.
#pragma once

#include <string>
#include <vector>

#include <optional>

#include "backend/ops.h"
#include "core/dtype.h"
#include "core/flags.h"
#include "core/status.h"
#include "sparse/attention_policy.h"

namespace tca::cli {

int cmd_bench(const std::vector<std::string>& args);
int cmd_calibrate(const std::vector<std::string>& args);
int cmd_convert(const std::vector<std::string>& args);
int cmd_eval(const std::vector<std::string>& args);
int cmd_run(const std::vector<std::string>& args);
int cmd_tokenize(const std::vector<std::string>& args);
int cmd_inspect(const std::vector<std::string>& args);

// Parses flags; returns the exit code when the command should stop here (a usage error: 2,
// --help printed: 0), or nullopt to go on.
std::optional<int> parse_flags(FlagSet& flags, const std::vector<std::string>& args);

// Shared flag helpers.
Result<DType> parse_kv_type(const std::string& name);
// --kv-type left empty (unset): nullopt, the engine's per-device default (f32 on cpu, bf16 on
// cuda); else parse_kv_type's value.
Result<std::optional<DType>> parse_optional_kv_type(const std::string& name);
// The help text of --kv-type for commands whose default follows --device.
inline constexpr const char* kKvTypeHelp =
    "KV cache storage: f32, f16 or bf16 (unset: f32 on cpu, bf16 on cuda)";
// --device cpu|cuda.
Result<Device> parse_device(const std::string& name);
// --select (run, eval, calibrate): block or global (SparseOptions::selection); else a usage error.
Result<Selection> parse_select_flag(const std::string& name);
// -m left empty: $TCA_MODEL if set, else the model that ships with the project
// (kShippedModel in the source tree); a usage error when neither exists.
inline constexpr const char* kShippedModel = "models/tca-long-14m.q8_0.gguf";
Result<std::string> model_or_default(const std::string& model);
// The help text of -m for commands with that default.
inline constexpr const char* kModelHelp =
    "model: GGUF file, .safetensors file or HF directory (default: $TCA_MODEL, else the shipped "
    "models/tca-long-14m.q8_0.gguf)";
// The prompt from -p TEXT or -f FILE (exactly one).
Result<std::string> read_prompt(const std::string& text, const std::string& file, bool text_given);

// The attention policy options shared by `tca run` and `tca eval` (--budget-file, --keep,
// --block-size, --local-window, --alpha, --mass-norm, --kv-budget, --n-sink, --obs-window).
struct PolicyFlags {
    std::string budget_file, mass_norm = "max";
    int64_t block_size = 128, local_window = 4096, kv_budget = 1024, n_sink = 4, obs_window = 32,
            pool = 0;
    std::string selection = "block";
    double keep = 0.2, alpha = 0.5, min_prefill_gain = 1.3;
};
void add_policy_flags(FlagSet& flags, PolicyFlags* f);
// The policy named `attention` (dense, tca, streaming, snapkv, oracle) with the options of
// `f` (--keep for tca; a --budget-file is applied by the engine). Bad values are usage errors.
Result<AttentionPolicy> policy_from_flags(const std::string& attention, const PolicyFlags& f);

// Prints "tca: <message>" for an error status and maps it to an exit code (ok -> 0,
// usage -> 2, else 1).
int report_error(const Status& status);

}  // namespace tca::cli
