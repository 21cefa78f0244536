// Parity of the model ops (matmul, rms_norm, rope, swiglu, embed, add): the CPU backend against
// the float64 reference, within the FlashAttention-3 rule (2x the naive float32 error plus the
// harness floor), on NaN-prefilled outputs guarded by canaries. matmul covers every weight type
// with random valid blocks, n_in 64/256/768 (K-quants only at multiples of 256), n_out 1/5/172,
// n_tokens across the decode (<= 4) and GEMM paths, bias on and off, strided rows, f32 and
// weight-dot-type activations (the "_native" cases). Token counts
// also include the suite's edge lengths (b = 16, w = 64: 15, 16, 17, 55, 63, 64, 80, 1000).
// matmul with a residual (MatmulParams::residual): in place and into another buffer, with and
// without bias, also bitwise against matmul followed by add on the backend under test.
// matmul of rms_norm(x) or swiglu(x, up) (MatmulParams::input): against float64 and bitwise
// against the op followed by matmul.
// In tca_cuda_tests the matmul and embed cases of quantized weight types check that the CUDA
// backend answers "unsupported" and are skipped (it takes F32/F16/BF16 weights only).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cpu/weight_decode.h"
#include "backend/rope_freqs.h"
#include "model/ggml_quants.h"
#include "parity/parity_common.h"
#include "reference/ref_model_ops.h"
#include "support/device_staging.h"

namespace tca::test {
namespace {

constexpr int kB = 16, kW = 64;  // the block size and window that give the edge tags

template <class Params>
Status run_on(Backend b, const Params& p, Status (*ref_fn)(const Params&),
              Status (*naive_fn)(const Params&), Status (*lowp_fn)(const Params&),
              Status (*cpu_fn)(const Params&), Status (*cuda_fn)(const Params&)) {
    switch (b) {
        case Backend::kRef: return ref_fn(p);
        case Backend::kNaiveF32: return naive_fn(p);
        case Backend::kNaiveLowp: return lowp_fn(p);
        case Backend::kCpu: return cpu_fn(p);
        case Backend::kCuda: return cuda_fn(p);
    }
    return Status();
}
#define TCA_MODEL_RUN(name, Params)                                                          \
    Status run_model(Backend b, const Params& p) {                                           \
        return run_on<Params>(b, p, &ref::name, &ref::naive_f32::name, &naive_lowp_run,      \
                              &cpu::name, &run_staged_on_cuda);                              \
    }
TCA_FOR_EACH_MODEL_OP(TCA_MODEL_RUN)
#undef TCA_MODEL_RUN

// The FA3 check of one output; the errors go to the table printed at exit.
void check_fa3(const std::string& what, const Out3& o) {
    const Tolerance tol = fa3_tolerance(o.naive, o.ref);
    const ErrorStats s = error_stats(o.cpu, o.ref);
    record_error(what, s.max_abs, tol.naive_err, s.max_want);
    EXPECT_TRUE(all_near(o.cpu, o.ref, tol.bound(), what + " cpu vs float64"))
        << "tolerance = 2 x naive f32 error " << tol.naive_err << " + floor " << tol.floor;
    expect_canaries(o, what);
}

// ---- weights ----------------------------------------------------------------------------------

const std::vector<GgmlType>& all_types() {
    static const std::vector<GgmlType> t = {
        GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_0,
        GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ4_K, GgmlType::kQ6_K};
    return t;
}
bool is_k_quant(GgmlType t) { return t == GgmlType::kQ4_K || t == GgmlType::kQ6_K; }

// The CUDA backend takes F32/F16/BF16 weights only (the GPU engine dequantizes at load); its
// matmul and embed answer "unsupported" for the others, which the cases below check and skip.
bool under_test_supports(GgmlType t) {
    return kUnderTest != Backend::kCuda || t == GgmlType::kF32 || t == GgmlType::kF16 ||
           t == GgmlType::kBF16;
}
#define TCA_SKIP_UNSUPPORTED_WEIGHTS(b, status, type)                                          \
    if ((b) == kUnderTest && !under_test_supports(type)) {                                     \
        ASSERT_EQ((status).code(), StatusCode::kUnsupported) << (status).to_string();          \
        GTEST_SKIP() << backend_name(kUnderTest) << " does not support " << ggml_type_name(type) \
                     << " weights: " << (status).message();                                    \
    }

void put_f16(uint8_t* p, double v) {
    const uint16_t h = f32_to_f16(static_cast<float>(v));
    std::memcpy(p, &h, 2);
}

// n_rows x n_cols random weights of type t: float types from N(0, 0.5); block types as random
// bytes (every quant value and packed scale appears) with their f16 scale fields set to small
// finite values, so every block is valid.
std::vector<uint8_t> random_weights(GgmlType t, int64_t n_rows, int64_t n_cols, Rng& rng) {
    const GgmlTypeTraits* tr = ggml_type_traits(t);
    if (t == GgmlType::kF32 || t == GgmlType::kF16 || t == GgmlType::kBF16) {
        std::vector<float> v(static_cast<size_t>(n_rows * n_cols));
        for (float& x : v) x = static_cast<float>(0.5 * rng.normal());
        return encode_from_f32(t, v.data(), n_rows * n_cols).value();
    }
    const int64_t n_blocks = n_rows * n_cols / tr->block_elems;
    std::vector<uint8_t> out(static_cast<size_t>(n_blocks * tr->block_bytes));
    for (uint8_t& b : out) b = static_cast<uint8_t>(rng.next_u64());
    for (int64_t i = 0; i < n_blocks; ++i) {
        uint8_t* blk = out.data() + i * tr->block_bytes;
        const double sign = rng.uniform() < 0.5 ? -1.0 : 1.0;
        switch (t) {
            case GgmlType::kQ8_0: put_f16(blk, sign * rng.uniform(0.001, 0.01)); break;
            case GgmlType::kQ4_0:
            case GgmlType::kQ5_0: put_f16(blk, sign * rng.uniform(0.01, 0.1)); break;
            case GgmlType::kQ4_1:
            case GgmlType::kQ5_1:
                put_f16(blk, rng.uniform(0.01, 0.1));
                put_f16(blk + 2, rng.uniform(-0.5, 0.5));
                break;
            case GgmlType::kQ4_K:
                put_f16(blk, rng.uniform(0.0005, 0.003));
                put_f16(blk + 2, rng.uniform(0.0005, 0.003));
                break;
            case GgmlType::kQ6_K: put_f16(blk + 208, sign * rng.uniform(0.0001, 0.001)); break;
            default: ADD_FAILURE() << "no generator for " << ggml_type_name(t);
        }
    }
    return out;
}

std::vector<int64_t> edge_lengths() { return {1, 15, 16, 17, 55, 63, 64, 80, 1000}; }

// ---- matmul -----------------------------------------------------------------------------------

// A matmul case's test name: [prefix_]TYPE_tN_inN_outN, then its flags, "_native" for the
// weight-dot-type activations, and the seed.
std::string matmul_case_name(const std::string& prefix, GgmlType type, int64_t n_tokens, int64_t n_in,
                             int64_t n_out, const std::string& flags, MatmulActivations act, uint64_t seed) {
    std::ostringstream os;
    os << prefix << ggml_type_name(type) << "_t" << n_tokens << "_in" << n_in << "_out" << n_out << flags
       << (act == MatmulActivations::kWeightDotType ? "_native" : "") << "_s" << seed;
    return os.str();
}

struct MatmulCase {
    GgmlType type = GgmlType::kF32;
    int64_t n_tokens = 1, n_in = 64, n_out = 1;
    bool bias = false;
    bool strided = false;  // x and y rows padded (row stride > row length)
    MatmulActivations act = MatmulActivations::kF32;
    uint64_t seed = 1;
    std::string name() const {
        return matmul_case_name("", type, n_tokens, n_in, n_out,
                                std::string(bias ? "_bias" : "") + (strided ? "_strided" : ""), act, seed);
    }
};
std::ostream& operator<<(std::ostream& os, const MatmulCase& c) { return os << c.name(); }

std::vector<MatmulCase> matmul_cases() {
    std::vector<MatmulCase> cases;
    uint64_t seed = 1;
    for (GgmlType t : all_types()) {
        for (int64_t n_in : {64, 256, 768}) {
            if (is_k_quant(t) && n_in % 256 != 0) continue;
            for (int64_t n_out : {1, 5, 172}) {
                for (int64_t n_tokens : {1, 2, 3, 4, 5, 17, 64}) {
                    MatmulCase c;
                    c.type = t;
                    c.n_tokens = n_tokens;
                    c.n_in = n_in;
                    c.n_out = n_out;
                    c.bias = (seed % 2) == 0;
                    c.strided = (seed % 5) == 0;
                    c.seed = seed++;
                    cases.push_back(c);
                }
            }
        }
        // Float types take any row length: tails shorter than a vector (13, 77 = 64 + 13).
        if (ggml_type_traits(t)->block_elems == 1) {
            for (int64_t n_in : {13, 77}) {
                for (int64_t n_tokens : {1, 3, 7}) {
                    MatmulCase c;
                    c.type = t;
                    c.n_tokens = n_tokens;
                    c.n_in = n_in;
                    c.n_out = 21;
                    c.bias = n_tokens == 3;
                    c.seed = seed++;
                    cases.push_back(c);
                }
            }
        }
        // The suite's edge lengths as token counts, and a panel-boundary n_out (64 + 16 + 1).
        for (int64_t n_tokens : edge_lengths()) {
            MatmulCase c;
            c.type = t;
            c.n_tokens = n_tokens;
            c.n_in = is_k_quant(t) ? 256 : 64;
            c.n_out = n_tokens == 1000 ? 81 : 172;
            c.bias = true;
            c.seed = seed++;
            cases.push_back(c);
        }
    }
    // kWeightDotType (activations in the weight's dot type, as ggml): every weight type on the
    // decode and GEMM paths; the reference quantizes/rounds x by the rule in ops.h.
    for (GgmlType t : all_types()) {
        for (int64_t n_in : {64, 256, 768}) {
            if (is_k_quant(t) && n_in % 256 != 0) continue;
            for (int64_t n_out : {5, 172}) {
                for (int64_t n_tokens : {1, 2, 4, 5, 17, 64}) {
                    MatmulCase c;
                    c.type = t;
                    c.n_tokens = n_tokens;
                    c.n_in = n_in;
                    c.n_out = n_out;
                    c.bias = (seed % 2) == 0;
                    c.strided = (seed % 5) == 0;
                    c.act = MatmulActivations::kWeightDotType;
                    c.seed = seed++;
                    cases.push_back(c);
                }
            }
        }
        if (ggml_type_traits(t)->block_elems == 1) {
            for (int64_t n_tokens : {1, 7}) {
                MatmulCase c;
                c.type = t;
                c.n_tokens = n_tokens;
                c.n_in = 77;
                c.n_out = 21;
                c.act = MatmulActivations::kWeightDotType;
                c.seed = seed++;
                cases.push_back(c);
            }
        }
    }
    for (const MatmulCase& c : cases) register_case(CaseRecord{"matmul", c.name(), c.n_tokens, kB, kW});
    return cases;
}

class MatmulParity : public ::testing::TestWithParam<MatmulCase> {};

TEST_P(MatmulParity, MatchesFloat64) {
    const MatmulCase& c = GetParam();
    Rng rng(c.seed);
    const int64_t pad = c.strided ? 9 : 0;
    Buf xbuf(DType::kF32, {c.n_tokens, c.n_in + pad});
    fill_normal(xbuf, rng);
    const std::vector<uint8_t> w = random_weights(c.type, c.n_out, c.n_in, rng);
    Buf bias(DType::kF32, {c.n_out});
    fill_normal(bias, rng);
    Out3 out(DType::kF32, {c.n_tokens, c.n_out + pad});
    for (Backend b : parity_backends()) {
        MatmulParams p;
        p.x = slice(xbuf.view(), 1, 0, c.n_in);
        p.w = MatrixView{w.data(), c.type, c.n_out, c.n_in};
        if (c.bias) p.bias = bias.view();
        p.y = slice(out.of(b).view(), 1, 0, c.n_out);
        p.act = c.act;
        const Status st = run_model(b, p);
        TCA_SKIP_UNSUPPORTED_WEIGHTS(b, st, c.type);
        ASSERT_TRUE(st.ok()) << backend_name(b) << ": " << st.to_string();
    }
    if (pad > 0) {
        // Padding columns are never written: they stay NaN in every copy.
        for (int64_t t = 0; t < c.n_tokens; ++t) {
            for (int64_t j = 0; j < pad; ++j) {
                const double v = out.cpu.at({t, c.n_out + j});
                out.ref.put({t, c.n_out + j}, 0.0);
                out.naive.put({t, c.n_out + j}, 0.0);
                out.cpu.put({t, c.n_out + j}, std::isnan(v) ? 0.0 : 1e30);
            }
        }
    }
    check_fa3(std::string("matmul.y ") + ggml_type_name(c.type), out);
}

INSTANTIATE_TEST_SUITE_P(Model, MatmulParity, ::testing::ValuesIn(matmul_cases()),
                         [](const ::testing::TestParamInfo<MatmulCase>& i) { return i.param.name(); });

// ---- matmul with a residual (MatmulParams::residual) ------------------------------------------
// y = x w^T (+ bias) + residual, into another buffer or in place (y is the residual view).
// Types: the float types (on CUDA: one token in the weight's dot type is the GEMV kernel, more
// tokens cuBLAS) and two quantized ones on the CPU's decode, integer and GEMM paths.

struct ResidualCase {
    GgmlType type = GgmlType::kF32;
    int64_t n_tokens = 1, n_in = 64, n_out = 5;
    bool bias = false;
    bool in_place = false;
    bool strided = false;  // rows padded; not in place
    MatmulActivations act = MatmulActivations::kF32;
    uint64_t seed = 1;
    std::string name() const {
        return matmul_case_name("", type, n_tokens, n_in, n_out,
                                std::string(bias ? "_bias" : "") + (in_place ? "_inplace" : "") +
                                    (strided ? "_strided" : ""),
                                act, seed);
    }
};
std::ostream& operator<<(std::ostream& os, const ResidualCase& c) { return os << c.name(); }

std::vector<ResidualCase> residual_cases() {
    std::vector<ResidualCase> cases;
    uint64_t seed = 7001;
    for (GgmlType t : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_K}) {
        for (const MatmulActivations act : {MatmulActivations::kF32, MatmulActivations::kWeightDotType}) {
            for (int64_t n_tokens : {1, 3, 17}) {
                for (int v = 0; v < 4; ++v) {  // bias x in place
                    ResidualCase c;
                    c.type = t;
                    c.n_tokens = n_tokens;
                    c.n_in = is_k_quant(t) ? 256 : 64;
                    c.n_out = n_tokens == 17 ? 81 : 172;
                    c.bias = (v & 1) != 0;
                    c.in_place = (v & 2) != 0;
                    c.strided = !c.in_place && n_tokens == 3 && c.bias;
                    c.act = act;
                    c.seed = seed++;
                    cases.push_back(c);
                }
            }
        }
    }
    for (const ResidualCase& c : cases) register_case(CaseRecord{"matmul", c.name(), c.n_tokens, kB, kW});
    return cases;
}

// The case's inputs, and its params with y/residual pointing into `y` (in place) or `res`.
struct ResidualInputs {
    Buf x, bias, res;
    std::vector<uint8_t> w;
    int64_t pad = 0;
    explicit ResidualInputs(const ResidualCase& c) {
        Rng rng(c.seed);
        pad = c.strided ? 9 : 0;
        x = Buf(DType::kF32, {c.n_tokens, c.n_in + pad});
        fill_normal(x, rng);
        w = random_weights(c.type, c.n_out, c.n_in, rng);
        bias = Buf(DType::kF32, {c.n_out});
        fill_normal(bias, rng);
        res = Buf(DType::kF32, {c.n_tokens, c.n_out + pad});
        fill_normal(res, rng, 4.0);
    }
    // y: a [n_tokens, n_out + pad] buffer; in place, it is first filled with the residual.
    MatmulParams params(const ResidualCase& c, Buf& y) const {
        MatmulParams p;
        p.x = slice(x.view(), 1, 0, c.n_in);
        p.w = MatrixView{w.data(), c.type, c.n_out, c.n_in};
        if (c.bias) p.bias = bias.view();
        p.y = slice(y.view(), 1, 0, c.n_out);
        p.act = c.act;
        if (c.in_place) {
            for (int64_t i = 0; i < res.numel(); ++i) y.set(i, res.get(i));
            p.residual = p.y;
        } else {
            p.residual = slice(res.view(), 1, 0, c.n_out);
        }
        return p;
    }
};

class MatmulResidualParity : public ::testing::TestWithParam<ResidualCase> {};

TEST_P(MatmulResidualParity, MatchesFloat64) {
    const ResidualCase& c = GetParam();
    const ResidualInputs in(c);
    Out3 out(DType::kF32, {c.n_tokens, c.n_out + in.pad});
    for (Backend b : parity_backends()) {
        const Status st = run_model(b, in.params(c, out.of(b)));
        TCA_SKIP_UNSUPPORTED_WEIGHTS(b, st, c.type);
        ASSERT_TRUE(st.ok()) << backend_name(b) << ": " << st.to_string();
    }
    for (int64_t t = 0; t < c.n_tokens && in.pad > 0; ++t) {
        for (int64_t j = 0; j < in.pad; ++j) {  // padding columns stay NaN
            const double v = out.cpu.at({t, c.n_out + j});
            out.ref.put({t, c.n_out + j}, 0.0);
            out.naive.put({t, c.n_out + j}, 0.0);
            out.cpu.put({t, c.n_out + j}, std::isnan(v) ? 0.0 : 1e30);
        }
    }
    check_fa3(std::string("matmul.y+residual ") + ggml_type_name(c.type), out);
}

// The residual is added after the bias with one f32 rounding: bitwise what matmul (into another
// buffer) followed by add gives, on the backend under test.
TEST_P(MatmulResidualParity, BitwiseMatmulThenAdd) {
    const ResidualCase& c = GetParam();
    const ResidualInputs in(c);
    Buf fused(DType::kF32, {c.n_tokens, c.n_out + in.pad}), split(DType::kF32, {c.n_tokens, c.n_out + in.pad});
    fused.fill_poison();
    split.fill_poison();
    const Status st = run_model(kUnderTest, in.params(c, fused));
    TCA_SKIP_UNSUPPORTED_WEIGHTS(kUnderTest, st, c.type);
    ASSERT_TRUE(st.ok()) << st.to_string();
    ResidualCase apart = c;  // the residual in its own buffer: matmul then overwrites nothing
    apart.in_place = false;
    MatmulParams p = in.params(apart, split);
    const TensorView residual = p.residual;
    p.residual = TensorView{};
    ASSERT_TRUE(run_model(kUnderTest, p).ok());
    ASSERT_TRUE(run_model(kUnderTest, AddParams{p.y, residual, p.y}).ok());
    EXPECT_TRUE(all_equal(fused, split, "matmul.y+residual vs matmul, add"));
    EXPECT_TRUE(fused.canaries_intact("fused"));
}

INSTANTIATE_TEST_SUITE_P(Model, MatmulResidualParity, ::testing::ValuesIn(residual_cases()),
                         [](const ::testing::TestParamInfo<ResidualCase>& i) { return i.param.name(); });

// ---- matmul of rms_norm(x) or swiglu(x, up) (MatmulParams::input) --------------------------
// The input op computed inside the matmul (the decode step's folded RMSNorm and SwiGLU):
// against float64 (the op, then the matmul of its f32 result), and bitwise against the op
// followed by matmul on the backend under test. x and up are the two halves of one
// [n_tokens, 2 n_in] row, as the engine's gate/up output. On CUDA one token in the weight's dot
// type with F16/BF16 weights is the staged GEMV kernel (n_in 4104 and the 8B down projection's
// 14336 included), more tokens or f32 activations materialize the input for cuBLAS.

struct InputCase {
    GgmlType type = GgmlType::kF32;
    MatmulInput input = MatmulInput::kRmsNorm;
    int64_t n_tokens = 1, n_in = 64, n_out = 5;
    bool bias = false;
    bool residual = false;  // in place
    MatmulActivations act = MatmulActivations::kF32;
    uint64_t seed = 1;
    std::string name() const {
        return matmul_case_name(std::string(matmul_input_name(input)) + "_", type, n_tokens, n_in, n_out,
                                std::string(bias ? "_bias" : "") + (residual ? "_residual" : ""), act, seed);
    }
};
std::ostream& operator<<(std::ostream& os, const InputCase& c) { return os << c.name(); }

std::vector<InputCase> input_cases() {
    std::vector<InputCase> cases;
    uint64_t seed = 8101;
    for (MatmulInput in : {MatmulInput::kRmsNorm, MatmulInput::kSwiglu}) {
        for (GgmlType t : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0}) {
            for (const MatmulActivations act : {MatmulActivations::kF32, MatmulActivations::kWeightDotType}) {
                for (int64_t n_tokens : {1, 3}) {
                    InputCase c;
                    c.input = in;
                    c.type = t;
                    c.n_tokens = n_tokens;
                    c.n_in = 64;
                    c.n_out = n_tokens == 1 ? 172 : 37;
                    c.bias = n_tokens == 3;
                    c.residual = n_tokens == 1;
                    c.act = act;
                    c.seed = seed++;
                    cases.push_back(c);
                }
            }
        }
        for (GgmlType t : {GgmlType::kF16, GgmlType::kBF16}) {  // the GEMV kernel's real row lengths
            for (int64_t n_in : {4104, 14336}) {
                InputCase c;
                c.input = in;
                c.type = t;
                c.n_in = n_in;
                c.n_out = 19;
                c.bias = n_in == 4104;
                c.residual = true;
                c.act = MatmulActivations::kWeightDotType;
                c.seed = seed++;
                cases.push_back(c);
            }
        }
    }
    for (const InputCase& c : cases) register_case(CaseRecord{"matmul", c.name(), c.n_tokens, kB, kW});
    return cases;
}

struct InputInputs {
    Buf xu, norm_w, bias, res;
    std::vector<uint8_t> w;
    explicit InputInputs(const InputCase& c) {
        Rng rng(c.seed);
        xu = Buf(DType::kF32, {c.n_tokens, 2 * c.n_in});
        fill_normal(xu, rng, 2.0);
        w = random_weights(c.type, c.n_out, c.n_in, rng);
        norm_w = Buf(DType::kF32, {c.n_in});
        fill_normal(norm_w, rng, 0.5, 1.0);
        bias = Buf(DType::kF32, {c.n_out});
        fill_normal(bias, rng);
        res = Buf(DType::kF32, {c.n_tokens, c.n_out});
        fill_normal(res, rng, 4.0);
    }
    // The folded matmul into y (in place over a copy of the residual when the case has one).
    MatmulParams params(const InputCase& c, Buf& y) const {
        MatmulParams p;
        p.x = slice(xu.view(), 1, 0, c.n_in);
        p.w = MatrixView{w.data(), c.type, c.n_out, c.n_in};
        if (c.bias) p.bias = bias.view();
        p.y = y.view();
        p.act = c.act;
        if (c.residual) {
            for (int64_t i = 0; i < res.numel(); ++i) y.set(i, res.get(i));
            p.residual = p.y;
        }
        p.input = c.input;
        if (c.input == MatmulInput::kRmsNorm) {
            p.norm_weight = norm_w.view();
            p.norm_eps = 1e-5f;
        } else {
            p.up = slice(xu.view(), 1, c.n_in, c.n_in);
        }
        return p;
    }
};

class MatmulInputParity : public ::testing::TestWithParam<InputCase> {};

TEST_P(MatmulInputParity, MatchesFloat64) {
    const InputCase& c = GetParam();
    const InputInputs in(c);
    Out3 out(DType::kF32, {c.n_tokens, c.n_out});
    for (Backend b : parity_backends()) {
        const Status st = run_model(b, in.params(c, out.of(b)));
        TCA_SKIP_UNSUPPORTED_WEIGHTS(b, st, c.type);
        ASSERT_TRUE(st.ok()) << backend_name(b) << ": " << st.to_string();
    }
    check_fa3(std::string("matmul.y(") + matmul_input_name(c.input) + ") " + ggml_type_name(c.type), out);
}

// The folded input is what the op stores: bitwise the op into a buffer, then matmul of it.
TEST_P(MatmulInputParity, BitwiseOpThenMatmul) {
    const InputCase& c = GetParam();
    const InputInputs in(c);
    Buf fused(DType::kF32, {c.n_tokens, c.n_out}), split(DType::kF32, {c.n_tokens, c.n_out});
    fused.fill_poison();
    split.fill_poison();
    const Status st = run_model(kUnderTest, in.params(c, fused));
    TCA_SKIP_UNSUPPORTED_WEIGHTS(kUnderTest, st, c.type);
    ASSERT_TRUE(st.ok()) << st.to_string();
    MatmulParams p = in.params(c, split);
    Buf op_out(DType::kF32, {c.n_tokens, c.n_in});
    if (c.input == MatmulInput::kRmsNorm) {
        ASSERT_TRUE(run_model(kUnderTest, RmsNormParams{p.x, p.norm_weight, op_out.view(), p.norm_eps}).ok());
    } else {
        ASSERT_TRUE(run_model(kUnderTest, SwigluParams{p.x, p.up, op_out.view()}).ok());
    }
    p.x = op_out.view();
    p.input = MatmulInput::kX;
    p.norm_weight = TensorView{};
    p.up = TensorView{};
    ASSERT_TRUE(run_model(kUnderTest, p).ok());
    EXPECT_TRUE(all_equal(fused, split, std::string("matmul(") + matmul_input_name(c.input) + ") vs op, matmul"));
    EXPECT_TRUE(fused.canaries_intact("fused"));
}

INSTANTIATE_TEST_SUITE_P(Model, MatmulInputParity, ::testing::ValuesIn(input_cases()),
                         [](const ::testing::TestParamInfo<InputCase>& i) { return i.param.name(); });

// ---- rms_norm, swiglu, add --------------------------------------------------------------------

struct RowCase {
    int64_t n_tokens = 1, dim = 64;
    bool in_place = false;
    uint64_t seed = 1;
    std::string name() const {
        return "t" + std::to_string(n_tokens) + "_d" + std::to_string(dim) +
               (in_place ? "_inplace" : "") + "_s" + std::to_string(seed);
    }
};
std::ostream& operator<<(std::ostream& os, const RowCase& c) { return os << c.name(); }

std::vector<RowCase> row_cases(const char* op) {
    std::vector<RowCase> cases;
    uint64_t seed = 1;
    for (int64_t n : edge_lengths()) {
        for (int64_t dim : {64, 100, 768}) {
            if (n == 1000 && dim == 768) continue;
            cases.push_back(RowCase{n, dim, (seed % 3) == 0, seed});
            ++seed;
        }
    }
    for (const RowCase& c : cases) register_case(CaseRecord{op, c.name(), c.n_tokens, kB, kW});
    return cases;
}

class RmsNormParity : public ::testing::TestWithParam<RowCase> {};
TEST_P(RmsNormParity, MatchesFloat64) {
    const RowCase& c = GetParam();
    Rng rng(c.seed);
    Buf x(DType::kF32, {c.n_tokens, c.dim}), w(DType::kF32, {c.dim});
    fill_normal(x, rng, 3.0, 0.5);
    fill_normal(w, rng, 1.0, 1.0);
    Out3 out(DType::kF32, {c.n_tokens, c.dim});
    for (Backend b : parity_backends()) {
        Buf xi = x.clone();
        RmsNormParams p;
        p.x = xi.view();
        p.weight = w.view();
        p.out = c.in_place ? xi.view() : out.of(b).view();
        p.eps = 1e-5f;
        ASSERT_TRUE(run_model(b, p).ok()) << backend_name(b);
        if (c.in_place) out.of(b) = xi.clone();
    }
    check_fa3("rms_norm.out", out);
}
INSTANTIATE_TEST_SUITE_P(Model, RmsNormParity, ::testing::ValuesIn(row_cases("rms_norm")),
                         [](const ::testing::TestParamInfo<RowCase>& i) { return i.param.name(); });

class SwigluParity : public ::testing::TestWithParam<RowCase> {};
TEST_P(SwigluParity, MatchesFloat64) {
    const RowCase& c = GetParam();
    Rng rng(c.seed);
    Buf gate(DType::kF32, {c.n_tokens, c.dim}), up(DType::kF32, {c.n_tokens, c.dim});
    fill_normal(gate, rng, 4.0);
    fill_normal(up, rng);
    // Saturating and tiny gates: silu(-100) underflows, silu(100) = 100.
    const double extremes[] = {-100.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 100.0, -88.0};
    for (int i = 0; i < 8 && i < gate.numel(); ++i) gate.set(i * 7 % gate.numel(), extremes[i]);
    Out3 out(DType::kF32, {c.n_tokens, c.dim});
    for (Backend b : parity_backends()) {
        Buf g = gate.clone();
        SwigluParams p;
        p.gate = g.view();
        p.up = up.view();
        p.out = c.in_place ? g.view() : out.of(b).view();
        ASSERT_TRUE(run_model(b, p).ok()) << backend_name(b);
        if (c.in_place) out.of(b) = g.clone();
    }
    check_fa3("swiglu.out", out);
}
INSTANTIATE_TEST_SUITE_P(Model, SwigluParity, ::testing::ValuesIn(row_cases("swiglu")),
                         [](const ::testing::TestParamInfo<RowCase>& i) { return i.param.name(); });

class AddParity : public ::testing::TestWithParam<RowCase> {};
TEST_P(AddParity, MatchesFloat64) {
    const RowCase& c = GetParam();
    Rng rng(c.seed);
    Buf a(DType::kF32, {c.n_tokens, c.dim}), bb(DType::kF32, {c.n_tokens, c.dim});
    fill_normal(a, rng);
    fill_normal(bb, rng, 10.0);
    Out3 out(DType::kF32, {c.n_tokens, c.dim});
    for (Backend b : parity_backends()) {
        Buf ai = a.clone();
        AddParams p;
        p.a = ai.view();
        p.b = bb.view();
        p.out = c.in_place ? ai.view() : out.of(b).view();
        ASSERT_TRUE(run_model(b, p).ok()) << backend_name(b);
        if (c.in_place) out.of(b) = ai.clone();
    }
    // One rounding of an exact sum: bitwise equal to the float64 result.
    EXPECT_TRUE(all_equal(out.cpu, out.ref, "add.out"));
    expect_canaries(out, "add.out");
}
INSTANTIATE_TEST_SUITE_P(Model, AddParity, ::testing::ValuesIn(row_cases("add")),
                         [](const ::testing::TestParamInfo<RowCase>& i) { return i.param.name(); });

// ---- rope -------------------------------------------------------------------------------------

struct RopeCase {
    int64_t n_tokens = 1, n_heads = 1, head_dim = 8;
    RopeStyle style = RopeStyle::kAdjacentPairs;
    bool far = false;  // positions up to 200000 instead of 0..n_tokens-1
    uint64_t seed = 1;
    std::string name() const {
        return std::string(style == RopeStyle::kAdjacentPairs ? "adjacent" : "halfsplit") + "_t" + std::to_string(n_tokens) + "_h" +
               std::to_string(n_heads) + "_d" + std::to_string(head_dim) + (far ? "_far" : "") +
               "_s" + std::to_string(seed);
    }
};
std::ostream& operator<<(std::ostream& os, const RopeCase& c) { return os << c.name(); }

std::vector<RopeCase> rope_cases() {
    std::vector<RopeCase> cases;
    uint64_t seed = 1;
    for (RopeStyle s : {RopeStyle::kAdjacentPairs, RopeStyle::kHalfSplit}) {
        for (int64_t n : edge_lengths()) {
            for (int64_t d : {8, 64, 128}) {
                if (n == 1000 && d == 128) continue;
                cases.push_back(RopeCase{n, n % 2 ? 4 : 1, d, s, (seed % 2) == 0, seed});
                ++seed;
            }
        }
    }
    for (const RopeCase& c : cases) register_case(CaseRecord{"rope", c.name(), c.n_tokens, kB, kW});
    return cases;
}

class RopeParity : public ::testing::TestWithParam<RopeCase> {};
TEST_P(RopeParity, MatchesFloat64) {
    const RopeCase& c = GetParam();
    Rng rng(c.seed);
    // Heads are a strided slice of a wider [n_tokens, n_heads + 1, head_dim] tensor.
    Buf x(DType::kF32, {c.n_tokens, c.n_heads + 1, c.head_dim});
    fill_normal(x, rng);
    std::vector<int32_t> pos(static_cast<size_t>(c.n_tokens));
    for (int64_t t = 0; t < c.n_tokens; ++t) {
        pos[static_cast<size_t>(t)] = c.far ? static_cast<int32_t>(rng.below(200000)) : static_cast<int32_t>(t);
    }
    Buf positions = i32_buf(pos);
    RopeScaling scaling;
    if (c.seed % 3 == 0) {
        scaling = RopeScaling{RopeScaling::Type::kLlama3, 8.0, 1.0, 4.0, 8192};
    }
    const std::vector<float> f = rope_inv_freq(c.head_dim, c.seed % 2 ? 10000.0 : 1e6, scaling).value();
    Buf inv_freq(DType::kF32, {c.head_dim / 2});
    for (size_t i = 0; i < f.size(); ++i) inv_freq.set(static_cast<int64_t>(i), f[i]);
    Out3 out(DType::kF32, {c.n_tokens, c.n_heads + 1, c.head_dim});
    for (Backend b : parity_backends()) {
        out.of(b) = x.clone();
        RopeParams p;
        p.x = slice(out.of(b).view(), 1, 0, c.n_heads);
        p.positions = positions.view();
        p.inv_freq = inv_freq.view();
        p.style = c.style;
        ASSERT_TRUE(run_model(b, p).ok()) << backend_name(b);
    }
    check_fa3(std::string("rope.x ") + rope_style_name(c.style), out);
    // Angles and cos/sin are exact to f32 rounding on the CPU, unlike the naive f32 angle (which
    // loses ~1e-2 at position 2e5): a few roundings of |x| is the bound here.
    const ErrorStats s = error_stats(out.cpu, out.ref);
    EXPECT_LE(s.max_abs, kFloorEps * std::max(1.0, s.max_want)) << "at " << out.cpu.index_string(s.worst);
    // The extra head (outside the view) is untouched.
    for (int64_t t = 0; t < c.n_tokens; ++t) {
        for (int64_t i = 0; i < c.head_dim; ++i) {
            ASSERT_EQ(out.cpu.at({t, c.n_heads, i}), x.at({t, c.n_heads, i}));
        }
    }
}
INSTANTIATE_TEST_SUITE_P(Model, RopeParity, ::testing::ValuesIn(rope_cases()),
                         [](const ::testing::TestParamInfo<RopeCase>& i) { return i.param.name(); });

// ---- embed ------------------------------------------------------------------------------------

struct EmbedCase {
    GgmlType type = GgmlType::kF32;
    int64_t n_tokens = 1, dim = 64, n_vocab = 5;
    uint64_t seed = 1;
    std::string name() const {
        return std::string(ggml_type_name(type)) + "_t" + std::to_string(n_tokens) + "_d" +
               std::to_string(dim) + "_v" + std::to_string(n_vocab) + "_s" + std::to_string(seed);
    }
};
std::ostream& operator<<(std::ostream& os, const EmbedCase& c) { return os << c.name(); }

std::vector<EmbedCase> embed_cases() {
    std::vector<EmbedCase> cases;
    uint64_t seed = 1;
    for (GgmlType t : all_types()) {
        for (int64_t n : edge_lengths()) {
            const int64_t dim = is_k_quant(t) ? (seed % 2 ? 256 : 768) : (seed % 2 ? 64 : 768);
            cases.push_back(EmbedCase{t, n, dim, seed % 3 ? 172 : 5, seed});
            ++seed;
        }
    }
    for (const EmbedCase& c : cases) register_case(CaseRecord{"embed", c.name(), c.n_tokens, kB, kW});
    return cases;
}

class EmbedParity : public ::testing::TestWithParam<EmbedCase> {};
TEST_P(EmbedParity, BitExactWithDequantize) {
    const EmbedCase& c = GetParam();
    Rng rng(c.seed);
    const std::vector<uint8_t> table = random_weights(c.type, c.n_vocab, c.dim, rng);
    std::vector<int32_t> ids(static_cast<size_t>(c.n_tokens));
    for (size_t t = 0; t < ids.size(); ++t) ids[t] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(c.n_vocab)));
    ids[0] = static_cast<int32_t>(c.n_vocab - 1);
    if (ids.size() > 1) ids[1] = 0;
    Buf id_buf = i32_buf(ids);
    Out3 out(DType::kF32, {c.n_tokens, c.dim});
    for (Backend b : parity_backends()) {
        EmbedParams p;
        p.table = MatrixView{table.data(), c.type, c.n_vocab, c.dim};
        p.ids = id_buf.view();
        p.out = out.of(b).view();
        const Status st = run_model(b, p);
        TCA_SKIP_UNSUPPORTED_WEIGHTS(b, st, c.type);
        ASSERT_TRUE(st.ok()) << backend_name(b) << ": " << st.to_string();
    }
    EXPECT_TRUE(all_equal(out.cpu, out.ref, "embed.out"));
    expect_canaries(out, "embed.out");
}
INSTANTIATE_TEST_SUITE_P(Model, EmbedParity, ::testing::ValuesIn(embed_cases()),
                         [](const ::testing::TestParamInfo<EmbedCase>& i) { return i.param.name(); });

// Coverage of the model ops (their own list, TCA_FOR_EACH_MODEL_OP): a reference, a naive f32
// twin and a CPU implementation for each (a missing one is a link error), at least 10
// registered parity cases, and token counts at every edge length of the suite.
TEST(ModelOpsCoverage, EveryModelOpHasReferenceCpuAndCases) {
    std::map<std::string, std::set<int64_t>> lengths;
    std::map<std::string, int> count;
    for (const CaseRecord& r : registered_cases()) {
        ++count[r.op];
        lengths[r.op].insert(r.length);
    }
#define TCA_MODEL_COVERAGE(name, Params)                                                       \
    {                                                                                          \
        EXPECT_NE(static_cast<Status (*)(const Params&)>(&ref::name), nullptr);                \
        EXPECT_NE(static_cast<Status (*)(const Params&)>(&ref::naive_f32::name), nullptr);     \
        EXPECT_NE(static_cast<Status (*)(const Params&)>(&cpu::name), nullptr);                \
        EXPECT_GE(count[#name], 10) << #name << " has too few parity cases";                   \
        for (int64_t n : edge_lengths()) {                                                     \
            EXPECT_TRUE(lengths[#name].count(n)) << #name << ": no case with " << n << " tokens"; \
        }                                                                                      \
    }
    TCA_FOR_EACH_MODEL_OP(TCA_MODEL_COVERAGE)
#undef TCA_MODEL_COVERAGE
}

// ops:: dispatch reaches the CPU implementation and validates first.
TEST(ModelOpsDispatch, CpuDeviceRunsAndValidates) {
    Buf a(DType::kF32, {2, 8}), b(DType::kF32, {2, 8}), out(DType::kF32, {2, 8});
    a.fill(1.5);
    b.fill(2.0);
    out.fill_poison();
    AddParams p{a.view(), b.view(), out.view()};
    ASSERT_TRUE(ops::add(Device::kCpu, p).ok());
    EXPECT_EQ(out.at({1, 7}), 3.5);
    p.out = slice(out.view(), 1, 0, 4);
    const Status s = ops::add(Device::kCpu, p);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("add: tensor out"), std::string::npos) << s.message();
}

// The vectorised row decoders agree bit for bit with dequantize() (odd lengths for float types).
TEST(WeightDecode, BitExactWithDequantize) {
    Rng rng(7);
    for (GgmlType t : all_types()) {
        const int64_t n = is_k_quant(t) ? 512 : (ggml_type_traits(t)->block_elems == 1 ? 77 : 96);
        const std::vector<uint8_t> w = random_weights(t, 1, n, rng);
        std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n), NAN);
        ASSERT_TRUE(dequantize(t, w.data(), want.data(), n).ok());
        cpu::decode_row(t, w.data(), n, got.data());
        for (int64_t i = 0; i < n; ++i) {
            ASSERT_EQ(std::memcmp(&got[static_cast<size_t>(i)], &want[static_cast<size_t>(i)], 4), 0)
                << ggml_type_name(t) << " element " << i;
        }
    }
}

}  // namespace
}  // namespace tca::test
