// The naive low-precision twin of attention_dense and sparse_prefill (tca::ref::naive_lowp):
// the naive float32 loops of ref::naive_f32 with the roundings of the CUDA tensor-core kernels
// (src/backend/cuda/attention_prefill.cu). q, K and V are rounded to the compute type (bf16, or
// f16 when K/V are stored as f16); the scores q . k, the softmax and the sums run in float32;
// each probability p = exp(s - max) is rounded to the compute type before it multiplies V,
// while the softmax denominator sums the unrounded p (as the kernel does). Not an oracle: the
// baseline error that sizes the CUDA tolerances (docs/numerics.md, "CUDA").
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/half.h"
#include "reference/ref_ops.h"
#include "sparse/sparse_options.h"

namespace tca::ref::naive_lowp {
namespace {

// x rounded to the compute type of K/V storage `kv`: f16 for f16 storage, else bf16.
float round_compute(float x, DType kv) {
    return kv == DType::kF16 ? f16_to_f32(f32_to_f16(x)) : bf16_to_f32(f32_to_bf16(x));
}

float ld3(const TensorView& t, int64_t i0, int64_t i1, int64_t i2) {
    return load_as_f32(t.data, i0 * t.stride[0] + i1 * t.stride[1] + i2 * t.stride[2], t.dtype);
}

// Query (qh, qi) attends to the rows `rows` of KV head kvh in k/v; output row written to out.
void attend(const TensorView& q, int64_t qh, int64_t qi, const TensorView& k, const TensorView& v,
            int64_t kvh, const std::vector<int64_t>& rows, float scale, const TensorView& out) {
    const int64_t d = q.shape[2];
    const DType ct = k.dtype;
    std::vector<float> qr(static_cast<size_t>(d));
    for (int64_t c = 0; c < d; ++c) qr[static_cast<size_t>(c)] = round_compute(ld3(q, qh, qi, c), ct);
    std::vector<float> s(rows.size());
    float mx = -INFINITY;
    for (size_t r = 0; r < rows.size(); ++r) {
        float dot = 0.0f;
        for (int64_t c = 0; c < d; ++c) {
            dot += qr[static_cast<size_t>(c)] * round_compute(ld3(k, kvh, rows[r], c), ct);
        }
        s[r] = dot * scale;
        mx = std::max(mx, s[r]);
    }
    float denom = 0.0f;
    for (float& x : s) {
        x = std::exp(x - mx);
        denom += x;
    }
    float* const o = out.ptr<float>() + qh * out.stride[0] + qi * out.stride[1];
    for (int64_t c = 0; c < d; ++c) {
        float acc = 0.0f;
        for (size_t r = 0; r < rows.size(); ++r) {
            acc += round_compute(s[r], ct) * round_compute(ld3(v, kvh, rows[r], c), ct);
        }
        o[c * out.stride[2]] = rows.empty() ? 0.0f : acc / denom;
    }
}

}  // namespace

Status attention_dense(const AttentionDenseParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_q = p.q.shape[1], g = hq / p.k.shape[0];
    const float scale = effective_scale(p.scale, p.q.shape[2]);
    std::vector<int64_t> rows;
    for (int64_t h = 0; h < hq; ++h) {
        for (int64_t i = 0; i < n_q; ++i) {
            rows.clear();
            for (int64_t j = 0; j <= p.q_pos0 + i; ++j) rows.push_back(j);
            attend(p.q, h, i, p.k, p.v, h / g, rows, scale, p.out);
        }
    }
    return Status();
}

Status sparse_prefill(const SparsePrefillParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_q = p.q.shape[1], g = hq / p.k.shape[0];
    const float scale = effective_scale(p.scale, p.q.shape[2]);
    const int64_t b = p.block_size;
    std::vector<int64_t> rows;
    for (int64_t h = 0; h < hq; ++h) {
        const int64_t kvh = h / g;
        const int64_t ng = p.n_global.ptr<int32_t>()[kvh * p.n_global.stride[0]];
        TCA_ASSERT(ng >= 0 && ng <= p.global_pos.shape[1], "n_global %lld", static_cast<long long>(ng));
        const int32_t* gpos = p.global_pos.ptr<int32_t>() + kvh * p.global_pos.stride[0];
        for (int64_t i = 0; i < n_q; ++i) {
            const int64_t pos = p.q_pos0 + i;
            const int64_t band0 = visible_blocks(pos, p.local_window, b, p.n_blocks) * b;
            rows.clear();
            // Global tokens read from the full K/V by position (equal to the gathered copy).
            for (int64_t s = 0; s < ng; ++s) {
                const int64_t gp = gpos[s * p.global_pos.stride[1]];
                if (gp < band0) rows.push_back(gp);
            }
            for (int64_t j = band0; j <= pos; ++j) rows.push_back(j);
            attend(p.q, h, i, p.k, p.v, kvh, rows, scale, p.out);
        }
    }
    return Status();
}

}  // namespace tca::ref::naive_lowp
