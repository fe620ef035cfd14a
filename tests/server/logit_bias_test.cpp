// OpenAI's logit_bias through `owl serve` with the real stories260K model: +100 forces a token,
// -100 bans one, greedy decoding included; malformed maps are 400s naming logit_bias.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "formats/gguf.h"
#include "model/source.h"
#include "server_fixture.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

class LogitBias : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string model = shared_path("models/stories260K/stories260K-f32.gguf");
    auto source = open_model_source(model);
    tok_ = Tokenizer::from_gguf(*source->gguf_file()).release();
    server_ = new ServerProcess(model, {"--kv-type", "f32"});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete tok_;
    server_ = nullptr;
    tok_ = nullptr;
  }
  static HttpResult complete(const json& extra) {
    json body = {{"prompt", "Once upon a time"}, {"temperature", 0}, {"max_tokens", 4}, {"ignore_eos", true}};
    body.update(extra);
    return http_post(server_->port(), "/v1/completions", body.dump());
  }
  static ServerProcess* server_;
  static Tokenizer* tok_;
};
ServerProcess* LogitBias::server_ = nullptr;
Tokenizer* LogitBias::tok_ = nullptr;

TEST_F(LogitBias, PlusHundredForcesTheTokenUnderGreedy) {
  const int32_t forced = tok_->encode("Lily").back();
  const std::string piece = tok_->token_bytes(forced);
  ASSERT_FALSE(piece.empty());
  auto r = complete({{"logit_bias", {{std::to_string(forced), 100}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"][0]["text"], piece + piece + piece + piece) << "forced token " << forced;
  EXPECT_EQ(r.json()["usage"]["completion_tokens"], 4);
  // Chat samples through the same path.
  json chat = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
               {"temperature", 0},
               {"max_tokens", 3},
               {"ignore_eos", true},
               {"logit_bias", {{std::to_string(forced), 100}}}};
  auto c = http_post(server_->port(), "/v1/chat/completions", chat.dump());
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.json()["usage"]["completion_tokens"], 3);
}

TEST_F(LogitBias, MinusHundredBansGreedysFirstChoice) {
  auto plain = complete({{"max_tokens", 1}});
  ASSERT_EQ(plain.status, 200) << plain.body;
  const std::string first = plain.json()["choices"][0]["text"];
  ASSERT_FALSE(first.empty());
  // Ban every token that spells greedy's first choice.
  json bans = json::object();
  for (int32_t id = 0; id < tok_->n_vocab(); ++id)
    if (tok_->token_bytes(id) == first) bans[std::to_string(id)] = -100;
  ASSERT_FALSE(bans.empty()) << "no token spells '" << first << "'";
  auto r = complete({{"max_tokens", 1}, {"logit_bias", bans}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.json()["choices"][0]["text"], first);
}

TEST_F(LogitBias, BadMapsAreRefusedNamingTheField) {
  const json bad_maps[] = {
      json::array({1, 2}),                     // not an object
      {{"abc", 5}},                            // key not a token id
      {{"-3", 5}},                             // negative id
      {{"1.5", 5}},                            // non-integer id
      {{std::to_string(tok_->n_vocab()), 5}},  // outside the vocabulary
      {{"1", 100.5}},                          // out of range
      {{"1", -101}},                           // out of range
      {{"1", "5"}},                            // not a number
  };
  for (const json& m : bad_maps) {
    auto r = complete({{"logit_bias", m}});
    EXPECT_EQ(r.status, 400) << m.dump() << " -> " << r.body;
    EXPECT_EQ(r.json()["error"]["param"], "logit_bias") << m.dump();
  }
  json chat = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"logit_bias", {{"x", 1}}}};
  auto c = http_post(server_->port(), "/v1/chat/completions", chat.dump());
  EXPECT_EQ(c.status, 400) << c.body;
  EXPECT_EQ(c.json()["error"]["param"], "logit_bias");
}

}  // namespace
}  // namespace owl::test
