// Jinja lexer: splits template source into text and tag tokens, applying the
// whitespace rules (`{%-`, `-%}`, trim_blocks, lstrip_blocks, `{%+`/`+%}`),
// dropping comments and expanding {% raw %} blocks to text.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace owl::jinja {

struct Options;

struct Token {
  enum class Type {
    Text,        // template data
    VarBegin,    // {{
    VarEnd,      // }}
    BlockBegin,  // {%
    BlockEnd,    // %}
    Name,
    String,  // value already unescaped
    Int,
    Float,
    Op,  // operator or punctuation, in `text`
    End,
  };
  Type type;
  std::string text;
  int line = 1, col = 1;
};

// Throws TemplateError on unterminated tags, strings or comments.
std::vector<Token> tokenize(std::string_view source, const Options& options);

}  // namespace owl::jinja
