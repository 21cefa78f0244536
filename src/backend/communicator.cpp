// Host communicator (communicator.h); the NCCL one is in cuda/nccl_comm.cpp when built.
#include "backend/communicator.h"

#include "core/check.h"

namespace tca {

class HostCommGroup::Rank final : public Communicator {
public:
    Rank(HostCommGroup& group, int rank) : group_(group), rank_(rank) {}
    int rank() const override { return rank_; }
    int n_ranks() const override { return group_.n_ranks_; }
    void abort() override { group_.abort(); }

    Status all_reduce_sum(float* data, int64_t n) override {
        HostCommGroup& g = group_;
        g.buffers_[static_cast<size_t>(rank_)] = data;
        if (!g.arrive_and_wait()) return aborted();
        const int64_t n_ranks = g.n_ranks_;
        const int64_t e0 = n * rank_ / n_ranks, e1 = n * (rank_ + 1) / n_ranks;
        for (int64_t e = e0; e < e1; ++e) {
            float sum = g.buffers_[0][e];
            for (size_t r = 1; r < g.buffers_.size(); ++r) sum += g.buffers_[r][e];
            for (float* b : g.buffers_) b[e] = sum;
        }
        // Nobody may reuse its buffer before every rank has written its elements.
        if (!g.arrive_and_wait()) return aborted();
        return Status();
    }

private:
    static Status aborted() {
        return Status(StatusCode::kDeviceError, "tensor parallel: another rank failed");
    }
    HostCommGroup& group_;
    int rank_;
};

HostCommGroup::HostCommGroup(int n_ranks) : n_ranks_(n_ranks), buffers_(static_cast<size_t>(n_ranks)) {
    TCA_ASSERT(n_ranks >= 1, "communicator group of %d ranks", n_ranks);
    for (int r = 0; r < n_ranks; ++r) ranks_.push_back(std::make_unique<Rank>(*this, r));
}

Communicator& HostCommGroup::rank(int r) { return *ranks_[static_cast<size_t>(r)]; }

bool HostCommGroup::arrive_and_wait() {
    std::unique_lock<std::mutex> lock(mu_);
    if (aborted_) return false;
    const uint64_t phase = phase_;
    if (++n_arrived_ == n_ranks_) {
        n_arrived_ = 0;
        ++phase_;
        cv_.notify_all();
        return true;
    }
    cv_.wait(lock, [&] { return phase_ != phase || aborted_; });
    return phase_ != phase;
}

void HostCommGroup::abort() {
    std::lock_guard<std::mutex> lock(mu_);
    aborted_ = true;
    cv_.notify_all();
}

void HostCommGroup::reset() {
    std::lock_guard<std::mutex> lock(mu_);
    aborted_ = false;
    n_arrived_ = 0;
}

#if !TCA_HAVE_NCCL
Result<std::vector<std::unique_ptr<Communicator>>> create_nccl_communicators(int n_ranks) {
    (void)n_ranks;
    return unsupported("--tensor-parallel on cuda: this build has no NCCL (configure with "
                       "-DTCA_CUDA=ON where nccl.h and libnccl are installed)");
}
#endif

}  // namespace tca
