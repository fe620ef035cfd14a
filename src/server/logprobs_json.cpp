#include "server/logprobs_json.h"

#include <cmath>
#include <string>

#include "text/tokenizer.h"
#include "text/utf8.h"

namespace owl::server {

using json = nlohmann::ordered_json;

namespace {

double reported(float logprob) { return std::isfinite(logprob) && logprob > -9999.0f ? logprob : -9999.0; }

json bytes_json(const std::string& b) {
  json out = json::array();
  for (unsigned char c : b) out.push_back(static_cast<int>(c));
  return out;
}

int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace

json chat_logprobs_json(const Tokenizer& tok, std::span<const TokenLogprob> lps) {
  auto entry = [&](int32_t id, float logprob) {
    const std::string b = tok.token_bytes(id);
    return json{{"token", text::utf8_sanitize(b)}, {"logprob", reported(logprob)}, {"bytes", bytes_json(b)}};
  };
  json content = json::array();
  for (const auto& lp : lps) {
    json e = entry(lp.id, lp.logprob);
    json top = json::array();
    for (const auto& t : lp.top) top.push_back(entry(t.id, t.logprob));
    e["top_logprobs"] = std::move(top);
    content.push_back(std::move(e));
  }
  return json{{"content", std::move(content)}, {"refusal", nullptr}};
}

json completion_logprobs_json(const Tokenizer& tok, std::span<const TokenLogprob> lps, int64_t& text_offset) {
  json tokens = json::array(), logprobs = json::array(), tops = json::array(), offsets = json::array();
  for (const auto& lp : lps) {
    const std::string text = text::utf8_sanitize(tok.token_bytes(lp.id));
    tokens.push_back(text);
    logprobs.push_back(reported(lp.logprob));
    json top = json::object();
    // Alternatives whose text is the same (partial characters) keep the likelier one.
    for (const auto& t : lp.top) top.emplace(text::utf8_sanitize(tok.token_bytes(t.id)), reported(t.logprob));
    tops.push_back(std::move(top));
    offsets.push_back(text_offset);
    text_offset += code_points(text);
  }
  return json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(logprobs)},
              {"top_logprobs", std::move(tops)},
              {"text_offset", std::move(offsets)}};
}

void ChatLogprobs::add(const std::vector<TokenLogprob>& lps, Side side) {
  switch (side) {
    case Side::Reasoning:
      undecided_.clear();  // they were the start of the reasoning block
      break;
    case Side::Undecided:
      undecided_.insert(undecided_.end(), lps.begin(), lps.end());
      break;
    case Side::Content:
      ready_.insert(ready_.end(), undecided_.begin(), undecided_.end());
      undecided_.clear();
      ready_.insert(ready_.end(), lps.begin(), lps.end());
      break;
  }
}

std::vector<TokenLogprob> ChatLogprobs::take(bool last) {
  if (last) {
    ready_.insert(ready_.end(), undecided_.begin(), undecided_.end());
    undecided_.clear();
  }
  std::vector<TokenLogprob> out;
  out.swap(ready_);
  return out;
}

}  // namespace owl::server
