// Implementations of status.h, check.h, strings.h and log.h.
#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "core/check.h"
#include "core/log.h"
#include "core/status.h"
#include "core/strings.h"

namespace tca {

const char* status_code_name(StatusCode code) {
    switch (code) {
        case StatusCode::kOk: return "ok";
        case StatusCode::kInvalidArgument: return "invalid argument";
        case StatusCode::kUnsupported: return "unsupported";
        case StatusCode::kNotFound: return "not found";
        case StatusCode::kIoError: return "i/o error";
        case StatusCode::kDataLoss: return "malformed data";
        case StatusCode::kOutOfMemory: return "out of memory";
        case StatusCode::kUsage: return "usage";
        case StatusCode::kDeviceError: return "device error";
    }
    return "unknown";
}

std::string Status::to_string() const {
    if (ok()) return "ok";
    return std::string(status_code_name(code_)) + ": " + message_;
}

#define TCA_DEFINE_STATUS_CTOR(fn, code)              \
    Status fn(const char* fmt, ...) {                 \
        va_list args;                                 \
        va_start(args, fmt);                          \
        std::string msg = vstrformat(fmt, args);      \
        va_end(args);                                 \
        return Status(code, std::move(msg));          \
    }
TCA_DEFINE_STATUS_CTOR(invalid_argument, StatusCode::kInvalidArgument)
TCA_DEFINE_STATUS_CTOR(unsupported, StatusCode::kUnsupported)
TCA_DEFINE_STATUS_CTOR(not_found, StatusCode::kNotFound)
TCA_DEFINE_STATUS_CTOR(io_error, StatusCode::kIoError)
TCA_DEFINE_STATUS_CTOR(data_loss, StatusCode::kDataLoss)
TCA_DEFINE_STATUS_CTOR(out_of_memory, StatusCode::kOutOfMemory)
TCA_DEFINE_STATUS_CTOR(usage_error, StatusCode::kUsage)
TCA_DEFINE_STATUS_CTOR(device_error, StatusCode::kDeviceError)
#undef TCA_DEFINE_STATUS_CTOR

std::string vstrformat(const char* fmt, va_list args) {
    va_list copy;
    va_copy(copy, args);
    const int n = std::vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    if (n <= 0) return std::string();
    std::string out(static_cast<size_t>(n) + 1, '\0');
    std::vsnprintf(out.data(), out.size(), fmt, args);
    out.resize(static_cast<size_t>(n));
    return out;
}

std::string strformat(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string out = vstrformat(fmt, args);
    va_end(args);
    return out;
}

std::vector<std::string> split(std::string_view text, char sep) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
        const size_t end = text.find(sep, start);
        parts.emplace_back(text.substr(start, end == std::string_view::npos ? end : end - start));
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    return parts;
}

std::string format_bytes(uint64_t bytes) {
    static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024) return strformat("%llu B", static_cast<unsigned long long>(bytes));
    double v = static_cast<double>(bytes);
    int unit = 0;
    while (v >= 1024.0 && unit < 4) {
        v /= 1024.0;
        ++unit;
    }
    return strformat("%.2f %s", v, kUnits[unit]);
}

namespace {
std::atomic<int> g_log_level{static_cast<int>(LogLevel::kInfo)};
const char* level_tag(LogLevel level) {
    switch (level) {
        case LogLevel::kError: return "error";
        case LogLevel::kWarn: return "warn";
        case LogLevel::kInfo: return "info";
        case LogLevel::kDebug: return "debug";
    }
    return "?";
}
}  // namespace

void set_log_level(LogLevel level) { g_log_level.store(static_cast<int>(level)); }
LogLevel log_level() { return static_cast<LogLevel>(g_log_level.load()); }

void log_message(LogLevel level, const char* fmt, ...) {
    if (static_cast<int>(level) > g_log_level.load()) return;
    va_list args;
    va_start(args, fmt);
    std::string msg = vstrformat(fmt, args);
    va_end(args);
    std::fprintf(stderr, "tca %s: %s\n", level_tag(level), msg.c_str());
}

namespace detail {
void assert_fail(const char* file, int line, const char* cond, const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string msg = vstrformat(fmt, args);
    va_end(args);
    std::fprintf(stderr, "tca internal error: %s:%d: assertion `%s` failed: %s\n", file, line, cond,
                 msg.c_str());
    std::fflush(stderr);
    std::abort();
}
void assert_fail(const char* file, int line, const char* cond) {
    std::fprintf(stderr, "tca internal error: %s:%d: assertion `%s` failed\n", file, line, cond);
    std::fflush(stderr);
    std::abort();
}
}  // namespace detail

}  // namespace tca
