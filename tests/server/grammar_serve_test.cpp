// Constrained output through `owl serve` with the real stories260K model: response_format
// json_object / json_schema, llama.cpp's json_schema and grammar fields on completions and
// chat; every finished answer parses and matches, a cut one says "length"; schemas and
// grammars owl cannot compile are 400s that say why and where.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "server_fixture.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;
using owl::test::http_post;
using owl::test::ServerProcess;

class GrammarServe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess(owl::test::shared_path("models/stories260K/stories260K-f32.gguf"),
                                {"--parallel", "2", "--kv-type", "f32"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static int port() { return server_->port(); }
  static ServerProcess* server_;
};
ServerProcess* GrammarServe::server_ = nullptr;

const json kSchema = json::parse(
    R"({"type":"object","properties":{"mood":{"enum":["happy","sad"]},"age":{"type":"integer","minimum":1,"maximum":9}},"required":["mood","age"],"additionalProperties":false})");

void expect_matches(const std::string& text) {
  json j = json::parse(text);  // throws (fails the test) if not JSON
  ASSERT_TRUE(j.is_object()) << text;
  EXPECT_EQ(j.size(), 2u) << text;
  EXPECT_TRUE(j["mood"] == "happy" || j["mood"] == "sad") << text;
  EXPECT_GE(j["age"].get<int>(), 1);
  EXPECT_LE(j["age"].get<int>(), 9);
}

TEST_F(GrammarServe, CompletionsFollowTheSchema) {
  for (int seed = 1; seed <= 3; ++seed) {
    json body = {{"prompt", "Once upon a time"},
                 {"max_tokens", 64},
                 {"seed", seed},
                 {"response_format",
                  {{"type", "json_schema"}, {"json_schema", {{"name", "m"}, {"schema", kSchema}, {"strict", true}}}}}};
    auto r = http_post(port(), "/v1/completions", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["choices"][0]["finish_reason"], "stop") << r.body;
    expect_matches(r.json()["choices"][0]["text"].get<std::string>());
  }
  // llama.cpp's json_schema field does the same.
  auto r = http_post(port(), "/v1/completions",
                     json({{"prompt", "Lily"}, {"max_tokens", 64}, {"json_schema", kSchema}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  expect_matches(r.json()["choices"][0]["text"].get<std::string>());
  // And a schema sent as its JSON text.
  auto t = http_post(port(), "/v1/completions",
                     json({{"prompt", "Lily"}, {"max_tokens", 64}, {"json_schema", kSchema.dump()}}).dump());
  ASSERT_EQ(t.status, 200) << t.body;
  expect_matches(t.json()["choices"][0]["text"].get<std::string>());
}

TEST_F(GrammarServe, ChatFollowsTheSchemaAndJsonObject) {
  json body = {{"messages", {{{"role", "user"}, {"content", "How are you?"}}}},
               {"max_tokens", 64},
               {"response_format", {{"type", "json_schema"}, {"json_schema", {{"schema", kSchema}}}}}};
  auto r = http_post(port(), "/v1/chat/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"][0]["finish_reason"], "stop");
  expect_matches(r.json()["choices"][0]["message"]["content"].get<std::string>());

  // json_object cut by max_tokens: a prefix of an object, and finish_reason length.
  json cut = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
              {"max_tokens", 3},
              {"response_format", {{"type", "json_object"}}}};
  auto c = http_post(port(), "/v1/chat/completions", cut.dump());
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.json()["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(c.json()["choices"][0]["message"]["content"].get<std::string>().substr(0, 1), "{");
}

TEST_F(GrammarServe, GbnfGrammarField) {
  json body = {{"prompt", "The answer is"}, {"max_tokens", 16}, {"grammar", "root ::= (\"yes\" | \"no\") \"!\""}};
  auto r = http_post(port(), "/v1/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  std::string text = r.json()["choices"][0]["text"];
  EXPECT_TRUE(text == "yes!" || text == "no!") << text;
  EXPECT_EQ(r.json()["choices"][0]["finish_reason"], "stop");
}

TEST_F(GrammarServe, BadSchemasAndGrammarsAre400WithTheCause) {
  auto error_of = [&](const json& extra) {
    json body = {{"prompt", "x"}, {"max_tokens", 4}};
    body.update(extra);
    auto r = http_post(port(), "/v1/completions", body.dump());
    EXPECT_EQ(r.status, 400) << r.body;
    return r.json()["error"];
  };
  json not_schema = error_of({{"response_format", {{"type", "json_schema"}, {"json_schema", {{"schema", "{"}}}}}});
  EXPECT_EQ(not_schema["param"], "response_format");
  EXPECT_EQ(not_schema["code"], "invalid_grammar");
  // A schema sent as a string is read as JSON text: "{" breaks at its end, byte 2.
  EXPECT_NE(not_schema["message"].get<std::string>().find("the schema is not JSON (byte 2)"), std::string::npos)
      << not_schema;
  json number = error_of({{"json_schema", 5}});
  EXPECT_NE(number["message"].get<std::string>().find("must be an object or a boolean"), std::string::npos) << number;
  json unsat = error_of({{"json_schema", {{"type", "integer"}, {"minimum", 5}, {"maximum", 1}}}});
  EXPECT_NE(unsat["message"].get<std::string>().find("unsatisfiable"), std::string::npos) << unsat;
  json regex = error_of({{"json_schema", {{"type", "string"}, {"pattern", "^(?<=a)b"}}}});
  EXPECT_NE(regex["message"].get<std::string>().find("at offset 1: lookaround"), std::string::npos) << regex;
  json gbnf = error_of({{"grammar", "root ::= \"a\" |\nitem ::= [a-"}});
  EXPECT_EQ(gbnf["param"], "grammar");
  EXPECT_NE(gbnf["message"].get<std::string>().find("line 2, column"), std::string::npos) << gbnf;
  json kw = error_of(
      {{"response_format", {{"type", "json_schema"}, {"json_schema", {{"schema", {{"not", json::object()}}}}}}}});
  EXPECT_EQ(kw["message"], "'response_format': unsupported JSON Schema keyword: not");
  json type = error_of({{"response_format", {{"type", "yaml"}}}});
  EXPECT_EQ(type["param"], "response_format");
}

}  // namespace
