// Reasoning split and tool-call parsing on scripted text, fed in every possible split.
#include "server/chat_output.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace owl::server {
namespace {

struct Split {
  std::string reasoning, content;
};

// Feeds `text` to a splitter in pieces of `step` bytes.
Split run(const std::string& text, size_t step, bool starts_inside = false) {
  ReasoningSplitter s(true, starts_inside);
  Split out;
  for (size_t i = 0; i < text.size(); i += step) {
    ChatDelta d = s.push(text.substr(i, step));
    out.reasoning += d.reasoning;
    out.content += d.content;
  }
  ChatDelta d = s.flush();
  out.reasoning += d.reasoning;
  out.content += d.content;
  return out;
}

TEST(ReasoningSplitter, SeparatesThinkBlockInAnyChunking) {
  const std::string text = "<think>\nLet me see: 2+2.\n</think>\n\nIt is 4.";
  for (size_t step = 1; step <= text.size(); ++step) {
    Split s = run(text, step);
    EXPECT_EQ(s.reasoning, "\nLet me see: 2+2.\n") << "step " << step;
    EXPECT_EQ(s.content, "It is 4.") << "step " << step;
  }
}

TEST(ReasoningSplitter, PromptThatOpenedTheBlock) {
  for (size_t step : {1, 3, 100}) {
    Split s = run("thinking </thi and more</think>answer <think> stays", step, /*starts_inside=*/true);
    EXPECT_EQ(s.reasoning, "thinking </thi and more");
    EXPECT_EQ(s.content, "answer <think> stays");  // a tag after content is plain text
  }
}

TEST(ReasoningSplitter, PlainTextAndUnclosedBlocks) {
  EXPECT_EQ(run("Just an answer.", 2).content, "Just an answer.");
  EXPECT_EQ(run("<thin", 1).content, "<thin");  // undecided prefix is released at the end
  Split s = run("<think>never closed", 4);
  EXPECT_EQ(s.reasoning, "never closed");
  EXPECT_EQ(s.content, "");
  ReasoningSplitter off(false);
  EXPECT_EQ(off.push("<think>x</think>").content, "<think>x</think>");
}

TEST(ToolCalls, HermesQwenFormat) {
  auto p = parse_tool_calls(
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(nlohmann::json::parse(p.calls[0].arguments), nlohmann::json::parse(R"({"city":"Paris","days":2})"));
  EXPECT_EQ(p.calls[1].name, "get_time");
  EXPECT_EQ(p.calls[1].arguments, "{}");
  EXPECT_EQ(p.content, "Let me check.");
  EXPECT_EQ(p.calls[0].id.rfind("call_", 0), 0u);
  EXPECT_NE(p.calls[0].id, p.calls[1].id);
}

TEST(ToolCalls, Glm45Format) {
  auto p = parse_tool_calls(
      "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Beijing</arg_value>\n<arg_key>days</arg_key>\n"
      "<arg_value>3</arg_value>\n</tool_call>");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(nlohmann::json::parse(p.calls[0].arguments), nlohmann::json::parse(R"({"city":"Beijing","days":3})"));
  EXPECT_EQ(p.content, "");
}

TEST(ToolCalls, DeepSeekV3Format) {
  auto p = parse_tool_calls(
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Oslo\"}\n```"
      "<｜tool▁call▁end｜><｜tool▁calls▁end｜>");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(nlohmann::json::parse(p.calls[0].arguments), nlohmann::json::parse(R"({"city":"Oslo"})"));
  EXPECT_EQ(p.content, "");
}

TEST(ToolCalls, MalformedCallsStayContent) {
  const std::string text = "<tool_call>{not json</tool_call> and <tool_call>unterminated";
  auto p = parse_tool_calls(text);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, text);
  EXPECT_TRUE(parse_tool_calls("no calls here").calls.empty());
}

TEST(PromptOpensReasoning, LooksAtTheLastTag) {
  EXPECT_TRUE(prompt_opens_reasoning("<|Assistant|><think>\n"));
  EXPECT_FALSE(prompt_opens_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
  EXPECT_FALSE(prompt_opens_reasoning("<|im_start|>assistant\n"));
}

}  // namespace
}  // namespace owl::server
