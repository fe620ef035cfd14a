// Ollama's API on `owl serve`'s port, for Ollama's clients (Open WebUI, the `ollama` npm and
// Python packages, editors' plug-ins):
//   GET /api/version   GET /api/tags   GET /api/ps   POST /api/show
//   POST /api/chat     POST /api/generate   (NDJSON streamed by default, or whole with "stream": false)
//   POST /api/pull     `owl pull` into the cache: "hf.co/ORG/NAME[:QUANT]" or "ORG/NAME[:QUANT]"
//                      (the pulled model is for a later `owl serve`; this one serves its own)
// A request is translated into an OpenAI chat request (api.h), so it is validated and run as
// /v1/chat/completions runs it; the answer is shaped as Ollama's: message.content, the reasoning
// in message.thinking ("think": true/false/"low"/"medium"/"high" turns it on or off), tool calls
// with their arguments as objects, and the counts and durations of the last line. "options"
// maps onto owl's sampling: temperature, top_p, top_k, min_p, seed, stop, num_predict,
// repeat_penalty, presence_penalty, frequency_penalty (num_ctx and other load options are
// ignored: the model is loaded once, by `owl serve`). Without options, Ollama's defaults
// apply: temperature 0.8, top_k 40, top_p 0.9. "format" is structured output: "json" (a JSON
// object, OpenAI's json_object) or a JSON Schema (OpenAI's json_schema), after the reasoning for
// a thinking model. Errors are Ollama's {"error": "..."}.
#pragma once
#include <string>

#include "server/api.h"
#include "server/http.h"

namespace owl::server {

class OpenAIServer;

class OllamaApi {
 public:
  explicit OllamaApi(OpenAIServer& server) : server_(server) {}
  // Answers a request under /api/ (the caller has checked the API key).
  void handle(const http::Request& req, http::Response& res);
  static std::string error_body(const ApiError& e);

 private:
  void chat(const http::Request& req, http::Response& res, bool generate);
  void pull(const http::Request& req, http::Response& res);
  OpenAIServer& server_;
};

}  // namespace owl::server
