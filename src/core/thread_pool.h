// A small fixed-size thread pool for data-parallel loops. The calling thread takes part, so a
// pool of n threads runs n-1 workers. Work items are claimed dynamically (one atomic counter),
// which balances causal attention tiles of unequal cost. parallel_for takes the loop body by
// non-owning reference (ItemFn), so a call allocates nothing: a capturing lambda converted to
// std::function would heap-allocate once it outgrows the small-object buffer.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>
#include <thread>
#include <vector>

namespace tca {

// A non-owning reference to a callable fn(int64_t item, int thread_index): a pointer to the
// callable and a pointer to a function that invokes it. Valid while the callable lives, i.e.
// for the duration of the parallel_for call it is passed to.
class ItemFn {
public:
    template <class F>
        requires(!std::is_same_v<std::remove_cvref_t<F>, ItemFn> &&
                 std::is_invocable_v<const F&, int64_t, int>)
    ItemFn(const F& fn)  // NOLINT(google-explicit-constructor): lambdas convert implicitly
        : obj_(std::addressof(fn)), call_([](const void* o, int64_t item, int thread) {
              (*static_cast<const F*>(o))(item, thread);
          }) {}
    void operator()(int64_t item, int thread) const { call_(obj_, item, thread); }

private:
    const void* obj_;
    void (*call_)(const void*, int64_t, int);
};

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int n_threads() const { return n_threads_; }
    // Calls fn(item, thread_index) for every item in [0, n_items), items claimed in order.
    // thread_index is in [0, n_threads()) and unique among concurrently running calls.
    // Allocates nothing (the body is held by reference, workers are woken, not created).
    void parallel_for(int64_t n_items, ItemFn fn);

private:
    void worker_loop(int index);
    void run_items(int thread_index);

    int n_threads_;
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable cv_start_;
    std::condition_variable cv_done_;
    // Written under mu_; read without it by the bounded spin before a wait (kSpin in the .cpp):
    // a decode step makes ~10 parallel_for calls per layer in quick succession, and a futex
    // wake per call cost ~6% of a step (docs/perf/cpu-engine.md).
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> n_active_{0};
    bool stop_ = false;
    const ItemFn* job_ = nullptr;
    int64_t n_items_ = 0;
    std::atomic<int64_t> next_{0};
    std::mutex call_mu_;  // one parallel_for at a time
};

// The process-wide pool used by CPU ops. Size defaults to std::thread::hardware_concurrency();
// set_num_threads() (the CLI's --threads) replaces it.
ThreadPool& thread_pool();
void set_num_threads(int n);

// While alive, thread_pool() on the constructing thread returns `pool` instead of the
// process-wide one: tensor-parallel ranks that are threads of one process each run their CPU
// ops on a pool of their own (a pool runs one parallel_for at a time).
class ScopedThreadPool {
public:
    explicit ScopedThreadPool(ThreadPool& pool);
    ~ScopedThreadPool();
    ScopedThreadPool(const ScopedThreadPool&) = delete;
    ScopedThreadPool& operator=(const ScopedThreadPool&) = delete;

private:
    ThreadPool* previous_;
};

}  // namespace tca
