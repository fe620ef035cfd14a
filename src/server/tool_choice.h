// What a chat request's tool_choice and strict tools ask of the answer, enforced as a grammar
// over the served model's own tool-call syntax (chat/tool_calls.h):
//   "required"            one or more calls (exactly one with parallel_tool_calls: false), no text before them;
//   {"function": {name}}  exactly one call of that function;
//   "auto" with a strict tool  free text until the format's call marker (tool_call_trigger),
//                         then calls as under "required" (the constraint waits for the marker);
//                         Llama 3.1, whose call is the whole answer and has no marker: an answer
//                         that opens with '{' (or <|python_tag|>{) is one call, any other is free;
//   "auto", "none"        otherwise no grammar ("none" also keeps the tools out of the prompt and the parser).
// In an enforced call the function name is one of the allowed ones and the arguments follow
// that function's `parameters` JSON Schema, strict or not (a non-strict schema owl cannot
// compile allows any object there; a strict one is a 400). The key/value formats (Qwen3-Coder
// XML, GLM-4.5) write string parameters raw: their pattern or format is matched by the raw
// text, which cannot hold '<' there. Reasoning before the answer stays
// free: the server starts the grammar after it, as for response_format.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "chat/tool_calls.h"
#include "grammar/grammar.h"
#include "server/api.h"

namespace owl::server {

// Refuses (400 naming tools[i].function.parameters) a tool with strict: true whose parameters
// schema owl cannot compile, and (400 naming tool_choice) a named function missing from `tools`.
void check_tool_request(const ChatParams& p);

// The text that opens the format's calls ("<tool_call>", DeepSeek's and Kimi's section marker,
// "[TOOL_CALLS]"); "" for Llama 3.1, whose calls have no marker (its grammar under "auto"
// applies from the answer's first byte and leaves non-call answers free).
std::string tool_call_trigger(chat::ToolCallFormat format);

// The grammar the answer's calls must follow, or null when the request enforces nothing.
// Throws ApiError as check_tool_request does.
std::shared_ptr<const grammar::Grammar> tool_call_grammar(chat::ToolCallFormat format, const ChatParams& p);

}  // namespace owl::server
