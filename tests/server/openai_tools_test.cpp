// Tool calls as the official `openai` npm client sees them (issue #20): tool_choice required,
// a named function and none on real generation (stories260K, which knows nothing of tools, so
// every well-formed call comes from the grammar), strict arguments, streamed argument deltas
// joined by the client's stream helper, and 400s naming the field for a missing named function
// and a strict schema owl cannot enforce. Each scenario is one run of tests/server/openai_tools.mjs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "server/npm_client.h"
#include "server/server_fixture.h"
#include "test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

class OpenAITools : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess(shared_path("models/stories260K/stories260K-f32.gguf"), {"--kv-type", "f32"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static json run(const std::string& scenario) {
    install_npm_package("openai", "5.23.2");
    return run_node_script("openai_tools.mjs", {std::to_string(server_->port()), scenario});
  }
  static ServerProcess* server_;
};
ServerProcess* OpenAITools::server_ = nullptr;

// One call of an offered function with arguments that follow its schema (openai_tools.mjs).
void expect_valid_call(const json& call) {
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["id"].get<std::string>().size(), 9u);
  json args = json::parse(call["arguments"].get<std::string>());
  if (call["name"] == "get_weather") {
    ASSERT_EQ(args.size(), 2u) << args;
    ASSERT_TRUE(args["city"].is_string()) << args;
    EXPECT_LE(args["city"].get<std::string>().size(), 12u * 4) << args;
    ASSERT_TRUE(args["days"].is_number_integer()) << args;
    EXPECT_GE(args["days"].get<int>(), 1);
    EXPECT_LE(args["days"].get<int>(), 9);
  } else {
    ASSERT_EQ(call["name"], "get_time");
    EXPECT_EQ(args.size(), 1u) << args;
    EXPECT_TRUE(args["zone"] == "UTC" || args["zone"] == "CET") << args;
  }
}

TEST_F(OpenAITools, RequiredIsOneValidCall) {
  json r = run("required");
  ASSERT_EQ(r["answers"].size(), 3u);
  for (const json& a : r["answers"]) {
    EXPECT_EQ(a["finish"], "tool_calls") << a;
    EXPECT_TRUE(a["content"].is_null()) << a;
    ASSERT_EQ(a["calls"].size(), 1u) << a;
    expect_valid_call(a["calls"][0]);
  }
}

TEST_F(OpenAITools, NamedFunctionIsCalled) {
  json r = run("named");
  for (const json& a : r["answers"]) {
    EXPECT_EQ(a["finish"], "tool_calls") << a;
    ASSERT_EQ(a["calls"].size(), 1u) << a;
    EXPECT_EQ(a["calls"][0]["name"], "get_time");
    expect_valid_call(a["calls"][0]);
  }
}

TEST_F(OpenAITools, NoneIsFreeTextWithoutTools) {
  json r = run("none");
  EXPECT_TRUE(r["calls"].empty()) << r;
  EXPECT_TRUE(r["content"].is_string()) << r;
  EXPECT_EQ(r["prompt_tokens"], r["plain_prompt_tokens"]);  // the tools were not rendered
}

TEST_F(OpenAITools, StreamedArgumentsComeInPiecesAndAddUp) {
  json r = run("stream");
  const json& s = r["streamed"];
  ASSERT_EQ(s["calls"].size(), 1u) << r;
  EXPECT_EQ(s["finish"], "tool_calls");
  EXPECT_EQ(s["calls"][0]["name"], "get_weather");
  expect_valid_call(s["calls"][0]);
  EXPECT_GT(r["fragments"].get<int>(), 3) << r;  // generated token by token, not one delta at the end
  EXPECT_EQ(r["doneName"], "get_weather");
  EXPECT_EQ(r["doneArguments"], s["calls"][0]["arguments"]);
  // The same seed answered whole gives the same call.
  ASSERT_EQ(r["whole"]["calls"].size(), 1u);
  EXPECT_EQ(r["whole"]["calls"][0]["arguments"], s["calls"][0]["arguments"]);
}

TEST_F(OpenAITools, BadToolRequestsAre400sNamingTheField) {
  json r = run("bad_input");
  EXPECT_EQ(r["missing"]["status"], 400) << r;
  EXPECT_EQ(r["missing"]["param"], "tool_choice");
  EXPECT_NE(r["missing"]["message"].get<std::string>().find("get_stock"), std::string::npos) << r;
  EXPECT_EQ(r["strict"]["status"], 400) << r;
  EXPECT_EQ(r["strict"]["param"], "tools[0].function.parameters");
  EXPECT_NE(r["strict"]["message"].get<std::string>().find("uniqueItems"), std::string::npos) << r;
}

}  // namespace
}  // namespace owl::test
