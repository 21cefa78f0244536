// Small string helpers shared by messages, logs and the CLI.
#pragma once

#include <cstdarg>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tca {

std::string strformat(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string vstrformat(const char* fmt, va_list args);

std::vector<std::string> split(std::string_view text, char sep);
// "1.50 GiB", "12.0 KiB", "17 B"
std::string format_bytes(uint64_t bytes);

}  // namespace tca
