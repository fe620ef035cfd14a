#include "chat/tool_calls.h"

#include <cctype>
#include <optional>
#include <tuple>

namespace owl::chat {
namespace {

using json = nlohmann::ordered_json;

constexpr std::string_view kDsCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kDsCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kDsCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kDsCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kDsSep = "<｜tool▁sep｜>";
constexpr std::string_view kKimiSectionBegin = "<|tool_calls_section_begin|>";
constexpr std::string_view kKimiSectionEnd = "<|tool_calls_section_end|>";
constexpr std::string_view kKimiCallBegin = "<|tool_call_begin|>";
constexpr std::string_view kKimiArgBegin = "<|tool_call_argument_begin|>";
constexpr std::string_view kKimiCallEnd = "<|tool_call_end|>";
constexpr std::string_view kToolCall = "<tool_call>";
constexpr std::string_view kToolCallEnd = "</tool_call>";
constexpr std::string_view kXmlFunction = "<function=";
constexpr std::string_view kXmlFunctionEnd = "</function>";
constexpr std::string_view kXmlParameter = "<parameter=";
constexpr std::string_view kXmlParameterEnd = "</parameter>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kMistralCalls = "[TOOL_CALLS]";

bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

std::optional<json> parse_json(std::string_view s) {
  json j = json::parse(s.begin(), s.end(), nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

// Arguments as a compact JSON object string, or nullopt when they are not an object. `raw`
// (the model's text of them) is kept, minified, when it is that object.
std::optional<std::string> object_arguments(const json& args, std::string_view raw = {}) {
  if (args.is_object() && !raw.empty()) return minify_json(raw);
  if (args.is_string()) {  // some models double-encode
    auto inner = parse_json(args.get<std::string>());
    if (inner && inner->is_object()) return inner->dump();
    return std::nullopt;
  }
  if (!args.is_object()) return std::nullopt;
  return args.dump();
}

// One call from {"name": ..., "arguments"/"parameters": {...}[, "id": ...]}.
std::optional<ToolCall> call_from_object(const json& j) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return std::nullopt;
  const char* key = j.contains("arguments") ? "arguments" : j.contains("parameters") ? "parameters" : nullptr;
  std::optional<std::string> args = key ? object_arguments(j[key]) : std::optional<std::string>("{}");
  if (!args) return std::nullopt;
  ToolCall c;
  c.name = j["name"].get<std::string>();
  c.arguments = *args;
  if (j.contains("id") && j["id"].is_string()) c.id = j["id"].get<std::string>();
  return c;
}

// Collects each region [begin, end) between `open` and `close` markers; text outside goes to content.
// `parse(body, closed)` turns a region (closed: its end marker was seen) into a call; a region
// it rejects stays in the content verbatim.
template <typename F>
void scan_regions(std::string_view text, std::string_view open, std::string_view close, ParsedOutput& out, F parse) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t b = text.find(open, pos);
    if (b == std::string_view::npos) break;
    size_t inner = b + open.size();
    size_t e = text.find(close, inner);
    size_t region_end = e == std::string_view::npos ? text.size() : e + close.size();
    std::string_view body = text.substr(inner, (e == std::string_view::npos ? text.size() : e) - inner);
    std::optional<ToolCall> call = parse(body, e != std::string_view::npos);
    out.content.append(text.substr(pos, b - pos));
    if (call)
      out.tool_calls.push_back(std::move(*call));
    else
      out.content.append(text.substr(b, region_end - b));
    pos = region_end;
  }
  if (pos < text.size()) out.content.append(text.substr(pos));
}

std::optional<ToolCall> parse_hermes(std::string_view body) {
  body = trim(body);
  auto j = parse_json(body);
  std::optional<ToolCall> c = j ? call_from_object(*j) : std::nullopt;
  if (!c) return c;
  // The arguments as the model wrote them (minified), as they were streamed.
  auto [b, e] = json_member_span(body, "arguments");
  if (e == std::string_view::npos) std::tie(b, e) = json_member_span(body, "parameters");
  if (e != std::string_view::npos) {
    if (auto a =
            object_arguments(j->contains("arguments") ? (*j)["arguments"] : (*j)["parameters"], body.substr(b, e - b)))
      c->arguments = *a;
  }
  return c;
}

// Parameter types declared for `name` in the request's tools (OpenAI schema), for GLM values.
std::string declared_type(const json& tools, const std::string& fn, const std::string& param) {
  if (!tools.is_array()) return "";
  for (const auto& t : tools) {
    const json& f = t.contains("function") ? t["function"] : t;
    if (!f.is_object() || f.value("name", "") != fn) continue;
    if (!f.contains("parameters") || !f["parameters"].is_object()) return "";
    const json& props = f["parameters"].value("properties", json::object());
    if (props.is_object() && props.contains(param) && props[param].is_object() && props[param].contains("type") &&
        props[param]["type"].is_string())
      return props[param]["type"].get<std::string>();
  }
  return "";
}

// A key/value format's value: the templates write strings raw and everything else as JSON.
json typed_value(const json& tools, const std::string& fn, const std::string& key, std::string_view raw) {
  std::optional<json> parsed = declared_type(tools, fn, key) == "string" ? std::nullopt : parse_json(raw);
  return parsed ? *parsed : json(std::string(raw));
}

std::optional<ToolCall> parse_glm(std::string_view body, const json& tools, bool closed) {
  size_t first_key = body.find("<arg_key>");
  ToolCall c;
  c.name = std::string(trim(body.substr(0, first_key)));
  if (c.name.empty() || c.name.find_first_of("\n<{") != std::string::npos) return std::nullopt;
  // In an answer cut short the name is whole only once something follows it.
  if (!closed && first_key == std::string_view::npos && body.find('\n') == std::string_view::npos) return std::nullopt;
  json args = json::object();
  size_t pos = first_key;
  while (pos != std::string_view::npos) {
    size_t ke = body.find("</arg_key>", pos);
    size_t vb = ke == std::string_view::npos ? ke : body.find("<arg_value>", ke);
    size_t ve = vb == std::string_view::npos ? vb : body.find("</arg_value>", vb);
    if (ve == std::string_view::npos) return std::nullopt;
    std::string key(trim(body.substr(pos + 9, ke - pos - 9)));
    args[key] = typed_value(tools, c.name, key, body.substr(vb + 11, ve - vb - 11));
    pos = body.find("<arg_key>", ve);
  }
  c.arguments = args.dump();
  return c;
}

// <function=N>\n<parameter=k>\nv\n</parameter>\n…</function>: each value sits between one
// newline after its tag and one before its end tag (both dropped; any other spacing is the value's).
std::optional<ToolCall> parse_qwen3_coder(std::string_view body, const json& tools) {
  body = trim(body);
  if (body.substr(0, kXmlFunction.size()) != kXmlFunction) return std::nullopt;
  size_t name_end = body.find('>');
  if (name_end == std::string_view::npos) return std::nullopt;
  ToolCall c;
  c.name = std::string(trim(body.substr(kXmlFunction.size(), name_end - kXmlFunction.size())));
  if (c.name.empty() || c.name.find_first_of("\n<") != std::string::npos) return std::nullopt;
  size_t fn_end = body.rfind(kXmlFunctionEnd);
  if (fn_end == std::string_view::npos || fn_end < name_end ||
      !trim(body.substr(fn_end + kXmlFunctionEnd.size())).empty())
    return std::nullopt;
  std::string_view params = body.substr(name_end + 1, fn_end - name_end - 1);
  json args = json::object();
  size_t pos = 0;
  while (!trim(params.substr(pos)).empty()) {
    size_t p = params.find(kXmlParameter, pos);
    if (p == std::string_view::npos || !trim(params.substr(pos, p - pos)).empty()) return std::nullopt;
    size_t key_end = params.find('>', p);
    size_t value_end = key_end == std::string_view::npos ? key_end : params.find(kXmlParameterEnd, key_end);
    if (value_end == std::string_view::npos) return std::nullopt;
    std::string key(trim(params.substr(p + kXmlParameter.size(), key_end - p - kXmlParameter.size())));
    if (key.empty() || key.find_first_of("\n<") != std::string::npos) return std::nullopt;
    std::string_view value = params.substr(key_end + 1, value_end - key_end - 1);
    if (!value.empty() && value.front() == '\n') value.remove_prefix(1);
    if (!value.empty() && value.back() == '\n') value.remove_suffix(1);
    args[key] = typed_value(tools, c.name, key, value);
    pos = value_end + kXmlParameterEnd.size();
  }
  c.arguments = args.dump();
  return c;
}

// The call with its arguments from `text`, a JSON object; nullopt without a name or such arguments.
std::optional<ToolCall> with_arguments(ToolCall c, std::string_view text) {
  auto j = parse_json(text);
  std::optional<std::string> a = j ? object_arguments(*j, trim(text)) : std::nullopt;
  if (c.name.empty() || !a) return std::nullopt;
  c.arguments = *a;
  return c;
}

std::optional<ToolCall> parse_deepseek(std::string_view body) {
  size_t sep = body.find(kDsSep);
  if (sep == std::string_view::npos) return std::nullopt;
  std::string_view before = trim(body.substr(0, sep)), after = body.substr(sep + kDsSep.size());
  ToolCall c;
  std::string_view args;
  if (before == "function" || before.empty()) {  // V3/R1: type<sep>name\n```json\n{...}\n```
    size_t nl = after.find('\n');
    if (nl == std::string_view::npos) return std::nullopt;
    c.name = std::string(trim(after.substr(0, nl)));
    std::string_view rest = after.substr(nl + 1);
    size_t fence = rest.find("```");
    if (fence != std::string_view::npos) {
      rest = rest.substr(fence + 3);
      if (rest.substr(0, 4) == "json") rest.remove_prefix(4);
      size_t close = rest.rfind("```");
      if (close != std::string_view::npos) rest = rest.substr(0, close);
    }
    args = trim(rest);
  } else {  // V3.1: name<sep>{...}
    c.name = std::string(before);
    args = trim(after);
  }
  return with_arguments(std::move(c), args);
}

std::optional<ToolCall> parse_kimi(std::string_view body) {
  size_t arg = body.find(kKimiArgBegin);
  if (arg == std::string_view::npos) return std::nullopt;
  ToolCall c;
  c.id = std::string(trim(body.substr(0, arg)));
  std::string_view name = c.id;
  if (name.substr(0, 10) == "functions.") name.remove_prefix(10);
  size_t colon = name.rfind(':');
  if (colon != std::string_view::npos) name = name.substr(0, colon);
  c.name = std::string(name);
  return with_arguments(std::move(c), trim(body.substr(arg + kKimiArgBegin.size())));
}

// name.call(k="v", n=1) -> {"k": "v", "n": 1}
std::optional<ToolCall> parse_llama_builtin(std::string_view s) {
  size_t dot = s.find(".call(");
  if (dot == std::string_view::npos || s.back() != ')') return std::nullopt;
  ToolCall c;
  c.name = std::string(s.substr(0, dot));
  std::string_view inner = s.substr(dot + 6, s.size() - dot - 7);
  json args = json::object();
  size_t pos = 0;
  while (pos < inner.size()) {
    size_t eq = inner.find('=', pos);
    if (eq == std::string_view::npos) return std::nullopt;
    std::string key(trim(inner.substr(pos, eq - pos)));
    size_t v = eq + 1;
    while (v < inner.size() && is_ws(inner[v])) ++v;
    if (v < inner.size() && (inner[v] == '"' || inner[v] == '\'')) {
      char q = inner[v];
      size_t end = inner.find(q, v + 1);
      if (end == std::string_view::npos) return std::nullopt;
      args[key] = std::string(inner.substr(v + 1, end - v - 1));
      pos = inner.find(',', end);
    } else {
      size_t end = inner.find(',', v);
      auto j = parse_json(trim(inner.substr(v, end == std::string_view::npos ? std::string_view::npos : end - v)));
      if (!j) return std::nullopt;
      args[key] = *j;
      pos = end;
    }
    if (pos == std::string_view::npos) break;
    ++pos;
  }
  c.arguments = args.dump();
  return c;
}

ParsedOutput parse_llama(std::string_view text) {
  ParsedOutput out;
  std::string_view t = trim(text);
  bool tagged = t.substr(0, kPythonTag.size()) == kPythonTag;
  if (tagged) t = trim(t.substr(kPythonTag.size()));
  std::optional<ToolCall> call;
  if (!t.empty() && t.front() == '{') {
    if (auto j = parse_json(t)) call = call_from_object(*j);
  } else if (tagged && !t.empty()) {
    call = parse_llama_builtin(t);
  }
  if (call)
    out.tool_calls.push_back(std::move(*call));
  else
    out.content = std::string(text);
  return out;
}

ParsedOutput parse_mistral(std::string_view text) {
  ParsedOutput out;
  size_t m = text.find(kMistralCalls);
  if (m == std::string_view::npos) {
    out.content = std::string(text);
    return out;
  }
  auto j = parse_json(trim(text.substr(m + kMistralCalls.size())));
  if (!j || !j->is_array()) {
    out.content = std::string(text);
    return out;
  }
  for (const auto& e : *j) {
    auto c = call_from_object(e);
    if (!c) {
      out.tool_calls.clear();
      out.content = std::string(text);
      return out;
    }
    out.tool_calls.push_back(std::move(*c));
  }
  out.content = std::string(text.substr(0, m));
  return out;
}

// Formats whose calls sit inside a section (DeepSeek-V3, Kimi K2): the section markers are
// dropped; a section holding anything but valid calls leaves the whole output as content.
ParsedOutput parse_section(std::string_view output, std::string_view section_begin, std::string_view section_end,
                           std::string_view call_begin, std::string_view call_end,
                           std::optional<ToolCall> (*parse_call)(std::string_view)) {
  ParsedOutput out;
  size_t sb = output.find(section_begin);
  if (sb == std::string_view::npos) {
    out.content = std::string(output);
    return out;
  }
  size_t se = output.find(section_end, sb);
  std::string_view section =
      output.substr(sb + section_begin.size(),
                    se == std::string_view::npos ? std::string_view::npos : se - sb - section_begin.size());
  ParsedOutput inner;
  scan_regions(section, call_begin, call_end, inner, [&](std::string_view b, bool) { return parse_call(b); });
  if (!trim(inner.content).empty() || inner.tool_calls.empty()) {
    out.content = std::string(output);
    return out;
  }
  out.content = std::string(output.substr(0, sb));
  if (se != std::string_view::npos) out.content += std::string(output.substr(se + section_end.size()));
  out.tool_calls = std::move(inner.tool_calls);
  return out;
}

}  // namespace

ToolCallFormat tool_call_format_for_template(std::string_view src) {
  // V3 and R1 fence the arguments as ```json; V3.1 writes them bare after the name.
  if (src.find(kDsCallsBegin) != std::string_view::npos)
    return src.find("```json") != std::string_view::npos ? ToolCallFormat::DeepSeekV3 : ToolCallFormat::DeepSeekV31;
  if (src.find(kKimiSectionBegin) != std::string_view::npos) return ToolCallFormat::KimiK2;
  if (src.find("<arg_key>") != std::string_view::npos) return ToolCallFormat::Glm45;
  if (src.find(kXmlFunction) != std::string_view::npos && src.find(kXmlParameter) != std::string_view::npos)
    return ToolCallFormat::Qwen3CoderXml;
  if (src.find(kToolCall) != std::string_view::npos) return ToolCallFormat::Hermes;
  if (src.find(kMistralCalls) != std::string_view::npos) return ToolCallFormat::Mistral;
  if (src.find(kPythonTag) != std::string_view::npos || src.find("\"parameters\": ") != std::string_view::npos)
    return ToolCallFormat::Llama31;
  return ToolCallFormat::None;
}

std::vector<std::string_view> tool_call_markers(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::None:
      return {};
    case ToolCallFormat::Hermes:
      return {kToolCall, kToolCallEnd};
    case ToolCallFormat::Qwen3CoderXml:
      return {kToolCall, kToolCallEnd, kXmlFunction, kXmlFunctionEnd, kXmlParameter, kXmlParameterEnd};
    case ToolCallFormat::DeepSeekV3:
    case ToolCallFormat::DeepSeekV31:
      return {kDsCallsBegin, kDsCallsEnd, kDsCallBegin, kDsCallEnd, kDsSep};
    case ToolCallFormat::KimiK2:
      return {kKimiSectionBegin, kKimiSectionEnd, kKimiCallBegin, kKimiArgBegin, kKimiCallEnd};
    case ToolCallFormat::Glm45:
      return {kToolCall, kToolCallEnd, "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"};
    case ToolCallFormat::Llama31:
      return {kPythonTag};
    case ToolCallFormat::Mistral:
      return {kMistralCalls};
  }
  return {};
}

const char* tool_call_format_name(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::None:
      return "none";
    case ToolCallFormat::Hermes:
      return "hermes";
    case ToolCallFormat::Qwen3CoderXml:
      return "qwen3-coder-xml";
    case ToolCallFormat::DeepSeekV3:
      return "deepseek-v3";
    case ToolCallFormat::DeepSeekV31:
      return "deepseek-v3.1";
    case ToolCallFormat::KimiK2:
      return "kimi-k2";
    case ToolCallFormat::Glm45:
      return "glm-4.5";
    case ToolCallFormat::Llama31:
      return "llama-3.1";
    case ToolCallFormat::Mistral:
      return "mistral";
  }
  return "?";
}

std::string minify_json(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (is_ws(c)) {
      continue;
    } else if (c == '"') {
      in_string = true;
    }
    out += c;
  }
  return out;
}

size_t json_value_end(std::string_view text, size_t pos) {
  constexpr size_t npos = std::string_view::npos;
  while (pos < text.size() && is_ws(text[pos])) ++pos;
  if (pos >= text.size()) return npos;
  const char first = text[pos];
  if (first == '{' || first == '[' || first == '"') {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (size_t i = pos; i < text.size(); ++i) {
      const char c = text[i];
      if (in_string) {
        if (escaped)
          escaped = false;
        else if (c == '\\')
          escaped = true;
        else if (c == '"') {
          in_string = false;
          if (depth == 0) return i + 1;  // a string value ends here
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
    }
    return npos;
  }
  size_t i = pos;
  while (i < text.size() &&
         (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '.' || text[i] == '-' || text[i] == '+'))
    ++i;
  return i == pos || i == text.size() ? npos : i;  // a scalar at the end of the text may go on
}

std::pair<size_t, size_t> json_member_span(std::string_view object, std::string_view key) {
  constexpr size_t npos = std::string_view::npos;
  size_t pos = 0;
  while (pos < object.size() && is_ws(object[pos])) ++pos;
  if (pos >= object.size() || object[pos] != '{') return {npos, npos};
  ++pos;
  for (;;) {
    while (pos < object.size() && (is_ws(object[pos]) || object[pos] == ',')) ++pos;
    if (pos >= object.size() || object[pos] != '"') return {npos, npos};
    size_t key_end = json_value_end(object, pos);
    if (key_end == npos) return {npos, npos};
    auto k = parse_json(object.substr(pos, key_end - pos));
    pos = key_end;
    while (pos < object.size() && is_ws(object[pos])) ++pos;
    if (pos >= object.size() || object[pos] != ':') return {npos, npos};
    ++pos;
    while (pos < object.size() && is_ws(object[pos])) ++pos;
    if (pos >= object.size()) return {npos, npos};
    size_t value_end = json_value_end(object, pos);
    if (k && k->is_string() && k->get<std::string>() == key) return {pos, value_end};
    if (value_end == npos) return {npos, npos};
    pos = value_end;
  }
}

std::string make_tool_call_id(uint64_t n) {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  uint64_t x = n * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;  // spread consecutive n over the id space
  std::string id;
  for (int i = 0; i < 9; ++i) {
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    id += alphabet[x % 62];
  }
  return id;
}

ParsedOutput parse_tool_calls(ToolCallFormat format, std::string_view output, const nlohmann::ordered_json& tools,
                              uint64_t id_seed) {
  ParsedOutput out;
  switch (format) {
    case ToolCallFormat::None:
      out.content = std::string(output);
      return out;
    case ToolCallFormat::Hermes:
      scan_regions(output, kToolCall, kToolCallEnd, out, [](std::string_view b, bool) { return parse_hermes(b); });
      break;
    case ToolCallFormat::Glm45:
      scan_regions(output, kToolCall, kToolCallEnd, out,
                   [&](std::string_view b, bool closed) { return parse_glm(b, tools, closed); });
      break;
    case ToolCallFormat::Qwen3CoderXml:
      scan_regions(output, kToolCall, kToolCallEnd, out,
                   [&](std::string_view b, bool) { return parse_qwen3_coder(b, tools); });
      break;
    case ToolCallFormat::DeepSeekV3:
    case ToolCallFormat::DeepSeekV31:
      out = parse_section(output, kDsCallsBegin, kDsCallsEnd, kDsCallBegin, kDsCallEnd, parse_deepseek);
      break;
    case ToolCallFormat::KimiK2:
      out = parse_section(output, kKimiSectionBegin, kKimiSectionEnd, kKimiCallBegin, kKimiCallEnd, parse_kimi);
      break;
    case ToolCallFormat::Llama31:
      out = parse_llama(output);
      break;
    case ToolCallFormat::Mistral:
      out = parse_mistral(output);
      break;
  }
  if (!out.tool_calls.empty()) out.content = std::string(trim(out.content));
  for (size_t i = 0; i < out.tool_calls.size(); ++i)
    if (out.tool_calls[i].id.empty()) out.tool_calls[i].id = make_tool_call_id(id_seed + i);
  return out;
}

size_t tool_call_hold_from(ToolCallFormat format, std::string_view text) {
  std::string_view marker;
  switch (format) {
    case ToolCallFormat::None:
      return text.size();
    case ToolCallFormat::Hermes:
    case ToolCallFormat::Qwen3CoderXml:
    case ToolCallFormat::Glm45:
      marker = kToolCall;
      break;
    case ToolCallFormat::DeepSeekV3:
    case ToolCallFormat::DeepSeekV31:
      marker = kDsCallsBegin;
      break;
    case ToolCallFormat::KimiK2:
      marker = kKimiSectionBegin;
      break;
    case ToolCallFormat::Mistral:
      marker = kMistralCalls;
      break;
    case ToolCallFormat::Llama31: {
      // The whole answer is the call: hold while it starts like one ('{' or the python tag).
      size_t ws = 0;
      while (ws < text.size() && is_ws(text[ws])) ++ws;
      std::string_view rest = text.substr(ws);
      if (rest.empty()) return 0;
      if (rest.front() == '{') return 0;
      size_t n = std::min(rest.size(), kPythonTag.size());
      if (rest.substr(0, n) == kPythonTag.substr(0, n)) return 0;
      return text.size();
    }
  }
  size_t at = text.find(marker);
  if (at != std::string_view::npos) return at;
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n)
    if (text.substr(text.size() - n) == marker.substr(0, n)) return text.size() - n;
  return text.size();
}

}  // namespace owl::chat
