// FlagSet implementation (flags.h).
#include "core/flags.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/strings.h"

namespace tca {

FlagSet::FlagSet(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void FlagSet::add_string(const std::string& name, std::string* dst, const std::string& value_name,
                         const std::string& help) {
    flags_.push_back({name, Kind::kString, dst, value_name, help,
                      dst->empty() ? std::string() : "\"" + *dst + "\""});
}
void FlagSet::add_int(const std::string& name, int64_t* dst, const std::string& help) {
    flags_.push_back({name, Kind::kInt, dst, "N", help, std::to_string(*dst)});
}
void FlagSet::add_double(const std::string& name, double* dst, const std::string& help) {
    flags_.push_back({name, Kind::kDouble, dst, "X", help, strformat("%g", *dst)});
}
void FlagSet::add_bool(const std::string& name, bool* dst, const std::string& help) {
    flags_.push_back({name, Kind::kBool, dst, "", help, *dst ? "on" : "off"});
}
void FlagSet::add_int_list(const std::string& name, std::vector<int64_t>* dst,
                           const std::string& help) {
    std::string def;
    for (size_t i = 0; i < dst->size(); ++i) def += (i ? "," : "") + std::to_string((*dst)[i]);
    flags_.push_back({name, Kind::kIntList, dst, "N,N,...", help, def});
}
void FlagSet::add_alias(const std::string& alias, const std::string& name) {
    aliases_.emplace_back(alias, name);
}

FlagSet::Flag* FlagSet::find(const std::string& name) {
    for (auto& f : flags_) {
        if (f.name == name) return &f;
    }
    return nullptr;
}
const FlagSet::Flag* FlagSet::find(const std::string& name) const {
    for (const auto& f : flags_) {
        if (f.name == name) return &f;
    }
    return nullptr;
}

bool FlagSet::given(const std::string& name) const {
    const Flag* f = find(name);
    return f && f->given;
}

Result<int64_t> parse_int_flag(const std::string& text, const std::string& what) {
    if (text.empty()) return usage_error("%s expects an integer, got ''", what.c_str());
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(text.c_str(), &end, 10);
    int64_t mult = 1;
    if (end && (*end == 'k' || *end == 'K')) {
        mult = 1024;
        ++end;
    } else if (end && (*end == 'm' || *end == 'M')) {
        mult = 1024 * 1024;
        ++end;
    }
    if (errno != 0 || end == text.c_str() || *end != '\0') {
        return usage_error("%s expects an integer, got '%s'", what.c_str(), text.c_str());
    }
    if (v > INT64_MAX / mult || v < INT64_MIN / mult) {
        return usage_error("%s: value '%s' is out of range", what.c_str(), text.c_str());
    }
    return static_cast<int64_t>(v) * mult;
}

Status FlagSet::set_value(Flag& f, const std::string& value) {
    const std::string what = "--" + f.name;
    switch (f.kind) {
        case Kind::kString:
            *static_cast<std::string*>(f.dst) = value;
            break;
        case Kind::kInt: {
            TCA_ASSIGN_OR_RETURN(*static_cast<int64_t*>(f.dst), parse_int_flag(value, what));
            break;
        }
        case Kind::kDouble: {
            errno = 0;
            char* end = nullptr;
            const double v = std::strtod(value.c_str(), &end);
            if (value.empty() || errno != 0 || *end != '\0' || !std::isfinite(v)) {
                return usage_error("%s expects a number, got '%s'", what.c_str(), value.c_str());
            }
            *static_cast<double*>(f.dst) = v;
            break;
        }
        case Kind::kIntList: {
            auto* out = static_cast<std::vector<int64_t>*>(f.dst);
            out->clear();
            for (const std::string& part : split(value, ',')) {
                TCA_ASSIGN_OR_RETURN(int64_t v, parse_int_flag(part, what));
                out->push_back(v);
            }
            break;
        }
        case Kind::kBool:
            break;
    }
    return Status();
}

Status FlagSet::parse(const std::vector<std::string>& args, bool* help) {
    *help = false;
    for (size_t i = 0; i < args.size(); ++i) {
        std::string arg = args[i];
        if (arg == "--help" || arg == "-h") {
            *help = true;
            return Status();
        }
        for (const auto& [alias, name] : aliases_) {
            if (arg == alias) arg = "--" + name;
        }
        if (arg.rfind("--", 0) != 0) {
            return usage_error("%s: unexpected argument '%s'", command_.c_str(), arg.c_str());
        }
        std::string name = arg.substr(2), value;
        bool has_value = false;
        if (const size_t eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
            has_value = true;
        }
        Flag* f = find(name);
        if (!f && name.rfind("no-", 0) == 0) {
            Flag* neg = find(name.substr(3));
            if (neg && neg->kind == Kind::kBool && !has_value) {
                *static_cast<bool*>(neg->dst) = false;
                neg->given = true;
                continue;
            }
        }
        if (!f) {
            return usage_error("%s: unknown flag '--%s' (see %s --help)", command_.c_str(),
                               name.c_str(), command_.c_str());
        }
        f->given = true;
        if (f->kind == Kind::kBool) {
            if (has_value) {
                if (value != "true" && value != "false" && value != "1" && value != "0") {
                    return usage_error("--%s expects true or false, got '%s'", name.c_str(),
                                       value.c_str());
                }
                *static_cast<bool*>(f->dst) = (value == "true" || value == "1");
            } else {
                *static_cast<bool*>(f->dst) = true;
            }
            continue;
        }
        if (!has_value) {
            if (i + 1 >= args.size()) {
                return usage_error("--%s needs a value (%s)", name.c_str(), f->value_name.c_str());
            }
            value = args[++i];
        }
        TCA_RETURN_IF_ERROR(set_value(*f, value));
    }
    return Status();
}

std::string FlagSet::usage() const {
    std::string out = "usage: " + command_ + " [options]\n" + summary_ + "\n\noptions:\n";
    for (const auto& f : flags_) {
        std::string left = "  ";
        for (const auto& [alias, name] : aliases_) {
            if (name == f.name) left += alias + ", ";
        }
        left += "--" + f.name;
        if (f.kind != Kind::kBool) left += " " + f.value_name;
        if (left.size() < 30) left.resize(30, ' ');
        else left += "  ";
        out += left + f.help;
        if (!f.default_text.empty()) out += " (default: " + f.default_text + ")";
        out += "\n";
    }
    out += "  -h, --help                  show this help\n";
    return out;
}

}  // namespace tca
