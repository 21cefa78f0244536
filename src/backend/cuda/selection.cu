// Selection ops on CUDA (tca-method M2-M5, M7 gather): token_importance, block_score,
// block_budget, token_select and kv_gather. Same semantics as the CPU twins in
// src/backend/cpu/{selection,kv_ops}.cpp: ranks tie to the lower block index, selections to
// the lower position, output positions ascending.
//
// token_importance (the costly one) runs three kernels:
//  1. importance_stats: grid (key chunks of kChunkKeys, KV heads). A thread owns one key at a
//     time and computes the dots of that key with a group of RT query rows (rows r = t*G + g,
//     pre-scaled by scale*log2(e), held in shared memory as f32); it keeps an online max/sum
//     per row in registers; the CTA reduces them and writes one (m, l) per (row, chunk).
//  2. importance_merge: one thread per (KV head, row) merges the chunks: M = max m,
//     L = sum l * 2^(m - M), weight w = 1 / (L * rows).
//  3. importance_accum: grid (key chunks over all n_kv keys, KV heads). A thread owns a key,
//     sums w_r * 2^(s_r - M_r) over all rows of the KV head (looping over row groups) in a
//     register and writes the score once (keys after every obs query: 0). No atomics.
// K rows are read with 16-byte loads when the view is aligned (always for cudaMalloc'd,
// contiguous K with head_dim % 8 == 0), else element by element. Everything is f32 except the
// block sums of block_score, which accumulate in f64 like the CPU backend (cheap on H200).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_runtime.h"

namespace tca::cuda {
namespace {

constexpr float kLog2eF = 1.4426950408889634f;
constexpr int kImpThreads = 128;                 // threads of the importance kernels
constexpr int kKeysPerThread = 8;                 // keys per thread per chunk
constexpr int kChunkKeys = kImpThreads * kKeysPerThread;  // keys per CTA

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// ---- small device helpers ---------------------------------------------------------------------

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

// Loads 8 consecutive elements of type T as f32 (16-byte vector loads when kVec).
template <class T, bool kVec>
__device__ __forceinline__ void load8(const T* src, float (&out)[8]) {
    if constexpr (kVec && sizeof(T) == 4) {
        const float4 a = *reinterpret_cast<const float4*>(src);
        const float4 b = *reinterpret_cast<const float4*>(src + 4);
        out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
        out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
    } else if constexpr (kVec) {
        const uint4 u = *reinterpret_cast<const uint4*>(src);
        const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
        for (int i = 0; i < 8; ++i) out[i] = to_f32(e[i]);
    } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) out[i] = to_f32(src[i]);
    }
}

// Online softmax statistics (log2 domain): combine (m, l) with (m2, l2).
__device__ __forceinline__ void merge_stats(float& m, float& l, float m2, float l2) {
    const float mm = fmaxf(m, m2);
    if (mm == -INFINITY) return;  // both empty
    l = l * exp2f(m - mm) + l2 * exp2f(m2 - mm);
    m = mm;
}

// Inclusive scan inside a warp.
__device__ __forceinline__ int warp_inclusive_scan(int v) {
    const int lane = static_cast<int>(threadIdx.x & 31u);
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int n = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += n;
    }
    return v;
}

// Exclusive scan over the CTA (blockDim.x a multiple of 32, at most 1024); *total gets the sum.
// Every thread of the CTA must call it.
__device__ int block_exclusive_scan(int v, int* total) {
    __shared__ int warp_sums[32];
    __shared__ int total_s;
    const int lane = static_cast<int>(threadIdx.x & 31u), warp = static_cast<int>(threadIdx.x >> 5);
    const int n_warps = static_cast<int>(blockDim.x >> 5);
    const int incl = warp_inclusive_scan(v);
    if (lane == 31) warp_sums[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        const int w = lane < n_warps ? warp_sums[lane] : 0;
        const int wi = warp_inclusive_scan(w);
        if (lane < n_warps) warp_sums[lane] = wi - w;  // exclusive warp offsets
        if (lane == 31) total_s = wi;
    }
    __syncthreads();
    const int out = warp_sums[warp] + incl - v;
    *total = total_s;
    __syncthreads();  // warp_sums / total_s may be reused by a later call
    return out;
}

// ---- token_importance -------------------------------------------------------------------------

struct ImportanceArgs {
    const float* q;      // [hq, n_obs, d] with strides qs0, qs1
    int64_t qs0, qs1;
    const void* k;       // [hkv, n_kv, d] with strides ks0, ks1 (elements)
    int64_t ks0, ks1;
    float* scores;       // [hkv, n_kv] strides ss0, ss1
    int64_t ss0, ss1;
    int64_t n_kv, pos0, k_end;  // k_end = pos0 + n_obs
    int g, n_obs, d, rows;      // rows = g * n_obs
    float qscale;               // scale * log2(e)
    float* part_m;              // [hkv, rows, n_chunks1]
    float* part_l;
    int n_chunks1;
    float* row_m;               // [hkv, rows]
    float* row_w;
};

// Loads rows [r0, r0 + RT) of KV head kvh into q_s[RT][d] (scaled; rows >= rows zero) and
// their key limits into hi_s.
template <int RT>
__device__ void load_q_group(const ImportanceArgs& a, int kvh, int r0, float* q_s, int64_t* hi_s) {
    for (int i = static_cast<int>(threadIdx.x); i < RT * a.d; i += static_cast<int>(blockDim.x)) {
        const int rr = i / a.d, c = i % a.d, r = r0 + rr;
        float v = 0.0f;
        if (r < a.rows) {
            const int t = r / a.g, gi = r % a.g;
            const int64_t h = static_cast<int64_t>(kvh) * a.g + gi;
            v = a.q[h * a.qs0 + t * a.qs1 + c] * a.qscale;
        }
        q_s[rr * a.d + c] = v;
    }
    if (threadIdx.x < RT) {
        const int r = r0 + static_cast<int>(threadIdx.x);
        hi_s[threadIdx.x] = r < a.rows ? a.pos0 + r / a.g + 1 : 0;
    }
}

// s[r] = q_r . k for the RT rows of q_s (d multiple of 8).
template <class T, bool kVec, int RT>
__device__ __forceinline__ void dot_rows(const float* q_s, const T* krow, int d, float (&s)[RT]) {
#pragma unroll
    for (int r = 0; r < RT; ++r) s[r] = 0.0f;
    // A few 16-byte loads in flight per thread when the row count leaves registers for them.
    constexpr int kUnroll = RT <= 8 ? 4 : 1;
#pragma unroll kUnroll
    for (int c = 0; c < d; c += 8) {
        float kf[8];
        load8<T, kVec>(krow + c, kf);
#pragma unroll
        for (int r = 0; r < RT; ++r) {
            const float4 qa = *reinterpret_cast<const float4*>(q_s + r * d + c);
            const float4 qb = *reinterpret_cast<const float4*>(q_s + r * d + c + 4);
            float acc = s[r];
            acc = fmaf(qa.x, kf[0], acc);
            acc = fmaf(qa.y, kf[1], acc);
            acc = fmaf(qa.z, kf[2], acc);
            acc = fmaf(qa.w, kf[3], acc);
            acc = fmaf(qb.x, kf[4], acc);
            acc = fmaf(qb.y, kf[5], acc);
            acc = fmaf(qb.z, kf[6], acc);
            acc = fmaf(qb.w, kf[7], acc);
            s[r] = acc;
        }
    }
}

template <class T, bool kVec, int RT>
__global__ void __launch_bounds__(kImpThreads) importance_stats(ImportanceArgs a) {
    extern __shared__ float4 smem4[];
    float* q_s = reinterpret_cast<float*>(smem4);  // [RT][d]
    __shared__ int64_t hi_s[RT];
    __shared__ float red_m[kImpThreads / 32][RT], red_l[kImpThreads / 32][RT];
    const int kvh = static_cast<int>(blockIdx.y), chunk = static_cast<int>(blockIdx.x);
    const int64_t k0 = static_cast<int64_t>(chunk) * kChunkKeys;
    const int64_t k1 = min(a.k_end, k0 + kChunkKeys);
    const T* kbase = static_cast<const T*>(a.k) + static_cast<int64_t>(kvh) * a.ks0;
    const int lane = static_cast<int>(threadIdx.x & 31u), warp = static_cast<int>(threadIdx.x >> 5);
    for (int r0 = 0; r0 < a.rows; r0 += RT) {
        __syncthreads();  // previous group's q_s / red_* fully consumed
        load_q_group<RT>(a, kvh, r0, q_s, hi_s);
        __syncthreads();
        float m[RT], l[RT];
#pragma unroll
        for (int r = 0; r < RT; ++r) { m[r] = -INFINITY; l[r] = 0.0f; }
        for (int64_t key = k0 + threadIdx.x; key < k1; key += kImpThreads) {
            float s[RT];
            dot_rows<T, kVec, RT>(q_s, kbase + key * a.ks1, a.d, s);
#pragma unroll
            for (int r = 0; r < RT; ++r) {
                if (key < hi_s[r]) {
                    const float mm = fmaxf(m[r], s[r]);
                    l[r] = l[r] * exp2f(m[r] - mm) + exp2f(s[r] - mm);
                    m[r] = mm;
                }
            }
        }
        // CTA reduction per row: warp shuffles, then across warps.
#pragma unroll
        for (int r = 0; r < RT; ++r) {
            float mr = m[r], lr = l[r];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                const float m2 = __shfl_xor_sync(0xffffffffu, mr, o);
                const float l2 = __shfl_xor_sync(0xffffffffu, lr, o);
                merge_stats(mr, lr, m2, l2);
            }
            if (lane == 0) { red_m[warp][r] = mr; red_l[warp][r] = lr; }
        }
        __syncthreads();
        if (threadIdx.x < RT && r0 + static_cast<int>(threadIdx.x) < a.rows) {
            const int r = static_cast<int>(threadIdx.x);
            float mr = red_m[0][r], lr = red_l[0][r];
            for (int w = 1; w < kImpThreads / 32; ++w) merge_stats(mr, lr, red_m[w][r], red_l[w][r]);
            const int64_t at = (static_cast<int64_t>(kvh) * a.rows + r0 + r) * a.n_chunks1 + chunk;
            a.part_m[at] = mr;
            a.part_l[at] = lr;
        }
    }
}

__global__ void importance_merge(ImportanceArgs a, int hkv) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;  // kvh*rows+r
    if (i >= static_cast<int64_t>(hkv) * a.rows) return;
    const float* pm = a.part_m + i * a.n_chunks1;
    const float* pl = a.part_l + i * a.n_chunks1;
    float mm = -INFINITY;
    for (int c = 0; c < a.n_chunks1; ++c) mm = fmaxf(mm, pm[c]);
    float l = 0.0f;
    if (mm != -INFINITY) {
        for (int c = 0; c < a.n_chunks1; ++c) {
            if (pl[c] > 0.0f) l += pl[c] * exp2f(pm[c] - mm);
        }
    }
    a.row_m[i] = mm;
    a.row_w[i] = l > 0.0f ? 1.0f / (l * static_cast<float>(a.rows)) : 0.0f;
}

template <class T, bool kVec, int RT>
__global__ void __launch_bounds__(kImpThreads) importance_accum(ImportanceArgs a) {
    extern __shared__ float4 smem4[];
    float* q_s = reinterpret_cast<float*>(smem4);  // [RT][d]
    __shared__ int64_t hi_s[RT];
    __shared__ float m_s[RT], w_s[RT];
    const int kvh = static_cast<int>(blockIdx.y);
    const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kChunkKeys;
    const int64_t k1 = min(a.n_kv, k0 + kChunkKeys);
    const int64_t kc = min(a.k_end, k1);  // keys >= k_end score 0
    const T* kbase = static_cast<const T*>(a.k) + static_cast<int64_t>(kvh) * a.ks0;
    float* out = a.scores + static_cast<int64_t>(kvh) * a.ss0;
    float acc[kKeysPerThread];
#pragma unroll
    for (int i = 0; i < kKeysPerThread; ++i) acc[i] = 0.0f;
    if (k0 < kc) {
        for (int r0 = 0; r0 < a.rows; r0 += RT) {
            __syncthreads();
            load_q_group<RT>(a, kvh, r0, q_s, hi_s);
            if (threadIdx.x < RT) {
                const int r = r0 + static_cast<int>(threadIdx.x);
                const bool ok = r < a.rows;
                m_s[threadIdx.x] = ok ? a.row_m[static_cast<int64_t>(kvh) * a.rows + r] : 0.0f;
                w_s[threadIdx.x] = ok ? a.row_w[static_cast<int64_t>(kvh) * a.rows + r] : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (int i = 0; i < kKeysPerThread; ++i) {
                const int64_t key = k0 + static_cast<int64_t>(i) * kImpThreads + threadIdx.x;
                if (key >= kc) continue;  // acc stays in registers (full unroll)
                float s[RT];
                dot_rows<T, kVec, RT>(q_s, kbase + key * a.ks1, a.d, s);
                float sum = 0.0f;
#pragma unroll
                for (int r = 0; r < RT; ++r) {
                    if (key < hi_s[r]) sum += exp2f(s[r] - m_s[r]) * w_s[r];
                }
                acc[i] += sum;
            }
        }
    }
#pragma unroll
    for (int i = 0; i < kKeysPerThread; ++i) {
        const int64_t key = k0 + static_cast<int64_t>(i) * kImpThreads + threadIdx.x;
        if (key < k1) out[key * a.ss1] = key < kc ? acc[i] : 0.0f;
    }
}

template <class T, bool kVec, int RT>
Status launch_importance(const ImportanceArgs& a, int hkv, int n_chunks2) {
    cudaStream_t st = cu_stream();
    const size_t smem = static_cast<size_t>(RT) * static_cast<size_t>(a.d) * sizeof(float);  // <= 32 KiB
    importance_stats<T, kVec, RT><<<dim3(static_cast<unsigned>(a.n_chunks1), static_cast<unsigned>(hkv)),
                                    kImpThreads, smem, st>>>(a);
    TCA_RETURN_IF_ERROR(launch_status("token_importance stats kernel"));
    const int64_t n_rows = static_cast<int64_t>(hkv) * a.rows;
    importance_merge<<<static_cast<unsigned>((n_rows + 127) / 128), 128, 0, st>>>(a, hkv);
    TCA_RETURN_IF_ERROR(launch_status("token_importance merge kernel"));
    importance_accum<T, kVec, RT><<<dim3(static_cast<unsigned>(n_chunks2), static_cast<unsigned>(hkv)),
                                    kImpThreads, smem, st>>>(a);
    return launch_status("token_importance accumulate kernel");
}

template <class T, bool kVec>
Status importance_rt(const ImportanceArgs& a, int hkv, int n_chunks2) {
    if (a.rows <= 4) return launch_importance<T, kVec, 4>(a, hkv, n_chunks2);
    if (a.rows <= 8) return launch_importance<T, kVec, 8>(a, hkv, n_chunks2);
    if (a.rows <= 16) return launch_importance<T, kVec, 16>(a, hkv, n_chunks2);
    return launch_importance<T, kVec, 32>(a, hkv, n_chunks2);
}

template <class T>
Status importance_dtype(const ImportanceArgs& a, int hkv, int n_chunks2, bool vec) {
    return vec ? importance_rt<T, true>(a, hkv, n_chunks2) : importance_rt<T, false>(a, hkv, n_chunks2);
}

// ---- block_score ------------------------------------------------------------------------------

constexpr int kScoreWarps = 8;

// One warp per (head, block): f64 mass and sum of squares of the block's b scores.
__global__ void block_sums(const float* scores, int64_t ss0, int64_t ss1, int64_t nb, int b,
                           double* mass_d, double* hhi_d) {
    const int lane = static_cast<int>(threadIdx.x & 31u), warp = static_cast<int>(threadIdx.x >> 5);
    const int64_t j = static_cast<int64_t>(blockIdx.x) * kScoreWarps + warp;
    const int64_t kvh = blockIdx.y;
    if (j >= nb) return;
    const float* s = scores + kvh * ss0;
    double m = 0.0, sq = 0.0;
    for (int i = lane; i < b; i += 32) {
        const double x = s[(j * b + i) * ss1];
        m += x;
        sq += x * x;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        m += __shfl_xor_sync(0xffffffffu, m, o);
        sq += __shfl_xor_sync(0xffffffffu, sq, o);
    }
    if (lane == 0) {
        mass_d[kvh * nb + j] = m;
        hhi_d[kvh * nb + j] = m > 0.0 ? sq / (m * m) : 1.0;
    }
}

struct BlockScoreOut {
    float* mass; int64_t ms0, ms1;
    float* hhi; int64_t hs0, hs1;
    float* score; int64_t bs0, bs1;
};

// One CTA per head: max mass, then h_j for every block.
__global__ void block_finish(const double* mass_d, const double* hhi_d, int64_t nb, double alpha,
                             int norm_max, BlockScoreOut o) {
    __shared__ double red[32];
    const int64_t kvh = blockIdx.x;
    const double* md = mass_d + kvh * nb;
    const double* hd = hhi_d + kvh * nb;
    double mx = 0.0;
    for (int64_t j = threadIdx.x; j < nb; j += blockDim.x) mx = fmax(mx, md[j]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) mx = fmax(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    const int lane = static_cast<int>(threadIdx.x & 31u), warp = static_cast<int>(threadIdx.x >> 5);
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    if (threadIdx.x == 0) {
        double v = 0.0;
        for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) v = fmax(v, red[w]);
        red[0] = v;
    }
    __syncthreads();
    const double mmax = red[0];
    for (int64_t j = threadIdx.x; j < nb; j += blockDim.x) {
        const double m = md[j], h = hd[j];
        const double mn = norm_max ? (mmax > 0.0 ? m / mmax : 0.0) : m;
        o.mass[kvh * o.ms0 + j * o.ms1] = static_cast<float>(m);
        o.hhi[kvh * o.hs0 + j * o.hs1] = static_cast<float>(h);
        o.score[kvh * o.bs0 + j * o.bs1] = static_cast<float>((1.0 - alpha) * mn + alpha * (1.0 - h));
    }
}

// ---- block_budget -----------------------------------------------------------------------------

constexpr int kRankThreads = 256;

// rank_j = #{i : h_i > h_j} + #{i < j : h_i == h_j}; keep[j] = psi[rank_j]. Thread per block j,
// the other blocks' scores streamed through shared memory.
__global__ void __launch_bounds__(kRankThreads)
budget_rank(const float* hs, int64_t hs0, int64_t hs1, const int32_t* psi, int64_t ps0,
            int64_t ps1, int32_t* keep, int64_t k0s, int64_t k1s, int64_t nb) {
    __shared__ float tile[kRankThreads];
    const int64_t kvh = blockIdx.y;
    const int64_t j = static_cast<int64_t>(blockIdx.x) * kRankThreads + threadIdx.x;
    const float* h = hs + kvh * hs0;
    const float hj = j < nb ? h[j * hs1] : 0.0f;
    int64_t rank = 0;
    for (int64_t t0 = 0; t0 < nb; t0 += kRankThreads) {
        __syncthreads();
        const int64_t i = t0 + threadIdx.x;
        if (i < nb) tile[threadIdx.x] = h[i * hs1];
        __syncthreads();
        const int n = static_cast<int>(min(static_cast<int64_t>(kRankThreads), nb - t0));
        if (j < nb) {
            int cnt = 0;
            for (int u = 0; u < n; ++u) {
                const float hi = tile[u];
                cnt += (hi > hj) || (hi == hj && t0 + u < j);
            }
            rank += cnt;
        }
    }
    if (j < nb) keep[kvh * k0s + j * k1s] = psi[kvh * ps0 + rank * ps1];
}

// ---- token_select -----------------------------------------------------------------------------

constexpr int kScanThreads = 1024;
constexpr int kSelectThreads = 256;

__device__ __forceinline__ int clamp_keep(int32_t t, int b) { return t < 0 ? 0 : (t > b ? b : t); }

// One CTA per head: exclusive prefix sum of keep over the blocks -> offsets, n_selected.
__global__ void __launch_bounds__(kScanThreads)
select_offsets(const int32_t* keep, int64_t ks0, int64_t ks1, int64_t nb, int b, int32_t* offsets,
               int32_t* n_sel, int64_t ns0) {
    const int64_t kvh = blockIdx.x;
    const int64_t per = (nb + kScanThreads - 1) / kScanThreads;
    const int64_t j0 = min(nb, static_cast<int64_t>(threadIdx.x) * per), j1 = min(nb, j0 + per);
    const int32_t* kp = keep + kvh * ks0;
    int local = 0;
    for (int64_t j = j0; j < j1; ++j) local += clamp_keep(kp[j * ks1], b);
    int total = 0;
    int off = block_exclusive_scan(local, &total);
    for (int64_t j = j0; j < j1; ++j) {
        offsets[kvh * nb + j] = off;
        off += clamp_keep(kp[j * ks1], b);
    }
    if (threadIdx.x == 0) n_sel[kvh * ns0] = total;
}

// One CTA per (block, head): the keep[j] best tokens in position order. Best: the larger
// pooled score (the max over [i - pool, i + pool] clipped to [0, n_kv); the own score when
// pool == 0), then the larger own score, then the lower position.
__global__ void __launch_bounds__(kSelectThreads)
select_block(const float* scores, int64_t ss0, int64_t ss1, int64_t n_kv, int pool,
             const int32_t* keep, int64_t ks0, int64_t ks1, int64_t nb, int b,
             const int32_t* offsets, int32_t* sel, int64_t sl0, int64_t sl1) {
    extern __shared__ float smem[];  // [b] pooled, then the halo [b + 2 * pool]
    float* p_blk = smem;
    float* halo = smem + b;            // halo[x]: the score at first - pool + x
    float* s_blk = halo + pool;        // s_blk[i]: the score at first + i
    const int64_t j = blockIdx.x, kvh = blockIdx.y;
    const int t = clamp_keep(keep[kvh * ks0 + j * ks1], b);
    if (t == 0) return;  // uniform over the CTA
    int32_t* out = sel + kvh * sl0 + static_cast<int64_t>(offsets[kvh * nb + j]) * sl1;
    const int32_t first = static_cast<int32_t>(j * b);
    if (t == b) {
        for (int i = static_cast<int>(threadIdx.x); i < b; i += kSelectThreads) out[i * sl1] = first + i;
        return;
    }
    // halo[x] = the score at first - pool + x, -inf outside [0, n_kv).
    const float* row = scores + kvh * ss0;
    for (int x = static_cast<int>(threadIdx.x); x < b + 2 * pool; x += kSelectThreads) {
        const int64_t pos = static_cast<int64_t>(first) - pool + x;
        halo[x] = (pos >= 0 && pos < n_kv) ? row[pos * ss1] : -INFINITY;
    }
    __syncthreads();
    if (pool > 0) {
        for (int i = static_cast<int>(threadIdx.x); i < b; i += kSelectThreads) {
            float m = halo[i];
            for (int x = i + 1; x <= i + 2 * pool; ++x) m = fmaxf(m, halo[x]);
            p_blk[i] = m;
        }
    } else {
        for (int i = static_cast<int>(threadIdx.x); i < b; i += kSelectThreads) p_blk[i] = s_blk[i];
    }
    __syncthreads();
    // Thread owns the contiguous tokens [a0, a1) of the block.
    const int per = (b + kSelectThreads - 1) / kSelectThreads;
    const int a0 = min(b, static_cast<int>(threadIdx.x) * per), a1 = min(b, a0 + per);
    unsigned chosen = 0;  // per <= 16 (b <= 4096)
    int cnt = 0;
    for (int a = a0; a < a1; ++a) {
        const float sa = s_blk[a], pa = p_blk[a];
        int rank = 0;
        for (int c = 0; c < b; ++c) {
            const float sc = s_blk[c], pc = p_blk[c];
            rank += (pc > pa) || (pc == pa && ((sc > sa) || (sc == sa && c < a)));
        }
        if (rank < t) {
            chosen |= 1u << (a - a0);
            ++cnt;
        }
    }
    int total = 0;
    int o = block_exclusive_scan(cnt, &total);
    for (int a = a0; a < a1; ++a) {
        if (chosen & (1u << (a - a0))) out[static_cast<int64_t>(o++) * sl1] = first + a;
    }
}

// ---- token_select, global (Selection::kGlobal) --------------------------------------------------
//
// The head's T = sum_j keep[j] best tokens of the region, found as per-block counts: the
// T-th largest key K (8 radix passes of 8 bits over 64-bit keys), then block j keeps its
// tokens above K plus its share of the K-ties by position. select_block then picks each
// block's best keep[j] tokens, which are exactly the global set's members in that block (the
// order is the same strict total order).

constexpr int kGlobalThreads = 1024;

// A float's bits as an unsigned integer with the same order (-0 and +0 equal, as the CPU's
// float comparison has them).
__device__ __forceinline__ uint32_t ordered_bits(float f) {
    const uint32_t u = __float_as_uint(f == 0.0f ? 0.0f : f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// keys[kvh][i] = (ordered pooled score << 32) | ordered own score, i in [0, n); grid (chunks,
// heads). pooled: the max over [i - pool, i + pool] clipped to [0, n_kv).
__global__ void global_keys(const float* scores, int64_t ss0, int64_t ss1, int64_t n_kv, int pool,
                            int64_t n, uint64_t* keys) {
    const int64_t kvh = blockIdx.y;
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float* row = scores + kvh * ss0;
    const float own = row[i * ss1];
    float m = own;
    const int64_t lo = i - pool < 0 ? 0 : i - pool, hi = i + pool < n_kv - 1 ? i + pool : n_kv - 1;
    for (int64_t c = lo; c <= hi; ++c) m = fmaxf(m, row[c * ss1]);
    keys[kvh * n + i] = (static_cast<uint64_t>(ordered_bits(m)) << 32) | ordered_bits(own);
}

// One CTA per head: keep_out[kvh][j] for the global selection of T = sum_j keep[j] tokens.
__global__ void __launch_bounds__(kGlobalThreads)
global_counts(const uint64_t* keys, const int32_t* keep, int64_t ks0, int64_t ks1, int64_t nb, int b,
              int32_t* keep_out) {
    __shared__ unsigned hist[256];
    __shared__ int digit_s;
    __shared__ long long rem_s;
    const int64_t kvh = blockIdx.x, n = nb * b;
    const uint64_t* key = keys + kvh * n;
    int32_t* out = keep_out + kvh * nb;
    const int tid = static_cast<int>(threadIdx.x);
    const int64_t per = (nb + kGlobalThreads - 1) / kGlobalThreads;
    const int64_t j0 = min(nb, tid * per), j1 = min(nb, j0 + per);
    int local = 0;
    for (int64_t j = j0; j < j1; ++j) local += clamp_keep(keep[kvh * ks0 + j * ks1], b);
    int total = 0;
    (void)block_exclusive_scan(local, &total);
    if (total == 0 || total >= n) {  // uniform over the CTA
        for (int64_t j = tid; j < nb; j += kGlobalThreads) out[j] = total == 0 ? 0 : b;
        return;
    }
    // The total-th largest key: prefix/mask fix its top bits, rem = its rank among the keys
    // that share them.
    uint64_t prefix = 0, mask = 0;
    long long rem = total;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int d = tid; d < 256; d += kGlobalThreads) hist[d] = 0;
        __syncthreads();
        for (int64_t i = tid; i < n; i += kGlobalThreads) {
            const uint64_t k = key[i];
            if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 0xFFu], 1u);
        }
        __syncthreads();
        if (tid == 0) {
            long long above = 0;
            int d = 255;
            for (; d > 0 && above + hist[d] < rem; --d) above += hist[d];
            digit_s = d;
            rem_s = rem - above;
        }
        __syncthreads();
        prefix |= static_cast<uint64_t>(digit_s) << shift;
        mask |= uint64_t{0xFF} << shift;
        rem = rem_s;
        __syncthreads();
    }
    // Keys equal to prefix: the first rem of them by position are taken.
    int ties = 0;
    for (int64_t i = j0 * b; i < j1 * b; ++i) ties += key[i] == prefix;
    int all_ties = 0;
    long long before = block_exclusive_scan(ties, &all_ties);
    for (int64_t j = j0; j < j1; ++j) {
        int above = 0, eq = 0;
        for (int64_t i = j * b; i < (j + 1) * b; ++i) {
            above += key[i] > prefix;
            eq += key[i] == prefix;
        }
        const long long take = rem - before < 0 ? 0 : (rem - before > eq ? eq : rem - before);
        out[j] = above + static_cast<int>(take);
        before += eq;
    }
}

// ---- kv_gather --------------------------------------------------------------------------------

constexpr int kGatherWarps = 8;

struct GatherArgs {
    const char* k; const char* v;
    int64_t k0, k1, v0, v1;            // strides in bytes
    const int32_t* pos; int64_t p0, p1;
    const int32_t* n_pos; int64_t np0;
    char* ko; char* vo;
    int64_t ko0, ko1, vo0, vo1;        // strides in bytes
    int32_t* slot_pos; int64_t sp0, sp1;
    int64_t n_kv, cap;                 // cap = min(positions cap, cap_out)
    int64_t row_units;                 // row bytes / sizeof(U)
};

// One warp per output slot: copy the rows of K and V at positions[h, s] in units of U.
template <class U>
__global__ void __launch_bounds__(kGatherWarps * 32) gather_rows(GatherArgs a) {
    const int lane = static_cast<int>(threadIdx.x & 31u), warp = static_cast<int>(threadIdx.x >> 5);
    const int64_t s = static_cast<int64_t>(blockIdx.x) * kGatherWarps + warp;
    const int64_t h = blockIdx.y;
    int64_t n = a.n_pos[h * a.np0];
    n = n < 0 ? 0 : (n > a.cap ? a.cap : n);
    if (s >= n) return;
    const int64_t pos = a.pos[h * a.p0 + s * a.p1];
    if (pos < 0 || pos >= a.n_kv) return;  // invalid input (the CPU asserts): skip, stay in bounds
    const U* ks = reinterpret_cast<const U*>(a.k + h * a.k0 + pos * a.k1);
    const U* vs = reinterpret_cast<const U*>(a.v + h * a.v0 + pos * a.v1);
    U* kd = reinterpret_cast<U*>(a.ko + h * a.ko0 + s * a.ko1);
    U* vd = reinterpret_cast<U*>(a.vo + h * a.vo0 + s * a.vo1);
    for (int64_t u = lane; u < a.row_units; u += 32) {
        kd[u] = ks[u];
        vd[u] = vs[u];
    }
    if (lane == 0) a.slot_pos[h * a.sp0 + s * a.sp1] = static_cast<int32_t>(pos);
}

unsigned grid_x(int64_t n, int64_t per) { return static_cast<unsigned>((n + per - 1) / per); }

}  // namespace

Status token_importance(const TokenImportanceParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_obs = p.q.shape[1], d = p.q.shape[2];
    const int64_t hkv = p.k.shape[0], n_kv = p.k.shape[1], g = hq / hkv;
    const int64_t pos0 = p.q_pos0 < 0 ? n_kv - n_obs : p.q_pos0;
    ImportanceArgs a{};
    a.q = p.q.ptr<float>();
    a.qs0 = p.q.stride[0];
    a.qs1 = p.q.stride[1];
    a.k = p.k.data;
    a.ks0 = p.k.stride[0];
    a.ks1 = p.k.stride[1];
    a.scores = p.scores.ptr<float>();
    a.ss0 = p.scores.stride[0];
    a.ss1 = p.scores.stride[1];
    a.n_kv = n_kv;
    a.pos0 = pos0;
    a.k_end = pos0 + n_obs;
    a.g = static_cast<int>(g);
    a.n_obs = static_cast<int>(n_obs);
    a.d = static_cast<int>(d);
    a.rows = static_cast<int>(g * n_obs);
    a.qscale = effective_scale(p.scale, d) * kLog2eF;
    a.n_chunks1 = static_cast<int>((a.k_end + kChunkKeys - 1) / kChunkKeys);
    const int n_chunks2 = static_cast<int>((n_kv + kChunkKeys - 1) / kChunkKeys);
    const size_t n_part = static_cast<size_t>(hkv) * static_cast<size_t>(a.rows) *
                          static_cast<size_t>(a.n_chunks1);
    const size_t n_row = static_cast<size_t>(hkv) * static_cast<size_t>(a.rows);
    TCA_ASSIGN_OR_RETURN(void* s0, scratch(2 * n_part * sizeof(float), 0));
    TCA_ASSIGN_OR_RETURN(void* s1, scratch(2 * n_row * sizeof(float), 1));
    a.part_m = static_cast<float*>(s0);
    a.part_l = a.part_m + n_part;
    a.row_m = static_cast<float*>(s1);
    a.row_w = a.row_m + n_row;
    const size_t es = dtype_size(p.k.dtype);
    const bool vec = aligned16(p.k.data) && (p.k.stride[0] * static_cast<int64_t>(es)) % 16 == 0 &&
                     (p.k.stride[1] * static_cast<int64_t>(es)) % 16 == 0;
    switch (p.k.dtype) {
        case DType::kF32: return importance_dtype<float>(a, static_cast<int>(hkv), n_chunks2, vec);
        case DType::kF16: return importance_dtype<__half>(a, static_cast<int>(hkv), n_chunks2, vec);
        case DType::kBF16: return importance_dtype<__nv_bfloat16>(a, static_cast<int>(hkv), n_chunks2, vec);
        default: return unsupported("token_importance: k dtype %s", dtype_name(p.k.dtype));
    }
}

Status block_score(const BlockScoreParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.scores.shape[0], nb = p.mass.shape[1];
    if (hkv == 0 || nb == 0) return Status();
    const size_t n = static_cast<size_t>(hkv * nb);
    TCA_ASSIGN_OR_RETURN(void* sp, scratch(2 * n * sizeof(double), 0));
    double* mass_d = static_cast<double*>(sp);
    double* hhi_d = mass_d + n;
    cudaStream_t st = cu_stream();
    block_sums<<<dim3(grid_x(nb, kScoreWarps), static_cast<unsigned>(hkv)), kScoreWarps * 32, 0, st>>>(
        p.scores.ptr<float>(), p.scores.stride[0], p.scores.stride[1], nb, p.block_size, mass_d, hhi_d);
    TCA_RETURN_IF_ERROR(launch_status("block_score sums kernel"));
    BlockScoreOut o{p.mass.ptr<float>(), p.mass.stride[0], p.mass.stride[1],
                    p.hhi.ptr<float>(), p.hhi.stride[0], p.hhi.stride[1],
                    p.block_score.ptr<float>(), p.block_score.stride[0], p.block_score.stride[1]};
    block_finish<<<static_cast<unsigned>(hkv), 1024, 0, st>>>(
        mass_d, hhi_d, nb, static_cast<double>(p.alpha), p.mass_norm == MassNorm::kMax ? 1 : 0, o);
    return launch_status("block_score finish kernel");
}

Status block_budget(const BlockBudgetParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.block_score.shape[0], nb = p.block_score.shape[1];
    if (hkv == 0 || nb == 0) return Status();
    budget_rank<<<dim3(grid_x(nb, kRankThreads), static_cast<unsigned>(hkv)), kRankThreads, 0, cu_stream()>>>(
        p.block_score.ptr<float>(), p.block_score.stride[0], p.block_score.stride[1],
        p.psi.ptr<int32_t>(), p.psi.stride[0], p.psi.stride[1], p.keep.ptr<int32_t>(),
        p.keep.stride[0], p.keep.stride[1], nb);
    return launch_status("block_budget kernel");
}

Status token_select(const TokenSelectParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.scores.shape[0], nb = p.keep.shape[1];
    const int b = p.block_size;
    if (hkv == 0) return Status();
    const size_t n_counts = static_cast<size_t>(std::max<int64_t>(1, hkv * nb));
    TCA_ASSIGN_OR_RETURN(void* sp, scratch(2 * n_counts * sizeof(int32_t), 0));
    int32_t* offsets = static_cast<int32_t*>(sp);
    cudaStream_t st = cu_stream();
    // The per-block counts select_block uses: keep itself, or the global selection's.
    const int32_t* keep = p.keep.ptr<int32_t>();
    int64_t ks0 = p.keep.stride[0], ks1 = p.keep.stride[1];
    if (p.global && nb > 0) {
        const int64_t n = nb * b;
        TCA_ASSIGN_OR_RETURN(void* kp, scratch(static_cast<size_t>(hkv * n) * sizeof(uint64_t), 1));
        int32_t* counts = offsets + n_counts;
        global_keys<<<dim3(static_cast<unsigned>((n + 255) / 256), static_cast<unsigned>(hkv)), 256, 0, st>>>(
            p.scores.ptr<float>(), p.scores.stride[0], p.scores.stride[1], p.scores.shape[1], p.pool, n,
            static_cast<uint64_t*>(kp));
        TCA_RETURN_IF_ERROR(launch_status("token_select global keys kernel"));
        global_counts<<<static_cast<unsigned>(hkv), kGlobalThreads, 0, st>>>(
            static_cast<const uint64_t*>(kp), keep, ks0, ks1, nb, b, counts);
        TCA_RETURN_IF_ERROR(launch_status("token_select global counts kernel"));
        keep = counts;
        ks0 = nb;
        ks1 = 1;
    }
    select_offsets<<<static_cast<unsigned>(hkv), kScanThreads, 0, st>>>(
        keep, ks0, ks1, nb, b, offsets, p.n_selected.ptr<int32_t>(), p.n_selected.stride[0]);
    TCA_RETURN_IF_ERROR(launch_status("token_select offsets kernel"));
    if (nb == 0) return Status();
    const size_t smem = static_cast<size_t>(2 * b + 2 * p.pool) * sizeof(float);
    select_block<<<dim3(static_cast<unsigned>(nb), static_cast<unsigned>(hkv)), kSelectThreads, smem, st>>>(
        p.scores.ptr<float>(), p.scores.stride[0], p.scores.stride[1], p.scores.shape[1], p.pool, keep,
        ks0, ks1, nb, b, offsets, p.selected.ptr<int32_t>(),
        p.selected.stride[0], p.selected.stride[1]);
    return launch_status("token_select block kernel");
}

Status kv_gather(const KvGatherParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.k.shape[0], d = p.k.shape[2];
    const int64_t cap = std::min(p.positions.shape[1], p.k_out.shape[1]);
    if (hkv == 0 || cap == 0) return Status();
    const int64_t es = static_cast<int64_t>(dtype_size(p.k.dtype));
    GatherArgs a{};
    a.k = static_cast<const char*>(p.k.data);
    a.v = static_cast<const char*>(p.v.data);
    a.k0 = p.k.stride[0] * es; a.k1 = p.k.stride[1] * es;
    a.v0 = p.v.stride[0] * es; a.v1 = p.v.stride[1] * es;
    a.pos = p.positions.ptr<int32_t>(); a.p0 = p.positions.stride[0]; a.p1 = p.positions.stride[1];
    a.n_pos = p.n_positions.ptr<int32_t>(); a.np0 = p.n_positions.stride[0];
    a.ko = static_cast<char*>(p.k_out.data);
    a.vo = static_cast<char*>(p.v_out.data);
    a.ko0 = p.k_out.stride[0] * es; a.ko1 = p.k_out.stride[1] * es;
    a.vo0 = p.v_out.stride[0] * es; a.vo1 = p.v_out.stride[1] * es;
    a.slot_pos = p.slot_pos.ptr<int32_t>(); a.sp0 = p.slot_pos.stride[0]; a.sp1 = p.slot_pos.stride[1];
    a.n_kv = p.k.shape[1];
    a.cap = cap;
    const int64_t row_bytes = d * es;
    const bool vec = aligned16(a.k) && aligned16(a.v) && aligned16(a.ko) && aligned16(a.vo) &&
                     row_bytes % 16 == 0 && a.k0 % 16 == 0 && a.k1 % 16 == 0 && a.v0 % 16 == 0 &&
                     a.v1 % 16 == 0 && a.ko0 % 16 == 0 && a.ko1 % 16 == 0 && a.vo0 % 16 == 0 &&
                     a.vo1 % 16 == 0;
    const dim3 grid(grid_x(cap, kGatherWarps), static_cast<unsigned>(hkv));
    cudaStream_t st = cu_stream();
    if (vec) {
        a.row_units = row_bytes / 16;
        gather_rows<uint4><<<grid, kGatherWarps * 32, 0, st>>>(a);
    } else if (es == 4) {
        a.row_units = d;
        gather_rows<uint32_t><<<grid, kGatherWarps * 32, 0, st>>>(a);
    } else {
        a.row_units = d;
        gather_rows<uint16_t><<<grid, kGatherWarps * 32, 0, st>>>(a);
    }
    return launch_status("kv_gather kernel");
}

}  // namespace tca::cuda
