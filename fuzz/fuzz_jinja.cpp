// libFuzzer target: parse and render arbitrary template text against a fixed
// chat context. Any input may fail with a TemplateError; nothing may crash,
// hang, overflow the stack or grow without bound (Limits are tightened so a
// run stays fast).
#include <cstddef>
#include <cstdint>
#include <string>

#include "chat/jinja.h"

namespace {

const nlohmann::ordered_json& context() {
  static const nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Weather in Lisbon? <think>x</think> {{ not code }}"},
      {"role": "assistant", "content": null, "reasoning_content": "Need the tool.",
       "tool_calls": [{"id": "call00001", "type": "function",
                       "function": {"name": "get_weather", "arguments": {"city": "Lisbon", "days": 3}}}]},
      {"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": "22C sunny"},
      {"role": "assistant", "content": "It is 22°C and sunny. 🌞"}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                              "required": ["city"]}}}],
    "documents": null,
    "add_generation_prompt": true,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "enable_thinking": false
  })");
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  owl::jinja::Options options;
  options.limits.max_output_bytes = 1 << 20;
  options.limits.max_loop_iterations = 20000;
  options.limits.max_call_depth = 32;
  options.fixed_time = 0;
  try {
    owl::jinja::Template t(std::string_view(reinterpret_cast<const char*>(data), size), options);
    std::string out = t.render(context());
    (void)out;
  } catch (const owl::jinja::TemplateError& e) {
    // Expected for most inputs; an internal error is a renderer bug the fuzzer should report.
    if (e.message().rfind("internal error", 0) == 0) __builtin_trap();
  }
  return 0;
}
