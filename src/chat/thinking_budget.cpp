#include "chat/thinking_budget.h"

namespace owl::chat {

ThinkingBudget::ThinkingBudget(int64_t budget, ReasoningStart start, ReasoningTags tags, std::string close_text)
    : budget_(budget < 0 ? 0 : budget),
      tags_(std::move(tags)),
      close_text_(close_text.empty() ? "\n" + tags_.close + "\n\n" : std::move(close_text)),
      state_(start == ReasoningStart::InReasoning ? State::Reasoning
             : start == ReasoningStart::Detect    ? State::Waiting
                                                  : State::Done) {}

std::string ThinkingBudget::force_close() {
  state_ = State::Done;
  forced_ = true;
  return close_text_;
}

std::string ThinkingBudget::at_start() { return state_ == State::Reasoning && budget_ == 0 ? force_close() : ""; }

std::string ThinkingBudget::on_token(std::string_view piece) {
  if (state_ == State::Done) return "";
  window_.append(piece);
  if (state_ == State::Waiting) {
    size_t at = window_.find(tags_.open);
    if (at == std::string::npos) {
      // Only a block at the very start counts; once real text appears, there is none.
      size_t ws = window_.find_first_not_of(" \t\r\n");
      if (ws != std::string::npos &&
          std::string_view(tags_.open).substr(0, window_.size() - ws) != std::string_view(window_).substr(ws))
        state_ = State::Done;
      return "";
    }
    state_ = State::Reasoning;
    window_.erase(0, at + tags_.open.size());
    if (window_.find(tags_.close) != std::string::npos) {
      state_ = State::Done;
      return "";
    }
    return budget_ == 0 ? force_close() : "";
  }
  // Reasoning: this token counts unless it closes the block.
  if (window_.find(tags_.close) != std::string::npos) {
    state_ = State::Done;
    return "";
  }
  if (window_.size() > tags_.close.size()) window_.erase(0, window_.size() - tags_.close.size());
  ++used_;
  return used_ >= budget_ ? force_close() : "";
}

NoThinkingPrompt render_without_thinking(const ChatTemplate& tmpl, ChatInputs inputs, const ReasoningTags& tags) {
  NoThinkingPrompt r;
  if (tmpl.reads_enable_thinking()) {
    inputs.extra["enable_thinking"] = false;
    r.prompt = tmpl.render(inputs);
    r.disabled = true;
    return r;
  }
  r.prompt = tmpl.render(inputs);
  if (inputs.add_generation_prompt && reasoning_start(r.prompt, tags) == ReasoningStart::InReasoning) {
    r.prompt += "\n" + tags.close + "\n\n";  // an empty block: "<think>\n" + "\n</think>\n\n"
    r.disabled = true;
  }
  return r;
}

}  // namespace owl::chat
