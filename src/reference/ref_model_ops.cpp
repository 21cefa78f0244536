// Float64 references of the model ops, naive loops with nothing clever: weights dequantized
// exactly by model/ggml_quants.h (bit-exact with ggml), every sum, norm, angle, cos/sin and
// exp in double. Templates on the accumulation type Acc: Acc = double is the oracle
// (tca::ref::*), Acc = float the naive float32 baseline of the same loops
// (tca::ref::naive_f32::*) that sizes parity tolerances.
#include <cmath>
#include <vector>

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

template <class Acc>
Status matmul_impl(const MatmulParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t n_tokens = p.x.shape[0], n_in = p.w.n_cols;
    for (int64_t o = 0; o < p.w.n_rows; ++o) {
        const std::vector<float> w = weight_row(p.w, o);
        for (int64_t t = 0; t < n_tokens; ++t) {
            const float* x = p.x.ptr<const float>() + t * p.x.stride[0];
            Acc acc = 0;
            for (int64_t i = 0; i < n_in; ++i) {
                acc += static_cast<Acc>(x[i]) * static_cast<Acc>(w[static_cast<size_t>(i)]);
            }
            if (!p.bias.empty()) acc += static_cast<Acc>(elem(p.bias, o));
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
