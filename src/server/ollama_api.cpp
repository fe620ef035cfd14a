#include "server/ollama_api.h"

#include <chrono>
#include <ctime>
#include <optional>

#include "base/error.h"
#include "hub/pull.h"
#include "hub/spec.h"
#include "server/server.h"

namespace owl::server {

using json = nlohmann::ordered_json;

namespace {

using Clock = std::chrono::steady_clock;

// The Ollama release whose API this follows; clients check it before using newer fields.
constexpr const char* kOllamaCompatibleVersion = "0.12.0";

// Ollama's own defaults for a model without a Modelfile's parameters.
constexpr double kDefaultTemperature = 0.8, kDefaultTopP = 0.9;
constexpr int kDefaultTopK = 40;

ApiError bad(const std::string& message) { return ApiError(400, message); }

// "2025-01-02T03:04:05.123456789Z", as Ollama stamps its answers.
std::string rfc3339_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count() % 1'000'000'000LL;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[16];
  std::snprintf(frac, sizeof frac, ".%09lldZ", static_cast<long long>(ns));
  return std::string(buf) + frac;
}

std::string rfc3339(int64_t seconds) {
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int64_t nanos(Clock::duration d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); }

json parse_body(const std::string& body) {
  json j = json::parse(body.empty() ? std::string("{}") : body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw bad("the request body must be a JSON object");
  return j;
}

// Clients name models "name" or "name:tag"; owl serves one model, whose only tag is "latest".
std::string model_name(const json& j, const OpenAIServer& server) {
  const json* m = j.contains("model") ? &j["model"] : j.contains("name") ? &j["name"] : nullptr;
  if (!m || m->is_null()) return "";
  if (!m->is_string()) throw bad("'model' must be a string");
  std::string name = m->get<std::string>();
  if (name.ends_with(":latest")) name.resize(name.size() - 7);
  if (name != server.options().model_id)
    throw ApiError(
        404, "model '" + m->get<std::string>() + "' not found; this server serves '" + server.options().model_id + "'");
  return name;
}

json details(const OpenAIServer& server) {
  return {{"parent_model", ""},
          {"format", "gguf"},
          {"family", server.options().architecture},
          {"families", json::array({server.options().architecture})},
          {"parameter_size", ""},
          {"quantization_level", ""}};
}

json model_entry(const OpenAIServer& server) {
  const std::string name = server.options().model_id + ":latest";
  return {{"name", name},
          {"model", name},
          {"modified_at", rfc3339(server.created())},
          {"size", server.options().model_bytes},
          {"digest", ""},
          {"details", details(server)}};
}

// Ollama's "options" onto the OpenAI request's sampling fields.
void map_options(const json& j, json& openai) {
  openai["temperature"] = kDefaultTemperature;
  openai["top_p"] = kDefaultTopP;
  openai["top_k"] = kDefaultTopK;
  if (!j.contains("options") || j["options"].is_null()) return;
  const json& o = j["options"];
  if (!o.is_object()) throw bad("'options' must be an object");
  static const std::pair<const char*, const char*> kSame[] = {{"temperature", "temperature"},
                                                              {"top_p", "top_p"},
                                                              {"top_k", "top_k"},
                                                              {"min_p", "min_p"},
                                                              {"seed", "seed"},
                                                              {"stop", "stop"},
                                                              {"repeat_penalty", "repetition_penalty"},
                                                              {"presence_penalty", "presence_penalty"},
                                                              {"frequency_penalty", "frequency_penalty"}};
  for (const auto& [from, to] : kSame)
    if (o.contains(from) && !o[from].is_null()) openai[to] = o[from];
  if (o.contains("num_predict") && !o["num_predict"].is_null()) {
    const json& n = o["num_predict"];
    if (!n.is_number_integer()) throw bad("'options.num_predict' must be an integer");
    // -1 (no limit) and -2 (fill the context) both run to the end of the context here.
    if (n.get<int64_t>() >= 0) openai["max_tokens"] = n;
  }
}

// Ollama's "format": "json" (any JSON object, OpenAI's json_object) or a JSON Schema (OpenAI's
// json_schema), compiled by the OpenAI path's code; "" or null leave the answer free. For a
// reasoning model the constraint starts after the reasoning, as on /v1/chat/completions.
std::shared_ptr<const grammar::Grammar> format_constraint(const json& j) {
  const auto it = j.find("format");
  if (it == j.end() || it->is_null() || *it == "") return nullptr;
  if (*it == "json") return compile_response_format({{"type", "json_object"}}, "format");
  if (!it->is_object()) throw bad("'format' must be \"json\" or a JSON Schema object, got " + it->dump());
  return compile_response_format({{"type", "json_schema"}, {"json_schema", {{"schema", *it}}}}, "format");
}

// Ollama's "think": a boolean, or an effort ("low", "medium", "high") that turns thinking on.
void map_think(const json& j, json& openai) {
  if (!j.contains("think") || j["think"].is_null()) return;
  const json& t = j["think"];
  bool on;
  if (t.is_boolean())
    on = t.get<bool>();
  else if (t.is_string() && (t == "low" || t == "medium" || t == "high"))
    on = true;
  else
    throw bad("'think' must be true, false, \"low\", \"medium\" or \"high\"");
  openai["chat_template_kwargs"] = {{"enable_thinking", on}};
}

// An Ollama message as OpenAI's: tool calls' arguments as JSON text, the tool's name kept.
json openai_message(const json& m, size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) throw bad("'" + where + "' must be an object");
  if (m.contains("images") && m["images"].is_array() && !m["images"].empty())
    throw bad("'" + where + ".images': this model takes text only");
  json out = {{"role", m.value("role", json(nullptr))}, {"content", m.value("content", json(""))}};
  if (m.contains("thinking") && m["thinking"].is_string()) out["reasoning_content"] = m["thinking"];
  if (m.contains("tool_name")) out["name"] = m["tool_name"];
  if (m.contains("tool_calls") && m["tool_calls"].is_array()) {
    json calls = json::array();
    for (const auto& c : m["tool_calls"]) {
      if (!c.is_object() || !c.contains("function") || !c["function"].is_object())
        throw bad("'" + where + ".tool_calls' must hold {\"function\": {\"name\": ..., \"arguments\": {...}}}");
      const json& f = c["function"];
      const json args = f.value("arguments", json::object());
      calls.push_back(
          {{"id", c.value("id", "call_" + std::to_string(calls.size()))},
           {"type", "function"},
           {"function", {{"name", f.value("name", "")}, {"arguments", args.is_string() ? args : json(args.dump())}}}});
    }
    out["tool_calls"] = calls;
  }
  return out;
}

json ollama_tool_calls(const chat::ParsedOutput& parsed) {
  json calls = json::array();
  for (const auto& c : parsed.tool_calls) {
    json args = json::parse(c.arguments, nullptr, /*allow_exceptions=*/false);
    if (args.is_discarded()) args = json::object();
    calls.push_back({{"function", {{"name", c.name}, {"arguments", args}}}});
  }
  return calls;
}

}  // namespace

std::string OllamaApi::error_body(const ApiError& e) { return json{{"error", e.what()}}.dump(); }

void OllamaApi::handle(const http::Request& req, http::Response& res) {
  auto want = [&](const char* method) {
    if (req.method != method) throw ApiError(405, std::string("use ") + method + " " + req.path);
  };
  const std::string& path = req.path;
  if (path == "/api/version") {
    want("GET");
    res.send(200, "application/json", json{{"version", std::string(kOllamaCompatibleVersion)}}.dump());
  } else if (path == "/api/tags") {
    want("GET");
    res.send(200, "application/json", json{{"models", json::array({model_entry(server_)})}}.dump());
  } else if (path == "/api/ps") {
    want("GET");
    json m = model_entry(server_);
    m["expires_at"] = "0001-01-01T00:00:00Z";  // loaded for as long as the server runs
    m["size_vram"] = 0;
    m["context_length"] = server_.n_ctx();
    res.send(200, "application/json", json{{"models", json::array({m})}}.dump());
  } else if (path == "/api/show") {
    want("POST");
    const json j = parse_body(req.body);
    if (model_name(j, server_).empty()) throw bad("'model' is required");
    json caps = json::array({"completion"});
    if (server_.calls_tools()) caps.push_back("tools");
    if (server_.reasons()) caps.push_back("thinking");
    const std::string& arch = server_.options().architecture;
    res.send(200, "application/json",
             json{{"modelfile", ""},
                  {"parameters", ""},
                  {"template", server_.chat_template() ? server_.chat_template()->source() : ""},
                  {"details", details(server_)},
                  {"model_info", {{"general.architecture", arch}, {arch + ".context_length", server_.n_ctx()}}},
                  {"capabilities", caps},
                  {"modified_at", rfc3339(server_.created())}}
                 .dump());
  } else if (path == "/api/pull") {
    want("POST");
    pull(req, res);
  } else if (path == "/api/chat") {
    want("POST");
    chat(req, res, false);
  } else if (path == "/api/generate") {
    want("POST");
    chat(req, res, true);
  } else {
    throw ApiError(404,
                   "no route for " + req.method + " " + path +
                       "; Ollama endpoints: /api/chat, /api/generate, /api/tags, /api/show, /api/ps, /api/version, "
                       "/api/pull");
  }
}

void OllamaApi::pull(const http::Request& req, http::Response& res) {
  const json j = parse_body(req.body);
  const json* m = j.contains("model") ? &j["model"] : j.contains("name") ? &j["name"] : nullptr;
  if (!m || !m->is_string()) throw bad("'model' is required: a hub model, \"hf.co/ORG/NAME[:QUANT]\"");
  std::string name = m->get<std::string>();
  // Ollama names Hugging Face models "hf.co/ORG/NAME:QUANT"; owl's hub specs are "ORG/NAME:QUANT".
  for (const char* prefix : {"hf.co/", "huggingface.co/"})
    if (name.starts_with(prefix)) name = name.substr(std::string_view(prefix).size());
  if (name.ends_with(":latest")) name.resize(name.size() - 7);
  const auto spec = hub::parse_hub_spec(name);
  if (!spec) throw bad("'" + m->get<std::string>() + "' is not a hub model; use \"hf.co/ORG/NAME[:QUANT]\"");
  const bool stream = !j.contains("stream") || j["stream"].is_null() || j["stream"] == true;
  if (stream && !res.begin_stream(200, "application/x-ndjson")) return;
  if (stream) res.write(json{{"status", "pulling manifest"}}.dump() + "\n");
  hub::PullOptions opts;
  opts.download.quiet = true;
  hub::PullResult r;
  try {
    r = hub::pull(*spec, opts);
  } catch (const Error& e) {
    if (!stream) throw ApiError(500, e.what(), "server_error");
    res.write(json{{"error", e.what()}}.dump() + "\n");
    return res.end_stream();
  }
  const json done = {{"status", "success"},
                     {"path", r.path},
                     {"files", r.files.size()},
                     {"files_downloaded", r.files_downloaded},
                     {"bytes_downloaded", r.bytes_downloaded}};
  if (!stream) return res.send(200, "application/json", done.dump());
  res.write(json{{"status", "downloaded " + std::to_string(r.files_downloaded) + " of " +
                                std::to_string(r.files.size()) + " files"}}
                .dump() +
            "\n");
  res.write(done.dump() + "\n");
  res.end_stream();
}

void OllamaApi::chat(const http::Request& req, http::Response& res, bool generate) {
  const auto t0 = Clock::now();
  const json j = parse_body(req.body);
  const std::string model = model_name(j, server_);
  if (model.empty()) throw bad("'model' is required");
  const bool stream = !j.contains("stream") || j["stream"].is_null() || j["stream"] == true;
  const char* key = generate ? "response" : "message";

  json messages = json::array();
  if (generate) {
    for (const char* unsupported : {"suffix", "context", "images"})
      if (j.contains(unsupported) && !j[unsupported].is_null() && !j[unsupported].empty())
        throw bad(std::string("'") + unsupported + "' is not supported by owl's /api/generate");
    if (j.value("raw", false)) throw bad("'raw' is not supported: owl renders the prompt with the chat template");
    if (j.contains("prompt") && !j["prompt"].is_string()) throw bad("'prompt' must be a string");
    if (j.contains("system") && j["system"].is_string() && !j["system"].get<std::string>().empty())
      messages.push_back({{"role", "system"}, {"content", j["system"]}});
    if (j.value("prompt", "") != "") messages.push_back({{"role", "user"}, {"content", j["prompt"]}});
  } else if (j.contains("messages") && !j["messages"].is_null()) {
    if (!j["messages"].is_array()) throw bad("'messages' must be an array");
    for (size_t i = 0; i < j["messages"].size(); ++i) messages.push_back(openai_message(j["messages"][i], i));
  }
  // Nothing to answer: Ollama's clients send this to load a model, which owl has already done.
  if (messages.empty()) {
    json done = {{"model", model}, {"created_at", rfc3339_now()}};
    done[key] = generate ? json("") : json{{"role", "assistant"}, {"content", ""}};
    done["done"] = true;
    done["done_reason"] = "load";
    return res.send(200, "application/json", done.dump());
  }

  json openai = {{"model", model}, {"messages", messages}};
  map_options(j, openai);
  map_think(j, openai);
  if (!generate && j.contains("tools") && !j["tools"].is_null()) openai["tools"] = j["tools"];
  ChatParams p = parse_chat_request(openai.dump());
  p.grammar = format_constraint(j);

  // One NDJSON line: the reasoning in "thinking", the answer in message.content (or "response").
  auto line = [&](const std::string& content, const std::string& thinking) {
    json l = {{"model", model}, {"created_at", rfc3339_now()}};
    if (generate) {
      l["response"] = content;
      if (!thinking.empty()) l["thinking"] = thinking;
    } else {
      l["message"] = {{"role", "assistant"}, {"content", content}};
      if (!thinking.empty()) l["message"]["thinking"] = thinking;
    }
    return l;
  };
  std::optional<Clock::time_point> first_token;
  ChatCallbacks cb;
  if (stream) {
    cb.started = [&](int64_t) { return res.begin_stream(200, "application/x-ndjson"); };
    cb.delta = [&](const chat::ReasoningDelta& d) {
      if (!first_token) first_token = Clock::now();
      json l = line(d.content, d.reasoning);
      l["done"] = false;
      return res.write(l.dump() + "\n");
    };
  } else {
    cb.delta = [&](const chat::ReasoningDelta&) {
      if (!first_token) first_token = Clock::now();
      return true;
    };
  }
  std::optional<ChatOutcome> out = server_.run_chat(p, res, cb);
  if (!out) return;
  if (out->last.finish == FinishReason::Error) {
    const std::string message = out->last.error.empty() ? "generation failed" : out->last.error;
    if (!stream) throw ApiError(500, message, "server_error");
    res.write(json{{"error", message}}.dump() + "\n");
    return res.end_stream();
  }
  const auto t_end = Clock::now();
  const auto t_first = first_token.value_or(t_end);
  json last = stream ? line(out->unsent_content, "") : line(out->parsed.content, out->reasoning);
  if (!generate && !out->parsed.tool_calls.empty()) last["message"]["tool_calls"] = ollama_tool_calls(out->parsed);
  last["done"] = true;
  last["done_reason"] = out->last.finish == FinishReason::Length ? "length" : "stop";
  last["total_duration"] = nanos(t_end - t0);
  last["load_duration"] = 0;  // the model was loaded when the server started
  last["prompt_eval_count"] = out->last.prompt_tokens;
  last["prompt_eval_duration"] = nanos(t_first - t0);
  last["eval_count"] = out->last.completion_tokens;
  last["eval_duration"] = nanos(t_end - t_first);
  if (!stream) return res.send(200, "application/json", last.dump());
  res.write(last.dump() + "\n");
  res.end_stream();
}

}  // namespace owl::server
