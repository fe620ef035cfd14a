// Structured output and logit_bias as the official `openai` npm client sees them (issue #20
// items 3, 5, 6), against the real stories260K model: each scenario is one run of
// tests/server/openai_structured.mjs (the pinned client, installed on first use), whose
// observations are checked here. Every finished answer follows its schema or grammar; a cut one
// says "length"; what owl cannot compile is a 400 naming the field, the cause and its position.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "formats/gguf.h"
#include "model/source.h"
#include "server/npm_client.h"
#include "server/server_fixture.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

class OpenAIStructured : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string model = shared_path("models/stories260K/stories260K-f32.gguf");
    server_ = new ServerProcess(model, {"--kv-type", "f32", "--parallel", "2"});
    // A template whose answers open a reasoning block, which stories260K never closes itself.
    const std::string tmpl = temp_dir() + "/think.jinja";
    std::ofstream(tmpl) << "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant: <think>\n";
    thinking_ = new ServerProcess(model, {"--kv-type", "f32", "--chat-template", tmpl});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete thinking_;
    server_ = thinking_ = nullptr;
  }
  static json run(const std::string& scenario, const std::vector<std::string>& extra = {},
                  const ServerProcess* server = nullptr) {
    install_npm_package("openai", "5.23.2");
    std::vector<std::string> args = {std::to_string((server ? server : server_)->port()), scenario};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_node_script("openai_structured.mjs", args);
  }
  static ServerProcess* server_;
  static ServerProcess* thinking_;
};
ServerProcess* OpenAIStructured::server_ = nullptr;
ServerProcess* OpenAIStructured::thinking_ = nullptr;

// {"mood": "happy"|"sad", "age": 1..9} and nothing else.
void expect_mood(const std::string& text) {
  json j = json::parse(text);  // throws (fails the test) if not JSON
  ASSERT_TRUE(j.is_object()) << text;
  EXPECT_EQ(j.size(), 2u) << text;
  EXPECT_TRUE(j["mood"] == "happy" || j["mood"] == "sad") << text;
  ASSERT_TRUE(j["age"].is_number_integer()) << text;
  EXPECT_GE(j["age"].get<int>(), 1);
  EXPECT_LE(j["age"].get<int>(), 9);
}

TEST_F(OpenAIStructured, ChatResponseFormat) {
  json r = run("chat_schema");
  ASSERT_EQ(r["answers"].size(), 3u) << r;
  for (const json& a : r["answers"]) {
    EXPECT_EQ(a["finish"], "stop") << a;
    expect_mood(a["content"]);
    // Streamed with the same seed: the same answer, in pieces.
    EXPECT_EQ(a["streamed"]["content"], a["content"]);
    EXPECT_EQ(a["streamed"]["finish"], "stop");
  }
  ASSERT_EQ(r["choices"].size(), 2u) << r;
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(r["choices"][i]["index"], i);
    EXPECT_EQ(r["choices"][i]["finish"], "stop") << r;
    expect_mood(r["choices"][i]["content"]);
  }
  // json_object: an object, whole when it stopped (stories260K may write a long string key).
  const std::string object = r["object"]["content"];
  ASSERT_FALSE(object.empty());
  EXPECT_EQ(object[0], '{');
  if (r["object"]["finish"] == "stop") {
    EXPECT_TRUE(json::parse(object).is_object()) << r;
  } else {
    EXPECT_EQ(r["object"]["finish"], "length") << r;
  }
  // Cut by max_tokens: "length", the start of an object.
  EXPECT_EQ(r["cut"]["finish"], "length") << r;
  EXPECT_EQ(r["cut"]["content"].get<std::string>().substr(0, 1), "{") << r;
}

TEST_F(OpenAIStructured, CompletionsAndLlamaCppFields) {
  json r = run("completions");
  for (const char* k : {"response_format", "json_schema"}) {
    SCOPED_TRACE(k);
    EXPECT_EQ(r[k]["finish"], "stop") << r;
    expect_mood(r[k]["text"]);
  }
  EXPECT_EQ(r["chat_json_schema"]["finish"], "stop") << r;
  expect_mood(r["chat_json_schema"]["text"]);
  for (const char* k : {"grammar", "chat_grammar"}) {
    SCOPED_TRACE(k);
    EXPECT_TRUE(r[k]["text"] == "yes!" || r[k]["text"] == "no!") << r;
    EXPECT_EQ(r[k]["finish"], "stop") << r;
  }
}

// A reasoning model: the reasoning stays free, the schema holds the answer after </think>.
TEST_F(OpenAIStructured, SchemaStartsAfterTheReasoning) {
  json r = run("reasoning_schema", {}, thinking_);
  ASSERT_EQ(r["answers"].size(), 2u) << r;
  for (const json& a : r["answers"]) {
    ASSERT_TRUE(a["reasoning"].is_string()) << a;
    EXPECT_FALSE(a["reasoning"].get<std::string>().empty()) << a;
    EXPECT_EQ(a["finish"], "stop") << a;
    expect_mood(a["content"]);
  }
}

TEST_F(OpenAIStructured, LogitBias) {
  auto source = open_model_source(shared_path("models/stories260K/stories260K-f32.gguf"));
  auto tok = Tokenizer::from_gguf(*source->gguf_file());
  const int32_t id = tok->encode("Lily").back();
  const std::string piece = tok->token_bytes(id);
  ASSERT_FALSE(piece.empty());
  json r = run("logit_bias", {std::to_string(id)});
  // +100 under greedy: the token, every time (chat and completions), as its logprobs name it.
  EXPECT_EQ(r["completion"], piece + piece + piece + piece) << r;
  ASSERT_EQ(r["chat_tokens"].size(), 4u) << r;
  for (const json& t : r["chat_tokens"]) EXPECT_EQ(t, piece) << r;
  EXPECT_EQ(r["bad"]["status"], 400) << r;
  EXPECT_EQ(r["bad"]["param"], "logit_bias") << r;
  EXPECT_EQ(r["bad_id"]["status"], 400) << r;
  EXPECT_EQ(r["bad_id"]["param"], "logit_bias") << r;
}

// Each bad-input class is a 400 naming the field, saying why and where.
TEST_F(OpenAIStructured, BadSchemasAndGrammarsAre400sWithThePosition) {
  json r = run("bad_input");
  auto message = [&](const char* k) { return r[k]["message"].get<std::string>(); };
  for (const char* k : {"not_json", "unsatisfiable", "regex", "gbnf", "keyword"}) {
    SCOPED_TRACE(k);
    EXPECT_EQ(r[k]["status"], 400) << r;
    EXPECT_EQ(r[k]["code"], "invalid_grammar") << r;
  }
  EXPECT_EQ(r["not_json"]["param"], "response_format");
  EXPECT_NE(message("not_json").find("the schema is not JSON (byte 2)"), std::string::npos) << r;
  EXPECT_NE(message("unsatisfiable").find("unsatisfiable"), std::string::npos) << r;
  EXPECT_EQ(r["regex"]["param"], "json_schema");
  EXPECT_NE(message("regex").find("at offset 1: lookaround"), std::string::npos) << r;
  EXPECT_EQ(r["gbnf"]["param"], "grammar");
  EXPECT_NE(message("gbnf").find("line 2, column"), std::string::npos) << r;
  EXPECT_NE(message("keyword").find("unsupported JSON Schema keyword: not"), std::string::npos) << r;
}

}  // namespace
}  // namespace owl::test
