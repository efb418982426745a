// tfu::thread_pool: persistent worker threads with a fork-join parallel_for (spin-then-wait), for CPU kernels.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tfu {

// Number of hardware threads (at least 1).
int hardware_threads();

// A pool of n_threads - 1 persistent workers plus the calling thread (which always takes part in the work).
//
// Thread-safety: one pool may be shared by several threads; parallel_for calls on the same pool are
// serialised by an internal mutex (one job at a time). Distinct pools are fully independent, so each backend
// instance owns its own pool and several engines / backends run concurrently. A parallel_for issued from
// inside a job of the same pool (nesting) runs inline on the calling thread instead of deadlocking.
//
// Waiting: workers spin briefly on the job counter (cheap wake-up between the many small ops of a decode step)
// and then sleep on a condition variable, so an idle pool costs no CPU.
class thread_pool {
public:
    // fn(begin, end, thread_id): processes indices [begin, end); thread_id in [0, n_threads()), unique among
    // the threads running the job at the same time (use it to index per-thread scratch space).
    using range_fn = std::function<void(int64_t begin, int64_t end, int thread_id)>;

    // n_threads <= 0: hardware_threads(). Throws tfu::error if a worker thread cannot be started.
    explicit thread_pool(int n_threads = 0);
    ~thread_pool();
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;

    int n_threads() const { return n_threads_; }

    // Calls fn over [0, n) split into chunks of at least min_chunk indices, handed out dynamically to the
    // threads (every index exactly once); returns when all chunks are done. If fn throws, the remaining
    // chunks are skipped and the first exception is rethrown here.
    void parallel_for(int64_t n, const range_fn& fn, int64_t min_chunk = 1);

private:
    void worker_main(int thread_id);
    void run_chunks(int thread_id);

    int n_threads_ = 1;
    std::vector<std::thread> workers_;

    std::mutex job_mutex_;  // serialises parallel_for callers

    // The current job (written by the caller before the generation bump, read by workers after it).
    const range_fn* fn_ = nullptr;
    int64_t n_ = 0;
    int64_t chunk_ = 1;
    std::atomic<int64_t> next_{0};
    std::atomic<bool> failed_{false};
    std::exception_ptr error_;
    std::mutex error_mutex_;

    std::mutex wake_mutex_;
    std::condition_variable wake_cv_;  // workers wait here for a new generation
    std::condition_variable done_cv_;  // the caller waits here for active_ == 0
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> active_{0};  // workers still inside the current job
    std::atomic<bool> stop_{false};
};

}  // namespace tfu
