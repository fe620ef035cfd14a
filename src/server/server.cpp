#include "server/server.h"

#include <chrono>
#include <ctime>
#include <functional>
#include <random>

#include "chat/reasoning.h"
#include "chat/thinking_budget.h"
#include "chat/tool_call_stream.h"
#include "chat/tool_calls.h"
#include "server/anthropic_api.h"
#include "server/api.h"
#include "server/chat_output.h"
#include "server/choices.h"
#include "server/logprobs_json.h"
#include "server/ollama_api.h"
#include "server/tool_choice.h"
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

// submit() for the choices of one request, queued as a group.
std::vector<std::shared_ptr<GenerationStream>> submit_choices(Engine& engine, std::vector<GenerationRequest> reqs) {
  if (reqs.size() == 1) return {submit(engine, std::move(reqs.front()))};
  try {
    return engine.submit_group(std::move(reqs));
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
  if (tmpl_) tool_turn_style_ = chat::tool_turn_style(*tmpl_);
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
  check_choices(p);
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
  auto streams = submit_choices(
      engine_, choice_requests(std::move(g), p, [&](GenerationRequest& c) { c.constraint = constraint(p, "", {}); }));
  const size_t n = streams.size();
  const std::string id = random_id("cmpl-");
  const int64_t created = now_seconds();
  // logprobs echo is refused, so text offsets count from the start of the generated text.
  std::vector<int64_t> offsets(n, 0);
  auto logprobs = [&](size_t i, std::span<const TokenLogprob> lps) {
    return p.logprobs < 0 ? json(nullptr) : completion_logprobs_json(tok_, lps, offsets[i]);
  };
  auto chunk = [&](size_t i, const std::string& text, const json& finish, const json& lp) {
    json c = envelope(id, "text_completion", created, opts_.model_id, "text", text, finish);
    c["choices"][0] = choice_json(i, "text", text, lp, finish);
    return c;
  };

  if (!p.stream) {
    std::vector<std::string> texts(n, echo);
    std::vector<std::vector<TokenLogprob>> lps(n);
    auto lasts = pump_choices(streams, res, [&](size_t i, const GenerationEvent& e) {
      texts[i] += e.text;
      lps[i].insert(lps[i].end(), e.logprobs.begin(), e.logprobs.end());
      return true;
    });
    if (!lasts) return metrics_.count_disconnect();
    for (const auto& last : *lasts)
      if (last.finish == FinishReason::Error) throw generation_error(last);
    json body = chunk(0, texts[0], nullptr, nullptr);
    body["choices"] = json::array();
    for (size_t i = 0; i < n; ++i)
      body["choices"].push_back(
          choice_json(i, "text", texts[i], logprobs(i, lps[i]), finish_reason_name((*lasts)[i].finish)));
    body["usage"] = usage_json(total_usage(*lasts), 0, false);
    return send_json(res, 200, body);
  }

  if (!res.begin_stream(200, "text/event-stream")) {
    metrics_.count_disconnect();
    for (auto& s : streams) s->cancel();
    return;
  }
  if (!echo.empty())
    for (size_t i = 0; i < n; ++i) write_sse(res, chunk(i, echo, nullptr, nullptr));
  auto lasts = pump_choices(streams, res, [&](size_t i, const GenerationEvent& e) {
    if (e.finish == FinishReason::Error) return true;
    if (e.text.empty() && e.logprobs.empty() && e.finish == FinishReason::None) return true;
    const json finish = e.finish == FinishReason::None ? json(nullptr) : json(finish_reason_name(e.finish));
    return write_sse(res, chunk(i, e.text, finish, logprobs(i, e.logprobs)));
  });
  if (!lasts) return metrics_.count_disconnect();
  const GenerationEvent* failed = nullptr;
  for (const auto& last : *lasts)
    if (last.finish == FinishReason::Error) failed = &last;
  if (failed) write_sse(res, json::parse(error_body(generation_error(*failed))));
  end_sse(res, chunk(0, "", nullptr, nullptr),
          !failed && p.include_usage ? usage_json(total_usage(*lasts), 0, false) : json());
}

void OpenAIServer::check_choices(const CommonParams& p) const {
  if (p.n > engine_.n_parallel())
    throw ApiError(400,
                   "'n': " + std::to_string(p.n) + " choices run at once, but this server runs " +
                       std::to_string(engine_.n_parallel()) + " sequences (--parallel); ask for fewer",
                   "invalid_request_error", "n", "invalid_value");
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
    // A turn without text that is not a tool call's (validation allows none other) renders as "".
    if (!msg.contains("content") || msg["content"].is_null()) msg["content"] = "";
    if (msg["role"] == "developer") msg["role"] = "system";
    in.messages.push_back(std::move(msg));
  }
  // Past calls: their arguments and empty content as this template wants them.
  chat::apply_tool_turn_style(tool_turn_style_, in.messages);
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
        parallel_tool_calls_(p.parallel_tool_calls),
        format_(format),
        parser_(start, tags),
        calls_(format, p.tools, id_seed_) {}

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
      logprobs_.add(e.logprobs, ChatLogprobs::Side::Reasoning);
    } else if (parser_.undecided()) {
      undecided_tokens_ += e.n_tokens;
      logprobs_.add(e.logprobs, ChatLogprobs::Side::Undecided);
    } else {
      undecided_tokens_ = 0;
      logprobs_.add(e.logprobs, ChatLogprobs::Side::Content);
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
      parsed = chat::parse_tool_calls(format_, content_, tools_, id_seed_);
    else
      parsed.content = content_;
    if (!parallel_tool_calls_ && parsed.tool_calls.size() > 1) parsed.tool_calls.resize(1);
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

  // The tool-call deltas the content so far adds (streamed answers), and at the end those that
  // complete the final calls.
  std::vector<chat::ToolCallDelta> tool_deltas() {
    return tools_active_ ? calls_.update(content_) : std::vector<chat::ToolCallDelta>{};
  }
  std::vector<chat::ToolCallDelta> last_tool_deltas(const chat::ParsedOutput& parsed) { return calls_.finish(parsed); }

  const std::string& reasoning() const { return reasoning_; }
  int64_t reasoning_tokens() const { return reasoning_tokens_; }
  // The content tokens' log-probabilities not taken yet (all of them at the end).
  std::vector<TokenLogprob> take_logprobs(bool last) { return logprobs_.take(last); }

 private:
  json tools_;
  bool tools_active_;
  bool parallel_tool_calls_;
  ChatLogprobs logprobs_;
  chat::ToolCallFormat format_;
  chat::ReasoningParser parser_;
  std::string reasoning_, content_;
  size_t content_sent_ = 0;  // streamed content so far
  int64_t reasoning_tokens_ = 0;
  int64_t undecided_tokens_ = 0;  // generated while the parser could not yet tell reasoning from content
  uint64_t id_seed_ = std::random_device{}() % 1000000000;  // the answer's call ids, streamed and final alike
  chat::ToolCallStreamer calls_;
};

namespace {

std::string chat_finish_reason(const GenerationEvent& last, const chat::ParsedOutput& parsed) {
  if (last.finish == FinishReason::Stop && !parsed.tool_calls.empty()) return "tool_calls";
  return finish_reason_name(last.finish);
}

// One streamed tool-call delta as OpenAI sends it: the first with id, type and name.
json tool_call_delta_json(const chat::ToolCallDelta& d) {
  if (d.first)
    return json{
        {"index", d.index}, {"id", d.id}, {"type", "function"}, {"function", {{"name", d.name}, {"arguments", ""}}}};
  return json{{"index", d.index}, {"function", {{"arguments", d.arguments}}}};
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

std::shared_ptr<GrammarConstraint> OpenAIServer::tool_constraint(const ChatParams& p, chat::ToolCallFormat format,
                                                                 const std::vector<int32_t>& markers,
                                                                 std::string start_after,
                                                                 std::vector<int32_t> open_ids) const {
  if (p.tools.is_null() || p.tool_choice == "none") return nullptr;
  std::shared_ptr<const grammar::Grammar> g = tool_call_grammar(format, p);
  if (!g) return nullptr;
  std::call_once(tool_vocab_once_, [&] {
    tool_vocab_ = std::make_shared<const grammar::Vocabulary>(runtime::grammar_vocabulary(tok_, markers));
  });
  // Under "auto" the answer is free until it opens a call.
  std::string trigger = p.tool_choice == "auto" ? tool_call_trigger(format) : "";
  return std::make_shared<GrammarConstraint>(g, tool_vocab_, std::move(start_after), std::move(open_ids),
                                             std::move(trigger));
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
  check_choices(p);
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
  // Without a template the model has no native format; Hermes (<tool_call>{json}</tool_call>) is the most common.
  const chat::ToolCallFormat format =
      tmpl_ ? chat::tool_call_format_for_template(tmpl_->source()) : chat::ToolCallFormat::Hermes;
  const std::vector<int32_t> keep = chat_marker_tokens(tok_, tags, format);
  // Each choice gets its own constraint (it keeps state): the tool-call grammar when the tool
  // choice asks for one, else the response format's.
  auto answer_constraint = [&] {
    std::shared_ptr<GrammarConstraint> c = tool_constraint(p, format, keep, after, open_ids);
    return c ? c : constraint(p, after, open_ids);
  };
  g.keep_special = keep;
  g.constraint = answer_constraint();
  std::vector<GenerationRequest> choices = choice_requests(std::move(g), p, [&](GenerationRequest& c) {
    c.hook = chat_hook(p, start, tags);
    c.constraint = answer_constraint();
  });
  const auto prompt_tokens = static_cast<int64_t>(choices.front().prompt.size());
  StartedChat started;
  started.streams = submit_choices(engine_, std::move(choices));
  for (size_t i = 0; i < started.streams.size(); ++i)
    started.answers.push_back(std::make_unique<ChatAnswer>(p, start, tags, format));
  started.prompt_tokens = prompt_tokens;
  return started;
}

void OpenAIServer::handle_chat(const http::Request& req, http::Response& res) {
  ChatParams p = parse_chat_request(req.body);
  StartedChat chat = start_chat(p);
  const std::string id = random_id("chatcmpl-");
  const int64_t created = now_seconds();
  if (p.stream)
    stream_chat(p, chat, id, created, res);
  else
    answer_chat(p, chat, id, created, res);
}

int64_t OpenAIServer::count_chat_tokens(const ChatParams& p) const {
  check_model(p.model);
  return static_cast<int64_t>(chat::encode_chat_prompt(tok_, render_chat(p)).size());
}

std::optional<ChatOutcome> OpenAIServer::run_chat(const ChatParams& p, http::Response& res, const ChatCallbacks& cb) {
  StartedChat chat = start_chat(p);
  GenerationStream& stream = *chat.streams.front();  // the other APIs ask for one choice
  ChatAnswer& answer = *chat.answers.front();
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

void OpenAIServer::answer_chat(const ChatParams& p, StartedChat& chat, const std::string& id, int64_t created,
                               http::Response& res) {
  auto lasts = pump_choices(chat.streams, res, [&](size_t i, const GenerationEvent& e) {
    chat.answers[i]->add(e);
    return true;
  });
  if (!lasts) return metrics_.count_disconnect();
  for (const auto& last : *lasts)
    if (last.finish == FinishReason::Error) throw generation_error(last);
  json choices = json::array();
  int64_t reasoning_tokens = 0;
  for (size_t i = 0; i < chat.answers.size(); ++i) {
    ChatAnswer& answer = *chat.answers[i];
    chat::ParsedOutput parsed = answer.parse();
    json message = {
        {"role", "assistant"},
        {"content", parsed.content.empty() && !parsed.tool_calls.empty() ? json(nullptr) : json(parsed.content)}};
    if (!answer.reasoning().empty()) message["reasoning_content"] = answer.reasoning();
    if (!parsed.tool_calls.empty()) message["tool_calls"] = tool_calls_json(parsed, false);
    const json logprobs = p.logprobs < 0 ? json(nullptr) : chat_logprobs_json(tok_, answer.take_logprobs(true));
    choices.push_back(choice_json(i, "message", message, logprobs, chat_finish_reason((*lasts)[i], parsed)));
    reasoning_tokens += answer.reasoning_tokens();
  }
  json body = envelope(id, "chat.completion", created, opts_.model_id, "message", json::object(), nullptr);
  body["choices"] = std::move(choices);
  body["usage"] = usage_json(total_usage(*lasts), reasoning_tokens, true);
  send_json(res, 200, body);
}

void OpenAIServer::stream_chat(const ChatParams& p, StartedChat& chat, const std::string& id, int64_t created,
                               http::Response& res) {
  const size_t n = chat.streams.size();
  // A chunk of choice i; with logprobs, it carries those of the content tokens ready by now.
  auto chunk = [&](size_t i, const json& delta, const json& finish, bool last = false) {
    json c = envelope(id, "chat.completion.chunk", created, opts_.model_id, "delta", delta, finish);
    json logprobs = nullptr;
    if (p.logprobs >= 0 && ((delta.contains("content") && !delta.contains("role")) || last)) {
      const std::vector<TokenLogprob> lps = chat.answers[i]->take_logprobs(last);
      if (!lps.empty()) logprobs = chat_logprobs_json(tok_, lps);
    }
    c["choices"][0] = choice_json(i, "delta", delta, logprobs, finish);
    return c;
  };
  if (!res.begin_stream(200, "text/event-stream")) {
    metrics_.count_disconnect();
    for (auto& s : chat.streams) s->cancel();
    return;
  }
  for (size_t i = 0; i < n; ++i) write_sse(res, chunk(i, {{"role", "assistant"}, {"content", ""}}, nullptr));
  auto lasts = pump_choices(chat.streams, res, [&](size_t i, const GenerationEvent& e) {
    if (e.finish == FinishReason::Error) return true;
    chat::ReasoningDelta d = chat.answers[i]->add(e);
    bool ok = true;
    if (!d.reasoning.empty()) ok = write_sse(res, chunk(i, {{"reasoning_content", d.reasoning}}, nullptr));
    if (ok && !d.content.empty()) ok = write_sse(res, chunk(i, {{"content", d.content}}, nullptr));
    for (const chat::ToolCallDelta& t : chat.answers[i]->tool_deltas())
      ok = ok && write_sse(res, chunk(i, {{"tool_calls", json::array({tool_call_delta_json(t)})}}, nullptr));
    return ok;
  });
  if (!lasts) return metrics_.count_disconnect();
  const GenerationEvent* failed = nullptr;
  for (const auto& last : *lasts)
    if (last.finish == FinishReason::Error) failed = &last;
  int64_t reasoning_tokens = 0;
  if (failed) {
    write_sse(res, json::parse(error_body(generation_error(*failed))));
  } else {
    for (size_t i = 0; i < n; ++i) {
      ChatAnswer& answer = *chat.answers[i];
      chat::ParsedOutput parsed = answer.parse();
      if (std::string rest = answer.unsent_content(parsed); !rest.empty())
        write_sse(res, chunk(i, {{"content", rest}}, nullptr));
      for (const chat::ToolCallDelta& t : answer.last_tool_deltas(parsed))
        write_sse(res, chunk(i, {{"tool_calls", json::array({tool_call_delta_json(t)})}}, nullptr));
      write_sse(res, chunk(i, json::object(), chat_finish_reason((*lasts)[i], parsed), /*last=*/true));
      reasoning_tokens += answer.reasoning_tokens();
    }
  }
  json tail = envelope(id, "chat.completion.chunk", created, opts_.model_id, "delta", json::object(), nullptr);
  end_sse(res, tail, !failed && p.include_usage ? usage_json(total_usage(*lasts), reasoning_tokens, true) : json());
}

}  // namespace owl::server
