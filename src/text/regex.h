// A compiled Unicode regular expression (PCRE2 in UTF + UCP mode, JIT when
// available) used by the Split pre-tokenizer and Replace normalizer. Hugging
// Face patterns (\p{L}, (?i:...), \s+(?!\S)) are PCRE-compatible as written.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace owl::text {

class Regex {
 public:
  // literal: match the pattern text exactly (a tokenizer.json {"String": ...} pattern).
  Regex(const std::string& pattern, bool literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(begin, end) for every non-overlapping match, left to right
  // (byte offsets into s, which must be valid UTF-8). Empty matches are skipped.
  void for_each_match(std::string_view s, const std::function<void(size_t, size_t)>& on_match) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

}  // namespace owl::text
