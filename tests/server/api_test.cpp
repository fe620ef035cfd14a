// Request parsing: what is accepted and how each field is read.
#include "server/api.h"

#include <gtest/gtest.h>

namespace owl::server {
namespace {

TEST(ApiParse, ChatFieldsAndExtensions) {
  ChatParams p = parse_chat_request(R"({
    "model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    "temperature": 0.5, "top_p": 0.9, "top_k": 20, "min_p": 0.1, "max_completion_tokens": 77, "stop": "END",
    "seed": 42, "stream": true, "stream_options": {"include_usage": true},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "tool_choice": "required",
    "chat_template_kwargs": {"enable_thinking": false}, "reasoning": {"max_tokens": 100}})");
  EXPECT_EQ(p.model, "m");
  EXPECT_FLOAT_EQ(p.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(p.sampling.top_p, 0.9f);
  EXPECT_EQ(p.sampling.top_k, 20);
  EXPECT_FLOAT_EQ(p.sampling.min_p, 0.1f);
  EXPECT_EQ(p.sampling.seed, 42u);
  EXPECT_EQ(*p.max_tokens, 77);
  EXPECT_EQ(p.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(p.stream && p.include_usage);
  EXPECT_EQ(p.tool_choice, "required");
  EXPECT_EQ(p.enable_thinking, false);
  EXPECT_EQ(p.thinking_budget, 100);
}

TEST(ApiParse, OpenAIDefaults) {
  ChatParams p = parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_FLOAT_EQ(p.sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(p.sampling.top_p, 1.0f);
  EXPECT_EQ(p.sampling.top_k, 0);
  EXPECT_FALSE(p.max_tokens);
  EXPECT_FALSE(p.enable_thinking);
  EXPECT_EQ(parse_completion_request(R"({"prompt": "x"})").max_tokens, 16);
  EXPECT_EQ(
      parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}], "thinking_budget": 5})").thinking_budget,
      5);
  EXPECT_EQ(parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "none"})")
                .enable_thinking,
            false);
}

TEST(ApiParse, CompletionPromptForms) {
  EXPECT_EQ(parse_completion_request(R"({"prompt": "abc"})").prompt_text, "abc");
  EXPECT_EQ(parse_completion_request(R"({"prompt": ["abc"]})").prompt_text, "abc");
  EXPECT_EQ(parse_completion_request(R"({"prompt": [1, 2, 3]})").prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(parse_completion_request(R"({"prompt": [[4, 5]]})").prompt_ids, (std::vector<int32_t>{4, 5}));
}

void expect_bad(const std::string& body, const std::string& param, bool chat = true) {
  try {
    if (chat)
      parse_chat_request(body);
    else
      parse_completion_request(body);
    ADD_FAILURE() << "accepted: " << body;
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.param, param) << body << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(param), std::string::npos) << e.what();
  }
}

TEST(ApiParse, LogprobsAndChoices) {
  const ChatParams c = parse_chat_request(
      R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 5, "n": 3, "seed": 9})");
  EXPECT_EQ(c.logprobs, 5);
  EXPECT_EQ(c.n, 3);
  EXPECT_EQ(c.seed.value_or(0), 9u);
  EXPECT_EQ(parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})").logprobs, 0);
  EXPECT_EQ(parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}], "reasoning": {"effort": "none"}})")
                .enable_thinking,
            false);
  EXPECT_EQ(parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": false})").logprobs, -1);
  const CompletionParams p = parse_completion_request(R"({"prompt": "x", "logprobs": 0, "n": 2, "best_of": 2})");
  EXPECT_EQ(p.logprobs, 0);
  EXPECT_EQ(p.n, 2);
  EXPECT_FALSE(p.seed);
}

TEST(ApiParse, RejectsWrongTypesAndValues) {
  const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
  expect_bad("{" + m + R"(, "top_p": 0})", "top_p");
  expect_bad("{" + m + R"(, "top_k": 1.5})", "top_k");
  expect_bad("{" + m + R"(, "min_p": 2})", "min_p");
  expect_bad("{" + m + R"(, "seed": "x"})", "seed");
  expect_bad("{" + m + R"(, "stop": [1]})", "stop");
  expect_bad("{" + m + R"(, "stop": [""]})", "stop");
  expect_bad("{" + m + R"(, "n": 0})", "n");
  expect_bad("{" + m + R"(, "n": 17})", "n");
  expect_bad("{" + m + R"(, "top_logprobs": 2})", "top_logprobs");  // without logprobs
  expect_bad("{" + m + R"(, "logprobs": true, "top_logprobs": 21})", "top_logprobs");
  expect_bad("{" + m + R"(, "store": true})", "store");
  expect_bad("{" + m + R"(, "function_call": "auto"})", "function_call");
  expect_bad("{" + m + R"(, "verbosity": "low"})", "verbosity");
  expect_bad("{" + m + R"(, "prompt_cache_key": 5})", "prompt_cache_key");
  expect_bad("{" + m + R"(, "reasoning": {"effort": "max"}})", "reasoning.effort");
  expect_bad(R"({"prompt": "x", "logprobs": 6})", "logprobs", false);
  expect_bad(R"({"prompt": "x", "logprobs": 1, "echo": true})", "logprobs", false);
  expect_bad(R"({"prompt": "x", "n": 2, "best_of": 3})", "best_of", false);
  expect_bad("{" + m + R"(, "stream_options": 1})", "stream_options");
  expect_bad("{" + m + R"(, "tools": {}})", "tools");
  expect_bad("{" + m + R"(, "tools": [{"type": "function"}]})", "tools[0]");
  expect_bad("{" + m + R"(, "tool_choice": "always"})", "tool_choice");
  expect_bad("{" + m + R"(, "tool_choice": "auto"})", "tool_choice");  // without tools
  expect_bad("{" + m + R"(, "chat_template_kwargs": {"enable_thinking": "no"}})",
             "chat_template_kwargs.enable_thinking");
  expect_bad("{" + m + R"(, "thinking_budget": -1})", "thinking_budget");
  expect_bad(R"({"messages": [{"content": "x"}]})", "messages[0].role");
  expect_bad(R"({"messages": [{"role": "user"}]})", "messages[0].content");
  expect_bad(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages[0].content");
  expect_bad(R"({"prompt": [1, "a"]})", "prompt", false);
  expect_bad(R"({"prompt": "x", "echo": 1})", "echo", false);
}

TEST(ApiError, BodyIsTheOpenAIErrorObject) {
  auto j = nlohmann::json::parse(
      error_body(ApiError(404, "no such model", "invalid_request_error", "model", "model_not_found")));
  EXPECT_EQ(
      j,
      nlohmann::json::parse(
          R"({"error": {"message": "no such model", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})"));
  auto n = nlohmann::json::parse(error_body(ApiError(400, "bad")));
  EXPECT_TRUE(n["error"]["param"].is_null());
  EXPECT_TRUE(n["error"]["code"].is_null());
}

}  // namespace
}  // namespace owl::server
