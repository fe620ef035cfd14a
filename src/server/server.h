// `owl serve`: the OpenAI-compatible HTTP API over the generation engine.
//   POST /v1/chat/completions   POST /v1/completions   GET /v1/models
//   GET /health                 GET /metrics (Prometheus)
// Requests are validated (api.h), turned into token prompts (chat template or
// the fallback format below), queued on the Engine, and answered whole or as
// server-sent events. A client that goes away cancels its request.
//
// Fallback chat format, for models without a chat template: each message as
// "<role>: <content>\n" (system, user, assistant, tool), then "assistant:".
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "chat/chat_template.h"
#include "chat/reasoning.h"
#include "runtime/engine.h"
#include "server/api.h"
#include "server/http.h"
#include "server/metrics.h"

namespace owl {
class Tokenizer;
}

namespace owl::server {

struct ApiOptions {
  std::string model_id;           // the name /v1/models lists and requests may use
  std::string api_key;            // "" = no authentication
  int64_t default_max_tokens = 0; // chat requests without max_tokens: 0 = to the end of the context
  // Tests only: a hook given to every chat request (scripts the generated tokens through
  // the real engine, to exercise the output parsers with text a small model cannot write).
  std::function<std::shared_ptr<TokenHook>(const ChatParams&)> chat_hook_for_tests;
};

class OpenAIServer {
 public:
  // `tmpl` empty: the fallback chat format. The engine and tokenizer must outlive the server.
  OpenAIServer(Engine& engine, const Tokenizer& tok, std::optional<chat::ChatTemplate> tmpl, ApiOptions opts);
  void handle(const http::Request& req, http::Response& res);

  // The prompt text for a chat request (exposed for tests).
  std::string render_chat(const ChatParams& p) const;

 private:
  void handle_completions(const http::Request& req, http::Response& res);
  void handle_chat(const http::Request& req, http::Response& res);
  void check_model(const std::string& model) const;
  chat::ReasoningTags reasoning_tags() const;

  Engine& engine_;
  const Tokenizer& tok_;
  std::optional<chat::ChatTemplate> tmpl_;
  ApiOptions opts_;
  Metrics metrics_;
  int64_t created_;
};

}  // namespace owl::server
