// Collects an importance matrix while a model runs (`owl imatrix`): installed as the kernels'
// activation observer, it adds, for every matmul weight of the model, the squares of each input
// column over the rows that met it, and counts those rows. An expert of a 3-D stack only sees the
// tokens routed to it, so its sums and count are its own. The output head is left out (as
// llama-imatrix does by default: its rows are not quantised to the low-bit types).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "formats/imatrix.h"
#include "kernels/kernels.h"

namespace owl {

class ImatrixCollector : public kernels::ActivationObserver {
 public:
  // tensors: the model's (name and ne are used); only 2- and 3-D weights are collected, and
  // matmuls of anything else (temporary matrices) are ignored.
  explicit ImatrixCollector(const std::vector<TensorView>& tensors);
  void observe(const kernels::Weight& W, const float* X, int64_t n_rows) override;

  // What was collected so far: an entry for every weight that saw at least one row.
  Imatrix result() const;

 private:
  struct Acc {
    int64_t n_cols = 0, n_mat = 1;
    std::vector<double> sums;     // n_mat * n_cols
    std::vector<int64_t> counts;  // n_mat
    mutable std::mutex mu;
  };
  std::map<std::string, std::unique_ptr<Acc>> acc_;  // fixed after construction: lookups need no lock
};

// Installs a collector as the activation observer for its lifetime.
class ScopedObserver {
 public:
  explicit ScopedObserver(kernels::ActivationObserver* o) { kernels::set_activation_observer(o); }
  ~ScopedObserver() { kernels::set_activation_observer(nullptr); }
  ScopedObserver(const ScopedObserver&) = delete;
  ScopedObserver& operator=(const ScopedObserver&) = delete;
};

}  // namespace owl
