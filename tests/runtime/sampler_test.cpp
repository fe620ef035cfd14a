// Sampler: every filter on hand-made logits whose answer is known exactly,
// seed reproducibility, and stop strings split across pieces.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "base/error.h"
#include "runtime/sampler.h"

namespace owl {
namespace {

// Logits whose softmax (temperature 1) is exactly `probs`.
std::vector<float> logits_for(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(p > 0 ? static_cast<float>(std::log(p)) : -INFINITY);
  return l;
}

SamplerParams plain(float temperature = 1.0f) {
  SamplerParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  return p;
}

std::vector<int32_t> ids_of(const std::vector<Sampler::Candidate>& c) {
  std::vector<int32_t> ids;
  for (const auto& x : c) ids.push_back(x.id);
  return ids;
}

const std::vector<double> kProbs = {0.05, 0.40, 0.02, 0.25, 0.15, 0.10, 0.03};  // ids by probability: 1 3 4 5 0 6 2

TEST(Sampler, ArgmaxTakesLowestIdOnTies) {
  std::vector<float> x = {1, 3, 2, 3};
  EXPECT_EQ(argmax(x), 1);
}

TEST(Sampler, GreedyIgnoresSeedAndFilters) {
  auto p = plain(0.0f);
  p.seed = 99;
  Sampler s(p, 7);
  auto l = logits_for(kProbs);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(l), 1);
  EXPECT_EQ(ids_of(s.candidates(l)), std::vector<int32_t>{1});
}

TEST(Sampler, NoFiltersKeepsEveryTokenWithItsProbability) {
  Sampler s(plain(), 7);
  auto c = s.candidates(logits_for(kProbs));
  EXPECT_EQ(ids_of(c), (std::vector<int32_t>{1, 3, 4, 5, 0, 6, 2}));
  for (const auto& x : c) EXPECT_NEAR(x.p, kProbs[x.id], 1e-6);
}

TEST(Sampler, TopKKeepsTheKMostLikely) {
  auto p = plain();
  p.top_k = 3;
  Sampler s(p, 7);
  auto c = s.candidates(logits_for(kProbs));
  EXPECT_EQ(ids_of(c), (std::vector<int32_t>{1, 3, 4}));
  EXPECT_NEAR(c[0].p, 0.40 / 0.80, 1e-6);  // renormalised over the survivors
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  auto p = plain();
  p.top_p = 0.70f;  // 0.40 + 0.25 = 0.65 < 0.70, + 0.15 = 0.80 >= 0.70
  Sampler s(p, 7);
  EXPECT_EQ(ids_of(s.candidates(logits_for(kProbs))), (std::vector<int32_t>{1, 3, 4}));
  p.top_p = 0.65f;  // exactly reached by two tokens
  Sampler s2(p, 7);
  EXPECT_EQ(ids_of(s2.candidates(logits_for(kProbs))), (std::vector<int32_t>{1, 3}));
  p.top_p = 0.0f;  // always at least one token
  Sampler s3(p, 7);
  EXPECT_EQ(ids_of(s3.candidates(logits_for(kProbs))), (std::vector<int32_t>{1}));
}

TEST(Sampler, MinPDropsTokensBelowAShareOfTheBest) {
  auto p = plain();
  p.min_p = 0.3f;  // threshold 0.12: keeps 0.40, 0.25, 0.15
  Sampler s(p, 7);
  EXPECT_EQ(ids_of(s.candidates(logits_for(kProbs))), (std::vector<int32_t>{1, 3, 4}));
}

TEST(Sampler, TemperatureReshapesAfterTheFilters) {
  auto p = plain(0.5f);
  p.top_k = 2;
  Sampler s(p, 7);
  auto c = s.candidates(logits_for(kProbs));
  ASSERT_EQ(c.size(), 2u);
  // p ∝ prob^(1/T): 0.40^2 : 0.25^2
  EXPECT_NEAR(c[0].p, 0.16 / (0.16 + 0.0625), 1e-6);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<double> flat(50, 1.0 / 50);
  auto l = logits_for(flat);
  auto draw = [&](uint64_t seed) {
    auto p = plain();
    p.seed = seed;
    Sampler s(p, 50);
    std::vector<int32_t> out;
    for (int i = 0; i < 40; ++i) out.push_back(s.sample(l));
    s.reset();  // reseeding repeats the run
    for (int i = 0; i < 40; ++i) EXPECT_EQ(s.sample(l), out[size_t(i)]);
    return out;
  };
  EXPECT_EQ(draw(1234), draw(1234));
  EXPECT_NE(draw(1234), draw(4321));
}

TEST(Sampler, SamplingFollowsTheProbabilities) {
  auto p = plain();
  p.seed = 7;
  Sampler s(p, 7);
  auto l = logits_for(kProbs);
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[s.sample(l)];
  for (size_t id = 0; id < kProbs.size(); ++id)
    EXPECT_NEAR(counts[int32_t(id)] / double(n), kProbs[id], 0.015) << "token " << id;
}

TEST(Sampler, RepeatPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  auto p = plain(0.0f);
  p.repeat_penalty = 2.0f;
  Sampler s(p, 3);
  std::vector<float> l = {4.0f, 3.0f, -1.0f};
  EXPECT_EQ(s.sample(l), 0);
  s.accept(0);
  s.accept(0);                // counted once by the repeat penalty
  EXPECT_EQ(s.sample(l), 1);  // 4 / 2 = 2 < 3
  auto c = s.candidates(l);
  EXPECT_EQ(c[0].logit, 3.0f);
  s.accept(2);
  auto all = plain(1.0f);
  all.repeat_penalty = 2.0f;
  Sampler t(all, 3);
  t.accept(2);
  for (const auto& x : t.candidates(l)) {
    if (x.id == 2) {
      EXPECT_EQ(x.logit, -2.0f);
    }
  }
}

TEST(Sampler, PresenceAndFrequencyPenaltiesSubtract) {
  auto p = plain(1.0f);
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  Sampler s(p, 3);
  s.accept(1);
  s.accept(1);
  s.accept(1);
  s.accept(2);
  std::map<int32_t, float> got;
  for (const auto& x : s.candidates(std::vector<float>{1.0f, 1.0f, 1.0f})) got[x.id] = x.logit;
  EXPECT_FLOAT_EQ(got[0], 1.0f);
  EXPECT_FLOAT_EQ(got[1], 1.0f - 0.5f - 3 * 0.25f);
  EXPECT_FLOAT_EQ(got[2], 1.0f - 0.5f - 0.25f);
}

TEST(Sampler, PenaltyWindowForgetsOldTokens) {
  auto p = plain(0.0f);
  p.presence_penalty = 10.0f;
  p.penalty_last_n = 2;
  Sampler s(p, 3);
  std::vector<float> l = {5.0f, 1.0f, 0.0f};
  s.accept(0);
  EXPECT_EQ(s.sample(l), 1);
  s.accept(2);
  s.accept(2);  // token 0 has left the 2-token window
  EXPECT_EQ(s.sample(l), 0);
}

TEST(Sampler, LogitBiasCanForceOrBanTokens) {
  auto p = plain(0.0f);
  p.logit_bias = {{2, 100.0f}};
  Sampler s(p, 3);
  EXPECT_EQ(s.sample(std::vector<float>{5, 4, 0}), 2);
  auto q = plain(1.0f);
  q.logit_bias = {{0, -INFINITY}};
  q.seed = 3;
  Sampler t(q, 3);
  for (int i = 0; i < 200; ++i) EXPECT_NE(t.sample(std::vector<float>{5, 0, 0}), 0);
  EXPECT_EQ(ids_of(t.candidates(std::vector<float>{5, 0, 0})), (std::vector<int32_t>{1, 2}));
}

TEST(Sampler, BadParametersAreErrors) {
  auto p = plain();
  p.logit_bias = {{7, 1.0f}};
  EXPECT_THROW(Sampler(p, 7), Error);
  Sampler s(plain(), 7);
  EXPECT_THROW(s.sample(std::vector<float>(6, 0.0f)), Error);
}

// ---- stop strings ----

TEST(StopStrings, PassesTextThroughWhenNoStopCouldStart) {
  StopStrings s({"</end>"});
  EXPECT_EQ(s.push("hello "), "hello ");
  EXPECT_EQ(s.push("world"), "world");
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.flush(), "");
}

TEST(StopStrings, HoldsBackAPossibleStartAndReleasesItWhenItIsNot) {
  StopStrings s({"</end>"});
  EXPECT_EQ(s.push("a </"), "a ");
  EXPECT_EQ(s.push("en"), "");
  EXPECT_EQ(s.push("try"), "</entry");
  EXPECT_FALSE(s.stopped());
}

TEST(StopStrings, StopSplitAcrossPiecesCutsBeforeIt) {
  StopStrings s({"</end>", "STOP"});
  EXPECT_EQ(s.push("one two </"), "one two ");
  EXPECT_EQ(s.push("e"), "");
  EXPECT_EQ(s.push("nd> three"), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.push("more"), "");
  EXPECT_EQ(s.flush(), "");
}

TEST(StopStrings, EarliestOfSeveralStopsWins) {
  StopStrings s({"cd", "bcde"});
  EXPECT_EQ(s.push("abcdef"), "a");  // "bcde" starts before "cd"
  EXPECT_TRUE(s.stopped());
  StopStrings t({"bc", "abcd"});
  EXPECT_EQ(t.push("xab"), "x");  // "ab" may start "abcd"
  EXPECT_EQ(t.push("cd"), "");
  EXPECT_TRUE(t.stopped());
}

TEST(StopStrings, FlushReturnsHeldTextAtTheEnd) {
  StopStrings s({"\n\nUser:"});
  EXPECT_EQ(s.push("done.\n"), "done.");
  EXPECT_EQ(s.flush(), "\n");
}

TEST(StopStrings, MultiByteCharactersAreNeverSplit) {
  StopStrings s({"é!"});
  EXPECT_EQ(s.push("caf\xc3\xa9"), "caf");
  EXPECT_EQ(s.push("?"), "\xc3\xa9?");
}

}  // namespace
}  // namespace owl
