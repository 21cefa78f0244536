// tca_gpu_bench: one layer of LLaMA-3.1-8B-shaped attention on the CUDA backend, timed with CUDA
// events (median of --reps after --warmup): our dense causal prefill (the dispatch, i.e. the
// wgmma kernel on Hopper, and the mma.sync kernel alone), the TCA prefill pipeline per keep rate
// (each stage alone and the chain end to end), both again with the wgmma kernels' other
// main-loop schedule (--overlap: dense_prefill_serial and tca_prefill_overlap rows, checked
// bitwise; attention_wgmma.h), decode attention over a full cache and a
// device-to-device copy as the bandwidth ceiling. One JSON line per result (--out), a short
// table at the end; bench/gpu_peer.py measures the PyTorch peers in the same run and
// bench/gpu_report.py turns both files into the P1-P4/P8 ratios (docs/performance.md).
//
// A row that fails (no GPU, out of memory, an op the CUDA backend does not implement yet) is
// printed as one line and skipped; the exit code is 1 when any row failed.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/attention_prefill.h"
#include "backend/cuda/attention_wgmma.h"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/cuda_runtime.h"
#include "backend/ops.h"
#include "core/flags.h"
#include "core/half.h"
#include "core/status.h"
#include "core/tensor_view.h"
#include "sparse/head_budgets.h"
#include "sparse/sparse_options.h"

namespace tca {
namespace {

struct Options {
    std::vector<int64_t> lengths{8192, 32768, 65536, 131072};
    std::string keep = "0.1,0.2,0.4";
    int64_t heads = 32;
    int64_t kv_heads = 8;
    int64_t head_dim = 128;
    int64_t block_size = 128;
    int64_t local_window = 4096;
    int64_t reps = 10;
    int64_t warmup = 3;
    std::vector<int64_t> decode_lengths{32768, 131072};
    int64_t ffn = 14336;     // LLaMA-3.1-8B's MLP width
    int64_t vocab = 128256;  // and vocabulary
    std::vector<int64_t> matmul_tokens{1};  // more rows: both paths are cuBLAS
    int64_t copy_mib = 1024;
    std::string out;
    std::string git_sha = "unknown";
    bool dense = true, tca = true, decode = true, matmul = true;
    bool overlap = true;  // also the wgmma kernels' non-default main-loop schedule
};

struct Stats {
    double median_ms = 0, min_ms = 0, max_ms = 0;
};

Stats summarize(std::vector<double> v) {
    TCA_ASSERT(!v.empty(), "no timings");
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    Stats s;
    s.median_ms = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    s.min_ms = v.front();
    s.max_ms = v.back();
    return s;
}

// Warm-up runs, then `reps` runs each bracketed by CUDA events on the backend stream.
Result<Stats> time_region(const Options& o, const std::function<Status()>& body) {
    cuda::EventTimer timer;
    for (int64_t i = 0; i < o.warmup; ++i) TCA_RETURN_IF_ERROR(body());
    TCA_RETURN_IF_ERROR(cuda::synchronize());
    std::vector<double> ms;
    for (int64_t i = 0; i < o.reps; ++i) {
        timer.start();
        TCA_RETURN_IF_ERROR(body());
        TCA_ASSIGN_OR_RETURN(double t, timer.stop_ms());
        ms.push_back(t);
    }
    TCA_RETURN_IF_ERROR(cuda::synchronize());
    return summarize(std::move(ms));
}

// ---- Random inputs (never zeros): a counter hash, generated on the host in parallel chunks
// and copied to the device. Values uniform in [-amp, amp).

uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
float hash_uniform(uint64_t seed, uint64_t i, float amp) {
    const uint64_t h = mix64(seed * 0x100000001b3ull ^ mix64(i));
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    return amp * (2.0f * u - 1.0f);
}

Status fill_random(void* dev, DType dtype, int64_t n, uint64_t seed, float amp) {
    const int64_t chunk = int64_t{1} << 23;  // 8M elements per host chunk
    const size_t esize = dtype_size(dtype);
    std::vector<float> host(static_cast<size_t>(chunk));  // room for 4-byte elements
    const unsigned n_threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    for (int64_t base = 0; base < n; base += chunk) {
        const int64_t len = std::min(chunk, n - base);
        std::vector<std::thread> workers;
        for (unsigned t = 0; t < n_threads; ++t) {
            workers.emplace_back([&, t] {
                const int64_t per = (len + n_threads - 1) / n_threads;
                const int64_t lo = per * t, hi = std::min(len, lo + per);
                for (int64_t i = lo; i < hi; ++i) {
                    const float x = hash_uniform(seed, static_cast<uint64_t>(base + i), amp);
                    if (dtype == DType::kBF16) {
                        reinterpret_cast<uint16_t*>(host.data())[i] = f32_to_bf16(x);
                    } else if (dtype == DType::kF16) {
                        reinterpret_cast<uint16_t*>(host.data())[i] = f32_to_f16(x);
                    } else {
                        host[static_cast<size_t>(i)] = x;
                    }
                }
            });
        }
        for (auto& w : workers) w.join();
        TCA_RETURN_IF_ERROR(cuda::copy_to_device(static_cast<uint8_t*>(dev) + base * static_cast<int64_t>(esize),
                                                 host.data(), static_cast<size_t>(len) * esize));
    }
    return Status();
}

// A device tensor: the owning buffer and a contiguous view over it.
struct DevTensor {
    cuda::DeviceBuffer buf;
    TensorView view;
};
Result<DevTensor> dev_tensor(DType dtype, std::initializer_list<int64_t> shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    TCA_ASSIGN_OR_RETURN(cuda::DeviceBuffer b,
                         cuda::DeviceBuffer::allocate(static_cast<size_t>(n) * dtype_size(dtype)));
    DevTensor t;
    t.view = make_view(b.get(), dtype, shape);
    t.buf = std::move(b);
    return t;
}

// Every output element written and finite: out was poisoned with NaN before the first run;
// query heads 0 and n-1 are copied back and checked.
Status check_finite(const TensorView& out, const char* what) {
    const int64_t hq = out.shape[0], rows = out.shape[1] * out.shape[2];
    std::vector<float> host(static_cast<size_t>(rows));
    for (int64_t h : {int64_t{0}, hq - 1}) {
        TCA_RETURN_IF_ERROR(cuda::copy_to_host(host.data(), out.ptr<float>() + h * out.stride[0],
                                               host.size() * sizeof(float)));
        for (size_t i = 0; i < host.size(); ++i) {
            if (!std::isfinite(host[i])) {
                return device_error("%s: output of query head %lld has a non-finite value at "
                                    "element %zu (unwritten or wrong)", what,
                                    static_cast<long long>(h), i);
            }
        }
    }
    return Status();
}

// ---- Result lines -------------------------------------------------------------------------

[[gnu::format(printf, 1, 2)]] std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

struct Row {
    std::string bench;
    int64_t L = 0;
    double keep = -1;  // < 0: not a TCA row
    Stats t;
    std::vector<std::pair<std::string, double>> extra;
    std::string note;
};

class Recorder {
public:
    Recorder(const Options& o, std::string device) : o_(o), device_(std::move(device)) {
        if (!o.out.empty()) {
            f_ = std::fopen(o.out.c_str(), "w");
            if (!f_) std::fprintf(stderr, "gpu_bench: cannot write %s\n", o.out.c_str());
        }
    }
    ~Recorder() {
        if (f_) std::fclose(f_);
    }
    Recorder(const Recorder&) = delete;
    Recorder& operator=(const Recorder&) = delete;

    void add(Row r) {
        std::string line = "{\"bench\":\"" + r.bench + "\",\"git\":\"" + o_.git_sha +
                           "\",\"device\":\"" + device_ + "\"";
        line += fmt(",\"L\":%lld", static_cast<long long>(r.L));
        if (r.keep >= 0) line += fmt(",\"keep\":%g", r.keep);
        line += fmt(",\"median_ms\":%.6g,\"min_ms\":%.6g,\"max_ms\":%.6g", r.t.median_ms,
                    r.t.min_ms, r.t.max_ms);
        line += fmt(",\"reps\":%lld,\"warmup\":%lld", static_cast<long long>(o_.reps),
                    static_cast<long long>(o_.warmup));
        line += fmt(",\"n_q_heads\":%lld,\"n_kv_heads\":%lld,\"head_dim\":%lld",
                    static_cast<long long>(o_.heads), static_cast<long long>(o_.kv_heads),
                    static_cast<long long>(o_.head_dim));
        line += fmt(",\"block_size\":%lld,\"local_window\":%lld,\"kv_dtype\":\"bf16\"",
                    static_cast<long long>(o_.block_size), static_cast<long long>(o_.local_window));
        for (const auto& [k, v] : r.extra) {
            line += std::isfinite(v) ? fmt(",\"%s\":%.6g", k.c_str(), v)
                                     : fmt(",\"%s\":null", k.c_str());
        }
        if (!r.note.empty()) line += ",\"note\":\"" + r.note + "\"";
        line += "}";
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
        if (f_) {
            std::fprintf(f_, "%s\n", line.c_str());
            std::fflush(f_);
        }
        rows_.push_back(std::move(r));
    }
    void fail(const std::string& what, const Status& s) {
        std::printf("error: %s: %s (row skipped)\n", what.c_str(), s.to_string().c_str());
        std::fflush(stdout);
        ++n_failed_;
    }
    int n_failed() const { return n_failed_; }

    void print_table() const {
        std::printf("\n%-14s %8s %6s %11s %11s  %s\n", "bench", "L", "keep", "median ms",
                    "min ms", "rate");
        for (const Row& r : rows_) {
            std::string rate;
            for (const auto& [k, v] : r.extra) {
                if (k == "tflops" || k == "useful_tflops" || k == "gbps") {
                    rate += fmt("%s %.1f  ", k.c_str(), v);
                }
                if (k == "selection_share") rate += fmt("sel %.1f%%  ", 100.0 * v);
                if (k == "kept_fraction") rate += fmt("kept %.3f  ", v);
            }
            std::printf("%-14s %8lld %6s %11.4f %11.4f  %s\n", r.bench.c_str(),
                        static_cast<long long>(r.L), r.keep >= 0 ? fmt("%.2f", r.keep).c_str() : "-",
                        r.t.median_ms, r.t.min_ms, rate.c_str());
        }
        if (n_failed_) std::printf("%d row(s) failed (see the error lines above)\n", n_failed_);
    }

private:
    const Options& o_;
    std::string device_;
    FILE* f_ = nullptr;
    std::vector<Row> rows_;
    int n_failed_ = 0;
};

// ---- One length's inputs: q [Hq, L, d] f32, K/V [Hkv, L, d] bf16, out [Hq, L, d] f32.

struct PrefillInputs {
    DevTensor q, k, v, out;
};

Result<PrefillInputs> make_prefill_inputs(const Options& o, int64_t L) {
    PrefillInputs in;
    TCA_ASSIGN_OR_RETURN(in.q, dev_tensor(DType::kF32, {o.heads, L, o.head_dim}));
    TCA_ASSIGN_OR_RETURN(in.k, dev_tensor(DType::kBF16, {o.kv_heads, L, o.head_dim}));
    TCA_ASSIGN_OR_RETURN(in.v, dev_tensor(DType::kBF16, {o.kv_heads, L, o.head_dim}));
    TCA_ASSIGN_OR_RETURN(in.out, dev_tensor(DType::kF32, {o.heads, L, o.head_dim}));
    const uint64_t seed = static_cast<uint64_t>(L);
    TCA_RETURN_IF_ERROR(fill_random(in.q.buf.get(), DType::kF32, in.q.view.numel(), seed * 3 + 1, 1.0f));
    TCA_RETURN_IF_ERROR(fill_random(in.k.buf.get(), DType::kBF16, in.k.view.numel(), seed * 3 + 2, 1.0f));
    TCA_RETURN_IF_ERROR(fill_random(in.v.buf.get(), DType::kBF16, in.v.view.numel(), seed * 3 + 3, 1.0f));
    return in;
}

double causal_flops(const Options& o, int64_t L) {
    return 4.0 * static_cast<double>(o.heads) * static_cast<double>(o.head_dim) *
           static_cast<double>(L) * static_cast<double>(L + 1) / 2.0;
}

// Output of two runs on the same inputs compared over every element: max |got - want| and the
// count of non-finite values in got. Prints one line naming the worst element.
struct OutputDiff {
    double max_err = 0.0;
    int64_t n_bad = 0;
};
Result<OutputDiff> compare_outputs(const Options& o, int64_t L, const TensorView& got,
                                   const TensorView& want, const char* what) {
    const int64_t per_head = L * o.head_dim;
    std::vector<float> w(static_cast<size_t>(per_head)), g(static_cast<size_t>(per_head));
    OutputDiff d;
    int64_t worst = -1;
    for (int64_t h = 0; h < o.heads; ++h) {
        TCA_RETURN_IF_ERROR(cuda::copy_to_host(w.data(), want.ptr<float>() + h * per_head,
                                               w.size() * sizeof(float)));
        TCA_RETURN_IF_ERROR(cuda::copy_to_host(g.data(), got.ptr<float>() + h * per_head,
                                               g.size() * sizeof(float)));
        for (size_t i = 0; i < g.size(); ++i) {
            if (!std::isfinite(g[i])) {
                ++d.n_bad;
                continue;
            }
            const double e = std::fabs(static_cast<double>(g[i]) - static_cast<double>(w[i]));
            if (e > d.max_err) {
                d.max_err = e;
                worst = h * per_head + static_cast<int64_t>(i);
            }
        }
    }
    std::printf("%s L=%lld: max abs diff = %.3g (element %lld = [head %lld, row %lld, col %lld]), "
                "non-finite %lld\n",
                what, static_cast<long long>(L), d.max_err, static_cast<long long>(worst),
                static_cast<long long>(worst < 0 ? -1 : worst / per_head),
                static_cast<long long>(worst < 0 ? -1 : (worst % per_head) / o.head_dim),
                static_cast<long long>(worst < 0 ? -1 : worst % o.head_dim),
                static_cast<long long>(d.n_bad));
    return d;
}

using cuda::WgmmaSchedule;
using cuda::WgmmaScheduleScope;

// The device tensor's bytes, on the host.
Result<std::vector<uint8_t>> host_bytes(const DevTensor& t) {
    std::vector<uint8_t> h(t.buf.bytes());
    TCA_RETURN_IF_ERROR(cuda::synchronize());
    TCA_RETURN_IF_ERROR(cuda::copy_to_host(h.data(), t.buf.get(), h.size()));
    return h;
}

// Runs `run` (writing `out`) with the serial, then the overlapped main-loop schedule; fails
// unless the two outputs are bitwise equal. Leaves the overlapped output in `out`.
Status check_schedules_equal(const DevTensor& out, const std::function<Status()>& run,
                             const char* what) {
    std::vector<uint8_t> serial;
    {
        WgmmaScheduleScope scope(WgmmaSchedule::kSerial);
        TCA_RETURN_IF_ERROR(run());
        TCA_ASSIGN_OR_RETURN(serial, host_bytes(out));
    }
    WgmmaScheduleScope scope(WgmmaSchedule::kOverlap);
    TCA_RETURN_IF_ERROR(cuda::fill_bytes(out.buf.get(), 0xff, out.buf.bytes()));
    TCA_RETURN_IF_ERROR(run());
    TCA_ASSIGN_OR_RETURN(std::vector<uint8_t> over, host_bytes(out));
    if (over != serial) return device_error("%s: output is not bitwise the serial schedule's", what);
    return Status();
}

// dense_prefill: ops::attention_dense, i.e. the public dispatch (the Hopper wgmma kernel where
// it applies, attention_wgmma.h; else the mma.sync kernel). Before timing, its output is
// compared with the mma.sync kernel alone (cuda::attention_dense_mma, attention_prefill.h) on
// the same inputs, max |difference| over every element; the row fails when that exceeds 2e-2
// or any value is NaN/inf. Extra fields: max_abs_err_vs_mma and wgmma (1 when the dispatch
// runs the wgmma kernel on this device).
Status bench_dense(const Options& o, int64_t L, PrefillInputs& in, Recorder& rec) {
    WgmmaScheduleScope scope(WgmmaSchedule::kDefault);  // the engine's (dense: overlapped)
    AttentionDenseParams p{in.q.view, in.k.view, in.v.view, in.out.view, 0, 0.0f};
    TCA_RETURN_IF_ERROR(cuda::fill_bytes(in.out.buf.get(), 0xff, in.out.buf.bytes()));
    TCA_RETURN_IF_ERROR(ops::attention_dense(Device::kCuda, p));
    TCA_RETURN_IF_ERROR(cuda::synchronize());
    TCA_RETURN_IF_ERROR(check_finite(in.out.view, "attention_dense"));
    double max_err = 0.0;
    {
        TCA_ASSIGN_OR_RETURN(DevTensor out_m, dev_tensor(DType::kF32, {o.heads, L, o.head_dim}));
        AttentionDenseParams pm{in.q.view, in.k.view, in.v.view, out_m.view, 0, 0.0f};
        TCA_RETURN_IF_ERROR(cuda::fill_bytes(out_m.buf.get(), 0xff, out_m.buf.bytes()));
        TCA_RETURN_IF_ERROR(cuda::attention_dense_mma(pm));
        TCA_RETURN_IF_ERROR(cuda::synchronize());
        TCA_ASSIGN_OR_RETURN(OutputDiff d, compare_outputs(o, L, in.out.view, out_m.view,
                                                           "dense_prefill (dispatch) vs mma.sync"));
        if (d.n_bad > 0 || !(d.max_err <= 2e-2)) {
            return device_error("dense_prefill: output differs from the mma.sync kernel: max abs "
                                "error %.3g, %lld non-finite values", d.max_err,
                                static_cast<long long>(d.n_bad));
        }
        max_err = d.max_err;
    }
    TCA_ASSIGN_OR_RETURN(Stats t, time_region(o, [&] { return ops::attention_dense(Device::kCuda, p); }));
    Row r{"dense_prefill", L, -1, t, {}, ""};
    r.extra.emplace_back("flops", causal_flops(o, L));
    r.extra.emplace_back("tflops", causal_flops(o, L) / (t.median_ms * 1e-3) / 1e12);
    r.extra.emplace_back("max_abs_err_vs_mma", max_err);
    r.extra.emplace_back("wgmma", cuda::attention_wgmma_available() ? 1.0 : 0.0);
    rec.add(std::move(r));
    return Status();
}

// dense_prefill_mma: the mma.sync kernel alone (cuda::attention_dense_mma, the dispatch's
// fallback and, before the wgmma kernel, dense_prefill itself): every element written and
// finite, then timed like dense_prefill.
Status bench_dense_mma(const Options& o, int64_t L, PrefillInputs& in, Recorder& rec) {
    AttentionDenseParams p{in.q.view, in.k.view, in.v.view, in.out.view, 0, 0.0f};
    TCA_RETURN_IF_ERROR(cuda::fill_bytes(in.out.buf.get(), 0xff, in.out.buf.bytes()));
    TCA_RETURN_IF_ERROR(cuda::attention_dense_mma(p));
    TCA_RETURN_IF_ERROR(cuda::synchronize());
    TCA_RETURN_IF_ERROR(check_finite(in.out.view, "attention_dense_mma"));
    TCA_ASSIGN_OR_RETURN(Stats t, time_region(o, [&] { return cuda::attention_dense_mma(p); }));
    Row r{"dense_prefill_mma", L, -1, t, {}, ""};
    r.extra.emplace_back("flops", causal_flops(o, L));
    r.extra.emplace_back("tflops", causal_flops(o, L) / (t.median_ms * 1e-3) / 1e12);
    rec.add(std::move(r));
    return Status();
}

// dense_prefill_serial: the dispatch with the wgmma kernel's serial main-loop schedule
// (TCA_CUDA_WGMMA_OVERLAP=0; dense_prefill runs the default, overlapped): its output must be
// bitwise the overlapped schedule's (the row fails otherwise), then timed like dense_prefill.
// Skipped where the wgmma kernel does not run.
Status bench_dense_serial(const Options& o, int64_t L, PrefillInputs& in, Recorder& rec) {
    if (!cuda::attention_wgmma_available()) return Status();
    AttentionDenseParams p{in.q.view, in.k.view, in.v.view, in.out.view, 0, 0.0f};
    TCA_RETURN_IF_ERROR(check_schedules_equal(
        in.out, [&] { return ops::attention_dense(Device::kCuda, p); }, "dense_prefill_serial"));
    WgmmaScheduleScope scope(WgmmaSchedule::kSerial);
    TCA_ASSIGN_OR_RETURN(Stats t, time_region(o, [&] { return ops::attention_dense(Device::kCuda, p); }));
    Row r{"dense_prefill_serial", L, -1, t, {}, "bitwise equal to the overlapped schedule"};
    r.extra.emplace_back("flops", causal_flops(o, L));
    r.extra.emplace_back("tflops", causal_flops(o, L) / (t.median_ms * 1e-3) / 1e12);
    rec.add(std::move(r));
    return Status();
}

// ---- TCA prefill: device workspace sized like TcaPrefillWorkspace (backend/tca_attention.h),
// the same op chain as tca_prefill_attention, with Psi computed on the host once per (length,
// configuration) and uploaded before timing (it depends on nothing the kernels compute).

struct TcaWorkspace {
    int64_t n = 0;  // candidate blocks
    DevTensor scores, mass, hhi, block_score, psi, keep, selected, n_selected;
    DevTensor k_global, v_global, global_pos;
};

Result<TcaWorkspace> make_tca_workspace(const Options& o, int64_t L) {
    TcaWorkspace w;
    const int64_t hkv = o.kv_heads, b = o.block_size;
    w.n = n_candidate_blocks(L, o.local_window, b);
    const int64_t n = std::max<int64_t>(w.n, 1);
    TCA_ASSIGN_OR_RETURN(w.scores, dev_tensor(DType::kF32, {hkv, L}));
    TCA_ASSIGN_OR_RETURN(w.mass, dev_tensor(DType::kF32, {hkv, n}));
    TCA_ASSIGN_OR_RETURN(w.hhi, dev_tensor(DType::kF32, {hkv, n}));
    TCA_ASSIGN_OR_RETURN(w.block_score, dev_tensor(DType::kF32, {hkv, n}));
    TCA_ASSIGN_OR_RETURN(w.psi, dev_tensor(DType::kI32, {hkv, n}));
    TCA_ASSIGN_OR_RETURN(w.keep, dev_tensor(DType::kI32, {hkv, n}));
    TCA_ASSIGN_OR_RETURN(w.selected, dev_tensor(DType::kI32, {hkv, n * b}));
    TCA_ASSIGN_OR_RETURN(w.n_selected, dev_tensor(DType::kI32, {hkv}));
    TCA_ASSIGN_OR_RETURN(w.k_global, dev_tensor(DType::kBF16, {hkv, n * b, o.head_dim}));
    TCA_ASSIGN_OR_RETURN(w.v_global, dev_tensor(DType::kBF16, {hkv, n * b, o.head_dim}));
    TCA_ASSIGN_OR_RETURN(w.global_pos, dev_tensor(DType::kI32, {hkv, n * b}));
    return w;
}

// The stages of one TCA prefill, in order, each a closure over its Params.
struct TcaStages {
    std::vector<std::pair<const char*, std::function<Status()>>> list;
};

TcaStages tca_stages(const Options& o, int64_t L, PrefillInputs& in, TcaWorkspace& w) {
    const int64_t n = w.n, b = o.block_size;
    const int64_t n_obs = std::min<int64_t>(SparseOptions{}.obs_window, L);
    TcaStages s;
    TokenImportanceParams ip{slice(in.q.view, 1, L - n_obs, n_obs), in.k.view, w.scores.view, -1,
                             0.0f};
    BlockScoreParams bp{w.scores.view, w.mass.view, w.hhi.view, w.block_score.view,
                        static_cast<int>(b), static_cast<float>(SparseOptions{}.alpha),
                        SparseOptions{}.mass_norm};
    BlockBudgetParams bb{w.block_score.view, w.psi.view, w.keep.view, static_cast<int>(b)};
    TokenSelectParams sp{w.scores.view, w.keep.view, w.selected.view, w.n_selected.view,
                         static_cast<int>(b)};
    KvGatherParams gp{in.k.view, in.v.view, w.selected.view, w.n_selected.view, w.k_global.view,
                      w.v_global.view, w.global_pos.view};
    SparsePrefillParams pp{in.q.view, in.k.view, in.v.view, w.k_global.view, w.v_global.view,
                           w.global_pos.view, w.n_selected.view, in.out.view, 0, n,
                           static_cast<int>(b), static_cast<int>(o.local_window), 0.0f};
    s.list.emplace_back("importance", [ip] { return ops::token_importance(Device::kCuda, ip); });
    s.list.emplace_back("block_score", [bp] { return ops::block_score(Device::kCuda, bp); });
    s.list.emplace_back("budget", [bb] { return ops::block_budget(Device::kCuda, bb); });
    s.list.emplace_back("select", [sp] { return ops::token_select(Device::kCuda, sp); });
    s.list.emplace_back("gather", [gp] { return ops::kv_gather(Device::kCuda, gp); });
    s.list.emplace_back("attend", [pp] { return ops::sparse_prefill(Device::kCuda, pp); });
    return s;
}

// Useful FLOPs of the sparse attention: query i sees the selected slots of the first v(i)
// blocks plus the dense band [v(i) * b, i] (tca-method M6); 4 * d per (query head, key).
// Also returns the kept fraction sum(n_selected) / (Hkv * n * b).
Status sparse_work(const Options& o, int64_t L, TcaWorkspace& w, double* flops, double* kept) {
    const int64_t hkv = o.kv_heads, n = w.n, b = o.block_size, cap = n * b;
    std::vector<int32_t> n_sel(static_cast<size_t>(hkv));
    std::vector<int32_t> sel(static_cast<size_t>(hkv * cap));
    TCA_RETURN_IF_ERROR(cuda::copy_to_host(n_sel.data(), w.n_selected.buf.get(), n_sel.size() * 4));
    TCA_RETURN_IF_ERROR(cuda::copy_to_host(sel.data(), w.selected.buf.get(), sel.size() * 4));
    const int64_t group = o.heads / o.kv_heads;
    double keys = 0, total_sel = 0;
    std::vector<int64_t> before(static_cast<size_t>(n + 1));  // selected with pos < j * b
    for (int64_t h = 0; h < hkv; ++h) {
        const int64_t ns = n_sel[static_cast<size_t>(h)];
        if (ns < 0 || ns > cap) {
            return device_error("token_select: n_selected[%lld] = %lld outside [0, %lld]",
                                static_cast<long long>(h), static_cast<long long>(ns),
                                static_cast<long long>(cap));
        }
        total_sel += static_cast<double>(ns);
        std::fill(before.begin(), before.end(), 0);
        for (int64_t s = 0; s < ns; ++s) {
            const int64_t pos = sel[static_cast<size_t>(h * cap + s)];
            if (pos < 0 || pos >= cap) {
                return device_error("token_select: position %lld outside the candidate blocks",
                                    static_cast<long long>(pos));
            }
            ++before[static_cast<size_t>(pos / b + 1)];
        }
        for (int64_t j = 1; j <= n; ++j) before[static_cast<size_t>(j)] += before[static_cast<size_t>(j - 1)];
        for (int64_t i = 0; i < L; ++i) {
            const int64_t vb = visible_blocks(i, o.local_window, b, n);
            keys += static_cast<double>(before[static_cast<size_t>(vb)] + (i - vb * b + 1));
        }
    }
    *flops = 4.0 * static_cast<double>(o.head_dim) * static_cast<double>(group) * keys;
    *kept = cap > 0 ? total_sel / (static_cast<double>(hkv) * static_cast<double>(cap)) : 1.0;
    return Status();
}

// overlap: the row "tca_prefill_overlap", the same chain with the wgmma kernel's overlapped
// main-loop schedule, whose output must be bitwise the serial schedule's.
Status bench_tca(const Options& o, int64_t L, double keep_rate, PrefillInputs& in,
                 TcaWorkspace& w, double dense_flops, Recorder& rec, bool overlap = false) {
    const int64_t b = o.block_size, n = w.n;
    const char* bench = overlap ? "tca_prefill_overlap" : "tca_prefill";
    if (overlap && (n == 0 || !cuda::attention_wgmma_available())) return Status();
    if (n == 0) {  // the whole prompt is local band: TCA is the dense fallback (tca-method M3)
        AttentionDenseParams p{in.q.view, in.k.view, in.v.view, in.out.view, 0, 0.0f};
        TCA_ASSIGN_OR_RETURN(Stats t, time_region(o, [&] { return ops::attention_dense(Device::kCuda, p); }));
        Row r{"tca_prefill", L, keep_rate, t, {}, "dense fallback: L <= local window"};
        r.extra.emplace_back("selection_ms", 0.0);
        r.extra.emplace_back("selection_share", 0.0);
        r.extra.emplace_back("kept_fraction", 1.0);
        r.extra.emplace_back("useful_tflops", dense_flops / (t.median_ms * 1e-3) / 1e12);
        rec.add(std::move(r));
        return Status();
    }
    // Psi for every KV head from the log-Gaussian configuration with this expected keep.
    TCA_ASSIGN_OR_RETURN(HeadConfig cfg, config_for_keep_fraction(keep_rate, static_cast<int>(b)));
    TCA_ASSIGN_OR_RETURN(std::vector<int32_t> psi, make_psi(cfg.p, n, static_cast<int>(b)));
    for (int64_t h = 0; h < o.kv_heads; ++h) {
        TCA_RETURN_IF_ERROR(cuda::copy_to_device(w.psi.view.ptr<int32_t>() + h * n, psi.data(),
                                                 psi.size() * sizeof(int32_t)));
    }
    TcaStages stages = tca_stages(o, L, in, w);
    auto run_all = [&]() -> Status {
        for (auto& [name, f] : stages.list) TCA_RETURN_IF_ERROR(f());
        return Status();
    };
    if (overlap) TCA_RETURN_IF_ERROR(check_schedules_equal(in.out, run_all, "tca_prefill_overlap"));
    WgmmaScheduleScope scope(overlap ? WgmmaSchedule::kOverlap : WgmmaSchedule::kDefault);
    // One checked run first: poisoned output fully written, selection consistent.
    TCA_RETURN_IF_ERROR(cuda::fill_bytes(in.out.buf.get(), 0xff, in.out.buf.bytes()));
    for (auto& [name, f] : stages.list) {
        if (Status s = f(); !s.ok()) return Status(s.code(), std::string(name) + ": " + s.message());
    }
    TCA_RETURN_IF_ERROR(cuda::synchronize());
    TCA_RETURN_IF_ERROR(check_finite(in.out.view, "tca prefill"));
    double useful_flops = 0, kept = 0;
    TCA_RETURN_IF_ERROR(sparse_work(o, L, w, &useful_flops, &kept));

    // End to end: the chain back to back, no synchronisation between stages.
    TCA_ASSIGN_OR_RETURN(Stats total, time_region(o, run_all));
    // Each stage alone (the inputs it reads are the previous run's outputs, unchanged).
    Row r{bench, L, keep_rate, total, {}, ""};
    double stage_sum = 0, selection = 0, attend = 0;
    for (auto& [name, f] : stages.list) {
        TCA_ASSIGN_OR_RETURN(Stats t, time_region(o, f));
        r.extra.emplace_back(std::string(name) + "_ms", t.median_ms);
        stage_sum += t.median_ms;
        if (std::strcmp(name, "attend") == 0) {
            attend = t.median_ms;
        } else {
            selection += t.median_ms;
        }
    }
    r.extra.emplace_back("selection_ms", selection);
    r.extra.emplace_back("stage_sum_ms", stage_sum);
    r.extra.emplace_back("selection_share", selection / stage_sum);
    r.extra.emplace_back("kept_fraction", kept);
    r.extra.emplace_back("target_keep", expected_keep_fraction(cfg.p, static_cast<int>(b)));
    r.extra.emplace_back("n_blocks", static_cast<double>(n));
    r.extra.emplace_back("useful_flops", useful_flops);
    r.extra.emplace_back("useful_tflops", useful_flops / (attend * 1e-3) / 1e12);
    r.extra.emplace_back("flop_ratio_vs_dense", dense_flops / useful_flops);
    r.note = overlap ? "psi uploaded before timing; bitwise equal to the serial schedule"
                     : "psi uploaded before timing";
    rec.add(std::move(r));
    return Status();
}

// ---- Decode: n_q = 1 at position L-1 over a full cache of L slots (slot s holds position s).
// Enough cache copies are rotated that the bytes read per step exceed 3x L2.

Status bench_decode(const Options& o, int64_t L, size_t l2_bytes, Recorder& rec) {
    const int64_t hkv = o.kv_heads, d = o.head_dim;
    const double kv_bytes = 2.0 * static_cast<double>(hkv * L * d) * 2.0;  // K + V, bf16
    const int64_t n_sets = std::clamp<int64_t>(
        static_cast<int64_t>(std::ceil(3.0 * static_cast<double>(l2_bytes) / kv_bytes)), 1, 8);
    std::vector<DevTensor> ks, vs;
    for (int64_t s = 0; s < n_sets; ++s) {
        TCA_ASSIGN_OR_RETURN(DevTensor k, dev_tensor(DType::kBF16, {hkv, L, d}));
        TCA_ASSIGN_OR_RETURN(DevTensor v, dev_tensor(DType::kBF16, {hkv, L, d}));
        const uint64_t seed = static_cast<uint64_t>(L * 16 + s * 2);
        TCA_RETURN_IF_ERROR(fill_random(k.buf.get(), DType::kBF16, k.view.numel(), seed + 1001, 1.0f));
        TCA_RETURN_IF_ERROR(fill_random(v.buf.get(), DType::kBF16, v.view.numel(), seed + 1002, 1.0f));
        ks.push_back(std::move(k));
        vs.push_back(std::move(v));
    }
    TCA_ASSIGN_OR_RETURN(DevTensor q, dev_tensor(DType::kF32, {o.heads, 1, d}));
    TCA_ASSIGN_OR_RETURN(DevTensor out, dev_tensor(DType::kF32, {o.heads, 1, d}));
    TCA_ASSIGN_OR_RETURN(DevTensor slot_pos, dev_tensor(DType::kI32, {hkv, L}));
    TCA_ASSIGN_OR_RETURN(DevTensor n_slots, dev_tensor(DType::kI32, {hkv}));
    TCA_RETURN_IF_ERROR(fill_random(q.buf.get(), DType::kF32, q.view.numel(), static_cast<uint64_t>(L) + 77, 1.0f));
    {
        std::vector<int32_t> pos(static_cast<size_t>(hkv * L));
        for (int64_t h = 0; h < hkv; ++h) {
            for (int64_t s = 0; s < L; ++s) pos[static_cast<size_t>(h * L + s)] = static_cast<int32_t>(s);
        }
        TCA_RETURN_IF_ERROR(cuda::copy_to_device(slot_pos.buf.get(), pos.data(), pos.size() * 4));
        std::vector<int32_t> ns(static_cast<size_t>(hkv), static_cast<int32_t>(L));
        TCA_RETURN_IF_ERROR(cuda::copy_to_device(n_slots.buf.get(), ns.data(), ns.size() * 4));
    }
    std::vector<DecodeAttentionParams> params;
    for (int64_t s = 0; s < n_sets; ++s) {
        params.push_back(DecodeAttentionParams{q.view, ks[static_cast<size_t>(s)].view,
                                               vs[static_cast<size_t>(s)].view, slot_pos.view,
                                               n_slots.view, out.view, L - 1, 0.0f});
    }
    TCA_RETURN_IF_ERROR(cuda::fill_bytes(out.buf.get(), 0xff, out.buf.bytes()));
    TCA_RETURN_IF_ERROR(ops::decode_attention(Device::kCuda, params[0]));
    TCA_RETURN_IF_ERROR(cuda::synchronize());
    TCA_RETURN_IF_ERROR(check_finite(out.view, "decode_attention"));
    size_t next = 0;
    TCA_ASSIGN_OR_RETURN(Stats t, time_region(o, [&] {
        const DecodeAttentionParams& p = params[next];
        next = (next + 1) % params.size();
        return ops::decode_attention(Device::kCuda, p);
    }));
    Row r{"decode", L, -1, t, {}, ""};
    r.extra.emplace_back("kv_bytes", kv_bytes);
    r.extra.emplace_back("gbps", kv_bytes / (t.median_ms * 1e-3) / 1e9);
    r.extra.emplace_back("cache_sets", static_cast<double>(n_sets));
    rec.add(std::move(r));
    return Status();
}

// ---- Decode-shaped matmuls: the 8B layer's projections and the output layer with n_tokens
// rows of x, bf16 weights, kWeightDotType (the engine's mode), through the staged GEMV kernel,
// the register GEMV (the default) and pack_rows + cuBLAS (cuda::set_matmul_gemv) in the same
// run (more than one row of x always takes cuBLAS). Weight copies are
// rotated so the bytes read per call exceed 3x L2 (each weight read from memory, as in a decode
// step); each timed region is `inner` calls back to back, divided, so launch gaps count as
// they do in a decode step.
Status bench_matmul(const Options& o, int64_t n_out, int64_t n_in, int64_t n_tokens, const char* name,
                    size_t l2_bytes, Recorder& rec) {
    const double w_bytes = 2.0 * static_cast<double>(n_out * n_in);
    const int64_t n_sets = std::clamp<int64_t>(
        static_cast<int64_t>(std::ceil(3.0 * static_cast<double>(l2_bytes) / w_bytes)), 1, 8);
    std::vector<DevTensor> ws;
    for (int64_t s = 0; s < n_sets; ++s) {
        TCA_ASSIGN_OR_RETURN(DevTensor w, dev_tensor(DType::kBF16, {n_out, n_in}));
        TCA_RETURN_IF_ERROR(fill_random(w.buf.get(), DType::kBF16, w.view.numel(),
                                        static_cast<uint64_t>(n_out * 7 + n_in + s), 0.05f));
        ws.push_back(std::move(w));
    }
    TCA_ASSIGN_OR_RETURN(DevTensor x, dev_tensor(DType::kF32, {n_tokens, n_in}));
    TCA_RETURN_IF_ERROR(fill_random(x.buf.get(), DType::kF32, x.view.numel(), static_cast<uint64_t>(n_in) + 5, 1.0f));
    TCA_ASSIGN_OR_RETURN(DevTensor y_gemv, dev_tensor(DType::kF32, {n_tokens, n_out}));
    TCA_ASSIGN_OR_RETURN(DevTensor y_blas, dev_tensor(DType::kF32, {n_tokens, n_out}));
    auto params = [&](size_t s, const DevTensor& y) {
        return MatmulParams{x.view, MatrixView{ws[s].buf.get(), GgmlType::kBF16, n_out, n_in}, TensorView{},
                            y.view, MatmulActivations::kWeightDotType, TensorView{}};
    };
    // The kernels' outputs agree: the two GEMV kernels bitwise, cuBLAS within summation order.
    const cuda::GemvKernel prior = cuda::matmul_gemv();
    const auto run_once = [&](cuda::GemvKernel k, const DevTensor& y) -> Result<std::vector<float>> {
        cuda::set_matmul_gemv(k);
        const Status s = ops::matmul(Device::kCuda, params(0, y));
        cuda::set_matmul_gemv(prior);
        TCA_RETURN_IF_ERROR(s);
        TCA_RETURN_IF_ERROR(cuda::synchronize());
        std::vector<float> out(static_cast<size_t>(n_tokens * n_out));
        TCA_RETURN_IF_ERROR(cuda::copy_to_host(out.data(), y.buf.get(), out.size() * 4));
        return out;
    };
    TCA_ASSIGN_OR_RETURN(const std::vector<float> a, run_once(cuda::GemvKernel::kStaged, y_gemv));
    TCA_ASSIGN_OR_RETURN(const std::vector<float> a1, run_once(cuda::GemvKernel::kRegisters, y_gemv));
    TCA_ASSIGN_OR_RETURN(const std::vector<float> b, run_once(cuda::GemvKernel::kOff, y_blas));
    double diff = 0, diff_kernels = 0, ref = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
        diff_kernels = std::max(diff_kernels, std::fabs(static_cast<double>(a[i]) - a1[i]));
        ref = std::max(ref, std::fabs(static_cast<double>(b[i])));
    }
    constexpr int64_t inner = 20;
    for (cuda::GemvKernel k : {cuda::GemvKernel::kStaged, cuda::GemvKernel::kRegisters, cuda::GemvKernel::kOff}) {
        const bool gemv = k != cuda::GemvKernel::kOff;
        cuda::set_matmul_gemv(k);
        size_t next = 0;
        auto t = time_region(o, [&] {
            for (int64_t i = 0; i < inner; ++i) {
                TCA_RETURN_IF_ERROR(ops::matmul(Device::kCuda, params(next, gemv ? y_gemv : y_blas)));
                next = (next + 1) % ws.size();
            }
            return Status();
        });
        cuda::set_matmul_gemv(prior);
        TCA_RETURN_IF_ERROR(t.status());
        Stats per = *t;
        per.median_ms /= inner, per.min_ms /= inner, per.max_ms /= inner;
        const char* kname = k == cuda::GemvKernel::kStaged ? "staged" : gemv ? "registers" : "cublas";
        Row r{"matmul", n_tokens, -1, per, {}, fmt("%s %s", name, kname)};
        r.extra.emplace_back("n_out", static_cast<double>(n_out));
        r.extra.emplace_back("n_in", static_cast<double>(n_in));
        r.extra.emplace_back("n_tokens", static_cast<double>(n_tokens));
        r.extra.emplace_back("gemv_enabled", gemv ? 1.0 : 0.0);
        r.extra.emplace_back("gemv_kernel", static_cast<double>(static_cast<int>(k)));
        r.extra.emplace_back("weight_bytes", w_bytes);
        r.extra.emplace_back("gbps", w_bytes / (per.median_ms * 1e-3) / 1e9);
        r.extra.emplace_back("max_abs_diff_gemv_cublas", diff);
        r.extra.emplace_back("max_abs_diff_staged_registers", diff_kernels);
        r.extra.emplace_back("max_abs_out", ref);
        rec.add(std::move(r));
    }
    return Status();
}

// Device-to-device copy of copy_mib MiB: the bandwidth ceiling, bytes read + written.
Status bench_copy(const Options& o, Recorder& rec) {
    const size_t bytes = static_cast<size_t>(o.copy_mib) << 20;
    TCA_ASSIGN_OR_RETURN(cuda::DeviceBuffer src, cuda::DeviceBuffer::allocate(bytes));
    TCA_ASSIGN_OR_RETURN(cuda::DeviceBuffer dst, cuda::DeviceBuffer::allocate(bytes));
    TCA_RETURN_IF_ERROR(fill_random(src.get(), DType::kF32, static_cast<int64_t>(bytes / 4), 99, 1.0f));
    TCA_ASSIGN_OR_RETURN(Stats t, time_region(o, [&] {
        return cuda::copy_on_device(dst.get(), src.get(), bytes);
    }));
    Row r{"copy", 0, -1, t, {}, ""};
    r.extra.emplace_back("bytes", 2.0 * static_cast<double>(bytes));
    r.extra.emplace_back("gbps", 2.0 * static_cast<double>(bytes) / (t.median_ms * 1e-3) / 1e9);
    rec.add(std::move(r));
    return Status();
}

Result<std::vector<double>> parse_keep_list(const std::string& text) {
    std::vector<double> out;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = text.find(',', start);
        const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        char* end = nullptr;
        const double v = std::strtod(item.c_str(), &end);
        if (item.empty() || *end != '\0' || !(v > 0.0 && v <= 1.0)) {
            return usage_error("--keep expects fractions in (0, 1] separated by commas, got '%s'",
                               text.c_str());
        }
        out.push_back(v);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

int run(int argc, char** argv) {
    Options o;
    FlagSet flags("tca_gpu_bench",
                  "One LLaMA-3.1-8B-shaped attention layer on the CUDA backend: dense prefill, TCA "
                  "prefill stages, decode attention and a device copy; one JSON line per result.");
    flags.add_int_list("lengths", &o.lengths, "prefill lengths L (k = 1024)");
    flags.add_string("keep", &o.keep, "F,F,...", "TCA keep rates: expected fraction of candidate "
                     "tokens kept (log-Gaussian Psi, sigma 1)");
    flags.add_int("heads", &o.heads, "query heads");
    flags.add_int("kv-heads", &o.kv_heads, "KV heads (GQA)");
    flags.add_int("head-dim", &o.head_dim, "head dimension");
    flags.add_int("block-size", &o.block_size, "TCA block size b");
    flags.add_int("local-window", &o.local_window, "TCA local window w");
    flags.add_int("reps", &o.reps, "timed repetitions (median reported)");
    flags.add_int("warmup", &o.warmup, "untimed warm-up runs before the timed ones");
    flags.add_int_list("decode-lengths", &o.decode_lengths, "cache lengths for decode (k = 1024)");
    flags.add_int("copy-mib", &o.copy_mib, "MiB copied device to device for the bandwidth ceiling");
    flags.add_string("out", &o.out, "FILE.jsonl", "also write the JSON lines to this file");
    flags.add_string("git-sha", &o.git_sha, "SHA", "source revision recorded in every line");
    flags.add_bool("dense", &o.dense, "run the dense prefill rows");
    flags.add_bool("tca", &o.tca, "run the TCA prefill rows");
    flags.add_bool("decode", &o.decode, "run the decode and copy rows");
    flags.add_bool("overlap", &o.overlap, "also run the prefill rows with the wgmma kernel's other main-loop "
                   "schedule than the default (dense_prefill_serial: the default overlaps dense; "
                   "tca_prefill_overlap: the default keeps sparse serial; each checked bitwise against "
                   "the other schedule)");
    flags.add_bool("matmul", &o.matmul, "run the decode-shaped matmul rows (the staged and the register GEMV "
                   "kernels for one row, and cuBLAS)");
    flags.add_int("ffn", &o.ffn, "MLP width of the matmul rows");
    flags.add_int("vocab", &o.vocab, "vocabulary of the matmul rows' output layer");
    flags.add_int_list("matmul-tokens", &o.matmul_tokens, "rows of x in the matmul rows");
    std::vector<std::string> args(argv + 1, argv + argc);
    bool help = false;
    if (Status s = flags.parse(args, &help); !s.ok()) {
        std::fprintf(stderr, "tca_gpu_bench: %s\n", s.message().c_str());
        return 2;
    }
    if (help) {
        std::printf("%s", flags.usage().c_str());
        return 0;
    }
    auto keeps = parse_keep_list(o.keep);
    if (!keeps.ok()) {
        std::fprintf(stderr, "tca_gpu_bench: %s\n", keeps.status().message().c_str());
        return 2;
    }
    if (o.heads <= 0 || o.kv_heads <= 0 || o.heads % o.kv_heads != 0 || o.reps < 1 ||
        o.warmup < 0 || o.copy_mib < 1 || o.ffn < 8 || o.vocab < 1 ||
        std::any_of(o.matmul_tokens.begin(), o.matmul_tokens.end(), [](int64_t n) { return n < 1; })) {
        std::fprintf(stderr, "tca_gpu_bench: need heads %% kv-heads == 0, reps >= 1, warmup >= 0, "
                             "copy-mib >= 1, ffn >= 8, vocab >= 1, matmul-tokens >= 1\n");
        return 2;
    }
    if (Status s = validate(SparseOptions{static_cast<int>(o.block_size),
                                          static_cast<int>(o.local_window)});
        !s.ok()) {
        std::fprintf(stderr, "tca_gpu_bench: %s\n", s.message().c_str());
        return 2;
    }
    if (Status s = cuda::device_check(); !s.ok()) {
        std::printf("error: %s\n", s.to_string().c_str());
        return 1;
    }
    auto info = cuda::device_info();
    if (!info.ok()) {
        std::printf("error: %s\n", info.status().to_string().c_str());
        return 1;
    }
    std::fprintf(stderr, "tca_gpu_bench: %s, cc %d.%d, %d SMs, %.1f GiB free, L2 %.0f MiB\n",
                 info->name.c_str(), info->cc_major, info->cc_minor, info->sm_count,
                 static_cast<double>(info->free_bytes) / (1 << 30),
                 static_cast<double>(info->l2_bytes) / (1 << 20));
    Recorder rec(o, info->name);
    auto tag = [](const char* b, int64_t L, double k) {
        return k >= 0 ? fmt("%s L=%lld keep=%g", b, static_cast<long long>(L), k)
                      : fmt("%s L=%lld", b, static_cast<long long>(L));
    };
    for (int64_t L : o.lengths) {
        if (!o.dense && !o.tca) break;
        auto in = make_prefill_inputs(o, L);
        if (!in.ok()) {
            rec.fail(tag("prefill inputs", L, -1), in.status());
            continue;
        }
        if (o.dense) {
            if (Status s = bench_dense(o, L, *in, rec); !s.ok()) rec.fail(tag("dense_prefill", L, -1), s);
            if (Status s = bench_dense_mma(o, L, *in, rec); !s.ok()) {
                rec.fail(tag("dense_prefill_mma", L, -1), s);
            }
            if (o.overlap) {
                if (Status s = bench_dense_serial(o, L, *in, rec); !s.ok()) {
                    rec.fail(tag("dense_prefill_serial", L, -1), s);
                }
            }
        }
        if (o.tca) {
            auto w = make_tca_workspace(o, L);
            if (!w.ok()) {
                rec.fail(tag("tca workspace", L, -1), w.status());
                continue;
            }
            for (double k : *keeps) {
                if (Status s = bench_tca(o, L, k, *in, *w, causal_flops(o, L), rec); !s.ok()) {
                    rec.fail(tag("tca_prefill", L, k), s);
                }
                if (!o.overlap) continue;
                if (Status s = bench_tca(o, L, k, *in, *w, causal_flops(o, L), rec, true); !s.ok()) {
                    rec.fail(tag("tca_prefill_overlap", L, k), s);
                }
            }
        }
    }
    if (o.decode) {
        for (int64_t L : o.decode_lengths) {
            if (Status s = bench_decode(o, L, info->l2_bytes, rec); !s.ok()) rec.fail(tag("decode", L, -1), s);
        }
    }
    if (o.matmul) {
        const int64_t d = o.heads * o.head_dim, dkv = o.kv_heads * o.head_dim;
        const struct {
            const char* name;
            int64_t n_out, n_in;
        } shapes[] = {{"wq_wo", d, d}, {"wk_wv", dkv, d}, {"gate_up", o.ffn, d}, {"down", d, o.ffn},
                      {"output", o.vocab, d}};
        for (int64_t n : o.matmul_tokens) {
            for (const auto& sh : shapes) {
                if (Status s = bench_matmul(o, sh.n_out, sh.n_in, n, sh.name, info->l2_bytes, rec); !s.ok()) {
                    rec.fail(fmt("matmul %s t=%lld", sh.name, static_cast<long long>(n)), s);
                }
            }
        }
    }
    if (o.decode || o.matmul) {
        if (Status s = bench_copy(o, rec); !s.ok()) rec.fail("copy", s);
    }
    rec.print_table();
    return rec.n_failed() ? 1 : 0;
}

}  // namespace
}  // namespace tca

int main(int argc, char** argv) { return tca::run(argc, argv); }
