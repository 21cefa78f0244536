// A small fixed-size thread pool for data-parallel loops. The calling thread takes part, so a
// pool of n threads runs n-1 workers. Work items are claimed dynamically (one atomic counter),
// which balances causal attention tiles of unequal cost.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tca {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int n_threads() const { return n_threads_; }
    // Calls fn(item, thread_index) for every item in [0, n_items), items claimed in order.
    // thread_index is in [0, n_threads()) and unique among concurrently running calls.
    void parallel_for(int64_t n_items, const std::function<void(int64_t, int)>& fn);

private:
    void worker_loop(int index);
    void run_items(int thread_index);

    int n_threads_;
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable cv_start_;
    std::condition_variable cv_done_;
    uint64_t generation_ = 0;
    int n_active_ = 0;
    bool stop_ = false;
    const std::function<void(int64_t, int)>* job_ = nullptr;
    int64_t n_items_ = 0;
    std::atomic<int64_t> next_{0};
    std::mutex call_mu_;  // one parallel_for at a time
};

// The process-wide pool used by CPU ops. Size defaults to std::thread::hardware_concurrency();
// set_num_threads() (the CLI's --threads) replaces it.
ThreadPool& thread_pool();
void set_num_threads(int n);

}  // namespace tca
