// Comparing two OpenAI chat `logprobs.content` arrays, shared by the logprobs tests.
#pragma once
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace owl::test {

// The same tokens with the same log-probabilities to 1e-4: a repeated request reuses the cached
// prompt, whose last row is then evaluated alone, which may move the last float bits.
inline void expect_same_logprobs(const nlohmann::json& a, const nlohmann::json& b) {
  ASSERT_EQ(a.size(), b.size()) << a.dump() << "\n" << b.dump();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["token"], b[i]["token"]) << i;
    EXPECT_EQ(a[i]["bytes"], b[i]["bytes"]) << i;
    EXPECT_NEAR(a[i]["logprob"].get<double>(), b[i]["logprob"].get<double>(), 1e-4) << i;
    ASSERT_EQ(a[i]["top_logprobs"].size(), b[i]["top_logprobs"].size()) << i;
    for (size_t k = 0; k < a[i]["top_logprobs"].size(); ++k) {
      EXPECT_EQ(a[i]["top_logprobs"][k]["token"], b[i]["top_logprobs"][k]["token"]) << i << "/" << k;
      EXPECT_NEAR(a[i]["top_logprobs"][k]["logprob"].get<double>(), b[i]["top_logprobs"][k]["logprob"].get<double>(),
                  1e-4);
    }
  }
}

}  // namespace owl::test
