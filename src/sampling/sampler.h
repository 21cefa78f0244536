// Next-token sampling from a logits row: greedy (temperature 0), or temperature with top-k
// and top-p (nucleus) filtering, from a seeded Rng so runs are reproducible. Scratch buffers
// are sized once per vocabulary, so sampling allocates nothing per token.
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "core/status.h"

namespace tca {

struct SamplerOptions {
    double temperature = 0.0;  // 0 = greedy (argmax, ties to the lower id)
    int64_t top_k = 40;        // 0 = no top-k filter
    double top_p = 0.95;       // 1 = no nucleus filter
    uint64_t seed = 0;
};

Status validate(const SamplerOptions& opt);

class Sampler {
public:
    Sampler(const SamplerOptions& opt, int64_t n_vocab);
    // Picks a token id from logits[0..n_vocab).
    int32_t sample(const float* logits);

private:
    SamplerOptions opt_;
    int64_t n_vocab_;
    Rng rng_;
    std::vector<int32_t> ids_;
    std::vector<double> probs_;
};

}  // namespace tca
