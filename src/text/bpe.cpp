#include "text/bpe.h"

#include <cstdio>
#include <optional>
#include <queue>

#include "text/utf8.h"

namespace owl::text {

void MergeTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap *= 2;  // load factor <= 1/2
  if (cap <= slots_.size()) return;
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.assign(cap, Slot{});
  shift_ = 64 - __builtin_ctzll(cap);
  size_ = 0;
  for (const Slot& s : old)
    if (s.key != kEmpty) insert(static_cast<int32_t>(s.key >> 32), static_cast<int32_t>(s.key), s.value[0], s.value[1]);
}

void MergeTable::insert(int32_t left, int32_t right, int32_t rank, int32_t merged) {
  if ((size_ + 1) * 2 > slots_.size()) reserve(size_ + 1 > 8 ? (size_ + 1) * 2 : 16);
  uint64_t k = key(left, right);
  size_t mask = slots_.size() - 1;
  for (size_t i = slot_of(k);; i = (i + 1) & mask) {
    if (slots_[i].key == k) return;  // keep the first (best-ranked) entry
    if (slots_[i].key == kEmpty) {
      slots_[i].key = k;
      slots_[i].value[0] = rank;
      slots_[i].value[1] = merged;
      ++size_;
      return;
    }
  }
}

const int32_t* MergeTable::find(int32_t left, int32_t right) const {
  if (slots_.empty()) return nullptr;
  uint64_t k = key(left, right);
  size_t mask = slots_.size() - 1;
  for (size_t i = slot_of(k);; i = (i + 1) & mask) {
    if (slots_[i].key == k) return slots_[i].value;
    if (slots_[i].key == kEmpty) return nullptr;
  }
}

void Bpe::finish_loading() {
  have_byte_ids_ = true;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto id = find(name);
    byte_ids_[b] = id ? *id : -1;
    if (!id) have_byte_ids_ = false;
  }
}

namespace {

struct Symbol {
  uint32_t begin;  // byte offset in the word
  uint32_t len;    // 0 once merged into its left neighbour
  int32_t id;      // -1: not in the vocabulary (byte fallback / unk at the end)
  int32_t prev, next;
};

struct Candidate {
  double rank;  // lower merges first
  int32_t left, right;
  uint32_t left_len, right_len;  // to detect stale candidates
  int32_t merged_id;
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
};

}  // namespace

void Bpe::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (word.size() > kCacheMaxWord) {
    merge_word(word, out);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t start = out.size();
  merge_word(word, out);
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kCacheMaxEntries) cache_.clear();  // crude bound; refills with the current text's words
  cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + start, out.end()));
}

void Bpe::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    if (auto id = find(word)) {
      out.push_back(*id);
      return;
    }
  }
  const bool by_score = !scores.empty();

  std::vector<Symbol> sym;
  sym.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    size_t n = utf8_valid_len(word, i);
    if (n == 0) n = 1;  // cannot happen for sanitized input; stay safe anyway
    auto id = find(word.substr(i, n));
    int32_t k = static_cast<int32_t>(sym.size());
    sym.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(n), id ? *id : -1, k - 1, k + 1});
    i += n;
  }
  sym.back().next = -1;

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto try_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Symbol &a = sym[l], &b = sym[r];
    if (by_score) {
      auto id = find(word.substr(a.begin, a.len + b.len));
      if (!id || scores[*id] == kNoMerge) return;
      heap.push({-static_cast<double>(scores[*id]), l, r, a.len, b.len, *id});
    } else {
      if (a.id < 0 || b.id < 0) return;
      const int32_t* m = merges.find(a.id, b.id);
      if (!m) return;
      heap.push({static_cast<double>(m[0]), l, r, a.len, b.len, m[1]});
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) try_pair(i, i + 1);

  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    Symbol &a = sym[c.left], &b = sym[c.right];
    if (a.len != c.left_len || b.len != c.right_len || a.next != c.right) continue;  // stale
    a.len += b.len;
    a.id = c.merged_id;
    b.len = 0;
    a.next = b.next;
    if (b.next >= 0) sym[b.next].prev = c.left;
    try_pair(a.prev, c.left);
    try_pair(c.left, a.next);
  }

  bool last_was_unk = false;
  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    const Symbol& s = sym[i];
    if (s.id >= 0) {
      out.push_back(s.id);
      last_was_unk = false;
      continue;
    }
    if (byte_fallback && have_byte_ids_) {
      for (uint32_t k = 0; k < s.len; ++k) out.push_back(byte_ids_[static_cast<uint8_t>(word[s.begin + k])]);
      last_was_unk = false;
      continue;
    }
    if (unk_id < 0) continue;  // no unk token: the character is dropped (HF would report an error)
    if (!(fuse_unk && last_was_unk)) out.push_back(unk_id);
    last_was_unk = true;
  }
}

}  // namespace owl::text
