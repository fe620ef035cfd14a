// tool_choice enforced on real generation: `owl serve` with stories260K, which knows nothing
// of tools, must still answer tool_choice "required" and a named function with a call of an
// allowed function whose arguments follow its schema, in the served tool-call format (Hermes
// without a template; Qwen3-Coder XML with tests/server/qwen3_coder_style.jinja, where a strict
// string's pattern holds on the raw text). "none" keeps the tools out of the prompt.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "server_fixture.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using owl::test::http_post;
using owl::test::ServerProcess;

const json kTools = json::parse(R"([
  {"type":"function","function":{"name":"get_weather","strict":true,"parameters":{"type":"object",
    "properties":{"city":{"type":"string","maxLength":12},"unit":{"enum":["c","f"]},
      "days":{"type":"integer","minimum":1,"maximum":9},"code":{"type":"string","pattern":"^[A-Z]{3}$"}},
    "required":["city","days","code"],"additionalProperties":false}}},
  {"type":"function","function":{"name":"get_time","parameters":{"type":"object",
    "properties":{"zone":{"type":"string","maxLength":8}},"required":["zone"],"additionalProperties":false}}}])");

// The arguments follow the schema of the function named.
void expect_valid_call(const json& call) {
  ASSERT_EQ(call["type"], "function");
  const std::string name = call["function"]["name"];
  json args = json::parse(call["function"]["arguments"].get<std::string>());
  ASSERT_TRUE(args.is_object()) << args;
  if (name == "get_weather") {
    ASSERT_TRUE(args["city"].is_string()) << args;
    EXPECT_LE(args["city"].get<std::string>().size(), 12u * 4) << args;
    ASSERT_TRUE(args["days"].is_number_integer()) << args;
    EXPECT_GE(args["days"].get<int>(), 1);
    EXPECT_LE(args["days"].get<int>(), 9);
    if (args.contains("unit")) {
      EXPECT_TRUE(args["unit"] == "c" || args["unit"] == "f") << args;
    }
    // The pattern holds, in JSON and in the XML format's raw text alike.
    ASSERT_TRUE(args["code"].is_string()) << args;
    const std::string code = args["code"];
    EXPECT_EQ(code.size(), 3u) << args;
    for (char c : code) EXPECT_TRUE(c >= 'A' && c <= 'Z') << args;
    for (const auto& [k, v] : args.items()) EXPECT_TRUE(k == "city" || k == "days" || k == "unit" || k == "code") << k;
  } else {
    ASSERT_EQ(name, "get_time");
    ASSERT_TRUE(args["zone"].is_string()) << args;
    EXPECT_LE(args["zone"].get<std::string>().size(), 8u * 4) << args;  // 8 characters of up to 4 bytes
    EXPECT_EQ(args.size(), 1u) << args;
  }
}

json ask(int port, const json& extra) {
  json body = {{"messages", {{{"role", "user"}, {"content", "What is the weather in Paris?"}}}},
               {"tools", kTools},
               {"max_tokens", 300}};
  body.update(extra);
  auto r = http_post(port, "/v1/chat/completions", body.dump());
  EXPECT_EQ(r.status, 200) << r.body;
  return r.json();
}

// Sampled at temperature 1 with several seeds: whatever the model draws, the grammar holds.
void expect_enforced(int port) {
  for (int seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    json j = ask(port, {{"tool_choice", "required"}, {"parallel_tool_calls", false}, {"seed", seed}});
    const json& choice = j["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "tool_calls") << j.dump();
    ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << j.dump();
    EXPECT_TRUE(choice["message"]["content"].is_null()) << j.dump();
    expect_valid_call(choice["message"]["tool_calls"][0]);

    json named =
        ask(port, {{"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}, {"seed", seed}});
    ASSERT_EQ(named["choices"][0]["message"]["tool_calls"].size(), 1u) << named.dump();
    EXPECT_EQ(named["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");
    expect_valid_call(named["choices"][0]["message"]["tool_calls"][0]);
  }
}

TEST(ToolChoiceServe, HermesWithoutATemplate) {
  ServerProcess server(owl::test::shared_path("models/stories260K/stories260K-f32.gguf"), {"--kv-type", "f32"});
  expect_enforced(server.port());
  // "none": the tools are not in the prompt (the fallback format has no tool section at all,
  // so the prompt is as long as without tools) and no call is parsed.
  json none = ask(server.port(), {{"tool_choice", "none"}, {"max_tokens", 8}});
  EXPECT_FALSE(none["choices"][0]["message"].contains("tool_calls"));
}

TEST(ToolChoiceServe, Qwen3CoderXml) {
  ServerProcess server(
      owl::test::shared_path("models/stories260K/stories260K-f32.gguf"),
      {"--kv-type", "f32", "--chat-template", std::string(OWL_SOURCE_DIR) + "/tests/server/qwen3_coder_style.jinja"});
  expect_enforced(server.port());
  // "none" renders no tools: the prompt is as long as one without them.
  json none = ask(server.port(), {{"tool_choice", "none"}, {"max_tokens", 1}});
  json plain = {{"messages", {{{"role", "user"}, {"content", "What is the weather in Paris?"}}}}, {"max_tokens", 1}};
  auto r = http_post(server.port(), "/v1/chat/completions", plain.dump());
  EXPECT_EQ(none["usage"]["prompt_tokens"], r.json()["usage"]["prompt_tokens"]);
  json with_tools = ask(server.port(), {{"max_tokens", 1}});
  EXPECT_GT(with_tools["usage"]["prompt_tokens"].get<int>(), none["usage"]["prompt_tokens"].get<int>());
}

}  // namespace
