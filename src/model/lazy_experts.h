// Resident routed experts packed on first use instead of at load.
//
// A MoE file is mostly routed experts (95% of the 30B-A3B-shaped file), and packing them all at
// load (kernels::prepare_weight: fresh anonymous pages that the kernel zeroes, then the repack)
// took several times as long as reading the file once. Here a layer's expert stacks get their
// packed storage reserved at load (kernels::prepare_weight_deferred: no page touched), and an
// expert's three matrices are packed the first time the router picks it, spread over the thread
// pool, with the bytes eager packing would give: results are the same bit for bit, and the first
// token costs only the experts it uses. Once all are packed, a forward pays one flag check per
// routed expert.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "kernels/kernels.h"
#include "tensor/tensor.h"

namespace owl {

class LazyExperts {
 public:
  // sources: the file's stacks (gate, up, down) of the experts held, {in, out, n_held} each;
  // packed: their prepare_weight_deferred forms; `options`: how they are prepared.
  LazyExperts(const std::array<TensorView, 3>& sources, const std::array<kernels::Weight, 3>& packed,
              const kernels::PrepareOptions& options);
  ~LazyExperts();
  LazyExperts(const LazyExperts&) = delete;
  LazyExperts& operator=(const LazyExperts&) = delete;
  // Packs those of `experts` (expert e is matrix e - first of the held stacks) that
  // are not packed yet; returns when all of them are. Called by the forward thread before the
  // experts' products run.
  void ensure(std::span<const int32_t> experts, int64_t first = 0);
  int64_t packed_count() const;
  // Packs every expert not packed yet.
  void ensure_all();

 private:
  std::array<TensorView, 3> sources_;
  std::array<kernels::Weight, 3> packed_;
  kernels::PrepareOptions options_;
  int64_t n_held_;
  std::unique_ptr<std::atomic<bool>[]> ready_;
  std::mutex mu_;  // one packer at a time
  std::vector<int32_t> todo_;
};

// Packs every expert of every live LazyExperts of the process now (owl bench, before it times
// anything: packing on first use would otherwise land in the timed runs).
void pack_all_lazy_experts();

}  // namespace owl
