// Tests of tfu::thread_pool: every index exactly once, exceptions, nesting, concurrent callers.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/threads.h"

namespace {

TEST(thread_pool, covers_every_index_exactly_once) {
    for (int n_threads : {1, 2, 3, 4, 7, 16}) {
        tfu::thread_pool pool(n_threads);
        ASSERT_EQ(pool.n_threads(), n_threads);
        for (int64_t n : {0, 1, 2, 3, 5, 7, 8, 15, 16, 17, 63, 64, 65, 1000, 4099}) {
            for (int64_t min_chunk : {1, 3, 64}) {
                std::vector<std::atomic<int>> hits(size_t(n > 0 ? n : 1));
                for (auto& h : hits) h.store(0);
                std::atomic<int> bad_tid{0};
                pool.parallel_for(
                    n,
                    [&](int64_t b, int64_t e, int tid) {
                        if (tid < 0 || tid >= n_threads || b < 0 || e > n || b >= e) bad_tid.fetch_add(1);
                        for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
                    },
                    min_chunk);
                ASSERT_EQ(bad_tid.load(), 0) << "n=" << n << " threads=" << n_threads;
                for (int64_t i = 0; i < n; ++i)
                    ASSERT_EQ(hits[size_t(i)].load(), 1) << "index " << i << " n=" << n << " threads=" << n_threads;
            }
        }
    }
}

TEST(thread_pool, default_size_is_hardware_threads) {
    tfu::thread_pool pool(0);
    EXPECT_EQ(pool.n_threads(), tfu::hardware_threads());
    EXPECT_GE(pool.n_threads(), 1);
}

TEST(thread_pool, thread_ids_are_exclusive_while_running) {
    // Per-thread scratch indexed by thread_id must never be used by two threads at once.
    tfu::thread_pool pool(4);
    std::vector<std::atomic<int>> in_use(4);
    for (auto& u : in_use) u.store(0);
    std::atomic<int> clashes{0};
    for (int rep = 0; rep < 50; ++rep) {
        pool.parallel_for(256, [&](int64_t, int64_t, int tid) {
            if (in_use[size_t(tid)].fetch_add(1) != 0) clashes.fetch_add(1);
            std::this_thread::yield();
            in_use[size_t(tid)].fetch_sub(1);
        });
    }
    EXPECT_EQ(clashes.load(), 0);
}

TEST(thread_pool, exception_is_rethrown_and_pool_stays_usable) {
    tfu::thread_pool pool(3);
    EXPECT_THROW(pool.parallel_for(1000,
                                   [](int64_t b, int64_t e, int) {
                                       if (b <= 500 && 500 < e) throw std::runtime_error("boom");
                                   }),
                 std::runtime_error);
    std::atomic<int64_t> sum{0};
    pool.parallel_for(1000, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
    });
    EXPECT_EQ(sum.load(), 999 * 1000 / 2);
}

TEST(thread_pool, nested_call_runs_inline) {
    tfu::thread_pool pool(3);
    std::atomic<int64_t> count{0};
    pool.parallel_for(8, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i)
            pool.parallel_for(10, [&](int64_t b2, int64_t e2, int) { count.fetch_add(e2 - b2); });
    });
    EXPECT_EQ(count.load(), 80);
}

TEST(thread_pool, concurrent_callers_on_one_pool_and_separate_pools) {
    tfu::thread_pool shared(3);
    std::vector<std::thread> callers;
    std::atomic<int> errors{0};
    for (int c = 0; c < 4; ++c) {
        callers.emplace_back([&, c] {
            tfu::thread_pool own(2);
            for (int rep = 0; rep < 100; ++rep) {
                tfu::thread_pool& p = (rep + c) % 2 ? shared : own;
                int64_t n = 37 + rep;
                std::atomic<int64_t> total{0};
                p.parallel_for(n, [&](int64_t b, int64_t e, int) { total.fetch_add(e - b); });
                if (total.load() != n) errors.fetch_add(1);
            }
        });
    }
    for (auto& t : callers) t.join();
    EXPECT_EQ(errors.load(), 0);
}

}  // namespace
