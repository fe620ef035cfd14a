// The chat layer's thinking budget (chat/thinking_budget.h) as an engine TokenHook:
// the closing text it asks for is tokenized and forced into the sequence as if the
// model had written it.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include "chat/thinking_budget.h"
#include "runtime/engine.h"

namespace owl {
class Tokenizer;
}

namespace owl::server {

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
