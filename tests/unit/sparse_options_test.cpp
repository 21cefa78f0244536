// SparseOptions validation and the block geometry of tca-method M3/M6 (sparse_options.h).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "sparse/sparse_options.h"

namespace tca {
namespace {

// The status is an error whose message names `param` and `value`.
::testing::AssertionResult names(const Status& s, const std::string& param, const std::string& value) {
    if (s.ok()) return ::testing::AssertionFailure() << "expected an error naming " << param;
    if (s.message().find(param) == std::string::npos || s.message().find(value) == std::string::npos) {
        return ::testing::AssertionFailure() << "message '" << s.message() << "' should name " << param
                                             << " and " << value;
    }
    return ::testing::AssertionSuccess();
}

TEST(SparseOptions, DefaultsAreValid) {
    EXPECT_TRUE(validate(SparseOptions{}).ok());
    SparseOptions small;
    small.block_size = 16;
    small.local_window = 64;
    EXPECT_TRUE(validate(small).ok());
}

TEST(SparseOptions, InvalidValuesNameTheParameter) {
    for (int b : {0, -4, 3, 100, 8192}) {
        SparseOptions o;
        o.block_size = b;
        EXPECT_TRUE(names(validate(o), "block_size", std::to_string(b)));
    }
    for (int w : {0, 100, 64}) {  // not a positive multiple of b = 128 (64 < b)
        SparseOptions o;
        o.local_window = w;
        EXPECT_TRUE(names(validate(o), "local_window", std::to_string(w)));
    }
    for (double a : {-0.1, 1.5}) {
        SparseOptions o;
        o.alpha = a;
        EXPECT_TRUE(names(validate(o), "alpha", a < 0 ? "-0.1" : "1.5"));
    }
    SparseOptions nan_alpha;
    nan_alpha.alpha = std::numeric_limits<double>::quiet_NaN();
    EXPECT_TRUE(names(validate(nan_alpha), "alpha", "nan"));
    for (int ow : {0, 5000}) {
        SparseOptions o;
        o.obs_window = ow;
        EXPECT_TRUE(names(validate(o), "obs_window", std::to_string(ow)));
    }
    for (double tau : {0.0, 1.5, -1.0}) {
        SparseOptions o;
        o.tau = tau;
        EXPECT_FALSE(validate(o).ok()) << tau;
        EXPECT_NE(validate(o).message().find("tau"), std::string::npos);
    }
}

TEST(SparseOptions, MassNormNames) {
    EXPECT_EQ(parse_mass_norm("max").value(), MassNorm::kMax);
    EXPECT_EQ(parse_mass_norm("none").value(), MassNorm::kNone);
    const auto bad = parse_mass_norm("sum");
    ASSERT_FALSE(bad.ok());
    EXPECT_TRUE(names(bad.status(), "mass_norm", "sum"));
    EXPECT_STREQ(mass_norm_name(MassNorm::kNone), "none");
}

TEST(SparseOptions, SelectionNames) {
    EXPECT_EQ(SparseOptions().selection, Selection::kBlock);  // the paper by default
    EXPECT_EQ(parse_selection("block").value(), Selection::kBlock);
    EXPECT_EQ(parse_selection("global").value(), Selection::kGlobal);
    const auto bad = parse_selection("topk");
    ASSERT_FALSE(bad.ok());
    EXPECT_TRUE(names(bad.status(), "selection", "topk"));
    EXPECT_STREQ(selection_name(Selection::kGlobal), "global");
    EXPECT_STREQ(selection_name(Selection::kBlock), "block");
}

// M3: n = max(0, floor((L - w) / b)); the band [n b, L) has length in [w, w + b - 1].
TEST(SparseGeometry, CandidateBlocks) {
    EXPECT_EQ(n_candidate_blocks(0, 64, 16), 0);
    EXPECT_EQ(n_candidate_blocks(64, 64, 16), 0);
    EXPECT_EQ(n_candidate_blocks(79, 64, 16), 0);
    EXPECT_EQ(n_candidate_blocks(80, 64, 16), 1);
    EXPECT_EQ(n_candidate_blocks(1000, 64, 16), 58);
    for (int64_t L = 64; L < 400; ++L) {
        const int64_t n = n_candidate_blocks(L, 64, 16);
        EXPECT_GE(L - n * 16, 64) << L;
        EXPECT_LE(L - n * 16, 64 + 16 - 1) << L;
    }
}

// M6: v(i) = clamp(floor((i - w + 1) / b), 0, n); queries i < w + b - 1 see no candidate
// block (full attention), and block j is visible once it lies entirely at or before i - w.
TEST(SparseGeometry, VisibleBlocks) {
    const int64_t w = 64, b = 16, n = 10;
    for (int64_t i = 0; i < 400; ++i) {
        const int64_t v = visible_blocks(i, w, b, n);
        const double exact = std::floor(static_cast<double>(i - w + 1) / static_cast<double>(b));
        EXPECT_EQ(v, std::clamp<int64_t>(static_cast<int64_t>(exact), 0, n)) << i;
        if (i < w + b - 1) {
            EXPECT_EQ(v, 0) << i;
        }
        // Every visible block ends at or before i - w; the next one does not.
        if (v > 0) {
            EXPECT_LE(v * b - 1, i - w) << i;
        }
        if (v < n) {
            EXPECT_GT((v + 1) * b - 1, i - w) << i;
        }
    }
    EXPECT_EQ(visible_blocks(w + b - 1, w, b, n), 1);
    EXPECT_EQ(visible_blocks(100000, w, b, n), n);
}

}  // namespace
}  // namespace tca
