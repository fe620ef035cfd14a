#include "server/chat_output.h"

#include <algorithm>

#include "text/tokenizer.h"

namespace owl::server {

std::vector<int32_t> chat_marker_tokens(const Tokenizer& tok, const chat::ReasoningTags& tags,
                                        chat::ToolCallFormat format) {
  std::vector<std::string_view> markers = chat::tool_call_markers(format);
  markers.push_back(tags.open);
  markers.push_back(tags.close);
  std::vector<int32_t> ids;
  for (std::string_view m : markers) {
    if (m.empty()) continue;
    std::vector<int32_t> t = tok.encode(m, /*add_special=*/false);
    if (t.size() == 1 && tok.is_special(t[0]) && std::find(ids.begin(), ids.end(), t[0]) == ids.end())
      ids.push_back(t[0]);
  }
  return ids;
}

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
