// `owl serve`: the OpenAI-compatible HTTP API over the generation engine.
//   POST /v1/chat/completions   POST /v1/completions   GET /v1/models
//   GET /health                 GET /metrics (Prometheus)
// Requests are validated (api.h), turned into token prompts (chat template or
// the fallback format), queued on the Engine, and answered whole or as
// server-sent events. A client that goes away cancels its request. Models without a
// chat template use the plain "role: content" format (chat::plain_chat_prompt).
#pragma once
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "chat/chat_template.h"
#include "chat/reasoning.h"
#include "runtime/engine.h"
#include "runtime/grammar_vocab.h"
#include "server/api.h"
#include "server/http.h"
#include "server/metrics.h"

namespace owl {
class Tokenizer;
}

namespace owl::server {

struct ApiOptions {
  std::string model_id;            // the name /v1/models lists and requests may use
  std::string api_key;             // "" = no authentication
  int64_t default_max_tokens = 0;  // chat requests without max_tokens: 0 = to the end of the context
};

class ChatAnswer;  // server.cpp: a chat answer's text as it arrives

class OpenAIServer {
 public:
  // `tmpl` empty: the fallback chat format. The engine and tokenizer must outlive the server.
  OpenAIServer(Engine& engine, const Tokenizer& tok, std::optional<chat::ChatTemplate> tmpl, ApiOptions opts);
  virtual ~OpenAIServer() = default;
  void handle(const http::Request& req, http::Response& res);

  // The prompt text for a chat request (exposed for tests).
  std::string render_chat(const ChatParams& p) const;

 protected:
  // The hook a chat request's generation runs with: the thinking budget's when the request
  // sets one, else none. (Tests override it to script the generated tokens.)
  virtual std::shared_ptr<TokenHook> chat_hook(const ChatParams& p, chat::ReasoningStart start,
                                               const chat::ReasoningTags& tags) const;

 private:
  void handle_completions(const http::Request& req, http::Response& res);
  void handle_chat(const http::Request& req, http::Response& res);
  // The engine request for a chat (tokens, sampling, max_tokens within the context, stops).
  GenerationRequest chat_request(const ChatParams& p, const std::string& prompt) const;
  void answer_chat(GenerationStream& stream, ChatAnswer& answer, const std::string& id, int64_t created,
                   http::Response& res);
  void stream_chat(const ChatParams& p, GenerationStream& stream, ChatAnswer& answer, const std::string& id,
                   int64_t created, http::Response& res);
  void check_model(const std::string& model) const;
  nlohmann::ordered_json model_object() const;  // the served model as /v1/models lists it
  chat::ReasoningTags reasoning_tags() const;
  // The request's grammar as a constraint; the vocabulary trie is built on first use.
  std::shared_ptr<GrammarConstraint> constraint(const CommonParams& p, std::string start_after,
                                                std::vector<int32_t> open_ids) const;

  Engine& engine_;
  const Tokenizer& tok_;
  std::optional<chat::ChatTemplate> tmpl_;
  ApiOptions opts_;
  Metrics metrics_;
  int64_t created_;
  mutable std::once_flag vocab_once_;
  mutable std::shared_ptr<const grammar::Vocabulary> vocab_;
};

}  // namespace owl::server
