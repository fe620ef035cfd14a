// GBNF, llama.cpp's grammar notation, for users who bring their own grammar:
//   root ::= "yes" | "no" ws item*      # comment
//   item ::= [a-z0-9_-]+ | ( "(" item ")" ) | [^"\\] | . ; quantifiers * + ? {m} {m,} {m,n}
// Strings and classes hold Unicode characters (escapes \n \r \t \\ \" \] \xHH \uHHHH
// \UHHHHHHHH), matched as UTF-8. The start rule is `root`. Syntax errors, undefined rules and
// left recursion are CompileErrors with the line and column.
#pragma once
#include <memory>
#include <string_view>

#include "grammar/grammar.h"

namespace owl::grammar {

std::shared_ptr<const Grammar> compile_gbnf(std::string_view text);

}  // namespace owl::grammar
