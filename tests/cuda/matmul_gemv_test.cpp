// The CUDA matmul's GEMV kernels (backend/cuda/matmul.cu, the decode shape: one row of x, 16-bit
// weights, activations in the weight's type; the staged kernel, bitwise equal to the register
// kernel) against float64 and against the cuBLAS path on the same inputs (a case of 3 rows checks that the dispatch leaves them to cuBLAS), at the row lengths of real models (4096 + a tail of 8, and LLaMA-8B's 14336)
// that the parity suite's small shapes do not reach: x aligned and unaligned (scalar loads),
// with and without bias. Both paths sum the same exact products of rounded values in f32, so
// each must be within the f32 summation bound n_in * 2^-24 * sum |w x| of the float64 sum.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/rng.h"
#include "support/device_staging.h"
#if TCA_HAVE_CUDA
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_runtime.h"
#endif

namespace tca::test {
namespace {

#if TCA_HAVE_CUDA

struct GemvCase {
    GgmlType type;
    int64_t n_out, n_in, n_tokens, x_pad;
    bool bias;
};

float round_to(GgmlType t, float v) {
    return t == GgmlType::kBF16 ? bf16_to_f32(f32_to_bf16(v)) : f16_to_f32(f32_to_f16(v));
}

// Runs matmul through the GEMV kernel (gemv true) or cuBLAS on device copies of the inputs.
std::vector<float> run_matmul(const GemvCase& c, const std::vector<uint16_t>& w, const std::vector<float>& x,
                              const std::vector<float>& bias, cuda::GemvKernel gemv) {
    const int64_t x_ld = c.n_in + c.x_pad;
    auto dw = cuda::DeviceBuffer::allocate(w.size() * 2);
    auto dx = cuda::DeviceBuffer::allocate(x.size() * 4);
    auto db = cuda::DeviceBuffer::allocate(bias.size() * 4);
    auto dy = cuda::DeviceBuffer::allocate(static_cast<size_t>(c.n_tokens * c.n_out) * 4);
    EXPECT_TRUE(dw.ok() && dx.ok() && db.ok() && dy.ok());
    EXPECT_TRUE(cuda::copy_to_device(dw->get(), w.data(), w.size() * 2).ok());
    EXPECT_TRUE(cuda::copy_to_device(dx->get(), x.data(), x.size() * 4).ok());
    EXPECT_TRUE(cuda::copy_to_device(db->get(), bias.data(), bias.size() * 4).ok());
    MatmulParams p;
    // x_pad shifts the first row by one float when set, so rows are not 16-byte aligned.
    const int64_t shift = c.x_pad > 0 ? 1 : 0;
    p.x = slice(make_view(static_cast<float*>(dx->get()) + shift, DType::kF32, {c.n_tokens, x_ld}), 1, 0, c.n_in);
    p.w = MatrixView{dw->get(), c.type, c.n_out, c.n_in};
    if (c.bias) p.bias = make_view(db->get(), DType::kF32, {c.n_out});
    p.y = make_view(dy->get(), DType::kF32, {c.n_tokens, c.n_out});
    p.act = MatmulActivations::kWeightDotType;
    cuda::set_matmul_gemv(gemv);
    const Status s = ops::matmul(Device::kCuda, p);
    cuda::set_matmul_gemv(cuda::GemvKernel::kRegisters);
    EXPECT_TRUE(s.ok()) << s.to_string();
    EXPECT_TRUE(cuda::synchronize().ok());
    std::vector<float> y(static_cast<size_t>(c.n_tokens * c.n_out));
    EXPECT_TRUE(cuda::copy_to_host(y.data(), dy->get(), y.size() * 4).ok());
    return y;
}

class MatmulGemv : public ::testing::TestWithParam<GemvCase> {};

TEST_P(MatmulGemv, MatchesFloat64AndCublas) {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    const GemvCase& c = GetParam();
    Rng rng(static_cast<uint64_t>(c.n_out * 31 + c.n_in + c.n_tokens));
    std::vector<uint16_t> w(static_cast<size_t>(c.n_out * c.n_in));
    std::vector<float> wf(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
        const float v = static_cast<float>(rng.normal()) * 0.05f;
        w[i] = c.type == GgmlType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
        wf[i] = c.type == GgmlType::kBF16 ? bf16_to_f32(w[i]) : f16_to_f32(w[i]);
    }
    const int64_t x_ld = c.n_in + c.x_pad;
    std::vector<float> x(static_cast<size_t>(c.n_tokens * x_ld + 1));
    for (float& v : x) v = static_cast<float>(rng.normal());
    std::vector<float> bias(static_cast<size_t>(c.n_out));
    for (float& v : bias) v = static_cast<float>(rng.normal());
    const std::vector<float> got = run_matmul(c, w, x, bias, cuda::GemvKernel::kStaged);
    const std::vector<float> regs = run_matmul(c, w, x, bias, cuda::GemvKernel::kRegisters);
    const std::vector<float> blas = run_matmul(c, w, x, bias, cuda::GemvKernel::kOff);
    // The two GEMV kernels sum the same products in the same order per lane: bitwise equal.
    EXPECT_EQ(0, std::memcmp(got.data(), regs.data(), got.size() * sizeof(float)));
    const int64_t shift = c.x_pad > 0 ? 1 : 0;
    int64_t bad = 0;
    for (int64_t t = 0; t < c.n_tokens; ++t) {
        for (int64_t o = 0; o < c.n_out; ++o) {
            double sum = 0, mag = 0;
            for (int64_t i = 0; i < c.n_in; ++i) {
                const double term = static_cast<double>(wf[static_cast<size_t>(o * c.n_in + i)]) *
                                    round_to(c.type, x[static_cast<size_t>(shift + t * x_ld + i)]);
                sum += term;
                mag += std::fabs(term);
            }
            if (c.bias) {
                sum += bias[static_cast<size_t>(o)];
                mag += std::fabs(bias[static_cast<size_t>(o)]);
            }
            const double bound = static_cast<double>(c.n_in + 1) * std::ldexp(1.0, -24) * mag;
            const size_t k = static_cast<size_t>(t * c.n_out + o);
            if (std::fabs(got[k] - sum) > bound || std::fabs(blas[k] - sum) > bound) {
                if (++bad <= 5) {
                    ADD_FAILURE() << "t " << t << " o " << o << ": gemv " << got[k] << " cublas " << blas[k]
                                  << " float64 " << sum << " bound " << bound;
                }
            }
        }
    }
    EXPECT_EQ(bad, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Cuda, MatmulGemv,
    ::testing::Values(GemvCase{GgmlType::kBF16, 300, 4104, 1, 0, true}, GemvCase{GgmlType::kBF16, 300, 4104, 1, 3, false},
                      GemvCase{GgmlType::kBF16, 64, 14336, 1, 0, false}, GemvCase{GgmlType::kBF16, 257, 4096, 3, 5, true},
                      GemvCase{GgmlType::kF16, 300, 4104, 1, 1, false}, GemvCase{GgmlType::kF16, 129, 14336, 1, 0, true}),
    [](const ::testing::TestParamInfo<GemvCase>& i) {
        const GemvCase& c = i.param;
        return std::string(c.type == GgmlType::kBF16 ? "BF16" : "F16") + "_out" + std::to_string(c.n_out) + "_in" +
               std::to_string(c.n_in) + "_t" + std::to_string(c.n_tokens) + (c.x_pad ? "_unaligned" : "") +
               (c.bias ? "_bias" : "");
    });

// MatmulInput through the staged kernel (the op computed in shared memory) against the same
// matmul with the op run first as its own kernel and the register GEMV: bitwise equal, at the
// 8B model's row lengths (the parity suite's MatmulInputParity covers the default kernel).
TEST(MatmulGemvStaged, FoldedInputBitwiseOpThenRegisterGemv) {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    for (const MatmulInput in : {MatmulInput::kRmsNorm, MatmulInput::kSwiglu}) {
        for (const int64_t n_in : {4096, 14336}) {
            SCOPED_TRACE(std::string(matmul_input_name(in)) + " n_in " + std::to_string(n_in));
            const int64_t n_out = 203;
            Rng rng(static_cast<uint64_t>(n_in + 7 * static_cast<int64_t>(in)));
            std::vector<uint16_t> w(static_cast<size_t>(n_out * n_in));
            for (uint16_t& v : w) v = f32_to_bf16(static_cast<float>(rng.normal()) * 0.05f);
            std::vector<float> xu(static_cast<size_t>(2 * n_in)), g(static_cast<size_t>(n_in)), res(static_cast<size_t>(n_out));
            for (float& v : xu) v = static_cast<float>(rng.normal()) * 2.0f;
            for (float& v : g) v = 1.0f + static_cast<float>(rng.normal()) * 0.5f;
            for (float& v : res) v = static_cast<float>(rng.normal()) * 4.0f;
            auto dw = cuda::DeviceBuffer::allocate(w.size() * 2);
            auto dxu = cuda::DeviceBuffer::allocate(xu.size() * 4);
            auto dg = cuda::DeviceBuffer::allocate(g.size() * 4);
            auto dy = cuda::DeviceBuffer::allocate(res.size() * 4);
            ASSERT_TRUE(dw.ok() && dxu.ok() && dg.ok() && dy.ok());
            ASSERT_TRUE(cuda::copy_to_device(dw->get(), w.data(), w.size() * 2).ok());
            ASSERT_TRUE(cuda::copy_to_device(dxu->get(), xu.data(), xu.size() * 4).ok());
            ASSERT_TRUE(cuda::copy_to_device(dg->get(), g.data(), g.size() * 4).ok());
            std::vector<float> out[2];
            int i = 0;
            for (const cuda::GemvKernel k : {cuda::GemvKernel::kStaged, cuda::GemvKernel::kRegisters}) {
                ASSERT_TRUE(cuda::copy_to_device(dy->get(), res.data(), res.size() * 4).ok());
                const TensorView both = make_view(dxu->get(), DType::kF32, {1, 2 * n_in});
                MatmulParams p;
                p.x = slice(both, 1, 0, n_in);
                p.w = MatrixView{dw->get(), GgmlType::kBF16, n_out, n_in};
                p.y = make_view(dy->get(), DType::kF32, {1, n_out});
                p.residual = p.y;  // in place, as the decode step's down projection
                p.act = MatmulActivations::kWeightDotType;
                p.input = in;
                if (in == MatmulInput::kRmsNorm) {
                    p.norm_weight = make_view(dg->get(), DType::kF32, {n_in});
                } else {
                    p.up = slice(both, 1, n_in, n_in);
                }
                cuda::set_matmul_gemv(k);
                const Status s = ops::matmul(Device::kCuda, p);
                cuda::set_matmul_gemv(cuda::GemvKernel::kRegisters);
                ASSERT_TRUE(s.ok()) << s.to_string();
                ASSERT_TRUE(cuda::synchronize().ok());
                out[i].resize(res.size());
                ASSERT_TRUE(cuda::copy_to_host(out[i].data(), dy->get(), res.size() * 4).ok());
                ++i;
            }
            EXPECT_EQ(0, std::memcmp(out[0].data(), out[1].data(), out[0].size() * sizeof(float)));
        }
    }
}

#endif  // TCA_HAVE_CUDA

}  // namespace
}  // namespace tca::test
