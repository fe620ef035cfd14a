// The chat layer's thinking budget (chat/thinking_budget.h) as an engine TokenHook:
// the closing text it asks for is tokenized and forced into the sequence as if the
// model had written it.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include "chat/reasoning.h"
#include "chat/thinking_budget.h"
#include "chat/tool_calls.h"
#include "runtime/engine.h"

namespace owl {
class Tokenizer;
}

namespace owl::server {

// The markers the chat output parsers read (reasoning tags, the tool-call format's tags) that
// this tokenizer spells as one special token: the engine must show them although special
// tokens are not text (GenerationRequest::keep_special).
std::vector<int32_t> chat_marker_tokens(const Tokenizer& tok, const chat::ReasoningTags& tags,
                                        chat::ToolCallFormat format);

class ThinkingBudgetHook : public TokenHook {
 public:
  ThinkingBudgetHook(const Tokenizer& tok, int64_t budget, chat::ReasoningStart start, chat::ReasoningTags tags);
  std::vector<int32_t> on_token(int32_t id, std::string_view text) override;
  std::vector<int32_t> at_start() override;

 private:
  std::vector<int32_t> tokens(const std::string& text) const;
  const Tokenizer& tok_;
  chat::ThinkingBudget budget_;
};

}  // namespace owl::server
