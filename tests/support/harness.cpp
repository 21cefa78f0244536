// Test harness (harness.h).
#include "support/harness.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cctype>
#include <cstring>
#include <limits>
#include <mutex>
#include <sstream>

#include "backend/cpu/cpu_ops.h"
#include "core/dtype.h"
#include "reference/ref_ops.h"
#include "support/device_staging.h"

namespace tca::test {

// ---- Backends -------------------------------------------------------------------------------

const char* backend_name(Backend b) {
    switch (b) {
        case Backend::kRef: return "ref";
        case Backend::kNaiveF32: return "naive_f32";
        case Backend::kNaiveLowp: return "naive_lowp";
        case Backend::kCpu: return "cpu";
        case Backend::kCuda: return "cuda";
    }
    return "?";
}

#define TCA_TEST_DEFINE_RUN(name, Params)                            \
    Status run(Backend backend, const Params& p) {                   \
        switch (backend) {                                           \
            case Backend::kRef: return ref::name(p);                 \
            case Backend::kNaiveF32: return ref::naive_f32::name(p); \
            case Backend::kNaiveLowp: return naive_lowp_run(p);      \
            case Backend::kCpu: return cpu::name(p);                 \
            case Backend::kCuda: return run_staged_on_cuda(p);       \
        }                                                            \
        return Status();                                             \
    }
TCA_FOR_EACH_OP(TCA_TEST_DEFINE_RUN)
#undef TCA_TEST_DEFINE_RUN

// ---- Guarded buffers ------------------------------------------------------------------------

void Buf::Free::operator()(unsigned char* p) const { std::free(p); }

Buf::Buf(DType dtype, std::vector<int64_t> shape) : shape_(std::move(shape)) {
    numel_ = 1;
    for (int64_t s : shape_) {
        TCA_ASSERT(s >= 0, "negative extent");
        numel_ *= s;
    }
    data_bytes_ = static_cast<size_t>(numel_) * dtype_size(dtype);
    const size_t total = ((2 * kGuardBytes + data_bytes_ + 63) / 64) * 64;
    mem_.reset(static_cast<unsigned char*>(std::aligned_alloc(64, total)));
    TCA_ASSERT(mem_ != nullptr, "out of memory");
    std::memset(mem_.get(), kCanary, total);
    view_.data = mem_.get() + kGuardBytes;
    view_.dtype = dtype;
    view_.ndim = static_cast<int>(shape_.size());
    int64_t st = 1;
    for (int d = view_.ndim - 1; d >= 0; --d) {
        view_.shape[static_cast<size_t>(d)] = shape_[static_cast<size_t>(d)];
        view_.stride[static_cast<size_t>(d)] = st;
        st *= shape_[static_cast<size_t>(d)];
    }
    fill(0.0);
}

double Buf::get(int64_t i) const {
    TCA_ASSERT(i >= 0 && i < numel_, "flat index %lld of %lld", static_cast<long long>(i),
               static_cast<long long>(numel_));
    if (dtype() == DType::kI32) return view_.ptr<int32_t>()[i];
    return load_as_f32(view_.data, i, dtype());
}

void Buf::set(int64_t i, double v) {
    TCA_ASSERT(i >= 0 && i < numel_, "flat index %lld of %lld", static_cast<long long>(i),
               static_cast<long long>(numel_));
    if (dtype() == DType::kI32) {
        view_.ptr<int32_t>()[i] = static_cast<int32_t>(v);
    } else {
        store_from_f32(view_.data, i, dtype(), static_cast<float>(v));
    }
}

int64_t Buf::flat(std::initializer_list<int64_t> idx) const {
    TCA_ASSERT(idx.size() == shape_.size(), "%zu indices for %zu dims", idx.size(), shape_.size());
    int64_t f = 0;
    size_t d = 0;
    for (int64_t i : idx) {
        TCA_ASSERT(i >= 0 && i < shape_[d], "index %lld out of [0, %lld)", static_cast<long long>(i),
                   static_cast<long long>(shape_[d]));
        f = f * shape_[d] + i;
        ++d;
    }
    return f;
}

std::vector<double> Buf::values() const {
    std::vector<double> out(static_cast<size_t>(numel_));
    for (int64_t i = 0; i < numel_; ++i) out[static_cast<size_t>(i)] = get(i);
    return out;
}

void Buf::fill(double v) {
    for (int64_t i = 0; i < numel_; ++i) set(i, v);
}

void Buf::fill_poison() {
    if (dtype() == DType::kI32) {
        for (int64_t i = 0; i < numel_; ++i) view_.ptr<int32_t>()[i] = kIntSentinel;
    } else {
        fill(std::numeric_limits<double>::quiet_NaN());
    }
}

Buf Buf::clone() const {
    Buf c(dtype(), shape_);
    if (data_bytes_) std::memcpy(c.view_.data, view_.data, data_bytes_);
    return c;
}

uint32_t Buf::bits(int64_t i) const {
    const size_t sz = dtype_size(dtype());
    uint32_t u = 0;
    std::memcpy(&u, static_cast<const unsigned char*>(view_.data) + static_cast<size_t>(i) * sz, sz);
    return u;
}

::testing::AssertionResult Buf::canaries_intact(const std::string& name) const {
    const unsigned char* base = mem_.get();
    const unsigned char* after = base + kGuardBytes + data_bytes_;
    for (size_t i = 0; i < kGuardBytes; ++i) {
        if (base[i] != kCanary) {
            return ::testing::AssertionFailure()
                   << name << ": canary " << (kGuardBytes - i) << " bytes before the data was "
                   << "overwritten (0x" << std::hex << static_cast<int>(base[i]) << ")";
        }
        if (after[i] != kCanary) {
            return ::testing::AssertionFailure()
                   << name << ": canary " << i << " bytes after the data (" << data_bytes_
                   << " bytes) was overwritten (0x" << std::hex << static_cast<int>(after[i]) << ")";
        }
    }
    return ::testing::AssertionSuccess();
}

std::string Buf::index_string(int64_t f) const {
    std::vector<int64_t> idx(shape_.size());
    for (size_t d = shape_.size(); d-- > 0;) {
        idx[d] = shape_[d] ? f % shape_[d] : 0;
        f = shape_[d] ? f / shape_[d] : 0;
    }
    std::string s = "[";
    for (size_t d = 0; d < idx.size(); ++d) s += (d ? ", " : "") + std::to_string(idx[d]);
    return s + "]";
}

Buf i32_buf(const std::vector<int32_t>& v) {
    Buf b(DType::kI32, {static_cast<int64_t>(v.size())});
    for (size_t i = 0; i < v.size(); ++i) b.set(static_cast<int64_t>(i), v[i]);
    return b;
}

Buf i32_buf_2d(const std::vector<std::vector<int32_t>>& rows, int64_t cols, int32_t pad) {
    Buf b(DType::kI32, {static_cast<int64_t>(rows.size()), cols});
    b.fill(pad);
    for (size_t r = 0; r < rows.size(); ++r) {
        TCA_ASSERT(static_cast<int64_t>(rows[r].size()) <= cols, "row longer than cols");
        for (size_t c = 0; c < rows[r].size(); ++c) {
            b.put({static_cast<int64_t>(r), static_cast<int64_t>(c)}, rows[r][c]);
        }
    }
    return b;
}

// ---- Inputs ---------------------------------------------------------------------------------

const char* input_name(Input in) {
    switch (in) {
        case Input::kNormal: return "normal";
        case Input::kSpiky: return "spiky";
        case Input::kTies: return "ties";
    }
    return "?";
}

void fill_normal(Buf& t, Rng& rng, double stddev, double mean) {
    for (int64_t i = 0; i < t.numel(); ++i) t.set(i, mean + stddev * rng.normal());
}

void fill_uniform(Buf& t, Rng& rng, double lo, double hi) {
    for (int64_t i = 0; i < t.numel(); ++i) t.set(i, rng.uniform(lo, hi));
}

void make_rows_equal(Buf& t) {
    TCA_ASSERT(t.shape().size() == 3, "make_rows_equal needs [heads, rows, d]");
    for (int64_t h = 0; h < t.dim(0); ++h) {
        for (int64_t r = 1; r < t.dim(1); ++r) {
            for (int64_t c = 0; c < t.dim(2); ++c) t.put({h, r, c}, t.at({h, 0, c}));
        }
    }
}

std::vector<std::vector<int64_t>> make_spiky(const Buf& q, Buf& k, Rng& rng, int n_spikes) {
    const int64_t hq = q.dim(0), n_q = q.dim(1), d = q.dim(2), hkv = k.dim(0), n_kv = k.dim(1);
    const int64_t g = hq / hkv;
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    std::vector<std::vector<int64_t>> rows(static_cast<size_t>(hkv));
    for (int64_t h = 0; h < hkv; ++h) {
        double qq = 0.0;
        for (int64_t c = 0; c < d; ++c) qq += q.at({h * g, n_q - 1, c}) * q.at({h * g, n_q - 1, c});
        if (qq == 0.0) continue;
        const int n = static_cast<int>(std::min<int64_t>(n_spikes, n_kv));
        std::set<int64_t> picked;
        while (static_cast<int>(picked.size()) < n) {
            picked.insert(static_cast<int64_t>(rng.below(static_cast<uint64_t>(n_kv))));
        }
        for (int64_t r : picked) {
            const double logit = rng.uniform(8.0, 12.0);
            for (int64_t c = 0; c < d; ++c) {
                k.put({h, r, c}, logit * q.at({h * g, n_q - 1, c}) / (scale * qq));
            }
            rows[static_cast<size_t>(h)].push_back(r);
        }
    }
    return rows;
}

Qkv make_qkv(int64_t hq, int64_t hkv, int64_t n_q, int64_t n_kv, int64_t d, DType kv_dtype,
             Input input, Rng& rng) {
    Qkv t{Buf(DType::kF32, {hq, n_q, d}), Buf(kv_dtype, {hkv, n_kv, d}), Buf(kv_dtype, {hkv, n_kv, d})};
    fill_normal(t.q, rng);
    fill_normal(t.k, rng);
    fill_normal(t.v, rng);
    if (input == Input::kSpiky && n_q > 0 && n_kv > 0) {
        make_spiky(t.q, t.k, rng, 3);
    } else if (input == Input::kTies) {
        make_rows_equal(t.k);
    }
    return t;
}

std::vector<int32_t> random_subset(int64_t lo, int64_t hi, double frac, Rng& rng) {
    std::vector<int32_t> out;
    for (int64_t i = lo; i < hi; ++i) {
        if (rng.uniform() < frac) out.push_back(static_cast<int32_t>(i));
    }
    return out;
}

// ---- Comparison -----------------------------------------------------------------------------

namespace {
double abs_err(double g, double w) {
    if (std::isnan(g) && std::isnan(w)) return 0.0;
    if (!std::isfinite(g) || !std::isfinite(w)) return g == w ? 0.0 : INFINITY;
    return std::fabs(g - w);
}
}  // namespace

ErrorStats error_stats(const Buf& got, const Buf& want) {
    TCA_ASSERT(got.numel() == want.numel(), "size mismatch");
    ErrorStats s;
    for (int64_t i = 0; i < got.numel(); ++i) {
        const double g = got.get(i), w = want.get(i);
        const double e = abs_err(g, w);
        if (std::isfinite(w)) s.max_want = std::max(s.max_want, std::fabs(w));
        if (e > s.max_abs || (s.worst < 0 && e >= s.max_abs)) {
            s.max_abs = e;
            s.worst = i;
        }
        s.max_rel = std::max(s.max_rel, e / std::max(std::fabs(w), 1e-30));
    }
    return s;
}

::testing::AssertionResult all_near(const Buf& got, const Buf& want, double tol,
                                    const std::string& what) {
    if (got.shape() != want.shape()) {
        return ::testing::AssertionFailure() << what << ": shape mismatch";
    }
    for (int64_t i = 0; i < got.numel(); ++i) {
        const double g = got.get(i), w = want.get(i);
        if (!(abs_err(g, w) <= tol)) {
            const ErrorStats s = error_stats(got, want);
            return ::testing::AssertionFailure()
                   << what << ": first offending index " << got.index_string(i) << ": got " << g
                   << ", want " << w << " (|err| " << abs_err(g, w) << " > tol " << tol
                   << "); max abs err " << s.max_abs << " at " << got.index_string(s.worst)
                   << ", max rel err " << s.max_rel;
        }
    }
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult all_equal(const Buf& got, const Buf& want, const std::string& what) {
    if (got.shape() != want.shape() || got.dtype() != want.dtype()) {
        return ::testing::AssertionFailure() << what << ": shape or dtype mismatch";
    }
    for (int64_t i = 0; i < got.numel(); ++i) {
        if (got.bits(i) != want.bits(i)) {
            return ::testing::AssertionFailure()
                   << what << ": first differing index " << got.index_string(i) << ": got "
                   << got.get(i) << ", want " << want.get(i);
        }
    }
    return ::testing::AssertionSuccess();
}

Tolerance fa3_tolerance(const Buf& naive, const Buf& want) {
    const ErrorStats s = error_stats(naive, want);
    TCA_ASSERT(std::isfinite(s.max_abs), "naive f32 produced a non-finite value");
    return Tolerance{s.max_abs, kFloorEps * s.max_want};
}

namespace {
struct ErrRow {
    int n = 0;
    double backend_max = 0.0, naive_max = 0.0, ratio_max = 0.0, want_max = 0.0;
    double backend_sum = 0.0, naive_sum = 0.0;
};
std::mutex& err_mutex() {
    static std::mutex m;
    return m;
}
std::map<std::string, ErrRow>& err_table() {
    static std::map<std::string, ErrRow> t;
    return t;
}
}  // namespace

void record_error(const std::string& op_output, double backend_err, double naive_err,
                  double max_want) {
    std::lock_guard<std::mutex> lock(err_mutex());
    ErrRow& r = err_table()[op_output];
    ++r.n;
    r.backend_max = std::max(r.backend_max, backend_err);
    r.naive_max = std::max(r.naive_max, naive_err);
    r.want_max = std::max(r.want_max, max_want);
    r.backend_sum += backend_err;
    r.naive_sum += naive_err;
    if (naive_err > 0.0) r.ratio_max = std::max(r.ratio_max, backend_err / naive_err);
}

void print_error_table() {
    std::lock_guard<std::mutex> lock(err_mutex());
    if (err_table().empty()) return;
    std::printf("\n| op.output | cases | cpu max abs err | cpu mean | naive f32 max | naive mean | "
                "max cpu/naive |\n|---|---|---|---|---|---|---|\n");
    for (const auto& [name, r] : err_table()) {
        std::printf("| %s | %d | %.2e | %.2e | %.2e | %.2e | %.2f |\n", name.c_str(), r.n,
                    r.backend_max, r.backend_sum / r.n, r.naive_max, r.naive_sum / r.n,
                    r.ratio_max);
    }
}

// ---- Case registry --------------------------------------------------------------------------

const std::vector<std::string>& required_edge_tags() {
    static const std::vector<std::string> tags = {"1", "b-1", "b", "b+1", "3b+7",
                                                  "w-1", "w", "w+b", "1000"};
    return tags;
}

std::set<std::string> edge_tags(int64_t length, int b, int w) {
    std::set<std::string> t;
    if (length == 1) t.insert("1");
    if (length == b - 1) t.insert("b-1");
    if (length == b) t.insert("b");
    if (length == b + 1) t.insert("b+1");
    if (length == 3 * b + 7) t.insert("3b+7");
    if (length == w - 1) t.insert("w-1");
    if (length == w) t.insert("w");
    if (length == w + b) t.insert("w+b");
    if (length == 1000) t.insert("1000");
    return t;
}

namespace {
std::vector<CaseRecord>& case_list() {
    static std::vector<CaseRecord> v;
    return v;
}
}  // namespace

bool register_case(const CaseRecord& r) {
    case_list().push_back(r);
    return true;
}

const std::vector<CaseRecord>& registered_cases() { return case_list(); }

std::string OpCase::name() const {
    std::ostringstream os;
    os << "L" << length << "_H" << hq << "x" << hkv << "_d" << d << "_nq" << n_q << "_p"
       << (q_pos0 < 0 ? std::string("end") : std::to_string(q_pos0)) << "_" << dtype_name(kv)
       << "_b" << b << "w" << w << "_" << input_name(input) << "_s" << seed;
    if (frac != 0.3) os << "_f" << frac;
    if (alpha != 0.5f) os << "_a" << alpha;
    if (mass_norm != MassNorm::kMax) os << "_" << mass_norm_name(mass_norm);
    if (!label.empty()) os << "_" << label;
    std::string s = os.str();
    for (char& ch : s) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    }
    return s;
}

std::ostream& operator<<(std::ostream& os, const OpCase& c) { return os << c.op << "/" << c.name(); }

std::vector<OpCase> registered(std::vector<OpCase> cases) {
    std::set<std::string> names;
    for (const OpCase& c : cases) {
        TCA_ASSERT(names.insert(c.name()).second, "duplicate case name %s", c.name().c_str());
        register_case(CaseRecord{c.op, c.name(), c.length, c.b, c.w});
    }
    return cases;
}

}  // namespace tca::test
