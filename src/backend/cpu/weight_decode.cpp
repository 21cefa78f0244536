// Weight-row decoding to f32 (weight_decode.h). Every path is bit-exact with dequantize():
// the products q * d are exact in f32 (at most 8 + 11 significant bits), so vector and scalar
// code agree to the last bit.
#include "backend/cpu/weight_decode.h"

#include <cstring>

#include "model/ggml_quants.h"

namespace tca::cpu {

namespace {

#if TCA_CPU_AVX2
// The K-quant decoders vectorise the loops of ggml_quants.cpp with the same float operations
// in the same order; every product before the last rounding is exact in f32 (scale * quant
// has at most 21 significant bits, d*sc*q rounds once in both), so results are bit-exact.
// Decode-path matmul, 2 threads of a Xeon (bench/model_ops_bench.cpp): Q6_K 0.6 -> 4.3-5.6
// GB/s of weights and Q4_K 3.0 -> 4.0-4.8 GB/s over the scalar dequantize() path.

// 6-bit scale and min of sub-block j of a Q4_K block (the packing of ggml_quants.cpp).
inline void q4k_scale_min(int j, const uint8_t* s, int* sc, int* mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}: 4 chunks of 64, element l of a chunk is the
// low nibble of byte l (l < 32) or the high nibble of byte l - 32; x = d*sc * q - dmin*mn.
void decode_q4_k(const uint8_t* blk, float* y) {
    const float d = load_f16_scale(blk), dmin = load_f16_scale(blk + 2);
    const uint8_t* scales = blk + 4;
    const uint8_t* q = blk + 16;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    alignas(32) uint8_t nib[64];
    for (int chunk = 0; chunk < 4; ++chunk, q += 32, y += 64) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
        _mm256_store_si256(reinterpret_cast<__m256i*>(nib), _mm256_and_si256(v, m4));
        _mm256_store_si256(reinterpret_cast<__m256i*>(nib + 32),
                           _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
        for (int half = 0; half < 2; ++half) {
            int sc = 0, mn = 0;
            q4k_scale_min(2 * chunk + half, scales, &sc, &mn);
            const __m256 ds = _mm256_set1_ps(d * static_cast<float>(sc));
            const __m256 ms = _mm256_set1_ps(dmin * static_cast<float>(mn));
            for (int g = 0; g < 4; ++g) {
                const __m128i b8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(nib + 32 * half + 8 * g));
                const __m256 qf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b8));
                _mm256_storeu_ps(y + 32 * half + 8 * g, _mm256_sub_ps(_mm256_mul_ps(ds, qf), ms));
            }
        }
    }
}

// Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: two halves of 128; element l + 32k
// (k = 0..3) takes 4 low bits from ql and 2 high bits from qh, minus 32; x = d*sc * q.
void decode_q6_k(const uint8_t* blk, float* y) {
    const uint8_t* ql = blk;
    const uint8_t* qh = blk + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
    const float d = load_f16_scale(blk + 208);
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
    const __m256i bias = _mm256_set1_epi8(32);
    alignas(32) int8_t qv[128];
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
        const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
        const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
        auto hi2 = [&](int shift) {
            return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, shift), m2), 4);
        };
        const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l0, m4), hi2(0));
        const __m256i q2 = _mm256_or_si256(_mm256_and_si256(l1, m4), hi2(2));
        const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), hi2(4));
        const __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), hi2(6));
        _mm256_store_si256(reinterpret_cast<__m256i*>(qv), _mm256_sub_epi8(q1, bias));
        _mm256_store_si256(reinterpret_cast<__m256i*>(qv + 32), _mm256_sub_epi8(q2, bias));
        _mm256_store_si256(reinterpret_cast<__m256i*>(qv + 64), _mm256_sub_epi8(q3, bias));
        _mm256_store_si256(reinterpret_cast<__m256i*>(qv + 96), _mm256_sub_epi8(q4, bias));
        for (int k = 0; k < 4; ++k) {
            for (int g = 0; g < 4; ++g) {
                const __m256 ds = _mm256_set1_ps(d * static_cast<float>(sc[g / 2 + 2 * k]));
                const __m128i b8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(qv + 32 * k + 8 * g));
                const __m256 qf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b8));
                _mm256_storeu_ps(y + 32 * k + 8 * g, _mm256_mul_ps(ds, qf));
            }
        }
    }
}
#endif

}  // namespace

int64_t weight_row_bytes(GgmlType t, int64_t n) {
    const GgmlTypeTraits* tr = ggml_type_traits(t);
    TCA_ASSERT(tr != nullptr && n % tr->block_elems == 0, "row of %lld elements of type %u",
               static_cast<long long>(n), static_cast<unsigned>(t));
    return n / tr->block_elems * tr->block_bytes;
}

void decode_row(GgmlType t, const uint8_t* row, int64_t n, float* dst) {
    switch (t) {
        case GgmlType::kF32: std::memcpy(dst, row, static_cast<size_t>(n) * sizeof(float)); return;
#if TCA_CPU_AVX2
        case GgmlType::kF16: {
            const auto* h = reinterpret_cast<const uint16_t*>(row);
            int64_t i = 0;
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, ld8_f16(h + i));
            for (; i < n; ++i) {
                uint16_t v;
                std::memcpy(&v, row + 2 * i, 2);
                dst[i] = f16_to_f32(v);
            }
            return;
        }
        case GgmlType::kBF16: {
            const auto* h = reinterpret_cast<const uint16_t*>(row);
            int64_t i = 0;
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, ld8_bf16(h + i));
            for (; i < n; ++i) {
                uint16_t v;
                std::memcpy(&v, row + 2 * i, 2);
                dst[i] = bf16_to_f32(v);
            }
            return;
        }
        case GgmlType::kQ8_0:
            for (int64_t b = 0; b < n / 32; ++b) {
                const uint8_t* blk = row + b * 34;
                const __m256 d = _mm256_set1_ps(load_f16_scale(blk));
                float* y = dst + b * 32;
                _mm256_storeu_ps(y + 0, _mm256_mul_ps(i8x8_mem_to_ps(blk + 2), d));
                _mm256_storeu_ps(y + 8, _mm256_mul_ps(i8x8_mem_to_ps(blk + 10), d));
                _mm256_storeu_ps(y + 16, _mm256_mul_ps(i8x8_mem_to_ps(blk + 18), d));
                _mm256_storeu_ps(y + 24, _mm256_mul_ps(i8x8_mem_to_ps(blk + 26), d));
            }
            return;
        case GgmlType::kQ4_0:
            for (int64_t b = 0; b < n / 32; ++b) {
                const uint8_t* blk = row + b * 18;
                const __m256 d = _mm256_set1_ps(load_f16_scale(blk));
                const __m256i q = q4_0_block_i8(blk);
                float* y = dst + b * 32;
                _mm256_storeu_ps(y + 0, _mm256_mul_ps(i8x8_to_ps<0>(q), d));
                _mm256_storeu_ps(y + 8, _mm256_mul_ps(i8x8_to_ps<1>(q), d));
                _mm256_storeu_ps(y + 16, _mm256_mul_ps(i8x8_to_ps<2>(q), d));
                _mm256_storeu_ps(y + 24, _mm256_mul_ps(i8x8_to_ps<3>(q), d));
            }
            return;
        case GgmlType::kQ4_K:
            for (int64_t b = 0; b < n / 256; ++b) decode_q4_k(row + b * 144, dst + b * 256);
            return;
        case GgmlType::kQ6_K:
            for (int64_t b = 0; b < n / 256; ++b) decode_q6_k(row + b * 210, dst + b * 256);
            return;
#endif
        default: {
            const Status s = dequantize(t, row, dst, n);
            TCA_ASSERT(s.ok(), "decode_row: %s", s.to_string().c_str());
            return;
        }
    }
}

}  // namespace tca::cpu
