// Normalizers of Hugging Face tokenizer.json ("normalizer" key): rewrite the
// text of each section between added tokens before pre-tokenisation.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "text/regex.h"

namespace owl::text {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& s) const = 0;  // s is valid UTF-8 before and after
};

// Unicode normalisation forms through utf8proc.
enum class UnicodeForm { NFC, NFD, NFKC, NFKD };
std::unique_ptr<Normalizer> make_unicode_normalizer(UnicodeForm form);
std::unique_ptr<Normalizer> make_lowercase_normalizer();
// Replace every match of the pattern (literal string or regex) with content.
std::unique_ptr<Normalizer> make_replace_normalizer(const std::string& pattern, bool literal, std::string content);
// Prepend a prefix to non-empty text (SentencePiece's "▁" dummy prefix).
std::unique_ptr<Normalizer> make_prepend_normalizer(std::string prefix);
// Strip Unicode whitespace from the left and/or right.
std::unique_ptr<Normalizer> make_strip_normalizer(bool left, bool right);
std::unique_ptr<Normalizer> make_sequence_normalizer(std::vector<std::unique_ptr<Normalizer>> parts);

// Shared helper: Unicode White_Space property.
bool is_unicode_space(char32_t c);

}  // namespace owl::text
