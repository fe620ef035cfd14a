// Limiting how long a reasoning model thinks, and switching thinking off.
//
// ThinkingBudget watches the generated tokens' text. Once the model has spent
// `budget` tokens inside its reasoning block without closing it, it returns the
// closing text ("\n</think>\n\n" by default) for the caller to tokenize and
// append to the sequence as if the model had produced it; the model then
// writes its answer. A budget of 0 closes the block as soon as it opens.
//
// render_without_thinking() renders a prompt with thinking off: through the
// template's own switch where it has one (enable_thinking=false for Qwen3 and
// GLM-4.5+), else, when the prompt leaves the model inside an open block
// (DeepSeek-R1), by pre-filling an empty block.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "chat/chat_template.h"
#include "chat/reasoning.h"

namespace owl::chat {

class ThinkingBudget {
 public:
  // `start` comes from reasoning_start(prompt); close_text defaults to "\n" + tags.close + "\n\n".
  ThinkingBudget(int64_t budget, ReasoningStart start, ReasoningTags tags = {}, std::string close_text = "");

  // Before the first token: non-empty when the prompt opened the block and the budget is 0.
  std::string at_start();
  // After each generated token (its decoded text): the text to inject now, or "".
  std::string on_token(std::string_view piece);

  bool in_reasoning() const { return state_ == State::Reasoning; }
  int64_t reasoning_tokens() const { return used_; }
  bool forced_close() const { return forced_; }

 private:
  enum class State { Waiting, Reasoning, Done };
  std::string force_close();  // ends the block: the close text to inject
  int64_t budget_;
  ReasoningTags tags_;
  std::string close_text_;
  State state_;
  std::string window_;  // recent text, enough to see a tag split across pieces
  int64_t used_ = 0;
  bool forced_ = false;
};

// The result of rendering with thinking off.
struct NoThinkingPrompt {
  std::string prompt;
  bool disabled = false;  // false: the template has no way to skip reasoning (prompt rendered normally)
};

NoThinkingPrompt render_without_thinking(const ChatTemplate& tmpl, ChatInputs inputs, const ReasoningTags& tags = {});

}  // namespace owl::chat
