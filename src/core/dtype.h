// Element types of tensors. Storage may be low precision; compute is f32 (kernels) or f64
// (reference). Quantized GGUF block types live with the model readers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/half.h"

namespace tca {

enum class DType : uint8_t { kF32, kF16, kBF16, kF64, kI32, kI64, kU8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
// Float storage types a kernel may read K/V from.
inline bool is_float_storage(DType t) {
    return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
}

// Read/write one element of a float storage type as f32.
inline float load_as_f32(const void* base, int64_t index, DType t) {
    switch (t) {
        case DType::kF32: return static_cast<const float*>(base)[index];
        case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(base)[index]);
        case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[index]);
        case DType::kF64: return static_cast<float>(static_cast<const double*>(base)[index]);
        default: return 0.0f;
    }
}
inline void store_from_f32(void* base, int64_t index, DType t, float v) {
    switch (t) {
        case DType::kF32: static_cast<float*>(base)[index] = v; break;
        case DType::kF16: static_cast<uint16_t*>(base)[index] = f32_to_f16(v); break;
        case DType::kBF16: static_cast<uint16_t*>(base)[index] = f32_to_bf16(v); break;
        case DType::kF64: static_cast<double*>(base)[index] = v; break;
        default: break;
    }
}

}  // namespace tca
