// Helpers shared by the subcommands (commands.h): error reporting and common flags.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "commands.h"

namespace tca::cli {

std::optional<int> parse_flags(FlagSet& flags, const std::vector<std::string>& args) {
    bool help = false;
    if (Status s = flags.parse(args, &help); !s.ok()) return report_error(s);
    if (help) {
        std::printf("%s", flags.usage().c_str());
        return 0;
    }
    return std::nullopt;
}

int report_error(const Status& status) {
    if (status.ok()) return 0;
    std::fprintf(stderr, "tca: %s\n", status.message().c_str());
    return status.code() == StatusCode::kUsage ? 2 : 1;
}

Result<DType> parse_kv_type(const std::string& name) {
    if (name == "f32") return DType::kF32;
    if (name == "f16") return DType::kF16;
    if (name == "bf16") return DType::kBF16;
    return usage_error("--kv-type must be f32, f16 or bf16, got '%s'", name.c_str());
}

Result<Device> parse_device(const std::string& name) {
    if (name == "cpu") return Device::kCpu;
    if (name == "cuda") return Device::kCuda;
    return usage_error("--device must be cpu or cuda, got '%s'", name.c_str());
}

Result<std::string> read_prompt(const std::string& text, const std::string& file, bool text_given) {
    if (text_given == !file.empty()) {
        return usage_error("give the prompt with exactly one of -p TEXT or -f FILE");
    }
    if (text_given) return text;
    std::ifstream in(file, std::ios::binary);
    if (!in) return not_found("cannot read prompt file %s", file.c_str());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace tca::cli
