#include "server/api.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>

#include "grammar/gbnf.h"
#include "grammar/json_schema.h"
#include "runtime/engine.h"
#include "runtime/logprobs.h"

namespace owl::server {

using json = nlohmann::ordered_json;

std::string error_body(const ApiError& e) {
  json err = {{"message", e.what()},
              {"type", e.type},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)},
              {"code", e.code.empty() ? json(nullptr) : json(e.code)}};
  return json{{"error", err}}.dump();
}

namespace {

ApiError bad(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  return ApiError(400, "'" + param + "': " + message, "invalid_request_error", param, code);
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_float:
      return "a float";
    default:
      return "an integer";
  }
}

json parse_object(std::string_view body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    throw ApiError(400, "the request body is not valid JSON; send a JSON object", "invalid_request_error", "",
                   "invalid_json");
  if (!j.is_object())
    throw ApiError(400, std::string("the request body must be a JSON object, got ") + type_name(j),
                   "invalid_request_error", "", "invalid_json");
  return j;
}

// Present and not null.
const json* field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

double number(const json& j, const char* name, double lo, double hi) {
  const json* v = field(j, name);
  if (!v->is_number()) throw bad(name, std::string("must be a number, got ") + type_name(*v), "invalid_type");
  double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    throw bad(name, "must be between " + json(lo).dump() + " and " + json(hi).dump() + ", got " + v->dump());
  return x;
}

int64_t integer(const json& j, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(j, name);
  bool integral = v->is_number_integer() ||
                  (v->is_number_float() && std::isfinite(v->get<double>()) &&
                   v->get<double>() == std::floor(v->get<double>()) && std::fabs(v->get<double>()) < 9e18);
  if (!integral) throw bad(name, std::string("must be an integer, got ") + v->dump(), "invalid_type");
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi))
    throw bad(name, "must be at most " + std::to_string(hi) + ", got " + v->dump());
  int64_t x = v->is_number_float() ? static_cast<int64_t>(v->get<double>()) : v->get<int64_t>();
  if (x < lo || x > hi)
    throw bad(name, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " + v->dump());
  return x;
}

bool boolean(const json& j, const char* name) {
  const json* v = field(j, name);
  if (!v->is_boolean()) throw bad(name, std::string("must be a boolean, got ") + type_name(*v), "invalid_type");
  return v->get<bool>();
}

// A schema is a JSON object (or boolean); one sent as a string is read as the schema's JSON text,
// so that text which is not JSON is refused with the byte where it breaks.
std::shared_ptr<const grammar::Grammar> compile_schema(const nlohmann::ordered_json& schema) {
  if (schema.is_string()) return grammar::compile_json_schema_text(schema.get<std::string>());
  return grammar::compile_json_schema(schema);
}

// Turns a schema or grammar owl cannot compile into a 400 that says why and where.
template <class Compile>
std::shared_ptr<const grammar::Grammar> compile_or_400(const std::string& param, Compile&& compile) {
  try {
    return compile();
  } catch (const grammar::CompileError& e) {
    throw bad(param, e.what(), "invalid_grammar");
  }
}

}  // namespace

std::shared_ptr<const grammar::Grammar> compile_response_format(const nlohmann::ordered_json& rf,
                                                                const std::string& param) {
  if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
    throw bad(param, "must be an object with a string 'type'", "invalid_type");
  const std::string type = rf["type"].get<std::string>();
  if (type == "json_object") return compile_or_400(param, [] { return grammar::json_object_grammar(); });
  if (type == "json_schema") {
    const json* js = rf.contains("json_schema") ? &rf["json_schema"] : nullptr;
    if (!js || !js->is_object() || !js->contains("schema"))
      throw bad(param, "json_schema needs {\"json_schema\": {\"schema\": {...}}}");
    return compile_or_400(param, [&] { return compile_schema((*js)["schema"]); });
  }
  if (type != "text") throw bad(param, "type must be text, json_object or json_schema, got '" + type + "'");
  return nullptr;
}

namespace {

// response_format ({type: text | json_object | json_schema, json_schema: {schema, strict}}) and
// llama.cpp's json_schema (a schema) and grammar (GBNF) fields, compiled here.
void parse_constraint(const json& j, CommonParams& p) {
  auto compile = [&](const char* param, auto&& fn) { p.grammar = compile_or_400(param, fn); };
  if (const json* rf = field(j, "response_format")) p.grammar = compile_response_format(*rf, "response_format");
  if (const json* js = field(j, "json_schema")) {
    nlohmann::ordered_json schema = *js;
    compile("json_schema", [&] { return compile_schema(schema); });
  }
  if (const json* g = field(j, "grammar")) {
    if (!g->is_string()) throw bad("grammar", std::string("must be a string, got ") + type_name(*g), "invalid_type");
    if (!g->get<std::string>().empty())
      compile("grammar", [&] { return grammar::compile_gbnf(g->get<std::string>()); });
  }
}

// OpenAI's logit_bias: {"<token id>": bias in [-100, 100]}, added to that token's logit before
// sampling. Ids are checked against the vocabulary by the server, which knows it.
std::vector<std::pair<int32_t, float>> parse_logit_bias(const json& v) {
  if (!v.is_object())
    throw bad("logit_bias", std::string("must be an object mapping token ids to biases, got ") + type_name(v),
              "invalid_type");
  std::vector<std::pair<int32_t, float>> out;
  for (const auto& [key, bias] : v.items()) {
    const bool digits = !key.empty() && key.size() <= 9 && key.find_first_not_of("0123456789") == std::string::npos;
    if (!digits) throw bad("logit_bias", "keys must be token ids (non-negative integers), got '" + key + "'");
    if (!bias.is_number())
      throw bad("logit_bias", "the bias for token " + key + " must be a number, got " + type_name(bias),
                "invalid_type");
    const double b = bias.get<double>();
    if (!std::isfinite(b) || b < -100 || b > 100)
      throw bad("logit_bias", "the bias for token " + key + " must be between -100 and 100, got " + bias.dump());
    out.emplace_back(std::stoi(key), static_cast<float>(b));
  }
  return out;
}

// OpenAI fields that change nothing in owl are checked and accepted, each for a reason that
// docs/API.md gives; those owl cannot honour are refused rather than silently ignored.
void check_openai_noops(const json& j) {
  if (const json* v = field(j, "user"); v && !v->is_string())
    throw bad("user", std::string("must be a string, got ") + type_name(*v), "invalid_type");
  for (const char* id : {"safety_identifier", "prompt_cache_key"})
    if (const json* v = field(j, id); v && !v->is_string())
      throw bad(id, std::string("must be a string, got ") + type_name(*v), "invalid_type");
  if (const json* v = field(j, "metadata"); v && !v->is_object())
    throw bad("metadata", std::string("must be an object, got ") + type_name(*v), "invalid_type");
  if (field(j, "store") && boolean(j, "store"))
    throw bad("store", "owl does not store completions; leave store out or send false", "unsupported_value");
  if (const json* v = field(j, "service_tier")) {
    if (!v->is_string()) throw bad("service_tier", "must be a string", "invalid_type");
    if (*v != "auto" && *v != "default")
      throw bad("service_tier", "owl has one tier: send \"auto\" or \"default\", got " + v->dump(),
                "unsupported_value");
  }
}

// Known OpenAI fields owl does not implement: a 400 naming them, never a silent no-op.
void refuse_unsupported(const json& j, std::initializer_list<std::pair<const char*, const char*>> fields) {
  for (const auto& [name, why] : fields)
    if (field(j, name)) throw bad(name, std::string("is not supported by owl: ") + why, "unsupported_parameter");
}

// Chat: logprobs (a boolean) and top_logprobs (0..20 alternatives per token, with logprobs only).
void parse_chat_logprobs(const json& j, CommonParams& p) {
  const bool on = field(j, "logprobs") && boolean(j, "logprobs");
  if (field(j, "top_logprobs")) {
    const auto top = static_cast<int>(integer(j, "top_logprobs", 0, kMaxTopLogprobs));
    if (!on) throw bad("top_logprobs", "needs \"logprobs\": true", "invalid_value");
    p.logprobs = top;
  } else if (on) {
    p.logprobs = 0;
  }
}

// Completions: logprobs is the number of alternatives per token (0..5), as in OpenAI's legacy API.
void parse_completion_logprobs(const json& j, CompletionParams& p) {
  if (field(j, "logprobs")) p.logprobs = static_cast<int>(integer(j, "logprobs", 0, 5));
  if (p.logprobs >= 0 && p.echo)
    throw bad("logprobs", "with echo would report the prompt's log-probabilities, which owl does not compute",
              "unsupported_value");
  if (const json* v = field(j, "best_of"); v && integer(j, "best_of", 1, kMaxChoices) != p.n)
    throw bad("best_of", "owl does not rank candidates; best_of must equal n (" + std::to_string(p.n) + ")",
              "unsupported_value");
  if (const json* v = field(j, "suffix"); v && !(v->is_string() && v->get<std::string>().empty()))
    throw bad("suffix", "is not supported by owl (no fill-in-the-middle)", "unsupported_parameter");
}

void parse_common(const json& j, CommonParams& p, const char* max_tokens_name) {
  parse_constraint(j, p);
  if (const json* v = field(j, "model")) {
    if (!v->is_string()) throw bad("model", std::string("must be a string, got ") + type_name(*v), "invalid_type");
    p.model = v->get<std::string>();
  }
  // OpenAI's defaults: plain sampling from the full distribution.
  p.sampling.temperature = 1.0f;
  p.sampling.top_p = 1.0f;
  p.sampling.top_k = 0;
  p.sampling.min_p = 0.0f;
  if (field(j, "temperature")) p.sampling.temperature = static_cast<float>(number(j, "temperature", 0, 2));
  if (field(j, "top_p")) {
    p.sampling.top_p = static_cast<float>(number(j, "top_p", 0, 1));
    if (p.sampling.top_p <= 0) throw bad("top_p", "must be greater than 0");
  }
  if (field(j, "top_k")) p.sampling.top_k = static_cast<int32_t>(integer(j, "top_k", -1, 1 << 30));
  if (field(j, "min_p")) p.sampling.min_p = static_cast<float>(number(j, "min_p", 0, 1));
  if (field(j, "presence_penalty"))
    p.sampling.presence_penalty = static_cast<float>(number(j, "presence_penalty", -2, 2));
  if (field(j, "frequency_penalty"))
    p.sampling.frequency_penalty = static_cast<float>(number(j, "frequency_penalty", -2, 2));
  if (field(j, "repetition_penalty"))
    p.sampling.repeat_penalty = static_cast<float>(number(j, "repetition_penalty", 0.01, 10));
  if (const json* v = field(j, "logit_bias")) p.sampling.logit_bias = parse_logit_bias(*v);
  if (field(j, "seed")) {
    const json* v = field(j, "seed");
    if (!v->is_number_integer()) throw bad("seed", std::string("must be an integer, got ") + v->dump(), "invalid_type");
    p.seed = v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
    p.sampling.seed = explicit_seed(*p.seed);
  }
  for (const char* name : {max_tokens_name, "max_tokens"}) {
    if (field(j, name) && !p.max_tokens) {
      p.max_tokens = integer(j, name, 1, std::numeric_limits<int64_t>::max() / 4);
    }
  }
  if (const json* v = field(j, "stop")) {
    if (v->is_string()) {
      p.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (v->size() > 16) throw bad("stop", "at most 16 stop strings are allowed");
      for (const auto& s : *v) {
        if (!s.is_string()) throw bad("stop", "must be a string or an array of strings", "invalid_type");
        p.stop.push_back(s.get<std::string>());
      }
    } else {
      throw bad("stop", std::string("must be a string or an array of strings, got ") + type_name(*v), "invalid_type");
    }
    for (const auto& s : p.stop)
      if (s.empty()) throw bad("stop", "stop strings must not be empty");
  }
  if (field(j, "stream")) p.stream = boolean(j, "stream");
  if (const json* v = field(j, "stream_options")) {
    if (!v->is_object()) throw bad("stream_options", "must be an object", "invalid_type");
    if (field(*v, "include_usage")) p.include_usage = boolean(*v, "include_usage");
  }
  if (field(j, "n")) p.n = static_cast<int>(integer(j, "n", 1, kMaxChoices));
  check_openai_noops(j);
  if (field(j, "ignore_eos")) p.ignore_eos = boolean(j, "ignore_eos");
  if (field(j, "speculative")) p.speculative = boolean(j, "speculative");
}

void validate_messages(const json& msgs) {
  static const char* kRoles[] = {"system", "developer", "user", "assistant", "tool"};
  for (size_t i = 0; i < msgs.size(); ++i) {
    const json& m = msgs[i];
    std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw bad(where, std::string("must be an object, got ") + type_name(m), "invalid_type");
    const json* role = field(m, "role");
    if (!role || !role->is_string()) throw bad(where + ".role", "is required and must be a string", "invalid_type");
    bool known = false;
    for (const char* r : kRoles) known |= *role == r;
    if (!known)
      throw bad(where + ".role", "must be one of system, developer, user, assistant, tool; got " + role->dump());
    const json* content = field(m, "content");
    if (content && !content->is_string() && !content->is_array())
      throw bad(where + ".content",
                std::string("must be a string or an array of content parts, got ") + type_name(*content),
                "invalid_type");
    if (content && content->is_array()) {
      for (const auto& part : *content) {
        if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
            !part["text"].is_string())
          throw bad(where + ".content", "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
      }
    }
    if (!content && !(*role == "assistant" && field(m, "tool_calls")))
      throw bad(where + ".content", "is required (only an assistant message with tool_calls may omit it)");
    if (const json* tc = field(m, "tool_calls"); tc && !tc->is_array())
      throw bad(where + ".tool_calls", "must be an array", "invalid_type");
  }
}

}  // namespace

CompletionParams parse_completion_request(std::string_view body) {
  json j = parse_object(body);
  CompletionParams p;
  parse_common(j, p, "max_tokens");
  if (!p.max_tokens) p.max_tokens = 16;  // OpenAI's default for completions
  const json* prompt = field(j, "prompt");
  if (!prompt) throw bad("prompt", "is required", "missing_field");
  const json* one = prompt;
  if (prompt->is_array() && prompt->size() == 1 && ((*prompt)[0].is_string() || (*prompt)[0].is_array()))
    one = &(*prompt)[0];
  if (one->is_string()) {
    p.prompt_text = one->get<std::string>();  // "" is a prompt too: BOS alone where the model adds one
  } else if (one->is_array()) {
    if (one->empty()) throw bad("prompt", "must not be empty");
    for (const auto& t : *one) {
      if (!t.is_number_integer()) throw bad("prompt", "a token array must hold integers only", "invalid_type");
      int64_t id = t.get<int64_t>();
      if (id < 0 || id > std::numeric_limits<int32_t>::max())
        throw bad("prompt", "token id " + t.dump() + " is out of range");
      p.prompt_ids.push_back(static_cast<int32_t>(id));
    }
  } else {
    throw bad(
        "prompt",
        std::string("must be a string or an array of token ids (one prompt per request), got ") + type_name(*prompt),
        "invalid_type");
  }
  if (field(j, "echo")) p.echo = boolean(j, "echo");
  parse_completion_logprobs(j, p);
  return p;
}

ChatParams parse_chat_request(std::string_view body) {
  json j = parse_object(body);
  ChatParams p;
  parse_common(j, p, "max_completion_tokens");
  const json* msgs = field(j, "messages");
  if (!msgs) throw bad("messages", "is required", "missing_field");
  if (!msgs->is_array())
    throw bad("messages", std::string("must be an array, got ") + type_name(*msgs), "invalid_type");
  if (msgs->empty()) throw bad("messages", "must hold at least one message");
  validate_messages(*msgs);
  p.messages = *msgs;
  parse_chat_logprobs(j, p);
  refuse_unsupported(j, {{"functions", "use tools"},
                         {"function_call", "use tool_choice"},
                         {"audio", "owl answers in text only"},
                         {"prediction", "no predicted outputs"},
                         {"web_search_options", "owl has no web search"}});
  if (const json* v = field(j, "modalities")) {
    if (!v->is_array() || v->empty() || std::any_of(v->begin(), v->end(), [](const json& m) { return m != "text"; }))
      throw bad("modalities", "owl answers in text only: send [\"text\"]", "unsupported_value");
  }

  if (const json* tools = field(j, "tools")) {
    if (!tools->is_array()) throw bad("tools", "must be an array", "invalid_type");
    for (size_t i = 0; i < tools->size(); ++i) {
      const json& t = (*tools)[i];
      std::string where = "tools[" + std::to_string(i) + "]";
      if (!t.is_object() || t.value("type", "") != "function" || !t.contains("function") || !t["function"].is_object())
        throw bad(where, "must be {\"type\": \"function\", \"function\": {...}}");
      if (!t["function"].contains("name") || !t["function"]["name"].is_string())
        throw bad(where + ".function.name", "is required and must be a string");
    }
    if (!tools->empty()) p.tools = *tools;
  }
  if (const json* tc = field(j, "tool_choice")) {
    if (tc->is_string()) {
      std::string s = tc->get<std::string>();
      if (s != "none" && s != "auto" && s != "required")
        throw bad("tool_choice", "must be \"none\", \"auto\", \"required\" or a function object");
      p.tool_choice = s;
    } else if (tc->is_object() && tc->contains("function") && (*tc)["function"].is_object() &&
               (*tc)["function"].contains("name") && (*tc)["function"]["name"].is_string()) {
      p.tool_choice = "function";
      p.tool_choice_name = (*tc)["function"]["name"].get<std::string>();
    } else {
      throw bad("tool_choice",
                "must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                "invalid_type");
    }
    if (p.tool_choice != "none" && p.tools.is_null()) throw bad("tool_choice", "needs a non-empty 'tools' list");
  }
  if (field(j, "parallel_tool_calls")) p.parallel_tool_calls = boolean(j, "parallel_tool_calls");
  if (const json* kw = field(j, "chat_template_kwargs")) {
    if (!kw->is_object()) throw bad("chat_template_kwargs", "must be an object", "invalid_type");
    p.template_kwargs = *kw;
    if (const json* et = field(*kw, "enable_thinking")) {
      if (!et->is_boolean()) throw bad("chat_template_kwargs.enable_thinking", "must be a boolean", "invalid_type");
      p.enable_thinking = et->get<bool>();
    }
  }
  if (const json* re = field(j, "reasoning_effort")) {
    // owl has no effort levels: "none" turns reasoning off, the others leave it as the model does it.
    if (!re->is_string()) throw bad("reasoning_effort", "must be a string", "invalid_type");
    if (*re != "none" && *re != "minimal" && *re != "low" && *re != "medium" && *re != "high")
      throw bad("reasoning_effort", "must be none, minimal, low, medium or high, got " + re->dump());
    if (*re == "none") p.enable_thinking = false;
  }
  if (const json* v = field(j, "verbosity"); v && *v != "medium")
    throw bad("verbosity", "owl cannot steer an answer's length: send \"medium\" or leave it out", "unsupported_value");
  if (field(j, "thinking_budget")) p.thinking_budget = integer(j, "thinking_budget", 0, 1 << 30);
  if (const json* r = field(j, "reasoning")) {
    if (!r->is_object()) throw bad("reasoning", "must be an object", "invalid_type");
    if (field(*r, "max_tokens")) p.thinking_budget = integer(*r, "max_tokens", 0, 1 << 30);
    if (field(*r, "enabled") && !boolean(*r, "enabled")) p.enable_thinking = false;
    if (const json* e = field(*r, "effort")) {
      if (*e != "none" && *e != "minimal" && *e != "low" && *e != "medium" && *e != "high")
        throw bad("reasoning.effort", "must be none, minimal, low, medium or high, got " + e->dump());
      if (*e == "none") p.enable_thinking = false;
    }
  }
  return p;
}

}  // namespace owl::server
