// ECMAScript regular expressions (the dialect of JSON Schema's `pattern`) compiled to byte
// expressions, i.e. automata: literals, classes, escapes (\d \w \s ...), groups,
// alternation, greedy or lazy quantifiers and ^/$ at the edges. Lookaround,
// backreferences, word boundaries and Unicode properties cannot be expressed as an
// automaton here and are CompileErrors that name them and their position.
#pragma once
#include <cstdint>
#include <string_view>

#include "grammar/chars.h"
#include "grammar/grammar.h"

namespace owl::grammar {

struct CompiledRegex {
  ExprId expr;
  uint32_t min_chars;  // length bounds of the matched strings, in characters
  uint32_t max_chars;  // kUnbounded when unbounded
};

// search = true: JSON Schema semantics, the pattern may match anywhere in the string unless
// anchored with ^ and $. The expression matches the whole (encoded) string content.
CompiledRegex compile_regex(ExprPool& pool, std::string_view pattern, CharEncoding enc, bool search);

}  // namespace owl::grammar
