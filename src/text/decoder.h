// The decoding side of a tokenizer.json "decoder": how one token's text turns
// into bytes, and what is stripped from the start/end of the whole text.
// HF decoders chain per-token rewrites (Replace, ByteFallback, ByteLevel,
// Metaspace) and whole-text ones (Fuse, Strip); this holds both kinds.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace owl::text {

struct Decoder {
  enum class Kind { Replace, ByteFallback, ByteLevel };
  struct Step {
    Kind kind;
    std::string from, to;  // Replace
  };
  std::vector<Step> steps;
  // Strip: remove up to this many `strip_char` from the start / end of the whole text.
  size_t strip_start = 0, strip_stop = 0;
  char strip_char = ' ';

  // Raw bytes of one token (may be part of a UTF-8 character). Added tokens
  // are kept verbatim by the ByteLevel step (as the reference decoders do).
  std::string piece(std::string_view token, bool is_added) const;
  // Applies the whole-text steps to the concatenated pieces and makes the result valid UTF-8.
  std::string finish(std::string bytes) const;
};

}  // namespace owl::text
