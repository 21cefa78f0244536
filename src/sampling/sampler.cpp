// Sampler implementation (sampler.h).
#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tca {

Status validate(const SamplerOptions& opt) {
    if (!(opt.temperature >= 0.0) || !std::isfinite(opt.temperature)) {
        return invalid_argument("temperature must be >= 0, got %g", opt.temperature);
    }
    if (opt.top_k < 0) {
        return invalid_argument("top-k must be >= 0 (0 = off), got %lld",
                                static_cast<long long>(opt.top_k));
    }
    if (!(opt.top_p > 0.0 && opt.top_p <= 1.0)) {
        return invalid_argument("top-p must be in (0, 1], got %g", opt.top_p);
    }
    return Status();
}

Sampler::Sampler(const SamplerOptions& opt, int64_t n_vocab)
    : opt_(opt), n_vocab_(n_vocab), rng_(opt.seed),
      ids_(static_cast<size_t>(n_vocab)), probs_(static_cast<size_t>(n_vocab)) {
    TCA_ASSERT(n_vocab > 0, "n_vocab %lld", static_cast<long long>(n_vocab));
}

int32_t Sampler::sample(const float* logits) {
    if (opt_.temperature == 0.0) {
        int64_t best = 0;
        for (int64_t i = 1; i < n_vocab_; ++i) {
            if (logits[i] > logits[best]) best = i;
        }
        return static_cast<int32_t>(best);
    }
    std::iota(ids_.begin(), ids_.end(), 0);
    // Candidates sorted by logit (ties: lower id), cut to top-k.
    const auto by_logit = [&](int32_t a, int32_t b) {
        return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    };
    int64_t n = n_vocab_;
    if (opt_.top_k > 0 && opt_.top_k < n) {
        std::partial_sort(ids_.begin(), ids_.begin() + opt_.top_k, ids_.end(), by_logit);
        n = opt_.top_k;
    } else {
        std::sort(ids_.begin(), ids_.end(), by_logit);
    }
    // Softmax at the temperature over the candidates (max-subtracted, double).
    const double mx = logits[ids_[0]];
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const auto u = static_cast<size_t>(i);
        probs_[u] = std::exp((static_cast<double>(logits[ids_[u]]) - mx) / opt_.temperature);
        total += probs_[u];
    }
    // Nucleus: the smallest prefix whose mass reaches top_p.
    if (opt_.top_p < 1.0) {
        double acc = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            acc += probs_[static_cast<size_t>(i)] / total;
            if (acc >= opt_.top_p) {
                n = i + 1;
                break;
            }
        }
        total = 0.0;
        for (int64_t i = 0; i < n; ++i) total += probs_[static_cast<size_t>(i)];
    }
    double r = rng_.uniform() * total;
    for (int64_t i = 0; i < n; ++i) {
        r -= probs_[static_cast<size_t>(i)];
        if (r < 0.0) return ids_[static_cast<size_t>(i)];
    }
    return ids_[static_cast<size_t>(n - 1)];
}

}  // namespace tca
