// cuda::decode_attention (tca-method M7): attention over the ragged compacted KV cache, split-K
// flash-decoding in f32 (docs/numerics.md: compared with naive float32 loops).
//
// Design (memory-bound: K + V are read once, the goal is >= 80% of copy bandwidth).
// Work item = one CTA (4 warps) per (chunk of slots, tile of R query rows, KV head). The rows
// of a KV head are its G query heads x n_q queries (row r: query head h * G + r % G, query
// r / G); with n_q = 1 one tile holds all G rows, so every K/V row is read once.
//  - The chunk count fills exactly one wave of resident CTAs (floor, not ceil: no tail wave);
//    the chunks split the visible n_slots[h] (read on the device) evenly, every warp of a CTA
//    owns a contiguous quarter of its chunk.
//  - Memory in flight: each warp streams its slots through a private kStages-deep cp.async
//    ring in shared memory (16-byte cp.async.cg per lane; slot positions by 4-byte cp.async).
//    Each lane copies exactly the bytes it later reads, so the ring needs no barrier at all:
//    cp.async.wait_group on the lane's own groups orders it. With kStages = 3 a warp keeps two
//    steps (2 x 4 KB of bf16 K/V for d = 128) in flight while it computes the third; with
//    4 CTAs/SM that is ~128 KB per SM in flight, well above the ~30 KB Little's law asks.
//    Unaligned K/V (no 16-byte vectors) falls back to plain loads stored into the same ring.
//  - Compute per step: a group of LPR lanes owns one slot row (8 elements per lane), T = 4
//    slots per group per step; the scores of all R rows come from one K read, are reduced by
//    shuffles, the running max is rescaled once per step; P stays in registers; exp2 is the
//    single ex2.approx.ftz instruction (q pre-scaled by scale * log2(e)).
//  - Groups of a warp merge by shuffles, warps through shared memory (the ring reused; fixed
//    order: deterministic); a second kernel merges the chunks' (max, sum, acc[d]) with the
//    chunk weights computed once in shared memory and several chunks summed per element in
//    parallel.
// Predicted: bound by HBM, ~3.3-3.6 TB/s for bf16 d = 128 at 32K-128K slots (about 40 us at
// 32K, 150-160 us at 128K for 8 KV heads), instruction issue about half of that time.
//
// Query i sees slot s iff s < n_slots[h] and slot_pos[h, s] <= q_pos0 + i; masked slots add
// nothing (not even 0 * NaN). No visible slot: output exactly 0 (as the reference).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_runtime.h"
#include "backend/cuda/kv_cache_common.cuh"

namespace tca::cuda {
namespace {

using kvc::Chunk8;
using kvc::Kv;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kSlotsPerStep = 4;  // T: slots per group per step
constexpr int kStages = 3;        // cp.async ring depth per warp
constexpr int kMinSlotsPerChunk = 128;
constexpr int kCombineThreads = 512;
constexpr int kMaxChunks = 1024;
constexpr float kNegInf = -INFINITY;

struct DecodeArgs {
    const float* q;
    int64_t q_s0, q_s1;
    const void* k;
    int64_t k_s0, k_s1;
    const void* v;
    int64_t v_s0, v_s1;
    const int32_t* slot_pos;
    int64_t sp_s0, sp_s1;
    const int32_t* n_slots;
    int64_t ns_s0;
    float* out;
    int64_t o_s0, o_s1;
    float* part_acc;  // [hkv][rows][n_chunks][d]
    float* part_ml;   // [hkv][rows][n_chunks][2]: max (log2 domain), sum
    int64_t q_pos0;
    float qscale;  // scale * log2(e)
    int d, g, rows, cap, n_chunks;
    bool vec_k, vec_v;
};

__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// 2^x in one instruction (x <= 0 here; -inf -> 0).
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// Per-warp ring layout, in uint4 units: [stage][t][K, V][vec][lane], then the positions as
// int32 [stage][t][lane].
template <Kv T>
struct Ring {
    static constexpr int kVecs = Chunk8<T>::kVecs;
    static constexpr int kKvPerStage = kSlotsPerStep * 2 * kVecs * 32;  // uint4
    static constexpr int kKvBytes = kStages * kKvPerStage * 16;
    static constexpr int kPosBytes = kStages * kSlotsPerStep * 32 * 4;
    static constexpr int kWarpBytes = kKvBytes + kPosBytes;
    static constexpr int kBytes = kWarps * kWarpBytes;
};

template <int R>
constexpr int merge_bytes() {
    return kWarps * R * (256 + 2) * 4;
}

template <int R, Kv T>
constexpr int smem_bytes() {
    return std::max(Ring<T>::kBytes, merge_bytes<R>());
}

template <int R>
constexpr int min_blocks() {
    return R <= 4 ? 4 : 2;
}

template <int LPR, int R, Kv T>
__global__ void __launch_bounds__(kThreads, min_blocks<R>()) decode_partial_kernel(const DecodeArgs a) {
    constexpr int kT = kSlotsPerStep;
    constexpr int kGroupsPerWarp = 32 / LPR;
    constexpr int kWarpStep = kGroupsPerWarp * kT;  // slots per warp step
    constexpr int kVecs = Chunk8<T>::kVecs;
    using RingT = Ring<T>;
    extern __shared__ uint4 smem_raw[];

    const int h = blockIdx.z, tile = blockIdx.y, c = blockIdx.x;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gw = lane / LPR;   // group within the warp
    const int sub = lane % LPR;  // 8-element chunk of the row this lane owns
    const int d = a.d;
    const bool act = sub < d / 8;

    int ns = a.n_slots[static_cast<int64_t>(h) * a.ns_s0];
    ns = min(max(ns, 0), a.cap);
    const int nc_eff = min(a.n_chunks, max(1, (ns + kMinSlotsPerChunk - 1) / kMinSlotsPerChunk));
    int s0 = ns, s1 = ns;
    if (c < nc_eff) {
        s0 = static_cast<int>(static_cast<int64_t>(ns) * c / nc_eff);
        s1 = static_cast<int>(static_cast<int64_t>(ns) * (c + 1) / nc_eff);
    }
    // This warp's contiguous part of the chunk.
    const int wb = s0 + static_cast<int>(static_cast<int64_t>(s1 - s0) * warp / kWarps);
    const int we = s0 + static_cast<int>(static_cast<int64_t>(s1 - s0) * (warp + 1) / kWarps);
    const int nsteps = (we - wb + kWarpStep - 1) / kWarpStep;  // warp-uniform

    // Query rows of this tile, pre-scaled.
    float q[R][8];
    int64_t qlim[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int gr = tile * R + r;
        const bool valid = gr < a.rows;
        const int qh = h * a.g + (valid ? gr % a.g : 0), qi = valid ? gr / a.g : 0;
        qlim[r] = valid ? a.q_pos0 + qi : -1;  // positions are >= 0: -1 sees nothing
        const float* qp = a.q + qh * a.q_s0 + qi * a.q_s1 + sub * 8;
#pragma unroll
        for (int e = 0; e < 8; ++e) q[r][e] = (valid && act) ? qp[e] * a.qscale : 0.0f;
    }

    float m[R], l[R], acc[R][8];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        m[r] = kNegInf;
        l[r] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[r][e] = 0.0f;
    }

    const size_t es = T == Kv::kF32 ? 4 : 2;
    const int32_t* spos = a.slot_pos + static_cast<int64_t>(h) * a.sp_s0;
    const char* khead = static_cast<const char*>(a.k) + static_cast<int64_t>(h) * a.k_s0 * static_cast<int64_t>(es);
    const char* vhead = static_cast<const char*>(a.v) + static_cast<int64_t>(h) * a.v_s0 * static_cast<int64_t>(es);
    const int64_t k_row = a.k_s1 * static_cast<int64_t>(es), v_row = a.v_s1 * static_cast<int64_t>(es);
    const int64_t lane_off = static_cast<int64_t>(sub) * 8 * static_cast<int64_t>(es);

    char* wring = reinterpret_cast<char*>(smem_raw) + warp * RingT::kWarpBytes;
    uint4* kv_ring = reinterpret_cast<uint4*>(wring);
    int32_t* pos_ring = reinterpret_cast<int32_t*>(wring + RingT::kKvBytes);
    const auto kv_at = [&](int st, int t, int which, int x) -> uint4* {
        return kv_ring + ((((st * kT + t) * 2 + which) * kVecs + x) * 32 + lane);
    };
    const auto pos_at = [&](int st, int t) -> int32_t* { return pos_ring + ((st * kT + t) * 32 + lane); };

    // Copies step j of this warp into ring stage j % kStages (this lane's bytes only) and
    // commits one cp.async group (empty past the end).
    const auto issue = [&](int j) {
        const int st = j % kStages;
        const int base = wb + j * kWarpStep + gw * kT;
#pragma unroll
        for (int t = 0; t < kT; ++t) {
            const int s = base + t;
            if (s < we) {
                cp_async4(pos_at(st, t), spos + static_cast<int64_t>(s) * a.sp_s1);
                if (act) {
                    const char* kp = khead + static_cast<int64_t>(s) * k_row + lane_off;
                    const char* vp = vhead + static_cast<int64_t>(s) * v_row + lane_off;
                    if (a.vec_k) {
#pragma unroll
                        for (int x = 0; x < kVecs; ++x) cp_async16(kv_at(st, t, 0, x), kp + 16 * x);
                    } else {
                        Chunk8<T> ck;
                        kvc::load_chunk<T>(kp, 0, false, ck);
#pragma unroll
                        for (int x = 0; x < kVecs; ++x) *kv_at(st, t, 0, x) = ck.v[x];
                    }
                    if (a.vec_v) {
#pragma unroll
                        for (int x = 0; x < kVecs; ++x) cp_async16(kv_at(st, t, 1, x), vp + 16 * x);
                    } else {
                        Chunk8<T> cv;
                        kvc::load_chunk<T>(vp, 0, false, cv);
#pragma unroll
                        for (int x = 0; x < kVecs; ++x) *kv_at(st, t, 1, x) = cv.v[x];
                    }
                }
            }
        }
        cp_async_commit();
    };

#pragma unroll
    for (int j = 0; j < kStages - 1; ++j) issue(j);

    // Warp-uniform loop (shuffles below need every lane of the warp).
    for (int j = 0; j < nsteps; ++j) {
        // Stage (j - 1) % kStages was read by this lane in the previous step (program order).
        issue(j + kStages - 1);
        cp_async_wait<kStages - 1>();  // this lane's copies of step j have landed
        const int st = j % kStages;
        const int base = wb + j * kWarpStep + gw * kT;

        bool in[kT];
        int pos[kT];
#pragma unroll
        for (int t = 0; t < kT; ++t) {
            in[t] = base + t < we;
            pos[t] = in[t] ? *pos_at(st, t) : 0;
        }
        float sc[R][kT];
#pragma unroll
        for (int t = 0; t < kT; ++t) {
            Chunk8<T> kc;
#pragma unroll
            for (int x = 0; x < kVecs; ++x) kc.v[x] = *kv_at(st, t, 0, x);
            float kf[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) kf[e] = kvc::chunk_elem<T>(kc, e);
#pragma unroll
            for (int r = 0; r < R; ++r) {
                float dot = 0.0f;
#pragma unroll
                for (int e = 0; e < 8; ++e) dot = fmaf(q[r][e], kf[e], dot);
                // Lanes past the row hold stale ring bytes (maybe NaN): they add nothing.
                dot = act ? dot : 0.0f;
#pragma unroll
                for (int o = LPR / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
                // A select, not a product: a masked slot's NaN score never leaks.
                sc[r][t] = (in[t] && static_cast<int64_t>(pos[t]) <= qlim[r]) ? dot : kNegInf;
            }
        }
        // Running max: one rescale per step.
#pragma unroll
        for (int r = 0; r < R; ++r) {
            float mt = sc[r][0];
#pragma unroll
            for (int t = 1; t < kT; ++t) mt = fmaxf(mt, sc[r][t]);
            const float mn = fmaxf(m[r], mt);
            if (mn != kNegInf) {
                const float alpha = fast_exp2(m[r] - mn);  // 0 when m was -inf
                l[r] *= alpha;
#pragma unroll
                for (int e = 0; e < 8; ++e) acc[r][e] *= alpha;
                m[r] = mn;
            }
        }
#pragma unroll
        for (int t = 0; t < kT; ++t) {
            Chunk8<T> vc;
#pragma unroll
            for (int x = 0; x < kVecs; ++x) vc.v[x] = *kv_at(st, t, 1, x);
            float vf[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) vf[e] = kvc::chunk_elem<T>(vc, e);
#pragma unroll
            for (int r = 0; r < R; ++r) {
                // Masked slots add nothing, not even 0 * V: a masked row may hold NaN (a
                // future or poisoned slot) and 0 * NaN would leak it into the output.
                if (sc[r][t] == kNegInf) continue;
                const float p = fast_exp2(sc[r][t] - m[r]);
                l[r] += p;
#pragma unroll
                for (int e = 0; e < 8; ++e) acc[r][e] = fmaf(p, vf[e], acc[r][e]);
            }
        }
    }
    cp_async_wait_all();

    // Merge the groups of the warp (lanes with the same `sub` hold the same elements).
#pragma unroll
    for (int o = LPR; o < 32; o <<= 1) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float mo = __shfl_xor_sync(0xffffffffu, m[r], o);
            const float lo = __shfl_xor_sync(0xffffffffu, l[r], o);
            float ao[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) ao[e] = __shfl_xor_sync(0xffffffffu, acc[r][e], o);
            const float mn = fmaxf(m[r], mo);
            if (mn == kNegInf) continue;
            const float fa = exp2f(m[r] - mn), fb = exp2f(mo - mn);
            l[r] = l[r] * fa + lo * fb;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r][e] = acc[r][e] * fa + ao[e] * fb;
            m[r] = mn;
        }
    }

    // The rings are done (every warp): reuse the shared memory for the warp merge.
    __syncthreads();
    float* sm_acc = reinterpret_cast<float*>(smem_raw);           // [kWarps][R][256]
    float* sm_m = sm_acc + kWarps * R * 256;                        // [kWarps][R]
    float* sm_l = sm_m + kWarps * R;                                // [kWarps][R]
    if (gw == 0) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            if (act) {
#pragma unroll
                for (int e = 0; e < 8; ++e) sm_acc[(warp * R + r) * 256 + sub * 8 + e] = acc[r][e];
            }
            if (lane == 0) {
                sm_m[warp * R + r] = m[r];
                sm_l[warp * R + r] = l[r];
            }
        }
    }
    __syncthreads();

    // Merge the warps (fixed order) and write this chunk's partial, or the output when the
    // head is not split.
    for (int idx = threadIdx.x; idx < R * d; idx += kThreads) {
        const int r = idx / d, e = idx % d;
        const int gr = tile * R + r;
        if (gr >= a.rows) continue;
        float mx = kNegInf;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[w * R + r]);
        float ls = 0.0f, as = 0.0f;
        if (mx != kNegInf) {
#pragma unroll
            for (int w = 0; w < kWarps; ++w) {
                const float mw = sm_m[w * R + r];
                if (mw == kNegInf) continue;  // a warp with no visible slot adds nothing
                const float f = exp2f(mw - mx);
                ls += sm_l[w * R + r] * f;
                as += sm_acc[(w * R + r) * 256 + e] * f;
            }
        }
        if (a.n_chunks == 1) {
            const int qh = h * a.g + gr % a.g, qi = gr / a.g;
            a.out[qh * a.o_s0 + qi * a.o_s1 + e] = mx == kNegInf ? 0.0f : as / ls;
        } else {
            const int64_t pi = (static_cast<int64_t>(h) * a.rows + gr) * a.n_chunks + c;
            a.part_acc[pi * d + e] = as;
            if (e == 0) {
                a.part_ml[pi * 2] = mx;
                a.part_ml[pi * 2 + 1] = ls;
            }
        }
    }
}

// One CTA per (row, KV head): merges the n_chunks partials of the row. The chunk weights are
// computed once in shared memory; kCombineThreads / d thread sets each sum a strided subset of
// the chunks (independent loads in flight), then merge in a fixed order.
__global__ void __launch_bounds__(kCombineThreads) decode_combine_kernel(const DecodeArgs a) {
    __shared__ float w_sm[kMaxChunks];
    __shared__ float m_sm[kMaxChunks];
    __shared__ float red[kCombineThreads];
    __shared__ float s_mx, s_ls;
    const int gr = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    const int nc = a.n_chunks, d = a.d;
    const int64_t p0 = (static_cast<int64_t>(h) * a.rows + gr) * nc;
    const float* ml = a.part_ml + p0 * 2;
    for (int c = tid; c < nc; c += kCombineThreads) {
        m_sm[c] = ml[2 * c];
        w_sm[c] = ml[2 * c + 1];
    }
    __syncthreads();
    if (tid < 32) {
        float mx = kNegInf;
        for (int c = tid; c < nc; c += 32) mx = fmaxf(mx, m_sm[c]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        float ls = 0.0f;
        if (mx != kNegInf) {
            for (int c = tid; c < nc; c += 32) {
                if (m_sm[c] != kNegInf) ls += w_sm[c] * exp2f(m_sm[c] - mx);
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ls += __shfl_xor_sync(0xffffffffu, ls, o);
        if (tid == 0) {
            s_mx = mx;
            s_ls = ls;
        }
    }
    __syncthreads();
    const float mx = s_mx, ls = s_ls;
    for (int c = tid; c < nc; c += kCombineThreads) {
        w_sm[c] = (mx == kNegInf || m_sm[c] == kNegInf) ? 0.0f : exp2f(m_sm[c] - mx);
    }
    __syncthreads();
    const int nparts = kCombineThreads / d;  // d <= 256: at least 2
    const int part = tid / d, e = tid % d;
    float as = 0.0f;
    if (part < nparts && mx != kNegInf) {
        const float* pa = a.part_acc + p0 * d + e;
#pragma unroll 4
        for (int c = part; c < nc; c += nparts) {
            const float x = pa[static_cast<int64_t>(c) * d];
            if (m_sm[c] != kNegInf) as = fmaf(x, w_sm[c], as);
        }
    }
    red[tid] = as;
    __syncthreads();
    if (tid < d) {
        float s = 0.0f;
        for (int p = 0; p < nparts; ++p) s += red[p * d + tid];
        const int qh = h * a.g + gr % a.g, qi = gr / a.g;
        a.out[qh * a.o_s0 + qi * a.o_s1 + tid] = mx == kNegInf ? 0.0f : s / ls;
    }
}

int sm_count_cached() {
    static const int n = [] {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || v < 1) {
            (void)cudaGetLastError();
            return 132;
        }
        return v;
    }();
    return n;
}

// Picks the number of chunks (as many as fill one full wave of resident CTAs, rounded down so
// no CTA waits for a second wave; the chunks split the visible n_slots evenly on the device, so
// every CTA of the wave has the same work), sets up the partials and launches the partial
// kernel, then the combine kernel when split.
template <int LPR, int R, Kv T>
Status launch_partial(DecodeArgs a, dim3 grid) {
    constexpr int kSmem = smem_bytes<R, T>();
    auto kernel = decode_partial_kernel<LPR, R, T>;
    static PerDevice<cudaError_t> attr;  // the attribute is per device
    const cudaError_t attr_err = attr.get(
        [&] { return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem); });
    TCA_RETURN_IF_ERROR(cuda_status(attr_err, "cudaFuncSetAttribute(decode_attention smem)"));
    static const int blocks_per_sm = [&] {
        int n = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kThreads, kSmem) != cudaSuccess || n < 1) {
            (void)cudaGetLastError();
            return 2;
        }
        return n;
    }();
    const int64_t hkv = grid.z, n_tiles = grid.y, rows = a.rows, d = a.d;
    const int64_t target = static_cast<int64_t>(sm_count_cached()) * blocks_per_sm;
    int64_t n_chunks = target / (hkv * n_tiles);
    n_chunks = std::min<int64_t>(n_chunks, (a.cap + kMinSlotsPerChunk - 1) / kMinSlotsPerChunk);
    n_chunks = std::max<int64_t>(1, std::min<int64_t>(n_chunks, kMaxChunks));
    grid.x = static_cast<unsigned>(n_chunks);
    a.n_chunks = static_cast<int>(n_chunks);
    a.part_acc = nullptr;
    a.part_ml = nullptr;
    if (n_chunks > 1) {
        const size_t n_part = static_cast<size_t>(hkv * rows * n_chunks);
        TCA_ASSIGN_OR_RETURN(void* buf, scratch(n_part * static_cast<size_t>(d + 2) * sizeof(float), 0));
        a.part_acc = static_cast<float*>(buf);
        a.part_ml = a.part_acc + n_part * static_cast<size_t>(d);
    }
    kernel<<<grid, kThreads, kSmem, cu_stream()>>>(a);
    TCA_RETURN_IF_ERROR(launch_status("decode_attention partial kernel"));
    if (n_chunks > 1) {
        decode_combine_kernel<<<dim3(static_cast<unsigned>(rows), static_cast<unsigned>(hkv)), kCombineThreads, 0,
                                cu_stream()>>>(a);
        TCA_RETURN_IF_ERROR(launch_status("decode_attention combine kernel"));
    }
    return Status();
}
template <int LPR, int R>
Status dispatch_dtype(const DecodeArgs& a, dim3 grid, DType dt) {
    switch (dt) {
        case DType::kF32: return launch_partial<LPR, R, Kv::kF32>(a, grid);
        case DType::kF16: return launch_partial<LPR, R, Kv::kF16>(a, grid);
        case DType::kBF16: return launch_partial<LPR, R, Kv::kBF16>(a, grid);
        default: return unsupported("decode_attention: K/V dtype %s", dtype_name(dt));
    }
}

template <int LPR>
Status dispatch_rows(const DecodeArgs& a, dim3 grid, int r, DType dt) {
    switch (r) {
        case 1: return dispatch_dtype<LPR, 1>(a, grid, dt);
        case 2: return dispatch_dtype<LPR, 2>(a, grid, dt);
        case 4: return dispatch_dtype<LPR, 4>(a, grid, dt);
        default: return dispatch_dtype<LPR, 8>(a, grid, dt);
    }
}

}  // namespace

Status decode_attention(const DecodeAttentionParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_q = p.q.shape[1], d = p.q.shape[2];
    const int64_t hkv = p.k_cache.shape[0], cap = p.k_cache.shape[1], g = hq / hkv;
    if (n_q == 0) return Status();
    const int64_t rows = g * n_q;
    if (rows > INT32_MAX / 2 || cap > INT32_MAX || hkv > 65535) {
        return unsupported("decode_attention: shape too large for the cuda kernel");
    }
    const size_t es = dtype_size(p.k_cache.dtype);

    // Rows per tile: all rows of the head when they fit (K/V read once), else tiles of 8.
    int r = 8;
    if (rows <= 1) r = 1;
    else if (rows <= 2) r = 2;
    else if (rows <= 4) r = 4;
    const int64_t n_tiles = (rows + r - 1) / r;
    if (n_tiles > 65535) return unsupported("decode_attention: %lld query rows per KV head", static_cast<long long>(rows));

    DecodeArgs a{};
    a.q = p.q.ptr<float>();
    a.q_s0 = p.q.stride[0];
    a.q_s1 = p.q.stride[1];
    a.k = p.k_cache.data;
    a.k_s0 = p.k_cache.stride[0];
    a.k_s1 = p.k_cache.stride[1];
    a.v = p.v_cache.data;
    a.v_s0 = p.v_cache.stride[0];
    a.v_s1 = p.v_cache.stride[1];
    a.slot_pos = p.slot_pos.ptr<int32_t>();
    a.sp_s0 = p.slot_pos.stride[0];
    a.sp_s1 = p.slot_pos.stride[1];
    a.n_slots = p.n_slots.ptr<int32_t>();
    a.ns_s0 = p.n_slots.stride[0];
    a.out = p.out.ptr<float>();
    a.o_s0 = p.out.stride[0];
    a.o_s1 = p.out.stride[1];
    a.q_pos0 = p.q_pos0;
    a.qscale = effective_scale(p.scale, d) * 1.4426950408889634f;
    a.d = static_cast<int>(d);
    a.g = static_cast<int>(g);
    a.rows = static_cast<int>(rows);
    a.cap = static_cast<int>(cap);
    a.vec_k = kvc::aligned16(p.k_cache.data, p.k_cache.stride[0], p.k_cache.stride[1], es);
    a.vec_v = kvc::aligned16(p.v_cache.data, p.v_cache.stride[0], p.v_cache.stride[1], es);
    const dim3 grid(1, static_cast<unsigned>(n_tiles), static_cast<unsigned>(hkv));  // x: launch_partial
    const int64_t nch = d / 8;  // 8-element chunks per row: 1..32
    const auto launch = [&]() -> Status {
        if (nch <= 4) return dispatch_rows<4>(a, grid, r, p.k_cache.dtype);
        if (nch <= 8) return dispatch_rows<8>(a, grid, r, p.k_cache.dtype);
        if (nch <= 16) return dispatch_rows<16>(a, grid, r, p.k_cache.dtype);
        return dispatch_rows<32>(a, grid, r, p.k_cache.dtype);
    };
    return launch();
}

}  // namespace tca::cuda
