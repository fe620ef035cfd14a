// `owl serve`'s Ollama API as the official `ollama` npm package sees it (issue #21): listing
// (tags, show, ps, version), chat and generate whole and streamed as NDJSON (the same greedy
// text as the OpenAI API gives), options (stop, seed, num_predict), structured output
// ("format": "json" or a JSON Schema), errors, and with scripted generations the thinking apart
// from the content and a tool call loop; /api/pull from a loopback hub (tests/hub's fixture)
// into the cache, as `owl pull` does.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>

#include "hub/fixture_server.h"
#include "server/npm_client.h"
#include "server/scripted_http.h"
#include "server/server_fixture.h"
#include "test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

json run_ollama(int port, const std::string& scenario) {
  install_npm_package("ollama", "0.6.4");
  return run_node_script("ollama_client.mjs", {std::to_string(port), scenario});
}

class OllamaClient : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess(shared_path("models/stories260K/stories260K-f32.gguf"), {"--kv-type", "f32"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static json run(const std::string& scenario) { return run_ollama(server_->port(), scenario); }
  // The OpenAI API's greedy answer to "Once upon a time" in 20 tokens, to compare with.
  static std::string openai_greedy_answer() {
    HttpResult r =
        http_post(server_->port(), "/v1/chat/completions",
                  R"({"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":20,"temperature":0})");
    return r.json()["choices"][0]["message"]["content"];
  }
  static ServerProcess* server_;
};
ServerProcess* OllamaClient::server_ = nullptr;

TEST_F(OllamaClient, ListsShowsAndReportsTheServedModel) {
  json r = run("listing");
  EXPECT_EQ(r["names"], json::array({"stories260K-f32:latest"}));
  EXPECT_EQ(r["ps"], json::array({"stories260K-f32:latest"}));
  EXPECT_EQ(r["size"], std::filesystem::file_size(shared_path("models/stories260K/stories260K-f32.gguf")));
  EXPECT_EQ(r["family"], "llama");
  EXPECT_EQ(r["model_info"]["general.architecture"], "llama");
  EXPECT_EQ(r["model_info"]["llama.context_length"], r["context_length"]);
  EXPECT_GT(r["context_length"].get<int>(), 0);
  EXPECT_EQ(r["capabilities"], json::array({"completion"}));  // no template: neither tools nor thinking
  EXPECT_FALSE(r["version"].get<std::string>().empty());
}

TEST_F(OllamaClient, ChatGivesTheGreedyAnswerWithCounts) {
  json r = run("chat");
  EXPECT_EQ(r["role"], "assistant");
  EXPECT_EQ(r["content"], openai_greedy_answer());
  EXPECT_EQ(r["done"], true);
  EXPECT_EQ(r["done_reason"], "length");
  EXPECT_EQ(r["eval_count"], 20);
  EXPECT_GT(r["prompt_eval_count"].get<int>(), 0);
  EXPECT_GE(r["total_duration"].get<int64_t>(), r["eval_duration"].get<int64_t>());
}

TEST_F(OllamaClient, StreamedChatMatchesTheWholeAnswer) {
  json r = run("chat_stream");
  EXPECT_EQ(r["streamed"], r["whole"]);
  EXPECT_GT(r["parts"].get<int>(), 2);
  EXPECT_EQ(r["done_reason"], "length");
  EXPECT_EQ(r["eval_count"], 20);
}

TEST_F(OllamaClient, GenerateWholeStreamedAndLoad) {
  json r = run("generate");
  EXPECT_EQ(r["whole"], openai_greedy_answer());  // a prompt is one user turn of the chat format
  EXPECT_EQ(r["streamed"], r["whole"]);
  EXPECT_GT(r["parts"].get<int>(), 2);
  EXPECT_EQ(r["done_reason"], "length");
  EXPECT_EQ(r["eval_count"], 20);
  EXPECT_EQ(r["load_reason"], "load");  // an empty prompt only "loads" the model
}

TEST_F(OllamaClient, StopOptionAndSeed) {
  json r = run("stop_and_seed");
  const std::string full = r["full"], stop = r["stop"], stopped = r["stopped"];
  ASSERT_NE(full.find(stop), std::string::npos);
  EXPECT_EQ(stopped, full.substr(0, full.find(stop)));
  EXPECT_EQ(r["same_seed"], true);
}

TEST_F(OllamaClient, ErrorsInOllamasShape) {
  json r = run("errors");
  EXPECT_EQ(r["missing_model"]["status"], 404);
  EXPECT_NE(r["missing_model"]["message"].get<std::string>().find("no-such-model"), std::string::npos);
  EXPECT_EQ(r["bad_option"]["status"], 400);
  EXPECT_NE(r["bad_option"]["message"].get<std::string>().find("temperature"), std::string::npos);
  EXPECT_EQ(r["bad_role"]["status"], 400);
  EXPECT_NE(r["bad_role"]["message"].get<std::string>().find("role"), std::string::npos);
  EXPECT_EQ(r["bad_schema"]["status"], 400);
  EXPECT_EQ(r["bad_schema"]["message"], "'format': unsupported JSON Schema keyword: not");
  EXPECT_EQ(r["unsatisfiable"]["status"], 400);
  EXPECT_NE(r["unsatisfiable"]["message"].get<std::string>().find("unsatisfiable"), std::string::npos)
      << r["unsatisfiable"];
  EXPECT_EQ(r["bad_format"]["status"], 400);
  EXPECT_EQ(r["bad_format"]["message"], "'format' must be \"json\" or a JSON Schema object, got \"yaml\"");
}

// format "json": the answer is a JSON object, or, as stories260K never closes one (it writes
// stories into the strings), a prefix of one that num_predict cut: nlohmann's parser reads it to
// its end and finds nothing wrong but the end of the input (inside a string or between values).
struct PrefixChecker : nlohmann::json_sax<json> {
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& e) override {
    error_at = pos;
    error = e.what();
    return false;
  }
  std::size_t error_at = 0;
  std::string error;
};
void expect_json_object_or_cut_prefix(const std::string& text, const json& reason) {
  ASSERT_TRUE(text.starts_with("{")) << text;
  PrefixChecker checker;
  json::sax_parse(text, &checker);
  if (reason == "stop") {
    EXPECT_TRUE(checker.error.empty()) << checker.error << "\n" << text;
  } else {
    EXPECT_EQ(reason, "length");
    EXPECT_EQ(checker.error_at, text.size() + 1) << checker.error << "\n" << text;
    const bool at_end = checker.error.find("unexpected end of input") != std::string::npos ||
                        checker.error.find("missing closing quote") != std::string::npos;
    EXPECT_TRUE(at_end) << checker.error;
  }
}

// format {schema}: the answer matches moodSchema in ollama_client.mjs ({"mood": "happy" | "sad",
// "age": 1..9}, nothing else).
void expect_mood(const std::string& text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << text;
  EXPECT_EQ(j.size(), 2u) << text;
  EXPECT_TRUE(j["mood"] == "happy" || j["mood"] == "sad") << text;
  ASSERT_TRUE(j["age"].is_number_integer()) << text;
  EXPECT_GE(j["age"].get<int>(), 1) << text;
  EXPECT_LE(j["age"].get<int>(), 9) << text;
}

TEST_F(OllamaClient, FormatJsonAndSchemaConstrainTheAnswer) {
  json r = run("format");
  const json& schema = r["schema"];
  EXPECT_EQ(schema["chat_reason"], "stop");
  EXPECT_EQ(schema["generate_reason"], "stop");
  for (const char* key : {"chat", "chat_streamed", "generate", "generate_streamed"})
    expect_mood(schema[key].get<std::string>());
  const json& object = r["json"];
  for (const char* key : {"chat", "chat_streamed"})
    expect_json_object_or_cut_prefix(object[key].get<std::string>(), object["chat_reason"]);
  for (const char* key : {"generate", "generate_streamed"})
    expect_json_object_or_cut_prefix(object[key].get<std::string>(), object["generate_reason"]);
  for (const json* f : {&schema, &object}) {
    EXPECT_EQ((*f)["chat_streamed"], (*f)["chat"]);
    EXPECT_EQ((*f)["generate_streamed"], (*f)["generate"]);
  }
}

TEST(OllamaHttp, BadBodiesGetOneErrorLine) {
  ScriptedHttpServer s;
  HttpResult r = http_post(s.port(), "/api/chat", "{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"], "the request body must be a JSON object");
  r = http_post(s.port(), "/api/chat", R"({"messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"], "'model' is required");
  r = http_post(s.port(), "/api/generate", R"({"model":"stories","prompt":"hi","raw":true})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.json()["error"].get<std::string>().find("raw"), std::string::npos);
  r = http_post(s.port(), "/api/chat",
                R"({"model":"stories","messages":[{"role":"user","content":"hi"}],"think":"max"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.json()["error"].get<std::string>().find("think"), std::string::npos);
  r = http_get(s.port(), "/api/chat");
  EXPECT_EQ(r.status, 405);
  r = http_get(s.port(), "/api/nothing");
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(r.json()["error"].is_string());
}

TEST(OllamaPull, PullsIntoTheCacheLikeOwlPull) {
  FixtureServer hub;
  const std::string gguf = random_bytes(200000, 11);
  hub.add_repo("acme/tiny-GGUF", FixtureRepo{"5e1f0c3a9b7d2e4f6a8c0b1d3e5f7a9c2b4d6e8f",
                                             {{"tiny-Q4_K_M.gguf", gguf}, {"tiny-Q8_0.gguf", "x"}}});
  const std::string dir = temp_dir();
  // The server inherits these: the fixture as the hub, a fresh cache, no saved token.
  ::setenv("HF_ENDPOINT", hub.url().c_str(), 1);
  ::setenv("HF_HUB_CACHE", (dir + "/hf-cache").c_str(), 1);
  ::setenv("HF_HOME", (dir + "/hf-home").c_str(), 1);
  ::unsetenv("HF_HUB_OFFLINE");
  json r;
  {
    ServerProcess server(shared_path("models/stories260K/stories260K-f32.gguf"), {"--kv-type", "f32"});
    r = run_ollama(server.port(), "pull");
  }
  for (const char* v : {"HF_ENDPOINT", "HF_HUB_CACHE", "HF_HOME"}) ::unsetenv(v);
  EXPECT_EQ(r["statuses"].front(), "pulling manifest");
  EXPECT_EQ(r["statuses"].back(), "success");
  EXPECT_EQ(r["downloaded"], 1);
  const std::string path = r["path"];
  EXPECT_TRUE(path.starts_with(dir + "/hf-cache/")) << path;
  EXPECT_TRUE(path.ends_with("tiny-Q4_K_M.gguf")) << path;
  EXPECT_EQ(read_file(path), gguf);
  EXPECT_EQ(r["again"], "success");
  EXPECT_EQ(r["again_downloaded"], 0);  // already in the cache
  EXPECT_EQ(r["missing"]["status"], 500);
  EXPECT_NE(r["missing"]["message"].get<std::string>().find("no-such-GGUF"), std::string::npos) << r["missing"];
  EXPECT_EQ(r["not_hub"]["status"], 400);
  EXPECT_NE(r["not_hub"]["message"].get<std::string>().find("hf.co/ORG/NAME"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(OllamaClientScripted, ThinkingApartFromContent) {
  ScriptedHttpServer s;
  json r = run_ollama(s.port(), "think");
  EXPECT_EQ(r["thinking"], "A story is wanted.");
  EXPECT_EQ(r["content"], "Once there was a fox.");
  EXPECT_EQ(r["streamed_thinking"], r["thinking"]);
  EXPECT_EQ(r["streamed_content"], r["content"]);
}

TEST(OllamaClientScripted, ToolCallLoop) {
  ScriptedHttpServer s;
  json r = run_ollama(s.port(), "tools");
  EXPECT_EQ(r["calls"], 1);
  EXPECT_EQ(r["name"], "get_weather");
  EXPECT_EQ(r["arguments"], json({{"city", "Paris"}}));  // an object, as Ollama gives it
  EXPECT_EQ(r["done_reason"], "stop");
  EXPECT_EQ(r["answer"], " It is 21 degrees in Paris.");
}

}  // namespace
}  // namespace owl::test
