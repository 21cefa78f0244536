// rms_norm, rope, swiglu, embed and add on the CPU; each matches its ref:: twin
// (reference/ref_model_ops.cpp) within the FlashAttention-3 rule. All are memory bound and
// run over token chunks with thread_pool().parallel_for once there is enough work to pay for
// waking the second thread (~2 us measured per parallel_for; below kSerialElems elements the
// op runs on the calling thread).
//  - rms_norm: sum of squares in 4x8 f32 lanes, the scale 1/sqrt(mean + eps) in double.
//  - rope: cos/sin of pos * inv_freq computed in double once per token and shared by its heads
//    (an f32 angle loses 1e-2 rad at position 128K), the rotation itself in f32.
//  - swiglu: silu(g) = g / (1 + exp(-g)) with a Cody-Waite exp (degree-7 Taylor on
//    |r| <= ln2/2, relative error below 1 ulp of f32).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/weight_decode.h"
#include "core/thread_pool.h"

namespace tca::cpu {
namespace {

constexpr int64_t kSerialElems = 1 << 14;

// Runs fn(t) for t in [0, n_tokens), in parallel chunks when the work is large enough.
template <class Fn>
void for_tokens(int64_t n_tokens, int64_t elems_per_token, const Fn& fn) {
    if (n_tokens * elems_per_token <= kSerialElems || n_tokens == 1) {
        for (int64_t t = 0; t < n_tokens; ++t) fn(t);
        return;
    }
    const int64_t per_item =
        std::max<int64_t>(1, kSerialElems / std::max<int64_t>(1, elems_per_token));
    const int64_t n_items = (n_tokens + per_item - 1) / per_item;
    thread_pool().parallel_for(n_items, [&](int64_t item, int) {
        const int64_t t1 = std::min(n_tokens, (item + 1) * per_item);
        for (int64_t t = item * per_item; t < t1; ++t) fn(t);
    });
}

float* row_f32(const TensorView& v, int64_t t) { return v.ptr<float>() + t * v.stride[0]; }

#if TCA_CPU_AVX2
// exp(x) for f32 lanes: x = n ln2 + r (Cody-Waite, two-part ln2), exp(r) by degree-7 Taylor.
// x > 88.7 gives +inf, x < -103 gives 0, NaN stays NaN.
inline __m256 exp_ps(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.7228f), lo = _mm256_set1_ps(-103.0f);
    const __m256 xc = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 e = _mm256_set1_ps(1.0f / 5040.0f);
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f / 720.0f));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f / 120.0f));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f / 24.0f));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f / 6.0f));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(0.5f));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f));
    // 2^n in two steps so n down to -150 (subnormal results) and up to 128 stay representable.
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    const __m256 res = _mm256_mul_ps(_mm256_mul_ps(e, p1), p2);
    // x above the clamp overflows to inf; NaN propagates through the comparisons below.
    const __m256 inf = _mm256_set1_ps(INFINITY);
    const __m256 big = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    const __m256 out = _mm256_blendv_ps(res, inf, big);
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_blendv_ps(out, x, nan);
}
#endif

}  // namespace

Status rms_norm(const RmsNormParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t dim = p.x.shape[1];
    const float* w = p.weight.ptr<const float>();
    for_tokens(p.x.shape[0], dim, [&](int64_t t) {
        const float* x = row_f32(p.x, t);
        float* out = row_f32(p.out, t);
        int64_t i = 0;
        float ss = 0.0f;
#if TCA_CPU_AVX2
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (; i + 32 <= dim; i += 32) {
            const __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
            const __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
            a0 = _mm256_fmadd_ps(v0, v0, a0);
            a1 = _mm256_fmadd_ps(v1, v1, a1);
            a2 = _mm256_fmadd_ps(v2, v2, a2);
            a3 = _mm256_fmadd_ps(v3, v3, a3);
        }
        for (; i + 8 <= dim; i += 8) {
            const __m256 v = _mm256_loadu_ps(x + i);
            a0 = _mm256_fmadd_ps(v, v, a0);
        }
        ss = lanes_sum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#endif
        for (; i < dim; ++i) ss += x[i] * x[i];
        const float scale = static_cast<float>(
            1.0 / std::sqrt(static_cast<double>(ss) / static_cast<double>(dim) +
                            static_cast<double>(p.eps)));
        for (int64_t j = 0; j < dim; ++j) out[j] = x[j] * scale * w[j * p.weight.stride[0]];
    });
    return Status();
}

Status rope(const RopeParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t n_heads = p.x.shape[1], d = p.x.shape[2], half = d / 2;
    const float* inv_freq = p.inv_freq.ptr<const float>();
    const int32_t* pos = p.positions.ptr<const int32_t>();
    for_tokens(p.x.shape[0], n_heads * d, [&](int64_t t) {
        // Up to 512 pairs (head_dim 1024) on the stack; larger head dims take the heap.
        float cs_stack[512], sn_stack[512];
        std::vector<float> heap;
        float* cs = cs_stack;
        float* sn = sn_stack;
        if (half > 512) {
            heap.resize(static_cast<size_t>(2 * half));
            cs = heap.data();
            sn = heap.data() + half;
        }
        const double ps = static_cast<double>(pos[t * p.positions.stride[0]]);
        for (int64_t i = 0; i < half; ++i) {
            const double a = ps * static_cast<double>(inv_freq[i * p.inv_freq.stride[0]]);
            cs[i] = static_cast<float>(std::cos(a));
            sn[i] = static_cast<float>(std::sin(a));
        }
        for (int64_t h = 0; h < n_heads; ++h) {
            float* x = p.x.ptr<float>() + t * p.x.stride[0] + h * p.x.stride[1];
            if (p.style == RopeStyle::kAdjacentPairs) {
                for (int64_t i = 0; i < half; ++i) {
                    const float x0 = x[2 * i], x1 = x[2 * i + 1];
                    x[2 * i] = x0 * cs[i] - x1 * sn[i];
                    x[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
                }
            } else {
                for (int64_t i = 0; i < half; ++i) {
                    const float x0 = x[i], x1 = x[i + half];
                    x[i] = x0 * cs[i] - x1 * sn[i];
                    x[i + half] = x0 * sn[i] + x1 * cs[i];
                }
            }
        }
    });
    return Status();
}

Status swiglu(const SwigluParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t n_ff = p.gate.shape[1];
    for_tokens(p.gate.shape[0], n_ff, [&](int64_t t) {
        const float* g = row_f32(p.gate, t);
        const float* u = row_f32(p.up, t);
        float* out = row_f32(p.out, t);
        int64_t i = 0;
#if TCA_CPU_AVX2
        const __m256 one = _mm256_set1_ps(1.0f);
        const __m256 sign = _mm256_set1_ps(-0.0f);
        for (; i + 8 <= n_ff; i += 8) {
            const __m256 gv = _mm256_loadu_ps(g + i);
            const __m256 e = exp_ps(_mm256_xor_ps(gv, sign));
            const __m256 silu = _mm256_div_ps(gv, _mm256_add_ps(one, e));
            _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
        }
#endif
        for (; i < n_ff; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    });
    return Status();
}

Status embed(const EmbedParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t dim = p.table.n_cols;
    const int64_t row_bytes = weight_row_bytes(p.table.type, dim);
    const auto* base = static_cast<const uint8_t*>(p.table.data);
    for_tokens(p.ids.shape[0], dim, [&](int64_t t) {
        const int32_t id = p.ids.ptr<const int32_t>()[t * p.ids.stride[0]];
        decode_row(p.table.type, base + id * row_bytes, dim, row_f32(p.out, t));
    });
    return Status();
}

Status add(const AddParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t dim = p.a.shape[1];
    for_tokens(p.a.shape[0], dim, [&](int64_t t) {
        const float* a = row_f32(p.a, t);
        const float* b = row_f32(p.b, t);
        float* out = row_f32(p.out, t);
        for (int64_t i = 0; i < dim; ++i) out[i] = a[i] + b[i];
    });
    return Status();
}

}  // namespace tca::cpu
