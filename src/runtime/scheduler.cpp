#include "runtime/scheduler.h"

#include <algorithm>

#include "base/error.h"

namespace owl {

Scheduler::Scheduler(SchedulerOptions opts) : opts_(opts) {
  if (opts_.n_slots < 1) throw Error("scheduler: need at least one slot (--parallel >= 1)");
  if (opts_.n_ctx < 2) throw Error("scheduler: context length must be at least 2 tokens");
  if (opts_.page_tokens < 1) opts_.page_tokens = 1;
  if (opts_.prefill_chunk < 1) opts_.prefill_chunk = 1;
  budget_ = opts_.kv_budget_tokens > 0 ? opts_.kv_budget_tokens : opts_.n_slots * opts_.n_ctx;
  budget_ = pages(budget_) * opts_.page_tokens;
  slots_.resize(static_cast<size_t>(opts_.n_slots));
}

int64_t Scheduler::cost(const Slot& s) const {
  return pages(s.busy ? std::max<int64_t>(s.reserve, static_cast<int64_t>(s.tokens.size()))
                      : static_cast<int64_t>(s.tokens.size())) *
         opts_.page_tokens;
}

int Scheduler::busy_slots() const {
  int n = 0;
  for (const auto& s : slots_) n += s.busy;
  return n;
}

int64_t Scheduler::committed_tokens() const {
  int64_t t = 0;
  for (const auto& s : slots_) t += cost(s);
  return t;
}

std::optional<Scheduler::Placement> Scheduler::place(std::span<const int32_t> prompt, int64_t reserve) {
  // The idle slot sharing the longest prefix; ties (and no sharing) go to the least recently used.
  int best = -1;
  int64_t best_len = -1;
  for (int i = 0; i < opts_.n_slots; ++i) {
    const Slot& s = slots_[static_cast<size_t>(i)];
    if (s.busy) continue;
    int64_t len = 0;
    if (opts_.prefix_cache) {
      size_t n = std::min(s.tokens.size(), prompt.size());
      while (static_cast<size_t>(len) < n && s.tokens[static_cast<size_t>(len)] == prompt[static_cast<size_t>(len)])
        ++len;
    }
    // The last prompt token is always evaluated again: its logits start the generation.
    len = std::min<int64_t>(len, static_cast<int64_t>(prompt.size()) - 1);
    len = std::max<int64_t>(len, 0);
    if (len > best_len || (len == best_len && s.last_used < slots_[static_cast<size_t>(best)].last_used)) {
      best = i;
      best_len = len;
    }
  }
  if (best < 0) return std::nullopt;

  // Room: everything committed by other slots plus this request's reservation.
  Placement p;
  p.slot = best;
  p.reused = best_len;
  int64_t need = pages(std::max<int64_t>(reserve, best_len)) * opts_.page_tokens;
  int64_t others = committed_tokens() - cost(slots_[static_cast<size_t>(best)]);
  if (others + need > budget_) {
    // Evict idle caches, least recently used first, until it fits.
    std::vector<int> idle;
    for (int i = 0; i < opts_.n_slots; ++i)
      if (i != best && !slots_[static_cast<size_t>(i)].busy && !slots_[static_cast<size_t>(i)].tokens.empty())
        idle.push_back(i);
    std::sort(idle.begin(), idle.end(), [&](int a, int b) {
      return slots_[static_cast<size_t>(a)].last_used < slots_[static_cast<size_t>(b)].last_used;
    });
    int64_t freed = 0;
    size_t k = 0;
    while (others - freed + need > budget_ && k < idle.size()) freed += cost(slots_[static_cast<size_t>(idle[k++])]);
    if (others - freed + need > budget_) return std::nullopt;  // wait for running requests to finish
    for (size_t j = 0; j < k; ++j) {
      slots_[static_cast<size_t>(idle[j])].tokens.clear();
      p.evicted.push_back(idle[j]);
    }
  }
  Slot& s = slots_[static_cast<size_t>(best)];
  s.tokens.resize(static_cast<size_t>(best_len));
  s.busy = true;
  s.reserve = reserve;
  s.last_used = ++clock_;
  return p;
}

void Scheduler::append(int slot, std::span<const int32_t> tokens) {
  auto& t = slots_[static_cast<size_t>(slot)].tokens;
  t.insert(t.end(), tokens.begin(), tokens.end());
}

void Scheduler::truncate(int slot, int64_t n) {
  auto& t = slots_[static_cast<size_t>(slot)].tokens;
  if (n < static_cast<int64_t>(t.size())) t.resize(static_cast<size_t>(n));
}

void Scheduler::release(int slot, bool keep) {
  Slot& s = slots_[static_cast<size_t>(slot)];
  s.busy = false;
  s.reserve = 0;
  s.last_used = ++clock_;
  if (!keep || !opts_.prefix_cache) s.tokens.clear();
}

std::vector<int64_t> Scheduler::plan(std::span<const int64_t> need, std::span<const uint8_t> decoding) const {
  std::vector<int64_t> rows(need.size(), 0);
  int64_t budget = opts_.prefill_chunk;
  for (size_t i = 0; i < need.size(); ++i) {
    if (decoding[i]) {
      rows[i] = need[i] > 0 ? 1 : 0;
    } else if (budget > 0) {
      rows[i] = std::min(need[i], budget);
      budget -= rows[i];
    }
  }
  return rows;
}

}  // namespace owl
