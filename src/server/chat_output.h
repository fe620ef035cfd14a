// Turning a chat model's generated text into the OpenAI message: the part
// inside <think>...</think> becomes reasoning_content (streamed as it comes,
// with partial tags held back until decided), and tool calls become
// tool_calls. Also the thinking-budget hook that closes the reasoning block
// when a request's budget of reasoning tokens is spent.
//
// Tool-call formats recognised in the content (the families' native forms):
//   <tool_call>{"name": ..., "arguments": {...}}</tool_call>   (Qwen2.5/3, Hermes)
//   <tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value>...</tool_call>  (GLM-4.5)
//   <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{...}\n```<｜tool▁call▁end｜>  (DeepSeek-V3/R1)
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/engine.h"

namespace owl {
class Tokenizer;
}

namespace owl::server {

struct ChatDelta {
  std::string reasoning;
  std::string content;
};

// Streaming split of generated text into reasoning and content.
class ReasoningSplitter {
 public:
  // starts_inside: the prompt already opened the reasoning block (DeepSeek-R1 templates end
  // with "<think>\n"). enabled = false: everything is content.
  explicit ReasoningSplitter(bool enabled, bool starts_inside = false, std::string open = "<think>",
                             std::string close = "</think>");
  ChatDelta push(std::string_view text);
  ChatDelta flush();  // at the end: whatever was held back
  bool in_reasoning() const { return inside_; }

 private:
  bool enabled_;
  bool inside_;
  bool seen_content_ = false;  // an opening tag counts only before any content
  bool strip_space_ = false;   // just after the closing tag
  std::string open_, close_;
  std::string pending_;
};

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // a JSON object as text
};

struct ParsedContent {
  std::string content;  // the text around the calls
  std::vector<ToolCall> calls;
};

// Finds the tool calls in a complete assistant content (see the formats above).
// Text that looks like a call but does not parse stays in the content.
ParsedContent parse_tool_calls(std::string_view content);

// True when the rendered prompt ends inside an open reasoning block.
bool prompt_opens_reasoning(std::string_view prompt, std::string_view open = "<think>",
                            std::string_view close = "</think>");

// Closes the reasoning block after `budget` reasoning tokens by forcing the tokens of
// "\n</think>\n\n" (budget 0 closes it at once when the prompt opened it).
class ThinkingBudgetHook : public TokenHook {
 public:
  ThinkingBudgetHook(const Tokenizer& tok, int64_t budget, bool starts_inside);
  std::vector<int32_t> on_token(int32_t id, std::string_view text) override;
  std::vector<int32_t> at_start() override;

 private:
  std::vector<int32_t> close_ids_;
  int64_t budget_;
  int64_t used_ = 0;
  bool inside_;
  bool done_ = false;
  std::string recent_;  // tail of the output, to spot the tags across token boundaries
};

}  // namespace owl::server
