// matmul on the CUDA device: y[t, o] = sum_i x[t, i] * w[o, i] (+ bias[o]) (+ residual[t, o])
// through cuBLAS, f32 accumulation and f32 output; matches ref::matmul within the
// FlashAttention-3 rule, sized by its naive f32 twin with the same MatmulActivations
// (docs/numerics.md).
//
// Weights are F32, F16 or BF16 in device memory (ggml layout: n_out rows of n_in elements);
// quantized types return "unsupported" (the GPU engine dequantizes them at load).
//  - kWeightDotType with F16/BF16 weights (the engine's default): x is rounded to f16/bf16
//    (nearest even, bit-identical with the CPU path and ggml) into scratch slot 0, then
//    cublasGemmEx on 16-bit inputs with CUBLAS_COMPUTE_32F (tensor cores; the products of two
//    16-bit values are exact in f32, so this is the naive twin's math in another sum order).
//  - kF32, or F32 weights: an f32 GEMM with CUBLAS_COMPUTE_32F under CUBLAS_DEFAULT_MATH, which
//    never uses TF32 (TF32 needs CUBLAS_TF32_TENSOR_OP_MATH or CUBLAS_COMPUTE_32F_FAST_TF32,
//    neither is used here). F16/BF16 weights in this mode are widened to f32 in scratch slot 1
//    on every call: exact but slow (n_out * n_in * 4 bytes written and read again); the engine
//    uses it only for accuracy studies.
//  - the decode shape (kWeightDotType, 16-bit weights, one token, n_in a multiple of 8,
//    16-byte aligned weights): a GEMV kernel, one warp per output row, with the same
//    math (x rounded to the weight's type, exact products, f32 sums in another order) in one
//    launch: no packed copy of x, no cuBLAS call, bias and residual added in the kernel.
//    gemv_kernel (session 8, the default): every warp rounds x in registers;
//    gemv_staged_kernel (TCA_CUDA_GEMV=2): each CTA of 8 rows first writes its input row,
//    rounded to the weight type, to shared memory, computing a MatmulInput op there
//    (rms_norm, swiglu: backend/cuda/row_ops.cuh, the same code as those ops' kernels), with
//    its first weight loads already in flight. Both sum each lane's products in the same
//    order: bitwise equal results.
//  - another MatmulInput elsewhere: the op's own kernel writes the input to scratch slot 3,
//    then the paths above.
// Row-major to cuBLAS column-major: y^T (n_out x n_tokens, ld = y's row stride) =
// op(W) x^T with W seen as the column-major n_in x n_out matrix (lda = n_in) and op = T, and
// x^T the column-major n_in x n_tokens matrix with ldb = x's row stride. The bias and the
// residual are added by a small kernel after the GEMM, in that order (the reference adds them
// after the sum too).
// cuBLAS is not linked: libcublas.so.<major> is opened on the first GPU matmul
// (backend/cuda/dynamic_library.h), from the library path, else from the toolkit of the build.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <climits>
#include <cstdlib>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_runtime.h"
#include "backend/cuda/dynamic_library.h"
#include "backend/cuda/row_ops.cuh"

namespace tca::cuda {
namespace {

constexpr int kThreads = 256;

// cublasGemmEx's C entry point (cublas_api.h also declares a C++ overload of that name).
using GemmExFn = cublasStatus_t(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                const void*, const void*, cudaDataType, int, const void*,
                                cudaDataType, int, const void*, void*, cudaDataType, int,
                                cublasComputeType_t, cublasGemmAlgo_t);
static_assert(std::is_same_v<decltype(static_cast<GemmExFn*>(&cublasGemmEx)), GemmExFn*>);

// The cuBLAS entry points used here (the _v2 names are what cublas_v2.h's macros expand to).
struct CublasApi {
    decltype(&cublasCreate_v2) create = nullptr;
    decltype(&cublasDestroy_v2) destroy = nullptr;
    decltype(&cublasSetStream_v2) set_stream = nullptr;
    decltype(&cublasSetMathMode) set_math_mode = nullptr;
    GemmExFn* gemm_ex = nullptr;
    decltype(&cublasGetStatusName) status_name = nullptr;
    decltype(&cublasGetStatusString) status_string = nullptr;
    std::string library;  // the file dlopen loaded
};

Result<const CublasApi*> cublas_api() {
    static CublasApi api;
    static std::string error;
    static std::once_flag once;
    std::call_once(once, [] {
        const std::string so = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
        std::vector<std::string> names{so};
#ifdef TCA_CUDA_LIBRARY_DIR
        names.push_back(std::string(TCA_CUDA_LIBRARY_DIR) + "/" + so);
#endif
        DynamicLibrary lib = DynamicLibrary::open(names);
        if (!lib.handle) {
            error = "cuda: cannot load " + so + " (" + lib.error + "); install cuBLAS " +
                    std::to_string(CUBLAS_VER_MAJOR) + " or add its directory to LD_LIBRARY_PATH";
            return;
        }
        lib.resolve("cublasCreate_v2", api.create);
        lib.resolve("cublasDestroy_v2", api.destroy);
        lib.resolve("cublasSetStream_v2", api.set_stream);
        lib.resolve("cublasSetMathMode", api.set_math_mode);
        lib.resolve("cublasGemmEx", api.gemm_ex);
        lib.resolve("cublasGetStatusName", api.status_name);
        lib.resolve("cublasGetStatusString", api.status_string);
        api.library = lib.name;
        error = lib.error;
    });
    if (!error.empty()) return unsupported("%s", error.c_str());
    return &api;
}

}  // namespace

Result<std::string> cublas_library() {
    TCA_ASSIGN_OR_RETURN(const CublasApi* api, cublas_api());
    return api->library;
}

namespace {

Status cublas_status(const CublasApi& api, cublasStatus_t s, const char* what) {
    if (s == CUBLAS_STATUS_SUCCESS) return Status();
    return device_error("cuda: cuBLAS %s failed: %s (%s)", what, api.status_name(s), api.status_string(s));
}

// The handle runs on the backend's stream; CUBLAS_DEFAULT_MATH keeps f32 GEMMs in full f32 (no
// TF32) while 16-bit inputs still use tensor cores with f32 accumulation.
Status configure(const CublasApi& api, cublasHandle_t h) {
    TCA_RETURN_IF_ERROR(cublas_status(api, api.set_stream(h, cu_stream()), "cublasSetStream"));
    return cublas_status(api, api.set_math_mode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
}

// The process's cuBLAS handle, bound to the backend's stream, created on first use and kept
// until exit (destroying it from a static destructor could run after the CUDA runtime's own
// teardown).
Result<cublasHandle_t> cublas_handle(const CublasApi& api) {
    static std::mutex mu;
    static cublasHandle_t handles[kMaxDevices] = {};  // one per device (each on its stream)
    cublasHandle_t& handle = handles[current_device()];
    std::lock_guard<std::mutex> lock(mu);
    if (handle == nullptr) {
        cublasHandle_t h = nullptr;
        TCA_RETURN_IF_ERROR(cublas_status(api, api.create(&h), "cublasCreate"));
        const Status s = configure(api, h);
        if (!s.ok()) {
            api.destroy(h);
            return s;
        }
        handle = h;
    }
    return handle;
}

// A 2-d launch over [n_rows, n_cols]: blockIdx.y walks rows, x-threads walk columns; both loop
// when the grid is capped.
dim3 rows_grid(int64_t n_rows, int64_t n_cols) {
    const int64_t gx = std::min<int64_t>((n_cols + kThreads - 1) / kThreads, 1024);
    const int64_t gy = std::min<int64_t>(n_rows, 65535);
    return dim3(static_cast<unsigned>(std::max<int64_t>(gx, 1)), static_cast<unsigned>(gy));
}

__device__ inline void store_as(float* p, float v) { *p = v; }
__device__ inline void store_as(__half* p, float v) { *p = __float2half_rn(v); }
__device__ inline void store_as(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

__device__ inline float widen(__half v) { return __half2float(v); }
__device__ inline float widen(__nv_bfloat16 v) { return __bfloat162float(v); }

// out[r, c] = T(x[r * x_ld + c]) rounded to nearest even; out rows packed (row stride n_cols).
template <class T>
__global__ void pack_rows_kernel(const float* __restrict__ x, int64_t x_ld, int64_t n_rows,
                                 int64_t n_cols, T* __restrict__ out) {
    for (int64_t r = blockIdx.y; r < n_rows; r += gridDim.y) {
        for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < n_cols;
             c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
            store_as(out + r * n_cols + c, x[r * x_ld + c]);
        }
    }
}

// out[e] = float(w[e]) for the n packed 16-bit weights (exact).
template <class T>
__global__ void widen_kernel(const T* __restrict__ w, int64_t n, float* __restrict__ out) {
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        out[e] = widen(w[e]);
    }
}

// y[r, c] = (s[r, c] + bias[c]) + residual[r, c], bias and residual optional (null). s may be
// y, and residual may be y (each element is read before it is written, by the same thread).
__global__ void epilogue_kernel(const float* s, int64_t s_ld, float* y, int64_t y_ld,
                                int64_t n_rows, int64_t n_cols, const float* __restrict__ bias,
                                int64_t bias_stride, const float* residual, int64_t res_ld) {
    for (int64_t r = blockIdx.y; r < n_rows; r += gridDim.y) {
        for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < n_cols;
             c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
            float v = s[r * s_ld + c];
            if (bias) v += bias[c * bias_stride];
            if (residual) v += residual[r * res_ld + c];
            y[r * y_ld + c] = v;
        }
    }
}

template <class T>
Status pack_rows(const TensorView& x, int64_t n_rows, int64_t n_cols, T* out) {
    pack_rows_kernel<T><<<rows_grid(n_rows, n_cols), kThreads, 0, cu_stream()>>>(
        x.ptr<const float>(), x.stride[0], n_rows, n_cols, out);
    return launch_status("matmul: pack_rows_kernel");
}

template <class T>
Status widen_weights(const void* w, int64_t n, float* out) {
    const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 4096);
    widen_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, cu_stream()>>>(
        static_cast<const T*>(w), n, out);
    return launch_status("matmul: widen_kernel");
}

// ---- GEMV (decode): y[o] = sum_i round(x[i]) * w[o, i] (+ bias[o]) for one row of x.
// tca_gpu_bench on an H100 (session 8): faster than pack_rows + cuBLAS for one row (LLaMA-8B
// shapes: 2.3-3.2 TB/s against 0.8-2.9), slower for 4 rows (the x loads and roundings per
// weight grow with the rows), so only one row takes this path.
constexpr int kGemvWarps = 4;  // output rows per block
constexpr int kGemvUnroll = 4;  // 16-byte weight loads in flight per lane

// v rounded to T (nearest even, as pack_rows stores it) and widened back.
template <class T>
__device__ inline float round_to(float v) {
    T r;
    store_as(&r, v);
    return widen(r);
}
__device__ inline float2 widen2(uint32_t bits, __half) {
    return __half22float2(*reinterpret_cast<const __half2*>(&bits));
}
__device__ inline float2 widen2(uint32_t bits, __nv_bfloat16) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits));
}

// acc += the 8 weights of wv times x[i .. i + 7] (rounded to T). VX: x is 16-byte aligned
// (float4 loads), else scalar loads.
template <class T, bool VX>
__device__ inline void gemv_accumulate(const uint4& wv, const float* __restrict__ x, int64_t i, float& acc) {
    const uint32_t wbits[4] = {wv.x, wv.y, wv.z, wv.w};
    float xv[8];
    if constexpr (VX) {
        const float4 a = __ldg(reinterpret_cast<const float4*>(x + i));
        const float4 b = __ldg(reinterpret_cast<const float4*>(x + i + 4));
        xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w;
        xv[4] = b.x, xv[5] = b.y, xv[6] = b.z, xv[7] = b.w;
    } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) xv[e] = __ldg(x + i + e);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float2 w2 = widen2(wbits[j], T{});
        // Products of two 16-bit values are exact in f32, so the fma rounds only the sum.
        acc = fmaf(w2.x, round_to<T>(xv[2 * j]), acc);
        acc = fmaf(w2.y, round_to<T>(xv[2 * j + 1]), acc);
    }
}

// y[row] = (dot + bias) + residual, bias and residual optional (null); y may be residual
// (residual[row] is read before y[row] is written).
__device__ inline void gemv_store(float dot, int64_t row, float* y, const float* __restrict__ bias,
                                  int64_t bias_stride, const float* residual) {
    float out = bias ? dot + bias[row * bias_stride] : dot;
    if (residual) out += residual[row];
    y[row] = out;
}

// y and residual may be the same array (not __restrict__): lane 0 reads residual[row] before
// it writes y[row].
template <class T, bool VX>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(const T* __restrict__ w, int64_t n_in, int64_t n_out, const float* __restrict__ x,
                float* y, const float* __restrict__ bias, int64_t bias_stride, const float* residual) {
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
    if (row >= n_out) return;  // the whole warp leaves together
    const uint4* wr = reinterpret_cast<const uint4*>(w + row * n_in);
    const int64_t n_vec = n_in / 8;
    float acc = 0.0f;
    int64_t v = lane;
    for (; v + 32 * (kGemvUnroll - 1) < n_vec; v += 32 * kGemvUnroll) {
        uint4 wv[kGemvUnroll];
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) wv[u] = __ldcs(wr + v + 32 * u);  // read once: streaming
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) gemv_accumulate<T, VX>(wv[u], x, (v + 32 * u) * 8, acc);
    }
    for (; v < n_vec; v += 32) gemv_accumulate<T, VX>(__ldcs(wr + v), x, v * 8, acc);
    acc = rowops::warp_sum(acc);
    if (lane == 0) gemv_store(acc, row, y, bias, bias_stride, residual);
}

// ---- the staged GEMV: the input row in shared memory, rounded to T once per CTA.
constexpr int kStagedRows = rowops::kThreads / 32;  // one warp per row; rms_norm's CTA size
constexpr size_t kStagedMaxBytes = 200 * 1024;      // the input row in shared memory, at most

// acc += the 8 weights of wv times the 8 staged inputs xv (both T): the same fmaf sequence as
// gemv_accumulate.
template <class T>
__device__ inline void gemv_dot8(const uint4& wv, const uint4& xv, float& acc) {
    const uint32_t wbits[4] = {wv.x, wv.y, wv.z, wv.w};
    const uint32_t xbits[4] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float2 w2 = widen2(wbits[j], T{});
        const float2 x2 = widen2(xbits[j], T{});
        acc = fmaf(w2.x, x2.x, acc);
        acc = fmaf(w2.y, x2.y, acc);
    }
}

// y[row] = dot(w[row], in) (+ bias) (+ residual) for kStagedRows rows per CTA, in = x or its
// MatmulInput op (aux: the norm weight with stride aux_stride, or swiglu's up row), rounded to
// T in shared memory (n_in * sizeof(T) bytes of dynamic shared memory). Each lane walks its
// 16-byte weight vectors lane, lane + 32, ... in ascending order, as gemv_kernel does, so the
// sums are bitwise gemv_kernel's. y and residual may be the same array (lane 0 reads
// residual[row] before it writes y[row]); every CTA reads all of x (and aux), which y never
// overlaps (validate).
template <class T, MatmulInput kIn>
__global__ void __launch_bounds__(rowops::kThreads)
    gemv_staged_kernel(const T* __restrict__ w, int64_t n_in, int64_t n_out, const float* __restrict__ x,
                       const float* __restrict__ aux, int64_t aux_stride, float eps, float* y,
                       const float* __restrict__ bias, int64_t bias_stride, const float* residual) {
    extern __shared__ uint4 gemv_stage[];
    __shared__ float red[rowops::kThreads / 32 + 1];
    T* xs = reinterpret_cast<T*>(gemv_stage);
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kStagedRows + (threadIdx.x >> 5);
    const bool active = row < n_out;
    const uint4* wr = reinterpret_cast<const uint4*>(w + (active ? row : 0) * n_in);
    const int64_t n_vec = n_in / 8;
    // The first weights in flight while the input is staged.
    uint4 next[kGemvUnroll];
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) {
        const int64_t v = lane + 32 * u;
        next[u] = active && v < n_vec ? __ldcs(wr + v) : make_uint4(0, 0, 0, 0);
    }
    float scale = 1.0f;
    if constexpr (kIn == MatmulInput::kRmsNorm) scale = rowops::rms_scale(x, n_in, eps, red);
    for (int64_t i = threadIdx.x; i < n_in; i += rowops::kThreads) {
        float v;
        if constexpr (kIn == MatmulInput::kRmsNorm) {
            v = rowops::rms_apply(x[i], scale, aux[i * aux_stride]);
        } else if constexpr (kIn == MatmulInput::kSwiglu) {
            v = rowops::swiglu_value(x[i], aux[i]);
        } else {
            v = x[i];
        }
        store_as(xs + i, v);
    }
    __syncthreads();
    if (!active) return;  // after the barrier: every thread staged its part
    const uint4* xv = reinterpret_cast<const uint4*>(xs);
    float acc = 0.0f;
    for (int64_t v0 = lane; v0 < n_vec; v0 += 32 * kGemvUnroll) {
        uint4 cur[kGemvUnroll];
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) cur[u] = next[u];
        const int64_t v1 = v0 + 32 * kGemvUnroll;
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) {
            if (v1 + 32 * u < n_vec) next[u] = __ldcs(wr + v1 + 32 * u);  // read once: streaming
        }
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) {
            if (v0 + 32 * u < n_vec) gemv_dot8<T>(cur[u], xv[v0 + 32 * u], acc);
        }
    }
    acc = rowops::warp_sum(acc);
    if (lane == 0) gemv_store(acc, row, y, bias, bias_stride, residual);
}

template <class T, MatmulInput kIn>
Status gemv_staged_launch(const MatmulParams& p, const float* aux, int64_t aux_stride) {
    const int64_t n_in = p.w.n_cols, n_out = p.w.n_rows;
    const size_t smem = static_cast<size_t>(n_in) * sizeof(T);
    auto* kernel = gemv_staged_kernel<T, kIn>;
    if (smem > 48 * 1024) {
        // Above the default limit the kernel must opt in, on each device (once per size it
        // grows to there).
        static std::atomic<size_t> allowed[kMaxDevices];
        std::atomic<size_t>& a = allowed[current_device()];
        if (smem > a.load()) {
            TCA_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                          static_cast<int>(smem)));
            a.store(smem);
        }
    }
    const auto blocks = static_cast<unsigned>((n_out + kStagedRows - 1) / kStagedRows);
    kernel<<<blocks, rowops::kThreads, smem, cu_stream()>>>(
        static_cast<const T*>(p.w.data), n_in, n_out, p.x.ptr<const float>(), aux, aux_stride, p.norm_eps,
        p.y.ptr<float>(), p.bias.empty() ? nullptr : p.bias.ptr<const float>(),
        p.bias.empty() ? 0 : p.bias.stride[0], p.residual.empty() ? nullptr : p.residual.ptr<const float>());
    return launch_status("matmul: gemv_staged_kernel");
}

template <class T>
Status gemv_staged(const MatmulParams& p) {
    switch (p.input) {
        case MatmulInput::kRmsNorm:
            return gemv_staged_launch<T, MatmulInput::kRmsNorm>(p, p.norm_weight.ptr<const float>(),
                                                                p.norm_weight.stride[0]);
        case MatmulInput::kSwiglu:
            return gemv_staged_launch<T, MatmulInput::kSwiglu>(p, p.up.ptr<const float>(), 1);
        default: return gemv_staged_launch<T, MatmulInput::kX>(p, nullptr, 0);
    }
}

template <class T>
Status gemv(const MatmulParams& p) {
    const int64_t n_in = p.w.n_cols, n_out = p.w.n_rows;
    const auto* w = static_cast<const T*>(p.w.data);
    const float* x = p.x.ptr<const float>();
    const float* bias = p.bias.empty() ? nullptr : p.bias.ptr<const float>();
    const int64_t bias_stride = p.bias.empty() ? 0 : p.bias.stride[0];
    const float* residual = p.residual.empty() ? nullptr : p.residual.ptr<const float>();
    const auto blocks = static_cast<unsigned>((n_out + kGemvWarps - 1) / kGemvWarps);
    if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {
        gemv_kernel<T, true><<<blocks, kGemvWarps * 32, 0, cu_stream()>>>(w, n_in, n_out, x, p.y.ptr<float>(),
                                                                            bias, bias_stride, residual);
    } else {
        gemv_kernel<T, false><<<blocks, kGemvWarps * 32, 0, cu_stream()>>>(w, n_in, n_out, x, p.y.ptr<float>(),
                                                                             bias, bias_stride, residual);
    }
    return launch_status("matmul: gemv_kernel");
}

// TCA_CUDA_GEMV=0|1|2 in the environment starts with cuBLAS, gemv_kernel (the default) or the
// staged kernel for the decode shape (A/B runs of the engine). The staged kernel is not the
// default yet: its one end-to-end run (H100, session 10, with the RMSNorms and SwiGLU folded
// in) decoded 0.1-0.2 ms per token slower than gemv_kernel had in session 9 on another
// machine, and the same-call A/B is still to be run (docs/perf/gpu.md).
std::atomic<GemvKernel> g_gemv{[] {
    const char* e = std::getenv("TCA_CUDA_GEMV");
    const std::string v = e ? e : "";
    return v == "0" ? GemvKernel::kOff : v == "2" ? GemvKernel::kStaged : GemvKernel::kRegisters;
}()};

// The MatmulInput op of p.x into scratch slot 3, by the op's own kernel; p then multiplies it.
Status materialize_input(MatmulParams& p) {
    const int64_t n_tokens = p.x.shape[0], n_in = p.w.n_cols;
    TCA_ASSIGN_OR_RETURN(void* buf, scratch(static_cast<size_t>(n_tokens * n_in) * 4, 3));
    const TensorView in = make_view(buf, DType::kF32, {n_tokens, n_in});
    TCA_RETURN_IF_ERROR(p.input == MatmulInput::kRmsNorm ? rms_norm(RmsNormParams{p.x, p.norm_weight, in, p.norm_eps})
                                                         : swiglu(SwigluParams{p.x, p.up, in}));
    p = matmul_of_input(p, in);
    return Status();
}

}  // namespace

void set_matmul_gemv(GemvKernel k) { g_gemv.store(k); }
GemvKernel matmul_gemv() { return g_gemv.load(); }

Status matmul(const MatmulParams& params) {
    TCA_RETURN_IF_ERROR(validate(params));
    MatmulParams p = params;
    const GgmlType wt = p.w.type;
    if (wt != GgmlType::kF32 && wt != GgmlType::kF16 && wt != GgmlType::kBF16) {
        return unsupported("matmul: weight type %s is not supported on the cuda device (F32, F16 "
                           "and BF16 are; the GPU engine dequantizes at load)",
                           ggml_type_name(wt));
    }
    const int64_t n_tokens = p.x.shape[0], n_in = p.w.n_cols, n_out = p.w.n_rows;
    if (n_tokens == 0) return Status();
    if (n_tokens > INT_MAX || n_in > INT_MAX || n_out > INT_MAX) {
        return unsupported("matmul: [%lld tokens, %lld in, %lld out] exceeds cuBLAS's 32-bit "
                           "dimensions on the cuda device", static_cast<long long>(n_tokens),
                           static_cast<long long>(n_in), static_cast<long long>(n_out));
    }
    // y^T's leading dimension: the row stride (any value when there is one row).
    const int64_t ldc = n_tokens == 1 ? n_out : p.y.stride[0];
    if (ldc < n_out || ldc > INT_MAX) {
        return unsupported("matmul: y row stride %lld is not supported on the cuda device (needs "
                           "n_out = %lld <= stride < 2^31)", static_cast<long long>(p.y.stride[0]),
                           static_cast<long long>(n_out));
    }

    const bool half_w = wt != GgmlType::kF32;
    const bool native = p.act == MatmulActivations::kWeightDotType && half_w;
    const bool gemv_shape = native && n_tokens == 1 && n_in % 8 == 0 && reinterpret_cast<uintptr_t>(p.w.data) % 16 == 0;
    const GemvKernel kernel = matmul_gemv();
    if (gemv_shape && kernel == GemvKernel::kStaged && static_cast<size_t>(n_in) * 2 <= kStagedMaxBytes) {
        return wt == GgmlType::kF16 ? gemv_staged<__half>(p) : gemv_staged<__nv_bfloat16>(p);
    }
    if (p.input != MatmulInput::kX) TCA_RETURN_IF_ERROR(materialize_input(p));
    if (gemv_shape && kernel != GemvKernel::kOff) {
        return wt == GgmlType::kF16 ? gemv<__half>(p) : gemv<__nv_bfloat16>(p);
    }
    const void* a = p.w.data;
    cudaDataType a_type = CUDA_R_32F;
    const void* b = p.x.data;
    cudaDataType b_type = CUDA_R_32F;
    int64_t ldb = n_tokens == 1 ? n_in : p.x.stride[0];
    if (native) {
        // Activations in the weight's dot type (ops.h): rows rounded to f16/bf16, packed.
        TCA_ASSIGN_OR_RETURN(void* xs, scratch(static_cast<size_t>(n_tokens * n_in) * 2, 0));
        if (wt == GgmlType::kF16) {
            TCA_RETURN_IF_ERROR(pack_rows(p.x, n_tokens, n_in, static_cast<__half*>(xs)));
            a_type = b_type = CUDA_R_16F;
        } else {
            TCA_RETURN_IF_ERROR(pack_rows(p.x, n_tokens, n_in, static_cast<__nv_bfloat16*>(xs)));
            a_type = b_type = CUDA_R_16BF;
        }
        b = xs;
        ldb = n_in;
    } else {
        if (ldb < n_in || ldb > INT_MAX) {
            // Overlapping or huge row strides: pack the rows first (f32, exact).
            TCA_ASSIGN_OR_RETURN(void* xs, scratch(static_cast<size_t>(n_tokens * n_in) * 4, 0));
            TCA_RETURN_IF_ERROR(pack_rows(p.x, n_tokens, n_in, static_cast<float*>(xs)));
            b = xs;
            ldb = n_in;
        }
        if (half_w) {
            // kF32 activations with 16-bit weights: widen the weights (exact, slow; see header).
            TCA_ASSIGN_OR_RETURN(void* ws, scratch(static_cast<size_t>(n_out * n_in) * 4, 1));
            if (wt == GgmlType::kF16) {
                TCA_RETURN_IF_ERROR(widen_weights<__half>(p.w.data, n_out * n_in, static_cast<float*>(ws)));
            } else {
                TCA_RETURN_IF_ERROR(
                    widen_weights<__nv_bfloat16>(p.w.data, n_out * n_in, static_cast<float*>(ws)));
            }
            a = ws;
        }
    }

    // The residual: the epilogue kernel adds bias then residual after a beta-0 GEMM, whose
    // output goes to scratch slot 2 when y is the residual (in place). Not beta = 1: cuBLAS may
    // then add y inside a split-K reduction, which rounds otherwise than matmul then add.
    const bool has_res = !p.residual.empty();
    const bool in_place = has_res && p.y.data == p.residual.data;
    float* c = p.y.ptr<float>();
    int64_t c_ld = ldc;
    if (in_place) {
        TCA_ASSIGN_OR_RETURN(void* cs, scratch(static_cast<size_t>(n_tokens * n_out) * 4, 2));
        c = static_cast<float*>(cs);
        c_ld = n_out;
    }
    TCA_ASSIGN_OR_RETURN(const CublasApi* api, cublas_api());
    TCA_ASSIGN_OR_RETURN(cublasHandle_t handle, cublas_handle(*api));
    const float alpha = 1.0f, beta = 0.0f;
    TCA_RETURN_IF_ERROR(cublas_status(
        *api, api->gemm_ex(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n_out),
                           static_cast<int>(n_tokens), static_cast<int>(n_in), &alpha, a, a_type,
                           static_cast<int>(n_in), b, b_type, static_cast<int>(ldb), &beta, c,
                           CUDA_R_32F, static_cast<int>(c_ld), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx (matmul)"));

    if (!p.bias.empty() || has_res) {
        epilogue_kernel<<<rows_grid(n_tokens, n_out), kThreads, 0, cu_stream()>>>(
            c, c_ld, p.y.ptr<float>(), ldc, n_tokens, n_out,
            p.bias.empty() ? nullptr : p.bias.ptr<const float>(), p.bias.empty() ? 0 : p.bias.stride[0],
            has_res ? p.residual.ptr<const float>() : nullptr, has_res ? p.residual.stride[0] : 0);
        TCA_RETURN_IF_ERROR(launch_status("matmul: epilogue_kernel"));
    }
    return Status();
}

}  // namespace tca::cuda
