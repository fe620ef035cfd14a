// Log-probabilities of generated tokens, as OpenAI's `logprobs` / `top_logprobs` report them.
// owl reports the model's own distribution: the log-softmax of the logits row the token was
// chosen from, at temperature 1, before logit_bias, repetition penalties, the grammar mask,
// the temperature and top-k / top-p / min-p. So the numbers do not depend on how the request
// samples (a token forced by logit_bias or a grammar shows how likely the model found it).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace owl {

struct TopLogprob {
  int32_t id;
  float logprob;
};

struct TokenLogprob {
  int32_t id;                   // the generated token
  float logprob;                // its log-probability
  std::vector<TopLogprob> top;  // the most likely tokens, most likely first (ties: lower id first)
};

// The most alternatives a request may ask for (OpenAI's top_logprobs limit).
inline constexpr int kMaxTopLogprobs = 20;

// Token `id`'s log-probability in the softmax of `logits`, and the `n_top` most likely tokens.
TokenLogprob token_logprob(std::span<const float> logits, int32_t id, int n_top);

}  // namespace owl
