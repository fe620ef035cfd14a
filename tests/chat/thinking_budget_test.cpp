// Thinking budget: counts reasoning tokens and injects the close text exactly
// when the budget is spent; turning thinking off uses each template's own means.
#include <gtest/gtest.h>

#include "chat/thinking_budget.h"
#include "test_util.h"

namespace {

using owl::chat::ReasoningStart;
using owl::chat::ThinkingBudget;

TEST(ThinkingBudget, InjectsCloseAfterBudgetTokens) {
  ThinkingBudget b(3, ReasoningStart::Detect);
  EXPECT_EQ(b.at_start(), "");
  EXPECT_EQ(b.on_token("<think>"), "");  // the tag itself is not counted
  EXPECT_TRUE(b.in_reasoning());
  EXPECT_EQ(b.on_token("\nOne"), "");
  EXPECT_EQ(b.on_token(" two"), "");
  EXPECT_EQ(b.on_token(" three"), "\n</think>\n\n");
  EXPECT_TRUE(b.forced_close());
  EXPECT_EQ(b.reasoning_tokens(), 3);
  EXPECT_EQ(b.on_token("Answer"), "");  // done: never injects twice
}

TEST(ThinkingBudget, ModelClosingInTimeIsLeftAlone) {
  ThinkingBudget b(5, ReasoningStart::InReasoning);
  EXPECT_EQ(b.on_token("Short"), "");
  EXPECT_EQ(b.on_token(" thought.</th"), "");
  EXPECT_EQ(b.on_token("ink>"), "");  // close tag split across tokens
  EXPECT_FALSE(b.in_reasoning());
  EXPECT_EQ(b.on_token(" more"), "");
  EXPECT_EQ(b.on_token(" more"), "");
  EXPECT_EQ(b.on_token(" more"), "");
  EXPECT_FALSE(b.forced_close());
  EXPECT_EQ(b.reasoning_tokens(), 2);
}

TEST(ThinkingBudget, ZeroBudgetClosesImmediately) {
  ThinkingBudget r1(0, ReasoningStart::InReasoning);  // R1: the prompt opened the block
  EXPECT_EQ(r1.at_start(), "\n</think>\n\n");
  ThinkingBudget qwen(0, ReasoningStart::Detect);
  EXPECT_EQ(qwen.at_start(), "");
  EXPECT_EQ(qwen.on_token("<thi"), "");
  EXPECT_EQ(qwen.on_token("nk>"), "\n</think>\n\n");
}

TEST(ThinkingBudget, NoBlockNoInjection) {
  ThinkingBudget b(1, ReasoningStart::Detect);
  EXPECT_EQ(b.on_token("Hello"), "");
  EXPECT_EQ(b.on_token(" <think>"), "");  // a tag later in the answer is not a reasoning block
  EXPECT_EQ(b.on_token(" x"), "");
  EXPECT_FALSE(b.forced_close());
  ThinkingBudget off(1, ReasoningStart::Off);
  EXPECT_EQ(off.on_token("<think>"), "");
  EXPECT_EQ(off.on_token("x"), "");
  EXPECT_FALSE(off.forced_close());
}

TEST(ThinkingBudget, CustomCloseText) {
  ThinkingBudget b(1, ReasoningStart::InReasoning, {}, "\nOkay, answering now.\n</think>\n\n");
  EXPECT_EQ(b.on_token("hmm"), "\nOkay, answering now.\n</think>\n\n");
}

owl::chat::ChatInputs user_turn() {
  owl::chat::ChatInputs in;
  in.messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", "Hi"}}});
  in.bos_token = "<｜begin▁of▁sentence｜>";
  in.eos_token = "<｜end▁of▁sentence｜>";
  return in;
}

owl::chat::ChatTemplate family_template(const std::string& family) {
  return owl::chat::ChatTemplate::load(owl::test::shared_path("chat-templates/" + family + "/chat_template.jinja"));
}

TEST(ThinkingOff, Qwen3UsesEnableThinking) {
  auto r = owl::chat::render_without_thinking(family_template("qwen3"), user_turn());
  EXPECT_TRUE(r.disabled);
  EXPECT_EQ(r.prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  EXPECT_EQ(owl::chat::reasoning_start(r.prompt), ReasoningStart::Off);
}

TEST(ThinkingOff, GlmUsesEnableThinking) {
  auto r = owl::chat::render_without_thinking(family_template("glm-4.6"), user_turn());
  EXPECT_TRUE(r.disabled);
  EXPECT_EQ(r.prompt, "[gMASK]<sop><|user|>\nHi/nothink<|assistant|>\n<think></think>");
  EXPECT_EQ(owl::chat::reasoning_start(r.prompt), ReasoningStart::Off);
}

TEST(ThinkingOff, DeepSeekR1GetsAnEmptyBlock) {
  auto r = owl::chat::render_without_thinking(family_template("deepseek-r1"), user_turn());
  EXPECT_TRUE(r.disabled);
  EXPECT_EQ(r.prompt, "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n\n</think>\n\n");
  EXPECT_EQ(owl::chat::reasoning_start(r.prompt), ReasoningStart::Off);
}

TEST(ThinkingOff, TemplateWithoutThinkingIsUnchanged) {
  auto r = owl::chat::render_without_thinking(family_template("deepseek-v3"), user_turn());
  EXPECT_FALSE(r.disabled);
  EXPECT_EQ(r.prompt, "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>");
}

}  // namespace
