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

class Bpe {
 public:
  // Vocabulary (id -> text; gaps are empty strings) and its inverse.
  std::vector<std::string> vocab;
  TokenMap ids;

  // Merge mode: pair (left id, right id) -> rank and merged id.
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  std::unordered_map<uint64_t, Merge> merges;
  // Score mode (used when `scores` is non-empty): per-id SentencePiece scores;
  // kNoMerge marks pieces that a merge must never produce.
  std::vector<float> scores;
  static constexpr float kNoMerge = -std::numeric_limits<float>::infinity();

  bool byte_fallback = false;  // unknown characters become <0xNN> tokens
  bool ignore_merges = false;  // a pre-token that is a vocabulary entry is emitted whole
  bool fuse_unk = false;       // consecutive unknown characters become one unk
  int32_t unk_id = -1;

  void add_merge(int32_t left, int32_t right, int32_t rank, int32_t merged) {
    merges.emplace(key(left, right), Merge{rank, merged});  // the first (best) rank wins on duplicates
  }
  // Call after the vocabulary is complete (finds the <0xNN> byte tokens).
  void finish_loading();

  std::optional<int32_t> find(std::string_view s) const {
    auto it = ids.find(s);
    if (it == ids.end()) return std::nullopt;
    return it->second;
  }

  // Appends the ids of one pre-token (valid UTF-8, in the vocabulary's alphabet).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

 private:
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::array<int32_t, 256> byte_ids_{};
  bool have_byte_ids_ = false;
};

}  // namespace owl::text
