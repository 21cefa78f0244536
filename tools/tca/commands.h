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

namespace tca::cli {

int cmd_bench(const std::vector<std::string>& args);
int cmd_calibrate(const std::vector<std::string>& args);
int cmd_run(const std::vector<std::string>& args);
int cmd_tokenize(const std::vector<std::string>& args);
int cmd_inspect(const std::vector<std::string>& args);

// Parses flags; returns the exit code when the command should stop here (a usage error: 2,
// --help printed: 0), or nullopt to go on.
std::optional<int> parse_flags(FlagSet& flags, const std::vector<std::string>& args);

// Shared flag helpers.
Result<DType> parse_kv_type(const std::string& name);
// --device cpu|cuda.
Result<Device> parse_device(const std::string& name);
// The prompt from -p TEXT or -f FILE (exactly one).
Result<std::string> read_prompt(const std::string& text, const std::string& file, bool text_given);

// Prints "tca: <message>" for an error status and maps it to an exit code (ok -> 0,
// usage -> 2, else 1).
int report_error(const Status& status);

}  // namespace tca::cli
