// Status and Result<T>: how the outside world being wrong is reported (bad files, bad arguments,
// unsupported shapes, no memory). Our own bugs use TCA_ASSERT instead (check.h).
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "core/check.h"

namespace tca {

enum class StatusCode {
    kOk = 0,
    kInvalidArgument,  // a parameter or flag has a bad value
    kUnsupported,      // valid but not implemented (shape, dtype, architecture)
    kNotFound,         // missing file, tensor or key
    kIoError,          // read/write failure
    kDataLoss,         // malformed or truncated file
    kOutOfMemory,      // allocation failed or would exceed a limit
    kUsage,            // command-line usage error (exit code 2)
    kDeviceError,      // an accelerator call failed (driver, launch, kernel fault)
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
public:
    Status() = default;
    Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

    static Status ok_status() { return Status(); }

    bool ok() const { return code_ == StatusCode::kOk; }
    StatusCode code() const { return code_; }
    const std::string& message() const { return message_; }
    // "invalid argument: block_size must be a power of two, got 100"
    std::string to_string() const;

private:
    StatusCode code_ = StatusCode::kOk;
    std::string message_;
};

// printf-style constructors: the message names the thing and the value.
Status invalid_argument(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
Status unsupported(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
Status not_found(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
Status io_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
Status data_loss(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
Status out_of_memory(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
Status usage_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
Status device_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
    Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
        TCA_ASSERT(!status_.ok(), "Result constructed from an OK status without a value");
    }

    bool ok() const { return status_.ok(); }
    const Status& status() const { return status_; }
    T& value() & {
        TCA_ASSERT(ok(), "Result::value() on error: %s", status_.to_string().c_str());
        return *value_;
    }
    const T& value() const& {
        TCA_ASSERT(ok(), "Result::value() on error: %s", status_.to_string().c_str());
        return *value_;
    }
    T&& value() && {
        TCA_ASSERT(ok(), "Result::value() on error: %s", status_.to_string().c_str());
        return std::move(*value_);
    }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

private:
    Status status_;
    std::optional<T> value_;
};

}  // namespace tca

#define TCA_CONCAT_INNER(a, b) a##b
#define TCA_CONCAT(a, b) TCA_CONCAT_INNER(a, b)

// Return the Status of `expr` from the enclosing function when it is an error.
#define TCA_RETURN_IF_ERROR(expr)                 \
    do {                                          \
        ::tca::Status tca_status_ = (expr);       \
        if (!tca_status_.ok()) return tca_status_; \
    } while (0)

// `TCA_ASSIGN_OR_RETURN(auto x, make_x());` unwraps a Result or returns its Status.
#define TCA_ASSIGN_OR_RETURN(lhs, expr) \
    TCA_ASSIGN_OR_RETURN_IMPL(TCA_CONCAT(tca_result_, __LINE__), lhs, expr)
#define TCA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
    auto tmp = (expr);                            \
    if (!tmp.ok()) return tmp.status();           \
    lhs = std::move(tmp).value()
