// Progress implementation (progress.h).
#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace tca {

Progress::Progress(std::string what, int64_t total, double delay_s)
    : what_(std::move(what)), total_(total), delay_s_(delay_s), tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

Progress::~Progress() { done(); }

void Progress::update(int64_t n) {
    if (!tty_) return;
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    if (elapsed < delay_s_ || std::chrono::duration<double>(now - last_).count() < 0.2) return;
    last_ = now;
    shown_ = true;
    std::fprintf(stderr, "\r%s: %lld/%lld (%.0f%%, %.1f/s)   ", what_.c_str(),
                 static_cast<long long>(n), static_cast<long long>(total_),
                 total_ > 0 ? 100.0 * static_cast<double>(n) / static_cast<double>(total_) : 0.0,
                 static_cast<double>(n) / elapsed);
    std::fflush(stderr);
}

void Progress::done() {
    if (shown_) {
        std::fprintf(stderr, "\r\033[K");
        std::fflush(stderr);
        shown_ = false;
    }
}

}  // namespace tca
