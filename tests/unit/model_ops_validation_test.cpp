// Validation of the model ops (ops.cpp) and the RoPE frequency tables (backend/rope_freqs.h):
// bad shapes, types and values are rejected with messages naming the thing and the value, and
// inv_freq matches closed-form values for plain, linear and Llama 3 scaling.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "backend/rope_freqs.h"

namespace tca {
namespace {

::testing::AssertionResult fails_with(const Status& s, const std::string& text) {
    if (s.ok()) return ::testing::AssertionFailure() << "accepted; expected \"" << text << "\"";
    if (s.message().find(text) == std::string::npos) {
        return ::testing::AssertionFailure() << "message \"" << s.message() << "\" lacks \"" << text << "\"";
    }
    return ::testing::AssertionSuccess();
}

struct MatmulFixture {
    std::vector<float> x = std::vector<float>(3 * 256), y = std::vector<float>(3 * 5), bias = std::vector<float>(5);
    std::vector<uint8_t> w = std::vector<uint8_t>(5 * 256 * 4);
    MatmulParams p() {
        MatmulParams q;
        q.x = make_view(x.data(), DType::kF32, {3, 256});
        q.w = MatrixView{w.data(), GgmlType::kF32, 5, 256};
        q.y = make_view(y.data(), DType::kF32, {3, 5});
        return q;
    }
};

TEST(ModelOpsValidation, Matmul) {
    MatmulFixture f;
    EXPECT_TRUE(validate(f.p()).ok());
    MatmulParams p = f.p();
    p.x = make_view(f.x.data(), DType::kF32, {3, 128});
    EXPECT_TRUE(fails_with(validate(p), "matmul: tensor x: expected [*, 256], got [3, 128]"));
    p = f.p();
    p.y = make_view(f.y.data(), DType::kF32, {3, 4});
    EXPECT_TRUE(fails_with(validate(p), "matmul: tensor y: expected [3, 5], got [3, 4]"));
    p = f.p();
    p.bias = make_view(f.bias.data(), DType::kF32, {4});
    EXPECT_TRUE(fails_with(validate(p), "matmul: tensor bias: expected [5], got [4]"));
    p = f.p();
    p.w.type = GgmlType::kQ2_K;
    EXPECT_TRUE(fails_with(validate(p), "matmul: weight w has unsupported type Q2_K"));
    p = f.p();
    p.w.type = GgmlType::kQ4_K;
    p.w.n_cols = 64;
    p.x = make_view(f.x.data(), DType::kF32, {3, 64});
    EXPECT_TRUE(fails_with(validate(p), "row length 64 must be a multiple of the Q4_K block size 256"));
    p = f.p();
    p.w.data = nullptr;
    EXPECT_TRUE(fails_with(validate(p), "matmul: weight w is missing"));
    p = f.p();
    p.w.n_rows = 0;
    EXPECT_TRUE(fails_with(validate(p), "must have positive extents, got [0, 256]"));
    p = f.p();
    p.y = make_view(f.x.data() + 5, DType::kF32, {3, 5});
    EXPECT_TRUE(fails_with(validate(p), "matmul: y must not overlap x"));
    p = f.p();
    p.x.dtype = DType::kF16;
    EXPECT_TRUE(fails_with(validate(p), "matmul: tensor x must be f32, got f16"));
}

// MatmulParams::residual: [n_tokens, n_out] f32; y is either that exact view or apart from it.
TEST(ModelOpsValidation, MatmulResidual) {
    MatmulFixture f;
    std::vector<float> r(4 * 6);
    MatmulParams p = f.p();
    p.residual = make_view(r.data(), DType::kF32, {3, 5});
    EXPECT_TRUE(validate(p).ok());
    p.y = p.residual;  // in place
    EXPECT_TRUE(validate(p).ok());
    p = f.p();
    p.residual = make_view(r.data(), DType::kF32, {3, 4});
    EXPECT_TRUE(fails_with(validate(p), "matmul: tensor residual: expected [3, 5], got [3, 4]"));
    p = f.p();
    p.residual = make_view(r.data(), DType::kF32, {2, 5});
    EXPECT_TRUE(fails_with(validate(p), "matmul: tensor residual: expected [3, 5], got [2, 5]"));
    p = f.p();
    p.residual = make_view(r.data(), DType::kF32, {3, 5});
    p.residual.dtype = DType::kF16;
    EXPECT_TRUE(fails_with(validate(p), "matmul: tensor residual must be f32, got f16"));
    // Partial overlaps: shifted by one element, and the same start with another row stride.
    p = f.p();
    p.residual = make_view(r.data(), DType::kF32, {3, 5});
    p.y = make_view(r.data() + 1, DType::kF32, {3, 5});
    EXPECT_TRUE(fails_with(validate(p), "matmul: y overlaps residual without being the same view"));
    p.y = slice(make_view(r.data(), DType::kF32, {3, 6}), 1, 0, 5);
    EXPECT_TRUE(fails_with(validate(p), "y row stride 6, residual row stride 5"));
    // One row: the row stride does not matter, the same data is the same view.
    p = f.p();
    p.x = make_view(f.x.data(), DType::kF32, {1, 256});
    p.residual = slice(make_view(r.data(), DType::kF32, {1, 6}), 1, 0, 5);
    p.y = make_view(r.data(), DType::kF32, {1, 5});
    EXPECT_TRUE(validate(p).ok());
}

// MatmulParams::input: rms_norm needs its weight [n_in] and a finite eps >= 0, swiglu its up
// [n_tokens, n_in] apart from y; neither view may be set for another input.
TEST(ModelOpsValidation, MatmulInput) {
    MatmulFixture f;
    std::vector<float> g(256), up(3 * 256);
    MatmulParams p = f.p();
    p.input = MatmulInput::kRmsNorm;
    p.norm_weight = make_view(g.data(), DType::kF32, {256});
    EXPECT_TRUE(validate(p).ok());
    p.norm_weight = make_view(g.data(), DType::kF32, {128});
    EXPECT_TRUE(fails_with(validate(p), "matmul: tensor norm_weight: expected [256], got [128]"));
    p.norm_weight = TensorView{};
    EXPECT_TRUE(fails_with(validate(p), "norm_weight"));
    p.norm_weight = make_view(g.data(), DType::kF32, {256});
    p.norm_eps = -1.0f;
    EXPECT_TRUE(fails_with(validate(p), "matmul: norm_eps must be finite and >= 0, got -1"));
    p.norm_eps = std::nanf("");
    EXPECT_TRUE(fails_with(validate(p), "matmul: norm_eps must be finite and >= 0, got nan"));
    p = f.p();
    p.input = MatmulInput::kSwiglu;
    p.up = make_view(up.data(), DType::kF32, {3, 256});
    EXPECT_TRUE(validate(p).ok());
    p.up = make_view(up.data(), DType::kF32, {2, 256});
    EXPECT_TRUE(fails_with(validate(p), "matmul: tensor up: expected [3, 256], got [2, 256]"));
    f.y.resize(3 * 256);  // y and up in one buffer
    p = f.p();
    p.input = MatmulInput::kSwiglu;
    p.up = make_view(f.y.data(), DType::kF32, {3, 256});
    EXPECT_TRUE(fails_with(validate(p), "matmul: y must not overlap up"));
    p = f.p();
    p.up = make_view(up.data(), DType::kF32, {3, 256});
    EXPECT_TRUE(fails_with(validate(p), "matmul: up is set but input is x (swiglu uses it)"));
    p = f.p();
    p.input = MatmulInput::kSwiglu;
    p.up = make_view(up.data(), DType::kF32, {3, 256});
    p.norm_weight = make_view(g.data(), DType::kF32, {256});
    EXPECT_TRUE(fails_with(validate(p), "matmul: norm_weight is set but input is swiglu (rms_norm uses it)"));
    p = f.p();
    p.input = static_cast<MatmulInput>(7);
    EXPECT_TRUE(fails_with(validate(p), "matmul: unknown input 7"));
    EXPECT_STREQ(matmul_input_name(MatmulInput::kRmsNorm), "rms_norm");
}

TEST(ModelOpsValidation, EmbedIdsAgainstVocab) {
    std::vector<uint8_t> table(512 * 64 * 2);
    std::vector<int32_t> ids = {1, 600, 3};
    std::vector<float> out(3 * 64);
    EmbedParams p;
    p.table = MatrixView{table.data(), GgmlType::kF16, 512, 64};
    p.ids = make_view(ids.data(), DType::kI32, {3});
    p.out = make_view(out.data(), DType::kF32, {3, 64});
    EXPECT_TRUE(fails_with(validate(p), "embed: token id 600 (ids[1]) is out of range for vocab size 512"));
    ids[1] = -1;
    EXPECT_TRUE(fails_with(validate(p), "token id -1 (ids[1])"));
    ids[1] = 511;
    EXPECT_TRUE(validate(p).ok());
    p.out = make_view(out.data(), DType::kF32, {3, 32});
    EXPECT_TRUE(fails_with(validate(p), "embed: tensor out: expected [3, 64], got [3, 32]"));
}

TEST(ModelOpsValidation, RmsNormRopeSwigluAdd) {
    std::vector<float> buf(4 * 2 * 8), w(8), freq(4);
    std::vector<int32_t> pos = {0, 1, -2, 3};
    RmsNormParams r;
    r.x = make_view(buf.data(), DType::kF32, {4, 8});
    r.out = r.x;
    r.weight = make_view(w.data(), DType::kF32, {7});
    EXPECT_TRUE(fails_with(validate(r), "rms_norm: tensor weight: expected [8], got [7]"));
    r.weight = make_view(w.data(), DType::kF32, {8});
    r.eps = -1.0f;
    EXPECT_TRUE(fails_with(validate(r), "rms_norm: eps must be finite and >= 0, got -1"));

    RopeParams q;
    q.x = make_view(buf.data(), DType::kF32, {4, 2, 8});
    q.positions = make_view(pos.data(), DType::kI32, {4});
    q.inv_freq = make_view(freq.data(), DType::kF32, {4});
    EXPECT_TRUE(fails_with(validate(q), "rope: positions[2] must be >= 0, got -2"));
    pos[2] = 2;
    EXPECT_TRUE(validate(q).ok());
    q.inv_freq = make_view(freq.data(), DType::kF32, {3});
    EXPECT_TRUE(fails_with(validate(q), "rope: tensor inv_freq: expected [4], got [3]"));
    q.x = make_view(buf.data(), DType::kF32, {4, 2, 7});
    EXPECT_TRUE(fails_with(validate(q), "rope: head_dim must be even and >= 2, got 7"));

    SwigluParams s;
    s.gate = make_view(buf.data(), DType::kF32, {4, 16});
    s.up = make_view(buf.data() + 4, DType::kF32, {4, 15});
    s.out = s.gate;
    EXPECT_TRUE(fails_with(validate(s), "swiglu: tensor up: expected [4, 16], got [4, 15]"));

    AddParams a;
    a.a = make_view(buf.data(), DType::kF32, {4, 16});
    a.b = a.a;
    a.out = make_view(buf.data(), DType::kI32, {4, 16});
    EXPECT_TRUE(fails_with(validate(a), "add: tensor out must be f32, got i32"));
}

TEST(RopeFreqs, ClosedForm) {
    const std::vector<float> f = rope_inv_freq(8, 10000.0, RopeScaling{}).value();
    ASSERT_EQ(f.size(), 4u);
    EXPECT_EQ(f[0], 1.0f);
    EXPECT_EQ(f[1], 0.1f);    // 10000^(-2/8)
    EXPECT_EQ(f[2], 0.01f);   // 10000^(-4/8)
    EXPECT_EQ(f[3], 0.001f);  // 10000^(-6/8)
    RopeScaling lin;
    lin.type = RopeScaling::Type::kLinear;
    lin.factor = 4.0;
    const std::vector<float> g = rope_inv_freq(8, 10000.0, lin).value();
    EXPECT_EQ(g[1], static_cast<float>(0.1 / 4.0));
}

// Llama 3.1 scaling (factor 8, low 1, high 4, context 8192) at head_dim 128, base 500000: with
// wavelength L = 2 pi / f, L < 2048 keeps f, L > 8192 gives f / 8, between them the blend
// s = (8192 / L - 1) / 3, f' = (1 - s) f / 8 + s f.
TEST(RopeFreqs, Llama3Scaling) {
    RopeScaling s;
    s.type = RopeScaling::Type::kLlama3;
    s.factor = 8.0;
    s.low_freq_factor = 1.0;
    s.high_freq_factor = 4.0;
    s.original_context_length = 8192;
    const std::vector<float> f = rope_inv_freq(128, 500000.0, s).value();
    ASSERT_EQ(f.size(), 64u);
    const double pi = 3.14159265358979323846;
    int n_keep = 0, n_div = 0, n_blend = 0;
    for (int i = 0; i < 64; ++i) {
        const double base_f = std::pow(500000.0, -2.0 * i / 128.0);
        const double wl = 2 * pi / base_f;
        double want;
        if (wl < 2048) {
            want = base_f;
            ++n_keep;
        } else if (wl > 8192) {
            want = base_f / 8;
            ++n_div;
        } else {
            const double sm = (8192 / wl - 1) / 3;
            want = (1 - sm) * base_f / 8 + sm * base_f;
            ++n_blend;
        }
        EXPECT_EQ(f[static_cast<size_t>(i)], static_cast<float>(want)) << "i = " << i;
    }
    // All three bands occur at these settings (the published Llama 3.1 tables).
    EXPECT_GT(n_keep, 0);
    EXPECT_GT(n_div, 0);
    EXPECT_GT(n_blend, 0);
    EXPECT_EQ(f[0], 1.0f);
    // i = 63: wavelength 2 pi / 500000^(-126/128) ~ 2.5e6 > 8192: divided by 8.
    EXPECT_EQ(f[63], static_cast<float>(std::pow(500000.0, -126.0 / 128.0) / 8.0));
}

TEST(RopeFreqs, RejectsBadParameters) {
    EXPECT_TRUE(fails_with(rope_inv_freq(7, 10000.0, RopeScaling{}).status(),
                           "head_dim must be even and >= 2, got 7"));
    EXPECT_TRUE(fails_with(rope_inv_freq(8, 0.5, RopeScaling{}).status(), "freq_base must be finite and > 1, got 0.5"));
    RopeScaling s;
    s.type = RopeScaling::Type::kLlama3;
    s.factor = 0.0;
    EXPECT_TRUE(fails_with(rope_inv_freq(8, 10000.0, s).status(), "scaling factor must be finite and > 0, got 0"));
    s.factor = 8.0;
    s.low_freq_factor = 4.0;
    s.high_freq_factor = 1.0;
    EXPECT_TRUE(fails_with(rope_inv_freq(8, 10000.0, s).status(), "low_freq_factor < high_freq_factor, got 4 and 1"));
}

}  // namespace
}  // namespace tca
