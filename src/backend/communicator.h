// Communicators for tensor parallelism: the ranks of a group each hold a shard of the model and
// sum their partial results with all_reduce_sum after the attention output and MLP down
// projections. Two kinds: ranks that are threads of one process with host memory
// (HostCommGroup, the CPU's), and NCCL ranks, one GPU per thread (backend/cuda/nccl_comm).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/status.h"

namespace tca {

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int n_ranks() const = 0;
    // Replaces data[0, n) (f32, in the rank's memory space) by its sum over the ranks, on every
    // rank. Every rank calls it with the same n, in the same order of calls. The result is the
    // same on every rank and from run to run (a fixed summation order).
    virtual Status all_reduce_sum(float* data, int64_t n) = 0;
    // Wakes every rank blocked in (or later entering) a collective with an error: a rank that
    // failed calls it so that the others do not wait for it forever.
    virtual void abort() = 0;
};

// n_ranks threads of one process on host memory. all_reduce_sum: every rank publishes its
// buffer, rank r sums elements [r*n/N, (r+1)*n/N) over the ranks in rank order (rank 0 + rank
// 1 + ...) and writes the sum into every rank's buffer, then all wait for each other.
class HostCommGroup {
public:
    explicit HostCommGroup(int n_ranks);
    HostCommGroup(const HostCommGroup&) = delete;
    HostCommGroup& operator=(const HostCommGroup&) = delete;
    int n_ranks() const { return n_ranks_; }
    Communicator& rank(int r);
    // Clears an abort, for the next collective call after all ranks have returned.
    void reset();

private:
    class Rank;
    // false when aborted.
    bool arrive_and_wait();
    void abort();

    int n_ranks_;
    std::vector<std::unique_ptr<Communicator>> ranks_;
    std::vector<float*> buffers_;
    std::mutex mu_;
    std::condition_variable cv_;
    int n_arrived_ = 0;
    uint64_t phase_ = 0;
    bool aborted_ = false;
};

// NCCL communicators for ranks 0..n_ranks-1 on CUDA devices 0..n_ranks-1 (ncclCommInitAll),
// with NCCL_NVLS_ENABLE=0 unless the environment sets it (NVLink multicast stays off). Errors:
// a build without CUDA or NCCL, fewer than n_ranks devices, NCCL's own failures. Rank r's
// all_reduce_sum must be called on a thread whose current device is r; it is enqueued on
// that device's stream.
Result<std::vector<std::unique_ptr<Communicator>>> create_nccl_communicators(int n_ranks);

}  // namespace tca
