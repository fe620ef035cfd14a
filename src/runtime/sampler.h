// Turning a row of logits into the next token: greedy or random sampling with
// the usual filters, in llama.cpp's default order (logit bias, penalties,
// top-k, top-p, min-p, temperature), plus the stop-string matcher that keeps
// a possible stop string from reaching the user before it is decided.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace owl {

// Index of the largest value; the lowest index among equal maxima.
int32_t argmax(std::span<const float> x);

struct SamplerParams {
  float temperature = 0.8f;                           // <= 0: greedy (argmax after bias and penalties)
  int32_t top_k = 40;                                 // <= 0: off
  float top_p = 0.95f;                                // >= 1: off
  float min_p = 0.05f;                                // <= 0: off
  float repeat_penalty = 1.0f;                        // 1: off; positive logits are divided by it, negative multiplied
  float presence_penalty = 0.0f;                      // subtracted once from every token seen
  float frequency_penalty = 0.0f;                     // subtracted per occurrence
  int32_t penalty_last_n = 64;                        // the penalties look at this many recent tokens (< 0: all)
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to a token's logit (-INFINITY bans it)
  uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(SamplerParams params, int64_t n_vocab);

  // The next token for one row of n_vocab logits. Does not record it: call accept().
  int32_t sample(std::span<const float> logits);
  // Adds a token to the history the penalties count (feed the prompt too, if it should count).
  void accept(int32_t id);
  // Clears the history and reseeds the generator (the same seed gives the same tokens again).
  void reset();

  struct Candidate {
    int32_t id;
    float logit;  // after bias and penalties
    float p;      // probability after every filter and the temperature
  };
  // The tokens sample() may choose, most likely first, with their probabilities; sampling
  // draws from exactly this list (greedy: the single argmax).
  std::vector<Candidate> candidates(std::span<const float> logits) const;

  const SamplerParams& params() const { return params_; }
  // The generator sample() draws from (speculative decoding's accept/reject draws share it, so
  // one seed fixes the whole output).
  std::mt19937_64& rng() { return rng_; }

 private:
  void filter(std::span<const float> logits, std::vector<Candidate>& out) const;

  SamplerParams params_;
  int64_t n_vocab_;
  std::vector<int32_t> history_;
  std::mt19937_64 rng_;
  std::vector<Candidate> work_;          // reused between calls
  mutable std::vector<int32_t> counts_;  // per-token counts of the penalty window (scratch)
};

// Watches generated text for stop strings. Text that might be the start of a
// stop string is held back until the next piece decides it.
class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops);
  // Feeds the next piece of text; returns what can be shown now. Once a stop string is
  // found, stopped() turns true and nothing from the stop string on is ever returned.
  std::string push(std::string_view text);
  // At the end of generation: the held-back text (empty after a stop).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace owl
