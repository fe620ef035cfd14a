// What `owl chat` and `owl serve` share for a chat prompt: the plain "role: content" format of
// models without a template, and the encoding that drops a BOS the template wrote itself.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "formats/gguf.h"
#include "model/source.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace {

using json = nlohmann::ordered_json;

TEST(PlainChatPrompt, OneLinePerMessageThenTheAssistant) {
  json messages = json::array({{{"role", "system"}, {"content", "Be brief."}},
                               {{"role", "user"}, {"content", "Hi"}},
                               {{"role", "assistant"}, {"content", "Hello."}},
                               {{"role", "user"}, {"content", "Bye"}}});
  EXPECT_EQ(owl::chat::plain_chat_prompt(messages),
            "system: Be brief.\nuser: Hi\nassistant: Hello.\nuser: Bye\nassistant:");
}

TEST(PlainChatPrompt, DeveloperIsSystemAndContentPartsAreJoined) {
  json messages =
      json::array({{{"role", "developer"}, {"content", "Rules."}},
                   {{"role", "user"},
                    {"content", json::array({{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}})}},
                   {{"role", "assistant"}, {"tool_calls", json::array()}}});
  EXPECT_EQ(owl::chat::plain_chat_prompt(messages), "system: Rules.\nuser: ab\nassistant: \nassistant:");
}

TEST(EncodeChatPrompt, ABosWrittenByTheTemplateIsNotDoubled) {
  auto source = owl::open_model_source(owl::test::shared_path("models/stories260K/stories260K-f32.gguf"));
  auto tok = owl::Tokenizer::from_gguf(*source->gguf_file());
  const int32_t bos = tok->bos_id();
  ASSERT_GE(bos, 0);
  std::vector<int32_t> plain = owl::chat::encode_chat_prompt(*tok, "user: hi");
  ASSERT_FALSE(plain.empty());
  EXPECT_EQ(plain[0], bos);
  std::vector<int32_t> with_bos = owl::chat::encode_chat_prompt(*tok, tok->token_text(bos) + "user: hi");
  ASSERT_GE(with_bos.size(), 2u);
  EXPECT_EQ(with_bos[0], bos);
  EXPECT_NE(with_bos[1], bos);
  EXPECT_EQ(tok->encode(tok->token_text(bos) + "user: hi", true)[1], bos);  // what encoding alone gives
}

}  // namespace
