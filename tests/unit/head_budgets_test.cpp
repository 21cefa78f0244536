// Head configurations, Psi and budgets (head_budgets.h; tca-method M4, M7, M8).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "core/rng.h"
#include "sparse/head_budgets.h"

namespace tca {
namespace {

::testing::AssertionResult names(const Status& s, const std::string& a, const std::string& b) {
    if (s.ok()) return ::testing::AssertionFailure() << "expected an error naming " << a;
    if (s.message().find(a) == std::string::npos || s.message().find(b) == std::string::npos) {
        return ::testing::AssertionFailure() << "message '" << s.message() << "' should name " << a
                                             << " and " << b;
    }
    return ::testing::AssertionSuccess();
}

TEST(HeadBudgets, KeepLevels) {
    EXPECT_EQ(n_keep_levels(1), 1);
    EXPECT_EQ(n_keep_levels(2), 2);
    EXPECT_EQ(n_keep_levels(16), 5);
    EXPECT_EQ(n_keep_levels(128), 8);
}

TEST(HeadBudgets, LogGaussianIsADistributionPeakedAtMu) {
    for (double mu : {0.0, 1.3, 3.0, 7.0}) {
        const HeadConfig c = log_gaussian_config(mu, 1.0, 128);
        ASSERT_EQ(c.p.size(), 8u);
        EXPECT_TRUE(validate_config(c.p, 128).ok());
        const auto peak = std::max_element(c.p.begin(), c.p.end()) - c.p.begin();
        EXPECT_EQ(peak, static_cast<long>(std::lround(mu))) << mu;
        // p_k proportional to exp(-(log2 k - mu)^2 / 2): ratio of neighbours.
        EXPECT_NEAR(c.p[1] / c.p[0], std::exp(-0.5 * ((1 - mu) * (1 - mu) - mu * mu)), 1e-9);
    }
}

// M8 step 1: M = 14 candidates, mu_i = log2(b) i / (M - 1), sigma = 1.
TEST(HeadBudgets, CalibrationCandidates) {
    const auto c = calibration_candidates(128);
    ASSERT_EQ(c.size(), 14u);
    for (size_t i = 0; i < c.size(); ++i) {
        EXPECT_NEAR(c[i].mu, 7.0 * static_cast<double>(i) / 13.0, 1e-12);
        EXPECT_EQ(c[i].sigma, 1.0);
        EXPECT_TRUE(validate_config(c[i].p, 128).ok());
        if (i) {
            EXPECT_GT(expected_keep_fraction(c[i].p, 128), expected_keep_fraction(c[i - 1].p, 128));
        }
    }
    EXPECT_EQ(calibration_candidates(16, 5).size(), 5u);
    EXPECT_NEAR(calibration_candidates(16, 5)[4].mu, 4.0, 1e-12);
}

TEST(HeadBudgets, ValidateConfigNamesTheProblem) {
    EXPECT_TRUE(names(validate_config({0.5, 0.5}, 16), "5 entries", "got 2"));
    EXPECT_TRUE(names(validate_config({0.5, 0.6, -0.1, 0.0, 0.0}, 16), "p[2]", "-0.1"));
    EXPECT_TRUE(names(validate_config({0.5, std::numeric_limits<double>::quiet_NaN(), 0.5, 0.0, 0.0}, 16),
                      "p[1]", "nan"));
    EXPECT_TRUE(names(validate_config({0.5, 0.4, 0.0, 0.0, 0.0}, 16), "sum to 1", "0.9"));
    EXPECT_TRUE(names(validate_config({1.0}, 100), "block_size", "100"));
    EXPECT_TRUE(validate_config({0.0, 0.0, 0.0, 0.0, 1.0}, 16).ok());
}

// M4: counts n p_k rounded by largest remainder (sum n, each within 1 of n p_k), Psi
// non-increasing with c_b copies of b first.
TEST(HeadBudgets, MakePsiLargestRemainder) {
    Rng rng(3);
    for (int b : {1, 2, 16, 128}) {
        const int levels = n_keep_levels(b);
        for (int trial = 0; trial < 200; ++trial) {
            std::vector<double> p(static_cast<size_t>(levels));
            for (double& x : p) x = rng.uniform() < 0.3 ? 0.0 : rng.uniform();
            if (std::accumulate(p.begin(), p.end(), 0.0) == 0.0) p[0] = 1.0;
            const double total = std::accumulate(p.begin(), p.end(), 0.0);
            for (double& x : p) x /= total;
            const int64_t n = static_cast<int64_t>(rng.below(300));
            const auto psi = make_psi(p, n, b);
            ASSERT_TRUE(psi.ok()) << psi.status().to_string();
            ASSERT_EQ(static_cast<int64_t>(psi->size()), n);
            EXPECT_TRUE(std::is_sorted(psi->begin(), psi->end(), std::greater<>()));
            for (int i = 0; i < levels; ++i) {
                const int64_t c = std::count(psi->begin(), psi->end(), 1 << i);
                const double exact = static_cast<double>(n) * p[static_cast<size_t>(i)];
                EXPECT_GE(static_cast<double>(c), std::floor(exact) - 1e-9) << "level " << i;
                EXPECT_LE(static_cast<double>(c), std::ceil(exact) + 1e-9) << "level " << i;
            }
            for (int32_t t : *psi) EXPECT_TRUE(t >= 1 && t <= b && (t & (t - 1)) == 0) << t;
        }
    }
}

TEST(HeadBudgets, MakePsiExactCases) {
    // exact 2.1, 0.6, 0.3 -> floors 2, 0, 0; the one left goes to the largest remainder (k=2).
    EXPECT_EQ(make_psi({0.7, 0.2, 0.1}, 3, 4).value(), (std::vector<int32_t>{2, 1, 1}));
    // Remainder ties go to the larger k.
    EXPECT_EQ(make_psi({0.5, 0.5}, 3, 2).value(), (std::vector<int32_t>{2, 2, 1}));
    EXPECT_EQ(make_psi({0.5, 0.0, 0.5}, 1, 4).value(), (std::vector<int32_t>{4}));
    EXPECT_EQ(make_psi({0.25, 0.25, 0.25, 0.25}, 2, 8).value(), (std::vector<int32_t>{8, 4}));
    EXPECT_EQ(make_psi({0.25, 0.25, 0.25, 0.25}, 6, 8).value(),
              (std::vector<int32_t>{8, 8, 4, 4, 2, 1}));
    EXPECT_TRUE(make_psi({1.0, 0.0}, 0, 2).value().empty());
    EXPECT_EQ(make_psi({0.0, 0.0, 0.0, 0.0, 1.0}, 5, 16).value(), (std::vector<int32_t>(5, 16)));
    EXPECT_TRUE(names(make_psi({1.0, 0.0}, -1, 2).status(), "n_blocks", "-1"));
    EXPECT_TRUE(names(make_psi({0.9, 0.0}, 3, 2).status(), "sum to 1", "0.9"));
}

TEST(HeadBudgets, ConfigForKeepFractionHitsItsTarget) {
    for (int b : {16, 128}) {
        for (double keep = 1.0 / b + 0.01; keep < 0.999; keep += 0.037) {
            const auto c = config_for_keep_fraction(keep, b);
            ASSERT_TRUE(c.ok()) << keep << ": " << c.status().to_string();
            EXPECT_NEAR(expected_keep_fraction(c->p, b), keep, 1e-9) << "b " << b;
            EXPECT_EQ(c->sigma, 1.0);
            EXPECT_TRUE(validate_config(c->p, b).ok());
        }
        // Larger targets need larger mu.
        EXPECT_LT(config_for_keep_fraction(0.2, b)->mu, config_for_keep_fraction(0.3, b)->mu);
    }
    EXPECT_NEAR(expected_keep_fraction(config_for_keep_fraction(0.25, 64, 2.0)->p, 64), 0.25, 1e-9);
    EXPECT_TRUE(names(config_for_keep_fraction(0.0, 16).status(), "keep fraction", "0"));
    EXPECT_TRUE(names(config_for_keep_fraction(1.5, 16).status(), "keep fraction", "1.5"));
    EXPECT_TRUE(names(config_for_keep_fraction(0.01, 16).status(), "reachable", "0.01"));
    EXPECT_TRUE(names(config_for_keep_fraction(0.5, 100).status(), "block_size", "100"));
}

// M7: t = max(1, floor(sum_k k p_k)).
TEST(HeadBudgets, DecodeBudget) {
    EXPECT_EQ(decode_budget({1.0, 0.0, 0.0}), 1);
    EXPECT_EQ(decode_budget({0.0, 0.0, 1.0}), 4);
    EXPECT_EQ(decode_budget({0.5, 0.0, 0.5}), 2);  // 0.5 + 2 = 2.5
    EXPECT_EQ(decode_budget({0.9, 0.1}), 1);       // 1.1
    EXPECT_EQ(decode_budget({0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0}), 128);
    for (const HeadConfig& c : calibration_candidates(128)) {
        const double e = expected_keep_fraction(c.p, 128) * 128;
        EXPECT_EQ(decode_budget(c.p), std::max<int32_t>(1, static_cast<int32_t>(std::floor(e + 1e-9))));
    }
    // A sum that is an integer up to rounding error still floors to that integer.
    EXPECT_EQ(decode_budget({2.0 / 3.0, 0.0, 1.0 / 3.0}), 2);  // 2/3 + 4/3
    EXPECT_EQ(decode_budget({0.1, 0.1, 0.1, 0.7}), 6);          // 0.1 + 0.2 + 0.4 + 5.6 = 6.3
}

TEST(HeadBudgets, ExpectedKeepFraction) {
    EXPECT_DOUBLE_EQ(expected_keep_fraction({1.0, 0.0, 0.0, 0.0, 0.0}, 16), 1.0 / 16);
    EXPECT_DOUBLE_EQ(expected_keep_fraction({0.0, 0.0, 0.0, 0.0, 1.0}, 16), 1.0);
    EXPECT_DOUBLE_EQ(expected_keep_fraction({0.5, 0.0, 0.0, 0.0, 0.5}, 16), 17.0 / 32);
}

// Psi of consecutive calibration candidates (mu increasing) is element-wise non-decreasing
// for every n tested: the candidate selections are nested (M8 relies on a(p) growing with p).
TEST(HeadBudgets, CalibrationCandidatePsiIsNested) {
    for (int b : {16, 128}) {
        const auto cands = calibration_candidates(b);
        for (int64_t n = 0; n <= 300; ++n) {
            std::vector<int32_t> prev;
            for (const HeadConfig& c : cands) {
                const auto psi = make_psi(c.p, n, b).value();
                for (size_t j = 0; j < prev.size(); ++j) {
                    ASSERT_GE(psi[j], prev[j]) << "b " << b << " n " << n << " mu " << c.mu << " rank " << j;
                }
                prev = psi;
            }
        }
    }
}

}  // namespace
}  // namespace tca
