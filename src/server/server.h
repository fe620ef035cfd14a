// `owl serve`: the OpenAI-compatible HTTP API over the generation engine.
//   POST /v1/chat/completions   POST /v1/completions   GET /v1/models
//   GET /health                 GET /metrics (Prometheus)
// and on the same port Ollama's API (/api/..., ollama_api.h) and Anthropic's Messages API
// (/v1/messages, anthropic_api.h), which answer through run_chat.
// Requests are validated (api.h), turned into token prompts (chat template or
// the fallback format), queued on the Engine, and answered whole or as
// server-sent events. A client that goes away cancels its request. Models without a
// chat template use the plain "role: content" format (chat::plain_chat_prompt).
#pragma once
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "chat/chat_template.h"
#include "chat/reasoning.h"
#include "chat/tool_calls.h"
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
  std::string architecture;        // the model's GGUF architecture ("llama", "qwen3"), as Ollama's /api/show tells
  int64_t model_bytes = 0;         // the model's size on disk, as Ollama's /api/tags tells
  // The cache of the routed experts that stream from the file (model/residency.h), or null when
  // all are resident: /metrics reports its counts as owl_expert_cache_*.
  std::shared_ptr<const ExpertCache> expert_cache;
};

class ChatAnswer;    // server.cpp: a chat answer's text as it arrives
class OllamaApi;     // ollama_api.h
class AnthropicApi;  // anthropic_api.h

// A finished chat answer, for the other APIs (Ollama, Anthropic) to shape.
struct ChatOutcome {
  GenerationEvent last;       // finish reason and token counts; finish Error: the model failed
  chat::ParsedOutput parsed;  // the content and its tool calls
  std::string reasoning;      // the whole reasoning text
  int64_t reasoning_tokens = 0;
  std::string unsent_content;  // content held back while streaming (a possible tool call's start)
};

// How run_chat reports a chat answer as it goes.
struct ChatCallbacks {
  // The engine took the request (a streamed answer's head goes out now); false: the client is gone.
  std::function<bool(int64_t prompt_tokens)> started;
  // A piece of reasoning and/or content that may be streamed now; false: the client is gone.
  std::function<bool(const chat::ReasoningDelta&)> delta;
};

class OpenAIServer {
 public:
  // `tmpl` empty: the fallback chat format. The engine and tokenizer must outlive the server.
  OpenAIServer(Engine& engine, const Tokenizer& tok, std::optional<chat::ChatTemplate> tmpl, ApiOptions opts);
  virtual ~OpenAIServer();
  void handle(const http::Request& req, http::Response& res);

  // The prompt text for a chat request (exposed for tests).
  std::string render_chat(const ChatParams& p) const;

  // For the Ollama and Anthropic front ends, which speak in ChatParams too.
  // Runs a chat request to its end; nullopt when the client went away (the request is cancelled).
  // Refusals (bad model, prompt too long, queue full) are thrown as ApiError before `started`.
  std::optional<ChatOutcome> run_chat(const ChatParams& p, http::Response& res, const ChatCallbacks& cb);
  // The prompt's length in tokens once the chat template has rendered it.
  int64_t count_chat_tokens(const ChatParams& p) const;
  const ApiOptions& options() const { return opts_; }
  const std::optional<chat::ChatTemplate>& chat_template() const { return tmpl_; }
  int64_t n_ctx() const { return engine_.n_ctx(); }
  int64_t created() const { return created_; }
  // Whether the chat template reasons (has thinking tags) and calls tools.
  bool reasons() const;
  bool calls_tools() const;

 protected:
  // The hook a chat request's generation runs with: the thinking budget's when the request
  // sets one, else none. (Tests override it to script the generated tokens.)
  virtual std::shared_ptr<TokenHook> chat_hook(const ChatParams& p, chat::ReasoningStart start,
                                               const chat::ReasoningTags& tags) const;

 private:
  void handle_completions(const http::Request& req, http::Response& res);
  void handle_chat(const http::Request& req, http::Response& res);
  // A queued chat request: per choice (n) its output stream and the answer that reads it; its
  // prompt's length.
  struct StartedChat {
    std::vector<std::shared_ptr<GenerationStream>> streams;
    std::vector<std::unique_ptr<ChatAnswer>> answers;
    int64_t prompt_tokens = 0;
  };
  // Checks, renders and queues a chat request.
  StartedChat start_chat(const ChatParams& p);
  void check_api_key(const http::Request& req) const;
  // The engine request for a chat (tokens, sampling, max_tokens within the context, stops).
  GenerationRequest chat_request(const ChatParams& p, const std::string& prompt) const;
  void answer_chat(const ChatParams& p, StartedChat& chat, const std::string& id, int64_t created, http::Response& res);
  void stream_chat(const ChatParams& p, StartedChat& chat, const std::string& id, int64_t created, http::Response& res);
  void check_model(const std::string& model) const;
  // Refuses more choices (n) than the engine runs sequences at once.
  void check_choices(const CommonParams& p) const;
  // Refuses a logit_bias entry for a token id the served vocabulary does not have.
  void check_logit_bias(const SamplerParams& sampling) const;
  // Refuses a prompt of `bytes` bytes that cannot fit the context whatever it tokenizes to, before
  // any template or tokenizer work (a megabyte prompt would cost seconds of CPU to refuse).
  void check_prompt_bytes(size_t bytes, const char* param) const;
  nlohmann::ordered_json model_object() const;  // the served model as /v1/models lists it
  chat::ReasoningTags reasoning_tags() const;
  // The request's grammar as a constraint; the vocabulary trie is built on first use.
  std::shared_ptr<GrammarConstraint> constraint(const CommonParams& p, std::string start_after,
                                                std::vector<int32_t> open_ids) const;
  // tool_choice required / a named function as a constraint on the format's calls (tool_choice.h);
  // null when the request enforces no call. Its vocabulary lets the format's marker tokens through.
  std::shared_ptr<GrammarConstraint> tool_constraint(const ChatParams& p, chat::ToolCallFormat format,
                                                     const std::vector<int32_t>& markers, std::string start_after,
                                                     std::vector<int32_t> open_ids) const;

  Engine& engine_;
  const Tokenizer& tok_;
  std::optional<chat::ChatTemplate> tmpl_;
  chat::ToolTurnStyle tool_turn_style_;  // how the template wants past tool calls (chat_template.h)
  ApiOptions opts_;
  Metrics metrics_;
  int64_t created_;
  size_t max_token_bytes_ = 1;  // the longest vocabulary string, in bytes
  std::unique_ptr<OllamaApi> ollama_;
  std::unique_ptr<AnthropicApi> anthropic_;
  mutable std::once_flag vocab_once_;
  mutable std::shared_ptr<const grammar::Vocabulary> vocab_;
  mutable std::once_flag tool_vocab_once_;
  mutable std::shared_ptr<const grammar::Vocabulary> tool_vocab_;
};

}  // namespace owl::server
