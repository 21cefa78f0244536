// matmul on the CPU: y[t, o] = sum_i x[t, i] * w[o, i] (+ bias[o]) (+ residual[t, o]) with f32
// activations and a ggml weight matrix; matches ref::matmul (exact dequantization, float64
// sums) within the FlashAttention-3 rule (docs/numerics.md): both paths accumulate in f32 with
// FMA. Bias and residual are added in the store step, in that order.
//
// Two paths, both parallel over output rows (thread_pool().parallel_for, items claimed
// dynamically):
//  - decode (n_tokens <= 4): each weight row is streamed once and dequantized on the fly inside
//    the dot products with all tokens (AVX2 fused kernels for F32/F16/BF16/Q8_0/Q4_0; Q8_0 and
//    Q4_0 sum q * x per block in f32 and scale once by d; the other types decode 1024 elements
//    to an L1 buffer first). Memory bound: the weight bytes are the floor.
//  - prefill (n_tokens > 4): a work item is a panel of 64 output rows. Its rows are dequantized
//    once into per-thread scratch, transposed into 16-wide micro-panels [n_in][16], and reused by
//    every 6-token tile through a 6x16 register-blocked FMA micro-kernel (12 accumulators, two
//    weight loads and six broadcasts per k). Compute bound: 12 FMAs per k is the floor.
// Measured numbers and the choice of f32 activations (no int8 activation quantization) are in
// the header of bench/model_ops_bench.cpp.
//
// MatmulActivations::kWeightDotType (ops.h; the engine's default, as llama.cpp): the token rows
// are converted once per call into the calling thread's scratch (sized by the largest call, no
// allocation in the decode loop). F16/BF16 weights: rows rounded to f16/bf16, then the f32
// paths above. Q8_0/Q4_0/Q5_0 (Q4_1/Q5_1): rows quantized to Q8_0 (Q8_1) blocks and integer
// dot products per block (|w| maddubs sign-moved a, madd to int32, one f32 FMA by d_w * d_a per
// block; the _1 types add m_w * s_a), one weight row against groups of 4 tokens, items of 64
// rows when n_tokens > 4 so the rows stay in L2. Q4_K/Q6_K: rows quantized to Q8_K and
// dequantized back to f32 (d * q), then the f32 paths (correct numerics, f32 speed).
// 768x768, 2 threads of an AMD EPYC (f32 FMA peak 96.5 GFLOP/s), median ms f32 -> native:
//   F16  1 token 0.059 -> 0.042, 512 tokens 7.90 -> 8.01 (rounding ~1%)
//   Q8_0 1 token 0.053 -> 0.045, 512 tokens 7.92 -> 12.96 (the int path has no register-blocked
//   GEMM yet: 47 vs 76 GFLOP/s; a 4x2-row int8 micro-kernel is the next step)
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/weight_decode.h"
#include "core/thread_pool.h"

namespace tca::cpu {
namespace {

constexpr int64_t kMaxDecodeTokens = 4;  // up to here the decode path, above it the GEMM
constexpr int kMR = 6;                   // tokens per micro-tile
constexpr int kNR = 16;                  // outputs per micro-panel
constexpr int kPanelMicro = 4;           // micro-panels per prefill work item (64 outputs)
constexpr int64_t kChunk = 1024;         // elements decoded at once by the generic decode path
// Decode path: rows are prefetched about this far ahead (cold F16 decode 11-14 -> 15-20 GB/s,
// Q8_0 8-10 -> 10-15 GB/s on 2 Xeon threads; 16 KB beat 4 rows ahead for F16).
constexpr int64_t kPrefetchBytes = 16384;

struct Scratch {
    AlignedBuffer<float> rows;    // [kNR, n_in] decoded weight rows
    AlignedBuffer<float> packed;  // [kPanelMicro, n_in, kNR] transposed micro-panels
    AlignedBuffer<float> chunk;   // [kChunk] generic decode path
    // kWeightDotType activations, filled by the calling thread once per call (sized by the
    // largest call so far, so the decode loop does not allocate).
    AlignedBuffer<float> act_x;   // [n_tokens, n_in] rounded / dequantized rows (f32 kernels)
    AlignedBuffer<int8_t> act_q;  // [n_tokens, n_in] Q8_0 / Q8_1 quants
    AlignedBuffer<float> act_d;   // [n_tokens, n_in / 32] block scales (f16 values)
    AlignedBuffer<float> act_s;   // [n_tokens, n_in / 32] Q8_1 block sums (f16 values)
    AlignedBuffer<float> act_dt;  // [n_in / 32, n_tokens + 3] act_d transposed (prefill)
};
thread_local Scratch t_scratch;

const float* x_row(const MatmulParams& p, int64_t t) {
    return p.x.ptr<const float>() + t * p.x.stride[0];
}
float* y_row(const MatmulParams& p, int64_t t) { return p.y.ptr<float>() + t * p.y.stride[0]; }
// Row t of the optional residual (null without one).
const float* residual_row(const MatmulParams& p, int64_t t) {
    return p.residual.empty() ? nullptr : p.residual.ptr<const float>() + t * p.residual.stride[0];
}
// The stored value of y[t, o] from its dot product s: ((s + bias) + residual), the roundings
// of matmul followed by add. Reads residual[t, o] before y[t, o] is written (in place is fine).
inline float epilogue(const MatmulParams& p, const float* bias, int64_t t, int64_t o, float s) {
    float v = bias ? s + bias[o * p.bias.stride[0]] : s;
    if (const float* r = residual_row(p, t)) v += r[o];
    return v;
}

// ---- decode path ------------------------------------------------------------------------------

#if TCA_CPU_AVX2

// acc[t] += w[0..n) . x[t][0..n) for f32 weights already in memory (n any length; the < 8 tail
// is returned as scalars in tail[t]).
template <int NT>
void dot_f32_rows(const float* w, const float* const* x, int64_t n, __m256* acc, float* tail) {
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        const __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + k + 8);
        for (int t = 0; t < NT; ++t) {
            acc[2 * t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + k), acc[2 * t]);
            acc[2 * t + 1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[t] + k + 8), acc[2 * t + 1]);
        }
    }
    for (; k + 8 <= n; k += 8) {
        const __m256 w0 = _mm256_loadu_ps(w + k);
        for (int t = 0; t < NT; ++t) {
            acc[2 * t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + k), acc[2 * t]);
        }
    }
    for (; k < n; ++k) {
        for (int t = 0; t < NT; ++t) tail[t] += w[k] * x[t][k];
    }
}

// Fused dequantize-and-dot of one weight row with NT token rows; writes NT sums to out.
template <int NT>
void row_dot(GgmlType type, const uint8_t* row, int64_t n, const float* const* x, float* out) {
    __m256 acc[2 * NT];
    float tail[NT];
    for (int i = 0; i < 2 * NT; ++i) acc[i] = _mm256_setzero_ps();
    for (int t = 0; t < NT; ++t) tail[t] = 0.0f;
    switch (type) {
        case GgmlType::kF32:
            dot_f32_rows<NT>(reinterpret_cast<const float*>(row), x, n, acc, tail);
            break;
        case GgmlType::kF16:
        case GgmlType::kBF16: {
            const auto* h = reinterpret_cast<const uint16_t*>(row);
            const bool f16 = type == GgmlType::kF16;
            auto ld = [&](int64_t k) { return f16 ? ld8_f16(h + k) : ld8_bf16(h + k); };
            int64_t k = 0;
            for (; k + 16 <= n; k += 16) {
                const __m256 w0 = ld(k), w1 = ld(k + 8);
                for (int t = 0; t < NT; ++t) {
                    acc[2 * t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[t] + k), acc[2 * t]);
                    acc[2 * t + 1] =
                        _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[t] + k + 8), acc[2 * t + 1]);
                }
            }
            for (; k < n; ++k) {
                uint16_t v;
                std::memcpy(&v, row + 2 * k, 2);
                const float wk = f16 ? f16_to_f32(v) : bf16_to_f32(v);
                for (int t = 0; t < NT; ++t) tail[t] += wk * x[t][k];
            }
            break;
        }
        case GgmlType::kQ8_0:
        case GgmlType::kQ4_0: {
            // Block b's products go to accumulator set J (two sets in flight for ILP). Q8_0
            // widens its quants straight from memory (vpmovsxbd m64: one shuffle-port uop per 8
            // weights instead of three with a register source), Q4_0 unpacks nibbles first.
            auto run = [&](auto is_q8) {
                constexpr bool kQ8 = decltype(is_q8)::value;
                constexpr int64_t bb = kQ8 ? 34 : 18;
                auto block = [&](int64_t b, auto set) {
                    constexpr int J = decltype(set)::value;
                    const uint8_t* blk = row + b * bb;
                    const __m256 d = _mm256_set1_ps(load_f16_scale(blk));
                    __m256 w0, w1, w2, w3;
                    if constexpr (kQ8) {
                        w0 = i8x8_mem_to_ps(blk + 2);
                        w1 = i8x8_mem_to_ps(blk + 10);
                        w2 = i8x8_mem_to_ps(blk + 18);
                        w3 = i8x8_mem_to_ps(blk + 26);
                    } else {
                        const __m256i q = q4_0_block_i8(blk);
                        w0 = i8x8_to_ps<0>(q);
                        w1 = i8x8_to_ps<1>(q);
                        w2 = i8x8_to_ps<2>(q);
                        w3 = i8x8_to_ps<3>(q);
                    }
                    for (int t = 0; t < NT; ++t) {
                        const float* xs = x[t] + b * 32;
                        __m256 s0 = _mm256_mul_ps(w0, _mm256_loadu_ps(xs));
                        __m256 s1 = _mm256_mul_ps(w1, _mm256_loadu_ps(xs + 8));
                        s0 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xs + 16), s0);
                        s1 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xs + 24), s1);
                        acc[2 * t + J] = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), d, acc[2 * t + J]);
                    }
                };
                const int64_t nb = n / 32;
                int64_t b = 0;
                for (; b + 2 <= nb; b += 2) {
                    block(b, std::integral_constant<int, 0>());
                    block(b + 1, std::integral_constant<int, 1>());
                }
                if (b < nb) block(b, std::integral_constant<int, 0>());
            };
            if (type == GgmlType::kQ8_0) {
                run(std::true_type());
            } else {
                run(std::false_type());
            }
            break;
        }
        default: {
            float* buf = t_scratch.chunk.reserve(static_cast<size_t>(kChunk));
            const int64_t chunk_bytes = weight_row_bytes(type, kChunk);
            for (int64_t k0 = 0; k0 < n; k0 += kChunk) {
                const int64_t len = std::min(kChunk, n - k0);
                decode_row(type, row + k0 / kChunk * chunk_bytes, len, buf);
                const float* xs[NT];
                for (int t = 0; t < NT; ++t) xs[t] = x[t] + k0;
                dot_f32_rows<NT>(buf, xs, len, acc, tail);
            }
            break;
        }
    }
    for (int t = 0; t < NT; ++t) out[t] = lanes_sum(_mm256_add_ps(acc[2 * t], acc[2 * t + 1])) + tail[t];
}

#else  // portable twin: decode the row, then plain f32 dot products

template <int NT>
void row_dot(GgmlType type, const uint8_t* row, int64_t n, const float* const* x, float* out) {
    float* buf = t_scratch.chunk.reserve(static_cast<size_t>(n));
    decode_row(type, row, n, buf);
    for (int t = 0; t < NT; ++t) {
        float s = 0.0f;
        for (int64_t k = 0; k < n; ++k) s += buf[k] * x[t][k];
        out[t] = s;
    }
}

#endif

template <int NT>
void decode_path(const MatmulParams& p) {
    const int64_t n_out = p.w.n_rows, n_in = p.w.n_cols;
    const int64_t row_bytes = weight_row_bytes(p.w.type, n_in);
    const int n_threads = thread_pool().n_threads();
    const int64_t rows_per_item = std::max<int64_t>(8, (n_out + 8 * n_threads - 1) / (8 * n_threads));
    const int64_t n_items = (n_out + rows_per_item - 1) / rows_per_item;
    const float* x[NT];
    for (int t = 0; t < NT; ++t) x[t] = x_row(p, t);
    const auto* w = static_cast<const uint8_t*>(p.w.data);
    const float* bias = p.bias.empty() ? nullptr : p.bias.ptr<const float>();
    [[maybe_unused]] const int64_t ahead = std::max<int64_t>(1, (kPrefetchBytes + row_bytes - 1) / row_bytes);
    thread_pool().parallel_for(n_items, [&](int64_t item, int) {
        const int64_t o1 = std::min(n_out, (item + 1) * rows_per_item);
        for (int64_t o = item * rows_per_item; o < o1; ++o) {
#if TCA_CPU_AVX2
            // Software prefetch of the row ~kPrefetchBytes ahead within the item.
            if (o + ahead < o1) {
                const uint8_t* next = w + (o + ahead) * row_bytes;
                for (int64_t b = 0; b < row_bytes; b += 64) {
                    _mm_prefetch(reinterpret_cast<const char*>(next + b), _MM_HINT_T0);
                }
            }
#endif
            float s[NT];
            row_dot<NT>(p.w.type, w + o * row_bytes, n_in, x, s);
            for (int t = 0; t < NT; ++t) y_row(p, t)[o] = epilogue(p, bias, t, o, s[t]);
        }
    });
}

// ---- prefill path -----------------------------------------------------------------------------

// Decodes weight rows [o0, o0 + kNR) (rows >= n_out are zeros) and stores them transposed:
// b[k * kNR + r] = w[o0 + r, k].
void pack_micro_panel(const MatmulParams& p, int64_t o0, float* rows, float* b) {
    const int64_t n_in = p.w.n_cols, n_out = p.w.n_rows;
    const int64_t row_bytes = weight_row_bytes(p.w.type, n_in);
    const auto* w = static_cast<const uint8_t*>(p.w.data);
    for (int r = 0; r < kNR; ++r) {
        float* dst = rows + r * n_in;
        if (o0 + r < n_out) {
            decode_row(p.w.type, w + (o0 + r) * row_bytes, n_in, dst);
        } else {
            std::memset(dst, 0, static_cast<size_t>(n_in) * sizeof(float));
        }
    }
    int64_t k = 0;
#if TCA_CPU_AVX2
    for (; k + 8 <= n_in; k += 8) {
        for (int half = 0; half < 2; ++half) {
            const float* s = rows + half * 8 * n_in + k;
            const __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + n_in);
            const __m256 r2 = _mm256_loadu_ps(s + 2 * n_in), r3 = _mm256_loadu_ps(s + 3 * n_in);
            const __m256 r4 = _mm256_loadu_ps(s + 4 * n_in), r5 = _mm256_loadu_ps(s + 5 * n_in);
            const __m256 r6 = _mm256_loadu_ps(s + 6 * n_in), r7 = _mm256_loadu_ps(s + 7 * n_in);
            const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
            const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
            const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
            const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
            float* d = b + k * kNR + half * 8;
            _mm256_store_ps(d + 0 * kNR, _mm256_permute2f128_ps(s0, s4, 0x20));
            _mm256_store_ps(d + 1 * kNR, _mm256_permute2f128_ps(s1, s5, 0x20));
            _mm256_store_ps(d + 2 * kNR, _mm256_permute2f128_ps(s2, s6, 0x20));
            _mm256_store_ps(d + 3 * kNR, _mm256_permute2f128_ps(s3, s7, 0x20));
            _mm256_store_ps(d + 4 * kNR, _mm256_permute2f128_ps(s0, s4, 0x31));
            _mm256_store_ps(d + 5 * kNR, _mm256_permute2f128_ps(s1, s5, 0x31));
            _mm256_store_ps(d + 6 * kNR, _mm256_permute2f128_ps(s2, s6, 0x31));
            _mm256_store_ps(d + 7 * kNR, _mm256_permute2f128_ps(s3, s7, 0x31));
        }
    }
#endif
    for (; k < n_in; ++k) {
        for (int r = 0; r < kNR; ++r) b[k * kNR + r] = rows[r * n_in + k];
    }
}

// y[t0 + i, o0 + j] = sum_k x[t0 + i, k] * b[k * kNR + j] (+ bias[j]) for i < MR, j < n_valid.
template <int MR>
void micro_kernel(const MatmulParams& p, int64_t t0, const float* b, int64_t o0, int n_valid,
                  const float* bias16) {
    const int64_t n_in = p.w.n_cols;
    const float* a[MR];
    for (int i = 0; i < MR; ++i) a[i] = x_row(p, t0 + i);
#if TCA_CPU_AVX2
    // Every loop over i is unrolled so the 2 * MR accumulators live in registers (a rolled
    // store loop made GCC keep them on the stack: 2 extra stores per FMA pair, 2x slower).
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < n_in; ++k) {
        const __m256 b0 = _mm256_load_ps(b + k * kNR), b1 = _mm256_load_ps(b + k * kNR + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR; ++i) {
            const __m256 av = _mm256_broadcast_ss(a[i] + k);
            c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
        }
    }
    alignas(32) float c[MR][kNR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
        _mm256_store_ps(c[i], c0[i]);
        _mm256_store_ps(c[i] + 8, c1[i]);
    }
    for (int i = 0; i < MR; ++i) {
        float* y = y_row(p, t0 + i) + o0;
        if (bias16 != nullptr) {
            for (int j = 0; j < kNR; ++j) c[i][j] += bias16[j];
        }
        if (const float* r = residual_row(p, t0 + i)) {
            for (int j = 0; j < n_valid; ++j) c[i][j] += r[o0 + j];
        }
        std::memcpy(y, c[i], static_cast<size_t>(n_valid) * sizeof(float));
    }
#else
    for (int i = 0; i < MR; ++i) {
        float c[kNR] = {};
        for (int64_t k = 0; k < n_in; ++k) {
            for (int j = 0; j < kNR; ++j) c[j] += a[i][k] * b[k * kNR + j];
        }
        float* y = y_row(p, t0 + i) + o0;
        const float* r = residual_row(p, t0 + i);
        for (int j = 0; j < n_valid; ++j) {
            const float v = bias16 ? c[j] + bias16[j] : c[j];
            y[j] = r ? v + r[o0 + j] : v;
        }
    }
#endif
}

using MicroKernel = void (*)(const MatmulParams&, int64_t, const float*, int64_t, int,
                             const float*);
constexpr MicroKernel kMicroKernels[kMR + 1] = {nullptr,          micro_kernel<1>, micro_kernel<2>,
                                                micro_kernel<3>,  micro_kernel<4>, micro_kernel<5>,
                                                micro_kernel<6>};

void prefill_path(const MatmulParams& p) {
    const int64_t n_tokens = p.x.shape[0], n_out = p.w.n_rows, n_in = p.w.n_cols;
    const int64_t panel = kPanelMicro * kNR;
    const int64_t n_items = (n_out + panel - 1) / panel;
    thread_pool().parallel_for(n_items, [&](int64_t item, int) {
        const int64_t o_begin = item * panel;
        const int n_micro = static_cast<int>(std::min<int64_t>(kPanelMicro, (n_out - o_begin + kNR - 1) / kNR));
        float* rows = t_scratch.rows.reserve(static_cast<size_t>(kNR * n_in));
        float* packed = t_scratch.packed.reserve(static_cast<size_t>(kPanelMicro * kNR * n_in));
        alignas(32) float bias16[kPanelMicro][kNR] = {};
        for (int m = 0; m < n_micro; ++m) {
            const int64_t o0 = o_begin + m * kNR;
            pack_micro_panel(p, o0, rows, packed + m * kNR * n_in);
            if (!p.bias.empty()) {
                for (int j = 0; j < kNR && o0 + j < n_out; ++j) {
                    bias16[m][j] = p.bias.ptr<const float>()[(o0 + j) * p.bias.stride[0]];
                }
            }
        }
        for (int64_t t0 = 0; t0 < n_tokens; t0 += kMR) {
            const int mr = static_cast<int>(std::min<int64_t>(kMR, n_tokens - t0));
            for (int m = 0; m < n_micro; ++m) {
                const int64_t o0 = o_begin + m * kNR;
                const int n_valid = static_cast<int>(std::min<int64_t>(kNR, n_out - o0));
                kMicroKernels[mr](p, t0, packed + m * kNR * n_in, o0, n_valid,
                                  p.bias.empty() ? nullptr : bias16[m]);
            }
        }
    });
}


// ---- kWeightDotType: activations in the weight's dot type (ops.h) ------------------------------

// Q8_0 (and Q8_1 when s != nullptr) quantization of one row, bit-exact with the rule in ops.h
// and ggml's x86 quantizer: d = f16(amax / 127), q = nearest-even(x * (127 / amax)).
void quantize_row_q8(const float* x, int64_t n, int8_t* q, float* d, float* s) {
    for (int64_t b = 0; b < n / 32; ++b) {
        const float* xb = x + b * 32;
        int8_t* qb = q + b * 32;
        int qsum = 0;
#if TCA_CPU_AVX2
        __m256 v[4];
        const __m256 sign = _mm256_set1_ps(-0.0f);
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < 4; ++i) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[i]));
        }
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mx, 1), _mm256_castps256_ps128(mx));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        __m256i iv[4];
        for (int i = 0; i < 4; ++i) {
            iv[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], id),
                                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
        if (s != nullptr) {
            const __m256i t = _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3]));
            __m128i h = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
            qsum = _mm_cvtsi128_si32(h);
        }
        const __m256i p01 = _mm256_packs_epi32(iv[0], iv[1]), p23 = _mm256_packs_epi32(iv[2], iv[3]);
        const __m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23),
                                                      _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb), p);
#else
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (int j = 0; j < 32; ++j) {
            const float r = std::nearbyint(xb[j] * id);
            const int qi = static_cast<int>(std::min(127.0f, std::max(-128.0f, r)));
            qb[j] = static_cast<int8_t>(qi);
            qsum += qi;
        }
#endif
        const float db = amax / 127.0f;
        d[b] = f16_to_f32(f32_to_f16(db));
        if (s != nullptr) s[b] = f16_to_f32(f32_to_f16(db * static_cast<float>(qsum)));
    }
}

// Q8_K quantization of one row (blocks of 256), dequantized back to f32 (d * q in f32) for the
// f32 kernels.
void q8_k_round_row(const float* x, int64_t n, float* out) {
    for (int64_t b = 0; b < n / 256; ++b) {
        const float* xb = x + b * 256;
        float* ob = out + b * 256;
        float amax = 0.0f, mx = 0.0f;
        for (int j = 0; j < 256; ++j) {
            if (std::fabs(xb[j]) > amax) {
                amax = std::fabs(xb[j]);
                mx = xb[j];
            }
        }
        if (amax == 0.0f) {
            std::memset(ob, 0, 256 * sizeof(float));
            continue;
        }
        const float iscale = -127.0f / mx, d = 1.0f / iscale;
        for (int j = 0; j < 256; ++j) {
            const float q = std::min(127.0f, std::nearbyint(iscale * xb[j]));
            ob[j] = d * q;
        }
    }
}

// f16 / bf16 rounding of one row (round to nearest even both).
void half_round_row(bool f16, const float* x, int64_t n, float* out) {
    int64_t i = 0;
#if TCA_CPU_AVX2
    if (f16) {
        for (; i + 8 <= n; i += 8) {
            const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
            _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
        }
    }
#endif
    for (; i < n; ++i) out[i] = f16 ? f16_to_f32(f32_to_f16(x[i])) : bf16_to_f32(f32_to_bf16(x[i]));
}

// Activations as Q8_0 / Q8_1 blocks for the integer kernels.
struct QuantActs {
    const int8_t* q;  // [n_tokens, n_in]
    const float* d;   // [n_tokens, nb]
    const float* s;   // [n_tokens, nb] Q8_1 only, else nullptr
    int64_t n_in, nb;
    const float* dt = nullptr;  // [nb, ldt]: d transposed (more than 4 tokens), else nullptr
    int64_t ldt = 0;
};

// Bytes per block of the integer-path weight types, and the offsets of d, m, qh and qs.
struct IntBlock {
    int64_t bytes;
    bool has_m, has_qh;
    int qs_off;
};
IntBlock int_block(GgmlType t) {
    switch (t) {
        case GgmlType::kQ8_0: return {34, false, false, 2};
        case GgmlType::kQ4_0: return {18, false, false, 2};
        case GgmlType::kQ5_0: return {22, false, true, 6};
        case GgmlType::kQ4_1: return {20, true, false, 4};
        default: return {24, true, true, 8};  // Q5_1
    }
}

#if TCA_CPU_AVX2
// The 32 quants of a weight block as int8 (signed for the _0 types, 0..31 for the _1 types).
template <GgmlType T>
inline __m256i weight_block_i8(const uint8_t* blk) {
    if constexpr (T == GgmlType::kQ8_0) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    } else if constexpr (T == GgmlType::kQ4_0) {
        return q4_0_block_i8(blk);
    } else {
        constexpr IntBlock ib = T == GgmlType::kQ5_0 ? IntBlock{22, false, true, 6}
                              : T == GgmlType::kQ4_1 ? IntBlock{20, true, false, 4}
                                                     : IntBlock{24, true, true, 8};
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + ib.qs_off));
        const __m128i m = _mm_set1_epi8(0x0f);
        __m256i v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
        if constexpr (ib.has_qh) {
            // Bit j of qh -> 0x10 in byte j: byte j/8 of qh to lane j, test bit j%8.
            uint32_t qh;
            std::memcpy(&qh, blk + (ib.has_m ? 4 : 2), 4);
            const __m256i bc = _mm256_set1_epi32(static_cast<int>(qh));
            const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
            const __m256i bits = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
            const __m256i by = _mm256_shuffle_epi8(bc, sel);
            const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(by, bits), bits);
            v = _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
        }
        if constexpr (T == GgmlType::kQ5_0) v = _mm256_sub_epi8(v, _mm256_set1_epi8(16));
        return v;
    }
}

// Integer dot products of one weight row with NT quantized token rows: per block
// sum q_w * q_a in int32 (maddubs on |w| and sign-moved a, then madd), scaled in f32 by
// d_w * d_a; the _1 types add m_w * s_a per block.
template <GgmlType T, int NT>
void row_dot_int(const uint8_t* row, const QuantActs& a, int64_t t0, float* out) {
    constexpr bool kHasM = T == GgmlType::kQ4_1 || T == GgmlType::kQ5_1;
    const IntBlock ib = int_block(T);
    __m256 acc[NT];
    float macc[NT];
    for (int t = 0; t < NT; ++t) {
        acc[t] = _mm256_setzero_ps();
        macc[t] = 0.0f;
    }
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (NT == 4 && !kHasM) {
        if (a.dt != nullptr) {
            // The 4 tokens' scale products dw * d_a in one multiply (the same f32 products),
            // each then broadcast from its lane.
            for (int64_t b = 0; b < a.nb; ++b) {
                const uint8_t* blk = row + b * ib.bytes;
                const __m256i w = weight_block_i8<T>(blk);
                const __m256i aw = _mm256_sign_epi8(w, w);
                const __m128 sc = _mm_mul_ps(_mm_set1_ps(load_f16_scale(blk)), _mm_loadu_ps(a.dt + b * a.ldt + t0));
                const __m256 sc2 = _mm256_set_m128(sc, sc);
#define TCA_INT4_STEP(t)                                                                               \
    {                                                                                                  \
        const int64_t tb = (t0 + (t)) * a.nb + b;                                                      \
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q + tb * 32));        \
        const __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));                         \
        const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));                            \
        acc[t] = _mm256_fmadd_ps(_mm256_permute_ps(sc2, (t) * 0x55), f, acc[t]);                      \
    }
                TCA_INT4_STEP(0)
                TCA_INT4_STEP(1)
                TCA_INT4_STEP(2)
                TCA_INT4_STEP(3)
#undef TCA_INT4_STEP
            }
            for (int t = 0; t < NT; ++t) out[t] = lanes_sum(acc[t]);
            return;
        }
    }
    for (int64_t b = 0; b < a.nb; ++b) {
        const uint8_t* blk = row + b * ib.bytes;
        const float dw = load_f16_scale(blk);
        const __m256i w = weight_block_i8<T>(blk);
        const __m256i aw = _mm256_sign_epi8(w, w);
        for (int t = 0; t < NT; ++t) {
            const int64_t tb = (t0 + t) * a.nb + b;
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q + tb * 32));
            const __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));
            const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a.d[tb]), f, acc[t]);
            if constexpr (kHasM) macc[t] += load_f16_scale(blk + 2) * a.s[tb];
        }
    }
    for (int t = 0; t < NT; ++t) out[t] = lanes_sum(acc[t]) + macc[t];
}
#else
template <GgmlType T, int NT>
void row_dot_int(const uint8_t* row, const QuantActs& a, int64_t t0, float* out) {
    const IntBlock ib = int_block(T);
    for (int t = 0; t < NT; ++t) out[t] = 0.0f;
    for (int64_t b = 0; b < a.nb; ++b) {
        const uint8_t* blk = row + b * ib.bytes;
        const float dw = load_f16_scale(blk);
        float w[32];
        decode_row(T, blk, 32, w);
        const float m = ib.has_m ? load_f16_scale(blk + 2) : 0.0f;
        for (int t = 0; t < NT; ++t) {
            const int64_t tb = (t0 + t) * a.nb + b;
            int32_t isum = 0;
            for (int j = 0; j < 32; ++j) {
                // (w - m) / d recovers the integer quant exactly for every block type here.
                const auto qw = static_cast<int32_t>(std::nearbyint(dw != 0.0f ? (w[j] - m) / dw : 0.0f));
                isum += qw * a.q[tb * 32 + j];
            }
            out[t] += dw * a.d[tb] * static_cast<float>(isum) + (ib.has_m ? m * a.s[tb] : 0.0f);
        }
    }
}
#endif

template <GgmlType T>
void int_path(const MatmulParams& p, const QuantActs& a) {
    const int64_t n_tokens = p.x.shape[0], n_out = p.w.n_rows;
    const int64_t row_bytes = a.nb * int_block(T).bytes;
    const int n_threads = thread_pool().n_threads();
    const int64_t rows_per_item =
        n_tokens <= kMaxDecodeTokens
            ? std::max<int64_t>(8, (n_out + 8 * n_threads - 1) / (8 * n_threads))
            : kPanelMicro * kNR;
    const int64_t n_items = (n_out + rows_per_item - 1) / rows_per_item;
    const auto* w = static_cast<const uint8_t*>(p.w.data);
    const float* bias = p.bias.empty() ? nullptr : p.bias.ptr<const float>();
    [[maybe_unused]] const int64_t ahead = std::max<int64_t>(1, (kPrefetchBytes + row_bytes - 1) / row_bytes);
    thread_pool().parallel_for(n_items, [&](int64_t item, int) {
        const int64_t o0 = item * rows_per_item, o1 = std::min(n_out, o0 + rows_per_item);
        // Token groups of 4 reuse the item's rows from L1/L2 (64 rows of 768 Q8_0: 52 KB).
        for (int64_t t0 = 0; t0 < n_tokens; t0 += 4) {
            const int64_t nt = std::min<int64_t>(4, n_tokens - t0);
            for (int64_t o = o0; o < o1; ++o) {
#if TCA_CPU_AVX2
                if (t0 == 0 && o + ahead < o1) {
                    const uint8_t* next = w + (o + ahead) * row_bytes;
                    for (int64_t b = 0; b < row_bytes; b += 64) {
                        _mm_prefetch(reinterpret_cast<const char*>(next + b), _MM_HINT_T0);
                    }
                }
#endif
                const uint8_t* row = w + o * row_bytes;
                float s[4];
                switch (nt) {
                    case 1: row_dot_int<T, 1>(row, a, t0, s); break;
                    case 2: row_dot_int<T, 2>(row, a, t0, s); break;
                    case 3: row_dot_int<T, 3>(row, a, t0, s); break;
                    default: row_dot_int<T, 4>(row, a, t0, s); break;
                }
                for (int64_t t = 0; t < nt; ++t) y_row(p, t0 + t)[o] = epilogue(p, bias, t0 + t, o, s[t]);
            }
        }
    });
}

Status matmul_f32(const MatmulParams& p);

// Converts the activations once per call (token rows in parallel when there are many), then
// runs the integer kernels (Q8_0 / Q8_1 dot types) or the f32 kernels on the converted rows.
Status matmul_native(const MatmulParams& p, GgmlType dot) {
    const int64_t n_tokens = p.x.shape[0], n_in = p.w.n_cols;
    Scratch& sc = t_scratch;
    auto for_tokens = [&](auto&& fn) {
        if (n_tokens <= kMaxDecodeTokens) {
            for (int64_t t = 0; t < n_tokens; ++t) fn(t);
        } else {
            thread_pool().parallel_for(n_tokens, [&](int64_t t, int) { fn(t); });
        }
    };
    if (dot == GgmlType::kQ8_0 || dot == GgmlType::kQ8_1) {
        const int64_t nb = n_in / 32;
        int8_t* q = sc.act_q.reserve(static_cast<size_t>(n_tokens * n_in));
        float* d = sc.act_d.reserve(static_cast<size_t>(n_tokens * nb));
        float* s = dot == GgmlType::kQ8_1 ? sc.act_s.reserve(static_cast<size_t>(n_tokens * nb)) : nullptr;
        for_tokens([&](int64_t t) {
            quantize_row_q8(x_row(p, t), n_in, q + t * n_in, d + t * nb, s ? s + t * nb : nullptr);
        });
        QuantActs a{q, d, s, n_in, nb};
        if (n_tokens > kMaxDecodeTokens) {
            // Scales by block, the tokens of a block contiguous (row_dot_int's 4-token kernel
            // loads 4 at once); 3 padding columns so the last group's load stays in bounds.
            const int64_t ldt = n_tokens + 3;
            float* dt = sc.act_dt.reserve(static_cast<size_t>(nb * ldt));
            for (int64_t b = 0; b < nb; ++b) {
                for (int64_t t = 0; t < n_tokens; ++t) dt[b * ldt + t] = d[t * nb + b];
                for (int64_t t = n_tokens; t < ldt; ++t) dt[b * ldt + t] = 0.0f;
            }
            a.dt = dt;
            a.ldt = ldt;
        }
        switch (p.w.type) {
            case GgmlType::kQ8_0: int_path<GgmlType::kQ8_0>(p, a); break;
            case GgmlType::kQ4_0: int_path<GgmlType::kQ4_0>(p, a); break;
            case GgmlType::kQ5_0: int_path<GgmlType::kQ5_0>(p, a); break;
            case GgmlType::kQ4_1: int_path<GgmlType::kQ4_1>(p, a); break;
            default: int_path<GgmlType::kQ5_1>(p, a); break;
        }
        return Status();
    }
    float* xr = sc.act_x.reserve(static_cast<size_t>(n_tokens * n_in));
    for_tokens([&](int64_t t) {
        if (dot == GgmlType::kQ8_K) {
            q8_k_round_row(x_row(p, t), n_in, xr + t * n_in);
        } else {
            half_round_row(dot == GgmlType::kF16, x_row(p, t), n_in, xr + t * n_in);
        }
    });
    MatmulParams q = p;
    q.x = make_view(xr, DType::kF32, {n_tokens, n_in});
    q.act = MatmulActivations::kF32;
    return matmul_f32(q);
}

}  // namespace

Status matmul(const MatmulParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    if (p.input != MatmulInput::kX) {
        // The input op with its own kernel into a buffer, then the matmul of it: bitwise the two
        // ops in sequence (the fold saves launches on a GPU, nothing here).
        thread_local std::vector<float> in;
        in.resize(static_cast<size_t>(p.x.shape[0] * p.w.n_cols));
        const TensorView iv = make_view(in.data(), DType::kF32, {p.x.shape[0], p.w.n_cols});
        TCA_RETURN_IF_ERROR(p.input == MatmulInput::kRmsNorm
                                ? rms_norm(RmsNormParams{p.x, p.norm_weight, iv, p.norm_eps})
                                : swiglu(SwigluParams{p.x, p.up, iv}));
        return matmul(matmul_of_input(p, iv));
    }
    const GgmlType dot = matmul_dot_type(p.w.type);
    if (p.act == MatmulActivations::kWeightDotType && dot != GgmlType::kF32 && p.x.shape[0] > 0) {
        return matmul_native(p, dot);
    }
    return matmul_f32(p);
}

namespace {

Status matmul_f32(const MatmulParams& p) {
    switch (p.x.shape[0]) {
        case 0: return Status();
        case 1: decode_path<1>(p); return Status();
        case 2: decode_path<2>(p); return Status();
        case 3: decode_path<3>(p); return Status();
        case 4: decode_path<4>(p); return Status();
        default: break;
    }
    static_assert(kMaxDecodeTokens == 4, "matmul: the switch above covers the decode path");
    prefill_path(p);
    return Status();
}

}  // namespace

}  // namespace tca::cpu
