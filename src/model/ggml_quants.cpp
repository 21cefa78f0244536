// Block dequantizers and reference quantizers. Block layouts (little-endian, f16 = IEEE half):
//   Q4_0 {f16 d; u8 qs[16]}            x = (nibble - 8) * d; low nibbles are elements 0..15
//   Q4_1 {f16 d, m; u8 qs[16]}         x = nibble * d + m
//   Q5_0 {f16 d; u32 qh; u8 qs[16]}    5th bit of element j is bit j of qh; x = (q - 16) * d
//   Q5_1 {f16 d, m; u32 qh; u8 qs[16]} x = q * d + m
//   Q8_0 {f16 d; i8 qs[32]}            x = q * d
//   Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]} 8 sub-blocks of 32 with 6-bit scale/min
//   Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d} 16 sub-blocks of 16, 6-bit values - 32
// The float operations are ordered as in ggml's reference code so results agree exactly.
#include "model/ggml_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"

// Bit-exactness needs `a * b - c` to round twice, as written: no fused multiply-add.
// (GCC does not contract in ISO C++ mode; clang contracts unless told not to.)
#ifdef __clang__
#pragma clang fp contract(off)
#endif

namespace tca {

namespace {

uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
float load_f16(const uint8_t* p) { return f16_to_f32(load_u16(p)); }

void dequant_q4_0(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const uint8_t* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        const int x0 = (qs[j] & 0x0f) - 8;
        const int x1 = (qs[j] >> 4) - 8;
        y[j] = static_cast<float>(x0) * d;
        y[j + 16] = static_cast<float>(x1) * d;
    }
}

void dequant_q4_1(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const float m = load_f16(b + 2);
    const uint8_t* qs = b + 4;
    for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(qs[j] & 0x0f) * d + m;
        y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
    }
}

void dequant_q5_0(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const uint32_t qh = load_u32(b + 2);
    const uint8_t* qs = b + 6;
    for (int j = 0; j < 16; ++j) {
        const uint32_t h0 = (qh >> j) & 1u;
        const uint32_t h1 = (qh >> (j + 16)) & 1u;
        const int x0 = static_cast<int>((qs[j] & 0x0fu) | (h0 << 4)) - 16;
        const int x1 = static_cast<int>((qs[j] >> 4) | (h1 << 4)) - 16;
        y[j] = static_cast<float>(x0) * d;
        y[j + 16] = static_cast<float>(x1) * d;
    }
}

void dequant_q5_1(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const float m = load_f16(b + 2);
    const uint32_t qh = load_u32(b + 4);
    const uint8_t* qs = b + 8;
    for (int j = 0; j < 16; ++j) {
        const uint32_t h0 = (qh >> j) & 1u;
        const uint32_t h1 = (qh >> (j + 16)) & 1u;
        const uint32_t x0 = (qs[j] & 0x0fu) | (h0 << 4);
        const uint32_t x1 = (qs[j] >> 4) | (h1 << 4);
        y[j] = static_cast<float>(x0) * d + m;
        y[j + 16] = static_cast<float>(x1) * d + m;
    }
}

void dequant_q8_0(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    for (int j = 0; j < 32; ++j) {
        y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
    }
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K block, packed in 12 bytes: sub-blocks
// 0..3 use the low 6 bits of bytes j (scale) and j+4 (min); sub-blocks 4..7 combine a nibble of
// byte j+4 with the top 2 bits of bytes j-4 (scale) and j (min).
void q4k_scale_min(int j, const uint8_t* s, uint8_t* sc, uint8_t* mn) {
    if (j < 4) {
        *sc = static_cast<uint8_t>(s[j] & 63);
        *mn = static_cast<uint8_t>(s[j + 4] & 63);
    } else {
        *sc = static_cast<uint8_t>((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4));
        *mn = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

void dequant_q4_k(const uint8_t* b, float* y) {
    const float d = load_f16(b);
    const float dmin = load_f16(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* q = b + 16;
    // Four chunks of 64 elements; each byte holds element l (low nibble) and l + 32 (high).
    for (int chunk = 0; chunk < 4; ++chunk) {
        uint8_t sc = 0, mn = 0;
        q4k_scale_min(2 * chunk, scales, &sc, &mn);
        const float d1 = d * static_cast<float>(sc);
        const float m1 = dmin * static_cast<float>(mn);
        q4k_scale_min(2 * chunk + 1, scales, &sc, &mn);
        const float d2 = d * static_cast<float>(sc);
        const float m2 = dmin * static_cast<float>(mn);
        for (int l = 0; l < 32; ++l) y[l] = d1 * static_cast<float>(q[l] & 0x0f) - m1;
        for (int l = 0; l < 32; ++l) y[32 + l] = d2 * static_cast<float>(q[l] >> 4) - m2;
        q += 32;
        y += 64;
    }
}

void dequant_q6_k(const uint8_t* b, float* y) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = load_f16(b + 208);
    // Two halves of 128 elements; in each, element l + 32*k (k = 0..3) takes its low 4 bits
    // from ql (nibble k/2 of byte l + 32*(k%2)) and its high 2 bits from bits 2k..2k+1 of qh[l].
    for (int half = 0; half < 2; ++half) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
            y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
            y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
            y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
        }
        ql += 64;
        qh += 32;
        sc += 8;
        y += 128;
    }
}

using BlockFn = void (*)(const uint8_t*, float*);

}  // namespace

Status dequantize(GgmlType t, const void* src, float* dst, int64_t n_elems) {
    TCA_RETURN_IF_ERROR(ggml_check_dequantizable(t));
    TCA_ASSIGN_OR_RETURN(const uint64_t n_bytes, ggml_row_bytes(t, n_elems));
    (void)n_bytes;
    const auto* s = static_cast<const uint8_t*>(src);
    switch (t) {
        case GgmlType::kF32: std::memcpy(dst, s, static_cast<size_t>(n_elems) * 4); return {};
        case GgmlType::kF16:
            for (int64_t i = 0; i < n_elems; ++i) dst[i] = load_f16(s + 2 * i);
            return {};
        case GgmlType::kBF16:
            for (int64_t i = 0; i < n_elems; ++i) dst[i] = bf16_to_f32(load_u16(s + 2 * i));
            return {};
        default: break;
    }
    BlockFn fn = nullptr;
    switch (t) {
        case GgmlType::kQ4_0: fn = dequant_q4_0; break;
        case GgmlType::kQ4_1: fn = dequant_q4_1; break;
        case GgmlType::kQ5_0: fn = dequant_q5_0; break;
        case GgmlType::kQ5_1: fn = dequant_q5_1; break;
        case GgmlType::kQ8_0: fn = dequant_q8_0; break;
        case GgmlType::kQ4_K: fn = dequant_q4_k; break;
        case GgmlType::kQ6_K: fn = dequant_q6_k; break;
        default: return unsupported("unsupported tensor type %s", ggml_type_name(t));
    }
    const GgmlTypeTraits* tr = ggml_type_traits(t);
    const int64_t n_blocks = n_elems / tr->block_elems;
    for (int64_t i = 0; i < n_blocks; ++i) {
        fn(s + i * tr->block_bytes, dst + i * tr->block_elems);
    }
    return {};
}

void quantize_q8_0(const float* src, void* dst, int64_t n_elems) {
    TCA_ASSERT(n_elems % 32 == 0, "Q8_0 quantization of %lld elements", (long long)n_elems);
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n_elems / 32; ++i) {
        const float* x = src + i * 32;
        uint8_t* b = out + i * 34;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t dh = f32_to_f16(d);
        std::memcpy(b, &dh, 2);
        for (int j = 0; j < 32; ++j) {
            const float q = std::round(x[j] * id);
            b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
        }
    }
}

void quantize_q4_0(const float* src, void* dst, int64_t n_elems) {
    TCA_ASSERT(n_elems % 32 == 0, "Q4_0 quantization of %lld elements", (long long)n_elems);
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n_elems / 32; ++i) {
        const float* x = src + i * 32;
        uint8_t* b = out + i * 18;
        // The signed value of largest magnitude maps to -8, so the range [-8, 7] is used fully.
        float amax = 0.0f, vmax = 0.0f;
        for (int j = 0; j < 32; ++j) {
            if (std::fabs(x[j]) > amax) {
                amax = std::fabs(x[j]);
                vmax = x[j];
            }
        }
        const float d = vmax / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t dh = f32_to_f16(d);
        std::memcpy(b, &dh, 2);
        for (int j = 0; j < 16; ++j) {
            const float v0 = x[j] * id + 8.5f;
            const float v1 = x[j + 16] * id + 8.5f;
            const int q0 = std::clamp(static_cast<int>(v0), 0, 15);
            const int q1 = std::clamp(static_cast<int>(v1), 0, 15);
            b[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
        }
    }
}

Result<std::vector<uint8_t>> encode_from_f32(GgmlType t, const float* src, int64_t n_elems) {
    TCA_ASSIGN_OR_RETURN(const uint64_t n_bytes, ggml_row_bytes(t, n_elems));
    std::vector<uint8_t> out(static_cast<size_t>(n_bytes));
    switch (t) {
        case GgmlType::kF32:
            if (n_elems > 0) std::memcpy(out.data(), src, static_cast<size_t>(n_bytes));
            break;
        case GgmlType::kF16:
            for (int64_t i = 0; i < n_elems; ++i) {
                const uint16_t h = f32_to_f16(src[i]);
                std::memcpy(out.data() + 2 * i, &h, 2);
            }
            break;
        case GgmlType::kBF16:
            for (int64_t i = 0; i < n_elems; ++i) {
                const uint16_t h = f32_to_bf16(src[i]);
                std::memcpy(out.data() + 2 * i, &h, 2);
            }
            break;
        case GgmlType::kQ8_0: quantize_q8_0(src, out.data(), n_elems); break;
        case GgmlType::kQ4_0: quantize_q4_0(src, out.data(), n_elems); break;
        default:
            return unsupported("encoding f32 data as %s is not supported (F32, F16, BF16, Q8_0, "
                               "Q4_0 are)",
                               ggml_type_name(t));
    }
    return out;
}

}  // namespace tca
