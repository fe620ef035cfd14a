// Extracting tool calls from a model's answer, in the format its family was
// trained on (the format its chat template renders past calls in):
//
//   Hermes   (Qwen2.5/Qwen3)  <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call>
//   Qwen3CoderXml (Qwen3-Coder)
//   <tool_call>\n<function=N>\n<parameter=k>\nv\n</parameter>\n</function>\n</tool_call>
//   DeepSeekV3 (V3/R1)
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N\n```json\n{...}\n```<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>
//   DeepSeekV31 (V3.1)        <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>N<｜tool▁sep｜>{...}<｜tool▁call▁end｜>…
//                             (the two DeepSeek forms are parsed alike; the template tells which one to enforce)
//   KimiK2
//   <|tool_calls_section_begin|><|tool_call_begin|>functions.N:IDX<|tool_call_argument_begin|>{...}<|tool_call_end|>…<|tool_calls_section_end|>
//   Glm45    (GLM-4.5/4.6)    <tool_call>N\n<arg_key>k</arg_key>\n<arg_value>v</arg_value>\n</tool_call>
//   Llama31                   {"name": N, "parameters": {...}}  (whole answer; optional <|python_tag|>),
//                             or <|python_tag|>N.call(k="v", ...) for built-in tools
//   Mistral  (Nemo)           [TOOL_CALLS][{"name": N, "arguments": {...}, "id": "abcDEF123"}, ...]
//
// Parsing is done on the complete answer (after reasoning was split off). For
// streaming, tool_call_hold_from() tells a server which tail of the text so far
// may be the start of a call and must not be sent as content yet.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace owl::chat {

enum class ToolCallFormat { None, Hermes, Qwen3CoderXml, DeepSeekV3, DeepSeekV31, KimiK2, Glm45, Llama31, Mistral };

// Recognises the format from the markers a chat template renders.
ToolCallFormat tool_call_format_for_template(std::string_view template_source);
const char* tool_call_format_name(ToolCallFormat f);
// The tags the format's parser looks for in the output.
std::vector<std::string_view> tool_call_markers(ToolCallFormat f);

struct ToolCall {
  std::string id;  // the model's own id where the format has one (Kimi, Mistral), else generated
  std::string name;
  std::string arguments;  // a JSON object, serialised compactly ({"city":"Lisbon"})
};

struct ParsedOutput {
  std::string content;  // the answer text with the calls removed (trimmed when calls were found)
  std::vector<ToolCall> tool_calls;
};

// A call whose arguments are not valid JSON is left in the content, not dropped.
// `tools` (the request's tool list, may be null) types the values of the key/value formats
// (GLM, Qwen3-Coder XML): a parameter the schema declares a string stays raw text, any other
// value is read as JSON when it parses (numbers, booleans, objects) and kept as text otherwise; `id_seed` numbers the
// generated ids (make_tool_call_id(id_seed + i)).
ParsedOutput parse_tool_calls(ToolCallFormat format, std::string_view output,
                              const nlohmann::ordered_json& tools = nullptr, uint64_t id_seed = 0);

// Index in `text` (the answer streamed so far) from which text may belong to a tool call
// (a call's start marker, or a proper prefix of one at the end); text.size() when nothing
// needs holding back.
size_t tool_call_hold_from(ToolCallFormat format, std::string_view text);

// JSON text (or a prefix of it) with the whitespace outside strings removed: the form tool-call
// arguments are given in, so that arguments streamed as they come add up to the final string.
std::string minify_json(std::string_view text);
// The end of the JSON value starting at text[pos] (leading whitespace skipped), or npos when
// the text ends inside it (or is not JSON there).
size_t json_value_end(std::string_view text, size_t pos);
// The raw value of member `key` of the JSON object text `object` (may be cut short): begin
// and end offsets; end npos when the value is still incomplete; {npos, npos} when not (yet) seen.
std::pair<size_t, size_t> json_member_span(std::string_view object, std::string_view key);

// A 9-character alphanumeric id (the length Mistral's template requires), deterministic in n.
std::string make_tool_call_id(uint64_t n);

}  // namespace owl::chat
