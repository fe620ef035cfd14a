// Pre-tokenizers of Hugging Face tokenizer.json ("pre_tokenizer" key): cut a
// normalised section into pieces ("pre-tokens") that BPE encodes separately.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "text/regex.h"

namespace owl::text {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every piece by its sub-pieces. first_section: this text is the
  // first section of the input (Metaspace's prepend_scheme "first").
  virtual void apply(std::vector<std::string>& pieces, bool first_section) const = 0;
};

// How Split treats the matches of its pattern (HF SplitDelimiterBehavior).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

std::unique_ptr<PreTokenizer> make_split(const std::string& pattern, bool literal, SplitBehavior behavior, bool invert);
// ByteLevel: optional GPT-2 regex split and prefix space, then bytes -> byte-level characters.
std::unique_ptr<PreTokenizer> make_byte_level(bool add_prefix_space, bool use_regex);
std::unique_ptr<PreTokenizer> make_digits(bool individual_digits);
// Metaspace: spaces -> replacement, prefix per scheme ("always", "first", "never"), optional split before each
// replacement.
std::unique_ptr<PreTokenizer> make_metaspace(std::string replacement, std::string prepend_scheme, bool split);
// Whitespace (\w+|[^\w\s]+) and WhitespaceSplit (split on whitespace, drop it).
std::unique_ptr<PreTokenizer> make_whitespace();
std::unique_ptr<PreTokenizer> make_whitespace_split();
std::unique_ptr<PreTokenizer> make_sequence_pre_tokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts);

// GPT-2's pre-tokenizer regex (what ByteLevel uses when use_regex is true).
extern const char* const kGpt2Pattern;

}  // namespace owl::text
