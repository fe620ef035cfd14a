#include "server/server.h"

#include <chrono>
#include <ctime>
#include <functional>
#include <random>

#include "chat/reasoning.h"
#include "chat/thinking_budget.h"
#include "chat/tool_calls.h"
#include "server/anthropic_api.h"
#include "server/api.h"
#include "server/chat_output.h"
#include "server/ollama_api.h"
#include "server/web_assets.h"
#include "text/tokenizer.h"

namespace owl::server {

using json = nlohmann::ordered_json;

namespace {

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % 62];
  return id;
}

int64_t now_seconds() { return static_cast<int64_t>(std::time(nullptr)); }

void send_json(http::Response& res, int status, const json& body) { res.send(status, "application/json", body.dump()); }

void send_error(http::Response& res, const ApiError& e) {
  res.send(e.status, "application/json", error_body(e),
           e.status == 401 ? std::vector<std::string>{"WWW-Authenticate: Bearer"} : std::vector<std::string>{});
}

bool write_sse(http::Response& res, const json& data) { return res.write("data: " + data.dump() + "\n\n"); }

// Every answer and stream chunk: one choice that holds `key` (text, delta or message).
json envelope(const std::string& id, const char* object, int64_t created, const std::string& model, const char* key,
              const json& value, const json& finish) {
  return json{
      {"id", id},
      {"object", object},
      {"created", created},
      {"model", model},
      {"choices", json::array({{{"index", 0}, {key, value}, {"logprobs", nullptr}, {"finish_reason", finish}}})}};
}

// Ends a stream: when `usage` is set, a copy of `chunk` with no choices that carries it; then [DONE].
void end_sse(http::Response& res, json chunk, const json& usage) {
  if (!usage.is_null()) {
    chunk["choices"] = json::array();
    chunk["usage"] = usage;
    write_sse(res, chunk);
  }
  res.write("data: [DONE]\n\n");
  res.end_stream();
}

// Queues a request on the engine, mapping the engine's refusals onto HTTP errors.
std::shared_ptr<GenerationStream> submit(Engine& engine, GenerationRequest g) {
  try {
    return engine.submit(std::move(g));
  } catch (const QueueFullError& e) {
    throw ApiError(429, e.what(), "server_error", "", "queue_full");
  } catch (const InvalidPromptError& e) {
    throw ApiError(400, e.what(), "invalid_request_error", "prompt", "invalid_prompt");
  } catch (const RequestTooLargeError& e) {
    throw ApiError(400, e.what(), "invalid_request_error", "max_tokens", "context_length_exceeded");
  }
}

// Feeds a stream's events to on_event until the last one (returned). When the client goes
// away, or on_event says so (a failed write), the request is cancelled: nullopt.
std::optional<GenerationEvent> pump(GenerationStream& stream, http::Response& res,
                                    const std::function<bool(const GenerationEvent&)>& on_event) {
  for (;;) {
    for (auto& e : stream.wait(std::chrono::milliseconds(20))) {
      if (!on_event(e)) {
        stream.cancel();
        return std::nullopt;
      }
      if (e.finish != FinishReason::None) return std::move(e);
    }
    if (res.client_gone()) {
      stream.cancel();
      return std::nullopt;
    }
  }
}

json usage_json(const GenerationEvent& last, int64_t reasoning_tokens, bool chat) {
  json u = {{"prompt_tokens", last.prompt_tokens},
            {"completion_tokens", last.completion_tokens},
            {"total_tokens", last.prompt_tokens + last.completion_tokens},
            {"prompt_tokens_details", {{"cached_tokens", last.cached_tokens}}}};
  if (chat) u["completion_tokens_details"] = {{"reasoning_tokens", reasoning_tokens}};
  return u;
}

// The engine ended the request with an error (the model failed): an OpenAI error.
ApiError generation_error(const GenerationEvent& e) {
  return ApiError(500, e.error.empty() ? "generation failed" : e.error, "server_error", "", "generation_failed");
}

}  // namespace

OpenAIServer::OpenAIServer(Engine& engine, const Tokenizer& tok, std::optional<chat::ChatTemplate> tmpl,
                           ApiOptions opts)
    : engine_(engine), tok_(tok), tmpl_(std::move(tmpl)), opts_(std::move(opts)), created_(now_seconds()) {
  for (int32_t id = 0; id < tok_.n_vocab(); ++id)
    max_token_bytes_ = std::max(max_token_bytes_, tok_.token_text(id).size());
  ollama_ = std::make_unique<OllamaApi>(*this);
  anthropic_ = std::make_unique<AnthropicApi>(*this);
}

OpenAIServer::~OpenAIServer() = default;

bool OpenAIServer::reasons() const { return tmpl_ && tmpl_->source().find(reasoning_tags().open) != std::string::npos; }

bool OpenAIServer::calls_tools() const { return tmpl_ && tmpl_->source().find("tools") != std::string::npos; }

void OpenAIServer::check_prompt_bytes(size_t bytes, const char* param) const {
  // One token covers at most its vocabulary string's bytes of input (byte-level and "▁" forms
  // are never shorter than the text they stand for); the factor 4 leaves room for normalisers
  // that shrink text. A prompt with more bytes than this can hold in the context never fits.
  const size_t limit = 4 * max_token_bytes_ * static_cast<size_t>(engine_.n_ctx());
  if (bytes > limit)
    throw ApiError(400,
                   "the prompt is " + std::to_string(bytes) + " bytes, more than this model's context of " +
                       std::to_string(engine_.n_ctx()) + " tokens can hold; shorten it",
                   "invalid_request_error", param, "context_length_exceeded");
}

chat::ReasoningTags OpenAIServer::reasoning_tags() const {
  return tmpl_ ? chat::reasoning_tags_for_template(tmpl_->source()) : chat::ReasoningTags{};
}

void OpenAIServer::check_model(const std::string& model) const {
  if (!model.empty() && model != opts_.model_id)
    throw ApiError(404, "the model '" + model + "' does not exist; this server serves '" + opts_.model_id + "'",
                   "invalid_request_error", "model", "model_not_found");
}

void OpenAIServer::check_logit_bias(const SamplerParams& sampling) const {
  for (const auto& [id, bias] : sampling.logit_bias)
    if (id < 0 || id >= tok_.n_vocab())
      throw ApiError(400,
                     "'logit_bias': token " + std::to_string(id) + " is outside the vocabulary (0.." +
                         std::to_string(tok_.n_vocab() - 1) + ")",
                     "invalid_request_error", "logit_bias", "invalid_value");
}

nlohmann::ordered_json OpenAIServer::model_object() const {
  return json{{"id", opts_.model_id},
              {"object", "model"},
              {"created", created_},
              {"owned_by", "owl"},
              {"meta", {{"n_ctx", engine_.n_ctx()}, {"n_vocab", tok_.n_vocab()}}}};
}

void OpenAIServer::check_api_key(const http::Request& req) const {
  if (opts_.api_key.empty()) return;
  // Anthropic's clients send the key as "x-api-key: KEY"; everyone else as a bearer token.
  std::string auth = req.header("authorization");
  if (auth.empty() && !req.header("x-api-key").empty()) auth = "Bearer " + req.header("x-api-key");
  if (auth.empty())
    throw ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", "invalid_request_error", "",
                   "invalid_api_key");
  // The scheme is case-insensitive (RFC 9110 11.1): "Bearer", "bearer", "BEARER".
  size_t sp = auth.find(' ');
  std::string scheme = auth.substr(0, sp);
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t from = sp == std::string::npos ? auth.size() : auth.find_first_not_of(' ', sp);
  const std::string key = from == std::string::npos ? "" : auth.substr(from);
  const std::string& expected = opts_.api_key;
  // Compare every byte so timing does not reveal how much of the key matched.
  unsigned diff = static_cast<unsigned>(scheme != "bearer") | static_cast<unsigned>(key.size() != expected.size());
  for (size_t i = 0; i < key.size() && i < expected.size(); ++i) diff |= static_cast<unsigned>(key[i] ^ expected[i]);
  if (diff) throw ApiError(401, "incorrect API key", "invalid_request_error", "", "invalid_api_key");
}

void OpenAIServer::handle(const http::Request& req, http::Response& res) {
  static const char* kEndpoints[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"};
  std::string label = "other";
  for (const char* e : kEndpoints)
    if (req.path == e) label = e;
  if (req.path.starts_with("/v1/models/")) label = "/v1/models";
  if (req.path.starts_with("/api/")) label = "/api";
  if (req.path.starts_with("/v1/messages")) label = "/v1/messages";
  if (req.path == "/" || req.path.starts_with("/web/")) label = "/";
  // Counted as the answer's last bytes go out, so a client that reads /metrics right after its
  // answer sees it; an answer never sent (client gone) is counted at the end.
  bool counted = false;
  res.on_finish([&](int status) {
    counted = true;
    metrics_.count_request(label, status);
  });
  const bool ollama = req.path.starts_with("/api/");
  const bool anthropic = req.path.starts_with("/v1/messages");
  try {
    if (serve_web_page(req, res)) {
      label = "/";
    } else if (req.path == "/health") {
      if (req.method != "GET")
        throw ApiError(405, "use GET /health", "invalid_request_error", "", "method_not_allowed");
      send_json(res, 200, {{"status", "ok"}});
    } else {
      check_api_key(req);
      auto want = [&](const char* method) {
        if (req.method != method)
          throw ApiError(405, std::string("use ") + method + " " + req.path, "invalid_request_error", "",
                         "method_not_allowed");
      };
      if (req.path == "/v1/chat/completions" || req.path == "/chat/completions") {
        want("POST");
        handle_chat(req, res);
      } else if (req.path == "/v1/completions" || req.path == "/completions") {
        want("POST");
        handle_completions(req, res);
      } else if (req.path == "/v1/models" || req.path == "/models") {
        want("GET");
        send_json(res, 200, {{"object", "list"}, {"data", json::array({model_object()})}});
      } else if (req.path.starts_with("/v1/models/") || req.path.starts_with("/models/")) {
        want("GET");
        const std::string id = req.path.substr(req.path.find("/models/") + 8);
        if (id != opts_.model_id)
          throw ApiError(404, "the model '" + id + "' does not exist; this server serves '" + opts_.model_id + "'",
                         "invalid_request_error", "model", "model_not_found");
        send_json(res, 200, model_object());
      } else if (ollama) {
        ollama_->handle(req, res);
      } else if (anthropic) {
        anthropic_->handle(req, res);
      } else if (req.path == "/metrics") {
        want("GET");
        res.send(200, "text/plain; version=0.0.4", metrics_.render(engine_.stats(), opts_.expert_cache.get()));
      } else {
        throw ApiError(404,
                       "no route for " + req.method + " " + req.path +
                           "; endpoints: /v1/chat/completions, /v1/completions, /v1/models, /v1/messages, /api/chat, "
                           "/api/generate, /api/tags, /health, /metrics",
                       "invalid_request_error", "", "not_found");
      }
    }
  } catch (const std::exception& e) {
    const auto* api = dynamic_cast<const ApiError*>(&e);
    const ApiError err = api ? *api : ApiError(500, std::string("internal error: ") + e.what(), "server_error");
    // Each API answers errors in its own clients' shape.
    if (res.sent()) {
    } else if (ollama) {
      res.send(err.status, "application/json", OllamaApi::error_body(err));
    } else if (anthropic) {
      res.send(err.status, "application/json", AnthropicApi::error_body(err));
    } else {
      send_error(res, err);
    }
  }
  res.on_finish(nullptr);  // the captures above end here
  if (!counted) metrics_.count_request(label, res.status());
}

// ---- /v1/completions ------------------------------------------------------------------------

void OpenAIServer::handle_completions(const http::Request& req, http::Response& res) {
  CompletionParams p = parse_completion_request(req.body);
  check_model(p.model);
  check_logit_bias(p.sampling);
  check_prompt_bytes(p.prompt_text.size(), "prompt");
  GenerationRequest g;
  g.prompt = p.prompt_ids.empty() ? tok_.encode(p.prompt_text, /*add_special=*/true) : p.prompt_ids;
  g.sampling = p.sampling;
  g.max_tokens = *p.max_tokens;
  g.stop = p.stop;
  g.ignore_eos = p.ignore_eos;
  g.speculate = p.speculative;
  g.constraint = constraint(p, "", {});
  std::string echo = p.echo ? (p.prompt_ids.empty() ? p.prompt_text : tok_.decode(p.prompt_ids)) : "";
  auto stream = submit(engine_, std::move(g));
  const std::string id = random_id("cmpl-");
  const int64_t created = now_seconds();
  auto chunk = [&](const std::string& text, const json& finish) {
    return envelope(id, "text_completion", created, opts_.model_id, "text", text, finish);
  };

  if (!p.stream) {
    std::string text = echo;
    auto last = pump(*stream, res, [&](const GenerationEvent& e) {
      text += e.text;
      return true;
    });
    if (!last) return metrics_.count_disconnect();
    if (last->finish == FinishReason::Error) throw generation_error(*last);
    json body = chunk(text, finish_reason_name(last->finish));
    body["usage"] = usage_json(*last, 0, false);
    return send_json(res, 200, body);
  }

  if (!res.begin_stream(200, "text/event-stream")) return metrics_.count_disconnect(), stream->cancel();
  if (!echo.empty()) write_sse(res, chunk(echo, nullptr));
  auto last = pump(*stream, res, [&](const GenerationEvent& e) {
    if (e.finish == FinishReason::Error) return true;
    if (e.text.empty() && e.finish == FinishReason::None) return true;
    return write_sse(
        res, chunk(e.text, e.finish == FinishReason::None ? json(nullptr) : json(finish_reason_name(e.finish))));
  });
  if (!last) return metrics_.count_disconnect();
  const bool failed = last->finish == FinishReason::Error;
  if (failed) write_sse(res, json::parse(error_body(generation_error(*last))));
  end_sse(res, chunk("", nullptr), !failed && p.include_usage ? usage_json(*last, 0, false) : json());
}

// ---- /v1/chat/completions -------------------------------------------------------------------

std::string OpenAIServer::render_chat(const ChatParams& p) const {
  json tools = p.tools;
  if (p.tool_choice == "none") tools = nullptr;
  if (p.tool_choice == "function") {
    json only = json::array();
    for (const auto& t : p.tools)
      if (t["function"]["name"] == p.tool_choice_name) only.push_back(t);
    if (only.empty())
      throw ApiError(400, "'tool_choice' names the function '" + p.tool_choice_name + "', which is not in 'tools'",
                     "invalid_request_error", "tool_choice");
    tools = only;
  }
  if (!tmpl_) return chat::plain_chat_prompt(p.messages);
  chat::ChatInputs in;
  in.messages = json::array();
  for (const auto& m : p.messages) {
    json msg = m;
    if (msg.contains("content") && msg["content"].is_array()) msg["content"] = chat::message_text(msg["content"]);
    // An assistant turn that only called tools has content null; templates test it as a string
    // ("'</think>' in content"), so it is rendered as empty text.
    if (!msg.contains("content") || msg["content"].is_null()) msg["content"] = "";
    if (msg["role"] == "developer") msg["role"] = "system";
    in.messages.push_back(std::move(msg));
  }
  in.tools = tools;
  in.add_generation_prompt = true;
  in.extra = p.template_kwargs;
  if (p.enable_thinking) in.extra["enable_thinking"] = *p.enable_thinking;
  in.bos_token = tmpl_->bos_token();
  in.eos_token = tmpl_->eos_token();
  try {
    if (p.enable_thinking == false) return chat::render_without_thinking(*tmpl_, in, reasoning_tags()).prompt;
    return tmpl_->render(in);
  } catch (const jinja::TemplateError& e) {
    throw ApiError(400, std::string("the chat template refused these messages: ") + e.message(),
                   "invalid_request_error", "messages", "template_error");
  }
}

// What a chat answer has produced so far: the model's text split into reasoning and content,
// with content that may be the start of a tool call held back until the call is complete.
class ChatAnswer {
 public:
  ChatAnswer(const ChatParams& p, chat::ReasoningStart start, const chat::ReasoningTags& tags,
             chat::ToolCallFormat format)
      : tools_(p.tools),
        tools_active_(!p.tools.is_null() && p.tool_choice != "none"),
        format_(format),
        parser_(start, tags) {}

  // Takes an event's text; returns the delta that may be streamed now.
  chat::ReasoningDelta add(const GenerationEvent& e) {
    const bool last = e.finish != FinishReason::None;
    const bool was_inside = parser_.in_reasoning();
    chat::ReasoningDelta d = parser_.feed(e.text);
    if (last) {
      chat::ReasoningDelta f = parser_.finish();
      d.reasoning += f.reasoning;
      d.content += f.content;
    }
    // Reasoning tokens are every generated token of the reasoning block, the <think> and
    // </think> markers included (OpenAI counts all tokens spent reasoning). Tokens that were
    // held while the start was undecided (a partial open tag) count once the block opens.
    if (was_inside || parser_.in_reasoning() || !d.reasoning.empty()) {
      reasoning_tokens_ += undecided_tokens_ + e.n_tokens;
      undecided_tokens_ = 0;
    } else if (parser_.undecided()) {
      undecided_tokens_ += e.n_tokens;
    } else {
      undecided_tokens_ = 0;
    }
    reasoning_ += d.reasoning;
    content_ += d.content;
    if (tools_active_) {
      size_t hold = last ? content_sent_ : std::max(content_sent_, chat::tool_call_hold_from(format_, content_));
      d.content = content_.substr(content_sent_, hold - content_sent_);
      content_sent_ = hold;
    } else {
      content_sent_ = content_.size();
    }
    return d;
  }

  // The whole content, with its tool calls parsed out (when tools are on).
  chat::ParsedOutput parse() {
    chat::ParsedOutput parsed;
    if (tools_active_)
      parsed = chat::parse_tool_calls(format_, content_, tools_, id_rng_() % 1000000000);
    else
      parsed.content = content_;
    return parsed;
  }

  // The held-back tail of a streamed answer: what the parsed calls leave of it is content.
  std::string unsent_content(const chat::ParsedOutput& parsed) const {
    if (parsed.tool_calls.empty()) return content_.substr(content_sent_);
    if (parsed.content.size() > content_sent_ &&
        parsed.content.compare(0, content_sent_, content_, 0, content_sent_) == 0)
      return parsed.content.substr(content_sent_);
    return "";
  }

  const std::string& reasoning() const { return reasoning_; }
  int64_t reasoning_tokens() const { return reasoning_tokens_; }

 private:
  json tools_;
  bool tools_active_;
  chat::ToolCallFormat format_;
  chat::ReasoningParser parser_;
  std::string reasoning_, content_;
  size_t content_sent_ = 0;  // streamed content so far
  int64_t reasoning_tokens_ = 0;
  int64_t undecided_tokens_ = 0;  // generated while the parser could not yet tell reasoning from content
  std::mt19937_64 id_rng_{std::random_device{}()};
};

namespace {

std::string chat_finish_reason(const GenerationEvent& last, const chat::ParsedOutput& parsed) {
  if (last.finish == FinishReason::Stop && !parsed.tool_calls.empty()) return "tool_calls";
  return finish_reason_name(last.finish);
}

// OpenAI's tool_calls array; streamed calls carry their index.
json tool_calls_json(const chat::ParsedOutput& parsed, bool with_index) {
  json calls = json::array();
  for (size_t i = 0; i < parsed.tool_calls.size(); ++i) {
    const auto& call = parsed.tool_calls[i];
    json c = with_index ? json{{"index", i}} : json::object();
    c.update(json{
        {"id", call.id}, {"type", "function"}, {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
    calls.push_back(std::move(c));
  }
  return calls;
}

}  // namespace

std::shared_ptr<GrammarConstraint> OpenAIServer::constraint(const CommonParams& p, std::string start_after,
                                                            std::vector<int32_t> open_ids) const {
  if (!p.grammar) return nullptr;
  std::call_once(vocab_once_,
                 [this] { vocab_ = std::make_shared<const grammar::Vocabulary>(runtime::grammar_vocabulary(tok_)); });
  return std::make_shared<GrammarConstraint>(p.grammar, vocab_, std::move(start_after), std::move(open_ids));
}

std::shared_ptr<TokenHook> OpenAIServer::chat_hook(const ChatParams& p, chat::ReasoningStart start,
                                                   const chat::ReasoningTags& tags) const {
  if (!p.thinking_budget) return nullptr;
  return std::make_shared<ThinkingBudgetHook>(tok_, *p.thinking_budget, start, tags);
}

GenerationRequest OpenAIServer::chat_request(const ChatParams& p, const std::string& prompt) const {
  GenerationRequest g;
  g.prompt = chat::encode_chat_prompt(tok_, prompt);
  g.sampling = p.sampling;
  int64_t room = engine_.n_ctx() - static_cast<int64_t>(g.prompt.size());
  if (p.max_tokens)
    g.max_tokens = *p.max_tokens;
  else
    g.max_tokens = opts_.default_max_tokens > 0 ? std::min(opts_.default_max_tokens, room) : room;
  if (room < 1)
    throw ApiError(400,
                   "the prompt is " + std::to_string(g.prompt.size()) + " tokens, but this model's context is " +
                       std::to_string(engine_.n_ctx()) + " tokens; shorten the messages",
                   "invalid_request_error", "messages", "context_length_exceeded");
  g.stop = p.stop;
  g.ignore_eos = p.ignore_eos;
  g.speculate = p.speculative;
  return g;
}

OpenAIServer::StartedChat OpenAIServer::start_chat(const ChatParams& p) {
  check_model(p.model);
  check_logit_bias(p.sampling);
  // The template adds text around the messages it renders; their content is a lower bound.
  size_t content_bytes = 0;
  for (const auto& m : p.messages)
    if (m.contains("content")) content_bytes += chat::message_text(m["content"]).size();
  check_prompt_bytes(content_bytes, "messages");
  const std::string prompt = render_chat(p);
  GenerationRequest g = chat_request(p, prompt);
  const chat::ReasoningTags tags = reasoning_tags();
  const chat::ReasoningStart start = chat::reasoning_start(prompt, tags);
  g.hook = chat_hook(p, start, tags);
  // A reasoning block stays free: the answer after it is constrained. When the model may open
  // the block itself, its first token may be the open tag.
  std::vector<int32_t> open_ids;
  std::string after = start == chat::ReasoningStart::InReasoning ? tags.close : "";
  if (start == chat::ReasoningStart::Detect) {
    if (auto id = tok_.token_id(tags.open)) {
      open_ids.push_back(*id);
      after = tags.close;
    }
  }
  g.constraint = constraint(p, after, open_ids);
  // Without a template the model has no native format; Hermes (<tool_call>{json}</tool_call>) is the most common.
  const chat::ToolCallFormat format =
      tmpl_ ? chat::tool_call_format_for_template(tmpl_->source()) : chat::ToolCallFormat::Hermes;
  g.keep_special = chat_marker_tokens(tok_, tags, format);
  const auto prompt_tokens = static_cast<int64_t>(g.prompt.size());
  auto stream = submit(engine_, std::move(g));
  return {std::move(stream), std::make_unique<ChatAnswer>(p, start, tags, format), prompt_tokens};
}

void OpenAIServer::handle_chat(const http::Request& req, http::Response& res) {
  ChatParams p = parse_chat_request(req.body);
  StartedChat chat = start_chat(p);
  const std::string id = random_id("chatcmpl-");
  const int64_t created = now_seconds();
  if (p.stream)
    stream_chat(p, *chat.stream, *chat.answer, id, created, res);
  else
    answer_chat(*chat.stream, *chat.answer, id, created, res);
}

int64_t OpenAIServer::count_chat_tokens(const ChatParams& p) const {
  check_model(p.model);
  return static_cast<int64_t>(chat::encode_chat_prompt(tok_, render_chat(p)).size());
}

std::optional<ChatOutcome> OpenAIServer::run_chat(const ChatParams& p, http::Response& res, const ChatCallbacks& cb) {
  StartedChat chat = start_chat(p);
  GenerationStream& stream = *chat.stream;
  ChatAnswer& answer = *chat.answer;
  if (cb.started && !cb.started(chat.prompt_tokens)) {
    stream.cancel();
    metrics_.count_disconnect();
    return std::nullopt;
  }
  auto last = pump(stream, res, [&](const GenerationEvent& e) {
    if (e.finish == FinishReason::Error) return true;
    chat::ReasoningDelta d = answer.add(e);
    if (!cb.delta || (d.reasoning.empty() && d.content.empty())) return true;
    return cb.delta(d);
  });
  if (!last) {
    metrics_.count_disconnect();
    return std::nullopt;
  }
  ChatOutcome out;
  out.last = *last;
  if (last->finish == FinishReason::Error) return out;
  out.parsed = answer.parse();
  out.reasoning = answer.reasoning();
  out.reasoning_tokens = answer.reasoning_tokens();
  out.unsent_content = answer.unsent_content(out.parsed);
  return out;
}

void OpenAIServer::answer_chat(GenerationStream& stream, ChatAnswer& answer, const std::string& id, int64_t created,
                               http::Response& res) {
  auto last = pump(stream, res, [&](const GenerationEvent& e) {
    answer.add(e);
    return true;
  });
  if (!last) return metrics_.count_disconnect();
  if (last->finish == FinishReason::Error) throw generation_error(*last);
  chat::ParsedOutput parsed = answer.parse();
  json message = {
      {"role", "assistant"},
      {"content", parsed.content.empty() && !parsed.tool_calls.empty() ? json(nullptr) : json(parsed.content)}};
  if (!answer.reasoning().empty()) message["reasoning_content"] = answer.reasoning();
  if (!parsed.tool_calls.empty()) message["tool_calls"] = tool_calls_json(parsed, false);
  json body =
      envelope(id, "chat.completion", created, opts_.model_id, "message", message, chat_finish_reason(*last, parsed));
  body["usage"] = usage_json(*last, answer.reasoning_tokens(), true);
  send_json(res, 200, body);
}

void OpenAIServer::stream_chat(const ChatParams& p, GenerationStream& stream, ChatAnswer& answer, const std::string& id,
                               int64_t created, http::Response& res) {
  auto chunk = [&](const json& delta, const json& finish) {
    return envelope(id, "chat.completion.chunk", created, opts_.model_id, "delta", delta, finish);
  };
  if (!res.begin_stream(200, "text/event-stream")) return metrics_.count_disconnect(), stream.cancel();
  write_sse(res, chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
  auto last = pump(stream, res, [&](const GenerationEvent& e) {
    if (e.finish == FinishReason::Error) return true;
    chat::ReasoningDelta d = answer.add(e);
    bool ok = true;
    if (!d.reasoning.empty()) ok = write_sse(res, chunk({{"reasoning_content", d.reasoning}}, nullptr));
    if (ok && !d.content.empty()) ok = write_sse(res, chunk({{"content", d.content}}, nullptr));
    return ok;
  });
  if (!last) return metrics_.count_disconnect();
  const bool failed = last->finish == FinishReason::Error;
  if (failed) {
    write_sse(res, json::parse(error_body(generation_error(*last))));
  } else {
    chat::ParsedOutput parsed = answer.parse();
    if (std::string rest = answer.unsent_content(parsed); !rest.empty())
      write_sse(res, chunk({{"content", rest}}, nullptr));
    if (!parsed.tool_calls.empty()) write_sse(res, chunk({{"tool_calls", tool_calls_json(parsed, true)}}, nullptr));
    write_sse(res, chunk(json::object(), chat_finish_reason(*last, parsed)));
  }
  end_sse(res, chunk(json::object(), nullptr),
          !failed && p.include_usage ? usage_json(*last, answer.reasoning_tokens(), true) : json());
}

}  // namespace owl::server
