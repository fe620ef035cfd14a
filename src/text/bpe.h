// The BPE model: vocabulary, merge ranks and the merge loop shared by every
// family. Two ways to rank a candidate pair:
//  - merges (tokenizer.json, GGUF gpt2): an explicit list, earlier = applied first;
//  - scores (GGUF "llama" SentencePiece vocabularies): the pair whose
//    concatenation is a vocabulary entry with the highest score merges first.
// Ties go to the leftmost pair. Each merge costs O(log n) (a heap over a linked
// list of symbols), so long pre-tokens are not quadratic.
#pragma once
#include <array>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace owl::text {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Pair of ids -> (rank, merged id), open addressing in one flat array: the
// merge loop looks pairs up constantly and a node-based map is cache-unfriendly.
class MergeTable {
 public:
  void reserve(size_t n);
  void insert(int32_t left, int32_t right, int32_t rank, int32_t merged);
  // nullptr if the pair does not merge.
  const int32_t* find(int32_t left, int32_t right) const;  // -> {rank, merged}
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t key = kEmpty;
    int32_t value[2] = {0, 0};
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t slot_of(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> shift_); }
  void grow();
  std::vector<Slot> slots_;
  size_t size_ = 0;
  int shift_ = 64;
};

class Bpe {
 public:
  // Vocabulary (id -> text; gaps are empty strings) and its inverse.
  std::vector<std::string> vocab;
  TokenMap ids;

  // Merge mode: pair (left id, right id) -> rank and merged id.
  MergeTable merges;
  // Score mode (used when `scores` is non-empty): per-id SentencePiece scores;
  // kNoMerge marks pieces that a merge must never produce.
  std::vector<float> scores;
  static constexpr float kNoMerge = -std::numeric_limits<float>::infinity();

  bool byte_fallback = false;  // unknown characters become <0xNN> tokens
  bool ignore_merges = false;  // a pre-token that is a vocabulary entry is emitted whole
  bool fuse_unk = false;       // consecutive unknown characters become one unk
  int32_t unk_id = -1;

  void add_merge(int32_t left, int32_t right, int32_t rank, int32_t merged) {
    merges.insert(left, right, rank, merged);  // the first (best) rank wins on duplicates
  }
  // Call after the vocabulary is complete (finds the <0xNN> byte tokens).
  void finish_loading();

  std::optional<int32_t> find(std::string_view s) const {
    auto it = ids.find(s);
    if (it == ids.end()) return std::nullopt;
    return it->second;
  }

  // Appends the ids of one pre-token (valid UTF-8, in the vocabulary's alphabet).
  // Short pre-tokens are memoised (natural text repeats words constantly).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  static constexpr size_t kCacheMaxWord = 64, kCacheMaxEntries = 1 << 16;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;

  std::array<int32_t, 256> byte_ids_{};
  bool have_byte_ids_ = false;
};

}  // namespace owl::text
