// The tca subcommands. Each takes its arguments (after the command name) and returns the
// process exit code: 0 ok, 1 runtime error (bad file, bad data), 2 usage error.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace tca::cli {

int cmd_bench(const std::vector<std::string>& args);

// Prints "tca: <message>" for an error status and maps it to an exit code (usage -> 2, else 1).
int report_error(const Status& status);

}  // namespace tca::cli
