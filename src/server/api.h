// The OpenAI-compatible request side of `owl serve`: parsing and validating
// /v1/completions and /v1/chat/completions bodies into plain structs, and the
// OpenAI error object every 4xx/5xx answer carries:
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
//
// docs/API.md is the full table of fields and what owl does with each. Accepted fields (unknown
// ones are ignored, as OpenAI-compatible servers do; known OpenAI fields owl cannot honour are 400s):
//   common: model, max_tokens (chat also max_completion_tokens), temperature [0,2],
//     top_p (0,1], top_k (>= 0, extension), min_p [0,1] (extension),
//     repetition_penalty / presence_penalty / frequency_penalty, seed, stop
//     (string or up to 16 strings), logit_bias ({"<token id>": bias in [-100, 100]} added to the
//     token's logit before sampling, greedy included; an id outside the vocabulary is a 400), stream,
//     stream_options.include_usage, n (1..16 choices), ignore_eos (extension), speculative (extension: false opts this
//     request out of the server's --spec drafting), response_format ({"type": "text"} | {"type": "json_object"} |
//     {"type": "json_schema", "json_schema": {"schema": {...}, "strict": ...}}), json_schema (a schema,
//     llama.cpp) and grammar (GBNF, llama.cpp): the output is constrained to the schema / grammar
//     (src/grammar; a reasoning block, opened by the prompt or by the model, stays free: the constraint starts after
//     it); a schema or grammar that cannot be compiled is a 400 naming the cause and position
//   logprobs: chat logprobs (bool) + top_logprobs (0..20), completions logprobs (0..5), with
//     OpenAI's shapes (server/logprobs_json.h); no-ops with a reason: user, safety_identifier,
//     prompt_cache_key, metadata, store (false), service_tier (auto, default), best_of (= n),
//     modalities (["text"]), verbosity ("medium")
//   completions: prompt (string, or an array of token ids, or a one-element array of either)
//   chat: messages (non-empty), tools (function.strict: true makes a parameters schema owl
//     cannot compile a 400), tool_choice ("none": tools not rendered, no call parsed | "auto" |
//     "required" / {"type":"function","function":{"name":...}}: enforced by a grammar over the
//     family's call syntax and the parameters schemas, server/tool_choice.h), parallel_tool_calls
//     (false: an enforced answer, "required" or "auto" with a strict tool, holds one call),
//     chat_template_kwargs (object passed to the template; enable_thinking: false turns
//     reasoning off), reasoning_effort ("none" turns reasoning off),
//     thinking_budget (tokens; extension) or reasoning: {max_tokens, enabled, effort} (OpenRouter style).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/grammar.h"
#include "runtime/sampler.h"

namespace owl::server {

struct ApiError : std::runtime_error {
  ApiError(int status_, std::string message, std::string type_ = "invalid_request_error", std::string param_ = "",
           std::string code_ = "")
      : std::runtime_error(message),
        status(status_),
        type(std::move(type_)),
        param(std::move(param_)),
        code(std::move(code_)) {}
  int status;
  std::string type;
  std::string param;  // "" -> null
  std::string code;   // "" -> null
};

// The OpenAI error body for e.
std::string error_body(const ApiError& e);

struct CommonParams {
  std::string model;                  // "" when the request named none
  SamplerParams sampling;             // OpenAI defaults: temperature 1, top_p 1, top-k and min-p off
  std::optional<int64_t> max_tokens;  // unset: up to the end of the context (chat) / 16 (completions)
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  bool ignore_eos = false;
  bool speculative = true;
  std::shared_ptr<const grammar::Grammar> grammar;  // response_format / json_schema / grammar; null: free text
  int n = 1;                                        // choices, 1..kMaxChoices (they share the prompt's prefill)
  std::optional<uint64_t> seed;                     // as sent: choice i samples with seed + i
  int logprobs = -1;  // < 0: no logprobs; else the alternatives per token (chat top_logprobs, completions logprobs)
};

// The most choices (`n`) one request may ask for; the server's --parallel may allow fewer.
inline constexpr int kMaxChoices = 16;

struct CompletionParams : CommonParams {
  std::string prompt_text;          // used when prompt_ids is empty
  std::vector<int32_t> prompt_ids;  // the prompt as token ids, when sent that way
  bool echo = false;
};

struct ChatParams : CommonParams {
  nlohmann::ordered_json messages;   // validated array of message objects
  nlohmann::ordered_json tools;      // array or null
  std::string tool_choice = "auto";  // "none", "auto", "required", or "function"
  std::string tool_choice_name;      // with "function"
  bool parallel_tool_calls =
      true;  // false: one call (enforced under required / auto with strict tools, else the first kept)
  nlohmann::ordered_json template_kwargs = nlohmann::ordered_json::object();
  std::optional<bool> enable_thinking;     // unset: the template's default
  std::optional<int64_t> thinking_budget;  // reasoning tokens at most
};

// Throw ApiError (400) naming the offending field.
CompletionParams parse_completion_request(std::string_view body);
ChatParams parse_chat_request(std::string_view body);

// OpenAI's response_format object as a constraint (null for "text"); errors are 400s that name
// `param`, so that another API's field (Ollama's "format") can be named in them.
std::shared_ptr<const grammar::Grammar> compile_response_format(const nlohmann::ordered_json& rf,
                                                                const std::string& param);

}  // namespace owl::server
