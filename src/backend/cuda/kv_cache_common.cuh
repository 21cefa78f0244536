// Device helpers shared by the compacted-KV-cache kernels (decode_attention.cu,
// kv_cache_ops.cu): f32 <-> f16/bf16 conversions with the exact bit behaviour of core/half.h
// (round to nearest even, NaN and infinity preserved, f16 subnormals), and 8-element row
// chunk loads (16-byte vector loads when the tensor is 16-byte aligned, scalar otherwise).
#pragma once

#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "core/dtype.h"

namespace tca::cuda::kvc {

// Storage dtype as a template argument.
enum class Kv : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

__device__ __forceinline__ float bf16_bits_to_f32(uint32_t h) { return __uint_as_float(h << 16); }

__device__ __forceinline__ float f16_bits_to_f32(uint32_t h) {
    // Hardware conversion: exact for every f16 (subnormals, inf, NaN payload kept).
    return __half2float(__ushort_as_half(static_cast<unsigned short>(h)));
}

// Bit-exact software twin of tca::f16_to_f32 (kept for reference; unused by the kernels).
__device__ __forceinline__ float f16_bits_to_f32_soft(uint32_t h) {
    const uint32_t sign = (h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        if (mant == 0) return __uint_as_float(sign);
        const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    if (exp == 31) return __uint_as_float(sign | 0x7f800000u | (mant << 13));
    return __uint_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Same algorithm as tca::f32_to_bf16 (core/half.h).
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
}

// Same algorithm as tca::f32_to_f16 (core/half.h).
__device__ __forceinline__ uint16_t f32_to_f16_bits(float f) {
    const uint32_t u = __float_as_uint(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
    if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
    if (abs < 0x38800000u) {
        if (abs < 0x33000000u) return static_cast<uint16_t>(sign);
        const uint32_t exp = abs >> 23;
        const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - exp;
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (h & 1u))) ++h;
        return static_cast<uint16_t>(sign | h);
    }
    uint32_t h = ((abs - 0x38000000u) >> 13);
    const uint32_t rem = abs & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
}

// Raw storage of 8 consecutive elements: one uint4 for f16/bf16, two for f32.
template <Kv T>
struct Chunk8 {
    static constexpr int kVecs = T == Kv::kF32 ? 2 : 1;
    uint4 v[kVecs];
};

// Loads elements [off, off + 8) of `base` (element offset; 16-byte aligned when vec).
template <Kv T>
__device__ __forceinline__ void load_chunk(const void* base, int64_t off, bool vec, Chunk8<T>& c) {
    if constexpr (T == Kv::kF32) {
        const float* p = static_cast<const float*>(base) + off;
        if (vec) {
            c.v[0] = __ldg(reinterpret_cast<const uint4*>(p));
            c.v[1] = __ldg(reinterpret_cast<const uint4*>(p) + 1);
        } else {
            uint32_t w[8];
            for (int e = 0; e < 8; ++e) w[e] = __float_as_uint(__ldg(p + e));
            c.v[0] = make_uint4(w[0], w[1], w[2], w[3]);
            c.v[1] = make_uint4(w[4], w[5], w[6], w[7]);
        }
    } else {
        const uint16_t* p = static_cast<const uint16_t*>(base) + off;
        if (vec) {
            c.v[0] = __ldg(reinterpret_cast<const uint4*>(p));
        } else {
            uint32_t w[4];
            for (int e = 0; e < 4; ++e) {
                w[e] = static_cast<uint32_t>(__ldg(p + 2 * e)) |
                       (static_cast<uint32_t>(__ldg(p + 2 * e + 1)) << 16);
            }
            c.v[0] = make_uint4(w[0], w[1], w[2], w[3]);
        }
    }
}

// Element e (0..7) of a chunk as f32 (exact).
template <Kv T>
__device__ __forceinline__ float chunk_elem(const Chunk8<T>& c, int e) {
    if constexpr (T == Kv::kF32) {
        const uint4& q = c.v[e >> 2];
        const uint32_t w = (e & 3) == 0 ? q.x : (e & 3) == 1 ? q.y : (e & 3) == 2 ? q.z : q.w;
        return __uint_as_float(w);
    } else {
        const uint4& q = c.v[0];
        const int wi = e >> 1;
        const uint32_t w = wi == 0 ? q.x : wi == 1 ? q.y : wi == 2 ? q.z : q.w;
        const uint32_t h = (e & 1) ? (w >> 16) : (w & 0xffffu);
        if constexpr (T == Kv::kBF16) {
            return bf16_bits_to_f32(h);
        } else {
            return f16_bits_to_f32(h);
        }
    }
}

inline bool aligned16(const void* p, int64_t s0, int64_t s1, size_t es) {
    return reinterpret_cast<uintptr_t>(p) % 16 == 0 && (s0 * static_cast<int64_t>(es)) % 16 == 0 &&
           (s1 * static_cast<int64_t>(es)) % 16 == 0;
}

}  // namespace tca::cuda::kvc
