// rms_norm, rope, swiglu, embed and add on the CUDA device; each matches its ref:: twin
// (reference/ref_model_ops.cpp) within the FlashAttention-3 rule, with the CPU backend's
// numerics (backend/cpu/model_ops.cpp). All are memory bound.
//  - rms_norm: one CTA of 256 threads per token row (rows loop when the grid is capped): f32
//    sum of squares (per-thread strided FMA partials, then a warp-shuffle tree), the scale
//    1 / sqrt(mean + eps) in double as on the CPU, out = x * scale * w in f32.
//  - rope: positions (host memory) are uploaded through pinned memory; one CTA per token and
//    group of kRopeHeads heads, one thread per rotated pair: the angle pos * inv_freq and its
//    cos/sin in double (an f32 angle loses 1e-2 rad at position 128K; the parity test bounds
//    the error by a few f32 roundings), rounded to f32 once, the rotation in f32.
//  - swiglu, add: 2-d elementwise grids, blockIdx.y over rows; silu(g) = g / (1 + expf(-g))
//    in f32 (CUDA expf: <= 2 ulp, no fast math).
//  - embed: ids (host memory) uploaded like the positions; rows of an F32/F16/BF16 table
//    widened to f32 exactly (quantized tables: unsupported, the GPU engine dequantizes at load).
// In-place use (out == x / gate / up / a / b) is safe: each element is read and written by
// the same thread, and rms_norm reads its row for the sum before the barrier.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_runtime.h"
#include "backend/cuda/row_ops.cuh"

namespace tca::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRopeHeads = 4;  // heads per rope CTA (cos/sin computed once per CTA and pair)

// A 2-d launch over [n_rows, n_cols]: blockIdx.y walks rows, x-threads walk columns; both loop
// when the grid is capped.
dim3 rows_grid(int64_t n_rows, int64_t n_cols) {
    const int64_t gx = std::min<int64_t>((n_cols + kThreads - 1) / kThreads, 1024);
    const int64_t gy = std::min<int64_t>(n_rows, 65535);
    return dim3(static_cast<unsigned>(std::max<int64_t>(gx, 1)), static_cast<unsigned>(gy));
}

// ---- host i32 uploads (RopeParams::positions, EmbedParams::ids) ----------------------------

// Copies a small host i32 vector to a device buffer owned by one op: the values are packed
// into pinned memory and copied asynchronously on the stream. The pinned buffer is rewritten
// only once the previous copy out of it has completed (an event), and an upload equal to the
// previous one is skipped (the q and k rope calls of every layer share their positions). The
// device buffer is private, so a skipped upload still finds the same values there.
class HostI32Upload {
public:
    ~HostI32Upload() {
        // Process exit: errors (runtime already torn down) are ignored.
        if (pinned_ != nullptr) cudaFreeHost(pinned_);
        if (copied_ != nullptr) cudaEventDestroy(copied_);
    }

    Result<const int32_t*> upload(const TensorView& host) {
        std::lock_guard<std::mutex> lock(mu_);
        const int64_t n = host.shape[0];
        next_.resize(static_cast<size_t>(n));
        const int32_t* src = host.ptr<const int32_t>();
        for (int64_t i = 0; i < n; ++i) next_[static_cast<size_t>(i)] = src[i * host.stride[0]];
        if (valid_ && next_ == last_) return static_cast<const int32_t*>(dev_.get());
        valid_ = false;
        const size_t bytes = static_cast<size_t>(n) * sizeof(int32_t);
        if (copied_ == nullptr) {
            TCA_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&copied_, cudaEventDisableTiming));
        }
        // The previous copy out of pinned_ must be done before it is rewritten.
        TCA_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(copied_));
        if (pinned_bytes_ < bytes) {
            if (pinned_ != nullptr) TCA_CUDA_RETURN_IF_ERROR(cudaFreeHost(pinned_));
            pinned_ = nullptr;
            pinned_bytes_ = 0;
            void* p = nullptr;
            TCA_CUDA_RETURN_IF_ERROR(cudaMallocHost(&p, 2 * bytes));
            pinned_ = static_cast<int32_t*>(p);
            pinned_bytes_ = 2 * bytes;
        }
        if (dev_.bytes() < bytes) {
            // Queued kernels may still read the old buffer: wait before freeing it.
            TCA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(cu_stream()));
            dev_ = DeviceBuffer();
            TCA_ASSIGN_OR_RETURN(dev_, DeviceBuffer::allocate(2 * bytes));
        }
        std::memcpy(pinned_, next_.data(), bytes);
        TCA_CUDA_RETURN_IF_ERROR(
            cudaMemcpyAsync(dev_.get(), pinned_, bytes, cudaMemcpyHostToDevice, cu_stream()));
        TCA_CUDA_RETURN_IF_ERROR(cudaEventRecord(copied_, cu_stream()));
        last_.swap(next_);
        valid_ = true;
        return static_cast<const int32_t*>(dev_.get());
    }

private:
    std::mutex mu_;
    DeviceBuffer dev_;
    int32_t* pinned_ = nullptr;
    size_t pinned_bytes_ = 0;
    cudaEvent_t copied_ = nullptr;
    std::vector<int32_t> next_, last_;
    bool valid_ = false;
};

HostI32Upload& positions_upload() {
    static HostI32Upload u;
    return u;
}
HostI32Upload& ids_upload() {
    static HostI32Upload u;
    return u;
}

// ---- kernels ----------------------------------------------------------------------------------

// out[r, i] = x[r, i] * (1 / sqrt(mean(x[r, :]^2) + eps)) * w[i]; one CTA per row.
__global__ void __launch_bounds__(kThreads)
rms_norm_kernel(const float* x, int64_t x_ld, const float* __restrict__ w, int64_t w_stride,
                float* out, int64_t out_ld, int64_t n_rows, int64_t dim, float eps) {
    static_assert(kThreads == rowops::kThreads, "rms_norm's sum order is rowops::rms_scale's");
    __shared__ float sm[kThreads / 32 + 1];
    for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
        const float* xr = x + r * x_ld;
        const float scale = rowops::rms_scale(xr, dim, eps, sm);
        float* outr = out + r * out_ld;
        for (int64_t i = threadIdx.x; i < dim; i += kThreads) outr[i] = rowops::rms_apply(xr[i], scale, w[i * w_stride]);
        __syncthreads();  // sm is reused by the next row
    }
}

// Pair i of heads [h0, h0 + kRopeHeads) of token t rotates by pos[t] * inv_freq[i].
template <bool kAdjacent>
__global__ void rope_kernel(float* x, int64_t x_s0, int64_t x_s1, const int32_t* __restrict__ pos,
                            const float* __restrict__ inv_freq, int64_t f_stride,
                            int64_t n_tokens, int64_t n_heads, int64_t half) {
    const int64_t n_groups = (n_heads + kRopeHeads - 1) / kRopeHeads;
    for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
        const double ps = static_cast<double>(pos[t]);
        for (int64_t g = blockIdx.y; g < n_groups; g += gridDim.y) {
            const int64_t h1 = min(n_heads, (g + 1) * kRopeHeads);
            for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
                double sd, cd;
                sincos(ps * static_cast<double>(inv_freq[i * f_stride]), &sd, &cd);
                const float c = static_cast<float>(cd), s = static_cast<float>(sd);
                const int64_t i0 = kAdjacent ? 2 * i : i;
                const int64_t i1 = kAdjacent ? 2 * i + 1 : i + half;
                for (int64_t h = g * kRopeHeads; h < h1; ++h) {
                    float* xh = x + t * x_s0 + h * x_s1;
                    const float x0 = xh[i0], x1 = xh[i1];
                    xh[i0] = x0 * c - x1 * s;
                    xh[i1] = x0 * s + x1 * c;
                }
            }
        }
    }
}

// out = silu(gate) * up.
__global__ void swiglu_kernel(const float* gate, int64_t g_ld, const float* up, int64_t u_ld,
                              float* out, int64_t o_ld, int64_t n_rows, int64_t n_cols) {
    for (int64_t r = blockIdx.y; r < n_rows; r += gridDim.y) {
        for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < n_cols;
             c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
            const float g = gate[r * g_ld + c];
            const float u = up[r * u_ld + c];
            out[r * o_ld + c] = rowops::swiglu_value(g, u);
        }
    }
}

// out = a + b.
__global__ void add_kernel(const float* a, int64_t a_ld, const float* b, int64_t b_ld, float* out,
                           int64_t o_ld, int64_t n_rows, int64_t n_cols) {
    for (int64_t r = blockIdx.y; r < n_rows; r += gridDim.y) {
        for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < n_cols;
             c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
            out[r * o_ld + c] = a[r * a_ld + c] + b[r * b_ld + c];
        }
    }
}

__device__ inline float widen(float v) { return v; }
__device__ inline float widen(__half v) { return __half2float(v); }
__device__ inline float widen(__nv_bfloat16 v) { return __bfloat162float(v); }

// out[t, i] = float(table[ids[t], i]).
template <class T>
__global__ void embed_kernel(const T* __restrict__ table, int64_t dim,
                             const int32_t* __restrict__ ids, int64_t n_tokens,
                             float* __restrict__ out, int64_t o_ld) {
    for (int64_t t = blockIdx.y; t < n_tokens; t += gridDim.y) {
        const T* row = table + static_cast<int64_t>(ids[t]) * dim;
        for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < dim;
             c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
            out[t * o_ld + c] = widen(row[c]);
        }
    }
}

}  // namespace

Status rms_norm(const RmsNormParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t n_rows = p.x.shape[0], dim = p.x.shape[1];
    if (n_rows == 0 || dim == 0) return Status();
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(n_rows, 1 << 20));
    rms_norm_kernel<<<grid, kThreads, 0, cu_stream()>>>(
        p.x.ptr<const float>(), p.x.stride[0], p.weight.ptr<const float>(), p.weight.stride[0],
        p.out.ptr<float>(), p.out.stride[0], n_rows, dim, p.eps);
    return launch_status("rms_norm: rms_norm_kernel");
}

Status rope(const RopeParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t n_tokens = p.x.shape[0], n_heads = p.x.shape[1], half = p.x.shape[2] / 2;
    if (n_tokens == 0 || n_heads == 0) return Status();
    TCA_ASSIGN_OR_RETURN(const int32_t* pos, positions_upload().upload(p.positions));
    const int64_t n_groups = (n_heads + kRopeHeads - 1) / kRopeHeads;
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>(n_tokens, 1 << 20)),
                    static_cast<unsigned>(std::min<int64_t>(n_groups, 65535)));
    // One thread per pair up to 256 pairs (head_dim 512), rounded up to whole warps.
    const int threads = static_cast<int>(std::min<int64_t>(kThreads, (half + 31) / 32 * 32));
    if (p.style == RopeStyle::kAdjacentPairs) {
        rope_kernel<true><<<grid, threads, 0, cu_stream()>>>(
            p.x.ptr<float>(), p.x.stride[0], p.x.stride[1], pos, p.inv_freq.ptr<const float>(),
            p.inv_freq.stride[0], n_tokens, n_heads, half);
    } else {
        rope_kernel<false><<<grid, threads, 0, cu_stream()>>>(
            p.x.ptr<float>(), p.x.stride[0], p.x.stride[1], pos, p.inv_freq.ptr<const float>(),
            p.inv_freq.stride[0], n_tokens, n_heads, half);
    }
    return launch_status("rope: rope_kernel");
}

Status swiglu(const SwigluParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t n_rows = p.gate.shape[0], n_cols = p.gate.shape[1];
    if (n_rows == 0 || n_cols == 0) return Status();
    swiglu_kernel<<<rows_grid(n_rows, n_cols), kThreads, 0, cu_stream()>>>(
        p.gate.ptr<const float>(), p.gate.stride[0], p.up.ptr<const float>(), p.up.stride[0],
        p.out.ptr<float>(), p.out.stride[0], n_rows, n_cols);
    return launch_status("swiglu: swiglu_kernel");
}

Status embed(const EmbedParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const GgmlType t = p.table.type;
    if (t != GgmlType::kF32 && t != GgmlType::kF16 && t != GgmlType::kBF16) {
        return unsupported("embed: table type %s is not supported on the cuda device (F32, F16 "
                           "and BF16 are; the GPU engine dequantizes at load)",
                           ggml_type_name(t));
    }
    const int64_t n_tokens = p.ids.shape[0], dim = p.table.n_cols;
    if (n_tokens == 0) return Status();
    TCA_ASSIGN_OR_RETURN(const int32_t* ids, ids_upload().upload(p.ids));
    const dim3 grid = rows_grid(n_tokens, dim);
    float* out = p.out.ptr<float>();
    const int64_t o_ld = p.out.stride[0];
    if (t == GgmlType::kF32) {
        embed_kernel<float><<<grid, kThreads, 0, cu_stream()>>>(
            static_cast<const float*>(p.table.data), dim, ids, n_tokens, out, o_ld);
    } else if (t == GgmlType::kF16) {
        embed_kernel<__half><<<grid, kThreads, 0, cu_stream()>>>(
            static_cast<const __half*>(p.table.data), dim, ids, n_tokens, out, o_ld);
    } else {
        embed_kernel<__nv_bfloat16><<<grid, kThreads, 0, cu_stream()>>>(
            static_cast<const __nv_bfloat16*>(p.table.data), dim, ids, n_tokens, out, o_ld);
    }
    return launch_status("embed: embed_kernel");
}

Status add(const AddParams& p) {
    TCA_RETURN_IF_ERROR(validate(p));
    const int64_t n_rows = p.a.shape[0], n_cols = p.a.shape[1];
    if (n_rows == 0 || n_cols == 0) return Status();
    add_kernel<<<rows_grid(n_rows, n_cols), kThreads, 0, cu_stream()>>>(
        p.a.ptr<const float>(), p.a.stride[0], p.b.ptr<const float>(), p.b.stride[0],
        p.out.ptr<float>(), p.out.stride[0], n_rows, n_cols);
    return launch_status("add: add_kernel");
}

}  // namespace tca::cuda
