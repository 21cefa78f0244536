// ThreadPool implementation (thread_pool.h).
#include "core/thread_pool.h"

#include <memory>

#include "core/check.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace tca {

namespace {

// Polls before a thread blocks on a condition variable: when the next parallel_for (or the last
// worker) comes within the spin, nobody sleeps and nobody is woken. Bounded (1024 pauses, about
// 20-50 us), so an oversubscribed machine loses little to it: the pool still sleeps between
// bursts of work. 2-core EPYC, 110M Q8_0 model: decode 1.25x faster than with no spin, and
// 1024 pauses beat 4096 (docs/perf/cpu-engine.md, session 13).
constexpr int kSpin = 1024;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

// True when pred() held within the spin.
template <class Pred>
bool spin_until(Pred pred) {
    for (int i = 0; i < kSpin; ++i) {
        if (pred()) return true;
        cpu_relax();
    }
    return pred();
}

}  // namespace

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
        // A new generation seen by the spin was published (release) after job_ and n_items_.
        if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_start_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_relaxed) != seen; });
            if (stop_) return;
        }
        seen = generation_.load(std::memory_order_acquire);
        run_items(index);
        if (n_active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            // Under the lock: the caller checks n_active_ under it before it waits.
            std::lock_guard<std::mutex> lock(mu_);
            cv_done_.notify_one();
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
        n_active_.store(n_threads_ - 1, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
    }
    cv_start_.notify_all();
    run_items(0);
    if (!spin_until([&] { return n_active_.load(std::memory_order_acquire) == 0; })) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_done_.wait(lock, [&] { return n_active_.load(std::memory_order_acquire) == 0; });
    }
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
