// Reasoning separation: the result must not depend on how the output was cut
// into pieces, so every case is checked whole, byte by byte, and split in two
// and three pieces at every byte position (tags split everywhere).
#include <gtest/gtest.h>

#include "chat/reasoning.h"

namespace {

using owl::chat::ReasoningDelta;
using owl::chat::ReasoningParser;
using owl::chat::ReasoningStart;
using owl::chat::ReasoningTags;

ReasoningDelta run(ReasoningStart start, const std::vector<std::string>& pieces) {
  ReasoningParser p(start);
  ReasoningDelta all;
  for (const auto& piece : pieces) {
    auto d = p.feed(piece);
    all.reasoning += d.reasoning;
    all.content += d.content;
  }
  auto d = p.finish();
  all.reasoning += d.reasoning;
  all.content += d.content;
  return all;
}

void expect_split_invariant(ReasoningStart start, const std::string& text, const std::string& reasoning,
                            const std::string& content) {
  auto check = [&](const std::vector<std::string>& pieces, const std::string& how) {
    auto r = run(start, pieces);
    EXPECT_EQ(r.reasoning, reasoning) << how;
    EXPECT_EQ(r.content, content) << how;
  };
  check({text}, "whole");
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  check(bytes, "byte by byte");
  for (size_t i = 0; i <= text.size(); ++i) {
    check({text.substr(0, i), text.substr(i)}, "split at " + std::to_string(i));
    for (size_t j = i; j <= text.size(); j += 3)
      check({text.substr(0, i), text.substr(i, j - i), text.substr(j)},
            "split at " + std::to_string(i) + "," + std::to_string(j));
  }
}

TEST(Reasoning, StartFromPromptTail) {
  // DeepSeek-R1's generation prompt opens the block.
  EXPECT_EQ(owl::chat::reasoning_start("<｜User｜>hi<｜Assistant｜><think>\n"), ReasoningStart::InReasoning);
  // Qwen3 with enable_thinking=false closes an empty block.
  EXPECT_EQ(owl::chat::reasoning_start("<|im_start|>assistant\n<think>\n\n</think>\n\n"), ReasoningStart::Off);
  // GLM-4.6 with thinking off.
  EXPECT_EQ(owl::chat::reasoning_start("<|user|>\nhi/nothink<|assistant|>\n<think></think>"), ReasoningStart::Off);
  // Qwen3 thinking on, GLM thinking on, Kimi K2 Thinking: the model opens the block.
  EXPECT_EQ(owl::chat::reasoning_start("<|im_start|>assistant\n"), ReasoningStart::Detect);
  EXPECT_EQ(owl::chat::reasoning_start("<|im_assistant|>assistant<|im_middle|>"), ReasoningStart::Detect);
}

TEST(Reasoning, Qwen3ThinkingOn) {
  expect_split_invariant(ReasoningStart::Detect,
                         "<think>\nThe user greets me.\nI greet back.\n</think>\n\nHello! How can I help?",
                         "The user greets me.\nI greet back.", "Hello! How can I help?");
}

TEST(Reasoning, Qwen3ThinkingOffIsAllContent) {
  expect_split_invariant(ReasoningStart::Off, "Hello <think> is just text </think> here.", "",
                         "Hello <think> is just text </think> here.");
}

TEST(Reasoning, DeepSeekR1StartsInsideReasoning) {
  expect_split_invariant(ReasoningStart::InReasoning, "Okay, 2+2 is 4.\n</think>\n\nThe answer is 4.",
                         "Okay, 2+2 is 4.", "The answer is 4.");
}

TEST(Reasoning, NeverClosedIsAllReasoning) {
  expect_split_invariant(ReasoningStart::InReasoning, "Let me think about </thi", "Let me think about </thi", "");
  expect_split_invariant(ReasoningStart::Detect, "<think>\nstill thinking  \n", "still thinking", "");
}

TEST(Reasoning, NoBlockMeansContentUnchanged) {
  expect_split_invariant(ReasoningStart::Detect, "  <thin is not a tag", "", "  <thin is not a tag");
  expect_split_invariant(ReasoningStart::Detect, "Hi there", "", "Hi there");
}

TEST(Reasoning, GlmEmptyBlockAndToolCallAfter) {
  // GLM-4.6 renders "<think></think>" with no whitespace; the answer may be a tool call.
  expect_split_invariant(ReasoningStart::Detect,
                         "<think>Need weather.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>",
                         "Need weather.", "<tool_call>get_weather\n<arg_key>city</arg_key>");
  expect_split_invariant(ReasoningStart::Detect, "<think></think>Hi", "", "Hi");
}

TEST(Reasoning, WhitespaceInsideReasoningIsKept) {
  expect_split_invariant(ReasoningStart::InReasoning, "a  \n b\n\n</think>  c  d ", "a  \n b", "c  d ");
}

TEST(Reasoning, TagsFromTemplate) {
  EXPECT_EQ(owl::chat::reasoning_tags_for_template("{{ '<think>' }}").open, "<think>");
  EXPECT_EQ(owl::chat::reasoning_tags_for_template("{{ '◁think▷' + rc + '◁/think▷' }}").close, "◁/think▷");
}

TEST(Reasoning, MultibyteTextAndCustomTags) {
  ReasoningTags tags{"◁think▷", "◁/think▷"};
  std::string text = "◁think▷思考中 🤔◁/think▷答案";
  for (size_t i = 0; i <= text.size(); ++i) {
    ReasoningParser p(ReasoningStart::Detect, tags);
    ReasoningDelta all;
    for (const auto& piece : {text.substr(0, i), text.substr(i)}) {
      auto d = p.feed(piece);
      all.reasoning += d.reasoning;
      all.content += d.content;
    }
    auto d = p.finish();
    EXPECT_EQ(all.reasoning + d.reasoning, "思考中 🤔") << i;
    EXPECT_EQ(all.content + d.content, "答案") << i;
  }
}

TEST(Reasoning, ReleasesTextBeforeTheEnd) {
  // Streaming must not hold everything back: plain reasoning text comes out as it arrives.
  ReasoningParser p(ReasoningStart::InReasoning);
  EXPECT_EQ(p.feed("First step").reasoning, "First step");
  EXPECT_EQ(p.feed(", second </th").reasoning, ", second");  // "</th" and the space wait
  auto d = p.feed("ink>Answer");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "Answer");
  EXPECT_FALSE(p.in_reasoning());
}

}  // namespace
