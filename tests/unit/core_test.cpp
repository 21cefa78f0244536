// Unit tests for src/core: half conversions, Status/Result, TensorView, thread pool, RNG.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "core/half.h"
#include "core/host_tensor.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/strings.h"
#include "core/thread_pool.h"

namespace tca {
namespace {

// Exact round-to-nearest-even reference for a float with `mant_bits` kept bits, via double.
TEST(Half, Bf16RoundsToNearestEven) {
    EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
    // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
    EXPECT_EQ(f32_to_bf16(1.0f + 0x1.0p-8f), 0x3f80);
    // 1 + 3*2^-8 is halfway between 1.0078125 (odd mantissa) and 1.015625: rounds up.
    EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1.0p-8f), 0x3f82);
    EXPECT_EQ(f32_to_bf16(1.0f + 0x1.0p-8f + 0x1.0p-20f), 0x3f81);
    EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    EXPECT_EQ(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::infinity())),
              std::numeric_limits<float>::infinity());
    // Largest finite f32 rounds to infinity in bf16 (RNE overflow).
    EXPECT_TRUE(std::isinf(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::max()))));
}

TEST(Half, F16ExhaustiveRoundTrip) {
    // Every f16 bit pattern converts to f32 and back to itself (NaNs stay NaN).
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = f16_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(f)) {
            EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
            continue;
        }
        ASSERT_EQ(f32_to_f16(f), h) << "h=" << h;
    }
}

TEST(Half, F16RoundsToNearestEven) {
    // Midpoints between consecutive f16 values round to the even one; check against doubles.
    Rng rng(7);
    for (int i = 0; i < 200000; ++i) {
        const float f = static_cast<float>(rng.normal() * std::pow(2.0, rng.uniform(-26, 17)));
        const uint16_t h = f32_to_f16(f);
        const double got = f16_to_f32(h);
        // Neighbours of h in f16 must not be strictly closer to f.
        if (std::isinf(got)) {
            EXPECT_GE(std::fabs(f), 65504.0);
            continue;
        }
        for (int d : {-1, 1}) {
            const uint16_t n = static_cast<uint16_t>(h + d);
            const double nv = f16_to_f32(n);
            if (std::isnan(nv) || std::isinf(nv) || ((n ^ h) & 0x8000)) continue;
            ASSERT_LE(std::fabs(got - f), std::fabs(nv - f)) << f;
        }
    }
    EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // rounds to infinity
    EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);  // max finite
    EXPECT_EQ(f32_to_f16(0x1.0p-25f), 0x0000);  // exactly half the smallest subnormal: to even (0)
    EXPECT_EQ(f32_to_f16(0x1.8p-25f), 0x0001);
    EXPECT_EQ(f32_to_f16(-0x1.0p-24f), 0x8001);
}

TEST(Status, MessagesNameTheThing) {
    Status s = invalid_argument("block_size must be a power of two, got %d", 100);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.to_string(), "invalid argument: block_size must be a power of two, got 100");
    Result<int> r = s;
    EXPECT_FALSE(r.ok());
    Result<int> v = 5;
    EXPECT_TRUE(v.ok());
    EXPECT_EQ(*v, 5);
}

Result<int> half_of(int x) {
    if (x % 2) return invalid_argument("x must be even, got %d", x);
    return x / 2;
}
Status use_half(int x, int* out) {
    TCA_ASSIGN_OR_RETURN(*out, half_of(x));
    return Status();
}

TEST(Status, AssignOrReturnPropagates) {
    int out = 0;
    EXPECT_TRUE(use_half(8, &out).ok());
    EXPECT_EQ(out, 4);
    EXPECT_EQ(use_half(3, &out).message(), "x must be even, got 3");
}

TEST(TensorView, ShapesStridesAndAt) {
    HostTensor t(DType::kBF16, {2, 3, 4});
    EXPECT_EQ(t.numel(), 24);
    EXPECT_EQ(t.nbytes(), 48u);
    EXPECT_TRUE(t.view().is_contiguous());
    EXPECT_EQ(t.view().stride[0], 12);
    EXPECT_EQ(t.view().shape_string(), "[2, 3, 4] bf16");
    EXPECT_EQ(static_cast<char*>(t.view().at({1, 2, 3})) - static_cast<char*>(t.view().data), 46);
    t.fill(1.5);
    EXPECT_EQ(load_as_f32(t.view().data, 23, DType::kBF16), 1.5f);
}

TEST(ThreadPool, EveryItemOnceAndThreadIndicesInRange) {
    ThreadPool pool(4);
    std::vector<std::atomic<int>> hits(1000);
    std::atomic<bool> bad_index{false};
    pool.parallel_for(1000, [&](int64_t i, int t) {
        hits[static_cast<size_t>(i)].fetch_add(1);
        if (t < 0 || t >= 4) bad_index = true;
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    EXPECT_FALSE(bad_index.load());
    // Reuse many times (generation counter).
    std::atomic<int64_t> sum{0};
    for (int rep = 0; rep < 200; ++rep) pool.parallel_for(7, [&](int64_t i, int) { sum += i; });
    EXPECT_EQ(sum.load(), 200 * 21);
}

TEST(Rng, DeterministicAndRoughlyNormal) {
    Rng a(42), b(42), c(43);
    EXPECT_EQ(a.next_u64(), b.next_u64());
    EXPECT_NE(a.next_u64(), c.next_u64());
    Rng r(1);
    double s = 0, s2 = 0;
    const int n = 100000;
    for (int i = 0; i < n; ++i) {
        const double x = r.normal();
        s += x;
        s2 += x * x;
    }
    EXPECT_NEAR(s / n, 0.0, 0.02);
    EXPECT_NEAR(s2 / n, 1.0, 0.02);
}

TEST(Strings, SplitAndBytes) {
    EXPECT_EQ(split("a,b,,c", ',').size(), 4u);
    EXPECT_EQ(format_bytes(17), "17 B");
    EXPECT_EQ(format_bytes(3u << 20), "3.00 MiB");
}

}  // namespace
}  // namespace tca
