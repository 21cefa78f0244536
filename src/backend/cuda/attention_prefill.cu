// attention_dense and sparse_prefill on CUDA (tca-method M6): FlashAttention-2 style tensor-core
// kernels written for this project. One CTA per (query tile, query head), heaviest query tiles
// first; each warp owns 16 query rows. Per KV tile: S = Q K^T with mma.sync m16n8k16 (bf16, or
// f16 when K/V are stored as f16), online softmax in f32 with exp2f (scale * log2(e) folded),
// P rounded to the compute type, O += P V with f32 accumulation. K/V tiles are double-buffered
// in shared memory through cp.async (16-byte chunks, XOR-swizzled rows, ldmatrix reads).
//
// Head dims: the kernel is instantiated for padded widths 64, 128 and 256; a head dim d < the
// padded width is zero-filled in shared memory (columns [d, DP) are 0 in Q, K and V).
//
// K/V that are f32, or 16-bit but not 16-byte aligned per row, are first converted into a
// contiguous 16-bit scratch copy (cuda::scratch); q is converted when its tile is loaded.
//
// Dispatch: cuda::attention_dense / cuda::sparse_prefill run the Hopper wgmma kernel
// (attention_wgmma.cu) where it applies and fall back to this kernel (attention_dense_mma /
// sparse_prefill_mma, attention_prefill.h) only when it returns unsupported.
//
// sparse_prefill: query i (position pos = q_pos0 + i) sees the global slots s with
// global_pos[s] < v(pos) * b (a prefix hi(pos) of the ascending list, found by binary search)
// and the band [v(pos) * b, pos] of k/v, one online softmax over both. The CTA walks the global
// tiles [0, hi(last row)) and then the band tiles [v(first row) * b, last pos]; elements are
// masked per row only in the tiles that some row does not fully see.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backend/cuda/attention_prefill.h"
#include "backend/cuda/attention_wgmma.h"
#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_runtime.h"
#include "sparse/sparse_options.h"

namespace tca::cuda {

namespace {

constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------------------------------------
// PTX helpers

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared; src_bytes == 0 writes 16 zero bytes.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

// c += a * b for one m16n8k16 tile (a: 16x16 row-major, b: 16x8 column-major, c: f32).
template <bool kBf16>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
    if constexpr (kBf16) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
            "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
            "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

// Two floats rounded to the compute type, packed (lo in the low half).
template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    uint32_t r;
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
        memcpy(&r, &h, 4);
    } else {
        const __half2 h = __floats2half2_rn(lo, hi);
        memcpy(&r, &h, 4);
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// Conversion of a strided K/V view into a contiguous [H, N, d] copy in the compute type.

template <class T>
__device__ __forceinline__ T to_compute(float x) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        return __float2bfloat16_rn(x);
    } else {
        return __float2half_rn(x);
    }
}

template <class T>
__global__ void pack_kv_kernel(const void* __restrict__ src, int src_dtype, int64_t s0, int64_t s1,
                               int64_t n, int64_t d, int64_t total, T* __restrict__ dst) {
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t c = e % d, r = (e / d) % n, h = e / (d * n);
        const int64_t at = h * s0 + r * s1 + c;
        float x;
        if (src_dtype == 0) {
            x = static_cast<const float*>(src)[at];
        } else if (src_dtype == 1) {
            x = __half2float(static_cast<const __half*>(src)[at]);
        } else {
            x = __bfloat162float(static_cast<const __nv_bfloat16*>(src)[at]);
        }
        dst[e] = to_compute<T>(x);
    }
}

// ---------------------------------------------------------------------------------------------
// The attention kernel.

struct KvRef {  // a 16-bit, 16-byte-aligned [H, N, d] tensor (element strides)
    const void* data = nullptr;
    int64_t s0 = 0, s1 = 0;
};

struct AttnArgs {
    const float* q = nullptr;
    int64_t q_s0 = 0, q_s1 = 0;
    float* out = nullptr;
    int64_t o_s0 = 0, o_s1 = 0;
    KvRef k, v;    // dense keys (the band for sparse_prefill)
    KvRef kg, vg;  // gathered global slots (sparse_prefill only)
    const int32_t* gpos = nullptr;
    int64_t gp_s0 = 0, gp_s1 = 0;
    const int32_t* n_global = nullptr;
    int64_t ng_s0 = 0;
    int cap = 0;  // slots of k_global / v_global
    int64_t q_pos0 = 0;
    int64_t n_blocks = 0;
    int n_q = 0, n_kv = 0, d = 0, hq = 0, group = 1, n_qtiles = 0;
    int block_size = 128, local_window = 4096;
    float scale_log2 = 0.0f;  // scale * log2(e)
};

__device__ __forceinline__ int64_t dev_visible_blocks(int64_t pos, int64_t w, int64_t b,
                                                      int64_t n_blocks) {
    const int64_t num = pos - w + 1;
    if (num < 0) return 0;
    return min(num / b, n_blocks);
}

// Number of entries of the ascending list gp[0..n) (stride st) that are < x.
__device__ __forceinline__ int lower_bound_i32(const int32_t* gp, int64_t st, int n, int64_t x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (static_cast<int64_t>(gp[mid * st]) < x) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows, DP] tile (XOR swizzle).
template <int DP>
__device__ __forceinline__ int swz(int row, int chunk) {
    return row * DP + ((chunk ^ (row & 7)) << 3);
}

template <int DP, int BM, int BN, int NW, bool kQRegs, class T, bool kSparse>
struct AttnConfig {
    static constexpr int kThreads = NW * 32;
    static constexpr int kChunks = DP / 8;  // 16-byte chunks per row
    static constexpr size_t kSmemBytes =
        (static_cast<size_t>(BM) * DP + 4 * static_cast<size_t>(BN) * DP) * sizeof(T);
    static_assert(BM == NW * 16, "each warp owns 16 query rows");
    static_assert(DP % 64 == 0 && BN % 16 == 0, "tile shape");
};

template <int DP, int BM, int BN, int NW, bool kQRegs, class T, bool kSparse>
__global__ void __launch_bounds__(NW * 32, 1) attn_prefill_kernel(const AttnArgs a) {
    using Cfg = AttnConfig<DP, BM, BN, NW, kQRegs, T, kSparse>;
    constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
    constexpr int kThreads = Cfg::kThreads, kChunks = Cfg::kChunks;
    constexpr int NT = BN / 8;   // key n-tiles of S per warp
    constexpr int DT = DP / 8;   // d n-tiles of O per warp
    constexpr int KS = DP / 16;  // k-steps of Q K^T

    extern __shared__ uint4 smem_raw[];
    T* const sq = reinterpret_cast<T*>(smem_raw);
    T* const sk = sq + BM * DP;      // 2 buffers of [BN, DP]
    T* const sv = sk + 2 * BN * DP;  // 2 buffers of [BN, DP]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int bid = blockIdx.x;
    const int qtile = a.n_qtiles - 1 - bid / a.hq;  // heaviest (last) query tiles first
    const int h = bid % a.hq;
    const int kvh = h / a.group;
    const int m0 = qtile * BM;
    const int rows_valid = min(BM, a.n_q - m0);
    const int64_t qp_first = a.q_pos0 + m0;
    const int64_t qp_last = qp_first + rows_valid - 1;
    const int d = a.d;

    // ---- tile schedule (CTA-uniform) -------------------------------------------------------
    int ng_hi = 0, ng_lo = 0;
    int64_t band_lo = 0, band0_last = 0;
    const int32_t* gp = nullptr;
    if constexpr (kSparse) {
        const int64_t b = a.block_size;
        const int ng = min(max(a.n_global[kvh * a.ng_s0], 0), a.cap);
        gp = a.gpos + kvh * a.gp_s0;
        band_lo = dev_visible_blocks(qp_first, a.local_window, b, a.n_blocks) * b;
        band0_last = dev_visible_blocks(qp_last, a.local_window, b, a.n_blocks) * b;
        ng_lo = lower_bound_i32(gp, a.gp_s1, ng, band_lo);
        ng_hi = lower_bound_i32(gp, a.gp_s1, ng, band0_last);
    }
    const int64_t band_hi = qp_last + 1;  // one past the last key any row sees
    const int n_gtiles = (ng_hi + BN - 1) / BN;
    const int n_btiles = static_cast<int>((band_hi - band_lo + BN - 1) / BN);
    const int n_tiles = n_gtiles + n_btiles;

    // ---- per-thread rows: g = lane / 4 owns rows warp*16 + g and + 8 -------------------------
    const int g = lane >> 2, t4 = lane & 3;
    const int rA = warp * 16 + g;
    const int64_t qpA = qp_first + rA, qpB = qpA + 8;
    const int64_t warp_qp_last = qp_first + warp * 16 + 15;
    int64_t b0A = 0, b0B = 0;  // band start of each row
    int hiA = 0, hiB = 0;      // global slots each row sees
    int warp_hi = 0;
    int64_t warp_b0_min = 0;
    if constexpr (kSparse) {
        const int64_t b = a.block_size;
        const int ng = min(max(a.n_global[kvh * a.ng_s0], 0), a.cap);
        b0A = dev_visible_blocks(qpA, a.local_window, b, a.n_blocks) * b;
        b0B = dev_visible_blocks(qpB, a.local_window, b, a.n_blocks) * b;
        hiA = min(lower_bound_i32(gp, a.gp_s1, ng, b0A), ng_hi);
        hiB = min(lower_bound_i32(gp, a.gp_s1, ng, b0B), ng_hi);
        warp_hi = __shfl_sync(0xffffffffu, hiB, 28);  // row warp*16 + 15 (largest)
        warp_b0_min = __shfl_sync(0xffffffffu, b0A, 0);
    }

    // ---- async load of KV tile `t` into buffer `buf` ----------------------------------------
    auto load_tile = [&](int t, int buf) {
        const bool global = t < n_gtiles;
        const KvRef& kr = global ? a.kg : a.k;
        const KvRef& vr = global ? a.vg : a.v;
        const int64_t row0 = global ? static_cast<int64_t>(t) * BN
                                    : band_lo + static_cast<int64_t>(t - n_gtiles) * BN;
        const int64_t row_end = global ? ng_hi : band_hi;  // rows past it are zero-filled
        const T* kb = static_cast<const T*>(kr.data) + kvh * kr.s0;
        const T* vb = static_cast<const T*>(vr.data) + kvh * vr.s0;
        const T* dummy = static_cast<const T*>(a.k.data);
        T* skb = sk + buf * BN * DP;
        T* svb = sv + buf * BN * DP;
#pragma unroll
        for (int i = 0; i < (BN * kChunks + kThreads - 1) / kThreads; ++i) {
            const int idx = tid + i * kThreads;
            if (BN * kChunks % kThreads == 0 || idx < BN * kChunks) {
                const int r = idx / kChunks, c = idx % kChunks;
                const int64_t row = row0 + r;
                const bool ok = row < row_end && c * 8 < d;
                const T* ksrc = ok ? kb + row * kr.s1 + c * 8 : dummy;
                const T* vsrc = ok ? vb + row * vr.s1 + c * 8 : dummy;
                cp_async16(smem_addr(skb + swz<DP>(r, c)), ksrc, ok ? 16 : 0);
                cp_async16(smem_addr(svb + swz<DP>(r, c)), vsrc, ok ? 16 : 0);
            }
        }
    };

    if (n_tiles > 0) {
        load_tile(0, 0);
        cp_async_commit();
    }

    // ---- Q tile: f32 global -> compute type in shared memory (zero rows / columns padded) ----
    for (int idx = tid; idx < BM * kChunks; idx += kThreads) {
        const int r = idx / kChunks, c = idx % kChunks;
        float x[8];
        if (r < rows_valid && c * 8 < d) {
            const float* src = a.q + h * a.q_s0 + static_cast<int64_t>(m0 + r) * a.q_s1 + c * 8;
#pragma unroll
            for (int e = 0; e < 8; ++e) x[e] = src[e];
        } else {
#pragma unroll
            for (int e = 0; e < 8; ++e) x[e] = 0.0f;
        }
        uint4 v;
        v.x = pack2<T>(x[0], x[1]);
        v.y = pack2<T>(x[2], x[3]);
        v.z = pack2<T>(x[4], x[5]);
        v.w = pack2<T>(x[6], x[7]);
        *reinterpret_cast<uint4*>(sq + swz<DP>(r, c)) = v;
    }
    __syncthreads();

    // A-operand address of Q for k-step kk: rows warp*16 + (lane & 15), chunk 2kk + lane / 16.
    const int q_row = warp * 16 + (lane & 15);
    uint32_t qf[kQRegs ? KS : 1][4];
    if constexpr (kQRegs) {
#pragma unroll
        for (int kk = 0; kk < KS; ++kk) ldmatrix_x4(qf[kk], smem_addr(sq + swz<DP>(q_row, 2 * kk + (lane >> 4))));
    }

    float o[DT][4];
#pragma unroll
    for (int i = 0; i < DT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float mA = -INFINITY, mB = -INFINITY, lA = 0.0f, lB = 0.0f;
    const float c2 = a.scale_log2;

    // ldmatrix lane offsets: K (non-transposed B operand) and V (transposed B operand).
    const int k_row = (lane & 7) + ((lane >> 4) << 3), k_chunk = (lane >> 3) & 1;
    const int v_row = (lane & 7) + (((lane >> 3) & 1) << 3), v_chunk = lane >> 4;

    for (int t = 0; t < n_tiles; ++t) {
        const int buf = t & 1;
        if (t + 1 < n_tiles) {
            load_tile(t + 1, buf ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();

        const bool global = t < n_gtiles;
        const int64_t kv0 = global ? static_cast<int64_t>(t) * BN
                                   : band_lo + static_cast<int64_t>(t - n_gtiles) * BN;
        bool skip;  // this warp's rows see nothing in the tile
        if (global) {
            skip = kv0 >= warp_hi;
        } else {
            skip = kv0 > warp_qp_last || kv0 + BN <= warp_b0_min;
        }
        if (!skip) {
            const T* skb = sk + buf * BN * DP;
            const T* svb = sv + buf * BN * DP;
            float s[NT][4];
#pragma unroll
            for (int i = 0; i < NT; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
            // S = Q K^T
#pragma unroll
            for (int kk = 0; kk < KS; ++kk) {
                uint32_t qa[4];
                if constexpr (kQRegs) {
                    qa[0] = qf[kk][0];
                    qa[1] = qf[kk][1];
                    qa[2] = qf[kk][2];
                    qa[3] = qf[kk][3];
                } else {
                    ldmatrix_x4(qa, smem_addr(sq + swz<DP>(q_row, 2 * kk + (lane >> 4))));
                }
#pragma unroll
                for (int np = 0; np < NT / 2; ++np) {
                    uint32_t kb[4];
                    ldmatrix_x4(kb, smem_addr(skb + swz<DP>(np * 16 + k_row, 2 * kk + k_chunk)));
                    mma16816<kBf16>(s[2 * np], qa, kb[0], kb[1]);
                    mma16816<kBf16>(s[2 * np + 1], qa, kb[2], kb[3]);
                }
            }
            // Masking, only where some row of the CTA does not see the whole tile.
            bool need_mask;
            if (global) {
                need_mask = kv0 + BN > ng_lo;
            } else {
                need_mask = kv0 < band0_last || kv0 + BN - 1 > qp_first;
            }
            if (need_mask) {
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const int64_t j = kv0 + nt * 8 + 2 * t4 + e;
                        bool visA, visB;
                        if (global) {
                            visA = j < hiA;
                            visB = j < hiB;
                        } else {
                            visA = j >= b0A && j <= qpA;
                            visB = j >= b0B && j <= qpB;
                        }
                        if (!visA) s[nt][e] = -INFINITY;
                        if (!visB) s[nt][2 + e] = -INFINITY;
                    }
                }
            }
            // Online softmax (rows A = g, B = g + 8; the 4 lanes of a row reduce by shuffles).
            float mxA = mA, mxB = mB;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                mxA = fmaxf(mxA, fmaxf(s[nt][0], s[nt][1]));
                mxB = fmaxf(mxB, fmaxf(s[nt][2], s[nt][3]));
            }
#pragma unroll
            for (int off = 1; off <= 2; off <<= 1) {
                mxA = fmaxf(mxA, __shfl_xor_sync(0xffffffffu, mxA, off));
                mxB = fmaxf(mxB, __shfl_xor_sync(0xffffffffu, mxB, off));
            }
            // A row that has seen no key yet keeps m = -inf; subtract 0 then (p = 0 anyway).
            const float baseA = (mxA == -INFINITY) ? 0.0f : mxA * c2;
            const float baseB = (mxB == -INFINITY) ? 0.0f : mxB * c2;
            const float alphaA = exp2f(mA * c2 - baseA);  // 0 when mA = -inf
            const float alphaB = exp2f(mB * c2 - baseB);
            mA = mxA;
            mB = mxB;
            float sumA = 0.0f, sumB = 0.0f;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                s[nt][0] = exp2f(fmaf(s[nt][0], c2, -baseA));
                s[nt][1] = exp2f(fmaf(s[nt][1], c2, -baseA));
                s[nt][2] = exp2f(fmaf(s[nt][2], c2, -baseB));
                s[nt][3] = exp2f(fmaf(s[nt][3], c2, -baseB));
                sumA += s[nt][0] + s[nt][1];
                sumB += s[nt][2] + s[nt][3];
            }
            lA = lA * alphaA + sumA;
            lB = lB * alphaB + sumB;
#pragma unroll
            for (int i = 0; i < DT; ++i) {
                o[i][0] *= alphaA;
                o[i][1] *= alphaA;
                o[i][2] *= alphaB;
                o[i][3] *= alphaB;
            }
            // O += P V (P rounded to the compute type; the C layout of two key n-tiles is the
            // A layout of one 16-key k-step).
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                uint32_t pa[4];
                pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
                pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
                pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                for (int dp = 0; dp < DT / 2; ++dp) {
                    uint32_t vb[4];
                    ldmatrix_x4_trans(vb, smem_addr(svb + swz<DP>(kk * 16 + v_row, 2 * dp + v_chunk)));
                    mma16816<kBf16>(o[2 * dp], pa, vb[0], vb[1]);
                    mma16816<kBf16>(o[2 * dp + 1], pa, vb[2], vb[3]);
                }
            }
        }
        __syncthreads();  // buffer `buf` is refilled by the next iteration's prefetch
    }

    // ---- epilogue: O / l -------------------------------------------------------------------
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
        lA += __shfl_xor_sync(0xffffffffu, lA, off);
        lB += __shfl_xor_sync(0xffffffffu, lB, off);
    }
    const float invA = lA > 0.0f ? 1.0f / lA : 0.0f;
    const float invB = lB > 0.0f ? 1.0f / lB : 0.0f;
    float* const ob = a.out + h * a.o_s0;
    const bool okA = rA < rows_valid, okB = rA + 8 < rows_valid;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
        const int col = dt * 8 + 2 * t4;
        if (col < d) {  // d is a multiple of 8: col + 1 < d as well
            if (okA) {
                float* p = ob + static_cast<int64_t>(m0 + rA) * a.o_s1 + col;
                p[0] = o[dt][0] * invA;
                p[1] = o[dt][1] * invA;
            }
            if (okB) {
                float* p = ob + static_cast<int64_t>(m0 + rA + 8) * a.o_s1 + col;
                p[0] = o[dt][2] * invB;
                p[1] = o[dt][3] * invB;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host side.

int dtype_code(DType t) { return t == DType::kF32 ? 0 : t == DType::kF16 ? 1 : 2; }

// A K/V view usable by the kernel: the view itself when it is already in the compute type with
// 16-byte-aligned rows, else a contiguous converted copy in scratch slot `slot`.
template <class T>
Result<KvRef> prepare_kv(const TensorView& t, DType compute, int slot, const char* op) {
    KvRef r;
    const int64_t hh = t.shape[0], n = t.shape[1], d = t.shape[2];
    const int64_t total = hh * n * d;
    if (total == 0) return r;
    const bool aligned = reinterpret_cast<uintptr_t>(t.data) % 16 == 0 && t.stride[0] % 8 == 0 &&
                         t.stride[1] % 8 == 0;
    if (t.dtype == compute && aligned) {
        r.data = t.data;
        r.s0 = t.stride[0];
        r.s1 = t.stride[1];
        return r;
    }
    TCA_ASSIGN_OR_RETURN(void* buf, scratch(static_cast<size_t>(total) * sizeof(T), slot));
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, int64_t{1} << 16);
    pack_kv_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, cu_stream()>>>(
        t.data, dtype_code(t.dtype), t.stride[0], t.stride[1], n, d, total, static_cast<T*>(buf));
    TCA_RETURN_IF_ERROR(launch_status(op));
    r.data = buf;
    r.s0 = n * d;
    r.s1 = d;
    return r;
}

template <int DP, int BM, int BN, int NW, bool kQRegs, class T, bool kSparse>
Status launch_config(const AttnArgs& a, const char* op) {
    using Cfg = AttnConfig<DP, BM, BN, NW, kQRegs, T, kSparse>;
    auto kernel = attn_prefill_kernel<DP, BM, BN, NW, kQRegs, T, kSparse>;
    static PerDevice<cudaError_t> attr;  // the attribute is per device
    const cudaError_t attr_err = attr.get([&] {
        return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(Cfg::kSmemBytes));
    });
    TCA_RETURN_IF_ERROR(cuda_status(attr_err, "cudaFuncSetAttribute(attention smem)"));
    AttnArgs args = a;
    args.n_qtiles = (a.n_q + BM - 1) / BM;
    const int64_t grid = static_cast<int64_t>(args.n_qtiles) * a.hq;
    if (grid > 0x7fffffff) return unsupported("%s: grid of %lld CTAs is too large", op, static_cast<long long>(grid));
    kernel<<<static_cast<unsigned>(grid), Cfg::kThreads, Cfg::kSmemBytes, cu_stream()>>>(args);
    return launch_status(op);
}

// Tile configurations by padded head dim: 64 and 128 keep Q in registers (8 warps x 16 rows,
// 64-key tiles); 256 reads Q from shared memory (4 warps x 16 rows, 16-key tiles).
template <class T, bool kSparse>
Status launch_by_dim(const AttnArgs& a, const char* op) {
    if (a.d <= 64) return launch_config<64, 128, 64, 8, true, T, kSparse>(a, op);
    if (a.d <= 128) return launch_config<128, 128, 64, 8, true, T, kSparse>(a, op);
    return launch_config<256, 64, 16, 4, false, T, kSparse>(a, op);
}

// Fills the q/out/k/v part of the args (K/V converted as needed) and launches.
template <class T, bool kSparse>
Status run_prefill(AttnArgs a, const TensorView& q, const TensorView& k, const TensorView& v,
                   const TensorView* kg, const TensorView* vg, const TensorView& out,
                   float scale, const char* op) {
    const DType compute = std::is_same_v<T, __nv_bfloat16> ? DType::kBF16 : DType::kF16;
    a.q = static_cast<const float*>(q.data);
    a.q_s0 = q.stride[0];
    a.q_s1 = q.stride[1];
    a.out = static_cast<float*>(out.data);
    a.o_s0 = out.stride[0];
    a.o_s1 = out.stride[1];
    a.hq = static_cast<int>(q.shape[0]);
    a.n_q = static_cast<int>(q.shape[1]);
    a.d = static_cast<int>(q.shape[2]);
    a.n_kv = static_cast<int>(k.shape[1]);
    a.group = static_cast<int>(q.shape[0] / k.shape[0]);
    a.scale_log2 = effective_scale(scale, q.shape[2]) * kLog2e;
    TCA_ASSIGN_OR_RETURN(a.k, prepare_kv<T>(k, compute, 0, op));
    TCA_ASSIGN_OR_RETURN(a.v, prepare_kv<T>(v, compute, 1, op));
    if constexpr (kSparse) {
        TCA_ASSIGN_OR_RETURN(a.kg, prepare_kv<T>(*kg, compute, 2, op));
        TCA_ASSIGN_OR_RETURN(a.vg, prepare_kv<T>(*vg, compute, 3, op));
    }
    return launch_by_dim<T, kSparse>(a, op);
}

Status check_sizes(const TensorView& q, const TensorView& k, const char* op) {
    if (k.shape[1] > 0x7fffffff || q.shape[1] > 0x7fffffff) {
        return unsupported("%s: more than 2^31 - 1 keys or queries", op);
    }
    return Status();
}

}  // namespace

Status attention_dense_mma(const AttentionDenseParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const char* op = "attention_dense";
    if (p.q.shape[0] == 0 || p.q.shape[1] == 0) return Status();
    TCA_RETURN_IF_ERROR(check_sizes(p.q, p.k, op));
    AttnArgs a;
    a.q_pos0 = p.q_pos0;
    if (p.k.dtype == DType::kF16) {
        return run_prefill<__half, false>(a, p.q, p.k, p.v, nullptr, nullptr, p.out, p.scale, op);
    }
    return run_prefill<__nv_bfloat16, false>(a, p.q, p.k, p.v, nullptr, nullptr, p.out, p.scale, op);
}

Status sparse_prefill_mma(const SparsePrefillParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const char* op = "sparse_prefill";
    if (p.q.shape[0] == 0 || p.q.shape[1] == 0) return Status();
    TCA_RETURN_IF_ERROR(check_sizes(p.q, p.k, op));
    AttnArgs a;
    a.q_pos0 = p.q_pos0;
    a.gpos = static_cast<const int32_t*>(p.global_pos.data);
    a.gp_s0 = p.global_pos.stride[0];
    a.gp_s1 = p.global_pos.stride[1];
    a.n_global = static_cast<const int32_t*>(p.n_global.data);
    a.ng_s0 = p.n_global.stride[0];
    a.n_blocks = p.n_blocks;
    a.cap = static_cast<int>(p.k_global.shape[1]);
    a.block_size = p.block_size;
    a.local_window = p.local_window;
    if (p.k.dtype == DType::kF16) {
        return run_prefill<__half, true>(a, p.q, p.k, p.v, &p.k_global, &p.v_global, p.out,
                                         p.scale, op);
    }
    return run_prefill<__nv_bfloat16, true>(a, p.q, p.k, p.v, &p.k_global, &p.v_global, p.out,
                                            p.scale, op);
}

// The public ops: the wgmma kernel first; the mma.sync kernel only where wgmma is unsupported
// (any other error of the wgmma path is returned as is).
Status attention_dense(const AttentionDenseParams& p) {
    const Status st = attention_dense_wgmma(p);
    if (st.code() != StatusCode::kUnsupported) return st;
    return attention_dense_mma(p);
}

Status sparse_prefill(const SparsePrefillParams& p) {
    const Status st = sparse_prefill_wgmma(p);
    if (st.code() != StatusCode::kUnsupported) return st;
    return sparse_prefill_mma(p);
}

}  // namespace tca::cuda
