// A persistent pool of worker threads. Work is split into tasks (usually
// ranges of output rows); the calling thread takes part, so a pool of size 1
// runs everything inline. Workers spin briefly on a generation counter between
// calls (decode issues hundreds of small calls per token) before sleeping on a
// condition variable, so back-to-back calls cost no system call.
// Tasks are handed out dynamically, but which task computes which output never
// depends on the thread count, so results do not either.
#pragma once
#include <functional>
#include <memory>

namespace owl {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;
  // Calls fn(task, thread) for every task in [0, n_tasks); returns when all are done.
  // `thread` is in [0, size()) and identifies per-thread scratch space.
  void run(int n_tasks, const std::function<void(int task, int thread)>& fn);
  // Splits [0, n) into about size() contiguous chunks: fn(begin, end, thread).
  void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end, int thread)>& fn);
  // The same as run() without std::function (nothing allocated per call): fn(ctx, task, thread).
  using TaskFn = void (*)(void* ctx, int task, int thread);
  void run(int n_tasks, TaskFn fn, void* ctx);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The process-wide pool used by the kernels; sized by set_default_threads
// (default: the number of online CPUs).
ThreadPool& default_pool();
void set_default_threads(int n);

}  // namespace owl
