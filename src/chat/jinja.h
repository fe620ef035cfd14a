// owl's Jinja2 renderer for chat templates: lexer -> parser (jinja_ast.h) ->
// evaluator over jinja::Value. It implements the subset of Jinja2 that model
// chat templates use, with Python/Jinja2 semantics (str(None) == "None",
// json.dumps formatting for tojson, Python slicing and string methods), and
// the environment Hugging Face's apply_chat_template uses: trim_blocks,
// lstrip_blocks, loop controls, `raise_exception` and `strftime_now` globals.
//
// Templates are untrusted: there is no I/O (no include/import/extends), and
// recursion, loop iterations and output size are bounded by Limits. Every
// failure is a TemplateError "template error at line L, column C: what".
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "chat/jinja_value.h"

namespace owl::jinja {

struct Limits {
  size_t max_output_bytes = 16u << 20;       // rendered text, and any single string or list built on the way
  int max_call_depth = 64;                   // nested macro calls (and caller() blocks)
  int max_nesting = 200;                     // parser: nested expressions/blocks in the source
  uint64_t max_loop_iterations = 1'000'000;  // all for-loop iterations of one render together
};

struct Options {
  bool trim_blocks = true;    // drop the first newline after a block tag
  bool lstrip_blocks = true;  // drop spaces/tabs before a block tag at the start of a line
  bool keep_trailing_newline = false;
  Limits limits;
  // Seconds since the epoch for strftime_now; unset = the real clock (tests pin it).
  std::optional<int64_t> fixed_time;
};

class TemplateError : public owl::Error {
 public:
  TemplateError(int line, int col, const std::string& message);
  int line() const { return line_; }
  int column() const { return col_; }
  const std::string& message() const { return message_; }  // without the location prefix

 private:
  int line_, col_;
  std::string message_;
};

struct Program;

class Template {
 public:
  // Parses `source`; throws TemplateError on a syntax error.
  explicit Template(std::string_view source, Options options = {});
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with the given variables (a JSON object; key order is kept). Throws TemplateError.
  std::string render(const nlohmann::ordered_json& context) const;
  // Same with a dict Value (lets callers pass non-JSON values such as callables).
  std::string render(const Value& context) const;

 private:
  std::unique_ptr<Program> program_;
  Options options_;
};

}  // namespace owl::jinja
