// A head's configuration p over the allowed per-block keep counts K = {1, 2, 4, ..., b}
// (tca-method M1, M4, M8): the log-Gaussian candidates, Psi (the non-increasing list of
// per-block budgets for n blocks), expected keep fraction and the decode budget.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "sparse/sparse_options.h"

namespace tca {

// Number of keep levels |K| = log2(b) + 1; level i keeps 2^i tokens.
int n_keep_levels(int block_size);

struct HeadConfig {
    std::vector<double> p;  // [n_keep_levels(b)] probabilities, level i keeps 2^i tokens
    double mu = 0.0;        // log-Gaussian centre (log2 of the keep count)
    double sigma = 1.0;     // log-Gaussian width
};

// p_k ∝ exp(-(log2 k - mu)^2 / (2 sigma^2)) over K (tca-method M8 step 1).
HeadConfig log_gaussian_config(double mu, double sigma, int block_size);
// The M = n_candidates calibration candidates: mu_i = log2(b) * i / (M - 1), sigma = 1.
std::vector<HeadConfig> calibration_candidates(int block_size, int n_candidates = 14);
// The log-Gaussian configuration (sigma fixed) whose expected keep fraction is `keep`
// (found by bisection on mu); keep must lie in (0, 1].
Result<HeadConfig> config_for_keep_fraction(double keep, int block_size, double sigma = 1.0);

// p has n_keep_levels(b) entries, each finite and >= 0, summing to 1 within 1e-6.
Status validate_config(const std::vector<double>& p, int block_size);

// sum_k k * p_k / b: the fraction of candidate tokens a head keeps in expectation.
double expected_keep_fraction(const std::vector<double>& p, int block_size);
// t = max(1, floor(sum_k k * p_k)): tokens kept per compacted block in decoding (M7).
int32_t decode_budget(const std::vector<double>& p);

// Psi for n blocks (M4): counts c_k = n * p_k rounded by largest remainder so they sum to n
// (remainder ties go to the larger k, keeping more tokens), then c_b copies of b, c_{b/2}
// copies of b/2, ..., c_1 copies of 1. Returns an error for an invalid p.
Result<std::vector<int32_t>> make_psi(const std::vector<double>& p, int64_t n_blocks,
                                      int block_size);

// The configuration of every (layer, KV head) of a model and the TCA parameters they were
// calibrated for (tca-method M8 output). A head calibration found no valid candidate for stays
// dense: its p puts all mass on keep count b (`dense_config`).
struct ModelBudgets {
    SparseOptions options;
    std::vector<std::vector<HeadConfig>> heads;  // [n_layer][n_kv_heads]

    int64_t n_layers() const { return static_cast<int64_t>(heads.size()); }
    const HeadConfig& head(int64_t layer, int64_t kv_head) const {
        return heads[static_cast<size_t>(layer)][static_cast<size_t>(kv_head)];
    }
};

// p = 1 on keep count b: every candidate token kept (dense attention).
HeadConfig dense_config(int block_size);
// Every head of every layer with the same configuration (benchmarks, fixed keep rates).
ModelBudgets uniform_budgets(const SparseOptions& options, int64_t n_layers, int64_t n_kv_heads,
                             const HeadConfig& config);

}  // namespace tca
