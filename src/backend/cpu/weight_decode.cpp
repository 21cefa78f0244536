// Weight-row decoding to f32 (weight_decode.h). Every path is bit-exact with dequantize():
// the products q * d are exact in f32 (at most 8 + 11 significant bits), so vector and scalar
// code agree to the last bit.
#include "backend/cpu/weight_decode.h"

#include <cstring>

#include "model/ggml_quants.h"

namespace tca::cpu {

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
                const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
                float* y = dst + b * 32;
                _mm256_storeu_ps(y + 0, _mm256_mul_ps(i8x8_to_ps<0>(q), d));
                _mm256_storeu_ps(y + 8, _mm256_mul_ps(i8x8_to_ps<1>(q), d));
                _mm256_storeu_ps(y + 16, _mm256_mul_ps(i8x8_to_ps<2>(q), d));
                _mm256_storeu_ps(y + 24, _mm256_mul_ps(i8x8_to_ps<3>(q), d));
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
#endif
        default: {
            const Status s = dequantize(t, row, dst, n);
            TCA_ASSERT(s.ok(), "decode_row: %s", s.to_string().c_str());
            return;
        }
    }
}

}  // namespace tca::cpu
