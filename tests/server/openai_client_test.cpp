// `owl serve` as the official `openai` npm client sees it (issue #19): plain and streamed
// answers with usage, reasoning deltas apart from content, tool calls whole and streamed, a
// full tool loop, stop sequences, max_completion_tokens, seeds, /v1/models. The client is
// pinned and installed from the npm registry into the build folder on first use; each
// scenario is one run of tests/server/openai_client.mjs, whose observations are checked here.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/npm_client.h"
#include "server/scripted_http.h"
#include "server/server_fixture.h"
#include "test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

// Runs one scenario of openai_client.mjs (the pinned client, installed on first use) against the
// server on `port`; its JSON result.
json run_client(int port, const std::string& scenario) {
  install_npm_package("openai", "5.23.2");
  return run_node_script("openai_client.mjs", {std::to_string(port), scenario});
}

// ---- against the real model ---------------------------------------------------------------

class OpenAIClient : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess(shared_path("models/stories260K/stories260K-f32.gguf"), {"--kv-type", "f32"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static json run(const std::string& scenario) { return run_client(server_->port(), scenario); }
  static ServerProcess* server_;
};
ServerProcess* OpenAIClient::server_ = nullptr;

TEST_F(OpenAIClient, Completions) {
  json r = run("completions");
  EXPECT_EQ(r["text"], ", there was a little");  // the reference engine's greedy continuation
  EXPECT_EQ(r["finish"], "length");
  EXPECT_EQ(r["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(r["usage"]["completion_tokens"], 5);
}

TEST_F(OpenAIClient, ChatCompletion) {
  json r = run("chat");
  EXPECT_EQ(r["role"], "assistant");
  EXPECT_FALSE(r["content"].get<std::string>().empty());
  EXPECT_EQ(r["finish"], "length");
  EXPECT_EQ(r["usage"]["completion_tokens"], 20);
  EXPECT_EQ(r["usage"]["total_tokens"],
            r["usage"]["prompt_tokens"].get<int>() + r["usage"]["completion_tokens"].get<int>());
}

TEST_F(OpenAIClient, StreamWithIncludeUsage) {
  json r = run("chat_stream_usage");
  EXPECT_EQ(r["streamed"], r["whole"]);
  EXPECT_EQ(r["finish"], "length");
  ASSERT_TRUE(r["usage"].is_object()) << r.dump();
  EXPECT_EQ(r["usage"]["completion_tokens"], 20);
  EXPECT_GT(r["chunks"].get<int>(), 2);
}

TEST_F(OpenAIClient, StopSequences) {
  json r = run("stop");
  const std::string full = r["full"], stop = r["stop"], content = r["content"];
  ASSERT_NE(full.find(stop), std::string::npos);
  EXPECT_EQ(content, full.substr(0, full.find(stop)));
  EXPECT_EQ(r["finish"], "stop");
}

TEST_F(OpenAIClient, MaxCompletionTokens) {
  json r = run("max_completion_tokens");
  EXPECT_EQ(r["usage"]["completion_tokens"], 3);
  EXPECT_EQ(r["finish"], "length");
}

TEST_F(OpenAIClient, SeedReproducesSampling) {
  json r = run("seed");
  EXPECT_EQ(r["first"], r["again"]);
  EXPECT_NE(r["first"], r["other"]);
}

TEST_F(OpenAIClient, ModelsListAndRetrieve) {
  json r = run("models");
  EXPECT_EQ(r["ids"], json::array({"stories260K-f32"}));
  EXPECT_EQ(r["id"], "stories260K-f32");
  EXPECT_EQ(r["object"], "model");
  EXPECT_EQ(r["missing"]["status"], 404);
  EXPECT_EQ(r["missing"]["code"], "model_not_found");
}

// ---- against scripted generations (reasoning, tools) ----------------------------------------

class OpenAIClientScripted : public ::testing::Test {
 protected:
  json run(const std::string& scenario) { return run_client(server_.port(), scenario); }

  ScriptedHttpServer server_;  // a tool result gets an answer; tools, a call; else thought and text
};

TEST_F(OpenAIClientScripted, ReasoningDeltasApartFromContent) {
  json r = run("reasoning_stream");
  EXPECT_EQ(r["reasoning"], "A story is wanted.");
  EXPECT_EQ(r["content"], "Once there was a fox.");
  EXPECT_EQ(r["mixed"], 0);  // no delta carries both
  EXPECT_EQ(r["finish"], "stop");
}

TEST_F(OpenAIClientScripted, ToolCall) {
  json r = run("tools");
  EXPECT_EQ(r["finish"], "tool_calls");
  EXPECT_TRUE(r["content"].is_null()) << r.dump();
  ASSERT_EQ(r["tool_calls"].size(), 1u) << r.dump();
  EXPECT_EQ(r["tool_calls"][0]["type"], "function");
  EXPECT_EQ(r["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(r["tool_calls"][0]["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  EXPECT_FALSE(r["tool_calls"][0]["id"].get<std::string>().empty());
}

TEST_F(OpenAIClientScripted, StreamedToolCall) {
  json r = run("tools_stream");
  EXPECT_EQ(r["finish"], "tool_calls");
  // The script's first piece carries SentencePiece's leading space, streamed before the call
  // was recognisable; nothing else of the call's text is content.
  EXPECT_EQ(r["content"].get<std::string>().find_first_not_of(" \n"), std::string::npos) << r.dump();
  ASSERT_EQ(r["tool_calls"].size(), 1u) << r.dump();
  EXPECT_EQ(r["tool_calls"][0]["name"], "get_weather");
  EXPECT_EQ(json::parse(r["tool_calls"][0]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  EXPECT_FALSE(r["tool_calls"][0]["id"].get<std::string>().empty());
}

TEST_F(OpenAIClientScripted, FullToolLoop) {
  json r = run("tool_loop");
  EXPECT_EQ(r["first_finish"], "tool_calls");
  EXPECT_TRUE(r["first_content"].is_null()) << r.dump();
  EXPECT_EQ(json::parse(r["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  EXPECT_EQ(r["second_finish"], "stop");
  // The script's SentencePiece pieces start with a space ("▁It"), decoded as such mid-text.
  EXPECT_EQ(r["second_content"], " It is 21 degrees in Paris.");
}

}  // namespace
}  // namespace owl::test
