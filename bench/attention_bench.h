// CPU attention benchmark (foundation issue, target P9): one layer's attention for a KV-head
// group at several lengths, our dense CPU attention vs TCA (score + select + gather + sparse
// attention), with selection overhead, achieved GFLOP/s and the FLOP-ratio ceiling.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "core/status.h"

namespace tca::bench {

struct AttentionBenchOptions {
    std::vector<int64_t> lengths{8192, 16384, 32768, 65536};
    int64_t n_q_heads = 4;
    int64_t n_kv_heads = 1;
    int64_t head_dim = 128;
    std::string dtype = "bf16";  // K/V storage
    int64_t block_size = 128;
    int64_t local_window = 4096;
    double keep = 0.2;  // expected kept fraction of candidate tokens (log-Gaussian config)
    int64_t reps = 3;   // timed repetitions per length (median reported)
    uint64_t seed = 1;
    bool validate = true;  // check both paths against the float64 reference first
    std::string json_path;  // JSON lines appended here when set
    Device device = Device::kCpu;
};

// Runs the benchmark, printing a table to `out`; returns an error for bad options.
Status run_attention_bench(const AttentionBenchOptions& opt, std::FILE* out);

}  // namespace tca::bench
