// Matmul benchmark (bench/model_ops_bench.h). Validates each configuration once against the
// float64 reference (first tokens only for prefill sizes), warms up, then reports the median of
// `reps` timings. Ceilings are measured in the same run: the f32 FMA peak (12 independent FMA
// chains per thread), the read bandwidth of a buffer of cold_bytes, and the round trip of an
// empty parallel_for.
//
// Results, 2 threads pinned (taskset) on the device machine's Xeon (AVX2 build for znver3;
// the development machine ran at load average 14, its timings were meaningless), two runs
// each, FMA peak 160-181 GFLOP/s, read 22-24 GB/s, parallel_for round trip 10-11 us:
//   type  n_out x n_in   tokens 1: GB/s hot / cold (GFLOP/s)   tokens 512: GFLOP/s (% peak)
//   F16    768 x  768    27-29 / 12.5-13.5 (27-30)             121-145 (75-83%)
//   F16   2048 x  768    27-32 / 12.4-13.3 (27-32)             131-148 (75-85%)
//   F16    768 x 2048    24-32 / 11-16     (24-32)             132-169 (75-93%)
//   Q8_0   768 x  768    15-18 /  9.0      (29-35)             130-137 (74-81%)
//   Q8_0  2048 x  768    13-17 /  8.8-10   (25-32)             116-145 (66-90%)
//   Q8_0   768 x 2048    13-18 /  9.1-10   (25-34)             121-166 (69-95%)
// (one outlier run of Q8_0 prefill at 84 GFLOP/s on the shared VM not counted). Q4_K/Q6_K:
// ~4-5.5 GB/s decode, 136-165 GFLOP/s prefill. Software row prefetch 16 KB ahead on the
// decode path then raised cold decode (A/B, same run, two runs each): F16 768x768 11.4 ->
// 14.5-17.2, 2048x768 13.6 -> 18.9-20.2, 768x2048 13.3 -> 15.0-16.2 GB/s; Q8_0 8.1 -> 10.3-10.9,
// 9.4 -> 14.7, 9.9 -> 10.6-11.9 GB/s (read ceiling 22-24 GB/s).
// Choice of f32 activations: the GEMM runs at 75-93% of the f32 FMA peak for every weight
// type (weights are dequantized once per 64-row panel), so weight precision does not change
// prefill speed; decode is bound by weight bytes (Q8_0 at ~9-10 GB/s cold, ~0.55 of F16's
// bytes). Quantizing activations to Q8_0 (llama.cpp's int8 maddubs path) could raise Q8_0
// prefill above the f32 FMA peak, at ~1e-2 relative error per dot product, far outside the
// 2x-naive-f32 rule; not done, and not yet measured against llama.cpp side by side.
#include "bench/model_ops_bench.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "backend/cpu/simd.h"
#include "backend/cpu/weight_decode.h"
#include "bench/bench_common.h"
#include "core/half.h"
#include "core/rng.h"
#include "core/thread_pool.h"
#include "model/ggml_quants.h"
#include "reference/ref_model_ops.h"

namespace tca::bench {
namespace {

Result<GgmlType> parse_type(const std::string& s) {
    const GgmlType all[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ8_0,
                            GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1,
                            GgmlType::kQ4_K, GgmlType::kQ6_K};
    for (GgmlType t : all) {
        if (s == ggml_type_name(t)) return t;
    }
    return invalid_argument("matmul bench: unknown weight type %s", s.c_str());
}

// Random weights: float types from N(0, 0.05), quant types via random valid blocks.
std::vector<uint8_t> make_weights(GgmlType t, int64_t rows, int64_t cols, Rng& rng) {
    const GgmlTypeTraits* tr = ggml_type_traits(t);
    if (tr->block_elems == 1 || t == GgmlType::kQ8_0 || t == GgmlType::kQ4_0) {
        std::vector<float> v(static_cast<size_t>(rows * cols));
        for (float& x : v) x = static_cast<float>(0.05 * rng.normal());
        return encode_from_f32(t, v.data(), rows * cols).value();
    }
    std::vector<uint8_t> out(static_cast<size_t>(rows * cols / tr->block_elems * tr->block_bytes));
    for (uint8_t& b : out) b = static_cast<uint8_t>(rng.next_u64());
    const int64_t n_blocks = rows * cols / tr->block_elems;
    const size_t d_off = t == GgmlType::kQ6_K ? 208 : 0;
    for (int64_t i = 0; i < n_blocks; ++i) {
        uint8_t* blk = out.data() + i * tr->block_bytes;
        const uint16_t h = f32_to_f16(0.001f);
        std::memcpy(blk + d_off, &h, 2);
        if (t == GgmlType::kQ4_1 || t == GgmlType::kQ5_1 || t == GgmlType::kQ4_K) std::memcpy(blk + 2, &h, 2);
    }
    return out;
}

// FMA peak in GFLOP/s on all pool threads (12 independent 8-lane FMA chains each).
double fma_peak_gflops() {
#if TCA_CPU_AVX2
    const int64_t iters = 20'000'000;
    std::atomic<double> sink{0.0};
    auto body = [&](int64_t, int) {
        __m256 a[12];
        for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(static_cast<float>(i) * 1e-3f);
        const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
        for (int64_t k = 0; k < iters; ++k) {
            for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
        }
        float s = 0;
        for (int i = 0; i < 12; ++i) s += cpu::lanes_sum(a[i]);
        sink.store(sink.load() + s);
    };
    const int n = thread_pool().n_threads();
    thread_pool().parallel_for(n, body);  // warm-up
    const double t0 = now_ms();
    thread_pool().parallel_for(n, body);
    const double ms = now_ms() - t0;
    return 2.0 * 8 * 12 * static_cast<double>(iters) * n / (ms * 1e6);
#else
    return 0.0;
#endif
}

// Read bandwidth in GB/s over `bytes` on all pool threads.
double read_gbps(int64_t bytes) {
    const int64_t n = bytes / 4;
    std::vector<float> buf(static_cast<size_t>(n), 1.0f);
    const int64_t chunk = 1 << 16;
    const int64_t n_items = n / chunk;
    std::atomic<double> sink{0.0};
    auto pass = [&] {
        thread_pool().parallel_for(n_items, [&](int64_t item, int) {
            const float* p = buf.data() + item * chunk;
            float s = 0;
#if TCA_CPU_AVX2
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t i = 0; i < chunk; i += 32) {
                a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
                a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
                a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
                a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
            }
            s = cpu::lanes_sum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#else
            for (int64_t i = 0; i < chunk; ++i) s += p[i];
#endif
            sink.store(sink.load() + s);
        });
    };
    pass();
    std::vector<double> ms;
    for (int r = 0; r < 5; ++r) {
        const double t0 = now_ms();
        pass();
        ms.push_back(now_ms() - t0);
    }
    return static_cast<double>(n_items * chunk * 4) / (summarize(ms).median * 1e6);
}

}  // namespace

Status run_matmul_bench(const MatmulBenchOptions& opt, std::FILE* out) {
    const int n_threads = thread_pool().n_threads();
    const double peak = fma_peak_gflops();
    const double bw = read_gbps(opt.cold_bytes);
    // Round trip of an empty parallel_for with one item per thread (the decode path pays it
    // once per matmul).
    std::vector<double> pf;
    for (int r = 0; r < 201; ++r) {
        const double t0 = now_ms();
        thread_pool().parallel_for(n_threads, [](int64_t, int) {});
        pf.push_back(now_ms() - t0);
    }
    std::fprintf(out, "matmul bench, %s, f32 FMA peak %.1f GFLOP/s, read bandwidth %.1f GB/s, "
                 "parallel_for round trip %.1f us (median)\n",
                 cpu_description(n_threads).c_str(), peak, bw, 1e3 * summarize(pf).median);
    std::fprintf(out, "%-5s %-6s %6s %6s %6s | %9s %9s %9s | %9s %9s\n", "type", "act", "n_out", "n_in",
                 "tokens", "ms", "GFLOP/s", "%peak", "GB/s hot", "GB/s cold");
    TCA_ASSIGN_OR_RETURN(JsonLines json, JsonLines::open(opt.json_path));
    Rng rng(opt.seed);
    for (const std::string& ts : opt.types) {
        TCA_ASSIGN_OR_RETURN(const GgmlType type, parse_type(ts));
        for (auto [n_out, n_in] : opt.shapes) {
            const std::vector<uint8_t> w = make_weights(type, n_out, n_in, rng);
            for (int64_t n_tok : opt.n_tokens) {
              for (MatmulActivations act : opt.acts) {
                std::vector<float> x(static_cast<size_t>(n_tok * n_in)), y(static_cast<size_t>(n_tok * n_out));
                for (float& v : x) v = static_cast<float>(rng.normal());
                MatmulParams p;
                p.x = make_view(x.data(), DType::kF32, {n_tok, n_in});
                p.w = MatrixView{w.data(), type, n_out, n_in};
                p.y = make_view(y.data(), DType::kF32, {n_tok, n_out});
                p.act = act;
                TCA_RETURN_IF_ERROR(cpu::matmul(p));
                if (opt.validate) {
                    const int64_t nv = std::min<int64_t>(n_tok, 6);
                    std::vector<float> yr(static_cast<size_t>(nv * n_out));
                    MatmulParams pr = p;
                    pr.x = make_view(x.data(), DType::kF32, {nv, n_in});
                    pr.y = make_view(yr.data(), DType::kF32, {nv, n_out});
                    TCA_RETURN_IF_ERROR(ref::matmul(pr));
                    double max_err = 0, max_ref = 0;
                    for (size_t i = 0; i < yr.size(); ++i) {
                        max_err = std::max(max_err, static_cast<double>(std::fabs(y[i] - yr[i])));
                        max_ref = std::max(max_ref, static_cast<double>(std::fabs(yr[i])));
                    }
                    if (!(max_err <= 1e-5 * std::max(1.0, max_ref) * std::sqrt(static_cast<double>(n_in)))) {
                        return invalid_argument("matmul bench: %s %lldx%lld validation failed: max "
                                                "error %g", ts.c_str(), (long long)n_out,
                                                (long long)n_in, max_err);
                    }
                }
                std::vector<double> ms;
                for (int64_t r = 0; r < opt.reps; ++r) {
                    const double t0 = now_ms();
                    TCA_RETURN_IF_ERROR(cpu::matmul(p));
                    ms.push_back(now_ms() - t0);
                }
                const Stats s = summarize(ms);
                const double flops = 2.0 * static_cast<double>(n_tok * n_in * n_out);
                const double wbytes = static_cast<double>(w.size());
                double cold = 0.0;
                if (n_tok <= 4) {
                    // Rotating copies: every call streams its weights from memory.
                    const int64_t n_copies = std::max<int64_t>(2, opt.cold_bytes / static_cast<int64_t>(w.size()));
                    std::vector<uint8_t> copies(static_cast<size_t>(n_copies) * w.size());
                    for (int64_t c = 0; c < n_copies; ++c) std::memcpy(copies.data() + c * w.size(), w.data(), w.size());
                    std::vector<double> cms;
                    for (int round = 0; round < 3; ++round) {
                        const double t0 = now_ms();
                        for (int64_t c = 0; c < n_copies; ++c) {
                            p.w.data = copies.data() + c * w.size();
                            TCA_RETURN_IF_ERROR(cpu::matmul(p));
                        }
                        cms.push_back((now_ms() - t0) / static_cast<double>(n_copies));
                    }
                    p.w.data = w.data();
                    cold = wbytes / (summarize(cms).median * 1e6);
                }
                const double gflops = flops / (s.median * 1e6);
                std::fprintf(out, "%-5s %-6s %6lld %6lld %6lld | %9.4f %9.1f %8.0f%% | %9.1f %9.1f\n",
                             ts.c_str(), matmul_activations_name(act), (long long)n_out, (long long)n_in, (long long)n_tok,
                             s.median, gflops, peak > 0 ? 100.0 * gflops / peak : 0.0,
                             wbytes / (s.median * 1e6), cold);
                char line[512];
                std::snprintf(line, sizeof line,
                              "{\"bench\":\"matmul\",\"git\":\"%s\",\"device\":\"%s\",\"type\":\"%s\",\"act\":\"%s\","
                              "\"n_out\":%lld,\"n_in\":%lld,\"n_tokens\":%lld,\"median_ms\":%.5f,"
                              "\"min_ms\":%.5f,\"max_ms\":%.5f,\"gflops\":%.2f,\"hot_gbps\":%.2f,"
                              "\"cold_gbps\":%.2f,\"fma_peak_gflops\":%.1f,\"read_gbps\":%.1f}",
                              git_revision().c_str(), cpu_description(n_threads).c_str(), ts.c_str(),
                              matmul_activations_name(act),
                              (long long)n_out, (long long)n_in, (long long)n_tok, s.median, s.min,
                              s.max, gflops, wbytes / (s.median * 1e6), cold, peak, bw);
                json.write(line);
              }
            }
        }
    }
    return Status();
}

}  // namespace tca::bench
