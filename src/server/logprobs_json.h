// OpenAI's logprobs objects for the token log-probabilities the engine reports
// (runtime/logprobs.h: the model's own distribution, before any sampling setting), and the
// sorting of a chat answer's tokens into content (reported) and reasoning (left out).
//   chat:        {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}],
//                 "refusal": null}
//   completions: {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: logprob}],
//                 "text_offset": [...]}
// "token" is the token's bytes as text, invalid UTF-8 replaced by U+FFFD (a token that holds
// part of a character); "bytes" are its exact bytes. A log-probability below -9999 (or -inf)
// is reported as -9999, as OpenAI does.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "runtime/logprobs.h"

namespace owl {
class Tokenizer;
}

namespace owl::server {

nlohmann::ordered_json chat_logprobs_json(const Tokenizer& tok, std::span<const TokenLogprob> lps);

// `text_offset` (in characters, code points) of the first token; advanced past the tokens.
nlohmann::ordered_json completion_logprobs_json(const Tokenizer& tok, std::span<const TokenLogprob> lps,
                                                int64_t& text_offset);

// A chat choice's log-probabilities, sorted as its reasoning tokens are counted (per engine
// event): OpenAI reports content only, so the tokens of a reasoning block (its tags included)
// are left out; tokens the reasoning parser has not placed yet wait for its decision.
class ChatLogprobs {
 public:
  enum class Side { Reasoning, Undecided, Content };
  void add(const std::vector<TokenLogprob>& lps, Side side);
  // The content tokens' log-probabilities not taken yet; at the end of the answer, those
  // still undecided count as content.
  std::vector<TokenLogprob> take(bool last = false);

 private:
  std::vector<TokenLogprob> ready_, undecided_;
};

}  // namespace owl::server
