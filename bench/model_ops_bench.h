// Matmul benchmark (target P10): the CPU matmul at decode (n_tokens 1) and prefill (512)
// sizes for F16/Q8_0/... weights, reporting GFLOP/s, weight GB/s (hot: one matrix in cache;
// cold: rotating copies larger than the last-level cache) and the measured machine ceilings
// (f32 FMA peak and read bandwidth on the same threads).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "core/status.h"

namespace tca::bench {

struct MatmulBenchOptions {
    std::vector<std::string> types{"F16", "Q8_0"};
    std::vector<std::pair<int64_t, int64_t>> shapes{{768, 768}, {2048, 768}, {768, 2048}};  // n_out, n_in
    std::vector<int64_t> n_tokens{1, 512};
    // Activation modes (ops.h): f32, and the weight's dot type as llama.cpp ("native").
    std::vector<MatmulActivations> acts{MatmulActivations::kF32, MatmulActivations::kWeightDotType};
    int64_t reps = 7;
    int64_t cold_bytes = 256ll << 20;  // rotating weight copies for the cold decode numbers
    uint64_t seed = 1;
    bool validate = true;
    std::string json_path;
};

Status run_matmul_bench(const MatmulBenchOptions& opt, std::FILE* out);

}  // namespace tca::bench
