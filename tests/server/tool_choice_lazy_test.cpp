// tool_choice "auto" with a strict tool on real generation: the answer is free until it opens
// a call, and from the marker on stories260K is held to the calls' grammar. The model never
// writes "<tool_call>" by itself, so each answer's opening (free text, the marker, maybe part
// of a call) is forced by a hook; everything after it is sampled, at temperature 1, under the
// grammar, and must finish a call of an offered function with schema-valid arguments.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/engine.h"
#include "server/server.h"
#include "server/scripted_http.h"
#include "server/server_fixture.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

// Forces the tokens of `text`, then lets the model sample (no end of generation added).
class OpeningHook : public TokenHook {
 public:
  OpeningHook(const Tokenizer& tok, const std::string& text) : ids_(tok.encode(text, false)) {}
  std::vector<int32_t> at_start() override { return ids_; }
  std::vector<int32_t> on_token(int32_t, std::string_view) override { return {}; }

 private:
  std::vector<int32_t> ids_;
};

class OpeningServer : public server::OpenAIServer {
 public:
  OpeningServer(Engine& engine, const Tokenizer& tok, const std::string* opening)
      : OpenAIServer(engine, tok, std::nullopt, options()), tok_(tok), opening_(opening) {}

 protected:
  static server::ApiOptions options() {
    server::ApiOptions o;
    o.model_id = "stories";
    return o;
  }
  std::shared_ptr<TokenHook> chat_hook(const server::ChatParams&, chat::ReasoningStart,
                                       const chat::ReasoningTags&) const override {
    return std::make_shared<OpeningHook>(tok_, *opening_);
  }

 private:
  const Tokenizer& tok_;
  const std::string* opening_;
};

class ToolChoiceLazy : public ::testing::Test {
 protected:
  json ask(bool strict, int seed) {
    json tools = json::parse(R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
      "properties":{"city":{"type":"string","maxLength":10},"days":{"type":"integer","minimum":1,"maximum":9}},
      "required":["city","days"],"additionalProperties":false}}}])");
    if (strict) tools[0]["function"]["strict"] = true;
    json body = {{"messages", {{{"role", "user"}, {"content", "Weather in Paris?"}}}},
                 {"tools", tools},
                 {"max_tokens", 120},
                 {"parallel_tool_calls", false},  // one call, then the end (a random model would go on calling)
                 {"seed", seed}};
    auto r = http_post(server_.port(), "/v1/chat/completions", body.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json();
  }

  std::string opening_;  // what the next answer is forced to open with
  InProcessHttpServer server_{1, 512, [this](Engine& engine, const Tokenizer& tok) {
                                return std::make_unique<OpeningServer>(engine, tok, &opening_);
                              }};
};

TEST_F(ToolChoiceLazy, StrictToolHoldsTheCallOnceItStarts) {
  for (const std::string opening :
       {"Let me look. <tool_call>", "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arg"}) {
    opening_ = opening;
    for (int seed = 1; seed <= 3; ++seed) {
      SCOPED_TRACE(opening + " / seed " + std::to_string(seed));
      json j = ask(true, seed);
      const json& msg = j["choices"][0]["message"];
      EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls") << j.dump();
      // The free text before the call stays the content.
      std::string before = opening.substr(0, opening.find("<tool_call>"));
      while (!before.empty() && (before.back() == ' ' || before.back() == '\n')) before.pop_back();
      EXPECT_EQ(msg["content"], before);
      ASSERT_EQ(msg["tool_calls"].size(), 1u) << j.dump();
      EXPECT_EQ(msg["tool_calls"][0]["function"]["name"], "get_weather");
      json args = json::parse(msg["tool_calls"][0]["function"]["arguments"].get<std::string>());
      ASSERT_TRUE(args["city"].is_string()) << args;
      ASSERT_TRUE(args["days"].is_number_integer()) << args;
      EXPECT_GE(args["days"].get<int>(), 1);
      EXPECT_LE(args["days"].get<int>(), 9);
      EXPECT_EQ(args.size(), 2u) << args;
    }
  }
}

// Without strict the same opening is left to the model, which does not finish a call.
TEST_F(ToolChoiceLazy, WithoutStrictNothingIsEnforced) {
  opening_ = "Let me look. <tool_call>";
  json j = ask(false, 1);
  EXPECT_FALSE(j["choices"][0]["message"].contains("tool_calls")) << j.dump();
}

}  // namespace
}  // namespace owl::test
