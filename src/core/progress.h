// A progress line on stderr for long work (prefill, generation, calibration): shown only when
// stderr is a terminal and the work has run for more than `delay_s` seconds, redrawn at most
// every 0.2 s, erased by done().
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tca {

class Progress {
public:
    Progress(std::string what, int64_t total, double delay_s = 2.0);
    ~Progress();
    void update(int64_t done);
    void done();

private:
    std::string what_;
    int64_t total_;
    double delay_s_;
    bool tty_;
    bool shown_ = false;
    std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace tca
