// owl chat as a process: multi-turn prompts rendered through the template, thinking
// toggled off by the template's own mechanism, commands acknowledged.
#include <gtest/gtest.h>

#include "test_util.h"

namespace {

using owl::test::run_owl;
using owl::test::shared_path;

TEST(CliChat, MultiTurnThroughTheTemplate) {
  const std::string model = shared_path("models/stories260K/stories260K-f32.gguf");
  const std::string tmpl = shared_path("chat-templates/qwen3/chat_template.jinja");
  auto r = run_owl({"chat", model, "--chat-template", tmpl, "--temp", "0", "-n", "8", "--show-prompt"},
                   "Hello there\n/think off\n/budget x\nTell a story\n/reset\nAgain\n/quit\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Turn 1: the user message alone, rendered by the Qwen3 template.
  EXPECT_NE(r.err.find("[prompt]\n<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n\n[/prompt]"),
            std::string::npos)
      << r.err;
  // Turn 2: the history is kept, and thinking off pre-fills the empty think block.
  EXPECT_NE(r.err.find("Hello there<|im_end|>\n<|im_start|>assistant\n"), std::string::npos);
  EXPECT_NE(r.err.find("<|im_start|>user\nTell a story<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"),
            std::string::npos)
      << r.err;
  // After /reset the history is gone: the third prompt starts with the new message.
  EXPECT_NE(r.err.find("[prompt]\n<|im_start|>user\nAgain<|im_end|>"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("(thinking off)"), std::string::npos);
  EXPECT_NE(r.out.find("(usage: /budget N"), std::string::npos);
  EXPECT_NE(r.out.find("(conversation reset)"), std::string::npos);
}

TEST(CliChat, MissingModelIsAClearError) {
  auto r = run_owl({"chat", "/nonexistent/model.gguf"}, "");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("model '/nonexistent/model.gguf' does not exist"), std::string::npos) << r.err;
}

}  // namespace
