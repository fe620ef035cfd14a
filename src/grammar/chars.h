// Sets of Unicode code points and their lowering to byte expressions: raw UTF-8 (GBNF) or
// the canonical escaped form a character takes inside a compact JSON string (JSON Schema
// patterns and formats constrain the decoded string, the grammar sees its encoding).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "grammar/grammar.h"

namespace owl::grammar {

inline constexpr uint32_t kMaxCodePoint = 0x10FFFF;

class CharSet {
 public:
  CharSet() = default;
  static CharSet of(uint32_t c) { return range(c, c); }
  static CharSet range(uint32_t lo, uint32_t hi);
  static CharSet any();  // every scalar value (no surrogates)
  void add(uint32_t lo, uint32_t hi);
  void add(const CharSet& o);
  CharSet complement() const;  // within `any()`
  bool empty() const { return ranges_.empty(); }
  const std::vector<std::pair<uint32_t, uint32_t>>& ranges() const { return ranges_; }

 private:
  void normalize();
  std::vector<std::pair<uint32_t, uint32_t>> ranges_;  // sorted, disjoint, inclusive
};

enum class CharEncoding {
  kUtf8,        // the character's UTF-8 bytes
  kJsonString,  // as JSON encodes it inside a string: \" \\ \n ... \u001f, the rest as UTF-8
};

// One character of `set`, as bytes.
ExprId char_expr(ExprPool& pool, const CharSet& set, CharEncoding enc);

// Appends the UTF-8 encoding of `c`.
void append_utf8(std::string& out, uint32_t c);

}  // namespace owl::grammar
