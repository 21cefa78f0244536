// ThreadPool implementation (thread_pool.h).
#include "core/thread_pool.h"

#include <memory>

#include "core/check.h"

namespace tca {

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_start_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run_items(int thread_index) {
    while (true) {
        const int64_t item = next_.fetch_add(1, std::memory_order_relaxed);
        if (item >= n_items_) break;
        (*job_)(item, thread_index);
    }
}

void ThreadPool::worker_loop(int index) {
    uint64_t seen = 0;
    while (true) {
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_start_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
        }
        run_items(index);
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (--n_active_ == 0) cv_done_.notify_one();
        }
    }
}

void ThreadPool::parallel_for(int64_t n_items, ItemFn fn) {
    if (n_items <= 0) return;
    if (n_threads_ == 1 || n_items == 1) {
        for (int64_t i = 0; i < n_items; ++i) fn(i, 0);
        return;
    }
    std::lock_guard<std::mutex> call_lock(call_mu_);
    {
        std::lock_guard<std::mutex> lock(mu_);
        job_ = &fn;
        n_items_ = n_items;
        next_.store(0, std::memory_order_relaxed);
        n_active_ = n_threads_ - 1;
        ++generation_;
    }
    cv_start_.notify_all();
    run_items(0);
    std::unique_lock<std::mutex> lock(mu_);
    cv_done_.wait(lock, [&] { return n_active_ == 0; });
    job_ = nullptr;
}

namespace {
std::unique_ptr<ThreadPool>& pool_slot() {
    static std::unique_ptr<ThreadPool> pool;
    return pool;
}
std::mutex g_pool_mu;
thread_local ThreadPool* t_pool_override = nullptr;
}  // namespace

ScopedThreadPool::ScopedThreadPool(ThreadPool& pool) : previous_(t_pool_override) {
    t_pool_override = &pool;
}
ScopedThreadPool::~ScopedThreadPool() { t_pool_override = previous_; }

ThreadPool& thread_pool() {
    if (t_pool_override) return *t_pool_override;
    std::lock_guard<std::mutex> lock(g_pool_mu);
    auto& slot = pool_slot();
    if (!slot) {
        const unsigned hc = std::thread::hardware_concurrency();
        slot = std::make_unique<ThreadPool>(hc == 0 ? 1 : static_cast<int>(hc));
    }
    return *slot;
}

void set_num_threads(int n) {
    TCA_ASSERT(n >= 1, "thread count %d", n);
    std::lock_guard<std::mutex> lock(g_pool_mu);
    auto& slot = pool_slot();
    if (slot && slot->n_threads() == n) return;
    slot = std::make_unique<ThreadPool>(n);
}

}  // namespace tca
