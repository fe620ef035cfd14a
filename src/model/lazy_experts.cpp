#include "model/lazy_experts.h"

#include <algorithm>
#include <string>

#include "base/error.h"
#include "base/thread_pool.h"

namespace owl {

namespace {
// The live LazyExperts, for pack_all_lazy_experts.
std::mutex g_live_mu;
std::vector<LazyExperts*> g_live;
}  // namespace

LazyExperts::LazyExperts(const std::array<TensorView, 3>& sources, const std::array<kernels::Weight, 3>& packed,
                         const kernels::PrepareOptions& options)
    : sources_(sources),
      packed_(packed),
      options_(options),
      n_held_(sources[0].ne[2]),
      ready_(std::make_unique<std::atomic<bool>[]>(static_cast<size_t>(n_held_))) {
  for (int64_t e = 0; e < n_held_; ++e) ready_[e].store(false, std::memory_order_relaxed);
  std::lock_guard lock(g_live_mu);
  g_live.push_back(this);
}

LazyExperts::~LazyExperts() {
  std::lock_guard lock(g_live_mu);
  g_live.erase(std::remove(g_live.begin(), g_live.end(), this), g_live.end());
}

void LazyExperts::ensure_all() {
  std::vector<int32_t> all(static_cast<size_t>(n_held_));
  for (int64_t e = 0; e < n_held_; ++e) all[static_cast<size_t>(e)] = static_cast<int32_t>(e);
  ensure(all);
}

void pack_all_lazy_experts() {
  std::lock_guard lock(g_live_mu);
  for (LazyExperts* l : g_live) l->ensure_all();
}

void LazyExperts::ensure(std::span<const int32_t> experts, int64_t first) {
  auto missing = [&](int32_t e) {
    if (e < first || e - first >= n_held_)
      throw Error("expert " + std::to_string(e) + " is outside the " + std::to_string(n_held_) + " experts held from " +
                  std::to_string(first));
    return !ready_[e - first].load(std::memory_order_acquire);
  };
  bool any = false;
  for (const int32_t e : experts) any = any || missing(e);
  if (!any) return;  // the usual case once the workload's experts have been seen
  std::lock_guard lock(mu_);
  todo_.clear();
  for (const int32_t e : experts)
    if (missing(e)) todo_.push_back(static_cast<int32_t>(e - first));
  std::sort(todo_.begin(), todo_.end());  // a matrix is packed by one thread only
  todo_.erase(std::unique(todo_.begin(), todo_.end()), todo_.end());
  // One task per matrix: an expert's three matrices pack on different threads.
  default_pool().run(static_cast<int>(3 * todo_.size()), [this](int task, int) {
    const int m = task % 3;
    kernels::pack_matrix(packed_[m], sources_[m], todo_[static_cast<size_t>(task / 3)], options_);
  });
  for (const int32_t i : todo_) ready_[i].store(true, std::memory_order_release);
}

int64_t LazyExperts::packed_count() const {
  int64_t n = 0;
  for (int64_t e = 0; e < n_held_; ++e) n += ready_[e].load(std::memory_order_relaxed) ? 1 : 0;
  return n;
}

}  // namespace owl
