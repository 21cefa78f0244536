// Dequantization of ggml block formats to f32 (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// Q4_K, Q6_K), written from the public block layouts; results match ggml's reference
// dequantizers bit for bit (checked against ggml-quant-vectors). Plus simple round-to-nearest
// quantizers to Q8_0 and Q4_0 used by the GGUF writer to build test models.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "model/ggml_types.h"

namespace tca {

// Dequantizes `n_elems` elements (a whole number of blocks) starting at `src`, which must hold
// ggml_row_bytes(t, n_elems) bytes, into dst[0 .. n_elems). Errors for types without a
// dequantizer or a partial block; never reads past the bytes that size implies.
Status dequantize(GgmlType t, const void* src, float* dst, int64_t n_elems);

// Quantizes n_elems f32 values (a multiple of 32) into dst (ggml_row_bytes bytes).
// Q8_0: d = max|x| / 127, q = round(x / d). Q4_0: d = (signed value of largest magnitude) / -8,
// q = min(15, floor(x / d + 8.5)). Both store d as f16, like ggml's reference quantizers.
void quantize_q8_0(const float* src, void* dst, int64_t n_elems);
void quantize_q4_0(const float* src, void* dst, int64_t n_elems);

// Encodes f32 values as `t` (F32, F16, BF16, Q8_0, Q4_0) into a new byte buffer.
Result<std::vector<uint8_t>> encode_from_f32(GgmlType t, const float* src, int64_t n_elems);

}  // namespace tca
