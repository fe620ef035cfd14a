#include "server/anthropic_api.h"

#include <optional>
#include <random>

#include "chat/chat_template.h"
#include "server/server.h"

namespace owl::server {

using json = nlohmann::ordered_json;

namespace {

ApiError bad(const std::string& message) { return ApiError(400, message); }

std::string message_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = "msg_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % 62];
  return id;
}

// Anthropic's error types for HTTP statuses.
const char* error_type(int status) {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
      return "overloaded_error";
    default:
      return status < 500 ? "invalid_request_error" : "api_error";
  }
}

json parse_body(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw bad("the request body must be a JSON object");
  return j;
}

// A string, or an array of text blocks, as one text ("system", tool_result's "content").
std::string block_text(const json& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) throw bad("'" + where + "' must be a string or an array of text blocks");
  std::string text;
  for (const auto& b : v) {
    if (!b.is_object() || b.value("type", "") != "text" || !b.contains("text") || !b["text"].is_string())
      throw bad("'" + where + "' may hold only text blocks ({\"type\": \"text\", \"text\": ...}) with this model");
    text += b["text"].get<std::string>();
  }
  return text;
}

// One Anthropic message as OpenAI messages: a user turn's tool_result blocks become "tool"
// messages (before its text, as they answer the previous turn); an assistant turn's thinking
// becomes reasoning_content and its tool_use blocks tool_calls.
void add_openai_messages(const json& m, size_t i, json& out) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) throw bad("'" + where + "' must be an object");
  const std::string role = m.value("role", "");
  if (role != "user" && role != "assistant") throw bad("'" + where + ".role' must be \"user\" or \"assistant\"");
  if (!m.contains("content")) throw bad("'" + where + ".content' is required");
  const json& content = m["content"];
  if (content.is_string()) {
    out.push_back({{"role", role}, {"content", content}});
    return;
  }
  if (!content.is_array()) throw bad("'" + where + ".content' must be a string or an array of content blocks");
  std::string text, thinking;
  json calls = json::array();
  for (size_t k = 0; k < content.size(); ++k) {
    const json& b = content[k];
    const std::string bw = where + ".content[" + std::to_string(k) + "]";
    const std::string type = b.is_object() ? b.value("type", "") : "";
    if (type == "text" && b.contains("text") && b["text"].is_string()) {
      text += b["text"].get<std::string>();
    } else if (type == "thinking" && role == "assistant") {
      thinking += b.value("thinking", "");
    } else if (type == "redacted_thinking" && role == "assistant") {
      // Encrypted reasoning from another model: nothing this one can read.
    } else if (type == "tool_use" && role == "assistant") {
      if (!b.contains("name") || !b["name"].is_string()) throw bad("'" + bw + ".name' must be a string");
      calls.push_back({{"id", b.value("id", "")},
                       {"type", "function"},
                       {"function", {{"name", b["name"]}, {"arguments", b.value("input", json::object()).dump()}}}});
    } else if (type == "tool_result" && role == "user") {
      std::string result = b.contains("content") ? block_text(b["content"], bw + ".content") : "";
      if (b.value("is_error", false)) result = "Error: " + result;
      out.push_back({{"role", "tool"}, {"tool_call_id", b.value("tool_use_id", "")}, {"content", result}});
    } else {
      throw bad("'" + bw + "': " + (type.empty() ? std::string("blocks without a type are") : type + " blocks are") +
                " not supported in " + role + " messages with this model");
    }
  }
  if (role == "user") {
    if (!text.empty() || out.empty() || out.back()["role"] != "tool")
      out.push_back({{"role", "user"}, {"content", text}});
    return;
  }
  json msg = {{"role", "assistant"}, {"content", text}};
  if (!thinking.empty()) msg["reasoning_content"] = thinking;
  if (!calls.empty()) msg["tool_calls"] = calls;
  out.push_back(std::move(msg));
}

// The Anthropic request as the OpenAI chat request it runs as. `count_only`: max_tokens may be absent.
ChatParams to_chat_params(const json& j, bool count_only) {
  json o = json::object();
  if (j.contains("model")) o["model"] = j["model"];
  if (!count_only) {
    if (!j.contains("max_tokens")) throw bad("'max_tokens' is required");
    if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int64_t>() < 1)
      throw bad("'max_tokens' must be a positive integer");
    o["max_tokens"] = j["max_tokens"];
  }
  json messages = json::array();
  if (j.contains("system") && !j["system"].is_null())
    messages.push_back({{"role", "system"}, {"content", block_text(j["system"], "system")}});
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
    throw bad("'messages' is required and must be a non-empty array");
  for (size_t i = 0; i < j["messages"].size(); ++i) add_openai_messages(j["messages"][i], i, messages);
  o["messages"] = messages;
  // Anthropic's sampling defaults: temperature 1 in [0, 1], no top-p or top-k cut.
  if (j.contains("temperature")) {
    const json& t = j["temperature"];
    if (!t.is_number() || t.get<double>() < 0 || t.get<double>() > 1)
      throw bad("'temperature' must be a number between 0 and 1");
    o["temperature"] = t;
  }
  for (const char* same : {"top_p", "top_k", "stream"})
    if (j.contains(same)) o[same] = j[same];
  if (j.contains("stop_sequences")) {
    if (!j["stop_sequences"].is_array()) throw bad("'stop_sequences' must be an array of strings");
    if (!j["stop_sequences"].empty()) o["stop"] = j["stop_sequences"];
  }
  if (j.contains("tools") && !j["tools"].is_null()) {
    if (!j["tools"].is_array()) throw bad("'tools' must be an array");
    json tools = json::array();
    for (size_t i = 0; i < j["tools"].size(); ++i) {
      const json& t = j["tools"][i];
      if (!t.is_object() || !t.contains("name") || !t["name"].is_string() ||
          (t.contains("type") && t["type"] != "custom"))
        throw bad("'tools[" + std::to_string(i) + "]' must be a tool with a \"name\" and an \"input_schema\"");
      json f = {{"name", t["name"]}, {"parameters", t.value("input_schema", json::object())}};
      if (t.contains("description")) f["description"] = t["description"];
      tools.push_back({{"type", "function"}, {"function", f}});
    }
    if (!tools.empty()) o["tools"] = tools;
  }
  if (j.contains("tool_choice") && !j["tool_choice"].is_null()) {
    const json& tc = j["tool_choice"];
    const std::string type = tc.is_object() ? tc.value("type", "") : "";
    if (type == "auto" || type == "none")
      o["tool_choice"] = type;
    else if (type == "any")
      o["tool_choice"] = "required";
    else if (type == "tool" && tc.contains("name") && tc["name"].is_string())
      o["tool_choice"] = {{"type", "function"}, {"function", {{"name", tc["name"]}}}};
    else
      throw bad(
          "'tool_choice' must be {\"type\": \"auto\" | \"any\" | \"none\"} or {\"type\": \"tool\", \"name\": ...}");
  }
  // Without "thinking" Anthropic's models answer without reasoning; so do reasoning models here.
  bool think = false;
  if (j.contains("thinking") && !j["thinking"].is_null()) {
    const json& t = j["thinking"];
    const std::string type = t.is_object() ? t.value("type", "") : "";
    if (type == "enabled") {
      if (!t.contains("budget_tokens") || !t["budget_tokens"].is_number_integer() ||
          t["budget_tokens"].get<int64_t>() < 0)
        throw bad("'thinking.budget_tokens' must be a non-negative integer");
      think = true;
      o["thinking_budget"] = t["budget_tokens"];
    } else if (type != "disabled") {
      throw bad("'thinking' must be {\"type\": \"enabled\", \"budget_tokens\": N} or {\"type\": \"disabled\"}");
    }
  }
  o["chat_template_kwargs"] = {{"enable_thinking", think}};
  return parse_chat_request(o.dump());
}

std::string stop_reason(const ChatOutcome& out) {
  if (!out.parsed.tool_calls.empty() && out.last.finish == FinishReason::Stop) return "tool_use";
  if (out.last.finish == FinishReason::Length) return "max_tokens";
  if (out.last.stop_string) return "stop_sequence";
  return "end_turn";
}

// The stop sequence that ended the answer, when it can be told (one was given); else null.
json stop_sequence(const ChatOutcome& out, const ChatParams& p) {
  if (!out.last.stop_string || p.stop.size() != 1) return nullptr;
  return p.stop[0];
}

json tool_input(const chat::ToolCall& c) {
  json args = json::parse(c.arguments, nullptr, /*allow_exceptions=*/false);
  return args.is_discarded() ? json::object() : args;
}

json usage(int64_t input, int64_t output, int64_t cached) {
  return {{"input_tokens", input}, {"output_tokens", output}, {"cache_read_input_tokens", cached}};
}

bool write_event(http::Response& res, const char* name, const json& data) {
  return res.write(std::string("event: ") + name + "\ndata: " + data.dump() + "\n\n");
}

}  // namespace

std::string AnthropicApi::error_body(const ApiError& e) {
  return json{{"type", "error"}, {"error", {{"type", error_type(e.status)}, {"message", e.what()}}}}.dump();
}

void AnthropicApi::handle(const http::Request& req, http::Response& res) {
  if (req.method != "POST") throw ApiError(405, "use POST " + req.path);
  if (req.path == "/v1/messages") return messages(req, res);
  if (req.path == "/v1/messages/count_tokens") {
    const ChatParams p = to_chat_params(parse_body(req.body), /*count_only=*/true);
    return res.send(200, "application/json", json{{"input_tokens", server_.count_chat_tokens(p)}}.dump());
  }
  throw ApiError(404, "no route for POST " + req.path + "; use /v1/messages or /v1/messages/count_tokens");
}

void AnthropicApi::messages(const http::Request& req, http::Response& res) {
  const ChatParams p = to_chat_params(parse_body(req.body), /*count_only=*/false);
  const std::string id = message_id();
  const std::string& model = server_.options().model_id;
  json message = {{"id", id},
                  {"type", "message"},
                  {"role", "assistant"},
                  {"model", model},
                  {"content", json::array()},
                  {"stop_reason", nullptr},
                  {"stop_sequence", nullptr}};

  // Streaming: the open block's kind ("thinking", "text") and index.
  std::string open_block;
  int index = -1;
  auto close_block = [&] {
    if (open_block.empty()) return true;
    open_block.clear();
    return write_event(res, "content_block_stop", {{"type", "content_block_stop"}, {"index", index}});
  };
  auto open = [&](const std::string& kind, const json& block) {
    if (open_block == kind) return true;
    if (!close_block()) return false;
    open_block = kind;
    return write_event(res, "content_block_start",
                       {{"type", "content_block_start"}, {"index", ++index}, {"content_block", block}});
  };
  auto delta = [&](const json& d) {
    return write_event(res, "content_block_delta", {{"type", "content_block_delta"}, {"index", index}, {"delta", d}});
  };
  auto text_delta = [&](const std::string& text) {
    return open("text", {{"type", "text"}, {"text", ""}}) && delta({{"type", "text_delta"}, {"text", text}});
  };

  ChatCallbacks cb;
  if (p.stream) {
    cb.started = [&](int64_t prompt_tokens) {
      if (!res.begin_stream(200, "text/event-stream")) return false;
      json start = message;
      start["usage"] = usage(prompt_tokens, 0, 0);
      return write_event(res, "message_start", {{"type", "message_start"}, {"message", start}});
    };
    cb.delta = [&](const chat::ReasoningDelta& d) {
      if (!d.reasoning.empty() && !(open("thinking", {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}) &&
                                    delta({{"type", "thinking_delta"}, {"thinking", d.reasoning}})))
        return false;
      return d.content.empty() || text_delta(d.content);
    };
  }
  std::optional<ChatOutcome> out = server_.run_chat(p, res, cb);
  if (!out) return;
  if (out->last.finish == FinishReason::Error) {
    const ApiError e(500, out->last.error.empty() ? "generation failed" : out->last.error, "server_error");
    if (!p.stream) throw e;
    write_event(res, "error", json::parse(error_body(e)));
    return res.end_stream();
  }
  const json stop = stop_reason(*out);
  const json stop_seq = stop_sequence(*out, p);

  if (!p.stream) {
    json& content = message["content"];
    if (!out->reasoning.empty())
      content.push_back({{"type", "thinking"}, {"thinking", out->reasoning}, {"signature", ""}});
    if (!out->parsed.content.empty() || out->parsed.tool_calls.empty())
      content.push_back({{"type", "text"}, {"text", out->parsed.content}});
    for (const auto& c : out->parsed.tool_calls)
      content.push_back({{"type", "tool_use"}, {"id", c.id}, {"name", c.name}, {"input", tool_input(c)}});
    message["stop_reason"] = stop;
    message["stop_sequence"] = stop_seq;
    message["usage"] = usage(out->last.prompt_tokens, out->last.completion_tokens, out->last.cached_tokens);
    return res.send(200, "application/json", message.dump());
  }
  if (!out->unsent_content.empty()) text_delta(out->unsent_content);
  // An answer with no text still has its (empty) text block, as Anthropic's do.
  if (index < 0 && out->parsed.tool_calls.empty()) open("text", {{"type", "text"}, {"text", ""}});
  close_block();
  for (const auto& c : out->parsed.tool_calls) {
    open("tool_use", {{"type", "tool_use"}, {"id", c.id}, {"name", c.name}, {"input", json::object()}});
    delta({{"type", "input_json_delta"}, {"partial_json", c.arguments}});
    close_block();
  }
  write_event(res, "message_delta",
              {{"type", "message_delta"},
               {"delta", {{"stop_reason", stop}, {"stop_sequence", stop_seq}}},
               {"usage", {{"output_tokens", out->last.completion_tokens}}}});
  write_event(res, "message_stop", {{"type", "message_stop"}});
  res.end_stream();
}

}  // namespace owl::server
