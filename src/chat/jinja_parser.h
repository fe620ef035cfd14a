// Jinja parser: tokens (jinja_lexer.h) -> statement tree (jinja_ast.h), with
// Jinja2's operator precedence (filters and `is` tests bind tighter than
// arithmetic; `not x is y` is `not (x is y)`).
#pragma once
#include <string_view>

#include "chat/jinja_ast.h"

namespace owl::jinja {

struct Options;

// Throws TemplateError on any syntax error or when nesting exceeds options.limits.max_nesting.
Body parse_template(std::string_view source, const Options& options);

}  // namespace owl::jinja
