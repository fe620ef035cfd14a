// Tool calls of the families whose markers are single tokens (DeepSeek-V3, R1 and V3.1, GLM-4.6:
// added tokens that are text; Kimi K2: special tokens the decoder must keep), generated through the
// real server path: stories260K's weights behind a 512-token vocabulary holding the family's
// markers (marker_tokenizer.h) and the family's chat template. A hook forces the answer's
// tokens, as the model would write them: each marker one token, or the marker spelled as text
// and split across tokens (and across UTF-8 characters, deltas included); malformed and cut
// calls. Then tool_choice "required", a named function, and "auto" with a strict tool on real
// sampling: the grammar over the marker tokens holds whatever stories260K draws.
#include <gtest/gtest.h>

#include <cctype>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "chat/chat_template.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "server/http.h"
#include "server/marker_tokenizer.h"
#include "server/npm_client.h"
#include "server/server.h"
#include "server/server_fixture.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

// Forces `ids`, then end-of-generation when `end`, else lets the model sample on.
class ForcedHook : public TokenHook {
 public:
  ForcedHook(std::vector<int32_t> ids, bool end, int32_t eos) : ids_(std::move(ids)) {
    if (end) ids_.push_back(eos);
  }
  std::vector<int32_t> at_start() override { return ids_; }
  std::vector<int32_t> on_token(int32_t, std::string_view) override { return {}; }

 private:
  std::vector<int32_t> ids_;
};

struct Forced {
  std::vector<int32_t> ids;
  bool end = true;
};

class ForcingServer : public server::OpenAIServer {
 public:
  ForcingServer(Engine& engine, const Tokenizer& tok, chat::ChatTemplate tmpl, const std::optional<Forced>* forced)
      : OpenAIServer(engine, tok, std::move(tmpl), options()), tok_(tok), forced_(forced) {}

 protected:
  static server::ApiOptions options() {
    server::ApiOptions o;
    o.model_id = "markers";
    return o;
  }
  std::shared_ptr<TokenHook> chat_hook(const server::ChatParams&, chat::ReasoningStart,
                                       const chat::ReasoningTags&) const override {
    if (!forced_->has_value()) return nullptr;  // sampled freely
    return std::make_shared<ForcedHook>((*forced_)->ids, (*forced_)->end, tok_.eos_id());
  }

 private:
  const Tokenizer& tok_;
  const std::optional<Forced>* forced_;
};

struct Family {
  std::string name;
  std::string template_path;  // in ../shared, or tests/... in the source tree
  MarkerVocab vocab;
  std::string reasoning;  // what the answer writes before its call ("" when no reasoning is open)
  std::string call;       // one call of get_weather({"city": "Paris", "days": 3}) in the family's form
  std::string broken;     // the same call with arguments that are not JSON
  std::string call_id;    // the call's id when the format carries one
  std::string first_marker;
  size_t fragments = 4;  // argument deltas at least (the key/value formats send one per parameter)
};

void PrintTo(const Family& f, std::ostream* os) { *os << f.name; }

const std::string kArgs = "{\"city\": \"Paris\", \"days\": 3}";

std::vector<Family> families() {
  const std::string ds_v3 = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n" +
                            kArgs + "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  const std::string ds_v3_broken =
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": "
      "Paris}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  return {
      {"deepseek-v3", "chat-templates/deepseek-v3/chat_template.jinja", deepseek_vocab(false), "", ds_v3, ds_v3_broken,
       "", "<｜tool▁calls▁begin｜>"},
      // R1's generation prompt opens <think>: the answer ends the reasoning, then calls.
      {"deepseek-r1", "chat-templates/deepseek-r1/chat_template.jinja", deepseek_vocab(true),
       "The user wants the weather.\n</think>\n\n", ds_v3, ds_v3_broken, "", "<｜tool▁calls▁begin｜>"},
      {"deepseek-v3.1", "tests/server/deepseek_v31_style.jinja", deepseek_vocab(false), "",
       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>" + kArgs +
           "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": Paris}<｜tool▁call▁end｜><"
       "｜tool▁calls▁end｜>",
       "", "<｜tool▁calls▁begin｜>"},
      {"kimi-k2", "chat-templates/kimi-k2/chat_template.jinja", kimi_vocab(), "",
       "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>" + kArgs +
           "<|tool_call_end|><|tool_calls_section_end|>",
       "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": "
       "Paris}<|tool_call_end|><|tool_calls_section_end|>",
       "functions.get_weather:0", "<|tool_calls_section_begin|>"},
      {"glm-4.6", "chat-templates/glm-4.6/chat_template.jinja", glm_vocab(), "",
       "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</"
       "arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
       "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris\n</tool_call>", "", "<tool_call>", 2},
  };
}

const json kTools = json::parse(R"([{"type":"function","function":{"name":"get_weather","parameters":{
  "type":"object","properties":{"city":{"type":"string","maxLength":12},"days":{"type":"integer","minimum":1,
  "maximum":9}},"required":["city","days"],"additionalProperties":false}}}])");

// The server over the family's vocabulary and template, on a free port.
class MarkerServer {
 protected:
  void start(const Family& f) {
    source_ = open_model_source(shared_path("models/stories260K/stories260K-f32.gguf"));
    tok_ = marker_tokenizer(f.vocab, temp_dir() + "/tokenizer");
    model_ = Model::load(*source_);
    ASSERT_EQ(tok_->n_vocab(), model_->n_vocab());
    EngineOptions eo;
    eo.n_parallel = 1;
    eo.n_ctx = 4096;  // one token per byte of the template's text
    engine_ = std::make_unique<Engine>(*model_, *tok_, eo);
    const std::string path = f.template_path.rfind("tests/", 0) == 0
                                 ? std::string(OWL_SOURCE_DIR) + "/" + f.template_path
                                 : shared_path(f.template_path);
    chat::ChatTemplate tmpl(read_file(path), f.vocab.bos, f.vocab.eos);
    api_ = std::make_unique<ForcingServer>(*engine_, *tok_, std::move(tmpl), &forced_);
    http::ServerOptions ho;
    ho.port = 0;
    http_ =
        std::make_unique<http::Server>(ho, [this](const http::Request& q, http::Response& r) { api_->handle(q, r); });
    http_->listen();
    thread_ = std::thread([this] { http_->run(); });
  }
  void stop() {
    if (!http_) return;
    http_->stop();
    thread_.join();
    http_.reset();
  }

  // The answer's tokens: markers as their own tokens, or everything spelled byte by byte (ids
  // 0-255 are the bytes).
  std::vector<int32_t> tokens(const std::string& text, bool split) const {
    if (!split) return tok_->encode(text, false);
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  void force(const std::string& text, bool split, bool end = true) { forced_ = Forced{tokens(text, split), end}; }

  HttpResult post(json body) {
    body["messages"] = {{{"role", "user"}, {"content", "Weather in Paris?"}}};
    if (!body.contains("tools")) body["tools"] = kTools;
    return http_post(http_->port(), "/v1/chat/completions", body.dump());
  }
  json ask(const json& body) {
    HttpResult r = post(body);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json();
  }

  // A streamed answer put together as a client does: content, reasoning, calls from their deltas.
  struct Streamed {
    std::string content, reasoning, finish;
    std::vector<std::string> content_deltas;
    json calls = json::array();
    size_t argument_fragments = 0;
  };
  Streamed ask_streamed(json body) {
    body["stream"] = true;
    HttpResult r = post(body);
    EXPECT_EQ(r.status, 200) << r.body;
    Streamed s;
    for (const json& e : sse_events(r.body)) {
      if (e.is_string() || e["choices"].empty()) continue;
      const json& d = e["choices"][0]["delta"];
      if (d.contains("content") && d["content"].is_string()) {
        s.content += d["content"].get<std::string>();
        s.content_deltas.push_back(d["content"]);
      }
      if (d.contains("reasoning_content")) s.reasoning += d["reasoning_content"].get<std::string>();
      if (d.contains("tool_calls"))
        for (const json& t : d["tool_calls"]) {
          const size_t i = t["index"];
          if (t.contains("id")) {  // OpenAI's shape: the first delta has id, type, name and arguments ""
            EXPECT_EQ(i, s.calls.size());
            EXPECT_EQ(t["type"], "function");
            EXPECT_EQ(t["function"]["arguments"], "");
            s.calls.push_back(t);
          } else {
            EXPECT_LT(i, s.calls.size());
            if (i >= s.calls.size()) continue;
            EXPECT_FALSE(t["function"].contains("name"));
            s.calls[i]["function"]["arguments"] =
                s.calls[i]["function"]["arguments"].get<std::string>() + t["function"]["arguments"].get<std::string>();
            ++s.argument_fragments;
          }
        }
      if (!e["choices"][0]["finish_reason"].is_null()) s.finish = e["choices"][0]["finish_reason"];
    }
    return s;
  }

  std::optional<Forced> forced_;
  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<server::OpenAIServer> api_;
  std::unique_ptr<http::Server> http_;
  std::thread thread_;
};

class MarkerToolCalls : public ::testing::TestWithParam<Family>, protected MarkerServer {
 protected:
  void SetUp() override { start(GetParam()); }
  void TearDown() override { stop(); }
};

// The vocabulary holds the markers as the family's tokenizer does: one token each.
TEST_P(MarkerToolCalls, MarkersAreSingleTokens) {
  const Family& f = GetParam();
  const std::vector<int32_t> ids = tok_->encode(f.first_marker, false);
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(tok_->is_special(ids[0]), f.name == "kimi-k2");
  EXPECT_EQ(tokens(f.first_marker, true).size(), f.first_marker.size());  // spelled out: one token per byte
}

TEST_P(MarkerToolCalls, WholeAnswerParsesTheCall) {
  const Family& f = GetParam();
  for (bool split : {false, true}) {
    SCOPED_TRACE(split ? "markers spelled in bytes" : "markers as tokens");
    force(f.reasoning + "Let me check." + f.call, split);
    json j = ask({{"max_tokens", 400}});
    const json& msg = j["choices"][0]["message"];
    EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls") << j.dump();
    EXPECT_EQ(msg["content"], "Let me check.");
    if (!f.reasoning.empty()) {
      EXPECT_EQ(msg["reasoning_content"], "The user wants the weather.");
    }
    ASSERT_EQ(msg["tool_calls"].size(), 1u) << j.dump();
    const json& call = msg["tool_calls"][0];
    EXPECT_EQ(call["type"], "function");
    EXPECT_EQ(call["function"]["name"], "get_weather");
    EXPECT_EQ(call["function"]["arguments"], R"({"city":"Paris","days":3})");
    if (!f.call_id.empty()) {
      EXPECT_EQ(call["id"], f.call_id);
    }
  }
}

// Streamed: the text before the call is content, no piece of a marker ever is (whether it came
// as one token or split over tokens and deltas), and the call arrives in OpenAI's delta shape.
TEST_P(MarkerToolCalls, StreamedCallNeverLeaksAMarker) {
  const Family& f = GetParam();
  for (bool split : {false, true}) {
    SCOPED_TRACE(split ? "markers spelled in bytes" : "markers as tokens");
    force(f.reasoning + "Let me check." + f.call, split);
    Streamed s = ask_streamed({{"max_tokens", 400}});
    EXPECT_EQ(s.content, "Let me check.");
    for (const std::string& d : s.content_deltas) {
      EXPECT_EQ(d.find('<'), std::string::npos) << d;
      EXPECT_EQ(d.find("\xEF\xBD\x9C"), std::string::npos) << d;  // DeepSeek's full-width bar
    }
    if (!f.reasoning.empty()) {
      EXPECT_EQ(s.reasoning, "The user wants the weather.");
    }
    ASSERT_EQ(s.calls.size(), 1u);
    EXPECT_EQ(s.calls[0]["function"]["name"], "get_weather");
    EXPECT_EQ(s.calls[0]["function"]["arguments"], R"({"city":"Paris","days":3})");
    EXPECT_GE(s.argument_fragments, f.fragments);  // streamed as generated, not in one piece
    if (!f.call_id.empty()) {
      EXPECT_EQ(s.calls[0]["id"], f.call_id);
    }
    EXPECT_EQ(s.finish, "tool_calls");
  }
}

// A call whose arguments are not JSON is no call: its text, markers included (Kimi's special
// tokens too), is the content, whole and streamed. (A stream has already sent the call's first
// deltas when its arguments break: they never add up to valid arguments.)
TEST_P(MarkerToolCalls, MalformedCallStaysContent) {
  const Family& f = GetParam();
  for (bool split : {false, true}) {
    SCOPED_TRACE(split ? "markers spelled in bytes" : "markers as tokens");
    force(f.reasoning + "Let me check." + f.broken, split);
    json j = ask({{"max_tokens", 400}});
    EXPECT_EQ(j["choices"][0]["finish_reason"], "stop") << j.dump();
    EXPECT_FALSE(j["choices"][0]["message"].contains("tool_calls")) << j.dump();
    EXPECT_EQ(j["choices"][0]["message"]["content"], "Let me check." + f.broken);
    Streamed s = ask_streamed({{"max_tokens", 400}});
    EXPECT_EQ(s.content, "Let me check." + f.broken);
    EXPECT_EQ(s.finish, "stop");
    for (const json& c : s.calls) {
      EXPECT_FALSE(json::accept(c["function"]["arguments"].get<std::string>())) << c;
    }
  }
}

// tool_choice "none": no call is parsed, the answer's text (markers included) is the content,
// and the tools stay out of the prompt.
TEST_P(MarkerToolCalls, ToolChoiceNoneParsesNothing) {
  const Family& f = GetParam();
  force(f.reasoning + "Let me check." + f.call, false);
  json j = ask({{"max_tokens", 400}, {"tool_choice", "none"}});
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop") << j.dump();
  EXPECT_FALSE(j["choices"][0]["message"].contains("tool_calls")) << j.dump();
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Let me check." + f.call);
  json with_tools = ask({{"max_tokens", 400}});
  if (f.name != "deepseek-v3" && f.name != "deepseek-r1" && f.name != "deepseek-v3.1") {  // these render no tools
    EXPECT_LT(j["usage"]["prompt_tokens"].get<int>(), with_tools["usage"]["prompt_tokens"].get<int>());
  }
}

// max_tokens inside the call: finish_reason "length" and no call in the message; a stream has
// sent the start of the call, its arguments a prefix of the real ones.
TEST_P(MarkerToolCalls, CallCutByMaxTokensIsLength) {
  const Family& f = GetParam();
  force(f.reasoning + f.call, false);
  const size_t upto = tokens(f.reasoning, false).size() + tokens(f.call, false).size() / 2;
  json j = ask({{"max_tokens", upto}});
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length") << j.dump();
  EXPECT_FALSE(j["choices"][0]["message"].contains("tool_calls")) << j.dump();
  Streamed s = ask_streamed({{"max_tokens", upto}});
  EXPECT_EQ(s.finish, "length");
  const std::string args = R"({"city":"Paris","days":3})";
  for (const json& c : s.calls) {
    const std::string sent = c["function"]["arguments"];
    EXPECT_LT(sent.size(), args.size()) << c;
    EXPECT_EQ(args.substr(0, sent.size()), sent) << c;
  }
}

void expect_schema_valid(const json& call) {
  EXPECT_EQ(call["function"]["name"], "get_weather");
  json args = json::parse(call["function"]["arguments"].get<std::string>());
  ASSERT_TRUE(args.is_object()) << args;
  ASSERT_TRUE(args["city"].is_string()) << args;
  EXPECT_LE(args["city"].get<std::string>().size(), 12u * 4) << args;
  ASSERT_TRUE(args["days"].is_number_integer()) << args;
  EXPECT_GE(args["days"].get<int>(), 1);
  EXPECT_LE(args["days"].get<int>(), 9);
  EXPECT_EQ(args.size(), 2u) << args;
}

// tool_choice on real sampling: stories260K knows nothing of these markers, the grammar over
// the family's call syntax (markers as tokens or bytes) makes every answer one valid call.
TEST_P(MarkerToolCalls, RequiredAndNamedAreEnforcedOnSampling) {
  const Family& f = GetParam();
  if (!f.reasoning.empty())  // R1 reasons first, freely: its close tag is forced, the rest sampled
    force(f.reasoning, false, false);
  for (int seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    for (const json& choice : {json("required"), json{{"type", "function"}, {"function", {{"name", "get_weather"}}}}}) {
      json j = ask({{"max_tokens", 400}, {"seed", seed}, {"tool_choice", choice}, {"parallel_tool_calls", false}});
      const json& msg = j["choices"][0]["message"];
      EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls") << j.dump();
      EXPECT_TRUE(msg["content"].is_null()) << j.dump();
      ASSERT_EQ(msg["tool_calls"].size(), 1u) << j.dump();
      expect_schema_valid(msg["tool_calls"][0]);
    }
  }
}

// "auto" with a strict tool: the answer is free until the family's section marker (forced here
// as one token, after some text), then the call is sampled under the grammar.
TEST_P(MarkerToolCalls, AutoWithAStrictToolHoldsTheCallAfterItsMarker) {
  const Family& f = GetParam();
  json strict = kTools;
  strict[0]["function"]["strict"] = true;
  for (bool split : {false, true}) {
    force(f.reasoning + "Let me check." + f.first_marker, split, false);
    for (int seed = 1; seed <= 2; ++seed) {
      SCOPED_TRACE(std::string(split ? "spelled" : "token") + " / seed " + std::to_string(seed));
      json j = ask({{"max_tokens", 400}, {"seed", seed}, {"tools", strict}, {"parallel_tool_calls", false}});
      const json& msg = j["choices"][0]["message"];
      EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls") << j.dump();
      EXPECT_EQ(msg["content"], "Let me check.");
      ASSERT_EQ(msg["tool_calls"].size(), 1u) << j.dump();
      expect_schema_valid(msg["tool_calls"][0]);
    }
  }
}

// The official openai client streams the family's call: its stream helper joins the deltas into
// the same call as the answer given whole, and no marker reaches the content.
TEST_P(MarkerToolCalls, OfficialClientJoinsTheStreamedCall) {
  const Family& f = GetParam();
  force(f.reasoning + "Let me check." + f.call, false);
  install_npm_package("openai", "5.23.2");
  json r = run_node_script("openai_tools.mjs", {std::to_string(http_->port()), "family_stream"});
  for (const char* k : {"streamed", "whole"}) {
    SCOPED_TRACE(k);
    const json& a = r[k];
    EXPECT_EQ(a["finish"], "tool_calls") << r;
    EXPECT_EQ(a["content"], "Let me check.") << r;
    ASSERT_EQ(a["calls"].size(), 1u) << r;
    EXPECT_EQ(a["calls"][0]["name"], "get_weather");
    EXPECT_EQ(json::parse(a["calls"][0]["arguments"].get<std::string>()), json({{"city", "Paris"}, {"days", 3}}));
    if (!f.call_id.empty()) {
      EXPECT_EQ(a["calls"][0]["id"], f.call_id);
    }
  }
  EXPECT_GE(r["fragments"].get<size_t>(), f.fragments) << r;
  for (const json& d : r["contentDeltas"]) EXPECT_EQ(d.get<std::string>().find('<'), std::string::npos) << r;
  if (!f.reasoning.empty()) {
    EXPECT_EQ(r["reasoning"], "The user wants the weather.") << r;
  }
}

// A tool loop's later request: the assistant turn that called (content null, or no content at
// all) and the tool's answer render in the family's template; null and absent are the same prompt.
TEST_P(MarkerToolCalls, ToolLoopTurnsRender) {
  const Family& f = GetParam();
  force("It is 21 degrees.", false);
  json call = {{"id", f.call_id.empty() ? "call00001" : f.call_id},
               {"type", "function"},
               {"function", {{"name", "get_weather"}, {"arguments", R"({"city":"Paris","days":3})"}}}};
  json prompt_tokens;
  for (bool absent : {false, true}) {
    json assistant = {{"role", "assistant"}, {"tool_calls", {call}}};
    if (!absent) assistant["content"] = nullptr;
    json body = {{"messages",
                  {{{"role", "user"}, {"content", "Weather in Paris?"}},
                   assistant,
                   {{"role", "tool"}, {"tool_call_id", call["id"]}, {"content", "{\"celsius\": 21}"}}}},
                 {"tools", kTools},
                 {"max_tokens", 50}};
    HttpResult r = http_post(http_->port(), "/v1/chat/completions", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.json();
    EXPECT_EQ(j["choices"][0]["message"]["content"], "It is 21 degrees.");
    if (absent)
      EXPECT_EQ(j["usage"]["prompt_tokens"], prompt_tokens);
    else
      prompt_tokens = j["usage"]["prompt_tokens"];
  }
  // The tool's answer is in the prompt (one token per byte: longer than the question alone).
  HttpResult plain = post({{"max_tokens", 50}});
  ASSERT_EQ(plain.status, 200);
  EXPECT_GT(prompt_tokens.get<int>(), plain.json()["usage"]["prompt_tokens"].get<int>() + 15);
}

INSTANTIATE_TEST_SUITE_P(Families, MarkerToolCalls, ::testing::ValuesIn(families()),
                         [](const ::testing::TestParamInfo<Family>& i) {
                           std::string n;
                           for (char c : i.param.name) n += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

// Llama 3.1: the call is the whole answer, after an optional <|python_tag|> (a special token).
class Llama31Markers : public ::testing::Test, protected MarkerServer {
 protected:
  void SetUp() override {
    Family f;
    f.name = "llama-3.1";
    f.template_path = "chat-templates/llama-3.1/chat_template.jinja";
    f.vocab = llama31_vocab();
    start(f);
  }
  void TearDown() override { stop(); }
  json strict_tools() const {
    json t = kTools;
    t[0]["function"]["strict"] = true;
    return t;
  }
};

TEST_F(Llama31Markers, ScriptedCallAfterThePythonTag) {
  const std::string call = R"(<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}})";
  ASSERT_EQ(tok_->encode("<|python_tag|>", false).size(), 1u);
  for (bool split : {false, true}) {
    SCOPED_TRACE(split ? "tag spelled in bytes" : "tag as a token");
    force(call, split);
    json j = ask({{"max_tokens", 400}});
    EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls") << j.dump();
    EXPECT_TRUE(j["choices"][0]["message"]["content"].is_null()) << j.dump();
    ASSERT_EQ(j["choices"][0]["message"]["tool_calls"].size(), 1u) << j.dump();
    EXPECT_EQ(j["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], R"({"city":"Paris","days":3})");
    Streamed s = ask_streamed({{"max_tokens", 400}});
    EXPECT_EQ(s.content, "");
    ASSERT_EQ(s.calls.size(), 1u);
    EXPECT_EQ(s.calls[0]["function"]["name"], "get_weather");
    EXPECT_EQ(s.calls[0]["function"]["arguments"], R"({"city":"Paris","days":3})");
    EXPECT_EQ(s.finish, "tool_calls");
  }
}

// The official client joins the streamed call; the answer has no content.
TEST_F(Llama31Markers, OfficialClientJoinsTheStreamedCall) {
  force(R"(<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}})", false);
  install_npm_package("openai", "5.23.2");
  json r = run_node_script("openai_tools.mjs", {std::to_string(http_->port()), "family_stream"});
  for (const char* k : {"streamed", "whole"}) {
    SCOPED_TRACE(k);
    const json& a = r[k];
    EXPECT_EQ(a["finish"], "tool_calls") << r;
    EXPECT_TRUE(a["content"].is_null() || a["content"] == "") << r;
    ASSERT_EQ(a["calls"].size(), 1u) << r;
    EXPECT_EQ(a["calls"][0]["name"], "get_weather");
    EXPECT_EQ(a["calls"][0]["arguments"], R"({"city":"Paris","days":3})");
  }
  EXPECT_TRUE(r["contentDeltas"].empty()) << r;
}

// "auto" with a strict tool on real sampling: an answer that opens like a call (the tag, or '{',
// forced here) is finished as a valid call; one that opens with text stays text.
TEST_F(Llama31Markers, AutoWithAStrictToolDecidesAtTheFirstByte) {
  for (const std::string opening : {"<|python_tag|>", "{"}) {
    force(opening, false, false);
    for (int seed = 1; seed <= 3; ++seed) {
      SCOPED_TRACE(opening + " / seed " + std::to_string(seed));
      json j = ask({{"max_tokens", 400}, {"seed", seed}, {"tools", strict_tools()}});
      EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls") << j.dump();
      EXPECT_TRUE(j["choices"][0]["message"]["content"].is_null()) << j.dump();
      ASSERT_EQ(j["choices"][0]["message"]["tool_calls"].size(), 1u) << j.dump();
      expect_schema_valid(j["choices"][0]["message"]["tool_calls"][0]);
    }
  }
  force("It is", false, false);
  for (int seed = 1; seed <= 3; ++seed) {
    json j = ask({{"max_tokens", 30}, {"seed", seed}, {"tools", strict_tools()}});
    const std::string finish = j["choices"][0]["finish_reason"];  // free text, sampled on
    EXPECT_TRUE(finish == "length" || finish == "stop") << j.dump();
    EXPECT_FALSE(j["choices"][0]["message"].contains("tool_calls")) << j.dump();
    EXPECT_EQ(j["choices"][0]["message"]["content"].get<std::string>().substr(0, 5), "It is") << j.dump();
  }
  // "required" on sampling: one valid call.
  forced_.reset();
  for (int seed = 1; seed <= 3; ++seed) {
    json j = ask({{"max_tokens", 400}, {"seed", seed}, {"tool_choice", "required"}});
    EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls") << j.dump();
    ASSERT_EQ(j["choices"][0]["message"]["tool_calls"].size(), 1u) << j.dump();
    expect_schema_valid(j["choices"][0]["message"]["tool_calls"][0]);
  }
}

}  // namespace
}  // namespace owl::test
