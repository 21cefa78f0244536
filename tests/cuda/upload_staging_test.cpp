// cuda::copy_to_device's pinned staging ring (backend/cuda/cuda_runtime.cu): small uploads
// return before the GPU has copied them, so the host buffer must be reusable at once and the
// copies must land in stream order, including when the ring wraps around many times and when
// staged and unstaged (larger than a slot) uploads alternate on the same bytes.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#if TCA_HAVE_CUDA
#include "backend/cuda/cuda_runtime.h"
#endif

namespace tca::test {
namespace {

#if TCA_HAVE_CUDA

TEST(CudaUploadStaging, ReusedHostBufferAndWrapAround) {
    // 200 uploads of 1 KiB from ONE host buffer rewritten after each call, to 200 offsets:
    // every row must hold what the buffer held at its call (the ring has 16 slots).
    constexpr int kRows = 200, kInts = 256;
    auto dev = cuda::DeviceBuffer::allocate(static_cast<size_t>(kRows) * kInts * sizeof(int32_t));
    ASSERT_TRUE(dev.ok()) << dev.status().message();
    std::vector<int32_t> row(kInts);
    for (int r = 0; r < kRows; ++r) {
        for (int i = 0; i < kInts; ++i) row[static_cast<size_t>(i)] = r * 1000 + i;
        ASSERT_TRUE(cuda::copy_to_device(static_cast<int32_t*>(dev->get()) + r * kInts, row.data(),
                                         row.size() * sizeof(int32_t)).ok());
    }
    std::vector<int32_t> back(static_cast<size_t>(kRows) * kInts);
    ASSERT_TRUE(cuda::copy_to_host(back.data(), dev->get(), back.size() * sizeof(int32_t)).ok());
    for (int r = 0; r < kRows; ++r) {
        for (int i = 0; i < kInts; ++i) {
            ASSERT_EQ(back[static_cast<size_t>(r * kInts + i)], r * 1000 + i) << "row " << r << " int " << i;
        }
    }
}

TEST(CudaUploadStaging, StreamOrderAcrossStagedAndLargeCopies) {
    // The same device bytes written by a large (synchronous) upload, then a staged one over its
    // head, then a large one again, then staged: the last write of each byte must win.
    constexpr size_t kLarge = 1 << 20;  // 4 MiB of int32: more than a staging slot
    auto dev = cuda::DeviceBuffer::allocate(kLarge * sizeof(int32_t));
    ASSERT_TRUE(dev.ok()) << dev.status().message();
    std::vector<int32_t> big(kLarge), small(64);
    auto* d = static_cast<int32_t*>(dev->get());
    for (int round = 1; round <= 3; ++round) {
        for (size_t i = 0; i < kLarge; ++i) big[i] = static_cast<int32_t>(round * 7 + i % 1000);
        ASSERT_TRUE(cuda::copy_to_device(d, big.data(), kLarge * sizeof(int32_t)).ok());
        for (size_t i = 0; i < small.size(); ++i) small[i] = -static_cast<int32_t>(round * 100 + i);
        ASSERT_TRUE(cuda::copy_to_device(d + 5, small.data(), small.size() * sizeof(int32_t)).ok());
        std::vector<int32_t> back(kLarge);
        ASSERT_TRUE(cuda::copy_to_host(back.data(), d, kLarge * sizeof(int32_t)).ok());
        for (size_t i = 0; i < kLarge; ++i) {
            const bool in_small = i >= 5 && i < 5 + small.size();
            const int32_t want = in_small ? small[i - 5] : big[i];
            ASSERT_EQ(back[i], want) << "round " << round << " index " << i;
        }
    }
}

#endif  // TCA_HAVE_CUDA

}  // namespace
}  // namespace tca::test
