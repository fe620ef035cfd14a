#include "server/tool_choice.h"

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/chars.h"
#include "grammar/json_schema.h"
#include "grammar/regex.h"

namespace owl::server {

namespace {

using json = nlohmann::ordered_json;

const json& function_of(const json& tool) { return tool["function"]; }

// The function's parameters schema ({} when it declares none: an object of anything).
json parameters_of(const json& fn) {
  if (fn.contains("parameters") && fn["parameters"].is_object()) return fn["parameters"];
  return json{{"type", "object"}};
}

bool is_strict(const json& fn) { return fn.contains("strict") && fn["strict"] == true; }

std::string parameters_param(size_t i) { return "tools[" + std::to_string(i) + "].function.parameters"; }

ApiError bad_schema(size_t i, const std::string& why) {
  const std::string param = parameters_param(i);
  return ApiError(400, "'" + param + "': " + why, "invalid_request_error", param, "invalid_grammar");
}

// Builds one format's call syntax into a pool: the grammar's literal text, each function's
// arguments (a JSON value, or for the key/value formats one entry per declared parameter).
class CallSyntax {
 public:
  CallSyntax(grammar::ExprPool& pool, chat::ToolCallFormat format) : pool_(pool), format_(format) {}

  // One call of the tools[i] function.
  grammar::ExprId call(const json& tool, size_t i) {
    const json& fn = function_of(tool);
    const std::string name = fn["name"].get<std::string>();
    auto lit = [&](const std::string& s) { return pool_.literal(s); };
    switch (format_) {
      case chat::ToolCallFormat::None:
      case chat::ToolCallFormat::Hermes:
        return pool_.seq({lit("<tool_call>\n{\"name\": \"" + name + "\", \"arguments\": "), arguments(fn, i),
                          lit("}\n</tool_call>")});
      case chat::ToolCallFormat::Qwen3CoderXml:
        return pool_.seq({lit("<tool_call>\n<function=" + name + ">\n"),
                          key_values(fn, i, "<parameter=", ">\n", "\n</parameter>\n"),
                          lit("</function>\n</tool_call>")});
      case chat::ToolCallFormat::Glm45:
        return pool_.seq({lit("<tool_call>" + name + "\n"),
                          key_values(fn, i, "<arg_key>", "</arg_key>\n<arg_value>", "</arg_value>\n"),
                          lit("</tool_call>")});
      case chat::ToolCallFormat::DeepSeekV3:
        return pool_.seq({lit("<｜tool▁call▁begin｜>function<｜tool▁sep｜>" + name + "\n```json\n"), arguments(fn, i),
                          lit("\n```<｜tool▁call▁end｜>")});
      case chat::ToolCallFormat::DeepSeekV31:
        return pool_.seq(
            {lit("<｜tool▁call▁begin｜>" + name + "<｜tool▁sep｜>"), arguments(fn, i), lit("<｜tool▁call▁end｜>")});
      case chat::ToolCallFormat::KimiK2:
        return pool_.seq({lit("<|tool_call_begin|>functions." + name + ":"),
                          pool_.plus(pool_.bytes(grammar::ByteSet::range('0', '9'))),
                          lit("<|tool_call_argument_begin|>"), arguments(fn, i), lit("<|tool_call_end|>")});
      case chat::ToolCallFormat::Llama31:
        return pool_.seq({lit("{\"name\": \"" + name + "\", \"parameters\": "), arguments(fn, i), lit("}")});
      case chat::ToolCallFormat::Mistral:
        return pool_.seq({lit("{\"name\": \"" + name + "\", \"arguments\": "), arguments(fn, i), lit("}")});
    }
    return pool_.nothing();
  }

  // `calls` (alternatives of one call each) once, or one or more times, in the format's wrapper.
  grammar::ExprId answer(grammar::ExprId one, bool many) {
    using F = chat::ToolCallFormat;
    auto lit = [&](std::string_view s) { return pool_.literal(s); };
    auto repeated = [&](grammar::ExprId sep) {
      return many ? pool_.seq({one, pool_.star(pool_.seq({sep, one}))}) : one;
    };
    // The answer may open with the blank lines the model writes after its reasoning.
    grammar::ExprId lead = pool_.repeat(pool_.bytes(blank()), 0, 4);
    switch (format_) {
      case F::DeepSeekV3:
      case F::DeepSeekV31:
        return pool_.seq(
            {lead, lit("<｜tool▁calls▁begin｜>"), repeated(pool_.opt(pool_.byte('\n'))), lit("<｜tool▁calls▁end｜>")});
      case F::KimiK2:
        return pool_.seq(
            {lead, lit("<|tool_calls_section_begin|>"), repeated(pool_.empty()), lit("<|tool_calls_section_end|>")});
      case F::Mistral:
        return pool_.seq({lead, lit("[TOOL_CALLS]["), repeated(lit(", ")), lit("]")});
      case F::Llama31:
        return pool_.seq({lead, one});  // the whole answer is one call
      default:
        return pool_.seq({lead, repeated(pool_.opt(pool_.byte('\n')))});
    }
  }

  // Llama 3.1 under "auto" with a strict tool: its call has no marker but is the whole answer
  // (optionally after <|python_tag|>), so the grammar decides at the answer's first byte. An
  // answer that opens like a call ('{', or the tag) is one call; any other answer is free text.
  // With `builtin` (the template was given builtin_tools) the tag may also open a built-in
  // tool's call (name.call(...), or code), which stays free.
  grammar::ExprId llama_auto(grammar::ExprId one, bool builtin) {
    constexpr std::string_view kTag = "<|python_tag|>";
    grammar::ByteSet any = grammar::ByteSet::range(0, 0xff), not_open = any, not_brace = any;
    for (uint8_t b : {'{', '<', ' ', '\n'}) not_open.w[b >> 6] &= ~(uint64_t{1} << (b & 63));
    for (uint8_t b : {'{', ' ', '\n'}) not_brace.w[b >> 6] &= ~(uint64_t{1} << (b & 63));
    const grammar::ExprId rest = pool_.star(pool_.bytes(any)), blanks = pool_.star(pool_.bytes(blank()));
    std::vector<grammar::ExprId> free = {pool_.empty(), pool_.seq({pool_.bytes(not_open), rest})};
    // Text that starts like the tag and leaves it (or ends) before the tag is whole.
    for (size_t k = 1; k < kTag.size(); ++k) {
      grammar::ByteSet other = any;
      other.w[static_cast<uint8_t>(kTag[k]) >> 6] &= ~(uint64_t{1} << (kTag[k] & 63));
      free.push_back(pool_.seq({pool_.literal(kTag.substr(0, k)), pool_.opt(pool_.seq({pool_.bytes(other), rest}))}));
    }
    if (builtin)
      free.push_back(pool_.seq({pool_.literal(kTag), blanks, pool_.opt(pool_.seq({pool_.bytes(not_brace), rest}))}));
    const grammar::ExprId call = pool_.seq({pool_.opt(pool_.seq({pool_.literal(kTag), blanks})), one});
    return pool_.seq({blanks, pool_.alt({call, pool_.alt(std::move(free))})});
  }

 private:
  static grammar::ByteSet blank() {
    grammar::ByteSet s;
    s.add(' ');
    s.add('\n');
    return s;
  }

  // The function's arguments as JSON following its parameters schema.
  grammar::ExprId arguments(const json& fn, size_t i) { return schema_value(parameters_of(fn), fn, i, "arguments"); }

  grammar::ExprId schema_value(const json& schema, const json& fn, size_t i, const std::string& what) {
    // Compiled apart first: a schema that fails must leave nothing half-built in the shared pool.
    try {
      grammar::compile_json_schema(schema);
    } catch (const grammar::CompileError& e) {
      if (is_strict(fn)) throw bad_schema(i, e.what());
      return grammar::add_json_schema(pool_, json::object(), what);  // any JSON value
    }
    return grammar::add_json_schema(pool_, schema, what);
  }

  // A raw string value of the XML formats: text that cannot close its tag. Unbounded, any text
  // without "</"; with minLength/maxLength, that many UTF-8 characters other than '<'.
  grammar::ExprId raw_text(const json& schema) {
    using grammar::ByteSet;
    ByteSet ascii_not_lt = ByteSet::range(0, 0x7f), not_lt, not_slash;
    ascii_not_lt.w[0] &= ~(uint64_t{1} << '<');
    for (unsigned b = 0; b < 256; ++b) {
      if (b != '<') not_lt.add(static_cast<uint8_t>(b));
      if (b != '/') not_slash.add(static_cast<uint8_t>(b));
    }
    auto count = [&](const char* key) -> std::optional<uint32_t> {
      if (!schema.contains(key) || !schema[key].is_number_unsigned()) return std::nullopt;
      return static_cast<uint32_t>(std::min<uint64_t>(schema[key].get<uint64_t>(), 1u << 20));
    };
    const auto lo = count("minLength"), hi = count("maxLength");
    if (!lo && !hi)
      return pool_.star(pool_.alt({pool_.bytes(not_lt), pool_.seq({pool_.byte('<'), pool_.bytes(not_slash)})}));
    const grammar::ExprId cont = pool_.bytes(ByteSet::range(0x80, 0xbf));
    const grammar::ExprId utf8_char =
        pool_.alt({pool_.bytes(ascii_not_lt), pool_.seq({pool_.bytes(ByteSet::range(0xc2, 0xdf)), cont}),
                   pool_.seq({pool_.bytes(ByteSet::range(0xe0, 0xef)), cont, cont}),
                   pool_.seq({pool_.bytes(ByteSet::range(0xf0, 0xf4)), cont, cont, cont})});
    return pool_.repeat(utf8_char, lo.value_or(0), hi.value_or(grammar::kUnbounded));
  }

  // A raw string value with its schema's pattern or format: the text the regular expression
  // matches (the pattern searched for, as JSON Schema does, unless anchored), less any text
  // holding '<', which could close the value's tag early. Without either, raw_text. A pattern or
  // format owl cannot compile is a 400 for a strict tool, and leaves the value free otherwise.
  grammar::ExprId raw_string(const json& schema, const json& fn, size_t i, const std::string& key) {
    try {
      std::optional<std::string> source;
      if (schema.contains("format") && schema["format"].is_string())
        source = grammar::format_regex(schema["format"].get<std::string>());
      if (schema.contains("pattern")) {
        if (!schema["pattern"].is_string()) throw grammar::CompileError("pattern must be a string");
        if (source) throw grammar::CompileError("pattern together with format is not supported");
        source = schema["pattern"].get<std::string>();
      }
      if (!source) return raw_text(schema);
      const grammar::CompiledRegex re =
          grammar::compile_regex(pool_, *source, grammar::CharEncoding::kUtf8, /*search=*/true);
      const auto bound = [&](const char* k) -> std::optional<uint64_t> {
        if (!schema.contains(k) || !schema[k].is_number_unsigned()) return std::nullopt;
        return schema[k].get<uint64_t>();
      };
      const auto lo = bound("minLength"), hi = bound("maxLength");
      if ((lo && re.min_chars < *lo) || (hi && (re.max_chars == grammar::kUnbounded || re.max_chars > *hi)))
        throw grammar::CompileError("minLength/maxLength together with pattern or format is not supported");
      const grammar::ExprId value = without_byte(re.expr, '<');
      if (pool_.is_nothing(value))
        throw grammar::CompileError(
            "its pattern needs '<', which this model's tool-call format cannot write in a raw value");
      return value;
    } catch (const grammar::CompileError& e) {
      if (is_strict(fn)) throw bad_schema(i, "'" + key + "': " + e.what());
      return raw_text(schema);
    }
  }

  // `e` with byte `b` taken out of every byte set: exactly the strings of `e` that do not hold b
  // (each byte of a match comes from one byte set). Regular expressions have no rule references.
  grammar::ExprId without_byte(grammar::ExprId e, uint8_t b) {
    using K = grammar::ExprPool::Kind;
    const grammar::ExprPool::Expr x = pool_.get(e);  // a copy: building below may move the pool
    switch (x.kind) {
      case K::Nothing:
      case K::Empty:
      case K::Ref:
        return e;
      case K::Bytes: {
        grammar::ByteSet s = x.bytes;
        s.w[b >> 6] &= ~(uint64_t{1} << (b & 63));
        return s == x.bytes ? e : pool_.bytes(s);
      }
      case K::Seq:
      case K::Alt: {
        std::vector<grammar::ExprId> kids;
        for (grammar::ExprId k : x.kids) kids.push_back(without_byte(k, b));
        return x.kind == K::Seq ? pool_.seq(std::move(kids)) : pool_.alt(std::move(kids));
      }
      case K::Repeat:
        return pool_.repeat(without_byte(x.kids[0], b), x.min, x.max);
    }
    return e;
  }

  // The key/value formats write one entry per parameter: open KEY mid VALUE close. The declared
  // properties come in schema order, the required ones always; string values are raw text (with
  // their enum, length bounds, pattern or format), the others JSON of their schema.
  grammar::ExprId key_values(const json& fn, size_t i, const std::string& open, const std::string& mid,
                             const std::string& close) {
    const json params = parameters_of(fn);
    std::vector<grammar::ExprId> entries;
    if (!params.contains("properties") || !params["properties"].is_object()) return pool_.empty();
    const json required = params.value("required", json::array());
    for (const auto& [key, schema] : params["properties"].items()) {
      const bool is_string = schema.is_object() && schema.contains("type") && schema["type"] == "string";
      grammar::ExprId value;
      if (is_string && schema.contains("enum") && schema["enum"].is_array()) {
        std::vector<grammar::ExprId> options;
        for (const auto& v : schema["enum"])
          if (v.is_string()) options.push_back(pool_.literal(v.get<std::string>()));
        value = pool_.alt(std::move(options));
      } else if (is_string) {
        value = raw_string(schema, fn, i, key);
      } else {
        value = schema_value(schema, fn, i, key);
      }
      grammar::ExprId entry = pool_.seq({pool_.literal(open + key + mid), value, pool_.literal(close)});
      bool needed = false;
      for (const auto& r : required) needed = needed || r == key;
      entries.push_back(needed ? entry : pool_.opt(entry));
    }
    return pool_.seq(std::move(entries));
  }

  grammar::ExprPool& pool_;
  chat::ToolCallFormat format_;
};

}  // namespace

void check_tool_request(const ChatParams& p) {
  if (!p.tools.is_array()) return;
  bool named_found = false;
  for (size_t i = 0; i < p.tools.size(); ++i) {
    const json& fn = function_of(p.tools[i]);
    named_found = named_found || fn["name"] == p.tool_choice_name;
    if (!is_strict(fn)) continue;
    try {
      grammar::compile_json_schema(parameters_of(fn));
    } catch (const grammar::CompileError& e) {
      throw bad_schema(i, e.what());
    }
  }
  if (p.tool_choice == "function" && !named_found)
    throw ApiError(400, "'tool_choice' names the function '" + p.tool_choice_name + "', which is not in 'tools'",
                   "invalid_request_error", "tool_choice", "invalid_value");
}

std::string tool_call_trigger(chat::ToolCallFormat format) {
  switch (format) {
    case chat::ToolCallFormat::DeepSeekV3:
    case chat::ToolCallFormat::DeepSeekV31:
      return "<｜tool▁calls▁begin｜>";
    case chat::ToolCallFormat::KimiK2:
      return "<|tool_calls_section_begin|>";
    case chat::ToolCallFormat::Mistral:
      return "[TOOL_CALLS]";
    case chat::ToolCallFormat::Llama31:
      return "";
    default:
      return "<tool_call>";
  }
}

std::shared_ptr<const grammar::Grammar> tool_call_grammar(chat::ToolCallFormat format, const ChatParams& p) {
  check_tool_request(p);
  if (p.tool_choice == "auto") {
    bool any_strict = false;
    for (const auto& t : p.tools) any_strict = any_strict || is_strict(function_of(t));
    if (!any_strict) return nullptr;
  } else if (p.tool_choice != "required" && p.tool_choice != "function") {
    return nullptr;
  }
  grammar::ExprPool pool;
  CallSyntax syntax(pool, format);
  std::vector<grammar::ExprId> calls;
  for (size_t i = 0; i < p.tools.size(); ++i)
    if (p.tool_choice != "function" || function_of(p.tools[i])["name"] == p.tool_choice_name)
      calls.push_back(syntax.call(p.tools[i], i));
  const bool many = p.tool_choice != "function" && p.parallel_tool_calls;
  grammar::RuleId root = pool.add_rule("tool_calls");
  const grammar::ExprId one = pool.alt(std::move(calls));
  if (p.tool_choice == "auto" && format == chat::ToolCallFormat::Llama31)
    pool.set_rule(root,
                  syntax.llama_auto(one, p.template_kwargs.is_object() && p.template_kwargs.contains("builtin_tools")));
  else
    pool.set_rule(root, syntax.answer(one, many));
  return grammar::compile(pool, root);
}

}  // namespace owl::server
