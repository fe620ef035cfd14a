// logprobs and n > 1 choices as the official `openai` npm client sees them (issue #20), against
// the real stories260K model: each scenario is one run of tests/server/openai_logprobs.mjs
// (the pinned client, installed on first use), whose observations are checked here.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "server/npm_client.h"
#include "server/logprobs_expect.h"
#include "server/server_fixture.h"
#include "test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

class OpenAILogprobs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess(shared_path("models/stories260K/stories260K-f32.gguf"),
                                {"--kv-type", "f32", "--parallel", "4"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static json run(const std::string& scenario) {
    install_npm_package("openai", "5.23.2");
    return run_node_script("openai_logprobs.mjs", {std::to_string(server_->port()), scenario});
  }
  static ServerProcess* server_;
};
ServerProcess* OpenAILogprobs::server_ = nullptr;

TEST_F(OpenAILogprobs, ChatLogprobsWholeAndStreamed) {
  json r = run("chat_logprobs");
  const json& content = r["logprobs"]["content"];
  ASSERT_TRUE(content.is_array()) << r.dump();
  EXPECT_EQ(content.size(), r["completion_tokens"].get<size_t>());
  for (const auto& e : content) {
    ASSERT_EQ(e["top_logprobs"].size(), 3u) << e.dump();
    EXPECT_EQ(e["top_logprobs"][0]["token"], e["token"]);  // greedy
    EXPECT_LE(e["top_logprobs"][1]["logprob"].get<double>(), e["top_logprobs"][0]["logprob"].get<double>());
    EXPECT_LE(e["logprob"].get<double>(), 0.0);
    EXPECT_EQ(e["bytes"].size(), e["token"].get<std::string>().size());  // ASCII pieces
  }
  expect_same_logprobs(r["streamed"], content);
  EXPECT_EQ(r["other_indexes"], 0);
}

TEST_F(OpenAILogprobs, CompletionLogprobs) {
  json r = run("completion_logprobs");
  const json& lp = r["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 5u) << r.dump();
  std::string joined;
  for (size_t k = 0; k < 5; ++k) {
    EXPECT_EQ(lp["text_offset"][k], joined.size());
    joined += lp["tokens"][k].get<std::string>();
    EXPECT_EQ(lp["top_logprobs"][k].size(), 2u);
    EXPECT_DOUBLE_EQ(lp["top_logprobs"][k][lp["tokens"][k].get<std::string>()].get<double>(),
                     lp["token_logprobs"][k].get<double>());
  }
  EXPECT_EQ(joined, r["text"]);
  EXPECT_EQ(r["text"], ", there was a little");  // the reference engine's greedy continuation
}

TEST_F(OpenAILogprobs, ChoicesShareThePromptAndFollowTheirSeeds) {
  json r = run("choices");
  ASSERT_EQ(r["three"].size(), 3u) << r.dump();
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r["three"][i]["index"], i);
    EXPECT_EQ(r["three"][i]["content"], r["one"]);
  }
  EXPECT_EQ(r["usage"]["completion_tokens"], 30);
  EXPECT_EQ(r["usage"]["total_tokens"], r["usage"]["prompt_tokens"].get<int>() + 30);
  EXPECT_EQ(r["streamed"], r["seeded"]);  // choice i samples as seed 11 + i does
  EXPECT_EQ(r["stream_usage"]["completion_tokens"], 20);
}

TEST_F(OpenAILogprobs, BadInputIsA400NamingTheField) {
  json r = run("bad_input");
  const std::pair<const char*, const char*> cases[] = {{"top_without_logprobs", "top_logprobs"},
                                                       {"top_too_many", "top_logprobs"},
                                                       {"n_zero", "n"},
                                                       {"n_too_many", "n"},
                                                       {"completion_logprobs_too_many", "logprobs"}};
  for (const auto& [name, param] : cases) {
    EXPECT_EQ(r[name]["status"], 400) << name << ": " << r[name].dump();
    EXPECT_EQ(r[name]["param"], param) << name;
  }
}

}  // namespace
}  // namespace owl::test
