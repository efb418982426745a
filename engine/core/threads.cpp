// The thread pool behind the fast CPU backend: persistent workers, dynamic chunking, spin-then-wait join.
#include "core/threads.h"

#include <algorithm>
#include <string>
#include <system_error>

#include "core/error.h"

namespace tfu {

namespace {

// Spins before sleeping: long enough to bridge the gap between consecutive small ops of one forward pass,
// short enough that an idle pool stops burning a core within ~100 us.
constexpr int k_spin_iterations = 2000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
}

// The pool whose job the current thread is running (to run nested parallel_for calls inline).
thread_local const thread_pool* tl_running_pool = nullptr;

}  // namespace

int hardware_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : int(n);
}

thread_pool::thread_pool(int n_threads) {
    n_threads_ = n_threads <= 0 ? hardware_threads() : n_threads;
    workers_.reserve(size_t(n_threads_ - 1));
    try {
        for (int t = 1; t < n_threads_; ++t) workers_.emplace_back([this, t] { worker_main(t); });
    } catch (const std::system_error& e) {
        {
            std::lock_guard<std::mutex> lk(wake_mutex_);
            stop_.store(true);
        }
        wake_cv_.notify_all();
        for (std::thread& w : workers_) w.join();
        fail(TFU_STATUS_INTERNAL, std::string("thread_pool: cannot start worker thread: ") + e.what());
    }
}

thread_pool::~thread_pool() {
    {
        std::lock_guard<std::mutex> lk(wake_mutex_);
        stop_.store(true);
    }
    wake_cv_.notify_all();
    for (std::thread& w : workers_) w.join();
}

void thread_pool::run_chunks(int thread_id) {
    const thread_pool* outer = tl_running_pool;
    tl_running_pool = this;
    for (;;) {
        if (failed_.load(std::memory_order_relaxed)) break;
        int64_t begin = next_.fetch_add(chunk_, std::memory_order_relaxed);
        if (begin >= n_) break;
        int64_t end = std::min(n_, begin + chunk_);
        try {
            (*fn_)(begin, end, thread_id);
        } catch (...) {
            std::lock_guard<std::mutex> lk(error_mutex_);
            if (!error_) error_ = std::current_exception();
            failed_.store(true, std::memory_order_relaxed);
        }
    }
    tl_running_pool = outer;
}

void thread_pool::worker_main(int thread_id) {
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = generation_.load(std::memory_order_acquire);
        for (int i = 0; g == seen && i < k_spin_iterations && !stop_.load(std::memory_order_relaxed); ++i) {
            cpu_relax();
            g = generation_.load(std::memory_order_acquire);
        }
        if (g == seen) {
            std::unique_lock<std::mutex> lk(wake_mutex_);
            wake_cv_.wait(lk, [&] { return stop_.load() || generation_.load(std::memory_order_acquire) != seen; });
            g = generation_.load(std::memory_order_acquire);
        }
        if (stop_.load()) return;
        seen = g;
        run_chunks(thread_id);
        if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            std::lock_guard<std::mutex> lk(wake_mutex_);
            done_cv_.notify_one();
        }
    }
}

void thread_pool::parallel_for(int64_t n, const range_fn& fn, int64_t min_chunk) {
    if (n <= 0) return;
    min_chunk = std::max<int64_t>(1, min_chunk);
    // Serial cases: one thread, too little work to split, or a nested call from inside this pool's job.
    if (n_threads_ == 1 || n <= min_chunk || tl_running_pool == this) {
        fn(0, n, 0);
        return;
    }
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    // About 4 chunks per thread balances uneven chunks (causal attention, a descheduled worker) cheaply.
    int64_t chunk = std::max(min_chunk, (n + 4 * int64_t(n_threads_) - 1) / (4 * int64_t(n_threads_)));
    fn_ = &fn;
    n_ = n;
    chunk_ = chunk;
    next_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    active_.store(int(workers_.size()), std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lk(wake_mutex_);
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_cv_.notify_all();

    run_chunks(0);

    for (int i = 0; active_.load(std::memory_order_acquire) != 0 && i < k_spin_iterations; ++i) cpu_relax();
    if (active_.load(std::memory_order_acquire) != 0) {
        std::unique_lock<std::mutex> lk(wake_mutex_);
        done_cv_.wait(lk, [&] { return active_.load(std::memory_order_acquire) == 0; });
    }
    fn_ = nullptr;
    if (error_) {
        std::exception_ptr e = error_;
        error_ = nullptr;
        std::rethrow_exception(e);
    }
}

}  // namespace tfu
