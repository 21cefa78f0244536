// Per-row pieces of the model ops that matmul can fold into its input (MatmulInput):
// model_ops.cu's rms_norm and swiglu kernels and matmul.cu's staged GEMV run this same code,
// so the folded input is bitwise what the separate op stores.
#pragma once

#include <cstdint>

namespace tca::cuda::rowops {

// rms_norm's CTA size; the order of its sum of squares depends on it.
constexpr int kThreads = 256;

__device__ inline float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// 1 / sqrt(mean(xr[0..dim)^2) + eps), returned to every thread of a CTA of kThreads threads
// (all must call it): per-thread strided FMA partials, warp-shuffle trees, the scale in double
// as on the CPU. sm: kThreads / 32 + 1 floats of shared memory, free again after the caller's
// next barrier.
__device__ inline float rms_scale(const float* xr, int64_t dim, float eps, float* sm) {
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < dim; i += kThreads) ss = fmaf(xr[i], xr[i], ss);
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) sm[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < kThreads / 32 ? sm[threadIdx.x] : 0.0f;
        v = warp_sum(v);
        if (threadIdx.x == 0) {
            sm[kThreads / 32] = static_cast<float>(
                1.0 / sqrt(static_cast<double>(v) / static_cast<double>(dim) + static_cast<double>(eps)));
        }
    }
    __syncthreads();
    return sm[kThreads / 32];
}

// One element of rms_norm's output: x * scale * w, in that order, in f32.
__device__ inline float rms_apply(float x, float scale, float w) { return x * scale * w; }

// One element of swiglu's output: silu(g) * u, silu(g) = g / (1 + expf(-g)) (CUDA expf, <= 2
// ulp; no fast math).
__device__ inline float swiglu_value(float g, float u) { return g / (1.0f + expf(-g)) * u; }

}  // namespace tca::cuda::rowops
