// Bookkeeping of continuous batching, separate from the model so it can be
// tested alone: which KV slot a new request gets (reusing the longest cached
// prefix of a finished request), whether the KV memory budget admits it, and
// how one step's batch is split between decoding sequences (one row each) and
// prompts being prefilled (chunks, so a long prompt never stalls the others).
//
// Slot i is KV sequence id i. A busy slot reserves the KV its request can grow
// to (prompt + max_tokens); an idle slot keeps its cached tokens for prefix
// reuse until the budget needs the room back (least recently used first).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace owl {

struct SchedulerOptions {
  int n_slots = 4;               // sequences running at once (--parallel)
  int64_t n_ctx = 4096;          // most tokens one sequence may hold
  int64_t kv_budget_tokens = 0;  // KV tokens for all slots together; 0: n_slots * n_ctx
  int64_t page_tokens = 32;      // KV is allocated in pages of this many tokens
  int64_t prefill_chunk = 256;   // most prompt tokens per step, over all prefilling sequences
  bool prefix_cache = true;      // reuse finished sequences' KV for a shared prompt prefix
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions opts);

  struct Placement {
    int slot = -1;
    int64_t reused = 0;        // leading prompt tokens already cached in the slot
    std::vector<int> evicted;  // idle slots whose cache was dropped to make room (remove their KV)
  };
  // Finds a slot for a prompt that may grow to `reserve` tokens. The slot's cache is cut to
  // `reused` tokens (the caller truncates the KV to match). nullopt: no free slot or no room yet.
  std::optional<Placement> place(std::span<const int32_t> prompt, int64_t reserve);
  // Records tokens fed into a busy slot's KV.
  void append(int slot, std::span<const int32_t> tokens);
  // Forgets all but the first n tokens of a slot (speculative rows the target rejected).
  void truncate(int slot, int64_t n);
  // The request in `slot` ended; its tokens stay cached for reuse (or are dropped when keep is false).
  void release(int slot, bool keep);

  const std::vector<int32_t>& tokens(int slot) const { return slots_[static_cast<size_t>(slot)].tokens; }
  int busy_slots() const;
  int64_t budget_tokens() const { return budget_; }
  // KV tokens (page-rounded) currently reserved by busy slots plus cached by idle ones.
  int64_t committed_tokens() const;
  // True when a request of `reserve` tokens could ever be admitted (fits the budget alone).
  bool could_fit(int64_t reserve) const { return pages(reserve) * opts_.page_tokens <= budget_; }

  // One step's plan. `need[i]` is sequence i's demand: decode sequences need 1 row,
  // prefilling ones their remaining prompt. `decoding[i]` says which kind. Returns the rows
  // each sequence gets: all decoders 1, prefills share prefill_chunk in the given (FIFO) order.
  std::vector<int64_t> plan(std::span<const int64_t> need, std::span<const uint8_t> decoding) const;

  const SchedulerOptions& options() const { return opts_; }

 private:
  struct Slot {
    std::vector<int32_t> tokens;  // exactly the tokens whose K/V the slot holds
    bool busy = false;
    int64_t reserve = 0;
    uint64_t last_used = 0;
  };
  int64_t pages(int64_t tokens) const { return (tokens + opts_.page_tokens - 1) / opts_.page_tokens; }
  int64_t cost(const Slot& s) const;

  SchedulerOptions opts_;
  int64_t budget_ = 0;
  uint64_t clock_ = 0;
  std::vector<Slot> slots_;
};

}  // namespace owl
