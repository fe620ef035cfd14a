// `owl serve`'s Anthropic Messages API as the official `@anthropic-ai/sdk` npm package sees it
// (issue #21): whole and streamed answers (the raw event sequence and the SDK's own stream
// accumulator), system and multi-turn, count_tokens, stop_sequences, the key sent as x-api-key,
// errors in Anthropic's shape, and with scripted generations thinking blocks and a tool_use /
// tool_result loop.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/npm_client.h"
#include "server/scripted_http.h"
#include "server/server_fixture.h"
#include "test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

json run_anthropic(int port, const std::string& scenario) {
  install_npm_package("@anthropic-ai/sdk", "1.15.0");
  return run_node_script("anthropic_client.mjs", {std::to_string(port), scenario});
}

class AnthropicClient : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess(shared_path("models/stories260K/stories260K-f32.gguf"),
                                {"--kv-type", "f32", "--api-key", "sk-owl-test"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static json run(const std::string& scenario) { return run_anthropic(server_->port(), scenario); }
  // The OpenAI API's greedy answer to "Once upon a time" in 20 tokens, to compare with.
  static std::string openai_greedy_answer() {
    HttpResult r =
        http_post(server_->port(), "/v1/chat/completions",
                  R"({"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":20,"temperature":0})",
                  {"Authorization: Bearer sk-owl-test"});
    return r.json()["choices"][0]["message"]["content"];
  }
  static ServerProcess* server_;
};
ServerProcess* AnthropicClient::server_ = nullptr;

TEST_F(AnthropicClient, MessageWithUsageAndCountTokens) {
  json r = run("message");
  EXPECT_EQ(r["type"], "message");
  EXPECT_EQ(r["role"], "assistant");
  EXPECT_TRUE(r["id"].get<std::string>().starts_with("msg_"));
  EXPECT_EQ(r["model"], "stories260K-f32");
  EXPECT_EQ(r["blocks"], json::array({"text"}));
  EXPECT_EQ(r["text"], openai_greedy_answer());
  EXPECT_EQ(r["stop_reason"], "max_tokens");
  EXPECT_EQ(r["usage"]["output_tokens"], 20);
  EXPECT_GT(r["usage"]["input_tokens"].get<int>(), 0);
  EXPECT_EQ(r["counted"], r["usage"]["input_tokens"]);
}

TEST_F(AnthropicClient, SystemAndMultiTurn) {
  json r = run("multi_turn");
  EXPECT_FALSE(r["text"].get<std::string>().empty());
  EXPECT_EQ(r["stop_reason"], "max_tokens");
  EXPECT_EQ(r["counted"], r["input_tokens"]);  // a system string and a system block count the same
}

TEST_F(AnthropicClient, StreamEventSequence) {
  json r = run("stream");
  const json& raw = r["raw"];
  ASSERT_GE(raw["events"].size(), 6u) << r.dump();
  EXPECT_EQ(raw["events"][0], "message_start");
  EXPECT_EQ(raw["events"][1], "content_block_start");
  const size_t n = raw["events"].size();
  EXPECT_EQ(raw["events"][n - 3], "content_block_stop");
  EXPECT_EQ(raw["events"][n - 2], "message_delta");
  EXPECT_EQ(raw["events"][n - 1], "message_stop");
  for (size_t i = 2; i < n - 3; ++i) EXPECT_EQ(raw["events"][i], "content_block_delta") << i;
  EXPECT_EQ(raw["blocks"], json::array({"text"}));
  EXPECT_EQ(raw["text"], r["whole"]);
  EXPECT_EQ(raw["stop_reason"], "max_tokens");
  EXPECT_EQ(raw["usage"]["output_tokens"], 20);
  EXPECT_GT(raw["input_tokens"].get<int>(), 0);
  EXPECT_EQ(r["helper"], r["whole"]);  // the SDK's accumulator rebuilds the same message
  EXPECT_EQ(r["helper_stop"], "max_tokens");
  EXPECT_EQ(r["helper_output_tokens"], 20);
}

TEST_F(AnthropicClient, StopSequences) {
  json r = run("stop_sequences");
  const std::string full = r["full"], stop = r["stop"], text = r["text"];
  ASSERT_NE(full.find(stop), std::string::npos);
  EXPECT_EQ(text, full.substr(0, full.find(stop)));
  EXPECT_EQ(r["stop_reason"], "stop_sequence");
  EXPECT_EQ(r["stop_sequence"], stop);
}

TEST_F(AnthropicClient, ErrorsInAnthropicsShape) {
  json r = run("errors");
  EXPECT_EQ(r["wrong_key"]["status"], 401);
  EXPECT_EQ(r["wrong_key"]["type"], "authentication_error");
  EXPECT_EQ(r["missing_model"]["status"], 404);
  EXPECT_EQ(r["missing_model"]["type"], "not_found_error");
  EXPECT_NE(r["missing_model"]["message"].get<std::string>().find("claude-opus-4"), std::string::npos);
  EXPECT_EQ(r["no_max_tokens"]["status"], 400);
  EXPECT_EQ(r["no_max_tokens"]["type"], "invalid_request_error");
  EXPECT_EQ(r["no_max_tokens"]["message"], "'max_tokens' is required");
  EXPECT_EQ(r["hot"]["status"], 400);
  EXPECT_NE(r["hot"]["message"].get<std::string>().find("temperature"), std::string::npos);
  EXPECT_EQ(r["image"]["status"], 400);
  EXPECT_NE(r["image"]["message"].get<std::string>().find("image"), std::string::npos);
  EXPECT_EQ(r["bad_role"]["status"], 400);
  EXPECT_NE(r["bad_role"]["message"].get<std::string>().find("role"), std::string::npos);
}

TEST(AnthropicHttp, BadBodyAndRoutes) {
  ScriptedHttpServer s;
  HttpResult r = http_post(s.port(), "/v1/messages", "{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json(), json::parse(R"({"type":"error","error":{"type":"invalid_request_error",
                                      "message":"the request body must be a JSON object"}})"));
  r = http_post(
      s.port(), "/v1/messages",
      R"({"model":"stories","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"thinking":{"type":"on"}})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.json()["error"]["message"].get<std::string>().find("thinking"), std::string::npos);
  r = http_get(s.port(), "/v1/messages");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.json()["type"], "error");
}

TEST(AnthropicClientScripted, ThinkingBlocks) {
  ScriptedHttpServer s;
  json r = run_anthropic(s.port(), "thinking");
  EXPECT_EQ(r["blocks"], json::array({"thinking", "text"}));
  EXPECT_EQ(r["thinking"], "A story is wanted.");
  EXPECT_EQ(r["text"], "Once there was a fox.");
  EXPECT_EQ(r["stop_reason"], "end_turn");
  EXPECT_EQ(r["raw"]["blocks"], json::array({"thinking", "text"}));
  EXPECT_EQ(r["raw"]["thinking"], "A story is wanted.");
  EXPECT_EQ(r["raw"]["text"], "Once there was a fox.");
}

TEST(AnthropicClientScripted, ToolUseAndResult) {
  ScriptedHttpServer s;
  json r = run_anthropic(s.port(), "tools");
  EXPECT_EQ(r["stop_reason"], "tool_use");
  EXPECT_EQ(r["name"], "get_weather");
  EXPECT_EQ(r["input"], json({{"city", "Paris"}}));
  EXPECT_FALSE(r["id"].get<std::string>().empty());
  EXPECT_EQ(r["streamed_stop"], "tool_use");
  EXPECT_EQ(r["streamed_name"], "get_weather");
  EXPECT_EQ(r["streamed_input"], json({{"city", "Paris"}}));
  EXPECT_EQ(r["answer"], " It is 21 degrees in Paris.");
  EXPECT_EQ(r["answer_stop"], "end_turn");
}

}  // namespace
}  // namespace owl::test
