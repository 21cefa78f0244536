// Benchmark helpers (bench_common.h).
#include "bench_common.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>

#include "core/strings.h"

#ifndef TCA_SOURCE_DIR
#define TCA_SOURCE_DIR "."
#endif

namespace tca::bench {

Stats summarize(std::vector<double> samples) {
    Stats s;
    if (samples.empty()) return s;
    std::sort(samples.begin(), samples.end());
    const size_t n = samples.size();
    s.median = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
    s.min = samples.front();
    s.max = samples.back();
    return s;
}

double cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

std::string cpu_description(int n_threads) {
    std::ifstream in("/proc/cpuinfo");
    std::string line, model = "unknown cpu";
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const size_t colon = line.find(':');
            if (colon != std::string::npos) model = line.substr(colon + 2);
            break;
        }
    }
    return strformat("%s (%d threads)", model.c_str(), n_threads);
}

std::string git_revision() {
    const std::string cmd =
        std::string("git -C '") + TCA_SOURCE_DIR + "' rev-parse --short HEAD 2>/dev/null";
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) return "unknown";
    char buf[64] = {0};
    std::string rev;
    if (std::fgets(buf, sizeof buf, pipe)) rev = buf;
    pclose(pipe);
    while (!rev.empty() && (rev.back() == '\n' || rev.back() == '\r')) rev.pop_back();
    return rev.empty() ? "unknown" : rev;
}

Result<JsonLines> JsonLines::open(const std::string& path) {
    JsonLines j;
    j.path_ = path;
    if (path.empty()) return j;
    std::ofstream out(path, std::ios::app);
    if (!out) return io_error("cannot open %s for writing: %s", path.c_str(), std::strerror(errno));
    return j;
}

void JsonLines::write(const std::string& json_object) {
    if (path_.empty()) return;
    std::ofstream out(path_, std::ios::app);
    out << json_object << "\n";
}

}  // namespace tca::bench
