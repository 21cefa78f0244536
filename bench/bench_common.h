// Helpers shared by benchmarks: timing statistics, machine description, git revision and
// JSON-line output (one line per result, docs/architecture.md "Benchmarks").
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/status.h"

namespace tca::bench {

struct Stats {
    double median = 0, min = 0, max = 0;
};
Stats summarize(std::vector<double> samples);

inline double now_ms() {
    return std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// CPU time of the whole process (all threads), in milliseconds.
double cpu_ms();

// "AMD EPYC (2 threads)" from /proc/cpuinfo.
std::string cpu_description(int n_threads);
// Short git revision of the source tree, "unknown" when git is unavailable.
std::string git_revision();

// Appends JSON lines to a file (or does nothing when the path is empty).
class JsonLines {
public:
    static Result<JsonLines> open(const std::string& path);
    void write(const std::string& json_object);

private:
    std::string path_;
};

}  // namespace tca::bench
