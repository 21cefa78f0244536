// The GPU libraries are opened at run time (backend/cuda/dynamic_library.h): a CPU process
// never maps cuBLAS (it cost every CPU run and test process about 0.4 s of start-up), and in
// a CUDA build cuBLAS loads and resolves every entry point matmul calls without a GPU, which
// CI checks here.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "backend/ops.h"
#if TCA_HAVE_CUDA
#include "backend/cuda/cuda_ops.h"
#endif

namespace tca {
namespace {

std::string mapped_files() {
    std::ifstream f("/proc/self/maps");
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

// Runs before anything in this process could have opened cuBLAS (ctest runs each test alone).
TEST(CudaLibraries, CpuProcessDoesNotMapCublas) {
    const std::string maps = mapped_files();
    ASSERT_FALSE(maps.empty()) << "/proc/self/maps unreadable";
    EXPECT_EQ(maps.find("libcublas"), std::string::npos) << "a CPU process mapped cuBLAS";
}

#if TCA_HAVE_CUDA
TEST(CudaLibraries, CublasLoadsWithoutAGpu) {
    const Result<std::string> lib = cuda::cublas_library();
    ASSERT_TRUE(lib.ok()) << lib.status().to_string();
    EXPECT_NE(lib->find("libcublas.so."), std::string::npos) << *lib;
    EXPECT_NE(mapped_files().find("libcublas"), std::string::npos);
}
#endif

}  // namespace
}  // namespace tca
