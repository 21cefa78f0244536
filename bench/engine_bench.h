// The end-to-end CPU engine benchmark (docs/perf target P10): tca vs llama.cpp on the same
// generated ~100M-parameter llama GGUF (F16 and Q8_0 weights), prefill and decode tokens/s on N
// threads, measured side by side in one run and reported as ratios. llama.cpp runs as the
// tests/peer/llama_peer driver (`bench` mode) in a subprocess.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/random_model.h"

namespace tca::bench {

struct EngineBenchOptions {
    RandomModelSpec spec;                        // shape; weight_type is set per entry of types
    std::vector<std::string> types{"f16", "q8_0"};  // f32, f16, bf16, q8_0, q4_0
    int64_t n_prompt = 512;
    int64_t n_gen = 64;
    int64_t reps = 3;        // timed repetitions after a warm-up (median reported)
    int n_threads = 2;
    std::string model_dir;   // where generated models are cached (reused when present)
    std::string peer_path;   // tca_llama_peer; empty: tca only
    std::string json_path;   // append one JSON line per weight type
};

// The default benchmark model: n_embd 768, 12 layers, 12 heads of 64, n_ff 2048, vocab 32000,
// tied output (~110M parameters).
RandomModelSpec default_engine_bench_spec();

Status run_engine_bench(const EngineBenchOptions& opt, std::FILE* out);

}  // namespace tca::bench
