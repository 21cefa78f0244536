// Test harness shared by the parity, invariant and unit suites: backends, guarded buffers
// (NaN-prefilled outputs surrounded by canaries), seeded inputs (normal, spiky, exact ties),
// comparison helpers, the FlashAttention-3 tolerance rule (docs/numerics.md) and the registry
// of parity cases read by tests/parity/coverage_test.cpp.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "core/rng.h"
#include "core/tensor_view.h"

namespace tca::test {

// ---- Backends -------------------------------------------------------------------------------

// kRef: the float64 oracle (tca::ref); kNaiveF32: the same loops in float32 (only sizes
// tolerances); kNaiveLowp: the naive loops with the CUDA tensor-core roundings (q, K, V and P
// to bf16, or f16 for f16 K/V; tca::ref::naive_lowp) for attention_dense and sparse_prefill,
// naive_f32 for every other op; kCpu / kCuda: the backends under test.
enum class Backend { kRef, kNaiveF32, kNaiveLowp, kCpu, kCuda };
const char* backend_name(Backend b);

// The backend a test executable checks: the CPU in tca_{parity,invariant,...}_tests, CUDA in
// tca_cuda_tests (built from the same sources with TCA_TEST_CUDA=1), and the naive twin that
// sizes its tolerances (docs/numerics.md).
#ifndef TCA_TEST_CUDA
#define TCA_TEST_CUDA 0
#endif
inline constexpr Backend kUnderTest = TCA_TEST_CUDA ? Backend::kCuda : Backend::kCpu;
inline constexpr Backend kNaive = TCA_TEST_CUDA ? Backend::kNaiveLowp : Backend::kNaiveF32;
// The backends the invariant suite runs on (ref and the backend under test).
inline std::vector<Backend> tested_backends() { return {Backend::kRef, kUnderTest}; }

#define TCA_TEST_DECLARE_RUN(name, Params) Status run(Backend backend, const Params& p);
TCA_FOR_EACH_OP(TCA_TEST_DECLARE_RUN)
#undef TCA_TEST_DECLARE_RUN

// ---- Guarded buffers ------------------------------------------------------------------------

// An owning contiguous buffer with kGuardBytes of canary bytes before and after the data, so a
// kernel writing out of bounds is caught by canaries_intact() (and by ASan beyond the guards).
class Buf {
public:
    static constexpr size_t kGuardBytes = 256;  // keeps the data 64-byte aligned
    static constexpr unsigned char kCanary = 0xA5;
    static constexpr int32_t kIntSentinel = -0x7eadbeef;  // "NaN" of i32 outputs

    Buf() = default;
    Buf(DType dtype, std::vector<int64_t> shape);

    const TensorView& view() const { return view_; }
    DType dtype() const { return view_.dtype; }
    const std::vector<int64_t>& shape() const { return shape_; }
    int64_t numel() const { return numel_; }
    int64_t dim(size_t i) const { return shape_[i]; }

    // Element at a flat (row-major) index, as a double (exact for every dtype used here).
    double get(int64_t flat) const;
    void set(int64_t flat, double v);  // rounds to the storage dtype
    int64_t flat(std::initializer_list<int64_t> idx) const;
    double at(std::initializer_list<int64_t> idx) const { return get(flat(idx)); }
    void put(std::initializer_list<int64_t> idx, double v) { set(flat(idx), v); }
    std::vector<double> values() const;

    void fill(double v);
    // Outputs: NaN for floats, kIntSentinel for i32, so an element never written is visible.
    void fill_poison();
    Buf clone() const;
    // Raw storage bytes of one flat element (bitwise comparisons of f16/bf16 copies).
    uint32_t bits(int64_t flat) const;

    ::testing::AssertionResult canaries_intact(const std::string& name) const;
    std::string index_string(int64_t flat) const;  // "[h, i, c]"

private:
    struct Free {
        void operator()(unsigned char* p) const;
    };
    std::unique_ptr<unsigned char, Free> mem_;
    size_t data_bytes_ = 0;
    std::vector<int64_t> shape_;
    int64_t numel_ = 0;
    TensorView view_;
};

// A 1-d i32 vector as a Buf.
Buf i32_buf(const std::vector<int32_t>& v);
// A [rows, cols] i32 Buf from rows of possibly different length, padded with `pad`.
Buf i32_buf_2d(const std::vector<std::vector<int32_t>>& rows, int64_t cols, int32_t pad = -1);

// ---- Inputs ---------------------------------------------------------------------------------

enum class Input {
    kNormal,  // N(0, 1) queries and keys/values
    kSpiky,   // a few keys per KV head aligned with the last query: logits 8..12 above the rest
    kTies,    // every key row of a head equal: all scores tie exactly
};
const char* input_name(Input in);

void fill_normal(Buf& t, Rng& rng, double stddev = 1.0, double mean = 0.0);
void fill_uniform(Buf& t, Rng& rng, double lo, double hi);
// Every row of every head of a [heads, rows, d] tensor becomes a copy of row 0 of its head.
void make_rows_equal(Buf& t);
// For each KV head, `n_spikes` random rows of k become target_logit * q / (scale * |q|^2) with
// q the last query of the group's first head, target logit uniform in [8, 12]; returns the rows.
std::vector<std::vector<int64_t>> make_spiky(const Buf& q, Buf& k, Rng& rng, int n_spikes);

// q [hq, n_q, d] f32, k/v [hkv, n_kv, d] in kv_dtype, filled according to `input`.
struct Qkv {
    Buf q, k, v;
};
Qkv make_qkv(int64_t hq, int64_t hkv, int64_t n_q, int64_t n_kv, int64_t d, DType kv_dtype,
             Input input, Rng& rng);

// A random strictly ascending subset of [lo, hi) with each element kept with probability frac.
std::vector<int32_t> random_subset(int64_t lo, int64_t hi, double frac, Rng& rng);

// ---- Comparison -----------------------------------------------------------------------------

struct ErrorStats {
    double max_abs = 0.0;  // max |got - want| (inf when got is NaN/inf and want is finite)
    double max_rel = 0.0;  // max |got - want| / max(|want|, 1e-30)
    int64_t worst = -1;    // flat index of max_abs
    double max_want = 0.0; // max |want|
};
ErrorStats error_stats(const Buf& got, const Buf& want);

// Every element within `tol` in absolute value; the failure names the first offending index,
// its values, and the max abs/rel errors.
::testing::AssertionResult all_near(const Buf& got, const Buf& want, double tol,
                                    const std::string& what);
// Bitwise equal storage, element by element; the failure names the first differing index.
::testing::AssertionResult all_equal(const Buf& got, const Buf& want, const std::string& what);

// FlashAttention-3 rule (docs/numerics.md): a float32 kernel may err at most 2x the error of
// the naive float32 implementation, both against float64, plus an absolute floor of
// kFloorEps * max |want| (8 float32 ulps at the output's largest magnitude), so an exactly
// right naive output (error 0) still leaves a backend room for a few roundings. Relative to the
// output's own scale, so small outputs (importance scores ~1/L) get no free absolute slack.
inline constexpr double kFloorEps = 8.0 * 1.1920928955078125e-07;  // 8 float32 epsilons
struct Tolerance {
    double naive_err = 0.0;
    double floor = 0.0;
    double bound() const { return 2.0 * naive_err + floor; }
};
Tolerance fa3_tolerance(const Buf& naive, const Buf& want);

// Measured errors, collected per op and output for docs/numerics.md (printed at exit by the
// parity binary).
void record_error(const std::string& op_output, double backend_err, double naive_err,
                  double max_want);
void print_error_table();

// ---- Case registry --------------------------------------------------------------------------

// The edge lengths every op must cover (relative to its b and w).
const std::vector<std::string>& required_edge_tags();
// The tags of `length` for block size b and window w: "1", "b-1", "b", "b+1", "3b+7", "w-1",
// "w", "w+b", "1000".
std::set<std::string> edge_tags(int64_t length, int b, int w);

struct CaseRecord {
    std::string op;
    std::string name;
    int64_t length;
    int block_size;
    int local_window;
};
// Returns true so it can initialise a namespace-scope constant.
bool register_case(const CaseRecord& r);
const std::vector<CaseRecord>& registered_cases();

// The parity case description shared by every op's test.
struct OpCase {
    std::string op;
    std::string label;     // what is special about it
    int64_t length = 1;    // n_kv; n_blocks for block_budget; cache length for decode/compact
    int64_t hq = 1, hkv = 1, d = 8;
    int64_t n_q = 1;       // queries (n_obs for token_importance)
    int64_t q_pos0 = -1;   // -1: the last n_q positions
    DType kv = DType::kF32;
    int b = 16, w = 64;
    Input input = Input::kNormal;
    uint64_t seed = 1;
    double frac = 0.3;     // share of candidate positions selected/gathered (where it applies)
    float alpha = 0.5f;    // block_score
    MassNorm mass_norm = MassNorm::kMax;
    std::string name() const;  // gtest-safe unique name
};
std::ostream& operator<<(std::ostream& os, const OpCase& c);
// Registers every case (op, name, length, b, w) and returns them (for ValuesIn).
std::vector<OpCase> registered(std::vector<OpCase> cases);
struct OpCaseName {
    std::string operator()(const ::testing::TestParamInfo<OpCase>& info) const {
        return info.param.name();
    }
};

}  // namespace tca::test
