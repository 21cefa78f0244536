// Float64 references of the model ops, naive loops with nothing clever: weights dequantized
// exactly by model/ggml_quants.h (bit-exact with ggml), every sum, norm, angle, cos/sin and
// exp in double. Templates on the accumulation type Acc: Acc = double is the oracle
// (tca::ref::*), Acc = float the naive float32 baseline of the same loops
// (tca::ref::naive_f32::*) that sizes parity tolerances.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/half.h"

#include "model/ggml_quants.h"
#include "reference/ref_model_ops.h"

namespace tca::ref {
namespace {

float* row_f32(const TensorView& v, int64_t t) { return v.ptr<float>() + t * v.stride[0]; }
float elem(const TensorView& v, int64_t i) { return v.ptr<const float>()[i * v.stride[0]]; }

// Row `r` of a weight matrix, dequantized exactly.
std::vector<float> weight_row(const MatrixView& w, int64_t r) {
    const uint64_t row_bytes = ggml_row_bytes(w.type, w.n_cols).value();
    std::vector<float> out(static_cast<size_t>(w.n_cols));
    const Status s = dequantize(w.type, static_cast<const uint8_t*>(w.data) + r * row_bytes,
                                out.data(), w.n_cols);
    TCA_ASSERT(s.ok(), "%s", s.to_string().c_str());
    return out;
}

// ---- kWeightDotType activations, written from the format rules in ops.h ----------------------
// x'[i] are the dequantized activation values, exact as doubles (d * q); for Q8_1 blocks also
// s = f16(d * sum q), the per-block sum ggml's Q4_1/Q5_1 dot products use instead of sum x'.
struct ActRow {
    std::vector<double> x;
    std::vector<double> s;  // Q8_1: one per block of 32
};

int clamp_i8(double v) { return static_cast<int>(std::min(127.0, std::max(-128.0, v))); }

ActRow convert_activations(GgmlType dot, const float* x, int64_t n) {
    ActRow a;
    a.x.resize(static_cast<size_t>(n));
    switch (dot) {
        case GgmlType::kF16:
            for (int64_t i = 0; i < n; ++i) a.x[static_cast<size_t>(i)] = f16_to_f32(f32_to_f16(x[i]));
            break;
        case GgmlType::kBF16:
            for (int64_t i = 0; i < n; ++i) a.x[static_cast<size_t>(i)] = bf16_to_f32(f32_to_bf16(x[i]));
            break;
        case GgmlType::kQ8_0:
        case GgmlType::kQ8_1:
            for (int64_t b = 0; b < n / 32; ++b) {
                const float* xb = x + b * 32;
                float amax = 0.0f;
                for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
                const float d = amax / 127.0f;
                const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
                const double dh = f16_to_f32(f32_to_f16(d));
                int qsum = 0;
                for (int j = 0; j < 32; ++j) {
                    const float prod = xb[j] * id;
                    const int q = clamp_i8(std::nearbyint(static_cast<double>(prod)));
                    qsum += q;
                    a.x[static_cast<size_t>(b * 32 + j)] = dh * q;
                }
                a.s.push_back(f16_to_f32(f32_to_f16(d * static_cast<float>(qsum))));
            }
            break;
        case GgmlType::kQ8_K:
            for (int64_t b = 0; b < n / 256; ++b) {
                const float* xb = x + b * 256;
                float amax = 0.0f, max = 0.0f;
                for (int j = 0; j < 256; ++j) {
                    if (std::fabs(xb[j]) > amax) {
                        amax = std::fabs(xb[j]);
                        max = xb[j];
                    }
                }
                const float iscale = amax != 0.0f ? -127.0f / max : 0.0f;
                const double d = amax != 0.0f ? static_cast<double>(1.0f / iscale) : 0.0;
                for (int j = 0; j < 256; ++j) {
                    const float prod = iscale * xb[j];
                    const int q = std::min(127, static_cast<int>(std::nearbyint(static_cast<double>(prod))));
                    a.x[static_cast<size_t>(b * 256 + j)] = d * q;
                }
            }
            break;
        default:
            for (int64_t i = 0; i < n; ++i) a.x[static_cast<size_t>(i)] = x[i];
            break;
    }
    return a;
}

// Q4_1 / Q5_1 row r: per block of 32 the scale d, the offset m and the unsigned quants q.
void unpack_q_1(const MatrixView& w, int64_t r, std::vector<float>* d, std::vector<float>* m,
                std::vector<int>* q) {
    const bool q5 = w.type == GgmlType::kQ5_1;
    const int64_t bb = q5 ? 24 : 20, nb = w.n_cols / 32;
    const auto* row = static_cast<const uint8_t*>(w.data) + r * nb * bb;
    d->resize(static_cast<size_t>(nb));
    m->resize(static_cast<size_t>(nb));
    q->resize(static_cast<size_t>(w.n_cols));
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = row + b * bb;
        uint16_t h[2];
        std::memcpy(h, blk, 4);
        (*d)[static_cast<size_t>(b)] = f16_to_f32(h[0]);
        (*m)[static_cast<size_t>(b)] = f16_to_f32(h[1]);
        uint32_t qh = 0;
        if (q5) std::memcpy(&qh, blk + 4, 4);
        const uint8_t* qs = blk + (q5 ? 8 : 4);
        for (int j = 0; j < 16; ++j) {
            const int lo = qs[j] & 15, hi = qs[j] >> 4;
            const int h0 = q5 ? static_cast<int>((qh >> j) & 1u) << 4 : 0;
            const int h1 = q5 ? static_cast<int>((qh >> (j + 16)) & 1u) << 4 : 0;
            (*q)[static_cast<size_t>(b * 32 + j)] = lo | h0;
            (*q)[static_cast<size_t>(b * 32 + j + 16)] = hi | h1;
        }
    }
}

template <class Acc>
Status rms_norm_impl(const RmsNormParams& p);
template <class Acc>
Status swiglu_impl(const SwigluParams& p);

template <class Acc>
Status matmul_impl(const MatmulParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    if (p.input != MatmulInput::kX) {
        // The input op in this precision, stored as f32 (what the separate op stores), then the
        // matmul of it.
        std::vector<float> in(static_cast<size_t>(p.x.shape[0] * p.w.n_cols));
        const TensorView iv = make_view(in.data(), DType::kF32, {p.x.shape[0], p.w.n_cols});
        TCA_RETURN_IF_ERROR(p.input == MatmulInput::kRmsNorm
                                ? rms_norm_impl<Acc>(RmsNormParams{p.x, p.norm_weight, iv, p.norm_eps})
                                : swiglu_impl<Acc>(SwigluParams{p.x, p.up, iv}));
        return matmul_impl<Acc>(matmul_of_input(p, iv));
    }
    const int64_t n_tokens = p.x.shape[0], n_in = p.w.n_cols;
    const bool native = p.act == MatmulActivations::kWeightDotType;
    const GgmlType dot = native ? matmul_dot_type(p.w.type) : GgmlType::kF32;
    std::vector<ActRow> acts;
    for (int64_t t = 0; t < n_tokens && native; ++t) {
        acts.push_back(convert_activations(dot, p.x.ptr<const float>() + t * p.x.stride[0], n_in));
    }
    std::vector<float> qd, qm;
    std::vector<int> qq;
    for (int64_t o = 0; o < p.w.n_rows; ++o) {
        const std::vector<float> w = weight_row(p.w, o);
        if (dot == GgmlType::kQ8_1) unpack_q_1(p.w, o, &qd, &qm, &qq);
        for (int64_t t = 0; t < n_tokens; ++t) {
            const float* x = p.x.ptr<const float>() + t * p.x.stride[0];
            Acc acc = 0;
            if (dot == GgmlType::kQ8_1) {
                // sum_b d_w * sum_j q_w * (d_a q_a) + m_w * s_a (ggml's Q4_1/Q5_1 x Q8_1 dot).
                const ActRow& a = acts[static_cast<size_t>(t)];
                for (int64_t b = 0; b < n_in / 32; ++b) {
                    Acc blk = 0;
                    for (int64_t j = b * 32; j < b * 32 + 32; ++j) {
                        blk += static_cast<Acc>(qq[static_cast<size_t>(j)]) * static_cast<Acc>(a.x[static_cast<size_t>(j)]);
                    }
                    acc += static_cast<Acc>(qd[static_cast<size_t>(b)]) * blk +
                           static_cast<Acc>(qm[static_cast<size_t>(b)]) * static_cast<Acc>(a.s[static_cast<size_t>(b)]);
                }
            } else if (native) {
                const ActRow& a = acts[static_cast<size_t>(t)];
                for (int64_t i = 0; i < n_in; ++i) {
                    acc += static_cast<Acc>(a.x[static_cast<size_t>(i)]) * static_cast<Acc>(w[static_cast<size_t>(i)]);
                }
            } else {
                for (int64_t i = 0; i < n_in; ++i) {
                    acc += static_cast<Acc>(x[i]) * static_cast<Acc>(w[static_cast<size_t>(i)]);
                }
            }
            if (!p.bias.empty()) acc += static_cast<Acc>(elem(p.bias, o));
            if (!p.residual.empty()) acc += static_cast<Acc>(row_f32(p.residual, t)[o]);
            row_f32(p.y, t)[o] = static_cast<float>(acc);
        }
    }
    return Status();
}

template <class Acc>
Status rms_norm_impl(const RmsNormParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t dim = p.x.shape[1];
    for (int64_t t = 0; t < p.x.shape[0]; ++t) {
        const float* x = row_f32(p.x, t);
        Acc ss = 0;
        for (int64_t i = 0; i < dim; ++i) ss += static_cast<Acc>(x[i]) * static_cast<Acc>(x[i]);
        const Acc r = Acc(1) / std::sqrt(ss / static_cast<Acc>(dim) + static_cast<Acc>(p.eps));
        std::vector<float> out(static_cast<size_t>(dim));
        for (int64_t i = 0; i < dim; ++i) {
            out[static_cast<size_t>(i)] =
                static_cast<float>(static_cast<Acc>(x[i]) * r * static_cast<Acc>(elem(p.weight, i)));
        }
        for (int64_t i = 0; i < dim; ++i) row_f32(p.out, t)[i] = out[static_cast<size_t>(i)];
    }
    return Status();
}

template <class Acc>
Status rope_impl(const RopeParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t n_heads = p.x.shape[1], d = p.x.shape[2], half = d / 2;
    for (int64_t t = 0; t < p.x.shape[0]; ++t) {
        const Acc pos = static_cast<Acc>(p.positions.ptr<const int32_t>()[t * p.positions.stride[0]]);
        for (int64_t h = 0; h < n_heads; ++h) {
            float* x = p.x.ptr<float>() + t * p.x.stride[0] + h * p.x.stride[1];
            for (int64_t i = 0; i < half; ++i) {
                const Acc angle = pos * static_cast<Acc>(elem(p.inv_freq, i));
                const Acc c = std::cos(angle), s = std::sin(angle);
                const int64_t i0 = p.style == RopeStyle::kAdjacentPairs ? 2 * i : i;
                const int64_t i1 = p.style == RopeStyle::kAdjacentPairs ? 2 * i + 1 : i + half;
                const Acc x0 = x[i0], x1 = x[i1];
                x[i0] = static_cast<float>(x0 * c - x1 * s);
                x[i1] = static_cast<float>(x0 * s + x1 * c);
            }
        }
    }
    return Status();
}

template <class Acc>
Status swiglu_impl(const SwigluParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    for (int64_t t = 0; t < p.gate.shape[0]; ++t) {
        const float* g = row_f32(p.gate, t);
        const float* u = row_f32(p.up, t);
        float* out = row_f32(p.out, t);
        for (int64_t i = 0; i < p.gate.shape[1]; ++i) {
            const Acc gv = g[i];
            out[i] = static_cast<float>(gv / (Acc(1) + std::exp(-gv)) * static_cast<Acc>(u[i]));
        }
    }
    return Status();
}

template <class Acc>
Status embed_impl(const EmbedParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    for (int64_t t = 0; t < p.ids.shape[0]; ++t) {
        const int32_t id = p.ids.ptr<const int32_t>()[t * p.ids.stride[0]];
        const std::vector<float> row = weight_row(p.table, id);
        for (int64_t i = 0; i < p.table.n_cols; ++i) row_f32(p.out, t)[i] = row[static_cast<size_t>(i)];
    }
    return Status();
}

template <class Acc>
Status add_impl(const AddParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    for (int64_t t = 0; t < p.a.shape[0]; ++t) {
        const float* a = row_f32(p.a, t);
        const float* b = row_f32(p.b, t);
        float* out = row_f32(p.out, t);
        for (int64_t i = 0; i < p.a.shape[1]; ++i) {
            out[i] = static_cast<float>(static_cast<Acc>(a[i]) + static_cast<Acc>(b[i]));
        }
    }
    return Status();
}

}  // namespace

#define TCA_DEFINE_REF_MODEL_OP(name, Params) \
    Status name(const Params& p) { return name##_impl<double>(p); }
TCA_FOR_EACH_MODEL_OP(TCA_DEFINE_REF_MODEL_OP)
#undef TCA_DEFINE_REF_MODEL_OP

namespace naive_f32 {
#define TCA_DEFINE_NAIVE_MODEL_OP(name, Params) \
    Status name(const Params& p) { return name##_impl<float>(p); }
TCA_FOR_EACH_MODEL_OP(TCA_DEFINE_NAIVE_MODEL_OP)
#undef TCA_DEFINE_NAIVE_MODEL_OP
}  // namespace naive_f32

}  // namespace tca::ref
