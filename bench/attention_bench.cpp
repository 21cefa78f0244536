// CPU attention benchmark (attention_bench.h). Inputs are seeded normal values; the timing of
// both paths depends only on shapes and budgets, which the log-Gaussian configuration fixes.
// One untimed warm-up of each path, then per length `reps` timed runs of each, alternating,
// median reported (wall time and process CPU time).
#include "attention_bench.h"

#include <algorithm>
#include <cmath>

#include "backend/tca_attention.h"
#include "bench_common.h"
#include "core/host_tensor.h"
#include "core/rng.h"
#include "core/strings.h"
#include "core/thread_pool.h"
#include "reference/ref_ops.h"

namespace tca::bench {
namespace {

Result<DType> parse_kv_dtype(const std::string& name) {
    if (name == "f32") return DType::kF32;
    if (name == "f16") return DType::kF16;
    if (name == "bf16") return DType::kBF16;
    return invalid_argument("--dtype must be f32, f16 or bf16, got '%s'", name.c_str());
}

void fill_normal(HostTensor& t, Rng& rng) {
    for (int64_t i = 0; i < t.numel(); ++i) {
        store_from_f32(t.view().data, i, t.view().dtype, static_cast<float>(rng.normal()));
    }
}

// Query-key pairs TCA attends (sum over query heads and positions of the visible set), from
// the selection actually made: the exact FLOP count of the sparse attention.
double tca_pairs(const TcaPrefillWorkspace& ws, int64_t n_tokens, int64_t group) {
    const int64_t b = ws.opt.block_size, w = ws.opt.local_window;
    const int64_t n = n_candidate_blocks(n_tokens, w, b);
    const TensorView pos = ws.global_pos.view();
    double pairs = 0;
    for (int64_t h = 0; h < ws.n_selected.view().shape[0]; ++h) {
        const int64_t ng = ws.n_selected.data<int32_t>()[h];
        const int32_t* gp = pos.ptr<int32_t>() + h * pos.stride[0];
        int64_t seen = 0;
        for (int64_t i = 0; i < n_tokens; ++i) {
            const int64_t band0 = visible_blocks(i, w, b, n) * b;
            while (seen < ng && gp[seen] < band0) ++seen;
            pairs += static_cast<double>(seen + (i - band0 + 1));
        }
    }
    return pairs * static_cast<double>(group);
}

double max_abs_diff(const HostTensor& a, const HostTensor& b) {
    double m = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
        const double d = std::fabs(static_cast<double>(a.data<float>()[i]) - b.data<float>()[i]);
        if (!(d <= m)) m = d;  // NaN propagates as the maximum
    }
    return m;
}

// Both paths on a small problem of the same head shapes against the float64 reference.
Status validate_paths(const AttentionBenchOptions& opt, DType dtype, std::FILE* out) {
    SparseOptions so;
    so.block_size = 16;
    so.local_window = 64;
    const int64_t L = so.local_window + 5 * so.block_size + 7;
    Rng rng(opt.seed + 1000);
    HostTensor q(DType::kF32, {opt.n_q_heads, L, opt.head_dim});
    HostTensor k(dtype, {opt.n_kv_heads, L, opt.head_dim}), v(dtype, {opt.n_kv_heads, L, opt.head_dim});
    fill_normal(q, rng);
    fill_normal(k, rng);
    fill_normal(v, rng);
    TCA_ASSIGN_OR_RETURN(HeadConfig cfg, config_for_keep_fraction(opt.keep, so.block_size));
    const std::vector<HeadConfig> configs(static_cast<size_t>(opt.n_kv_heads), cfg);
    double worst = 0;
    for (int path = 0; path < 2; ++path) {
        HostTensor got(DType::kF32, {opt.n_q_heads, L, opt.head_dim});
        HostTensor want(DType::kF32, {opt.n_q_heads, L, opt.head_dim});
        if (path == 0) {
            AttentionDenseParams p{q.view(), k.view(), v.view(), got.view(), 0, 0.0f};
            TCA_RETURN_IF_ERROR(ops::attention_dense(opt.device, p));
            p.out = want.view();
            TCA_RETURN_IF_ERROR(ref::attention_dense(p));
        } else {
            TcaPrefillWorkspace ws(opt.n_kv_heads, L, opt.head_dim, dtype, so);
            TCA_RETURN_IF_ERROR(tca_prefill_attention(opt.device, q.view(), k.view(), v.view(),
                                                      got.view(), configs, ws, nullptr));
            // The reference attends the same selection (selection parity is a test's job).
            const int64_t n = n_candidate_blocks(L, so.local_window, so.block_size);
            SparsePrefillParams p{q.view(), k.view(), v.view(), ws.k_global.view(),
                                  ws.v_global.view(), ws.global_pos.view(), ws.n_selected.view(),
                                  want.view(), 0, n, so.block_size, so.local_window, 0.0f};
            TCA_RETURN_IF_ERROR(ref::sparse_prefill(p));
        }
        worst = std::max(worst, max_abs_diff(got, want));
    }
    std::fprintf(out, "validation vs float64 reference (L=%lld, b=%d, w=%d): max abs error %.3g\n",
                 static_cast<long long>(L), so.block_size, so.local_window, worst);
    if (!(worst < 1e-3)) {
        return invalid_argument("benchmark validation failed: max abs error %g vs the float64 "
                                "reference", worst);
    }
    return Status();
}

}  // namespace

Status run_attention_bench(const AttentionBenchOptions& opt, std::FILE* out) {
    TCA_ASSIGN_OR_RETURN(DType dtype, parse_kv_dtype(opt.dtype));
    SparseOptions so;
    so.block_size = static_cast<int>(opt.block_size);
    so.local_window = static_cast<int>(opt.local_window);
    TCA_RETURN_IF_ERROR(validate(so));
    TCA_RETURN_IF_ERROR(validate_head_dim(opt.head_dim, "bench"));
    if (opt.n_kv_heads < 1 || opt.n_q_heads % opt.n_kv_heads != 0) {
        return invalid_argument("--heads (%lld) must be a multiple of --kv-heads (%lld)",
                                static_cast<long long>(opt.n_q_heads),
                                static_cast<long long>(opt.n_kv_heads));
    }
    if (opt.reps < 1) return invalid_argument("--reps must be >= 1, got %lld", static_cast<long long>(opt.reps));
    if (opt.lengths.empty()) return invalid_argument("--lengths must list at least one length");
    for (int64_t L : opt.lengths) {
        if (L < 1 || L > (int64_t{1} << 24)) {
            return invalid_argument("--lengths: each length must be in [1, 16M], got %lld",
                                    static_cast<long long>(L));
        }
    }
    TCA_ASSIGN_OR_RETURN(HeadConfig cfg, config_for_keep_fraction(opt.keep, so.block_size));
    TCA_ASSIGN_OR_RETURN(JsonLines json, JsonLines::open(opt.json_path));
    const std::vector<HeadConfig> configs(static_cast<size_t>(opt.n_kv_heads), cfg);
    const int n_threads = thread_pool().n_threads();
    const std::string cpu = cpu_description(n_threads), rev = git_revision();

    std::fprintf(out, "tca attention benchmark: %s, git %s\n", cpu.c_str(), rev.c_str());
    std::fprintf(out, "%lld query heads / %lld KV heads, head_dim %lld, K/V %s, b=%d, w=%d, "
                 "configured keep %.0f%% (mu %.3f, sigma %.1f), median of %lld\n",
                 static_cast<long long>(opt.n_q_heads), static_cast<long long>(opt.n_kv_heads),
                 static_cast<long long>(opt.head_dim), opt.dtype.c_str(), so.block_size,
                 so.local_window, 100 * opt.keep, cfg.mu, cfg.sigma, static_cast<long long>(opt.reps));
    if (opt.validate) TCA_RETURN_IF_ERROR(validate_paths(opt, dtype, out));
    std::fprintf(out, "%8s %8s %11s %11s %9s %8s %8s %8s %10s %10s\n", "L", "kept", "dense ms",
                 "tca ms", "select %", "speedup", "cpu-time", "ceiling", "dense GF/s", "tca GF/s");

    const int64_t max_len = *std::max_element(opt.lengths.begin(), opt.lengths.end());
    TcaPrefillWorkspace ws(opt.n_kv_heads, max_len, opt.head_dim, dtype, so);
    const int64_t group = opt.n_q_heads / opt.n_kv_heads;
    for (int64_t L : opt.lengths) {
        Rng rng(opt.seed + static_cast<uint64_t>(L));
        HostTensor q(DType::kF32, {opt.n_q_heads, L, opt.head_dim});
        HostTensor k(dtype, {opt.n_kv_heads, L, opt.head_dim});
        HostTensor v(dtype, {opt.n_kv_heads, L, opt.head_dim});
        HostTensor o(DType::kF32, {opt.n_q_heads, L, opt.head_dim});
        fill_normal(q, rng);
        fill_normal(k, rng);
        fill_normal(v, rng);

        // Dense and TCA runs alternate so both see the same machine load; process CPU time is
        // recorded too (less sensitive to other processes on a shared machine). One untimed
        // warm-up of each path at the first length.
        std::vector<double> dense_ms, tca_ms, sel_ms, dense_cpu, tca_cpu;
        AttentionDenseParams dp{q.view(), k.view(), v.view(), o.view(), 0, 0.0f};
        const bool warm_up = L == opt.lengths.front();
        for (int64_t r = warm_up ? 0 : 1; r <= opt.reps; ++r) {
            double c0 = cpu_ms(), t0 = now_ms();
            TCA_RETURN_IF_ERROR(ops::attention_dense(opt.device, dp));
            if (r > 0) {
                dense_ms.push_back(now_ms() - t0);
                dense_cpu.push_back(cpu_ms() - c0);
            }
            TcaStageTimings t;
            c0 = cpu_ms();
            TCA_RETURN_IF_ERROR(tca_prefill_attention(opt.device, q.view(), k.view(), v.view(),
                                                      o.view(), configs, ws, &t));
            if (r > 0) {
                tca_cpu.push_back(cpu_ms() - c0);
                tca_ms.push_back(t.total_ms());
                sel_ms.push_back(t.selection_ms());
            }
        }
        const Stats d = summarize(dense_ms), t = summarize(tca_ms), s = summarize(sel_ms);
        const double cpu_speedup = summarize(dense_cpu).median / summarize(tca_cpu).median;
        const double dense_pairs = static_cast<double>(opt.n_q_heads) * static_cast<double>(L) *
                                   static_cast<double>(L + 1) / 2.0;
        const int64_t n = n_candidate_blocks(L, so.local_window, so.block_size);
        const double sparse_pairs = n > 0 ? tca_pairs(ws, L, group) : dense_pairs;
        double kept = 1.0;
        if (n > 0) {
            int64_t sel = 0;
            for (int64_t h = 0; h < opt.n_kv_heads; ++h) sel += ws.n_selected.data<int32_t>()[h];
            kept = static_cast<double>(sel) / static_cast<double>(n * so.block_size * opt.n_kv_heads);
        }
        const double flop_per_pair = 4.0 * static_cast<double>(opt.head_dim);
        const double dense_gflops = dense_pairs * flop_per_pair / (d.median * 1e6);
        const double tca_gflops = sparse_pairs * flop_per_pair / (t.median * 1e6);
        const double speedup = d.median / t.median, ceiling = dense_pairs / sparse_pairs;
        const double share = s.median / t.median;
        std::fprintf(out, "%8lld %7.1f%% %11.1f %11.1f %8.1f%% %7.2fx %7.2fx %7.2fx %10.1f %10.1f\n",
                     static_cast<long long>(L), 100 * kept, d.median, t.median, 100 * share,
                     speedup, cpu_speedup, ceiling, dense_gflops, tca_gflops);
        std::fflush(out);
        json.write(strformat(
            "{\"bench\":\"cpu_attention\",\"git\":\"%s\",\"device\":\"%s\",\"n_tokens\":%lld,"
            "\"n_q_heads\":%lld,\"n_kv_heads\":%lld,\"head_dim\":%lld,\"kv_dtype\":\"%s\","
            "\"block_size\":%d,\"local_window\":%d,\"keep_config\":%.4f,\"keep_actual\":%.4f,"
            "\"reps\":%lld,\"dense_ms\":{\"median\":%.3f,\"min\":%.3f,\"max\":%.3f},"
            "\"tca_ms\":{\"median\":%.3f,\"min\":%.3f,\"max\":%.3f},\"selection_ms\":%.3f,"
            "\"selection_share\":%.4f,\"speedup\":%.3f,\"speedup_cpu_time\":%.3f,\"flop_ceiling\":%.3f,"
            "\"dense_gflops\":%.2f,\"tca_gflops\":%.2f}",
            rev.c_str(), cpu.c_str(), static_cast<long long>(L),
            static_cast<long long>(opt.n_q_heads), static_cast<long long>(opt.n_kv_heads),
            static_cast<long long>(opt.head_dim), opt.dtype.c_str(), so.block_size,
            so.local_window, opt.keep, kept, static_cast<long long>(opt.reps), d.median, d.min,
            d.max, t.median, t.min, t.max, s.median, share, speedup, cpu_speedup, ceiling, dense_gflops,
            tca_gflops));
    }
    return Status();
}

}  // namespace tca::bench
