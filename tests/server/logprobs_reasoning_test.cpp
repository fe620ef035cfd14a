// Chat logprobs of a reasoning answer (scripted tokens through Qwen3's template on stories260K):
// OpenAI reports content tokens only, so the reasoning block's tokens, its tags included, are
// left out, whole and streamed; the content tokens spell the content.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "server/scripted_http.h"
#include "server/logprobs_expect.h"
#include "server/server_fixture.h"
#include "test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

class ReasoningLogprobs : public ::testing::Test {
 protected:
  InProcessHttpServer server_{2, 1024, scripted_qwen3_api([](const server::ChatParams&) {
                                return std::string("<think>A story is wanted.</think>Once there was a fox.");
                              })};
  HttpResult ask(const json& extra) {
    json body = {{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
                 {"max_tokens", 100},
                 {"logprobs", true},
                 {"top_logprobs", 1}};
    body.update(extra);
    return http_post(server_.port(), "/v1/chat/completions", body.dump());
  }
};

std::string joined(const json& content) {
  std::string s;
  for (const auto& e : content) s += e["token"].get<std::string>();
  return s;
}

TEST_F(ReasoningLogprobs, ContentTokensOnlyWholeAndStreamed) {
  auto r = ask(json::object());
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = r.json();
  const json& message = j["choices"][0]["message"];
  EXPECT_EQ(message["reasoning_content"], "A story is wanted.");
  EXPECT_EQ(message["content"], "Once there was a fox.");
  const json& content = j["choices"][0]["logprobs"]["content"];
  const std::string text = joined(content);
  EXPECT_EQ(text.find("think"), std::string::npos) << text;
  EXPECT_EQ(text.find("story"), std::string::npos) << text;
  EXPECT_EQ(text, "Once there was a fox.");
  // Every generated token but the end is a reasoning token or a content token.
  EXPECT_EQ(j["usage"]["completion_tokens"].get<size_t>(),
            j["usage"]["completion_tokens_details"]["reasoning_tokens"].get<size_t>() + content.size() + 1);

  auto s = ask({{"stream", true}});
  ASSERT_EQ(s.status, 200) << s.body;
  json streamed = json::array();
  for (const auto& ev : sse_events(s.body)) {
    if (!ev.is_object() || ev["choices"].empty()) continue;
    const json& c = ev["choices"][0];
    if (c["delta"].contains("reasoning_content")) {
      EXPECT_TRUE(c["logprobs"].is_null()) << ev.dump();
    }
    if (c["logprobs"].is_object())
      for (const auto& e : c["logprobs"]["content"]) streamed.push_back(e);
  }
  expect_same_logprobs(streamed, content);
}

}  // namespace
}  // namespace owl::test
