// Chat logprobs of a reasoning answer (scripted tokens through Qwen3's template on stories260K):
// OpenAI reports content tokens only, so the reasoning block's tokens, its tags included, are
// left out, whole and streamed; the content tokens spell the content.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "chat/chat_template.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "model/source.h"
#include "runtime/engine.h"
#include "server/http.h"
#include "server/scripted_server.h"
#include "server/logprobs_expect.h"
#include "server/server_fixture.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

class ReasoningLogprobs : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = open_model_source(shared_path("models/stories260K/stories260K-f32.gguf"));
    tok_ = Tokenizer::from_gguf(*source_->gguf_file());
    model_ = Model::load(*source_);
    EngineOptions eo;
    eo.n_parallel = 2;
    eo.n_ctx = 1024;
    engine_ = std::make_unique<Engine>(*model_, *tok_, eo);
    server::ApiOptions ao;
    ao.model_id = "stories";
    chat::ChatTemplate tmpl(read_file(shared_path("chat-templates/qwen3/chat_template.jinja")), "<s>", "</s>");
    api_ = std::make_unique<ScriptedServer>(*engine_, *tok_, std::move(tmpl), ao, [](const server::ChatParams&) {
      return std::string("<think>A story is wanted.</think>Once there was a fox.");
    });
    http::ServerOptions ho;
    ho.port = 0;
    http_ =
        std::make_unique<http::Server>(ho, [this](const http::Request& q, http::Response& r) { api_->handle(q, r); });
    http_->listen();
    thread_ = std::thread([this] { http_->run(); });
  }
  void TearDown() override {
    http_->stop();
    thread_.join();
  }
  HttpResult ask(const json& extra) {
    json body = {{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
                 {"max_tokens", 100},
                 {"logprobs", true},
                 {"top_logprobs", 1}};
    body.update(extra);
    return http_post(http_->port(), "/v1/chat/completions", body.dump());
  }

  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<server::OpenAIServer> api_;
  std::unique_ptr<http::Server> http_;
  std::thread thread_;
};

std::string joined(const json& content) {
  std::string s;
  for (const auto& e : content) s += e["token"].get<std::string>();
  return s;
}

TEST_F(ReasoningLogprobs, ContentTokensOnlyWholeAndStreamed) {
  auto r = ask(json::object());
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = r.json();
  const json& message = j["choices"][0]["message"];
  EXPECT_EQ(message["reasoning_content"], "A story is wanted.");
  EXPECT_EQ(message["content"], "Once there was a fox.");
  const json& content = j["choices"][0]["logprobs"]["content"];
  const std::string text = joined(content);
  EXPECT_EQ(text.find("think"), std::string::npos) << text;
  EXPECT_EQ(text.find("story"), std::string::npos) << text;
  EXPECT_EQ(text, "Once there was a fox.");
  // Every generated token but the end is a reasoning token or a content token.
  EXPECT_EQ(j["usage"]["completion_tokens"].get<size_t>(),
            j["usage"]["completion_tokens_details"]["reasoning_tokens"].get<size_t>() + content.size() + 1);

  auto s = ask({{"stream", true}});
  ASSERT_EQ(s.status, 200) << s.body;
  json streamed = json::array();
  for (const auto& ev : sse_events(s.body)) {
    if (!ev.is_object() || ev["choices"].empty()) continue;
    const json& c = ev["choices"][0];
    if (c["delta"].contains("reasoning_content")) {
      EXPECT_TRUE(c["logprobs"].is_null()) << ev.dump();
    }
    if (c["logprobs"].is_object())
      for (const auto& e : c["logprobs"]["content"]) streamed.push_back(e);
  }
  expect_same_logprobs(streamed, content);
}

}  // namespace
}  // namespace owl::test
