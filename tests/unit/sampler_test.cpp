// Unit tests for the sampler (sampling/sampler.h).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "sampling/sampler.h"

namespace tca {
namespace {

TEST(Sampler, GreedyIsArgmaxWithLowerIdOnTies) {
    Sampler s(SamplerOptions{}, 5);
    const float logits[5] = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
    EXPECT_EQ(s.sample(logits), 1);
}

TEST(Sampler, SeededAndReproducible) {
    SamplerOptions opt;
    opt.temperature = 1.0;
    opt.top_k = 0;
    opt.top_p = 1.0;
    opt.seed = 9;
    std::vector<float> logits(50);
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(std::sin(static_cast<double>(i) * 1.3));
    Sampler a(opt, 50), b(opt, 50);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(logits.data()), b.sample(logits.data()));
}

TEST(Sampler, FrequenciesFollowTheTemperatureSoftmax) {
    SamplerOptions opt;
    opt.temperature = 0.5;
    opt.top_k = 0;
    opt.top_p = 1.0;
    opt.seed = 3;
    const float logits[3] = {0.0f, 0.5f, 1.0f};
    Sampler s(opt, 3);
    std::map<int, int> count;
    const int n = 60000;
    for (int i = 0; i < n; ++i) ++count[s.sample(logits)];
    double z = 0;
    for (float l : logits) z += std::exp(l / 0.5);
    for (int i = 0; i < 3; ++i) {
        EXPECT_NEAR(count[i] / static_cast<double>(n), std::exp(logits[i] / 0.5) / z, 0.01) << i;
    }
}

TEST(Sampler, TopKAndTopPRestrictTheCandidates) {
    const float logits[6] = {5.0f, 4.9f, 4.8f, 0.0f, -1.0f, -2.0f};
    SamplerOptions opt;
    opt.temperature = 1.0;
    opt.top_k = 2;
    opt.top_p = 1.0;
    Sampler k(opt, 6);
    for (int i = 0; i < 2000; ++i) EXPECT_LT(k.sample(logits), 2);
    opt.top_k = 0;
    opt.top_p = 0.5;  // the first two candidates already hold > 50% of the mass
    Sampler p(opt, 6);
    for (int i = 0; i < 2000; ++i) EXPECT_LT(p.sample(logits), 2);
}

TEST(Sampler, InvalidOptionsNameTheValue) {
    SamplerOptions opt;
    opt.top_p = 0.0;
    EXPECT_EQ(validate(opt).message(), "top-p must be in (0, 1], got 0");
    opt = SamplerOptions{};
    opt.temperature = -1;
    EXPECT_EQ(validate(opt).message(), "temperature must be >= 0, got -1");
    opt = SamplerOptions{};
    opt.top_k = -3;
    EXPECT_EQ(validate(opt).message(), "top-k must be >= 0 (0 = off), got -3");
}

}  // namespace
}  // namespace tca
