// attention_dense / sparse_prefill on Hopper warpgroup MMA (sm_90a wgmma.mma_async), written for
// this project from the PTX ISA. Internal entry points (attention_wgmma.h): they return
// unsupported for shapes they do not handle and the caller falls back to the mma.sync kernel
// (attention_prefill.cu), whose tile schedule and masking this kernel follows.
//
// CTA: 2 warpgroups (256 threads), 128 query rows of one query head, 64 rows per warpgroup;
// 128-key K/V tiles double-buffered in shared memory through cp.async (all threads load), in the
// 128-byte-swizzled layout wgmma reads: a [rows, DP] tile is stored as DP/64 column halves of
// [rows, 64] bf16 (128-byte rows; 16-byte chunk c of row r at chunk c ^ (r & 7)), each half
// 1024-byte aligned. Per KV tile and warpgroup:
//   S[64, 128]  = Q K^T     wgmma m64n128k16, A = Q (smem, K-major), B = K (smem, K-major)
//   online softmax in f32 registers (exp2, scale * log2 e folded), masks as attention_prefill.cu
//   O[64, DP]  += P V       wgmma m64n64k16 per 64-column half, A = P (registers, bf16),
//                           B = V (smem, MN-major: transposed B)
// Two schedules of the main loop (see there): serial (the default) and overlapped, where each
// warpgroup computes the softmax of tile i while the P V product of tile i - 1 runs
// (TCA_CUDA_WGMMA_OVERLAP=1; bitwise the same output).
// Q is converted f32 -> bf16 into shared memory once per CTA. O / l is stored as f32.
// The file is compiled for sm_90a only (CMakeLists.txt, TCA_SM90A_SOURCES); without
// __CUDA_ARCH_FEAT_SM90_ALL the kernel body is empty, and the host side launches only on a
// compute capability 9.0 device where the sm_90a image loaded (attention_wgmma_available()).
#include <cuda_bf16.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "backend/cuda/attention_wgmma.h"
#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/cuda_runtime.h"

namespace tca::cuda {

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kBM = 128;      // query rows per CTA (2 warpgroups x 64)
constexpr int kBN = 128;      // keys per tile
constexpr int kThreads = 256;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TCA_WGMMA_DEVICE 1
#else
#define TCA_WGMMA_DEVICE 0
#endif

#if TCA_WGMMA_DEVICE
// ---------------------------------------------------------------------------------------------
// PTX helpers (sm_90a)

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

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
// Generic-proxy shared-memory writes (st.shared, cp.async) made visible to the async proxy
// (wgmma operand reads); each writing thread runs it before the barrier.
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
// Waits until at most N committed wgmma groups of this warpgroup are still in flight.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from touching accumulator registers across an in-flight wgmma.
template <int N>
__device__ __forceinline__ void reg_fence(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// Shared-memory matrix descriptor, 128-byte swizzle: start address, leading and stride byte
// offsets (all >> 4), layout type 1 (128B swizzle) in bits 62-63.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return static_cast<uint64_t>((addr & 0x3FFFFu) >> 4) |
           (static_cast<uint64_t>(lbo >> 4) << 16) | (static_cast<uint64_t>(sbo >> 4) << 32) |
           (uint64_t{1} << 62);
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t r;
    memcpy(&r, &h, 4);
    return r;
}

// d (+)= A(smem desc) * B(smem desc), m64n128k16, B K-major; scale_d == 0 overwrites d.
__device__ __forceinline__ void wgmma_ss_n128(float (&d)[64], uint64_t da, uint64_t db, int scale_d) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
          , "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
          , "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23])
          , "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
          , "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39])
          , "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47])
          , "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55])
          , "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(scale_d));
}

// d += A(registers, m64k16 fragment) * B(smem desc), m64n64k16, B MN-major (transposed).
__device__ __forceinline__ void wgmma_rs_n64_tb(float (&d)[32], const uint32_t (&a)[4], uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "setp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
        "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
          , "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
          , "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23])
          , "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}
#endif  // TCA_WGMMA_DEVICE

struct WgArgs {
    const float* q = nullptr;
    int64_t q_s0 = 0, q_s1 = 0;
    float* out = nullptr;
    int64_t o_s0 = 0, o_s1 = 0;
    const __nv_bfloat16* k = nullptr;  // dense keys (the band for sparse_prefill)
    const __nv_bfloat16* v = nullptr;
    int64_t k_s0 = 0, k_s1 = 0, v_s0 = 0, v_s1 = 0;
    const __nv_bfloat16* kg = nullptr;  // gathered global slots (sparse only)
    const __nv_bfloat16* vg = nullptr;
    int64_t kg_s0 = 0, kg_s1 = 0, vg_s0 = 0, vg_s1 = 0;
    const int32_t* gpos = nullptr;
    int64_t gp_s0 = 0, gp_s1 = 0;
    const int32_t* n_global = nullptr;
    int64_t ng_s0 = 0;
    int cap = 0;
    int64_t q_pos0 = 0;
    int64_t n_blocks = 0;
    int n_q = 0, hq = 0, group = 1, n_qtiles = 0;
    int block_size = 128, local_window = 4096;
    float scale_log2 = 0.0f;
};

template <int DP>
struct WgConfig {
    static constexpr int kHalves = DP / 64;
    static constexpr int kQBytes = kBM * DP * 2;
    static constexpr int kTileBytes = kBN * DP * 2;  // one K or V tile
    static constexpr size_t kSmemBytes = 1024 + kQBytes + 4 * static_cast<size_t>(kTileBytes);
};

#if TCA_WGMMA_DEVICE
__device__ __forceinline__ int64_t wg_visible_blocks(int64_t pos, int64_t w, int64_t b,
                                                     int64_t n_blocks) {
    const int64_t num = pos - w + 1;
    if (num < 0) return 0;
    return min(num / b, n_blocks);
}
__device__ __forceinline__ int wg_lower_bound(const int32_t* gp, int64_t st, int n, int64_t x) {
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
// Byte offset of 16-byte chunk c of row r in a swizzled [rows, DP] tile (see the header).
__device__ __forceinline__ uint32_t swz_off(int rows, int r, int c) {
    return static_cast<uint32_t>((c >> 3) * rows * 128 + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}
#endif

template <int DP, bool kSparse, bool kOverlap>
__global__ void __launch_bounds__(kThreads, 1) attn_wgmma_kernel(const WgArgs a) {
#if TCA_WGMMA_DEVICE
    using Cfg = WgConfig<DP>;
    constexpr int kChunks = DP / 8;  // 16-byte chunks per row
    constexpr int KS = DP / 16;      // k-steps of Q K^T
    constexpr int NH = Cfg::kHalves;

    extern __shared__ uint8_t smem_raw[];
    // 1024-byte alignment of the swizzled tiles (the swizzle pattern repeats every 1024 bytes).
    const uint32_t raw = smem_u32(smem_raw);
    const uint32_t base = (raw + 1023u) & ~1023u;
    uint8_t* const sbase = smem_raw + (base - raw);
    const uint32_t sq = base;
    const uint32_t sk = sq + Cfg::kQBytes;              // 2 buffers
    const uint32_t sv = sk + 2 * Cfg::kTileBytes;       // 2 buffers

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
    const int bid = blockIdx.x;
    const int qtile = a.n_qtiles - 1 - bid / a.hq;  // heaviest query tiles first
    const int h = bid % a.hq;
    const int kvh = h / a.group;
    const int m0 = qtile * kBM;
    const int rows_valid = min(kBM, a.n_q - m0);
    const int64_t qp_first = a.q_pos0 + m0;
    const int64_t qp_last = qp_first + rows_valid - 1;

    // ---- tile schedule (CTA-uniform), as attention_prefill.cu --------------------------------
    int ng_hi = 0, ng_lo = 0;
    int64_t band_lo = 0, band0_last = 0;
    const int32_t* gp = nullptr;
    int ng = 0;
    if constexpr (kSparse) {
        const int64_t b = a.block_size;
        ng = min(max(a.n_global[kvh * a.ng_s0], 0), a.cap);
        gp = a.gpos + kvh * a.gp_s0;
        band_lo = wg_visible_blocks(qp_first, a.local_window, b, a.n_blocks) * b;
        band0_last = wg_visible_blocks(qp_last, a.local_window, b, a.n_blocks) * b;
        ng_lo = wg_lower_bound(gp, a.gp_s1, ng, band_lo);
        ng_hi = wg_lower_bound(gp, a.gp_s1, ng, band0_last);
    }
    const int64_t band_hi = qp_last + 1;
    const int n_gtiles = (ng_hi + kBN - 1) / kBN;
    const int n_btiles = static_cast<int>((band_hi - band_lo + kBN - 1) / kBN);
    const int n_tiles = n_gtiles + n_btiles;

    // ---- per-thread rows (wgmma accumulator layout): warp w owns rows 16w + g and 16w + g + 8
    const int g = lane >> 2, t4 = lane & 3;
    const int rA = warp * 16 + g;
    const int64_t qpA = qp_first + rA, qpB = qpA + 8;
    const int64_t wg_qp_first = qp_first + wg * 64, wg_qp_last = wg_qp_first + 63;
    int64_t b0A = 0, b0B = 0;
    int hiA = 0, hiB = 0;
    int wg_hi = 0;
    int64_t wg_b0_min = 0;
    if constexpr (kSparse) {
        const int64_t b = a.block_size;
        b0A = wg_visible_blocks(qpA, a.local_window, b, a.n_blocks) * b;
        b0B = wg_visible_blocks(qpB, a.local_window, b, a.n_blocks) * b;
        hiA = min(wg_lower_bound(gp, a.gp_s1, ng, b0A), ng_hi);
        hiB = min(wg_lower_bound(gp, a.gp_s1, ng, b0B), ng_hi);
        const int64_t b0_last = wg_visible_blocks(wg_qp_last, a.local_window, b, a.n_blocks) * b;
        wg_hi = min(wg_lower_bound(gp, a.gp_s1, ng, b0_last), ng_hi);
        wg_b0_min = wg_visible_blocks(wg_qp_first, a.local_window, b, a.n_blocks) * b;
    }

    // First row of KV tile t: global slot t * kBN for t < n_gtiles, else a band position.
    auto tile_start = [&](int t) -> int64_t {
        return t < n_gtiles ? static_cast<int64_t>(t) * kBN
                            : band_lo + static_cast<int64_t>(t - n_gtiles) * kBN;
    };

    // ---- async loads of the K or V rows of KV tile t into a buffer ----------------------------
    // Rows past the tile's end (the global list's or the band's) are zero-filled.
    auto load_rows = [&](int t, bool is_v, uint32_t dst) {
        const bool global = t < n_gtiles;
        const __nv_bfloat16* src = global ? (is_v ? a.vg + kvh * a.vg_s0 : a.kg + kvh * a.kg_s0)
                                          : (is_v ? a.v + kvh * a.v_s0 : a.k + kvh * a.k_s0);
        const int64_t s1 = global ? (is_v ? a.vg_s1 : a.kg_s1) : (is_v ? a.v_s1 : a.k_s1);
        const int64_t row0 = tile_start(t);
        const int64_t row_end = global ? ng_hi : band_hi;
#pragma unroll
        for (int i = 0; i < kBN * kChunks / kThreads; ++i) {
            const int idx = tid + i * kThreads;
            const int r = idx / kChunks, c = idx % kChunks;
            const int64_t row = row0 + r;
            const bool ok = row < row_end;
            cp_async16(dst + swz_off(kBN, r, c), ok ? src + row * s1 + c * 8 : a.k, ok ? 16 : 0);
        }
    };

    if (n_tiles > 0) {
        load_rows(0, false, sk);
        if constexpr (!kOverlap) load_rows(0, true, sv);
        cp_async_commit();
    }

    // ---- Q tile: f32 -> bf16 into the swizzled layout (rows past n_q are zero) ---------------
    for (int idx = tid; idx < kBM * kChunks; idx += kThreads) {
        const int r = idx / kChunks, c = idx % kChunks;
        uint4 pk = make_uint4(0u, 0u, 0u, 0u);
        if (r < rows_valid) {
            const float4* src = reinterpret_cast<const float4*>(
                a.q + h * a.q_s0 + static_cast<int64_t>(m0 + r) * a.q_s1 + c * 8);
            const float4 x0 = src[0], x1 = src[1];
            pk.x = pack_bf16(x0.x, x0.y);
            pk.y = pack_bf16(x0.z, x0.w);
            pk.z = pack_bf16(x1.x, x1.y);
            pk.w = pack_bf16(x1.z, x1.w);
        }
        *reinterpret_cast<uint4*>(sbase + swz_off(kBM, r, c)) = pk;
    }
    fence_proxy_async();
    __syncthreads();

    float o[NH][32];
#pragma unroll
    for (int hf = 0; hf < NH; ++hf) {
#pragma unroll
        for (int i = 0; i < 32; ++i) o[hf][i] = 0.0f;
    }
    float mA = -INFINITY, mB = -INFINITY, lA = 0.0f, lB = 0.0f;
    const float c2 = a.scale_log2;
    const uint32_t q_wg = sq + wg * 64 * 128;  // this warpgroup's 64 rows in each half

    // Two schedules of the same per-tile steps (same operations in the same order, so the
    // outputs are bitwise equal; tests/cuda/attention_wgmma_test.cpp checks it). K_t always
    // sits in K buffer t & 1 and V_t in V buffer t & 1.
    //  - serial (kOverlap false, the default): iteration t waits for K_t and V_t, loads K_{t+1}
    //    and V_{t+1}, then S_t = Q K_t^T, its softmax, and O += P_t V_t, each product waited
    //    for before the next step. A tile none of a warpgroup's rows see is skipped.
    //  - overlapped (kOverlap true; the FlashAttention-3 intra-warpgroup pipeline): iteration t
    //    issues S_t and then O += P_{t-1} V_{t-1} (P of the previous tile, still in registers)
    //    and computes the softmax of S_t while that product runs on the tensor cores; O is
    //    rescaled once it has landed. Iteration t waits for K_t and V_{t-1} and loads K_{t+1}
    //    and V_t into the buffers iteration t - 1 finished with. The first tile (no P yet) and
    //    the last product (no S) are peeled off the loop so that every wgmma sits on a
    //    CTA-uniform path (ptxas serializes a wgmma under a branch it cannot prove uniform), and
    //    a tile none of a warpgroup's rows see is computed anyway, fully masked (it changes
    //    nothing: P is exactly 0, and alpha exactly 1, or O still 0): at most one or two edge
    //    tiles per CTA. H100, session 12 (docs/perf/gpu.md): dense 3.0-3.5% faster than serial
    //    at 32K and 128K, sparse 5-8% slower, so the default schedule overlaps the dense kernel
    //    only (WgmmaSchedule, attention_wgmma.h; TCA_CUDA_WGMMA_OVERLAP=1/0 forces one).
    uint32_t pa[8][4];
    float s[64];

    auto sync_and_load = [&](int t) {  // K_t and V_{t-1} landed; iteration t - 1 is done
        cp_async_wait<0>();
        fence_proxy_async();
        __syncthreads();
        if (t + 1 < n_tiles) load_rows(t + 1, false, sk + ((t + 1) & 1) * Cfg::kTileBytes);
        if (t < n_tiles) load_rows(t, true, sv + (t & 1) * Cfg::kTileBytes);
        cp_async_commit();
    };
    auto issue_s = [&](int t) {  // S = Q K_t^T
        const uint32_t skb = sk + (t & 1) * Cfg::kTileBytes;
#pragma unroll
        for (int kk = 0; kk < KS; ++kk) {
            const uint32_t koff = (kk & 3) << 5;  // 16 columns = 32 bytes of a 128-byte row
            const uint64_t da = smem_desc(q_wg + (kk >> 2) * (kBM * 128) + koff, 1024, 1024);
            const uint64_t db = smem_desc(skb + (kk >> 2) * (kBN * 128) + koff, 1024, 1024);
            wgmma_ss_n128(s, da, db, kk > 0 ? 1 : 0);
        }
        wgmma_commit();
    };
    auto issue_pv = [&](int t) {  // O += P_t V_t
        const uint32_t svb = sv + (t & 1) * Cfg::kTileBytes;
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
#pragma unroll
            for (int hf = 0; hf < NH; ++hf) {
                const uint64_t db = smem_desc(svb + hf * (kBN * 128) + kk * (16 * 128), 1024, 1024);
                wgmma_rs_n64_tb(o[hf], pa[kk], db);
            }
        }
        wgmma_commit();
    };
    auto pv_landed = [&] {  // after the wait for the product: o is final, pa may be reused
#pragma unroll
        for (int hf = 0; hf < NH; ++hf) reg_fence(o[hf]);
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
            asm volatile("" ::"r"(pa[kk][0]), "r"(pa[kk][1]), "r"(pa[kk][2]), "r"(pa[kk][3]));
        }
    };
    // Masks S_t, updates the running max and sum, turns S into exp values; returns the factor
    // O must be scaled by.
    auto softmax = [&](int t, float& alphaA, float& alphaB) {
        reg_fence(s);
        const bool global = t < n_gtiles;
        const int64_t kv0 = tile_start(t);
        bool need_mask;
        if (global) {
            need_mask = kv0 + kBN > ng_lo || kv0 >= wg_hi;
        } else {
            need_mask = kv0 < band0_last || kv0 + kBN - 1 > qp_first;
        }
        if (need_mask) {
#pragma unroll
            for (int j = 0; j < 16; ++j) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int64_t key = kv0 + j * 8 + 2 * t4 + e;
                    bool visA, visB;
                    if (global) {
                        visA = key < hiA;
                        visB = key < hiB;
                    } else {
                        visA = key >= b0A && key <= qpA;
                        visB = key >= b0B && key <= qpB;
                    }
                    if (!visA) s[4 * j + e] = -INFINITY;
                    if (!visB) s[4 * j + 2 + e] = -INFINITY;
                }
            }
        }
        // Rows A = g, B = g + 8 of the warp; the 4 lanes of a row reduce by shuffles.
        float mxA = mA, mxB = mB;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            mxA = fmaxf(mxA, fmaxf(s[4 * j], s[4 * j + 1]));
            mxB = fmaxf(mxB, fmaxf(s[4 * j + 2], s[4 * j + 3]));
        }
#pragma unroll
        for (int off = 1; off <= 2; off <<= 1) {
            mxA = fmaxf(mxA, __shfl_xor_sync(0xffffffffu, mxA, off));
            mxB = fmaxf(mxB, __shfl_xor_sync(0xffffffffu, mxB, off));
        }
        // alpha is exactly 1 when the tile leaves the max where it was: both products are
        // rounded the same way (__fmul_rn is never contracted into an FMA, which would leave
        // mA * c2's rounding error in the exponent and alpha = 1 +- a few ulps). So a tile
        // none of a row's keys see changes nothing, which the overlapped schedule relies on
        // to stay bitwise the serial one (it computes such tiles fully masked; the serial one
        // skips them; docs/numerics.md).
        const float baseA = (mxA == -INFINITY) ? 0.0f : __fmul_rn(mxA, c2);
        const float baseB = (mxB == -INFINITY) ? 0.0f : __fmul_rn(mxB, c2);
        alphaA = exp2f(__fmul_rn(mA, c2) - baseA);  // 0 when mA = -inf
        alphaB = exp2f(__fmul_rn(mB, c2) - baseB);
        mA = mxA;
        mB = mxB;
        float sumA = 0.0f, sumB = 0.0f;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            s[4 * j] = exp2f(fmaf(s[4 * j], c2, -baseA));
            s[4 * j + 1] = exp2f(fmaf(s[4 * j + 1], c2, -baseA));
            s[4 * j + 2] = exp2f(fmaf(s[4 * j + 2], c2, -baseB));
            s[4 * j + 3] = exp2f(fmaf(s[4 * j + 3], c2, -baseB));
            sumA += s[4 * j] + s[4 * j + 1];
            sumB += s[4 * j + 2] + s[4 * j + 3];
        }
        lA = lA * alphaA + sumA;
        lB = lB * alphaB + sumB;
    };
    // O *= alpha, then P (bf16) as the A fragments of 8 key steps (the accumulator layout of
    // two n8 blocks is the A layout of one k16 step).
    auto rescale_and_pack = [&](float alphaA, float alphaB) {
#pragma unroll
        for (int hf = 0; hf < NH; ++hf) {
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                o[hf][4 * j] *= alphaA;
                o[hf][4 * j + 1] *= alphaA;
                o[hf][4 * j + 2] *= alphaB;
                o[hf][4 * j + 3] *= alphaB;
            }
        }
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
            pa[kk][0] = pack_bf16(s[8 * kk], s[8 * kk + 1]);
            pa[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
            pa[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
            pa[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
        }
    };

    if constexpr (kOverlap) {
        if (n_tiles > 0) {
            float alphaA, alphaB;
            sync_and_load(0);
            wgmma_fence();
            issue_s(0);
            wgmma_wait<0>();
            softmax(0, alphaA, alphaB);
            rescale_and_pack(alphaA, alphaB);
            for (int t = 1; t < n_tiles; ++t) {
                sync_and_load(t);
                wgmma_fence();
                issue_s(t);
                issue_pv(t - 1);
                wgmma_wait<1>();  // S_t landed; P_{t-1} V_{t-1} may still run
                softmax(t, alphaA, alphaB);
                wgmma_wait<0>();
                pv_landed();
                rescale_and_pack(alphaA, alphaB);
            }
            sync_and_load(n_tiles);  // V_{n-1} landed
            wgmma_fence();
            issue_pv(n_tiles - 1);
            wgmma_wait<0>();
            pv_landed();
        }
    } else {
        for (int t = 0; t < n_tiles; ++t) {
            cp_async_wait<0>();
            fence_proxy_async();
            __syncthreads();  // tile t landed; every warpgroup is done with tile t - 1
            if (t + 1 < n_tiles) {
                load_rows(t + 1, false, sk + ((t + 1) & 1) * Cfg::kTileBytes);
                load_rows(t + 1, true, sv + ((t + 1) & 1) * Cfg::kTileBytes);
                cp_async_commit();
            }
            const bool global = t < n_gtiles;
            const int64_t kv0 = tile_start(t);
            // This warpgroup's rows see nothing in the tile (warpgroup-uniform).
            const bool skip = global ? kv0 >= wg_hi : (kv0 > wg_qp_last || kv0 + kBN <= wg_b0_min);
            if (skip) continue;
            float alphaA, alphaB;
            wgmma_fence();
            issue_s(t);
            wgmma_wait<0>();
            softmax(t, alphaA, alphaB);
            rescale_and_pack(alphaA, alphaB);
            wgmma_fence();
            issue_pv(t);
            wgmma_wait<0>();
            pv_landed();
        }
    }

    // ---- epilogue: O / l ---------------------------------------------------------------------
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
    for (int hf = 0; hf < NH; ++hf) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int col = hf * 64 + j * 8 + 2 * t4;
            if (okA) {
                *reinterpret_cast<float2*>(ob + static_cast<int64_t>(m0 + rA) * a.o_s1 + col) =
                    make_float2(o[hf][4 * j] * invA, o[hf][4 * j + 1] * invA);
            }
            if (okB) {
                *reinterpret_cast<float2*>(ob + static_cast<int64_t>(m0 + rA + 8) * a.o_s1 + col) =
                    make_float2(o[hf][4 * j + 2] * invB, o[hf][4 * j + 3] * invB);
            }
        }
    }
#endif  // TCA_WGMMA_DEVICE
}

// ---------------------------------------------------------------------------------------------
// Host side.

bool is_bf16_kv(const TensorView& t) {
    return t.dtype == DType::kBF16 && reinterpret_cast<uintptr_t>(t.data) % 16 == 0 &&
           t.stride[0] % 8 == 0 && t.stride[1] % 8 == 0 && t.stride[2] == 1;
}

// The shapes and layouts this kernel handles; anything else is unsupported (caller falls back).
Status check_supported(const TensorView& q, const TensorView& k, const TensorView& v,
                       const TensorView& out, const char* op) {
    const int64_t d = q.shape[2];
    if (d != 64 && d != 128) return unsupported("%s (wgmma): head_dim %lld (needs 64 or 128)", op, static_cast<long long>(d));
    if (!is_bf16_kv(k) || !is_bf16_kv(v)) {
        return unsupported("%s (wgmma): K/V must be bf16 with 16-byte aligned rows", op);
    }
    if (reinterpret_cast<uintptr_t>(q.data) % 16 != 0 || q.stride[0] % 4 != 0 ||
        q.stride[1] % 4 != 0 || q.stride[2] != 1) {
        return unsupported("%s (wgmma): q rows must be 16-byte aligned", op);
    }
    if (reinterpret_cast<uintptr_t>(out.data) % 8 != 0 || out.stride[0] % 2 != 0 ||
        out.stride[1] % 2 != 0 || out.stride[2] != 1) {
        return unsupported("%s (wgmma): out rows must be 8-byte aligned", op);
    }
    if (k.shape[1] > 0x7fffffff || q.shape[1] > 0x7fffffff) {
        return unsupported("%s (wgmma): more than 2^31 - 1 keys or queries", op);
    }
    if (!attention_wgmma_available()) {
        return unsupported("%s (wgmma): needs a compute capability 9.0 device (sm_90a)", op);
    }
    return Status();
}

// The schedule of the main loop (see the kernel and attention_wgmma.h): TCA_CUDA_WGMMA_OVERLAP
// in the environment, 1 (overlapped) or 0 (serial), starts a process with one for both kernels.
std::atomic<WgmmaSchedule> g_schedule{[] {
    const char* e = std::getenv("TCA_CUDA_WGMMA_OVERLAP");
    if (e != nullptr && std::string_view(e) == "1") return WgmmaSchedule::kOverlap;
    if (e != nullptr && std::string_view(e) == "0") return WgmmaSchedule::kSerial;
    return WgmmaSchedule::kDefault;
}()};

template <int DP, bool kSparse, bool kOverlap>
Status launch_wgmma_as(WgArgs a, const char* op) {
    using Cfg = WgConfig<DP>;
    auto kernel = attn_wgmma_kernel<DP, kSparse, kOverlap>;
    static PerDevice<cudaError_t> attr;  // the attribute is per device
    const cudaError_t attr_err = attr.get([&] {
        return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(Cfg::kSmemBytes));
    });
    TCA_RETURN_IF_ERROR(cuda_status(attr_err, "cudaFuncSetAttribute(attention wgmma smem)"));
    a.n_qtiles = (a.n_q + kBM - 1) / kBM;
    const int64_t grid = static_cast<int64_t>(a.n_qtiles) * a.hq;
    if (grid > 0x7fffffff) return unsupported("%s (wgmma): grid too large", op);
    kernel<<<static_cast<unsigned>(grid), kThreads, Cfg::kSmemBytes, cu_stream()>>>(a);
    return launch_status(op);
}

template <int DP, bool kSparse>
Status launch_wgmma(const WgArgs& a, const char* op) {
    const WgmmaSchedule s = g_schedule.load();
    const bool overlap = s == WgmmaSchedule::kOverlap || (s == WgmmaSchedule::kDefault && !kSparse);
    return overlap ? launch_wgmma_as<DP, kSparse, true>(a, op) : launch_wgmma_as<DP, kSparse, false>(a, op);
}

void fill_common(WgArgs& a, const TensorView& q, const TensorView& k, const TensorView& v,
                 const TensorView& out, float scale) {
    a.q = static_cast<const float*>(q.data);
    a.q_s0 = q.stride[0];
    a.q_s1 = q.stride[1];
    a.out = static_cast<float*>(out.data);
    a.o_s0 = out.stride[0];
    a.o_s1 = out.stride[1];
    a.k = static_cast<const __nv_bfloat16*>(k.data);
    a.v = static_cast<const __nv_bfloat16*>(v.data);
    a.k_s0 = k.stride[0];
    a.k_s1 = k.stride[1];
    a.v_s0 = v.stride[0];
    a.v_s1 = v.stride[1];
    a.hq = static_cast<int>(q.shape[0]);
    a.n_q = static_cast<int>(q.shape[1]);
    a.group = static_cast<int>(q.shape[0] / k.shape[0]);
    a.scale_log2 = effective_scale(scale, q.shape[2]) * kLog2e;
}

}  // namespace

void set_attention_wgmma_schedule(WgmmaSchedule s) { g_schedule.store(s); }
WgmmaSchedule attention_wgmma_schedule() { return g_schedule.load(); }

bool attention_wgmma_available() {
    static const bool ok = [] {
        int dev = 0, major = 0, minor = 0;
        if (cudaGetDevice(&dev) != cudaSuccess) return false;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
            return false;
        }
        if (major != 9 || minor != 0) return false;
        // The file is built for sm_90a alone (CMakeLists.txt): the image loads on 9.0 only.
        cudaFuncAttributes fa{};
        const cudaError_t e = cudaFuncGetAttributes(&fa, attn_wgmma_kernel<128, false, false>);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();  // not sticky: clear it so later launches do not see it
            return false;
        }
        return fa.binaryVersion == 90;
    }();
    return ok;
}

Status attention_dense_wgmma(const AttentionDenseParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const char* op = "attention_dense";
    if (p.q.shape[0] == 0 || p.q.shape[1] == 0) return Status();
    TCA_RETURN_IF_ERROR(check_supported(p.q, p.k, p.v, p.out, op));
    WgArgs a;
    a.q_pos0 = p.q_pos0;
    fill_common(a, p.q, p.k, p.v, p.out, p.scale);
    if (p.q.shape[2] == 64) return launch_wgmma<64, false>(a, op);
    return launch_wgmma<128, false>(a, op);
}

Status sparse_prefill_wgmma(const SparsePrefillParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const char* op = "sparse_prefill";
    if (p.q.shape[0] == 0 || p.q.shape[1] == 0) return Status();
    TCA_RETURN_IF_ERROR(check_supported(p.q, p.k, p.v, p.out, op));
    if (p.k_global.shape[1] > 0 && (!is_bf16_kv(p.k_global) || !is_bf16_kv(p.v_global))) {
        return unsupported("%s (wgmma): k_global/v_global must be bf16 with 16-byte aligned rows", op);
    }
    WgArgs a;
    a.q_pos0 = p.q_pos0;
    fill_common(a, p.q, p.k, p.v, p.out, p.scale);
    a.kg = static_cast<const __nv_bfloat16*>(p.k_global.data);
    a.vg = static_cast<const __nv_bfloat16*>(p.v_global.data);
    a.kg_s0 = p.k_global.stride[0];
    a.kg_s1 = p.k_global.stride[1];
    a.vg_s0 = p.v_global.stride[0];
    a.vg_s1 = p.v_global.stride[1];
    a.gpos = static_cast<const int32_t*>(p.global_pos.data);
    a.gp_s0 = p.global_pos.stride[0];
    a.gp_s1 = p.global_pos.stride[1];
    a.n_global = static_cast<const int32_t*>(p.n_global.data);
    a.ng_s0 = p.n_global.stride[0];
    a.n_blocks = p.n_blocks;
    a.cap = static_cast<int>(p.k_global.shape[1]);
    a.block_size = p.block_size;
    a.local_window = p.local_window;
    if (p.q.shape[2] == 64) return launch_wgmma<64, true>(a, op);
    return launch_wgmma<128, true>(a, op);
}

}  // namespace tca::cuda
