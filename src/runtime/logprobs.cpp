#include "runtime/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "base/error.h"

namespace owl {

TokenLogprob token_logprob(std::span<const float> logits, int32_t id, int n_top) {
  if (logits.empty() || id < 0 || static_cast<size_t>(id) >= logits.size())
    throw Error("logprobs: token " + std::to_string(id) + " is outside a row of " + std::to_string(logits.size()) +
                " logits");
  // log_softmax(x)_i = x_i - (max + log(sum exp(x - max))), summed in double.
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - mx);
  const double log_z = mx + std::log(sum);
  auto logprob = [&](int32_t i) { return static_cast<float>(logits[static_cast<size_t>(i)] - log_z); };

  TokenLogprob out{id, logprob(id), {}};
  const size_t k = std::min(static_cast<size_t>(std::max(n_top, 0)), logits.size());
  if (k == 0) return out;
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(), [&](int32_t a, int32_t b) {
    const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
    return la > lb || (la == lb && a < b);
  });
  out.top.reserve(k);
  for (size_t i = 0; i < k; ++i) out.top.push_back({ids[i], logprob(ids[i])});
  return out;
}

}  // namespace owl
