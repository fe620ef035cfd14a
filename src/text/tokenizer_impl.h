// The parts a Tokenizer is assembled from (internal to src/text). Both
// loaders (tokenizer.json and GGUF) fill in this one structure, so every
// family runs through the same encode/decode code.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "text/bpe.h"
#include "text/decoder.h"
#include "text/normalizer.h"
#include "text/pre_tokenizer.h"
#include "text/tokenizer.h"

namespace owl {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;      // removed by decode(skip_special)
  bool lstrip = false;       // swallows whitespace on its left
  bool rstrip = false;       // swallows whitespace on its right
  bool single_word = false;  // only matches when not inside a word
};

// Finds added tokens in raw text: leftmost match, longest at that position.
class AddedTokenMatcher {
 public:
  void build(const std::vector<AddedToken>& tokens);
  // Text cut into sections: plain text (token < 0) or one added token (index into tokens).
  struct Section {
    std::string_view text;
    int32_t token = -1;
  };
  // parse_special = false: special tokens are not matched (only non-special added tokens).
  std::vector<Section> split(std::string_view text, const std::vector<AddedToken>& tokens,
                             bool parse_special = true) const;

 private:
  int32_t child(int32_t node, uint8_t byte) const;
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> node
  std::vector<int32_t> terminal_;                // node -> added-token index or -1
  bool can_start_[256] = {};
};

struct Tokenizer::Impl {
  std::string source;  // file name, for messages
  text::Bpe bpe;
  std::unique_ptr<text::Normalizer> normalizer;       // may be null
  std::unique_ptr<text::PreTokenizer> pre_tokenizer;  // may be null: the section is one piece
  text::Decoder decoder;
  std::vector<int32_t> prefix, suffix;  // post-processor: ids around the text with add_special

  std::vector<AddedToken> added;
  std::vector<int32_t> added_index;  // id -> index into added, or -1
  AddedTokenMatcher matcher;

  int32_t bos = -1, eos = -1;
  std::unordered_set<int32_t> eog;
  bool clean_up_spaces = false;  // tokenizer_config's clean_up_tokenization_spaces

  // Call when the vocabulary, added tokens and ids are final.
  void finish();
  bool is_added(int32_t id) const {
    return id >= 0 && id < static_cast<int32_t>(added_index.size()) && added_index[id] >= 0;
  }
};

// Well-known end-of-turn token texts (used when a vocabulary marks them special/control).
bool is_known_eog_text(std::string_view s);

}  // namespace owl
