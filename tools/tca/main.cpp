// tca command-line entry point: a thin dispatcher over subcommands (no math here).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.h"
#include "core/log.h"

namespace {

struct Command {
    const char* name;
    const char* summary;
    int (*fn)(const std::vector<std::string>&);
};

const Command kCommands[] = {
    {"run", "generate text from a prompt with a model (GGUF or safetensors)", tca::cli::cmd_run},
    {"tokenize", "print the token ids of a text", tca::cli::cmd_tokenize},
    {"inspect", "describe a model file: shapes, tensor types, tokenizer, memory", tca::cli::cmd_inspect},
    {"calibrate", "offline calibration: per-head budgets from one dense pass over a text", tca::cli::cmd_calibrate},
    {"convert", "convert a Hugging Face folder (safetensors + tokenizer.json) to one GGUF file", tca::cli::cmd_convert},
    {"eval", "RULER-style long-context evaluation of attention policies on identical items", tca::cli::cmd_eval},
    {"bench", "benchmarks (bench attention: dense vs TCA attention on this CPU)", tca::cli::cmd_bench},
};

void print_usage(std::FILE* out) {
    std::fprintf(out,
                 "tca: long-context LLM inference with TCA-Attention (training-free, "
                 "context-adaptive sparse attention)\n\nusage: tca <command> [options]\n\n"
                 "commands:\n");
    for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
    std::fprintf(out, "\n'tca <command> --help' lists each command's options and defaults.\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const std::string cmd = argv[1];
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
        print_usage(stdout);
        return 0;
    }
    if (cmd == "--version") {
        std::printf("tca 0.1.0\n");
        return 0;
    }
    std::vector<std::string> args(argv + 2, argv + argc);
    for (const auto& c : kCommands) {
        if (cmd == c.name) return c.fn(args);
    }
    std::fprintf(stderr, "tca: unknown command '%s' (see tca --help)\n", cmd.c_str());
    return 2;
}
