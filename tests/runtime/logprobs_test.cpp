// Token log-probabilities (runtime/logprobs.h): the log-softmax of the row, the alternatives
// sorted most likely first with ties by id, and finite for extreme rows.
#include "runtime/logprobs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "base/error.h"

namespace owl {
namespace {

TEST(TokenLogprob, IsTheLogSoftmaxOfTheRow) {
  const std::vector<float> row = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
  double z = 0;
  for (float x : row) z += std::exp(static_cast<double>(x));
  const TokenLogprob lp = token_logprob(row, 4, 3);
  EXPECT_EQ(lp.id, 4);
  EXPECT_NEAR(lp.logprob, 0.5 - std::log(z), 1e-6);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].id, 1);  // equal logits: the lower id first
  EXPECT_EQ(lp.top[1].id, 3);
  EXPECT_EQ(lp.top[2].id, 0);
  EXPECT_NEAR(lp.top[2].logprob, 1.0 - std::log(z), 1e-6);
  double mass = 0;
  for (const auto& t : lp.top) mass += std::exp(t.logprob);
  EXPECT_LE(mass, 1.0 + 1e-6);
}

TEST(TokenLogprob, AlternativesAreCappedByTheRowAndZeroMeansNone) {
  const std::vector<float> row = {0.0f, 1.0f};
  EXPECT_TRUE(token_logprob(row, 0, 0).top.empty());
  const TokenLogprob all = token_logprob(row, 0, kMaxTopLogprobs);
  ASSERT_EQ(all.top.size(), 2u);
  EXPECT_NEAR(std::exp(all.top[0].logprob) + std::exp(all.top[1].logprob), 1.0, 1e-6);
}

TEST(TokenLogprob, LargeLogitsStayFinite) {
  const std::vector<float> row = {1e4f, -1e4f, 0.0f};
  const TokenLogprob lp = token_logprob(row, 1, 1);
  EXPECT_TRUE(std::isfinite(lp.logprob));
  EXPECT_NEAR(lp.logprob, -2e4, 1.0);
  EXPECT_NEAR(lp.top[0].logprob, 0.0, 1e-6);
}

TEST(TokenLogprob, AnIdOutsideTheRowIsAnError) {
  const std::vector<float> row = {0.0f, 1.0f};
  EXPECT_THROW(token_logprob(row, 2, 0), Error);
  EXPECT_THROW(token_logprob(row, -1, 0), Error);
}

}  // namespace
}  // namespace owl
