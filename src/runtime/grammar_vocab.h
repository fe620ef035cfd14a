// The bridge between a tokenizer and the constraint engine (src/grammar): every token's
// bytes, the vocabulary trie (special tokens never allowed, end-of-generation tokens allowed
// once the grammar is complete) and the encoder, for masks and MaskBench.
#pragma once
#include "grammar/maskbench.h"
#include "text/tokenizer.h"

namespace owl::runtime {

// `tok` must outlive the result (its encoder is referenced).
// `allowed_special`: special tokens the grammar may still produce (a tool-call format's markers,
// which the model writes as one token), matched by their text.
grammar::Vocabulary grammar_vocabulary(const Tokenizer& tok, const std::vector<int32_t>& allowed_special = {});

}  // namespace owl::runtime
