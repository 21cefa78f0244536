// Head configurations, Psi and budgets (head_budgets.h; tca-method M4, M7, M8).
#include "sparse/head_budgets.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "sparse/sparse_options.h"

namespace tca {

int n_keep_levels(int block_size) {
    int levels = 1;
    while ((1 << (levels - 1)) < block_size) ++levels;
    return levels;
}

HeadConfig log_gaussian_config(double mu, double sigma, int block_size) {
    TCA_ASSERT(sigma > 0.0, "sigma %g", sigma);
    HeadConfig c;
    c.mu = mu;
    c.sigma = sigma;
    const int levels = n_keep_levels(block_size);
    c.p.resize(static_cast<size_t>(levels));
    double total = 0.0;
    for (int i = 0; i < levels; ++i) {
        const double z = (static_cast<double>(i) - mu) / sigma;
        c.p[static_cast<size_t>(i)] = std::exp(-0.5 * z * z);
        total += c.p[static_cast<size_t>(i)];
    }
    for (double& x : c.p) x /= total;
    return c;
}

std::vector<HeadConfig> calibration_candidates(int block_size, int n_candidates) {
    TCA_ASSERT(n_candidates >= 2, "n_candidates %d", n_candidates);
    std::vector<HeadConfig> out;
    const double top = std::log2(static_cast<double>(block_size));
    for (int i = 0; i < n_candidates; ++i) {
        out.push_back(log_gaussian_config(top * i / (n_candidates - 1), 1.0, block_size));
    }
    return out;
}

double expected_keep_fraction(const std::vector<double>& p, int block_size) {
    double s = 0.0;
    for (size_t i = 0; i < p.size(); ++i) s += p[i] * static_cast<double>(int64_t{1} << i);
    return s / block_size;
}

Result<HeadConfig> config_for_keep_fraction(double keep, int block_size, double sigma) {
    TCA_RETURN_IF_ERROR(validate_block_size(block_size));
    if (!(keep > 0.0 && keep <= 1.0)) {
        return invalid_argument("keep fraction must be in (0, 1], got %g", keep);
    }
    // expected_keep_fraction is increasing in mu; bracket widely so extremes are reachable.
    const double top = std::log2(static_cast<double>(block_size));
    double lo = -8.0 * sigma, hi = top + 8.0 * sigma;
    const double f_lo = expected_keep_fraction(log_gaussian_config(lo, sigma, block_size).p, block_size);
    const double f_hi = expected_keep_fraction(log_gaussian_config(hi, sigma, block_size).p, block_size);
    if (keep < f_lo - 1e-9 || keep > f_hi + 1e-9) {
        return invalid_argument("keep fraction %g is outside the reachable range [%g, %g] for "
                                "block_size %d and sigma %g", keep, f_lo, f_hi, block_size, sigma);
    }
    for (int it = 0; it < 200; ++it) {
        const double mid = 0.5 * (lo + hi);
        const double f = expected_keep_fraction(log_gaussian_config(mid, sigma, block_size).p, block_size);
        (f < keep ? lo : hi) = mid;
    }
    return log_gaussian_config(0.5 * (lo + hi), sigma, block_size);
}

Status validate_config(const std::vector<double>& p, int block_size) {
    TCA_RETURN_IF_ERROR(validate_block_size(block_size));
    const int levels = n_keep_levels(block_size);
    if (static_cast<int>(p.size()) != levels) {
        return invalid_argument("head configuration p must have log2(block_size)+1 = %d entries "
                                "for block_size %d, got %zu", levels, block_size, p.size());
    }
    double total = 0.0;
    for (size_t i = 0; i < p.size(); ++i) {
        if (!std::isfinite(p[i]) || p[i] < 0.0) {
            return invalid_argument("head configuration p[%zu] must be a finite probability, got %g",
                                    i, p[i]);
        }
        total += p[i];
    }
    if (std::fabs(total - 1.0) > 1e-6) {
        return invalid_argument("head configuration p must sum to 1, got %.9g", total);
    }
    return Status();
}

int32_t decode_budget(const std::vector<double>& p) {
    double s = 0.0;
    for (size_t i = 0; i < p.size(); ++i) s += p[i] * static_cast<double>(int64_t{1} << i);
    return std::max<int32_t>(1, static_cast<int32_t>(std::floor(s + 1e-9)));
}

Result<std::vector<int32_t>> make_psi(const std::vector<double>& p, int64_t n_blocks,
                                      int block_size) {
    TCA_RETURN_IF_ERROR(validate_config(p, block_size));
    if (n_blocks < 0) {
        return invalid_argument("n_blocks must be >= 0, got %lld", static_cast<long long>(n_blocks));
    }
    const size_t levels = p.size();
    std::vector<int64_t> count(levels);
    std::vector<double> frac(levels);
    int64_t assigned = 0;
    for (size_t i = 0; i < levels; ++i) {
        const double exact = static_cast<double>(n_blocks) * p[i];
        count[i] = static_cast<int64_t>(std::floor(exact));
        frac[i] = exact - static_cast<double>(count[i]);
        assigned += count[i];
    }
    // Largest remainder; ties to the larger keep count (higher level index).
    std::vector<size_t> order(levels);
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        if (frac[a] != frac[b]) return frac[a] > frac[b];
        return a > b;
    });
    for (size_t r = 0; assigned < n_blocks; r = (r + 1) % levels, ++assigned) ++count[order[r]];
    // Floating error could over-assign by flooring sums above n: take from the smallest levels.
    for (size_t i = 0; assigned > n_blocks && i < levels; ++i) {
        while (count[i] > 0 && assigned > n_blocks) {
            --count[i];
            --assigned;
        }
    }
    std::vector<int32_t> psi;
    psi.reserve(static_cast<size_t>(n_blocks));
    for (size_t i = levels; i-- > 0;) {
        for (int64_t c = 0; c < count[i]; ++c) psi.push_back(int32_t{1} << i);
    }
    TCA_ASSERT(static_cast<int64_t>(psi.size()) == n_blocks, "psi size %zu != %lld", psi.size(),
               static_cast<long long>(n_blocks));
    return psi;
}

HeadConfig dense_config(int block_size) {
    HeadConfig c;
    c.p.assign(static_cast<size_t>(n_keep_levels(block_size)), 0.0);
    c.p.back() = 1.0;
    c.mu = std::log2(static_cast<double>(block_size));
    c.sigma = 0.0;
    return c;
}

ModelBudgets uniform_budgets(const SparseOptions& options, int64_t n_layers, int64_t n_kv_heads,
                             const HeadConfig& config) {
    ModelBudgets b;
    b.options = options;
    b.heads.assign(static_cast<size_t>(n_layers),
                   std::vector<HeadConfig>(static_cast<size_t>(n_kv_heads), config));
    return b;
}

}  // namespace tca
