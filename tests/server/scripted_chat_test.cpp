// The chat endpoint's output parsing through the real engine and real HTTP, with the
// generated tokens scripted by a hook (stories260K cannot write tool calls or think tags
// by itself): the script's tokens go through the sampler loop, the incremental
// detokenizer, the reasoning splitter and the tool-call parser like sampled ones.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/engine.h"
#include "chat/chat_template.h"
#include "server/chat_output.h"
#include "server/server.h"
#include "server/scripted_http.h"
#include "server/server_fixture.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

class ScriptedChat : public ::testing::Test {
 protected:
  json chat(json body) {
    body["messages"] = {{{"role", "user"}, {"content", "What is the weather in Paris?"}}};
    body["tools"] = {
        {{"type", "function"}, {"function", {{"name", "get_weather"}, {"parameters", {{"type", "object"}}}}}}};
    auto r = http_post(server_.port(), "/v1/chat/completions", body.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    if (body.value("stream", false)) {
      json events = json::array();
      for (auto& e : sse_events(r.body)) events.push_back(e);
      return events;
    }
    return r.json();
  }

  std::string script_;  // what the next chat request "generates"
  // 2048: Qwen3's tool preamble alone is ~400 stories260K tokens.
  InProcessHttpServer server_{2, 2048, scripted_qwen3_api([this](const server::ChatParams&) { return script_; })};
};

TEST_F(ScriptedChat, ReasoningAndToolCallsInOneMessage) {
  script_ =
      "<think>The user wants weather.</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
      "{\"city\": \"Paris\"}}\n</tool_call>";
  json j = chat({{"max_tokens", 200}});
  const json& msg = j["choices"][0]["message"];
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(msg["reasoning_content"], "The user wants weather.");
  EXPECT_TRUE(msg["content"].is_null()) << msg.dump();
  ASSERT_EQ(msg["tool_calls"].size(), 1u);
  EXPECT_EQ(msg["tool_calls"][0]["type"], "function");
  EXPECT_EQ(msg["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(msg["tool_calls"][0]["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  EXPECT_GT(j["usage"]["completion_tokens_details"]["reasoning_tokens"].get<int>(), 5);
  EXPECT_LT(j["usage"]["completion_tokens_details"]["reasoning_tokens"].get<int>(),
            j["usage"]["completion_tokens"].get<int>());
}

TEST_F(ScriptedChat, StreamedToolCallsAndReasoningDeltas) {
  script_ =
      "<think>Checking.</think>Sure.<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Rome\"}}</tool_call>";
  json events = chat({{"max_tokens", 200}, {"stream", true}, {"stream_options", {{"include_usage", true}}}});
  std::string reasoning, content, finish;
  json calls = json::array();
  std::vector<int> fragments;
  json usage;
  for (const auto& e : events) {
    if (e.is_string()) continue;
    if (e["choices"].empty()) {
      usage = e["usage"];
      continue;
    }
    const json& d = e["choices"][0]["delta"];
    if (d.contains("reasoning_content")) reasoning += d["reasoning_content"].get<std::string>();
    if (d.contains("content")) content += d["content"].get<std::string>();
    // OpenAI's shape: the first delta of a call has its index, id, type and name with arguments
    // "", the next ones only argument fragments, to be joined by index.
    if (d.contains("tool_calls")) {
      ASSERT_EQ(d["tool_calls"].size(), 1u);
      const json& t = d["tool_calls"][0];
      const size_t i = t["index"].get<size_t>();
      if (t.contains("id")) {
        ASSERT_EQ(i, calls.size());
        EXPECT_EQ(t["type"], "function");
        EXPECT_EQ(t["function"]["arguments"], "");
        calls.push_back(t);
        fragments.push_back(0);
      } else {
        ASSERT_LT(i, calls.size());
        EXPECT_FALSE(t.contains("id"));
        calls[i]["function"]["arguments"] =
            calls[i]["function"]["arguments"].get<std::string>() + t["function"]["arguments"].get<std::string>();
        ++fragments[i];
      }
    }
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(reasoning, "Checking.");
  EXPECT_EQ(content, "Sure.");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["index"], 0);
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(calls[0]["function"]["arguments"], R"({"city":"Rome"})");
  EXPECT_GT(fragments[0], 3);  // the arguments went out as they were generated, not in one piece
  EXPECT_EQ(finish, "tool_calls");
  EXPECT_GT(usage["completion_tokens_details"]["reasoning_tokens"].get<int>(), 0);
}

TEST_F(ScriptedChat, ToolChoiceNoneLeavesTheTextAlone) {
  script_ = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>";
  json j = chat({{"max_tokens", 200}, {"tool_choice", "none"}});
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE(j["choices"][0]["message"].contains("tool_calls"));
  // (The script was tokenized as SentencePiece text, which may add one leading space.)
  std::string content = j["choices"][0]["message"]["content"];
  EXPECT_EQ(content.substr(content.find('<')), script_);
}

TEST_F(ScriptedChat, LengthLimitInsideACallIsLength) {
  script_ = "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
  json j = chat({{"max_tokens", 5}});
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(j["choices"][0]["message"].contains("tool_calls"));
}

// Issue #19 D9: reasoning_tokens is every generated token of the reasoning block, the
// <think> and </think> markers included (stories260K spells each marker in several tokens,
// so a marker's first tokens arrive before the parser knows a block has opened).
TEST_F(ScriptedChat, ReasoningTokensCountTheWholeBlock) {
  const std::string block = "<think>Rain is likely.</think>";
  script_ = block + "Take an umbrella.";
  const std::vector<int32_t> ids = server_.tokenizer().encode(script_, false);
  int64_t expected = 0;  // the script's tokens up to and including the one that ends </think>
  while (server_.tokenizer().decode({ids.begin(), ids.begin() + expected}).find("</think>") == std::string::npos)
    ++expected;
  ASSERT_GT(expected, 5);
  for (bool stream : {false, true}) {
    json body = {{"max_tokens", 200}, {"stream", stream}};
    if (stream) body["stream_options"] = {{"include_usage", true}};
    json j = chat(body);
    json usage = stream ? json() : j["usage"];
    if (stream)
      for (const json& e : j)
        if (e.is_object() && e.contains("usage") && !e["usage"].is_null()) usage = e["usage"];
    ASSERT_TRUE(usage.is_object()) << j.dump();
    EXPECT_EQ(usage["completion_tokens_details"]["reasoning_tokens"].get<int64_t>(), expected) << stream;
    // The answer and the end-of-generation token are not reasoning.
    EXPECT_EQ(usage["completion_tokens"].get<int64_t>(), static_cast<int64_t>(ids.size()) + 1) << stream;
    if (!stream) {
      EXPECT_EQ(j["choices"][0]["message"]["reasoning_content"], "Rain is likely.");
    }
  }
}

// Issue #19 D10: control tokens are not text, except the markers the chat parsers read when
// the tokenizer spells one as a special token (Mistral's [TOOL_CALLS], Llama 3.1's
// <|python_tag|>, ...). stories260K's only such token is <s>, standing in for one here.
TEST_F(ScriptedChat, SpecialTokensAreShownOnlyWhenKeptAsMarkers) {
  chat::ReasoningTags tags{"<s>", "</think>"};
  EXPECT_EQ(server::chat_marker_tokens(server_.tokenizer(), tags, chat::ToolCallFormat::Hermes),
            std::vector<int32_t>{1});
  EXPECT_TRUE(
      server::chat_marker_tokens(server_.tokenizer(), {}, chat::ToolCallFormat::Hermes).empty());  // plain text here
  auto generate = [&](std::vector<int32_t> keep) {
    GenerationRequest g;
    g.prompt = server_.tokenizer().encode("Once", true);
    g.max_tokens = 50;
    g.hook = std::make_shared<ScriptHook>(server_.tokenizer(), "Hello<s> world");
    g.keep_special = std::move(keep);
    auto stream = server_.engine().submit(std::move(g));
    std::string text;
    for (bool done = false; !done;)
      for (auto& e : stream->wait(std::chrono::milliseconds(50))) {
        text += e.text;
        done = done || e.finish != FinishReason::None;
      }
    return text;
  };
  const std::string plain = generate({}), kept = generate({1});
  EXPECT_EQ(plain.substr(0, 6), " Hello");
  EXPECT_EQ(plain.find("<s>"), std::string::npos) << plain;
  EXPECT_EQ(kept, " Hello<s>" + plain.substr(6));
}

}  // namespace
}  // namespace owl::test
