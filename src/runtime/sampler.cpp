#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace owl {

int32_t argmax(std::span<const float> x) {
  int32_t best = 0;
  for (size_t i = 1; i < x.size(); ++i)
    if (x[i] > x[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  return best;
}

Sampler::Sampler(SamplerParams params, int64_t n_vocab) : params_(std::move(params)), n_vocab_(n_vocab) {
  if (n_vocab_ <= 0) throw Error("sampler: the vocabulary is empty");
  if (params_.repeat_penalty <= 0) throw Error("sampler: repeat penalty must be positive (1 = off)");
  for (const auto& [id, bias] : params_.logit_bias)
    if (id < 0 || id >= n_vocab_)
      throw Error("logit bias for token " + std::to_string(id) + ", which is outside the vocabulary");
  reset();
}

void Sampler::reset() {
  history_.clear();
  rng_.seed(params_.seed);
}

void Sampler::accept(int32_t id) { history_.push_back(id); }

void Sampler::filter(std::span<const float> logits, std::vector<Candidate>& c) const {
  if (static_cast<int64_t>(logits.size()) != n_vocab_)
    throw Error("sampler: got " + std::to_string(logits.size()) + " logits for a vocabulary of " +
                std::to_string(n_vocab_));
  const SamplerParams& p = params_;
  c.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) c[i] = {static_cast<int32_t>(i), logits[i], 0.0f};
  for (const auto& [id, bias] : p.logit_bias) c[static_cast<size_t>(id)].logit += bias;

  const bool penalise = p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (penalise && !history_.empty()) {
    const size_t n = history_.size();
    const size_t window = p.penalty_last_n < 0 ? n : std::min(n, static_cast<size_t>(p.penalty_last_n));
    counts_.assign(logits.size(), 0);
    for (size_t i = n - window; i < n; ++i)
      if (history_[i] >= 0 && history_[i] < n_vocab_) ++counts_[static_cast<size_t>(history_[i])];
    for (size_t i = n - window; i < n; ++i) {
      const size_t id = static_cast<size_t>(history_[i]);
      if (id >= logits.size() || counts_[id] == 0) continue;  // each token penalised once
      float& l = c[id].logit;
      l = l > 0 ? l / p.repeat_penalty : l * p.repeat_penalty;
      l -= static_cast<float>(counts_[id]) * p.frequency_penalty + p.presence_penalty;
      counts_[id] = 0;
    }
  }

  auto before = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  if (p.temperature <= 0) {  // greedy
    auto best = std::min_element(c.begin(), c.end(), before);
    Candidate only = *best;
    only.p = 1.0f;
    c.assign(1, only);
    return;
  }
  size_t keep = c.size();
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < keep) {
    keep = static_cast<size_t>(p.top_k);
    std::partial_sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(keep), c.end(), before);
  } else {
    std::sort(c.begin(), c.end(), before);
  }
  c.resize(keep);
  while (c.size() > 1 && std::isinf(c.back().logit) && c.back().logit < 0) c.pop_back();  // banned tokens

  // Probabilities at temperature 1 decide top-p and min-p (as llama.cpp does); the temperature
  // then reshapes what is left.
  auto softmax = [&](float temp) {
    const float mx = c.front().logit;
    double sum = 0;
    for (auto& x : c) sum += x.p = std::exp((x.logit - mx) / temp);
    for (auto& x : c) x.p = static_cast<float>(x.p / sum);
  };
  softmax(1.0f);
  if (p.top_p < 1.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < c.size()) {
      cum += c[n++].p;
      if (cum >= p.top_p) break;
    }
    c.resize(std::max<size_t>(n, 1));
  }
  if (p.min_p > 0.0f) {
    const float threshold = c.front().p * p.min_p;
    size_t n = 1;
    while (n < c.size() && c[n].p >= threshold) ++n;
    c.resize(n);
  }
  softmax(p.temperature);
}

std::vector<Sampler::Candidate> Sampler::candidates(std::span<const float> logits) const {
  std::vector<Candidate> c;
  filter(logits, c);
  return c;
}

int32_t Sampler::sample(std::span<const float> logits) {
  filter(logits, work_);
  if (work_.size() == 1) return work_[0].id;
  // 53 random bits -> uniform in [0, 1); the same seed gives the same draws on every platform.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  double cum = 0;
  for (const auto& x : work_) {
    cum += x.p;
    if (u < cum) return x.id;
  }
  return work_.back().id;  // rounding left u above the last partial sum
}

// ---- stop strings ----

StopStrings::StopStrings(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
}

std::string StopStrings::push(std::string_view text) {
  if (stopped_) return {};
  pending_.append(text);
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, pending_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail of pending_ that is the start of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t len = std::min(s.size() - 1, pending_.size()); len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopStrings::flush() {
  std::string out = stopped_ ? std::string() : pending_;
  pending_.clear();
  return out;
}

}  // namespace owl
