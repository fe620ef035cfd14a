// stories260K behind Qwen3's chat template, served over real HTTP on a free port with each
// chat's generation scripted (scripted_server.h): a tool result gets an answer, a request with
// tools a call, anything else a thought then text. For the client tests of reasoning and tools,
// which stories260K cannot produce by itself.
#pragma once
#include <memory>
#include <string>
#include <thread>

#include "chat/chat_template.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "server/http.h"
#include "server/scripted_server.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace owl::test {

class ScriptedHttpServer {
 public:
  ScriptedHttpServer() {
    source_ = open_model_source(shared_path("models/stories260K/stories260K-f32.gguf"));
    tok_ = Tokenizer::from_gguf(*source_->gguf_file());
    model_ = Model::load(*source_);
    EngineOptions eo;
    eo.n_parallel = 2;
    eo.n_ctx = 4096;  // Qwen3's tool preamble and a tool turn in stories260K's small pieces
    engine_ = std::make_unique<Engine>(*model_, *tok_, eo);
    server::ApiOptions ao;
    ao.model_id = "stories";
    ao.architecture = "llama";
    chat::ChatTemplate tmpl(read_file(shared_path("chat-templates/qwen3/chat_template.jinja")), "<s>", "</s>");
    api_ = std::make_unique<ScriptedServer>(*engine_, *tok_, std::move(tmpl), ao, [](const server::ChatParams& p) {
      if (p.messages.back()["role"] == "tool") return std::string("It is 21 degrees in Paris.");
      if (!p.tools.is_null())
        return std::string(
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>");
      return std::string("<think>A story is wanted.</think>Once there was a fox.");
    });
    http::ServerOptions ho;
    ho.port = 0;
    http_ =
        std::make_unique<http::Server>(ho, [this](const http::Request& q, http::Response& r) { api_->handle(q, r); });
    http_->listen();
    thread_ = std::thread([this] { http_->run(); });
  }
  ~ScriptedHttpServer() {
    http_->stop();
    thread_.join();
  }
  ScriptedHttpServer(const ScriptedHttpServer&) = delete;
  ScriptedHttpServer& operator=(const ScriptedHttpServer&) = delete;
  int port() const { return http_->port(); }

 private:
  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<server::OpenAIServer> api_;
  std::unique_ptr<http::Server> http_;
  std::thread thread_;
};

}  // namespace owl::test
