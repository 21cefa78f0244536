// Command-line flags: each subcommand declares its flags (name, value name, default, help),
// parses argv into typed values, and prints --help listing every flag with its default.
// Bad flags are usage errors (Status kUsage, exit code 2) naming the flag and the value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace tca {

class FlagSet {
public:
    FlagSet(std::string command, std::string summary);

    // Declare flags; `dst` holds the default and receives the parsed value.
    void add_string(const std::string& name, std::string* dst, const std::string& value_name,
                    const std::string& help);
    void add_int(const std::string& name, int64_t* dst, const std::string& help);
    void add_double(const std::string& name, double* dst, const std::string& help);
    void add_bool(const std::string& name, bool* dst, const std::string& help);  // --x / --no-x
    // Comma-separated integers, e.g. --lengths 8192,16384 (k/K suffix = 1024).
    void add_int_list(const std::string& name, std::vector<int64_t>* dst, const std::string& help);
    // A short alias such as -m for --model.
    void add_alias(const std::string& alias, const std::string& name);

    // Parses args (not including the program and command names). Sets *help when --help/-h.
    Status parse(const std::vector<std::string>& args, bool* help);
    std::string usage() const;
    // True when the flag was given on the command line.
    bool given(const std::string& name) const;

private:
    enum class Kind { kString, kInt, kDouble, kBool, kIntList };
    struct Flag {
        std::string name;
        Kind kind;
        void* dst;
        std::string value_name;
        std::string help;
        std::string default_text;
        bool given = false;
    };
    Flag* find(const std::string& name);
    const Flag* find(const std::string& name) const;
    Status set_value(Flag& f, const std::string& value);

    std::string command_;
    std::string summary_;
    std::vector<Flag> flags_;
    std::vector<std::pair<std::string, std::string>> aliases_;
};

// Integer with optional k/K (x1024) or m/M (x1048576) suffix; usage error naming `what`.
Result<int64_t> parse_int_flag(const std::string& text, const std::string& what);

}  // namespace tca
