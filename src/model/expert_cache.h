// Routed experts that do not fit the memory budget (residency.h) are read from the model file
// when the router asks for them, into a cache of prepared (repacked) experts.
//
// - Reads: a few I/O threads, each with one read in flight (pread of one expert's slice of one
//   of ffn_{gate,up,down}_exps: an expert is three reads at once), O_DIRECT where the file system allows so that the
//   page cache does not hold a second copy; otherwise buffered reads whose pages are dropped after use (posix_fadvise
//   DONTNEED). Nothing maps or copies the whole model.
// - Slots: each cached expert is prepared once into its own slot (kernels::prepare_weight_into),
//   so a hit costs nothing and the kernels are those of a resident expert: results do not
//   depend on what is cached, bit for bit.
// - Eviction: least frequently used, ties to the least recently used, with the counts halved
//   now and then so that yesterday's favourites age out. Pinned experts (in use) and experts
//   asked for but not yet used are kept.
// - Prefetch: while a layer computes, the next streamed layer's router is applied to this
//   layer's input and the experts it would pick are read ahead (the residual stream changes
//   little from one layer to the next, so the guess is usually right). Guesses are scored: when
//   fewer than half of a window of them get used (random weights, say), reading ahead pauses
//   for a while, so that wrong guesses do not take the disk from the reads that are needed.
#pragma once
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "kernels/kernels.h"
#include "tensor/tensor.h"

namespace owl {

class ExpertCache {
 public:
  struct Expert {
    kernels::Weight gate, up, down;  // one expert's matrices, prepared
  };
  struct Stats {
    uint64_t hits = 0;             // experts asked for and already cached (or being read ahead)
    uint64_t misses = 0;           // experts asked for that had to be read
    uint64_t prefetches = 0;       // experts read ahead
    uint64_t prefetch_used = 0;    // of those, experts a pin then asked for
    uint64_t prefetch_wasted = 0;  // of those, experts evicted before any pin asked for them
    uint64_t evictions = 0;
    uint64_t bytes_read = 0;
    double read_seconds = 0;  // wall time with at least one read in flight
    uint64_t cached_bytes = 0;
    double hit_rate() const {
      return hits + misses ? static_cast<double>(hits) / static_cast<double>(hits + misses) : 0;
    }
    double read_gb_per_s() const { return read_seconds > 0 ? static_cast<double>(bytes_read) / read_seconds / 1e9 : 0; }
  };

  // `path`: the GGUF file; `capacity`: bytes of prepared experts to keep; `prepare`: how the
  // experts are prepared (as resident weights would be).
  ExpertCache(const std::string& path, uint64_t capacity, const kernels::PrepareOptions& prepare, int64_t n_layer,
              int64_t n_expert, int n_io_threads = 8);
  ~ExpertCache();
  ExpertCache(const ExpertCache&) = delete;
  ExpertCache& operator=(const ExpertCache&) = delete;

  // A layer whose routed experts stream: its stacks {in, out, n_expert} (shape and type only;
  // their bytes are never touched), where each starts in the file, and its router (plain F32
  // {n_embd, n_expert}) and selection bias (n_expert floats or null) for prefetching.
  struct LayerStacks {
    std::array<TensorView, 3> stacks;  // gate, up, down
    std::array<uint64_t, 3> file_offset{};
    kernels::Weight router;
    const float* probs_bias = nullptr;
    int64_t n_expert_used = 0;
  };
  void add_layer(int64_t layer, const LayerStacks& l);
  // Bytes one expert of that layer takes in the cache.
  uint64_t expert_bytes(int64_t layer) const;
  uint64_t capacity() const { return capacity_; }

  // Starts reading those of `experts` that are not cached (returns at once).
  void request(int64_t layer, std::span<const int32_t> experts);
  // Guesses the experts of the next streaming layer after `layer` from x (n_tokens rows of this
  // layer's FFN input) and starts reading those not cached; only for small batches (decode).
  void prefetch_after(int64_t layer, const float* x, int64_t n_tokens);
  // Waits until expert e of `layer` is cached and keeps it there until unpin. Throws owl::Error
  // when its read failed.
  const Expert& pin(int64_t layer, int32_t e);
  void unpin(int64_t layer, int32_t e);

  Stats stats() const;

 private:
  enum class State : uint8_t { Absent, Queued, Ready, Failed };
  struct Entry {
    State state = State::Absent;
    bool fresh = false;        // asked for, not yet used: kept for a while unless nothing else can go
    bool demand_read = false;  // a pin had to wait for a read it asked for (a miss)
    bool read_ahead = false;   // queued by prefetch_after, not yet pinned
    uint64_t queued_at = 0;    // clock_ when it was asked for
    int pins = 0;
    uint32_t uses = 0;
    uint64_t last_use = 0;
    uint8_t* slot = nullptr;
    size_t slot_bytes = 0;
    int parts_left = 0;  // matrices still being read (three reads in flight per expert)
    Expert weights;
    std::string error;
  };
  struct Layer {
    std::optional<LayerStacks> stacks;
    std::array<uint64_t, 3> matrix_file_bytes{};  // one expert's slice of each stack in the file
    std::array<size_t, 3> matrix_slot_bytes{};    // and prepared
  };

  Entry& entry(int64_t layer, int32_t e) { return entries_[static_cast<size_t>(layer * n_expert_ + e)]; }
  // Queues a read of (layer, e) unless cached; demand reads go first. Returns false when a
  // read ahead found no room. Caller holds mu_.
  bool queue_locked(int64_t layer, int32_t e, bool demand);
  // Makes room for `bytes` and returns a slot (reusing an evicted one of that size when it can),
  // or null when `demand` is false and only fresh or pinned experts could go.
  uint8_t* take_slot_locked(size_t bytes, bool demand);
  void io_thread();
  // Reads matrix m (0 gate, 1 up, 2 down) of expert e into its place in `slot`.
  kernels::Weight read_matrix(int64_t layer, int32_t e, int m, uint8_t* slot, std::vector<uint8_t>& staging);
  void read_range(uint64_t offset, uint64_t n, std::vector<uint8_t>& staging, const uint8_t** data);

  std::string path_;
  int fd_ = -1;
  bool direct_ = false;  // fd_ opened with O_DIRECT
  uint64_t capacity_;
  kernels::PrepareOptions prepare_;
  int64_t n_layer_, n_expert_;
  std::vector<Layer> layers_;
  std::vector<Entry> entries_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  struct Job {
    int64_t layer;
    int32_t e;
    bool demand;    // asked for by a pin or request (not a read ahead)
    int part = -1;  // -1: the whole expert, not yet started; 0..2: one of its matrices
  };
  std::deque<Job> queue_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
  uint64_t used_ = 0, clock_ = 0, next_aging_ = 0;  // clock_: counts pins
  uint64_t fresh_window_ = 0;  // pins an expert asked for stays protected unused (about one token's)
  int in_flight_ = 0;
  std::chrono::steady_clock::time_point busy_since_;
  Stats stats_;
  uint64_t window_guesses_ = 0, window_used_ = 0;  // read-ahead guesses of the current window
  uint64_t prefetch_paused_until_ = 0;             // clock_ until which reading ahead pauses
  std::vector<float> prefetch_logits_;
  std::vector<int32_t> prefetch_ids_;
};

}  // namespace owl
