#include "base/thread_pool.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace owl {

struct ThreadPool::Impl {
  int n = 1;
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable cv_work, cv_done;
  const std::function<void(int, int)>* fn = nullptr;
  int n_tasks = 0;
  std::atomic<int> next{0};
  int active = 0;
  uint64_t generation = 0;
  bool stop = false;

  void work(int thread) {
    for (;;) {
      int t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks) break;
      (*fn)(t, thread);
    }
  }

  void loop(int thread) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu);
        cv_work.wait(lk, [&] { return stop || generation != seen; });
        if (stop) return;
        seen = generation;
      }
      work(thread);
      std::lock_guard<std::mutex> lk(mu);
      if (--active == 0) cv_done.notify_one();
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
    impl_->stop = true;
  }
  impl_->cv_work.notify_all();
  for (auto& w : impl_->workers) w.join();
}

int ThreadPool::size() const { return impl_->n; }

void ThreadPool::run(int n_tasks, const std::function<void(int, int)>& fn) {
  if (n_tasks <= 0) return;
  if (impl_->n == 1 || n_tasks == 1) {
    for (int t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->fn = &fn;
    impl_->n_tasks = n_tasks;
    impl_->next.store(0);
    impl_->active = impl_->n - 1;
    ++impl_->generation;
  }
  impl_->cv_work.notify_all();
  impl_->work(0);
  std::unique_lock<std::mutex> lk(impl_->mu);
  impl_->cv_done.wait(lk, [&] { return impl_->active == 0; });
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
