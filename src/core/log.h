// Logging to stderr. Levels: error < warn < info < debug; the CLI sets the level (--verbose).
#pragma once

namespace tca {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_message(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace tca

#define TCA_LOG_ERROR(...) ::tca::log_message(::tca::LogLevel::kError, __VA_ARGS__)
#define TCA_LOG_WARN(...) ::tca::log_message(::tca::LogLevel::kWarn, __VA_ARGS__)
#define TCA_LOG_INFO(...) ::tca::log_message(::tca::LogLevel::kInfo, __VA_ARGS__)
#define TCA_LOG_DEBUG(...) ::tca::log_message(::tca::LogLevel::kDebug, __VA_ARGS__)
