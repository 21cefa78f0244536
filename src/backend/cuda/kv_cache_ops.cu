// Cache-editing ops of the compacted KV cache on CUDA (tca-method M7): kv_append,
// kv_compact and block_compact. Same semantics as the CPU backend (src/backend/cpu/kv_ops.cpp,
// kv_compact.cpp, kv_append.cpp) and the reference; copies are bitwise.
//
// In-place moves: for each head the new slot order is a list of source slots src(k),
// k = 0..N-1, strictly ascending with src(k) >= dst(k) = n_global + k (kept rows of the region,
// then the rows after it). Rows with src(k) == dst(k) are not copied.
//
// Serial move (block_compact; kv_compact under TCA_CUDA_KVC_SERIAL=1 / set_kv_compact_serial):
// one CTA per head moves the list in chunks of C rows: every thread loads its part of the
// chunk into registers, __syncthreads, then stores. A chunk's stores land at or below
// dst(last) <= src(last) < every later source, and every earlier source was loaded before an
// earlier barrier, so no load sees a store of this op and no store hits an unread row: race
// free without a scratch copy of the cache. Counters are updated after a final barrier. Only
// n_kv_heads CTAs, each ~N/C chunks in series: 8 heads x ~5000 rows (8K prompt, d 128, bf16)
// is 8 CTAs of ~80 chunks on 132 SMs.
//
// Parallel kv_compact (the default): three launches on a (row-chunk, head) grid, ordered by
// the stream. (1) gather: each CTA copies its chunks of the list (K, V rows and slot_pos) to
// scratch slot 0 at row k of its head; (2) scatter: scratch row k to slot dst(k); (3) one
// thread per head updates n_slots and n_global. No CTA reads what another CTA of the same
// launch writes, so any grid order is race free (even for lists that break the ascending
// rule). N is only known on the device: scratch holds n_kv_heads x cap rows (bf16, d 128: 516
// bytes a row, 34 MB for 8 heads x 8K slots), the grid covers min(cap / C, ~2048 / n_kv_heads)
// chunks per head and strides over the rest; CTAs past N exit. Out of device memory for the
// scratch, kv_compact falls back to the serial move.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_runtime.h"
#include "backend/cuda/kv_cache_common.cuh"

namespace tca::cuda {
namespace {

using kvc::Chunk8;
using kvc::Kv;

constexpr int kMoveThreads = 256;
constexpr int kItemsPerThread = 4;
// Parallel kv_compact: about this many CTAs in all (per head: this / n_kv_heads), enough to
// fill an H100 (132 SMs x 8 CTAs of 256 threads) while CTAs past a short list exit at once.
constexpr int64_t kCompactTargetCtas = 2048;

// Both caches of one head, as bytes, plus slot_pos.
struct HeadRows {
    char* k;
    char* v;
    int64_t k_row, v_row;  // row strides in bytes
    int32_t* pos;
    int64_t pos_s;
    int row_bytes;
};

// Source slot of list entry k: the first nk entries are g0 + list[i * ls], then tail0, tail0 + 1...
struct SrcList {
    const int32_t* list;
    int64_t ls;
    int nk;
    int g0;
    int tail0;
    __device__ __forceinline__ int operator()(int k) const {
        return k < nk ? g0 + list[static_cast<int64_t>(k) * ls] : tail0 + (k - nk);
    }
};

// Moves entries k in [0, n) from slot src(k) to slot g0 + k (see the file comment). Called by
// every thread of the CTA.
template <class U>
__device__ void move_rows(const HeadRows& hr, const SrcList& src, int n) {
    const int nunit = hr.row_bytes / static_cast<int>(sizeof(U));
    const int rows_per_chunk = max(1, kMoveThreads * kItemsPerThread / nunit);
    for (int k0 = 0; k0 < n; k0 += rows_per_chunk) {
        U kb[kItemsPerThread], vb[kItemsPerThread];
        int32_t pb[kItemsPerThread];
        int sb[kItemsPerThread];
#pragma unroll
        for (int j = 0; j < kItemsPerThread; ++j) {
            kb[j] = U{};
            vb[j] = U{};
            pb[j] = 0;
            const int item = threadIdx.x + j * kMoveThreads;
            const int row = item / nunit, unit = item % nunit, k = k0 + row;
            sb[j] = -1;
            if (row < rows_per_chunk && k < n) {
                const int s = src(k);
                sb[j] = s;
                if (s != src.g0 + k) {
                    kb[j] = reinterpret_cast<const U*>(hr.k + s * hr.k_row)[unit];
                    vb[j] = reinterpret_cast<const U*>(hr.v + s * hr.v_row)[unit];
                    if (unit == 0) pb[j] = hr.pos[s * hr.pos_s];
                }
            }
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < kItemsPerThread; ++j) {
            const int item = threadIdx.x + j * kMoveThreads;
            const int row = item / nunit, unit = item % nunit, k = k0 + row;
            const int dst = src.g0 + k;
            if (sb[j] >= 0 && sb[j] != dst) {
                reinterpret_cast<U*>(hr.k + dst * hr.k_row)[unit] = kb[j];
                reinterpret_cast<U*>(hr.v + dst * hr.v_row)[unit] = vb[j];
                if (unit == 0) hr.pos[dst * hr.pos_s] = pb[j];
            }
        }
    }
}

struct CacheArgs {
    char* k;
    char* v;
    int64_t k_s0, k_s1, v_s0, v_s1;  // bytes
    int32_t* slot_pos;
    int64_t sp_s0, sp_s1;
    int32_t* n_global;
    int64_t ng_s;
    int32_t* n_slots;
    int64_t ns_s;
    int cap, d, row_bytes;
};

__device__ __forceinline__ HeadRows head_rows(const CacheArgs& c, int h) {
    HeadRows hr;
    hr.k = c.k + h * c.k_s0;
    hr.v = c.v + h * c.v_s0;
    hr.k_row = c.k_s1;
    hr.v_row = c.v_s1;
    hr.pos = c.slot_pos + h * c.sp_s0;
    hr.pos_s = c.sp_s1;
    hr.row_bytes = c.row_bytes;
    return hr;
}

// ---- kv_compact ----------------------------------------------------------------------------

struct CompactArgs {
    CacheArgs c;
    const int32_t* kept;
    int64_t kept_s0, kept_s1;
    int kept_cap;
    const int32_t* n_kept;
    int64_t nk_s;
    const int32_t* region;
    int64_t rg_s;
    // Parallel path only: scratch rows [n_kv_heads, cap] of K and V (row_bytes each) and
    // slot_pos, and the rows each CTA handles per step of its stride loop.
    char* sk;
    char* sv;
    int32_t* spos;
    int rows_per_cta;
};

// The move list of head h and its length n; false when the head is untouched (region < 0) or
// breaks the invariants (the CPU backend asserts them; here such a head is left as it is).
__device__ __forceinline__ bool compact_list(const CompactArgs& a, int h, SrcList& src, int& n, int& ns) {
    const int region = a.region[h * a.rg_s];
    if (region < 0) return false;
    const int g0 = a.c.n_global[h * a.c.ng_s];
    ns = a.c.n_slots[h * a.c.ns_s];
    const int nk = a.n_kept[h * a.nk_s];
    if (g0 < 0 || ns > a.c.cap || g0 + region > ns || nk < 0 || nk > region || nk > a.kept_cap) return false;
    src = SrcList{a.kept + h * a.kept_s0, a.kept_s1, nk, g0, g0 + region};
    n = nk + (ns - g0 - region);
    return true;
}

// The serial move (file comment): one CTA per head.
template <class U>
__global__ void __launch_bounds__(kMoveThreads) kv_compact_kernel(const CompactArgs a) {
    const int h = blockIdx.x;
    SrcList src;
    int n = 0, ns = 0;
    if (!compact_list(a, h, src, n, ns)) return;
    move_rows<U>(head_rows(a.c, h), src, n);
    __syncthreads();
    if (threadIdx.x == 0) {
        a.c.n_slots[h * a.c.ns_s] = src.g0 + n;
        a.c.n_global[h * a.c.ng_s] = src.g0 + src.nk;
    }
}

// Phase 1 (kGather: cache row src(k) -> scratch row k) or 2 (scratch row k -> cache row
// dst(k)) of the parallel move. Grid (chunk CTAs, head); CTA x handles rows
// [k0, k0 + rows_per_cta) for k0 = x * rows_per_cta, stepping by gridDim.x * rows_per_cta.
// Each thread loads all its units of a step before storing them (loads in flight together);
// no barrier is needed since loads and stores of one launch never touch the same memory.
// Both phases skip the same rows: src(k) == dst(k) (already in place) and, as a guard against
// out-of-range kept offsets, sources outside [n_global, n_slots).
template <class U, bool kGather>
__global__ void __launch_bounds__(kMoveThreads) kv_compact_copy_kernel(const CompactArgs a) {
    const int h = blockIdx.y;
    SrcList src;
    int n = 0, ns = 0;
    if (!compact_list(a, h, src, n, ns)) return;
    const int rows = a.rows_per_cta;
    if (static_cast<int64_t>(blockIdx.x) * rows >= n) return;
    const HeadRows hr = head_rows(a.c, h);
    const int nunit = hr.row_bytes / static_cast<int>(sizeof(U));
    const int64_t head_off = static_cast<int64_t>(h) * a.c.cap;
    char* const sk = a.sk + head_off * hr.row_bytes;
    char* const sv = a.sv + head_off * hr.row_bytes;
    int32_t* const spos = a.spos + head_off;
    const int64_t step = static_cast<int64_t>(gridDim.x) * rows;
    for (int64_t k0 = static_cast<int64_t>(blockIdx.x) * rows; k0 < n; k0 += step) {
        U kb[kItemsPerThread], vb[kItemsPerThread];
        int32_t pb[kItemsPerThread];
        int kk[kItemsPerThread], uu[kItemsPerThread];
#pragma unroll
        for (int j = 0; j < kItemsPerThread; ++j) {
            kb[j] = U{};
            vb[j] = U{};
            pb[j] = 0;
            kk[j] = -1;
            const int item = threadIdx.x + j * kMoveThreads;
            const int row = item / nunit, unit = item % nunit;
            const int64_t k = k0 + row;
            if (row >= rows || k >= n) continue;
            const int s = src(static_cast<int>(k));
            const int dst = src.g0 + static_cast<int>(k);
            if (s == dst || s < src.g0 || s >= ns) continue;
            kk[j] = static_cast<int>(k);
            uu[j] = unit;
            if constexpr (kGather) {
                kb[j] = reinterpret_cast<const U*>(hr.k + s * hr.k_row)[unit];
                vb[j] = reinterpret_cast<const U*>(hr.v + s * hr.v_row)[unit];
                if (unit == 0) pb[j] = hr.pos[s * hr.pos_s];
            } else {
                kb[j] = reinterpret_cast<const U*>(sk + k * hr.row_bytes)[unit];
                vb[j] = reinterpret_cast<const U*>(sv + k * hr.row_bytes)[unit];
                if (unit == 0) pb[j] = spos[k];
            }
        }
#pragma unroll
        for (int j = 0; j < kItemsPerThread; ++j) {
            const int k = kk[j];
            if (k < 0) continue;
            const int unit = uu[j];
            if constexpr (kGather) {
                reinterpret_cast<U*>(sk + static_cast<int64_t>(k) * hr.row_bytes)[unit] = kb[j];
                reinterpret_cast<U*>(sv + static_cast<int64_t>(k) * hr.row_bytes)[unit] = vb[j];
                if (unit == 0) spos[k] = pb[j];
            } else {
                const int dst = src.g0 + k;
                reinterpret_cast<U*>(hr.k + dst * hr.k_row)[unit] = kb[j];
                reinterpret_cast<U*>(hr.v + dst * hr.v_row)[unit] = vb[j];
                if (unit == 0) hr.pos[dst * hr.pos_s] = pb[j];
            }
        }
    }
}

// Phase 3 of the parallel move: the counters, after every copy (stream order).
__global__ void kv_compact_count_kernel(const CompactArgs a, int hkv) {
    const int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= hkv) return;
    SrcList src;
    int n = 0, ns = 0;
    if (!compact_list(a, h, src, n, ns)) return;
    a.c.n_slots[h * a.c.ns_s] = src.g0 + n;
    a.c.n_global[h * a.c.ng_s] = src.g0 + src.nk;
}

// ---- block_compact -------------------------------------------------------------------------

struct BlockCompactArgs {
    CacheArgs c;
    const float* q;
    int64_t q_s0, q_s1;
    const int32_t* keep;
    int64_t keep_s;
    float* score;   // scratch [hkv][b]
    float* srow;    // scratch [hkv][b]
    int32_t* list;  // scratch [hkv][b]: selection flags, then kept offsets
    int b, g, n_q;
    int64_t min_local;
    float qscale;  // scale * log2(e)
    bool vec_k;
};

template <bool kMax>
__device__ float block_reduce(float x, float* sm) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float y = __shfl_xor_sync(0xffffffffu, x, o);
        x = kMax ? fmaxf(x, y) : x + y;
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) sm[warp] = x;
    __syncthreads();
    float r = sm[0];
    for (int w = 1; w < kMoveThreads / 32; ++w) r = kMax ? fmaxf(r, sm[w]) : r + sm[w];
    __syncthreads();  // sm is reused by the next reduction
    return r;
}

template <class U, Kv T>
__global__ void __launch_bounds__(kMoveThreads) block_compact_kernel(const BlockCompactArgs a) {
    __shared__ float sm_q[256];
    __shared__ float sm_red[kMoveThreads / 32];
    const int h = blockIdx.x;
    const int keep = a.keep[h * a.keep_s];
    if (keep < 0) return;
    const int b = a.b, d = a.c.d;
    const int g0 = a.c.n_global[h * a.c.ng_s], ns = a.c.n_slots[h * a.c.ns_s];
    if (ns - g0 < a.min_local) return;  // the local part is not full yet (min_local 0: always)
    // The CPU backend asserts these; here a head that breaks them is left untouched.
    if (keep > b || g0 < 0 || ns - g0 < b || ns > a.c.cap) return;
    float* score = a.score + static_cast<int64_t>(h) * b;
    float* srow = a.srow + static_cast<int64_t>(h) * b;
    int32_t* list = a.list + static_cast<int64_t>(h) * b;
    const char* khead = a.c.k + h * a.c.k_s0;
    const int64_t k_row_elems = a.c.k_s1 / (T == Kv::kF32 ? 4 : 2);

    // Score: mean over the G x n_q rows of each row's softmax over the block [g0, g0 + b).
    // Entry j is always handled by the same thread, so score/srow need no barrier.
    for (int j = threadIdx.x; j < b; j += kMoveThreads) score[j] = 0.0f;
    const int rows = a.g * a.n_q;
    for (int row = 0; row < rows; ++row) {
        const int qh = h * a.g + row % a.g, qi = row / a.g;
        for (int c = threadIdx.x; c < d; c += kMoveThreads) sm_q[c] = a.q[qh * a.q_s0 + qi * a.q_s1 + c] * a.qscale;
        __syncthreads();
        float mx = -INFINITY;
        for (int j = threadIdx.x; j < b; j += kMoveThreads) {
            float dot = 0.0f;
            for (int c8 = 0; c8 < d; c8 += 8) {
                Chunk8<T> ch;
                kvc::load_chunk<T>(khead, (g0 + j) * k_row_elems + c8, a.vec_k, ch);
#pragma unroll
                for (int e = 0; e < 8; ++e) dot = fmaf(sm_q[c8 + e], kvc::chunk_elem<T>(ch, e), dot);
            }
            srow[j] = dot;
            mx = fmaxf(mx, dot);
        }
        mx = block_reduce<true>(mx, sm_red);
        float sum = 0.0f;
        for (int j = threadIdx.x; j < b; j += kMoveThreads) {
            const float e = exp2f(srow[j] - mx);
            srow[j] = e;
            sum += e;
        }
        sum = block_reduce<false>(sum, sm_red);
        const float w = 1.0f / (sum * static_cast<float>(rows));
        for (int j = threadIdx.x; j < b; j += kMoveThreads) score[j] += srow[j] * w;
        // block_reduce ended with a barrier: sm_q may be rewritten by the next row.
    }
    __syncthreads();  // every score is written

    // Top keep, ties to the lower offset (positions ascend with slots): rank by comparison.
    for (int j = threadIdx.x; j < b; j += kMoveThreads) {
        const float sj = score[j];
        int rank = 0;
        for (int i = 0; i < b; ++i) {
            const float si = score[i];
            rank += (si > sj || (si == sj && i < j)) ? 1 : 0;
        }
        srow[j] = rank < keep ? 1.0f : 0.0f;  // selection flag (srow is free now)
    }
    __syncthreads();
    for (int j = threadIdx.x; j < b; j += kMoveThreads) {
        if (srow[j] != 0.0f) {
            int before = 0;
            for (int i = 0; i < j; ++i) before += srow[i] != 0.0f ? 1 : 0;
            list[before] = j;
        }
    }
    __syncthreads();

    const SrcList src{list, 1, keep, g0, g0 + b};
    const int n = keep + (ns - g0 - b);
    move_rows<U>(head_rows(a.c, h), src, n);
    __syncthreads();
    if (threadIdx.x == 0) {
        a.c.n_global[h * a.c.ng_s] = g0 + keep;
        a.c.n_slots[h * a.c.ns_s] = g0 + n;
    }
}

// ---- kv_append -----------------------------------------------------------------------------

struct AppendArgs {
    const float* k_new;
    const float* v_new;
    int64_t kn_s0, kn_s1, vn_s0, vn_s1;
    void* k;
    void* v;
    int64_t k_s0, k_s1, v_s0, v_s1;  // elements
    int32_t* slot_pos;
    int64_t sp_s0, sp_s1;
    int32_t* n_slots;
    int64_t ns_s;
    int64_t pos0;
    int n_tokens, cap, d;
};

template <Kv T>
__device__ __forceinline__ void store_elem(void* base, int64_t off, float x) {
    if constexpr (T == Kv::kF32) {
        static_cast<float*>(base)[off] = x;
    } else if constexpr (T == Kv::kBF16) {
        static_cast<uint16_t*>(base)[off] = kvc::f32_to_bf16_bits(x);
    } else {
        static_cast<uint16_t*>(base)[off] = kvc::f32_to_f16_bits(x);
    }
}

// One CTA per (token, head); reads n_slots (kv_append_count_kernel updates it afterwards).
template <Kv T>
__global__ void kv_append_kernel(const AppendArgs a) {
    const int t = blockIdx.x, h = blockIdx.y;
    const int count = a.n_slots[h * a.ns_s];
    if (count < 0 || static_cast<int64_t>(count) + a.n_tokens > a.cap) return;  // CPU asserts
    const int64_t slot = static_cast<int64_t>(count) + t;
    const float* ks = a.k_new + t * a.kn_s0 + h * a.kn_s1;
    const float* vs = a.v_new + t * a.vn_s0 + h * a.vn_s1;
    const int64_t ko = h * a.k_s0 + slot * a.k_s1, vo = h * a.v_s0 + slot * a.v_s1;
    for (int e = threadIdx.x; e < a.d; e += blockDim.x) {
        store_elem<T>(a.k, ko + e, ks[e]);
        store_elem<T>(a.v, vo + e, vs[e]);
    }
    if (threadIdx.x == 0) a.slot_pos[h * a.sp_s0 + slot * a.sp_s1] = static_cast<int32_t>(a.pos0 + t);
}

__global__ void kv_append_count_kernel(int32_t* n_slots, int64_t ns_s, int n_heads, int n_tokens, int cap) {
    const int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= n_heads) return;
    const int count = n_slots[h * ns_s];
    if (count < 0 || static_cast<int64_t>(count) + n_tokens > cap) return;
    n_slots[h * ns_s] = count + n_tokens;
}

// ---- host helpers --------------------------------------------------------------------------

// Largest unit in {16, 8, 4, 2} bytes dividing every address and byte stride.
int move_unit(const TensorView& k, const TensorView& v) {
    const int64_t es = static_cast<int64_t>(dtype_size(k.dtype));
    const int64_t vals[] = {static_cast<int64_t>(reinterpret_cast<uintptr_t>(k.data)),
                            static_cast<int64_t>(reinterpret_cast<uintptr_t>(v.data)),
                            k.stride[0] * es, k.stride[1] * es, v.stride[0] * es,
                            v.stride[1] * es, k.shape[2] * es};
    for (int u : {16, 8, 4, 2}) {
        bool ok = true;
        for (int64_t x : vals) ok = ok && x % u == 0;
        if (ok) return u;
    }
    return 2;
}

Status cache_args(CacheArgs& c, const TensorView& k, const TensorView& v, const TensorView& slot_pos,
                  const TensorView& n_global, const TensorView& n_slots, const char* op) {
    const int64_t es = static_cast<int64_t>(dtype_size(k.dtype));
    if (k.shape[1] > INT32_MAX / 2) return unsupported("%s: cache capacity too large", op);
    c.k = static_cast<char*>(k.data);
    c.v = static_cast<char*>(v.data);
    c.k_s0 = k.stride[0] * es;
    c.k_s1 = k.stride[1] * es;
    c.v_s0 = v.stride[0] * es;
    c.v_s1 = v.stride[1] * es;
    c.slot_pos = slot_pos.ptr<int32_t>();
    c.sp_s0 = slot_pos.stride[0];
    c.sp_s1 = slot_pos.stride[1];
    c.n_global = n_global.ptr<int32_t>();
    c.ng_s = n_global.stride[0];
    c.n_slots = n_slots.ptr<int32_t>();
    c.ns_s = n_slots.stride[0];
    c.cap = static_cast<int>(k.shape[1]);
    c.d = static_cast<int>(k.shape[2]);
    c.row_bytes = static_cast<int>(k.shape[2] * es);
    return Status();
}

template <Kv T>
Status launch_block_compact(const BlockCompactArgs& a, int unit, int hkv) {
    switch (unit) {
        case 16: block_compact_kernel<uint4, T><<<hkv, kMoveThreads, 0, cu_stream()>>>(a); break;
        case 8: block_compact_kernel<uint2, T><<<hkv, kMoveThreads, 0, cu_stream()>>>(a); break;
        case 4: block_compact_kernel<uint32_t, T><<<hkv, kMoveThreads, 0, cu_stream()>>>(a); break;
        default: block_compact_kernel<uint16_t, T><<<hkv, kMoveThreads, 0, cu_stream()>>>(a); break;
    }
    return launch_status("block_compact kernel");
}

template <Kv T>
Status launch_append(const AppendArgs& a, int hkv) {
    const int threads = a.d >= 128 ? 128 : (a.d >= 64 ? 64 : 32);
    kv_append_kernel<T><<<dim3(static_cast<unsigned>(a.n_tokens), static_cast<unsigned>(hkv)), threads, 0,
                          cu_stream()>>>(a);
    return launch_status("kv_append kernel");
}

Status launch_compact_serial(const CompactArgs& a, int unit, int hkv) {
    const unsigned grid = static_cast<unsigned>(hkv);
    switch (unit) {
        case 16: kv_compact_kernel<uint4><<<grid, kMoveThreads, 0, cu_stream()>>>(a); break;
        case 8: kv_compact_kernel<uint2><<<grid, kMoveThreads, 0, cu_stream()>>>(a); break;
        case 4: kv_compact_kernel<uint32_t><<<grid, kMoveThreads, 0, cu_stream()>>>(a); break;
        default: kv_compact_kernel<uint16_t><<<grid, kMoveThreads, 0, cu_stream()>>>(a); break;
    }
    return launch_status("kv_compact kernel");
}

template <class U>
Status launch_compact_copies(const CompactArgs& a, dim3 grid) {
    kv_compact_copy_kernel<U, true><<<grid, kMoveThreads, 0, cu_stream()>>>(a);
    TCA_RETURN_IF_ERROR(launch_status("kv_compact gather kernel"));
    kv_compact_copy_kernel<U, false><<<grid, kMoveThreads, 0, cu_stream()>>>(a);
    return launch_status("kv_compact scatter kernel");
}

Status launch_compact_parallel(const CompactArgs& a, int unit, dim3 grid) {
    switch (unit) {
        case 16: TCA_RETURN_IF_ERROR(launch_compact_copies<uint4>(a, grid)); break;
        case 8: TCA_RETURN_IF_ERROR(launch_compact_copies<uint2>(a, grid)); break;
        case 4: TCA_RETURN_IF_ERROR(launch_compact_copies<uint32_t>(a, grid)); break;
        default: TCA_RETURN_IF_ERROR(launch_compact_copies<uint16_t>(a, grid)); break;
    }
    const int hkv = static_cast<int>(grid.y);
    kv_compact_count_kernel<<<static_cast<unsigned>((hkv + 127) / 128), 128, 0, cu_stream()>>>(a, hkv);
    return launch_status("kv_compact count kernel");
}

// TCA_CUDA_KVC_SERIAL=1 in the environment starts with kv_compact on the serial move (A/B runs
// of the engine).
std::atomic<bool> g_kvc_serial{[] {
    const char* e = std::getenv("TCA_CUDA_KVC_SERIAL");
    return e && std::string(e) == "1";
}()};

}  // namespace

Status kv_append(const KvAppendParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t n = p.k_new.shape[0], hkv = p.k_cache.shape[0], cap = p.k_cache.shape[1];
    if (n == 0 || hkv == 0) return Status();
    if (n > INT32_MAX || hkv > 65535 || cap > INT32_MAX) {
        return unsupported("kv_append: shape too large for the cuda kernel");
    }
    AppendArgs a{};
    a.k_new = p.k_new.ptr<float>();
    a.v_new = p.v_new.ptr<float>();
    a.kn_s0 = p.k_new.stride[0];
    a.kn_s1 = p.k_new.stride[1];
    a.vn_s0 = p.v_new.stride[0];
    a.vn_s1 = p.v_new.stride[1];
    a.k = p.k_cache.data;
    a.v = p.v_cache.data;
    a.k_s0 = p.k_cache.stride[0];
    a.k_s1 = p.k_cache.stride[1];
    a.v_s0 = p.v_cache.stride[0];
    a.v_s1 = p.v_cache.stride[1];
    a.slot_pos = p.slot_pos.ptr<int32_t>();
    a.sp_s0 = p.slot_pos.stride[0];
    a.sp_s1 = p.slot_pos.stride[1];
    a.n_slots = p.n_slots.ptr<int32_t>();
    a.ns_s = p.n_slots.stride[0];
    a.pos0 = p.pos0;
    a.n_tokens = static_cast<int>(n);
    a.cap = static_cast<int>(cap);
    a.d = static_cast<int>(p.k_cache.shape[2]);
    const auto launch = [&]() -> Status {
        switch (p.k_cache.dtype) {
            case DType::kF32: return launch_append<Kv::kF32>(a, static_cast<int>(hkv));
            case DType::kF16: return launch_append<Kv::kF16>(a, static_cast<int>(hkv));
            case DType::kBF16: return launch_append<Kv::kBF16>(a, static_cast<int>(hkv));
            default: return unsupported("kv_append: cache dtype %s", dtype_name(p.k_cache.dtype));
        }
    };
    TCA_RETURN_IF_ERROR(launch());
    // Stream order: every append CTA has read n_slots before the counters move.
    kv_append_count_kernel<<<static_cast<unsigned>((hkv + 127) / 128), 128, 0, cu_stream()>>>(
        a.n_slots, a.ns_s, static_cast<int>(hkv), a.n_tokens, a.cap);
    return launch_status("kv_append count kernel");
}

void set_kv_compact_serial(bool on) { g_kvc_serial.store(on); }
bool kv_compact_serial() { return g_kvc_serial.load(); }

Status kv_compact(const KvCompactParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hkv = p.k_cache.shape[0], cap = p.k_cache.shape[1];
    if (hkv == 0 || cap == 0) return Status();
    if (hkv > INT32_MAX) return unsupported("kv_compact: too many heads");
    CompactArgs a{};
    TCA_RETURN_IF_ERROR(cache_args(a.c, p.k_cache, p.v_cache, p.slot_pos, p.n_global, p.n_slots, "kv_compact"));
    a.kept = p.kept.ptr<int32_t>();
    a.kept_s0 = p.kept.stride[0];
    a.kept_s1 = p.kept.stride[1];
    a.kept_cap = static_cast<int>(std::min<int64_t>(p.kept.shape[1], INT32_MAX));
    a.n_kept = p.n_kept.ptr<int32_t>();
    a.nk_s = p.n_kept.stride[0];
    a.region = p.region.ptr<int32_t>();
    a.rg_s = p.region.stride[0];
    const int unit = move_unit(p.k_cache, p.v_cache);
    const int h = static_cast<int>(hkv);
    if (kv_compact_serial() || hkv > 65535) return launch_compact_serial(a, unit, h);
    // Scratch rows: K and V (row_bytes, a multiple of 16: head_dim is a multiple of 8 and
    // elements are >= 2 bytes, so every unit fits) then slot_pos.
    const size_t rows = static_cast<size_t>(hkv) * static_cast<size_t>(cap);
    const size_t row_bytes = static_cast<size_t>(a.c.row_bytes);
    Result<void*> buf = scratch(rows * (2 * row_bytes + sizeof(int32_t)), 0);
    if (!buf.ok()) {
        // Out of device memory: the serial move needs no scratch. Other errors are returned.
        if (buf.status().code() != StatusCode::kOutOfMemory) return buf.status();
        return launch_compact_serial(a, unit, h);
    }
    a.sk = static_cast<char*>(*buf);
    a.sv = a.sk + rows * row_bytes;
    a.spos = reinterpret_cast<int32_t*>(a.sv + rows * row_bytes);
    a.rows_per_cta = std::max(1, kMoveThreads * kItemsPerThread / (a.c.row_bytes / unit));
    const int64_t chunks = (cap + a.rows_per_cta - 1) / a.rows_per_cta;
    const int64_t want = (kCompactTargetCtas + hkv - 1) / hkv;  // chunk CTAs per head
    const int64_t per_head = std::clamp<int64_t>(want, 1, std::max<int64_t>(chunks, 1));
    const dim3 grid(static_cast<unsigned>(per_head), static_cast<unsigned>(hkv));
    return launch_compact_parallel(a, unit, grid);
}

Status block_compact(const BlockCompactParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t hq = p.q.shape[0], n_q = p.q.shape[1], hkv = p.k_cache.shape[0];
    const int64_t d = p.k_cache.shape[2], b = p.block_size;
    if (hkv == 0) return Status();
    if (hkv > INT32_MAX || hq * n_q > INT32_MAX) return unsupported("block_compact: shape too large");
    BlockCompactArgs a{};
    TCA_RETURN_IF_ERROR(cache_args(a.c, p.k_cache, p.v_cache, p.slot_pos, p.n_global, p.n_slots, "block_compact"));
    a.q = p.q.ptr<float>();
    a.q_s0 = p.q.stride[0];
    a.q_s1 = p.q.stride[1];
    a.keep = p.keep.ptr<int32_t>();
    a.keep_s = p.keep.stride[0];
    a.b = static_cast<int>(b);
    a.g = static_cast<int>(hq / hkv);
    a.n_q = static_cast<int>(n_q);
    a.min_local = p.min_local;
    a.qscale = effective_scale(p.scale, d) * 1.4426950408889634f;
    a.vec_k = kvc::aligned16(p.k_cache.data, p.k_cache.stride[0], p.k_cache.stride[1],
                             dtype_size(p.k_cache.dtype));
    const size_t per = static_cast<size_t>(hkv * b);
    TCA_ASSIGN_OR_RETURN(void* buf, scratch(per * 3 * sizeof(float), 0));
    a.score = static_cast<float*>(buf);
    a.srow = a.score + per;
    a.list = reinterpret_cast<int32_t*>(a.srow + per);
    const int unit = move_unit(p.k_cache, p.v_cache), h = static_cast<int>(hkv);
    switch (p.k_cache.dtype) {
        case DType::kF32: return launch_block_compact<Kv::kF32>(a, unit, h);
        case DType::kF16: return launch_block_compact<Kv::kF16>(a, unit, h);
        case DType::kBF16: return launch_block_compact<Kv::kBF16>(a, unit, h);
        default: return unsupported("block_compact: cache dtype %s", dtype_name(p.k_cache.dtype));
    }
}

}  // namespace tca::cuda
