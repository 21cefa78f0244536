// Shared pieces of the parity tests: every op runs on the float64 reference (the oracle), the
// naive float32 reference (sizes the tolerance) and the CPU backend, on identical inputs, into
// NaN-prefilled outputs guarded by canaries.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/harness.h"

namespace tca::test {

// A parity case of an attention or selection op (the fields of OpCase in order).
inline OpCase mk(const char* op, int64_t length, int64_t hq, int64_t hkv, int64_t d, int64_t n_q,
                 int64_t q_pos0, DType kv = DType::kF32, Input in = Input::kNormal, int b = 16,
                 int w = 64, uint64_t seed = 1) {
    OpCase c;
    c.op = op;
    c.length = length;
    c.hq = hq;
    c.hkv = hkv;
    c.d = d;
    c.n_q = n_q;
    c.q_pos0 = q_pos0;
    c.kv = kv;
    c.input = in;
    c.b = b;
    c.w = w;
    c.seed = seed;
    return c;
}

// One output tensor in three copies: oracle (f64), naive f32 and the backend under test.
struct Out3 {
    Buf ref, naive, cpu;
    Out3(DType dtype, std::vector<int64_t> shape)
        : ref(dtype, shape), naive(dtype, shape), cpu(dtype, std::move(shape)) {
        ref.fill_poison();
        naive.fill_poison();
        cpu.fill_poison();
    }
    // cpu holds the backend under test (kUnderTest: cpu, or cuda in tca_cuda_tests).
    Buf& of(Backend b) {
        return b == Backend::kRef ? ref : (b == Backend::kNaiveF32 || b == Backend::kNaiveLowp) ? naive : cpu;
    }
};

inline const std::vector<Backend>& parity_backends() {
    static const std::vector<Backend> b = {Backend::kRef, kNaive, kUnderTest};
    return b;
}

// Canaries of every copy intact.
inline void expect_canaries(const Out3& o, const std::string& name) {
    EXPECT_TRUE(o.ref.canaries_intact("ref " + name));
    EXPECT_TRUE(o.naive.canaries_intact("naive_f32 " + name));
    EXPECT_TRUE(o.cpu.canaries_intact(std::string(backend_name(kUnderTest)) + " " + name));
}

// A float output by the FlashAttention-3 rule; the measured errors go to the table.
inline void expect_fa3(const OpCase& c, const std::string& output, const Out3& o) {
    const Tolerance tol = fa3_tolerance(o.naive, o.ref);
    const ErrorStats s = error_stats(o.cpu, o.ref);
    record_error(c.op + "." + output, s.max_abs, tol.naive_err, s.max_want);
    EXPECT_TRUE(all_near(o.cpu, o.ref, tol.bound(),
                         c.op + "." + output + " " + backend_name(kUnderTest) + " vs float64"))
        << "tolerance = 2 x " << backend_name(kNaive) << " error " << tol.naive_err << " + floor "
        << tol.floor;
}

}  // namespace tca::test
