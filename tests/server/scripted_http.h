// stories260K served over real HTTP on a free port by an OpenAI server object made in the test's
// process, so that the test can script what the model "generates" (scripted_server.h, or its own
// TokenHook): for the server and client tests of reasoning and tools, which stories260K cannot
// produce by itself.
#pragma once
#include <functional>
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

// stories260K (its own tokenizer), an engine of n_parallel slots of n_ctx tokens, and the API
// object make_api builds over them, listening on a free port until destroyed.
class InProcessHttpServer {
 public:
  using MakeApi = std::function<std::unique_ptr<server::OpenAIServer>(Engine&, const Tokenizer&)>;
  InProcessHttpServer(int n_parallel, int n_ctx, const MakeApi& make_api) {
    source_ = open_model_source(shared_path("models/stories260K/stories260K-f32.gguf"));
    tok_ = Tokenizer::from_gguf(*source_->gguf_file());
    model_ = Model::load(*source_);
    EngineOptions eo;
    eo.n_parallel = n_parallel;
    eo.n_ctx = n_ctx;
    engine_ = std::make_unique<Engine>(*model_, *tok_, eo);
    api_ = make_api(*engine_, *tok_);
    http::ServerOptions ho;
    ho.port = 0;
    http_ =
        std::make_unique<http::Server>(ho, [this](const http::Request& q, http::Response& r) { api_->handle(q, r); });
    http_->listen();
    thread_ = std::thread([this] { http_->run(); });
  }
  ~InProcessHttpServer() {
    http_->stop();
    thread_.join();
  }
  InProcessHttpServer(const InProcessHttpServer&) = delete;
  InProcessHttpServer& operator=(const InProcessHttpServer&) = delete;
  int port() const { return http_->port(); }
  Engine& engine() { return *engine_; }
  const Tokenizer& tokenizer() const { return *tok_; }

 private:
  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<server::OpenAIServer> api_;
  std::unique_ptr<http::Server> http_;
  std::thread thread_;
};

// A ScriptedServer behind Qwen3's chat template (its tool calls are Hermes-style
// <tool_call>{json}</tool_call>), model id "stories".
inline InProcessHttpServer::MakeApi scripted_qwen3_api(ScriptedServer::Script script, std::string architecture = "") {
  return [script = std::move(script), architecture = std::move(architecture)](Engine& engine, const Tokenizer& tok) {
    server::ApiOptions ao;
    ao.model_id = "stories";
    ao.architecture = architecture;
    chat::ChatTemplate tmpl(read_file(shared_path("chat-templates/qwen3/chat_template.jinja")), "<s>", "</s>");
    return std::make_unique<ScriptedServer>(engine, tok, std::move(tmpl), ao, script);
  };
}

// The client tests' server: a tool result gets an answer, a request with tools a call, anything
// else a thought then text.
class ScriptedHttpServer : public InProcessHttpServer {
 public:
  ScriptedHttpServer()
      : InProcessHttpServer(2, 4096,  // 4096: Qwen3's tool preamble and a tool turn in stories260K's small pieces
                            scripted_qwen3_api(
                                [](const server::ChatParams& p) {
                                  if (p.messages.back()["role"] == "tool")
                                    return std::string("It is 21 degrees in Paris.");
                                  if (!p.tools.is_null())
                                    return std::string(
                                        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                                        "\"Paris\"}}\n</tool_call>");
                                  return std::string("<think>A story is wanted.</think>Once there was a fox.");
                                },
                                "llama")) {}
};

}  // namespace owl::test
