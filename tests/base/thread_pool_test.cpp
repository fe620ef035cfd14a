// The persistent pool: every task runs exactly once, the caller takes part, back-to-back and
// nested calls work, and pools of any size give the same results.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "base/thread_pool.h"

namespace owl {
namespace {

TEST(ThreadPool, EveryTaskRunsOnceOverManyCalls) {
  for (int n : {1, 2, 3, 5}) {
    ThreadPool pool(n);
    EXPECT_EQ(pool.size(), n);
    for (int call = 0; call < 300; ++call) {
      const int tasks = 1 + call % 13;
      std::vector<std::atomic<int>> hits(static_cast<size_t>(tasks));
      std::atomic<int> bad_thread{0};
      pool.run(tasks, [&](int t, int thread) {
        hits[static_cast<size_t>(t)].fetch_add(1);
        if (thread < 0 || thread >= n) bad_thread.fetch_add(1);
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1) << "pool " << n << " call " << call;
      ASSERT_EQ(bad_thread.load(), 0);
    }
  }
}

// More workers than cores: workers often wake after their job is finished (the caller ran the
// tasks itself) or while a newer job runs. Late workers must neither run an old job's task
// twice nor touch a newer job's tasks wrongly: every task of every call still runs exactly
// once, and results written per task are all present when run() returns.
TEST(ThreadPool, LateWorkersNeverRunATaskTwice) {
  ThreadPool pool(8);
  std::vector<int> out(64);
  for (int call = 0; call < 3000; ++call) {
    const int tasks = 1 + call % 64;
    std::vector<std::atomic<int>> hits(static_cast<size_t>(tasks));
    pool.run(tasks, [&](int t, int) {
      hits[static_cast<size_t>(t)].fetch_add(1);
      out[static_cast<size_t>(t)] = call;
    });
    for (int t = 0; t < tasks; ++t) {
      ASSERT_EQ(hits[static_cast<size_t>(t)].load(), 1) << "call " << call << " task " << t;
      ASSERT_EQ(out[static_cast<size_t>(t)], call);
    }
  }
}

TEST(ThreadPool, ParallelForCoversRangeAndWakesAfterSleep) {
  ThreadPool pool(3);
  std::vector<int> seen(1001, 0);
  pool.parallel_for(1001, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)]++;
  });
  for (int v : seen) ASSERT_EQ(v, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // workers go to sleep
  std::atomic<int> count{0};
  pool.run(8, [&](int, int) { count++; });
  EXPECT_EQ(count.load(), 8);
}

TEST(ThreadPool, NestedRunExecutesInline) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.run(4, [&](int, int thread) {
    pool.run(3, [&](int, int inner_thread) {
      EXPECT_EQ(inner_thread, thread);  // keeps the caller's scratch index
      inner++;
    });
  });
  EXPECT_EQ(inner.load(), 12);
}

TEST(ThreadPool, ConcurrentCallersAreSerialised) {
  ThreadPool pool(2);
  std::atomic<int> total{0};
  auto caller = [&] {
    for (int i = 0; i < 200; ++i) pool.run(4, [&](int, int) { total++; });
  };
  std::thread a(caller), b(caller);
  a.join();
  b.join();
  EXPECT_EQ(total.load(), 1600);
}

}  // namespace
}  // namespace owl
