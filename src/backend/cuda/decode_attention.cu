// cuda::decode_attention (tca-method M7): attention over the ragged compacted KV cache, split-K
// flash-decoding in f32 (docs/numerics.md: compared with naive float32 loops).
//
// Work item = one CTA per (chunk of slots, tile of R query rows, KV head). The rows of a KV head
// are its G query heads x n_q queries (row r: query head h * G + r % G, query r / G); with
// n_q = 1 one tile holds all G rows, so every K/V row is read once. Inside a CTA (4 warps)
// a "group" of LPR lanes owns one slot row at a time, each lane 8 consecutive elements (one
// 16-byte load for f16/bf16); a group walks T = 4 consecutive slots per step (8 x 16-byte K
// and V loads in flight per lane), strided over the groups of the CTA so a warp reads a
// contiguous span. Scores are reduced across the group by shuffles, softmax is online in the
// log2 domain (q pre-scaled by scale * log2(e)). Groups of a warp merge by shuffles, warps
// through shared memory (fixed order: deterministic). The chunks of a head split n_slots[h]
// (read on the device) evenly; a second kernel merges the chunks' (max, sum, acc[d]).
//
// Query i sees slot s iff s < n_slots[h] and slot_pos[h, s] <= q_pos0 + i. No visible slot:
// output exactly 0 (as the reference).
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
constexpr int kMinSlotsPerChunk = 64;
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

template <int LPR, int R, Kv T>
__global__ void __launch_bounds__(kThreads) decode_partial_kernel(const DecodeArgs a) {
    constexpr int kGroupsPerWarp = 32 / LPR;
    constexpr int kGroups = kWarps * kGroupsPerWarp;
    constexpr int kStep = kGroups * kSlotsPerStep;  // slots per CTA step
    __shared__ float sm_acc[kWarps][R][256];
    __shared__ float sm_m[kWarps][R], sm_l[kWarps][R];

    const int h = blockIdx.z, tile = blockIdx.y, c = blockIdx.x;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gw = lane / LPR;  // group within the warp
    const int sub = lane % LPR; // 8-element chunk of the row this lane owns
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

    const char* kbase = static_cast<const char*>(a.k);
    const char* vbase = static_cast<const char*>(a.v);
    const size_t es = T == Kv::kF32 ? 4 : 2;
    const int32_t* spos = a.slot_pos + static_cast<int64_t>(h) * a.sp_s0;
    const void* khead = kbase + static_cast<int64_t>(h) * a.k_s0 * static_cast<int64_t>(es);
    const void* vhead = vbase + static_cast<int64_t>(h) * a.v_s0 * static_cast<int64_t>(es);

    // Warp-uniform loop (shuffles below need every lane of the warp).
    for (int wbase = s0 + warp * kGroupsPerWarp * kSlotsPerStep; wbase < s1; wbase += kStep) {
        const int base = wbase + gw * kSlotsPerStep;
        Chunk8<T> kc[kSlotsPerStep], vc[kSlotsPerStep];
        bool in[kSlotsPerStep];
        int pos[kSlotsPerStep];
#pragma unroll
        for (int t = 0; t < kSlotsPerStep; ++t) {
            const int s = base + t;
            in[t] = s < s1;
            pos[t] = in[t] ? spos[static_cast<int64_t>(s) * a.sp_s1] : 0;
            if (in[t] && act) {
                kvc::load_chunk<T>(khead, static_cast<int64_t>(s) * a.k_s1 + sub * 8, a.vec_k, kc[t]);
                kvc::load_chunk<T>(vhead, static_cast<int64_t>(s) * a.v_s1 + sub * 8, a.vec_v, vc[t]);
            } else {
#pragma unroll
                for (int x = 0; x < Chunk8<T>::kVecs; ++x) {
                    kc[t].v[x] = make_uint4(0, 0, 0, 0);
                    vc[t].v[x] = make_uint4(0, 0, 0, 0);
                }
            }
        }
        float sc[R][kSlotsPerStep];
#pragma unroll
        for (int t = 0; t < kSlotsPerStep; ++t) {
            float kf[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) kf[e] = kvc::chunk_elem<T>(kc[t], e);
#pragma unroll
            for (int r = 0; r < R; ++r) {
                float dot = 0.0f;
#pragma unroll
                for (int e = 0; e < 8; ++e) dot = fmaf(q[r][e], kf[e], dot);
#pragma unroll
                for (int o = LPR / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
                sc[r][t] = (in[t] && static_cast<int64_t>(pos[t]) <= qlim[r]) ? dot : kNegInf;
            }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            float mt = sc[r][0];
#pragma unroll
            for (int t = 1; t < kSlotsPerStep; ++t) mt = fmaxf(mt, sc[r][t]);
            const float mn = fmaxf(m[r], mt);
            if (mn == kNegInf) continue;
            const float alpha = exp2f(m[r] - mn);  // 0 when m was -inf
            l[r] *= alpha;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r][e] *= alpha;
#pragma unroll
            for (int t = 0; t < kSlotsPerStep; ++t) {
                // Masked slots add nothing, not even 0 * V: a masked row may hold NaN (a
                // future or poisoned slot) and 0 * NaN would leak it into the output.
                if (sc[r][t] == kNegInf) continue;
                const float p = exp2f(sc[r][t] - mn);
                l[r] += p;
#pragma unroll
                for (int e = 0; e < 8; ++e) acc[r][e] = fmaf(p, kvc::chunk_elem<T>(vc[t], e), acc[r][e]);
            }
            m[r] = mn;
        }
    }

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
    if (gw == 0) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            if (act) {
#pragma unroll
                for (int e = 0; e < 8; ++e) sm_acc[warp][r][sub * 8 + e] = acc[r][e];
            }
            if (lane == 0) {
                sm_m[warp][r] = m[r];
                sm_l[warp][r] = l[r];
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
        for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[w][r]);
        float ls = 0.0f, as = 0.0f;
        if (mx != kNegInf) {
#pragma unroll
            for (int w = 0; w < kWarps; ++w) {
                const float f = exp2f(sm_m[w][r] - mx);
                ls += sm_l[w][r] * f;
                as += sm_acc[w][r][e] * f;
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

// One CTA per (row, KV head): merges the n_chunks partials of the row.
__global__ void __launch_bounds__(128) decode_combine_kernel(const DecodeArgs a) {
    const int gr = blockIdx.x, h = blockIdx.y;
    const int64_t p0 = (static_cast<int64_t>(h) * a.rows + gr) * a.n_chunks;
    const float* ml = a.part_ml + p0 * 2;
    float mx = kNegInf;
    for (int c = 0; c < a.n_chunks; ++c) mx = fmaxf(mx, ml[2 * c]);
    float ls = 0.0f;
    if (mx != kNegInf) {
        for (int c = 0; c < a.n_chunks; ++c) {
            const float mc = ml[2 * c];
            if (mc != kNegInf) ls += ml[2 * c + 1] * exp2f(mc - mx);
        }
    }
    const int qh = h * a.g + gr % a.g, qi = gr / a.g;
    float* o = a.out + qh * a.o_s0 + qi * a.o_s1;
    for (int e = threadIdx.x; e < a.d; e += blockDim.x) {
        float as = 0.0f;
        if (mx != kNegInf) {
            for (int c = 0; c < a.n_chunks; ++c) {
                const float mc = ml[2 * c];
                if (mc != kNegInf) as += a.part_acc[(p0 + c) * a.d + e] * exp2f(mc - mx);
            }
        }
        o[e] = mx == kNegInf ? 0.0f : as / ls;
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

// Picks the number of chunks (one full wave of resident CTAs: the chunks split the visible
// n_slots evenly on the device, so every CTA of the wave has the same work), sets up the
// partials and launches the partial kernel, then the combine kernel when split.
template <int LPR, int R, Kv T>
Status launch_partial(DecodeArgs a, dim3 grid) {
    static const int blocks_per_sm = [] {
        int n = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_partial_kernel<LPR, R, T>, kThreads, 0) !=
                cudaSuccess || n < 1) {
            (void)cudaGetLastError();
            return 2;
        }
        return n;
    }();
    const int64_t hkv = grid.z, n_tiles = grid.y, rows = a.rows, d = a.d;
    const int64_t target = static_cast<int64_t>(sm_count_cached()) * blocks_per_sm;
    int64_t n_chunks = (target + hkv * n_tiles - 1) / (hkv * n_tiles);
    n_chunks = std::min<int64_t>(n_chunks, (a.cap + kMinSlotsPerChunk - 1) / kMinSlotsPerChunk);
    n_chunks = std::max<int64_t>(1, std::min<int64_t>(n_chunks, 1024));
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
    decode_partial_kernel<LPR, R, T><<<grid, kThreads, 0, cu_stream()>>>(a);
    TCA_RETURN_IF_ERROR(launch_status("decode_attention partial kernel"));
    if (n_chunks > 1) {
        decode_combine_kernel<<<dim3(static_cast<unsigned>(rows), static_cast<unsigned>(hkv)), 128, 0,
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
