#include "base/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OWL_CPU_RELAX() _mm_pause()
#else
#define OWL_CPU_RELAX() std::this_thread::yield()
#endif

namespace owl {

namespace {
// A waiting worker first spins (pause: ~40-140 ns each), then yields its core for a while
// (in case there are more threads than free cores), then sleeps on the condition variable.
// Spinning plus yielding lasts about a millisecond, longer than the gap between two matmuls
// of one decode step.
constexpr int kSpinIters = 1 << 12;
constexpr int kYieldIters = 1 << 10;

// Waits until done() holds: spins briefly, then yields between checks.
template <class Done>
inline void spin_then_yield(Done done) {
  for (int i = 0; !done(); ++i) {
    if (i < kSpinIters) {
      OWL_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
}
// Set while a thread runs a task: a nested run() from inside a task executes inline.
// It keeps the caller's thread index, so per-thread scratch stays private.
thread_local bool t_in_task = false;
thread_local int t_thread = 0;
}  // namespace

// A job lives in one of two slots (by generation parity) and its tasks are claimed from one
// 64-bit word, generation << 32 | next task index. The caller waits for its tasks to be DONE,
// not for every worker to check in: a worker the OS has descheduled (another process on the
// core) no longer holds up each of the ~140 barriers of a decode step; the caller simply runs
// the remaining tasks itself. A worker only reads a slot while it holds the slot's `inside`
// count and the claim word still names that slot's job; the caller rewrites a slot (two jobs
// later) only once no worker is inside it.
struct ThreadPool::Impl {
  struct Slot {
    TaskFn fn = nullptr;
    void* ctx = nullptr;
    int n_tasks = 0;
    alignas(64) std::atomic<int> done{0};    // tasks finished
    alignas(64) std::atomic<int> inside{0};  // workers reading this slot
  };
  int n = 1;
  std::vector<std::thread> workers;
  Slot slots[2];
  uint64_t last_gen = 0;  // the caller's side (under call_mu)
  alignas(64) std::atomic<uint64_t> claim{0};
  alignas(64) std::atomic<uint64_t> generation{0};  // what the workers wait on
  std::atomic<bool> stop{false};

  std::mutex call_mu;  // one job at a time when several threads share the pool
  std::mutex mu;       // guards sleeping only
  std::condition_variable cv;
  std::atomic<int> sleepers{0};

  // Runs tasks of job `gen` until none is left (or a newer job has started).
  void work(uint64_t gen, int thread) {
    Slot& s = slots[gen & 1];
    s.inside.fetch_add(1, std::memory_order_seq_cst);
    t_in_task = true;
    t_thread = thread;
    for (;;) {
      uint64_t c = claim.load(std::memory_order_seq_cst);
      if ((c >> 32) != gen || static_cast<uint32_t>(c) >= static_cast<uint32_t>(s.n_tasks)) break;
      if (!claim.compare_exchange_weak(c, c + 1, std::memory_order_seq_cst)) continue;
      s.fn(s.ctx, static_cast<int>(static_cast<uint32_t>(c)), thread);
      s.done.fetch_add(1, std::memory_order_release);
    }
    t_in_task = false;
    s.inside.fetch_sub(1, std::memory_order_release);
  }

  void loop(int thread) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = generation.load(std::memory_order_acquire);
      for (int i = 0; g == seen && i < kSpinIters + kYieldIters; ++i) {
        if (i < kSpinIters) {
          OWL_CPU_RELAX();
        } else {
          std::this_thread::yield();
        }
        g = generation.load(std::memory_order_acquire);
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu);
        sleepers.fetch_add(1, std::memory_order_seq_cst);
        cv.wait(lk, [&] { return stop.load() || generation.load(std::memory_order_acquire) != seen; });
        sleepers.fetch_sub(1, std::memory_order_relaxed);
        g = generation.load(std::memory_order_acquire);
      }
      if (stop.load(std::memory_order_acquire)) return;
      seen = g;
      work(g, thread);
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : impl_(std::make_unique<Impl>()) {
  impl_->n = n_threads < 1 ? 1 : n_threads;
  for (int i = 1; i < impl_->n; ++i) impl_->workers.emplace_back([this, i] { impl_->loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->stop.store(true);
    impl_->generation.store(++impl_->last_gen, std::memory_order_release);
  }
  impl_->cv.notify_all();
  for (auto& w : impl_->workers) w.join();
}

int ThreadPool::size() const { return impl_->n; }

void ThreadPool::run(int n_tasks, TaskFn fn, void* ctx) {
  if (n_tasks <= 0) return;
  Impl& p = *impl_;
  if (p.n == 1 || n_tasks == 1 || t_in_task) {
    const int thread = t_in_task ? t_thread : 0;
    for (int t = 0; t < n_tasks; ++t) fn(ctx, t, thread);
    return;
  }
  std::lock_guard<std::mutex> call_lock(p.call_mu);
  const uint64_t gen = ++p.last_gen;
  Impl::Slot& s = p.slots[gen & 1];
  // A late worker of the job two generations back may still be leaving this slot.
  spin_then_yield([&] { return s.inside.load(std::memory_order_seq_cst) == 0; });
  s.fn = fn;
  s.ctx = ctx;
  s.n_tasks = n_tasks;
  s.done.store(0, std::memory_order_relaxed);
  p.claim.store(gen << 32, std::memory_order_seq_cst);  // publishes the job
  p.generation.store(gen, std::memory_order_seq_cst);   // wakes the spinners
  if (p.sleepers.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lk(p.mu);  // a worker between its check and its wait holds mu
    p.cv.notify_all();
  }
  p.work(gen, 0);
  spin_then_yield([&] { return s.done.load(std::memory_order_acquire) == n_tasks; });
}

void ThreadPool::run(int n_tasks, const std::function<void(int, int)>& fn) {
  run(
      n_tasks, [](void* c, int t, int th) { (*static_cast<const std::function<void(int, int)>*>(c))(t, th); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  int chunks = static_cast<int>(std::min<int64_t>(n, impl_->n));
  run(chunks, [&](int t, int thread) {
    int64_t b = n * t / chunks, e = n * (t + 1) / chunks;
    fn(b, e, thread);
  });
}

namespace {
std::unique_ptr<ThreadPool>& pool_slot() {
  static std::unique_ptr<ThreadPool> p;
  return p;
}
}  // namespace

ThreadPool& default_pool() {
  auto& p = pool_slot();
  if (!p) {
    unsigned hc = std::thread::hardware_concurrency();
    p = std::make_unique<ThreadPool>(hc ? static_cast<int>(hc) : 1);
  }
  return *p;
}

void set_default_threads(int n) {
  auto& p = pool_slot();
  if (p && p->size() == n) return;
  p = std::make_unique<ThreadPool>(n);
}

}  // namespace owl
