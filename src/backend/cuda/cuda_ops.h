// The CUDA backend's ops (src/backend/cuda): same Params and validation as every backend
// (backend/ops.h), called through ops::<op>(Device::kCuda, p). Plain C++: no CUDA header here.
//
// Memory: every TensorView / MatrixView passed to a CUDA op points to device memory
// (cuda_runtime.h allocates it), except EmbedParams::ids and RopeParams::positions, which stay
// in host memory on every device (the op uploads them; validation reads them on the host).
//
// Numerics (docs/numerics.md, "CUDA"): attention_dense and sparse_prefill run on bf16 tensor
// cores (q, K, V and the probabilities P rounded to bf16, or to f16 when K/V are stored as f16;
// f32 accumulation and softmax) — the Hopper wgmma kernel where it applies (attention_wgmma.h),
// else the mma.sync kernel (attention_prefill.h); every other op computes in f32 like the CPU
// backend.
// All ops are asynchronous on the backend's stream (cuda::stream()); errors of a launch are
// returned, errors inside a kernel surface at the next synchronize().
#pragma once

#include <string>

#include "backend/ops.h"

namespace tca::cuda {

#define TCA_CUDA_DECLARE_OP(name, Params) Status name(const Params& p);
TCA_FOR_EACH_OP(TCA_CUDA_DECLARE_OP)
TCA_FOR_EACH_MODEL_OP(TCA_CUDA_DECLARE_OP)
#undef TCA_CUDA_DECLARE_OP

// Opens cuBLAS (matmul's library, loaded at run time; needs no GPU) and resolves the entry
// points matmul calls: the file it loaded, or a one-line error naming what is missing.
Result<std::string> cublas_library();

// matmul with 16-bit weights in kWeightDotType mode and one row of x runs the backend's own
// GEMV kernel (one warp per output row, weights streamed in 16-byte loads, bias and residual
// fused) instead of pack_rows + cuBLAS: the decode step's shape, where each weight is read
// once. kRegisters (session 8's kernel, the default): every warp rounds x in registers, a
// MatmulInput op runs first as its own kernel; kStaged: each CTA rounds its input row into
// shared memory once and computes a MatmulInput op (rms_norm, swiglu) there; kOff: always
// cuBLAS. The two kernels give bitwise equal results. tca_gpu_bench measures them; the
// environment variable TCA_CUDA_GEMV=0|1|2 (off, registers, staged) starts a process with one.
enum class GemvKernel { kOff = 0, kRegisters = 1, kStaged = 2 };
void set_matmul_gemv(GemvKernel kernel);
GemvKernel matmul_gemv();

// kv_compact moves rows in parallel over (row chunk, KV head) CTAs through a scratch copy
// (gather, scatter, counters); serial: the single-CTA-per-head in-place move instead (A/B
// timing and its parity tests; the environment variable TCA_CUDA_KVC_SERIAL=1 starts a
// process with it on). Both give the same bits.
void set_kv_compact_serial(bool on);
bool kv_compact_serial();

}  // namespace tca::cuda
