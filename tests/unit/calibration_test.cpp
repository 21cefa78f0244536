// Calibration (sparse/calibration.h; tca-method M8): the streamed statistic against a
// brute-force float64 computation over the materialised P, the host selection against the
// CPU selection ops, determinism across thread counts, monotonicity in tau, structured
// inputs, and the PNG encoder used for the heatmap (core/png_writer.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "core/host_tensor.h"
#include "core/png_writer.h"
#include "core/rng.h"
#include "core/thread_pool.h"
#include "sparse/calibration.h"

namespace tca {
namespace {

struct Inputs {
    int64_t hq = 4, hkv = 2, L = 100, d = 8;
    std::vector<float> q, k;  // q [hq, L, d], k [hkv, L, d]
    TensorView qv() { return make_view(q.data(), DType::kF32, {hq, L, d}); }
    TensorView kv() { return make_view(k.data(), DType::kF32, {hkv, L, d}); }
};

Inputs random_inputs(int64_t hq, int64_t hkv, int64_t L, int64_t d, uint64_t seed, double scale) {
    Inputs in;
    in.hq = hq;
    in.hkv = hkv;
    in.L = L;
    in.d = d;
    Rng rng(seed);
    in.q.resize(static_cast<size_t>(hq * L * d));
    in.k.resize(static_cast<size_t>(hkv * L * d));
    for (float& x : in.q) x = static_cast<float>(rng.normal() * scale);
    for (float& x : in.k) x = static_cast<float>(rng.normal());
    return in;
}

CalibrationOptions small_options(int b, int w, int64_t stride, int obs) {
    CalibrationOptions o;
    o.sparse.block_size = b;
    o.sparse.local_window = w;
    o.sparse.obs_window = obs;
    o.row_stride = stride;
    return o;
}

// Group-mean causal softmax P [L, L] of KV head kvh, in float64.
std::vector<double> brute_probs(const Inputs& in, int64_t kvh) {
    const int64_t g = in.hq / in.hkv, L = in.L, d = in.d;
    std::vector<double> P(static_cast<size_t>(L * L), 0.0);
    for (int64_t gi = 0; gi < g; ++gi) {
        const int64_t h = kvh * g + gi;
        for (int64_t i = 0; i < L; ++i) {
            std::vector<double> x(static_cast<size_t>(i + 1));
            double m = -1e300;
            for (int64_t j = 0; j <= i; ++j) {
                double s = 0;
                for (int64_t c = 0; c < d; ++c) {
                    s += static_cast<double>(in.q[static_cast<size_t>((h * L + i) * d + c)]) *
                         static_cast<double>(in.k[static_cast<size_t>((kvh * L + j) * d + c)]);
                }
                x[static_cast<size_t>(j)] = s / std::sqrt(static_cast<double>(d));
                m = std::max(m, x[static_cast<size_t>(j)]);
            }
            double sum = 0;
            for (double& v : x) sum += (v = std::exp(v - m));
            for (int64_t j = 0; j <= i; ++j) {
                P[static_cast<size_t>(i * L + j)] += x[static_cast<size_t>(j)] / sum / static_cast<double>(g);
            }
        }
    }
    return P;
}

TEST(Calibration, StatisticMatchesBruteForceFloat64) {
    for (const int64_t stride : {1, 3}) {
        for (const int obs : {1, 3}) {
            Inputs in = random_inputs(4, 2, 100, 8, 11 + static_cast<uint64_t>(stride), 1.5);
            const CalibrationOptions opt = small_options(8, 16, stride, obs);
            const auto stats = layer_statistics(in.qv(), in.kv(), opt);
            ASSERT_TRUE(stats.ok()) << stats.status().to_string();
            const int64_t L = in.L, w = 16, b = 8, n = n_candidate_blocks(L, w, b);
            for (int64_t kvh = 0; kvh < in.hkv; ++kvh) {
                const HeadStatistic& st = stats.value()[static_cast<size_t>(kvh)];
                const std::vector<double> P = brute_probs(in, kvh);
                double band = 0;
                std::vector<double> after(static_cast<size_t>(n * b), 0.0);
                int64_t nq = 0;
                for (int64_t i = 0; i < L; ++i) {
                    const int64_t v = visible_blocks(i, w, b, n);
                    if (v < 1 || (i - (w + b - 1)) % stride != 0) continue;
                    ++nq;
                    for (int64_t j = 0; j <= i; ++j) {
                        const double p = P[static_cast<size_t>(i * L + j)];
                        if (j >= v * b) band += p;
                        else after[static_cast<size_t>(j)] += p;
                    }
                }
                EXPECT_EQ(st.n_tokens, L);
                EXPECT_EQ(st.n_blocks, n);
                EXPECT_EQ(st.n_queries, nq);
                EXPECT_NEAR(st.band_sum, band, 1e-5 * static_cast<double>(nq));
                ASSERT_EQ(st.after.size(), after.size());
                for (size_t j = 0; j < after.size(); ++j) EXPECT_NEAR(st.after[j], after[j], 1e-5) << j;
                // Token importance: mean of the last obs rows (M2).
                for (int64_t j = 0; j < L; ++j) {
                    double s = 0;
                    for (int64_t t = L - obs; t < L; ++t) s += P[static_cast<size_t>(t * L + j)];
                    EXPECT_NEAR(st.importance[static_cast<size_t>(j)], s / obs, 1e-6) << j;
                }
                // a(p) for every candidate from the brute-force pieces.
                const auto cal = choose_head_config(st, opt);
                ASSERT_TRUE(cal.ok());
                const auto cands = calibration_candidates(8);
                for (size_t c = 0; c < cands.size(); ++c) {
                    const auto sel = select_positions(st.importance, n, cands[c], opt.sparse);
                    ASSERT_TRUE(sel.ok());
                    double kept = 0;
                    for (const int32_t pos : sel.value()) kept += after[static_cast<size_t>(pos)];
                    EXPECT_NEAR(cal.value().retained[c], (band + kept) / static_cast<double>(nq), 1e-6);
                    EXPECT_EQ(cal.value().n_selected[c], static_cast<int64_t>(sel.value().size()));
                }
                // Dense: everything kept, the retained mass is 1.
                double total = band;
                for (const double a : after) total += a;
                EXPECT_NEAR(total / static_cast<double>(nq), 1.0, 1e-9);
            }
        }
    }
}

TEST(Calibration, HostSelectionMatchesCpuOps) {
    const int b = 16;
    const int64_t n = 9, L = n * b + 40;
    Rng rng(5);
    std::vector<float> s(static_cast<size_t>(L));
    for (float& x : s) x = static_cast<float>(rng.uniform() * rng.uniform());
    for (int64_t i = 20; i < 40; ++i) s[static_cast<size_t>(i)] = 0.25f;  // ties inside a block
    for (const auto& [mn, pool] : {std::pair{MassNorm::kMax, 0}, std::pair{MassNorm::kNone, 0},
                                   std::pair{MassNorm::kMax, 3}, std::pair{MassNorm::kMax, 21}})
    for (const Selection selection : {Selection::kBlock, Selection::kGlobal}) {
        SparseOptions o;
        o.selection = selection;
        o.block_size = b;
        o.local_window = 32;
        o.mass_norm = mn;
        o.alpha = 0.3;
        o.pool = pool;
        for (const HeadConfig& c : calibration_candidates(b)) {
            const auto mine = select_positions(s, n, c, o);
            ASSERT_TRUE(mine.ok());
            HostTensor scores(DType::kF32, {1, L}), mass(DType::kF32, {1, n}), hhi(DType::kF32, {1, n}),
                hs(DType::kF32, {1, n}), psi(DType::kI32, {1, n}), keep(DType::kI32, {1, n}),
                sel(DType::kI32, {1, n * b}), nsel(DType::kI32, {1});
            std::memcpy(scores.data<float>(), s.data(), s.size() * sizeof(float));
            const auto p = make_psi(c.p, n, b);
            ASSERT_TRUE(p.ok());
            std::memcpy(psi.data<int32_t>(), p.value().data(), p.value().size() * sizeof(int32_t));
            BlockScoreParams bs{scores.view(), mass.view(), hhi.view(), hs.view(), b,
                                static_cast<float>(o.alpha), mn};
            ASSERT_TRUE(ops::block_score(Device::kCpu, bs).ok());
            ASSERT_TRUE(ops::block_budget(Device::kCpu, BlockBudgetParams{hs.view(), psi.view(), keep.view(), b}).ok());
            ASSERT_TRUE(ops::token_select(Device::kCpu, TokenSelectParams{scores.view(), keep.view(), sel.view(), nsel.view(), b, pool,
                                                                              selection == Selection::kGlobal}).ok());
            const int32_t m = nsel.data<int32_t>()[0];
            const std::vector<int32_t> theirs(sel.data<int32_t>(), sel.data<int32_t>() + m);
            EXPECT_EQ(mine.value(), theirs) << "mu " << c.mu << " pool " << pool << " "
                                            << selection_name(selection);
        }
    }
}

TEST(Calibration, DeterministicAcrossThreadCounts) {
    Inputs in = random_inputs(4, 2, 300, 8, 3, 2.0);
    const CalibrationOptions opt = small_options(16, 32, 1, 1);
    const int saved = thread_pool().n_threads();
    set_num_threads(1);
    const auto a = calibrate_layer(in.qv(), in.kv(), opt);
    set_num_threads(4);
    const auto b = calibrate_layer(in.qv(), in.kv(), opt);
    const auto c = calibrate_layer(in.qv(), in.kv(), opt);
    set_num_threads(saved);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    for (size_t h = 0; h < 2; ++h) {
        EXPECT_EQ(a.value()[h].retained, b.value()[h].retained);  // bit-identical
        EXPECT_EQ(b.value()[h].retained, c.value()[h].retained);
        EXPECT_EQ(a.value()[h].chosen, b.value()[h].chosen);
        EXPECT_EQ(a.value()[h].config.p, b.value()[h].config.p);
    }
}

TEST(Calibration, HigherTauNeverKeepsFewerTokens) {
    for (const uint64_t seed : {1u, 2u, 3u}) {
        Inputs in = random_inputs(8, 4, 260, 8, seed, 0.5 + static_cast<double>(seed));
        CalibrationOptions opt = small_options(16, 32, 2, 1);
        const auto stats = layer_statistics(in.qv(), in.kv(), opt);
        ASSERT_TRUE(stats.ok());
        std::vector<int64_t> prev_sel(4, -1);
        double prev_total_kept = -1;
        int64_t prev_total_sel = -1;
        for (const double tau : {0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0}) {
            opt.sparse.tau = tau;
            int64_t total_sel = 0;
            double total_kept = 0;
            for (size_t h = 0; h < 4; ++h) {
                const auto r = choose_head_config(stats.value()[h], opt);
                ASSERT_TRUE(r.ok());
                const HeadCalibration& hc = r.value();
                const int64_t sel = hc.dense() ? hc.n_blocks * 16 : hc.n_selected[static_cast<size_t>(hc.chosen)];
                EXPECT_GE(sel, prev_sel[h]) << "seed " << seed << " tau " << tau << " head " << h;
                if (!hc.dense()) {
                    EXPECT_GE(hc.retained_mass, tau);
                }
                prev_sel[h] = sel;
                total_sel += sel;
                total_kept += hc.kept_fraction;
            }
            EXPECT_GE(total_sel, prev_total_sel);
            EXPECT_GE(total_kept, prev_total_kept - 1e-12) << "tau " << tau;
            prev_total_sel = total_sel;
            prev_total_kept = total_kept;
        }
    }
}

TEST(Calibration, ConcentratedAttentionGetsSmallBudgets) {
    // Every query looks along u; keys at a few "heavy" positions point along u strongly, the
    // rest are small noise: nearly all mass sits on those tokens (and the band).
    const int64_t L = 400, d = 8, b = 16, w = 64;
    Inputs in = random_inputs(4, 2, L, d, 9, 0.0);
    Rng rng(4);
    for (int64_t h = 0; h < 2; ++h) {
        for (int64_t i = 0; i < L; ++i) {
            float* k = &in.k[static_cast<size_t>((h * L + i) * d)];
            for (int64_t c = 0; c < d; ++c) k[c] = static_cast<float>(0.1 * rng.normal());
            if (i % 37 == 0) k[0] = 12.0f;
        }
    }
    for (int64_t hq = 0; hq < 4; ++hq) {
        for (int64_t i = 0; i < L; ++i) in.q[static_cast<size_t>((hq * L + i) * d)] = 3.0f;
    }
    const auto r = calibrate_layer(in.qv(), in.kv(), small_options(static_cast<int>(b), static_cast<int>(w), 1, 1));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    for (const HeadCalibration& h : r.value()) {
        EXPECT_FALSE(h.dense());
        EXPECT_EQ(h.chosen, 0) << "the smallest candidate already keeps the heavy tokens";
        EXPECT_LT(h.kept_fraction, 0.2);
        EXPECT_GE(h.retained_mass, 0.9);
    }
}

TEST(Calibration, UniformAttentionNeedsLargeBudgets) {
    const int64_t L = 400, d = 8;
    Inputs in = random_inputs(4, 2, L, d, 10, 0.0);  // q = 0: every softmax row is uniform
    const auto r = calibrate_layer(in.qv(), in.kv(), small_options(16, 64, 1, 1));
    ASSERT_TRUE(r.ok());
    for (const HeadCalibration& h : r.value()) {
        EXPECT_TRUE(h.dense() || h.kept_fraction > 0.5) << h.kept_fraction;
        EXPECT_GE(h.retained_mass, 0.9);
    }
}

// The far statistic (MassStatistic::kFar) judges only the attention beyond the band: a(p) is
// the kept share of sum_k after[k], and since every candidate valid under far is valid under
// total, far never keeps fewer tokens than the paper's statistic. Nearly uniform attention
// with a band of >= 352 of <= 400 keys: the band alone passes tau 0.85 (total keeps the
// cheapest candidate), while keeping 85% of the diffuse far mass needs most far tokens.
TEST(Calibration, FarStatisticIgnoresTheBand) {
    const int64_t L = 400, d = 8, b = 16, w = 352;
    Inputs in = random_inputs(4, 2, L, d, 12, 0.05);
    CalibrationOptions opt = small_options(static_cast<int>(b), static_cast<int>(w), 1, 1);
    opt.sparse.tau = 0.85;
    const auto stats = layer_statistics(in.qv(), in.kv(), opt);
    ASSERT_TRUE(stats.ok());
    int64_t far_tokens = 0, total_tokens = 0;
    for (const HeadStatistic& st : stats.value()) {
        double far = 0;
        for (const double x : st.after) far += x;
        ASSERT_GT(far, 0.0);
        opt.statistic = MassStatistic::kFar;
        const auto f = choose_head_config(st, opt);
        opt.statistic = MassStatistic::kTotal;
        const auto t = choose_head_config(st, opt);
        ASSERT_TRUE(f.ok() && t.ok());
        const auto cands = calibration_candidates(static_cast<int>(b));
        for (size_t c = 0; c < cands.size(); ++c) {
            const auto sel = select_positions(st.importance, st.n_blocks, cands[c], opt.sparse);
            ASSERT_TRUE(sel.ok());
            double kept = 0;
            for (const int32_t pos : sel.value()) kept += st.after[static_cast<size_t>(pos)];
            EXPECT_NEAR(f.value().retained[c], kept / far, 1e-12);
            EXPECT_NEAR(t.value().retained[c], (st.band_sum + kept) / static_cast<double>(st.n_queries), 1e-12);
        }
        // Far mass is a fraction of the whole: the far statistic never asks for fewer tokens.
        const auto n_sel = [&](const HeadCalibration& hc) {
            return hc.dense() ? hc.n_blocks * b : hc.n_selected[static_cast<size_t>(hc.chosen)];
        };
        EXPECT_GE(n_sel(f.value()), n_sel(t.value()));
        far_tokens += n_sel(f.value());
        total_tokens += n_sel(t.value());
        EXPECT_EQ(t.value().chosen, 0) << "the band alone passes tau";
        if (f.value().dense()) {
            EXPECT_EQ(f.value().retained_mass, 1.0);
        } else {
            EXPECT_GE(f.value().retained_mass, 0.85);
        }
    }
    EXPECT_GT(far_tokens, total_tokens) << "diffuse far attention: far asks for more";
    EXPECT_EQ(std::string(mass_statistic_name(MassStatistic::kFar)), "far");
    EXPECT_EQ(parse_mass_statistic("total").value(), MassStatistic::kTotal);
    EXPECT_NE(parse_mass_statistic("mean").status().message().find("'total' or 'far', got 'mean'"), std::string::npos);
}

// The budget floor: the cheapest valid candidate at or above min_keep, never one below it.
TEST(Calibration, MinKeepIsAFloor) {
    Inputs in = random_inputs(4, 2, 400, 8, 13, 0.05);
    CalibrationOptions opt = small_options(16, 352, 1, 1);
    opt.sparse.tau = 0.85;
    const auto stats = layer_statistics(in.qv(), in.kv(), opt);
    ASSERT_TRUE(stats.ok());
    const auto cands = calibration_candidates(16);
    for (const double floor : {0.0, 0.25, 0.6}) {
        opt.min_keep = floor;
        for (const HeadStatistic& st : stats.value()) {
            const auto r = choose_head_config(st, opt);
            ASSERT_TRUE(r.ok());
            const HeadCalibration& hc = r.value();
            ASSERT_FALSE(hc.dense()) << "floor " << floor;  // the band passes tau 0.85 (see above)
            EXPECT_GE(hc.kept_fraction, floor);
            // Every cheaper candidate is below the floor (or below tau).
            for (size_t c = 0; c < cands.size(); ++c) {
                if (hc.n_selected[c] < hc.n_selected[static_cast<size_t>(hc.chosen)]) {
                    EXPECT_TRUE(expected_keep_fraction(cands[c].p, 16) < floor || hc.retained[c] < opt.sparse.tau)
                        << "floor " << floor << " candidate " << c;
                }
            }
        }
    }
    opt.min_keep = 1.5;
    EXPECT_NE(choose_head_config(stats.value()[0], opt).status().message().find("min_keep must be in [0, 1], got 1.5"),
              std::string::npos);
}

TEST(Calibration, Errors) {
    Inputs in = random_inputs(4, 2, 70, 8, 1, 1.0);
    const auto r = calibrate_layer(in.qv(), in.kv(), small_options(8, 64, 1, 1));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("70 tokens is shorter than local window + block size = 64 + 8 = 72"),
              std::string::npos) << r.status().message();
    EXPECT_NE(calibrate_layer(in.qv(), in.kv(), small_options(8, 16, 0, 1)).status().message().find("row_stride"),
              std::string::npos);
    EXPECT_NE(calibrate_layer(in.qv(), in.kv(), small_options(12, 24, 1, 1)).status().message().find("block_size"),
              std::string::npos);
    Inputs bad = random_inputs(3, 2, 70, 8, 1, 1.0);
    EXPECT_FALSE(calibrate_layer(bad.qv(), bad.kv(), small_options(8, 16, 1, 1)).ok());
}

// ---- PNG encoder -------------------------------------------------------------------------

uint32_t be32(const std::string& s, size_t at) {
    return (static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24) |
           (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8) |
           static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}

TEST(PngWriter, ChecksumsMatchKnownVectors) {
    const std::string a = "123456789", w = "Wikipedia";
    EXPECT_EQ(crc32(reinterpret_cast<const uint8_t*>(a.data()), a.size()), 0xCBF43926u);
    EXPECT_EQ(adler32(reinterpret_cast<const uint8_t*>(w.data()), w.size()), 0x11E60398u);
    EXPECT_EQ(crc32(nullptr, 0), 0u);
    // Continuing a CRC over two pieces equals one pass.
    const uint32_t c1 = crc32(reinterpret_cast<const uint8_t*>(a.data()), 4);
    EXPECT_EQ(crc32(reinterpret_cast<const uint8_t*>(a.data()) + 4, 5, c1), 0xCBF43926u);
}

TEST(PngWriter, DecodesBackToThePixels) {
    // 200 x 150 RGB = 90150 raw bytes: two stored deflate blocks.
    RgbImage img(200, 150, 0, 0, 0);
    for (int64_t y = 0; y < 150; ++y) {
        for (int64_t x = 0; x < 200; ++x) {
            img.set(x, y, static_cast<uint8_t>(x), static_cast<uint8_t>(y), static_cast<uint8_t>(x ^ y));
        }
    }
    const std::string png = encode_png(img);
    ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
    size_t at = 8;
    std::string idat;
    std::vector<std::string> types;
    while (at + 12 <= png.size()) {
        const uint32_t len = be32(png, at);
        const std::string type = png.substr(at + 4, 4);
        types.push_back(type);
        const std::string body = png.substr(at + 4, 4 + len);
        EXPECT_EQ(be32(png, at + 8 + len), crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size())) << type;
        if (type == "IHDR") {
            EXPECT_EQ(be32(png, at + 8), 200u);
            EXPECT_EQ(be32(png, at + 12), 150u);
            EXPECT_EQ(png[at + 16], 8);
            EXPECT_EQ(png[at + 17], 2);
        }
        if (type == "IDAT") idat += png.substr(at + 8, len);
        at += 12 + len;
    }
    EXPECT_EQ(at, png.size());
    EXPECT_EQ(types, (std::vector<std::string>{"IHDR", "IDAT", "IEND"}));
    ASSERT_GE(idat.size(), 6u);
    EXPECT_EQ((static_cast<uint8_t>(idat[0]) * 256 + static_cast<uint8_t>(idat[1])) % 31, 0);  // FCHECK
    std::string raw;
    size_t p = 2;
    int blocks = 0;
    for (bool last = false; !last;) {
        ASSERT_LT(p + 5, idat.size());
        last = (idat[p] & 1) != 0;
        EXPECT_EQ((idat[p] >> 1) & 3, 0);  // stored
        const size_t len = static_cast<uint8_t>(idat[p + 1]) | (static_cast<size_t>(static_cast<uint8_t>(idat[p + 2])) << 8);
        const size_t nlen = static_cast<uint8_t>(idat[p + 3]) | (static_cast<size_t>(static_cast<uint8_t>(idat[p + 4])) << 8);
        EXPECT_EQ(len ^ nlen, 0xFFFFu);
        raw += idat.substr(p + 5, len);
        p += 5 + len;
        ++blocks;
    }
    EXPECT_EQ(blocks, 2);
    EXPECT_EQ(be32(idat, p), adler32(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));
    ASSERT_EQ(raw.size(), 150u * (1 + 600));
    for (int64_t y = 0; y < 150; ++y) {
        EXPECT_EQ(raw[static_cast<size_t>(y * 601)], '\0');
        EXPECT_EQ(std::memcmp(raw.data() + y * 601 + 1, img.pixels.data() + y * 600, 600), 0);
    }
}

TEST(PngWriter, HeatmapDrawsCellsInRampColours) {
    const std::vector<std::vector<double>> v = {{0.0, 1.0}, {0.5, std::nan("")}};
    const RgbImage img = render_heatmap(v, 10);
    EXPECT_GE(img.width, 2 * 11 + 1);
    EXPECT_GE(img.height, 2 * 11 + 1);
    auto px = [&](int64_t x, int64_t y) {
        const uint8_t* p = img.pixels.data() + (y * img.width + x) * 3;
        return std::vector<int>{p[0], p[1], p[2]};
    };
    uint8_t lo[3], hi[3];
    heatmap_colour(0.0, lo);
    heatmap_colour(1.0, hi);
    EXPECT_EQ(px(4 + 1 + 5, 4 + 1 + 5), (std::vector<int>{lo[0], lo[1], lo[2]}));
    EXPECT_EQ(px(4 + 1 + 11 + 5, 4 + 1 + 5), (std::vector<int>{hi[0], hi[1], hi[2]}));
    EXPECT_EQ(px(4 + 1 + 11 + 5, 4 + 1 + 11 + 5), (std::vector<int>{128, 128, 128}));
    EXPECT_GT(hi[0] + hi[1], lo[0] + lo[1]);  // the ramp brightens towards 1
}

}  // namespace
}  // namespace tca
