#include "server/chat_output.h"

#include "text/tokenizer.h"

namespace owl::server {

ThinkingBudgetHook::ThinkingBudgetHook(const Tokenizer& tok, int64_t budget, chat::ReasoningStart start,
                                       chat::ReasoningTags tags)
    : tok_(tok), budget_(budget, start, std::move(tags)) {}

std::vector<int32_t> ThinkingBudgetHook::tokens(const std::string& text) const {
  if (text.empty()) return {};
  return tok_.encode(text, /*add_special=*/false);
}

std::vector<int32_t> ThinkingBudgetHook::at_start() { return tokens(budget_.at_start()); }

std::vector<int32_t> ThinkingBudgetHook::on_token(int32_t, std::string_view text) {
  return tokens(budget_.on_token(text));
}

}  // namespace owl::server
