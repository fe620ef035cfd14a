#include "model/imatrix_collector.h"

namespace owl {

ImatrixCollector::ImatrixCollector(const std::vector<TensorView>& tensors) {
  for (const auto& t : tensors) {
    if (t.n_dims < 2 || t.n_dims > 3 || t.name == "output.weight" || t.name == "token_embd.weight") continue;
    auto a = std::make_unique<Acc>();
    a->n_cols = t.ne[0];
    a->n_mat = t.n_dims == 3 ? t.ne[2] : 1;
    a->sums.assign(static_cast<size_t>(a->n_cols * a->n_mat), 0.0);
    a->counts.assign(static_cast<size_t>(a->n_mat), 0);
    acc_.emplace(t.name, std::move(a));
  }
}

void ImatrixCollector::observe(const kernels::Weight& W, const float* X, int64_t n_rows) {
  auto it = acc_.find(W.name());
  if (it == acc_.end()) return;
  Acc& a = *it->second;
  const int64_t mat = W.matrix();
  if (W.in() != a.n_cols || mat < 0 || mat >= a.n_mat) return;  // not this tensor's shape: a temporary
  std::vector<double> local(static_cast<size_t>(a.n_cols), 0.0);
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* x = X + r * a.n_cols;
    for (int64_t j = 0; j < a.n_cols; ++j) local[static_cast<size_t>(j)] += static_cast<double>(x[j]) * x[j];
  }
  std::lock_guard<std::mutex> lock(a.mu);
  double* s = a.sums.data() + mat * a.n_cols;
  for (int64_t j = 0; j < a.n_cols; ++j) s[j] += local[static_cast<size_t>(j)];
  a.counts[static_cast<size_t>(mat)] += n_rows;
}

Imatrix ImatrixCollector::result() const {
  Imatrix m;
  for (const auto& [name, a] : acc_) {
    std::lock_guard<std::mutex> lock(a->mu);
    int64_t total = 0;
    for (int64_t c : a->counts) total += c;
    if (total == 0) continue;
    ImatrixEntry e;
    e.n_cols = a->n_cols;
    e.sums.assign(a->sums.begin(), a->sums.end());
    e.counts.assign(a->counts.begin(), a->counts.end());
    m.entries.emplace(name, std::move(e));
  }
  return m;
}

}  // namespace owl
