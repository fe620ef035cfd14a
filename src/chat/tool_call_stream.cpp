#include "chat/tool_call_stream.h"

#include <optional>
#include <tuple>

namespace owl::chat {

namespace {

using json = nlohmann::ordered_json;
constexpr size_t npos = std::string_view::npos;

bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

// The markers around each call (and the section around all of them, for the formats that have one).
struct Markers {
  std::string_view section_begin, section_end, call_begin, call_end;
};

Markers markers_of(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::DeepSeekV3:
    case ToolCallFormat::DeepSeekV31:
      return {"<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>"};
    case ToolCallFormat::KimiK2:
      return {"<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>", "<|tool_call_end|>"};
    default:
      return {"", "", "<tool_call>", "</tool_call>"};
  }
}

// The JSON object at the start of `text` (whole or cut short), minified; "" until it starts.
std::string object_so_far(std::string_view text) {
  std::string_view t = trim(text);
  if (t.empty() || t.front() != '{') return "";
  size_t end = json_value_end(t, 0);
  return minify_json(t.substr(0, end));
}

// A complete call region read by the format's own parser.
std::optional<PartialCall> parse_whole(ToolCallFormat f, const Markers& m, std::string_view body, const json& tools) {
  std::string text = std::string(m.section_begin) + std::string(m.call_begin) + std::string(body) +
                     std::string(m.call_end) + std::string(m.section_end);
  ParsedOutput p = parse_tool_calls(f, text, tools);
  if (p.tool_calls.size() != 1) return std::nullopt;
  ToolCall& c = p.tool_calls[0];
  return PartialCall{f == ToolCallFormat::KimiK2 ? c.id : "", c.name, c.arguments};
}

// Key/value formats: the finished parameters, read by the parser as a whole call, give the
// arguments so far (without the closing brace). `cut` is where the last finished value ends.
std::optional<PartialCall> key_values_so_far(ToolCallFormat f, const Markers& m, std::string_view body, size_t cut,
                                             std::string_view close_call, const json& tools) {
  std::string whole = std::string(body.substr(0, cut)) + std::string(close_call);
  auto c = parse_whole(f, m, whole, tools);
  if (!c) return std::nullopt;
  c->arguments.pop_back();  // the object's '}': more members may follow
  return c;
}

// The last, unfinished call region of each format.
std::optional<PartialCall> partial_call(ToolCallFormat f, const Markers& m, std::string_view body, const json& tools) {
  switch (f) {
    case ToolCallFormat::Hermes: {
      auto [nb, ne] = json_member_span(body, "name");
      if (ne == npos) return std::nullopt;
      json name = json::parse(body.substr(nb, ne - nb), nullptr, false);
      if (!name.is_string()) return std::nullopt;
      auto [ab, ae] = json_member_span(body, "arguments");
      if (ab == npos) std::tie(ab, ae) = json_member_span(body, "parameters");
      std::string args = ab == npos ? "" : object_so_far(body.substr(ab, ae == npos ? npos : ae - ab));
      return PartialCall{"", name.get<std::string>(), args};
    }
    case ToolCallFormat::DeepSeekV3:
    case ToolCallFormat::DeepSeekV31: {
      constexpr std::string_view kSep = "<｜tool▁sep｜>";
      size_t sep = body.find(kSep);
      if (sep == npos) return std::nullopt;
      std::string_view before = trim(body.substr(0, sep)), after = body.substr(sep + kSep.size());
      std::string name;
      if (before == "function" || before.empty()) {  // name\n```json\n{...}
        size_t nl = after.find('\n');
        if (nl == npos) return std::nullopt;
        name = std::string(trim(after.substr(0, nl)));
        // The arguments start on the line after the opening fence (```json).
        size_t fence = after.find("```", nl);
        size_t line = fence == npos ? npos : after.find('\n', fence);
        after = line == npos ? std::string_view() : after.substr(line + 1);
      } else {
        name = std::string(before);
      }
      return PartialCall{"", name, object_so_far(after)};
    }
    case ToolCallFormat::KimiK2: {
      constexpr std::string_view kArg = "<|tool_call_argument_begin|>";
      size_t arg = body.find(kArg);
      if (arg == npos) return std::nullopt;
      std::string id(trim(body.substr(0, arg)));
      std::string_view name = id;
      if (name.substr(0, 10) == "functions.") name.remove_prefix(10);
      if (size_t colon = name.rfind(':'); colon != npos) name = name.substr(0, colon);
      std::string_view after = body.substr(arg + kArg.size());
      return PartialCall{id, std::string(name), object_so_far(after)};
    }
    case ToolCallFormat::Qwen3CoderXml: {
      std::string_view b = trim(body);
      if (b.substr(0, 10) != "<function=" || b.find('>') == npos) return std::nullopt;
      size_t last = body.rfind("</parameter>");
      size_t cut = last == npos ? body.find('>') + 1 : last + 12;
      return key_values_so_far(f, m, body, cut, "\n</function>", tools);
    }
    case ToolCallFormat::Glm45: {
      size_t name_end = body.find_first_of("\n<");
      if (name_end == npos) return std::nullopt;
      size_t last = body.rfind("</arg_value>");
      return key_values_so_far(f, m, body, last == npos ? name_end : last + 12, "", tools);
    }
    default:
      return std::nullopt;
  }
}

}  // namespace

std::vector<PartialCall> partial_tool_calls(ToolCallFormat format, std::string_view text, const json& tools) {
  std::vector<PartialCall> calls;
  if (format == ToolCallFormat::None || format == ToolCallFormat::Llama31 || format == ToolCallFormat::Mistral)
    return calls;  // whole calls only, at the end
  const Markers m = markers_of(format);
  if (!m.section_begin.empty()) {
    size_t s = text.find(m.section_begin);
    if (s == npos) return calls;
    text = text.substr(s + m.section_begin.size());
    if (size_t e = text.find(m.section_end); e != npos) text = text.substr(0, e);
  }
  size_t pos = 0;
  for (;;) {
    size_t b = text.find(m.call_begin, pos);
    if (b == npos) break;
    size_t inner = b + m.call_begin.size();
    size_t e = text.find(m.call_end, inner);
    std::string_view body = text.substr(inner, e == npos ? npos : e - inner);
    if (e == npos) {
      if (auto c = partial_call(format, m, body, tools)) calls.push_back(std::move(*c));
      break;
    }
    if (auto c = parse_whole(format, m, body, tools)) calls.push_back(std::move(*c));
    pos = e + m.call_end.size();
  }
  return calls;
}

void ToolCallStreamer::emit(size_t index, const std::string& id, const std::string& name, const std::string& arguments,
                            std::vector<ToolCallDelta>& out) {
  if (index == sent_.size()) {
    sent_.push_back({id.empty() ? make_tool_call_id(id_seed_ + index) : id, ""});
    out.push_back({index, true, sent_.back().id, name, ""});
  }
  Sent& s = sent_[index];
  // Only what extends the arguments already sent (a prefix that turned out different cannot be taken back).
  if (arguments.size() > s.arguments.size() && arguments.compare(0, s.arguments.size(), s.arguments) == 0) {
    out.push_back({index, false, "", "", arguments.substr(s.arguments.size())});
    s.arguments = arguments;
  }
}

std::vector<ToolCallDelta> ToolCallStreamer::update(std::string_view content) {
  std::vector<ToolCallDelta> out;
  std::vector<PartialCall> calls = partial_tool_calls(format_, content, tools_);
  for (size_t i = 0; i < calls.size() && i <= sent_.size(); ++i)
    emit(i, calls[i].id, calls[i].name, calls[i].arguments, out);
  return out;
}

std::vector<ToolCallDelta> ToolCallStreamer::finish(const ParsedOutput& parsed) {
  std::vector<ToolCallDelta> out;
  for (size_t i = 0; i < parsed.tool_calls.size() && i <= sent_.size(); ++i) {
    const ToolCall& c = parsed.tool_calls[i];
    emit(i, c.id, c.name, c.arguments, out);
  }
  return out;
}

}  // namespace owl::chat
