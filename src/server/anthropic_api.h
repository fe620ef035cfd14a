// Anthropic's Messages API on `owl serve`'s port, for clients and coding agents that speak it:
//   POST /v1/messages               whole, or streamed as server-sent events
//   POST /v1/messages/count_tokens  {"input_tokens": N}
// A request (system, multi-turn messages of text / tool_use / tool_result / thinking blocks,
// max_tokens, stop_sequences, temperature, top_p, top_k, tools, tool_choice, thinking:
// {type: "enabled", budget_tokens} or {type: "disabled"}) is translated into an OpenAI chat
// request (api.h) and run as /v1/chat/completions runs it. The answer is content blocks:
// "thinking" (the reasoning), "text", "tool_use" (arguments as an object); stop_reason is
// end_turn, max_tokens, stop_sequence or tool_use. Streamed, the events are message_start,
// then per block content_block_start / content_block_delta (thinking_delta, text_delta,
// input_json_delta) / content_block_stop, then message_delta (stop_reason, usage) and
// message_stop. Errors have Anthropic's shape: {"type": "error", "error": {"type", "message"}}.
// The key is taken from "x-api-key" as well as "Authorization: Bearer" (server.cpp).
#pragma once
#include <string>

#include "server/api.h"
#include "server/http.h"

namespace owl::server {

class OpenAIServer;

class AnthropicApi {
 public:
  explicit AnthropicApi(OpenAIServer& server) : server_(server) {}
  // Answers a request under /v1/messages (the caller has checked the API key).
  void handle(const http::Request& req, http::Response& res);
  static std::string error_body(const ApiError& e);

 private:
  void messages(const http::Request& req, http::Response& res);
  OpenAIServer& server_;
};

}  // namespace owl::server
