// Shared pieces of the GPU engine tests in tests/cuda (compiled into tca_cuda_tests).
#pragma once

#include <cstdlib>
#include <string>

#include "sparse/attention_policy.h"
#include "sparse/head_budgets.h"

namespace tca::test {

// The folder of the stories260K models: TCA_MODELS_DIR in the environment (the GPU machine gets
// the models carried next to the test binary: scripts/device.sh), else the build-time folder.
inline const std::string& models_dir() {
    static const std::string dir = [] {
        const char* env = std::getenv("TCA_MODELS_DIR");
        return env && *env ? std::string(env) + "/" : std::string(TCA_SHARED_DIR) + "/models/";
    }();
    return dir;
}

// Dense, or TCA with b 8, w 16 and 50% keep on every head; min_prefill_gain 0 so that the short
// test prompts take the sparse prefill (the path under test) instead of the dense fallback.
inline AttentionPolicy small_test_policy(bool tca, int64_t n_layers, int64_t n_kv_heads) {
    AttentionPolicy p;
    if (!tca) return p;
    p.kind = AttentionKind::kTca;
    p.budgets.options.block_size = 8;
    p.budgets.options.local_window = 16;
    p.uniform = config_for_keep_fraction(0.5, 8).value();
    p.min_prefill_gain = 0.0;
    expand_uniform(p, n_layers, n_kv_heads);
    return p;
}

}  // namespace tca::test
