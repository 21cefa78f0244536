// main() of tca_cuda_tests: the parity and invariant suites compiled with TCA_TEST_CUDA=1, so
// the backend under test is the CUDA device (support/harness.h kUnderTest). Without a usable
// device every test is skipped with the reason, so listing and running never crash.
#include <gtest/gtest.h>

#include <cstdio>

#include "support/device_staging.h"
#if TCA_HAVE_CUDA
#include "backend/cuda/cuda_runtime.h"
#endif

namespace {

class CudaEnvironment : public ::testing::Environment {
public:
    void SetUp() override {
#if TCA_HAVE_CUDA
        const tca::Status s = tca::cuda::device_check();
        if (!s.ok()) GTEST_SKIP() << s.message();
        auto info = tca::cuda::device_info();
        if (info.ok()) {
            std::fprintf(stderr, "tca_cuda_tests: %s (cc %d.%d, %d SMs)\n", info.value().name.c_str(),
                         info.value().cc_major, info.value().cc_minor, info.value().sm_count);
        }
#else
        GTEST_SKIP() << "built without CUDA";
#endif
    }
};

}  // namespace

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new CudaEnvironment);
    return RUN_ALL_TESTS();
}
