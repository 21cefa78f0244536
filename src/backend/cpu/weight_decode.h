// Weight-row decoding for the model ops on the CPU: ggml rows (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
// Q5_0, Q5_1, Q4_K, Q6_K) to f32, bit-exact with model/ggml_quants.h dequantize() (the values
// the float64 reference multiplies), plus the AVX2 block loaders the fused matmul dot products
// use.
#pragma once

#include <cstdint>
#include <cstring>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/simd.h"
#include "backend/ops.h"
#include "core/half.h"
#include "model/ggml_types.h"

namespace tca::cpu {

// Bytes of one row of `n` elements of a supported weight type (n a whole number of blocks).
int64_t weight_row_bytes(GgmlType t, int64_t n);

// Decodes elements [0, n) of one weight row (n a whole number of blocks) into dst, bit-exact with
// dequantize(). AVX2 for F16, BF16, Q8_0, Q4_0; the others go through dequantize().
void decode_row(GgmlType t, const uint8_t* row, int64_t n, float* dst);

// A block's f16 scale as f32: one F16C instruction when available instead of the branchy
// software conversion (once per 32 weights on the decode path). Exact either way.
inline float load_f16_scale(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, sizeof h);
#if TCA_CPU_AVX2 && defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return f16_to_f32(h);
#endif
}

#if TCA_CPU_AVX2
// The 32 signed 8-bit quants of a Q4_0 block (bytes 2..17) as int8 in [-8, 7]: element j < 16 is
// the low nibble of byte j, element j + 16 its high nibble.
inline __m256i q4_0_block_i8(const uint8_t* blk) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i m = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(q, m);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
    const __m256i v = _mm256_set_m128i(hi, lo);
    return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}
// 8 int8 lanes (bytes 8*i .. 8*i+7 of v) as f32.
template <int I>
inline __m256 i8x8_to_ps(__m256i v) {
    const __m128i half = I < 2 ? _mm256_castsi256_si128(v) : _mm256_extracti128_si256(v, 1);
    const __m128i bytes = (I % 2 == 0) ? half : _mm_srli_si128(half, 8);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
}
// 8 f16 / bf16 weights as f32, and the sum of 8 lanes (own names: simd.h belongs to attention).
// 8 int8 values in memory as f32.
inline __m256 i8x8_mem_to_ps(const uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline __m256 ld8_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 ld8_bf16(const uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float lanes_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

}  // namespace tca::cpu
