// TCA_ASSERT: our own invariants, always on (release too). A failed assertion is a bug in tca,
// never a reaction to bad input (that is a Status, see status.h).
#pragma once

namespace tca::detail {
[[noreturn]] void assert_fail(const char* file, int line, const char* cond, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
[[noreturn]] void assert_fail(const char* file, int line, const char* cond);
}  // namespace tca::detail

#define TCA_ASSERT(cond, ...)                                                      \
    do {                                                                           \
        if (__builtin_expect(!(cond), 0)) {                                        \
            ::tca::detail::assert_fail(__FILE__, __LINE__, #cond __VA_OPT__(, ) __VA_ARGS__); \
        }                                                                          \
    } while (0)
