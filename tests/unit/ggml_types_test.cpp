// Unit tests for ggml type geometry, dequantizers (bit-exact against ggml's own output in
// ggml-quant-vectors) and the Q8_0/Q4_0 reference quantizers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/half.h"
#include "model/ggml_quants.h"
#include "model/ggml_types.h"
#include "model_test_util.h"

namespace tca {
namespace {

TEST(GgmlTypes, BlockGeometry) {
    EXPECT_EQ(ggml_type_traits(GgmlType::kQ8_0)->block_bytes, 34);
    EXPECT_EQ(ggml_type_traits(GgmlType::kQ4_0)->block_bytes, 18);
    EXPECT_EQ(ggml_type_traits(GgmlType::kQ5_0)->block_bytes, 22);
    EXPECT_EQ(ggml_type_traits(GgmlType::kQ4_K)->block_bytes, 144);
    EXPECT_EQ(ggml_type_traits(GgmlType::kQ6_K)->block_bytes, 210);
    EXPECT_EQ(ggml_type_traits(GgmlType::kQ6_K)->block_elems, 256);
    EXPECT_EQ(ggml_type_traits(4u), nullptr);  // removed Q4_2
    EXPECT_EQ(ggml_type_traits(1000u), nullptr);
    EXPECT_STREQ(ggml_type_name(GgmlType::kBF16), "BF16");
    EXPECT_EQ(ggml_type_label(77), "unknown type 77");

    EXPECT_EQ(*ggml_row_bytes(GgmlType::kQ8_0, 64), 68u);
    EXPECT_EQ(*ggml_row_bytes(GgmlType::kF16, 7), 14u);
    EXPECT_FALSE(ggml_row_bytes(GgmlType::kQ4_K, 64).ok());  // partial block
    EXPECT_FALSE(ggml_row_bytes(GgmlType::kF32, -1).ok());
    EXPECT_FALSE(ggml_row_bytes(GgmlType::kF32, int64_t{1} << 62).ok());  // overflow

    const Status st = ggml_check_dequantizable(GgmlType::kQ2_K);
    EXPECT_EQ(st.code(), StatusCode::kUnsupported);
    EXPECT_NE(st.message().find("unsupported tensor type Q2_K"), std::string::npos) << st.message();
    EXPECT_TRUE(ggml_check_dequantizable(GgmlType::kQ5_0).ok());
}

// Small hand-built blocks: known values through each format.
TEST(GgmlTypes, DequantizeHandBuiltBlocks) {
    std::vector<float> out(32);
    // Q8_0: d = 0.5, q = j - 16.
    uint8_t q8[34];
    const uint16_t half_d = f32_to_f16(0.5f);
    std::memcpy(q8, &half_d, 2);
    for (int j = 0; j < 32; ++j) q8[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
    ASSERT_TRUE(dequantize(GgmlType::kQ8_0, q8, out.data(), 32).ok());
    for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], 0.5f * static_cast<float>(j - 16));

    // Q5_0: d = 1; element j has low nibble j%16 and high bit set for odd j -> (j%16 + 16*odd) - 16.
    uint8_t q5[22] = {};
    const uint16_t one = f32_to_f16(1.0f);
    std::memcpy(q5, &one, 2);
    uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) {
        if (j % 2) qh |= 1u << j;
    }
    std::memcpy(q5 + 2, &qh, 4);
    for (int j = 0; j < 16; ++j) q5[6 + j] = static_cast<uint8_t>(j | (j << 4));
    ASSERT_TRUE(dequantize(GgmlType::kQ5_0, q5, out.data(), 32).ok());
    for (int j = 0; j < 32; ++j) {
        EXPECT_EQ(out[j], static_cast<float>((j % 16) + 16 * (j % 2) - 16)) << j;
    }

    // Q5_1: same bits, d = 2, m = -1: x = q * 2 - 1.
    uint8_t q51[24] = {};
    const uint16_t two = f32_to_f16(2.0f), m1 = f32_to_f16(-1.0f);
    std::memcpy(q51, &two, 2);
    std::memcpy(q51 + 2, &m1, 2);
    std::memcpy(q51 + 4, &qh, 4);
    for (int j = 0; j < 16; ++j) q51[8 + j] = static_cast<uint8_t>(j | (j << 4));
    ASSERT_TRUE(dequantize(GgmlType::kQ5_1, q51, out.data(), 32).ok());
    for (int j = 0; j < 32; ++j) {
        EXPECT_EQ(out[j], static_cast<float>(((j % 16) + 16 * (j % 2)) * 2 - 1)) << j;
    }

    // Q4_1: d = 2, m = -1, nibbles: element j (<16) = j, element j+16 = 15 - j.
    uint8_t q41[20] = {};
    std::memcpy(q41, &two, 2);
    std::memcpy(q41 + 2, &m1, 2);
    for (int j = 0; j < 16; ++j) q41[4 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    ASSERT_TRUE(dequantize(GgmlType::kQ4_1, q41, out.data(), 32).ok());
    for (int j = 0; j < 16; ++j) {
        EXPECT_EQ(out[j], static_cast<float>(j * 2 - 1));
        EXPECT_EQ(out[j + 16], static_cast<float>((15 - j) * 2 - 1));
    }

    EXPECT_EQ(dequantize(GgmlType::kQ2_K, q8, out.data(), 256).code(), StatusCode::kUnsupported);
    EXPECT_FALSE(dequantize(GgmlType::kQ8_0, q8, out.data(), 31).ok());
}

TEST(GgmlTypes, QuantizeRoundTripWithinHalfStep) {
    const std::vector<float> x = testing::test_values(256, 7);
    for (GgmlType t : {GgmlType::kQ8_0, GgmlType::kQ4_0}) {
        auto enc = encode_from_f32(t, x.data(), 256);
        ASSERT_TRUE(enc.ok());
        std::vector<float> y(256);
        ASSERT_TRUE(dequantize(t, enc->data(), y.data(), 256).ok());
        for (int b = 0; b < 8; ++b) {
            float amax = 0.0f;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
            // Q8_0: half a step. Q4_0 maps the largest magnitude to -8, so the opposite
            // extreme clamps at +7: one full step. Plus the f16 rounding of the scale.
            const bool q8 = t == GgmlType::kQ8_0;
            const float step = amax / (q8 ? 127.0f : 8.0f);
            const float bound = (q8 ? 0.5f : 1.0f) * step + 1e-3f * amax;
            for (int j = 0; j < 32; ++j) {
                EXPECT_LE(std::fabs(y[b * 32 + j] - x[b * 32 + j]), bound)
                    << ggml_type_name(t) << " element " << b * 32 + j;
            }
        }
    }
    EXPECT_FALSE(encode_from_f32(GgmlType::kQ4_K, x.data(), 256).ok());
}

class QuantVectors : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = testing::shared_models_dir() + "/ggml-quant-vectors";
        if (!std::filesystem::exists(dir_ + "/input.f32")) {
            GTEST_SKIP() << "ggml-quant-vectors not found at " << dir_ << ": skipping";
        }
        ASSERT_TRUE(load_f32("input.f32", &input_));
        ASSERT_EQ(input_.size(), 4u * 512u);
    }
    bool load_f32(const std::string& name, std::vector<float>* out) {
        std::vector<uint8_t> bytes;
        if (!testing::read_file_bytes(dir_ + "/" + name, &bytes)) return false;
        out->resize(bytes.size() / 4);
        std::memcpy(out->data(), bytes.data(), out->size() * 4);
        return true;
    }
    // Dequantizes <name>.bin row by row and compares with ggml's <name>.deq.f32 bit for bit.
    void check_dequant(const std::string& name, GgmlType t) {
        std::vector<uint8_t> bin;
        std::vector<float> expect;
        ASSERT_TRUE(testing::read_file_bytes(dir_ + "/" + name + ".bin", &bin));
        ASSERT_TRUE(load_f32(name + ".deq.f32", &expect));
        const uint64_t row_bytes = *ggml_row_bytes(t, 512);
        ASSERT_EQ(bin.size(), 4 * row_bytes);
        std::vector<float> got(512);
        int mismatches = 0;
        for (int r = 0; r < 4; ++r) {
            ASSERT_TRUE(dequantize(t, bin.data() + r * row_bytes, got.data(), 512).ok());
            for (int j = 0; j < 512; ++j) {
                const float e = expect[static_cast<size_t>(r * 512 + j)];
                if (f32_bits(got[static_cast<size_t>(j)]) != f32_bits(e) && mismatches++ < 5) {
                    ADD_FAILURE() << name << " row " << r << " elem " << j << ": got "
                                  << got[static_cast<size_t>(j)] << ", ggml " << e;
                }
            }
        }
        EXPECT_EQ(mismatches, 0) << name;
    }
    std::string dir_;
    std::vector<float> input_;
};

TEST_F(QuantVectors, DequantMatchesGgmlBitExactly) {
    check_dequant("q8_0", GgmlType::kQ8_0);
    check_dequant("q4_0", GgmlType::kQ4_0);
    check_dequant("q4_K", GgmlType::kQ4_K);
    check_dequant("q6_K", GgmlType::kQ6_K);
    check_dequant("f16", GgmlType::kF16);
    check_dequant("bf16", GgmlType::kBF16);
}

// Our reference quantizers follow the same rules as ggml's, so the bytes agree exactly.
TEST_F(QuantVectors, QuantizersMatchGgmlBytes) {
    for (auto [name, t] : {std::pair{"q8_0", GgmlType::kQ8_0}, std::pair{"q4_0", GgmlType::kQ4_0},
                           std::pair{"f16", GgmlType::kF16}, std::pair{"bf16", GgmlType::kBF16}}) {
        std::vector<uint8_t> expect;
        ASSERT_TRUE(testing::read_file_bytes(dir_ + "/" + name + ".bin", &expect));
        auto got = encode_from_f32(t, input_.data(), 4 * 512);
        ASSERT_TRUE(got.ok());
        EXPECT_EQ(*got, expect) << name;
    }
}

}  // namespace
}  // namespace tca
