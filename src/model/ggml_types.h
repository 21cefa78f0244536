// ggml tensor type ids as stored in GGUF files, their block geometry (elements per block, bytes
// per block) and names. Knows every type id ggml has defined, so an unsupported one is reported
// by name ("unsupported tensor type Q2_K") rather than as garbage.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace tca {

enum class GgmlType : uint32_t {
    kF32 = 0,
    kF16 = 1,
    kQ4_0 = 2,
    kQ4_1 = 3,
    kQ5_0 = 6,
    kQ5_1 = 7,
    kQ8_0 = 8,
    kQ8_1 = 9,
    kQ2_K = 10,
    kQ3_K = 11,
    kQ4_K = 12,
    kQ5_K = 13,
    kQ6_K = 14,
    kQ8_K = 15,
    kIQ2_XXS = 16,
    kIQ2_XS = 17,
    kIQ3_XXS = 18,
    kIQ1_S = 19,
    kIQ4_NL = 20,
    kIQ3_S = 21,
    kIQ2_S = 22,
    kIQ4_XS = 23,
    kI8 = 24,
    kI16 = 25,
    kI32 = 26,
    kI64 = 27,
    kF64 = 28,
    kIQ1_M = 29,
    kBF16 = 30,
    kTQ1_0 = 34,
    kTQ2_0 = 35,
    kMXFP4 = 39,
};

struct GgmlTypeTraits {
    const char* name;        // "Q4_K"
    int64_t block_elems;     // elements per block (1 for plain types)
    int64_t block_bytes;     // bytes per block
    bool can_dequantize;     // tca has a dequantizer for it (ggml_quants.h)
};

// nullptr when `id` is not a type ggml has defined (or one it removed, like 4 and 5).
const GgmlTypeTraits* ggml_type_traits(uint32_t id);
inline const GgmlTypeTraits* ggml_type_traits(GgmlType t) {
    return ggml_type_traits(static_cast<uint32_t>(t));
}
// "Q4_K", or "type 99" for an unknown id (the returned pointer is to static storage only for
// known ids; use ggml_type_label for messages).
const char* ggml_type_name(GgmlType t);
// A printable label for any id: "Q4_K" or "unknown type 99".
std::string ggml_type_label(uint32_t id);

// Bytes of a row of `n_elems` elements. Errors when n_elems is negative, not a whole number of
// blocks, the type is unknown, or the size overflows int64.
Result<uint64_t> ggml_row_bytes(GgmlType t, int64_t n_elems);

// Ok when tca can dequantize `t`, else `unsupported tensor type Q2_K`.
Status ggml_check_dequantizable(GgmlType t);

}  // namespace tca
