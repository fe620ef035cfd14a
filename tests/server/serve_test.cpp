// `owl serve` end to end: a real server process with the real stories260K model,
// spoken to over real HTTP. Greedy output must equal the reference engine's
// continuation (reference.jsonl), whether streamed, batched with other requests,
// or resumed from the prefix cache.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "server/server_fixture.h"
#include "test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

std::string stories() { return shared_path("models/stories260K/stories260K-f32.gguf"); }

std::vector<json> reference() {
  std::ifstream f(shared_path("models/stories260K/reference.jsonl"));
  std::vector<json> out;
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

std::string completion_body(const std::string& prompt, int max_tokens, bool stream = false) {
  json b = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  if (stream) b["stream"] = true, b["stream_options"] = {{"include_usage", true}};
  return b.dump();
}

// The concatenated text of a streamed completion, checking the event sequence on the way.
std::string streamed_text(const std::string& body, json* usage = nullptr, std::string* finish = nullptr) {
  auto events = sse_events(body);
  EXPECT_FALSE(events.empty());
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  for (const auto& e : events) {
    if (e.is_string()) continue;
    if (e.contains("usage") && e["choices"].empty()) {
      if (usage) *usage = e["usage"];
      continue;
    }
    const auto& c = e["choices"][0];
    if (c.contains("text")) text += c["text"].get<std::string>();
    if (c.contains("delta") && c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
    if (finish && !c["finish_reason"].is_null()) *finish = c["finish_reason"];
  }
  return text;
}

// One server for the tests that do not need special flags (parallel 4, F32 KV so greedy output
// is comparable with the reference engine's F32 cache).
class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new ServerProcess(stories(), {"--parallel", "4", "--kv-type", "f32"}); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static int port() { return server_->port(); }
  static ServerProcess* server_;
};
ServerProcess* Serve::server_ = nullptr;

TEST_F(Serve, HealthAndModels) {
  auto h = http_get(port(), "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.json()["status"], "ok");
  auto m = http_get(port(), "/v1/models");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.json()["data"][0]["id"], "stories260K-f32");
  EXPECT_EQ(m.json()["data"][0]["meta"]["n_ctx"], 512);
}

TEST_F(Serve, GreedyCompletionsEqualReference) {
  for (const auto& ref : reference()) {
    json body = {{"max_tokens", 64}, {"temperature", 0}};
    // The empty prompt is sent as token ids (BOS alone); the others as text.
    if (ref["prompt"] == "")
      body["prompt"] = ref["prompt_ids"];
    else
      body["prompt"] = ref["prompt"];
    auto r = http_post(port(), "/v1/completions", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.json();
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_EQ(j["choices"][0]["text"], ref["generated_text"]) << "prompt " << ref["prompt"];
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(j["usage"]["prompt_tokens"], ref["prompt_ids"].size());
    EXPECT_EQ(j["usage"]["completion_tokens"], 64);
  }
}

TEST_F(Serve, StreamedChunksConcatenateToTheWholeText) {
  const auto ref = reference()[3];
  auto whole = http_post(port(), "/v1/completions", completion_body(ref["prompt"], 40));
  ASSERT_EQ(whole.status, 200);
  auto streamed = http_post(port(), "/v1/completions", completion_body(ref["prompt"], 40, true));
  ASSERT_EQ(streamed.status, 200);
  EXPECT_EQ(streamed.header("content-type"), "text/event-stream");
  json usage;
  std::string finish;
  std::string text = streamed_text(streamed.body, &usage, &finish);
  EXPECT_EQ(text, whole.json()["choices"][0]["text"]);
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(usage["completion_tokens"], 40);
  EXPECT_EQ(usage["prompt_tokens"], ref["prompt_ids"].size());
  EXPECT_GT(sse_events(streamed.body).size(), 10u);  // really streamed, token by token
}

TEST_F(Serve, ConcurrentStreamsEqualTheirSoloResults) {
  const auto refs = reference();
  const std::vector<int> which = {0, 2, 4, 6};
  std::vector<std::string> results(which.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < which.size(); ++i)
    threads.emplace_back([&, i] {
      auto r = http_post(port(), "/v1/completions",
                         completion_body(refs[static_cast<size_t>(which[i])]["prompt"], 64, true));
      results[i] = r.status == 200 ? streamed_text(r.body) : "HTTP " + std::to_string(r.status) + r.body;
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < which.size(); ++i)
    EXPECT_EQ(results[i], refs[static_cast<size_t>(which[i])]["generated_text"]) << "stream " << i;
}

TEST_F(Serve, SharedPrefixIsServedFromTheCache) {
  // A long common "system prompt", then two different endings.
  std::string prefix;
  for (int i = 0; i < 12; ++i) prefix += "Once upon a time, there was a little girl named Lily. ";
  auto first = http_post(port(), "/v1/completions", completion_body(prefix + "She saw a dog", 8));
  ASSERT_EQ(first.status, 200) << first.body;
  double prefill_before = server_->metric("owl_prefill_tokens_total");
  auto second = http_post(port(), "/v1/completions", completion_body(prefix + "He had a ball", 8));
  ASSERT_EQ(second.status, 200);
  json u = second.json()["usage"];
  int64_t prompt = u["prompt_tokens"], cached = u["prompt_tokens_details"]["cached_tokens"];
  EXPECT_GT(cached, prompt / 2) << u.dump();
  EXPECT_LT(cached, prompt);
  // Only the uncached tail was evaluated.
  EXPECT_EQ(server_->metric("owl_prefill_tokens_total") - prefill_before, static_cast<double>(prompt - cached));
  // And the answer is the same as without the cache.
  ServerProcess fresh(stories(), {"--no-prefix-cache", "--kv-type", "f32"});
  auto again = http_post(fresh.port(), "/v1/completions", completion_body(prefix + "He had a ball", 8));
  EXPECT_EQ(again.json()["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(again.json()["choices"][0]["text"], second.json()["choices"][0]["text"]);
}

TEST_F(Serve, ChatCompletionWithoutTemplateUsesTheFallbackFormat) {
  json body = {
      {"messages", {{{"role", "user"}, {"content", "Once upon a time"}}}}, {"max_tokens", 20}, {"temperature", 0}};
  auto r = http_post(port(), "/v1/chat/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json j = r.json();
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 20);
  EXPECT_EQ(j["usage"]["completion_tokens_details"]["reasoning_tokens"], 0);
  // The prompt is "user: Once upon a time\nassistant:" after BOS: the same text as a completion.
  auto c = http_post(port(), "/v1/completions", completion_body("user: Once upon a time\nassistant:", 20));
  EXPECT_EQ(j["choices"][0]["message"]["content"], c.json()["choices"][0]["text"]);
  EXPECT_EQ(j["usage"]["prompt_tokens"], c.json()["usage"]["prompt_tokens"]);

  body["stream"] = true;
  auto s = http_post(port(), "/v1/chat/completions", body.dump());
  ASSERT_EQ(s.status, 200);
  auto events = sse_events(s.body);
  EXPECT_EQ(events.front()["choices"][0]["delta"]["role"], "assistant");
  std::string finish;
  EXPECT_EQ(streamed_text(s.body, nullptr, &finish), j["choices"][0]["message"]["content"]);
  EXPECT_EQ(finish, "length");
}

TEST_F(Serve, StopStringsEndTheOutputBeforeThem) {
  json body = {{"prompt", "Once upon a time"}, {"max_tokens", 64}, {"temperature", 0}, {"stop", {"Lily"}}};
  auto r = http_post(port(), "/v1/completions", body.dump());
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["choices"][0]["text"], ", there was a little girl named ");
  EXPECT_EQ(r.json()["choices"][0]["finish_reason"], "stop");
}

TEST_F(Serve, MetricsReportRequestsTokensAndCache) {
  http_post(port(), "/v1/completions", completion_body("The little dog", 4));
  std::string text = http_get(port(), "/metrics").body;
  for (const char* name : {"owl_requests_total{endpoint=\"/v1/completions\",status=\"200\"}", "owl_prompt_tokens_total",
                           "owl_generation_tokens_total", "owl_queue_depth", "owl_running_sequences",
                           "owl_kv_cache_pages_in_use", "owl_kv_cache_bytes", "owl_generation_tokens_per_second"})
    EXPECT_NE(text.find(name), std::string::npos) << name;
  EXPECT_GE(server_->metric("owl_generation_tokens_total"), 4);
  EXPECT_GT(server_->metric("owl_kv_cache_bytes"), 0);
  EXPECT_EQ(server_->metric("owl_running_sequences"), 0);
}

// ---- reasoning and thinking budget with the real model -------------------------------------

TEST(ServeReasoning, ThinkingBudgetSplitsReasoningFromContent) {
  // A template that opens the reasoning block at the end of the prompt (as DeepSeek-R1's does):
  // everything stories260K writes is reasoning until the budget forces "</think>".
  std::string tmpl = temp_dir() + "/think.jinja";
  std::ofstream(tmpl) << "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant: <think>\n";
  ServerProcess server(stories(), {"--chat-template", tmpl, "--kv-type", "f32"});
  json body = {{"messages", {{{"role", "user"}, {"content", "Once upon a time"}}}},
               {"max_tokens", 40},
               {"temperature", 0},
               {"thinking_budget", 10}};
  auto r = http_post(server.port(), "/v1/chat/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  json msg = r.json()["choices"][0]["message"];
  ASSERT_TRUE(msg.contains("reasoning_content")) << msg.dump();
  EXPECT_FALSE(msg["reasoning_content"].get<std::string>().empty());
  EXPECT_EQ(msg["reasoning_content"].get<std::string>().find("</think>"), std::string::npos);
  EXPECT_EQ(msg["content"].get<std::string>().find("</think>"), std::string::npos);
  EXPECT_FALSE(msg["content"].get<std::string>().empty());
  int64_t reasoning_tokens = r.json()["usage"]["completion_tokens_details"]["reasoning_tokens"];
  EXPECT_GE(reasoning_tokens, 10);
  EXPECT_LE(reasoning_tokens, 20);  // the budget plus the forced closing tag

  // Streamed: the reasoning_content deltas and content deltas add up to the same message.
  body["stream"] = true;
  auto s = http_post(server.port(), "/v1/chat/completions", body.dump());
  std::string reasoning, content;
  for (const auto& e : sse_events(s.body)) {
    if (e.is_string() || e["choices"].empty()) continue;
    const auto& d = e["choices"][0]["delta"];
    if (d.contains("reasoning_content")) reasoning += d["reasoning_content"].get<std::string>();
    if (d.contains("content")) content += d["content"].get<std::string>();
  }
  EXPECT_EQ(reasoning, msg["reasoning_content"]);
  EXPECT_EQ(content, msg["content"]);

  // Without a budget, all 40 tokens stay reasoning.
  body.erase("stream");
  body.erase("thinking_budget");
  auto all = http_post(server.port(), "/v1/chat/completions", body.dump()).json();
  EXPECT_EQ(all["usage"]["completion_tokens_details"]["reasoning_tokens"], 40);
  EXPECT_EQ(all["choices"][0]["message"]["content"], "");
}

TEST(ServeReasoning, Qwen3TemplateRendersAndServes) {
  ServerProcess server(stories(), {"--chat-template", shared_path("chat-templates/qwen3/chat_template.jinja")});
  json body = {{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}},
               {"max_tokens", 8},
               {"temperature", 0},
               {"chat_template_kwargs", {{"enable_thinking", false}}}};
  auto r = http_post(server.port(), "/v1/chat/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  // "<|im_start|>system\nBe
  // brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n" is far longer in
  // stories260K's byte-level pieces than the messages alone.
  EXPECT_GT(r.json()["usage"]["prompt_tokens"].get<int>(), 60);
  EXPECT_EQ(r.json()["usage"]["completion_tokens"], 8);
  EXPECT_EQ(http_get(server.port(), "/health").status, 200);
}

// ---- disconnects, queueing and bad input -------------------------------------------------

TEST(ServeDisconnect, ClosedClientFreesItsSequence) {
  // A long context so the stream is still generating when the client leaves.
  ServerProcess server(stories(), {"--ctx", "4096", "--parallel", "2"});
  HttpConnection c(server.port());
  c.send_request("POST", "/v1/completions", completion_body("Once upon a time", 4000, true));
  HttpResult head;
  c.read_head(head);
  ASSERT_EQ(head.status, 200);
  std::string piece;
  ASSERT_TRUE(c.read_body_piece(head, piece));
  ASSERT_TRUE(c.read_body_piece(head, piece));
  c.close();
  // The engine notices within a step: the sequence is cancelled and the slot is free.
  double running = 1, cancelled = 0;
  for (int i = 0; i < 500 && (running != 0 || cancelled != 1); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    running = server.metric("owl_running_sequences");
    cancelled = server.metric("owl_generation_requests_cancelled_total");
  }
  EXPECT_EQ(running, 0);
  EXPECT_EQ(cancelled, 1);
  EXPECT_EQ(server.metric("owl_client_disconnects_total"), 1);
  EXPECT_LT(server.metric("owl_generation_tokens_total"), 4000);
  // And the server serves the next request normally.
  auto r = http_post(server.port(), "/v1/completions", completion_body("Once upon a time", 5));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["choices"][0]["text"], ", there was a little");
}

// Issue #19 D9: a non-streamed request whose client leaves before the answer has no status
// to count; /metrics labels it status="client_closed" (it was labelled status="0").
// The client aborts (a reset): a plain FIN is a half-close, after which a client may still
// read its answer (D3), so only a reset or a failed write says the client is gone.
TEST(ServeDisconnect, ClosedNonStreamedRequestIsCountedAsClientClosed) {
  ServerProcess server(stories(), {"--ctx", "4096", "--parallel", "2"});
  const std::string closed = "owl_requests_total{endpoint=\"/v1/completions\",status=\"client_closed\"}";
  {
    HttpConnection c(server.port());
    c.send_request("POST", "/v1/completions", completion_body("Once upon a time", 4000));
    // Leave once the engine is generating for it, long before 4000 tokens.
    for (int i = 0; i < 500 && server.metric("owl_generation_tokens_total") < 2; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    c.reset();
  }
  double n = 0;
  for (int i = 0; i < 500 && n != 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    try {
      n = server.metric(closed);
    } catch (const std::runtime_error&) {
    }
  }
  EXPECT_EQ(n, 1);
  EXPECT_EQ(server.metric("owl_client_disconnects_total"), 1);
  const std::string text = http_get(server.port(), "/metrics").body;
  EXPECT_EQ(text.find("status=\"0\""), std::string::npos) << text;
  const size_t help = text.find("# HELP owl_requests_total ");
  ASSERT_NE(help, std::string::npos) << text;
  EXPECT_NE(text.substr(help, text.find('\n', help) - help).find("status=\"client_closed\""), std::string::npos);
}

void expect_error(const HttpResult& r, int status, const std::string& param = "", const std::string& code = "") {
  EXPECT_EQ(r.status, status) << r.body;
  json j = json::parse(r.body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
  const json& e = j["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.body;
  EXPECT_TRUE(e["type"].is_string()) << r.body;
  EXPECT_TRUE(e.contains("param") && e.contains("code")) << r.body;
  if (!param.empty()) {
    EXPECT_EQ(e["param"], param) << r.body;
  }
  if (!code.empty()) {
    EXPECT_EQ(e["code"], code) << r.body;
  }
}

// Issue #19 D9: GET /v1/models/{id} answers the model object, or a 404 for another id.
TEST_F(Serve, ModelIsRetrievedById) {
  auto m = http_get(port(), "/v1/models/stories260K-f32");
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_EQ(m.json()["id"], "stories260K-f32");
  EXPECT_EQ(m.json()["object"], "model");
  EXPECT_EQ(m.json()["owned_by"], "owl");
  EXPECT_EQ(m.json(), http_get(port(), "/v1/models").json()["data"][0]);
  auto missing = http_get(port(), "/v1/models/gpt-4o");
  expect_error(missing, 404, "model", "model_not_found");
  EXPECT_EQ(missing.json()["error"]["type"], "invalid_request_error");
  expect_error(http_post(port(), "/v1/models/stories260K-f32", "{}"), 405);
}

// Issue #19 D9: an empty prompt string is a prompt (BOS alone for this model), as with OpenAI.
TEST_F(Serve, EmptyPromptStringIsAccepted) {
  json ref;
  for (const auto& r : reference())
    if (r["prompt"] == "") ref = r;
  ASSERT_FALSE(ref.is_null());
  auto r = http_post(port(), "/v1/completions", json{{"prompt", ""}, {"max_tokens", 64}, {"temperature", 0}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["choices"][0]["text"], ref["generated_text"]);
  EXPECT_EQ(r.json()["usage"]["prompt_tokens"], 1);
}

TEST_F(Serve, BadRequestsGetOpenAIErrors) {
  const std::string chat = "/v1/chat/completions", comp = "/v1/completions";
  expect_error(http_post(port(), chat, "{\"messages\": [ {\"role\": "), 400, "", "invalid_json");
  expect_error(http_post(port(), chat, "[1,2,3]"), 400, "", "invalid_json");
  expect_error(http_post(port(), chat, R"({"messages": "hello"})"), 400, "messages", "invalid_type");
  expect_error(http_post(port(), chat, R"({"messages": []})"), 400, "messages");
  expect_error(http_post(port(), chat, R"({"messages": [{"role": "wizard", "content": "x"}]})"), 400,
               "messages[0].role");
  expect_error(http_post(port(), chat, R"({"messages": [{"role": "user", "content": 5}]})"), 400,
               "messages[0].content");
  expect_error(http_post(port(), chat, R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})"),
               400, "temperature", "invalid_type");
  expect_error(http_post(port(), chat, R"({"messages": [{"role": "user", "content": "x"}], "temperature": 7})"), 400,
               "temperature");
  expect_error(http_post(port(), chat, R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"})"),
               400, "max_tokens", "invalid_type");
  expect_error(http_post(port(), chat, R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": -3})"), 400,
               "max_tokens");
  expect_error(http_post(port(), chat, R"({"messages": [{"role": "user", "content": "x"}], "stream": "yes"})"), 400,
               "stream", "invalid_type");
  expect_error(http_post(port(), chat, R"({"messages": [{"role": "user", "content": "x"}], "model": "gpt-4o"})"), 404,
               "model", "model_not_found");
  expect_error(http_post(port(), comp, R"({"prompt": "x", "model": "llama-70b"})"), 404, "model", "model_not_found");
  expect_error(http_post(port(), comp, R"({"prompt": 42})"), 400, "prompt", "invalid_type");
  expect_error(http_post(port(), comp, R"({"max_tokens": 5})"), 400, "prompt", "missing_field");
  // Absurd max_tokens: more than the context can ever hold.
  expect_error(http_post(port(), comp, R"({"prompt": "Once", "max_tokens": 1000000000000})"), 400, "max_tokens",
               "context_length_exceeded");
  // A prompt longer than the context (512 tokens).
  std::string long_prompt;
  for (int i = 0; i < 200; ++i) long_prompt += "Once upon a time ";
  expect_error(http_post(port(), comp, json{{"prompt", long_prompt}, {"max_tokens", 1}}.dump()), 400, "",
               "context_length_exceeded");
  expect_error(http_post(port(), chat, json{{"messages", {{{"role", "user"}, {"content", long_prompt}}}}}.dump()), 400,
               "messages", "context_length_exceeded");
  // Oversized body (the limit is 8 MiB).
  std::string huge = json{{"prompt", std::string(9u << 20, 'a')}}.dump();
  expect_error(http_post(port(), comp, huge), 413, "", "body_too_large");
  // Unknown route and wrong method.
  expect_error(http_get(port(), "/v1/engines"), 404);
  expect_error(http_get(port(), "/v1/completions"), 405);
  // The server is still fine.
  EXPECT_EQ(http_get(port(), "/health").status, 200);
  EXPECT_EQ(http_post(port(), comp, completion_body("Once upon a time", 3)).json()["choices"][0]["text"],
            ", there was");
}

// Issue #19 D8: a token id outside the vocabulary is a bad prompt, not a context overflow.
TEST_F(Serve, OutOfVocabularyTokenIdIsAnInvalidPrompt) {
  auto r = http_post(port(), "/v1/completions", R"({"prompt": [1, 99999], "max_tokens": 4})");
  expect_error(r, 400, "prompt");
  EXPECT_EQ(r.json()["error"]["type"], "invalid_request_error");
  EXPECT_NE(r.json()["error"]["code"], "context_length_exceeded");
  EXPECT_NE(r.json()["error"]["message"].get<std::string>().find("99999"), std::string::npos) << r.body;
  // Also when max_tokens alone would overflow the context: the bad id is named first.
  expect_error(http_post(port(), "/v1/completions", R"({"prompt": [1, 512], "max_tokens": 100000})"), 400, "prompt");
}

// Issue #19 D10: control tokens are not text. stories260K ends its stories with BOS (<s>, a
// control token) and goes on with the next; no path may show "<s>".
TEST_F(Serve, ControlTokensAreNotRenderedAsText) {
  json chat = {
      {"messages", {{{"role", "user"}, {"content", "Once upon a time"}}}}, {"max_tokens", 400}, {"temperature", 0}};
  auto c = http_post(port(), "/v1/chat/completions", chat.dump());
  ASSERT_EQ(c.status, 200) << c.body;
  const std::string content = c.json()["choices"][0]["message"]["content"];
  EXPECT_EQ(content.find("<s>"), std::string::npos) << content;
  EXPECT_NE(content.find("Once upon a time", 10), std::string::npos) << "the model did not reach a second story";
  chat["stream"] = true;
  auto s = http_post(port(), "/v1/chat/completions", chat.dump());
  EXPECT_EQ(streamed_text(s.body), content);
  auto t = http_post(port(), "/v1/completions", completion_body("Once upon a time", 400));
  ASSERT_EQ(t.status, 200) << t.body;
  const std::string text = t.json()["choices"][0]["text"];
  EXPECT_EQ(text.find("<s>"), std::string::npos) << text;
  EXPECT_NE(text.find("Once upon a time"), std::string::npos) << "the model did not reach a second story";
  // `owl run` and `owl chat` follow the same rule.
  auto run =
      run_owl({"run", stories(), "Once upon a time", "-n", "400", "--temp", "0", "--kv-type", "f32", "--threads", "1"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out.find("<s>"), std::string::npos) << run.out;
  EXPECT_EQ(run.out, text);
  auto ch = run_owl({"chat", stories(), "-n", "400", "--temp", "0", "--threads", "1"}, "Once upon a time\n");
  EXPECT_EQ(ch.exit_code, 0) << ch.err;
  EXPECT_EQ(ch.out.find("<s>"), std::string::npos) << ch.out;
}

size_t count_of(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// Issue #19 D4: a request whose length is ambiguous (RFC 9112 6.3) is refused with 400 and the
// connection closed; what follows its head is never parsed as another request.
TEST_F(Serve, AmbiguousContentLengthIsRejected) {
  const std::string smuggled = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string body = "{}" + smuggled;
  const std::vector<std::string> framings = {
      "Content-Length: 2\r\nContent-Length: " + std::to_string(body.size()) + "\r\n",  // conflicting duplicates
      "Content-Length: 2, " + std::to_string(body.size()) + "\r\n",                    // conflicting list
      "Content-Length : 2\r\n",                                                        // space before the colon
      "Content-Length: +2\r\n",                                                        // not 1*DIGIT
      "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",                           // both framings
  };
  for (const auto& framing : framings) {
    std::string answer = raw_exchange(
        port(),
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + framing + "\r\n" + body, 5);
    EXPECT_EQ(answer.rfind("HTTP/1.1 400 ", 0), 0u) << framing << answer;
    EXPECT_EQ(count_of(answer, "HTTP/1.1 "), 1u) << framing << answer;
    EXPECT_NE(answer.find("bad_request"), std::string::npos) << framing << answer;
  }
  // Identical repeated values are one length.
  std::string ok = raw_exchange(port(),
                                "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n"
                                "Connection: close\r\n\r\n",
                                5);
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 ", 0), 0u) << ok;
}

// Issue #19 D7: HTTP/1.0 has no chunked encoding; a stream to such a client is sent as is and
// ends by closing the connection.
TEST_F(Serve, Http10ClientsGetNoChunkedEncoding) {
  auto request = [](const std::string& body) {
    return "POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  std::string whole = raw_exchange(port(), request(completion_body("Once upon a time", 12)));
  ASSERT_EQ(whole.rfind("HTTP/1.1 200 ", 0), 0u) << whole;
  size_t head_end = whole.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  EXPECT_EQ(whole.find("Transfer-Encoding"), std::string::npos) << whole;
  const std::string text = json::parse(whole.substr(head_end + 4))["choices"][0]["text"];

  std::string streamed = raw_exchange(port(), request(completion_body("Once upon a time", 12, true)));
  ASSERT_EQ(streamed.rfind("HTTP/1.1 200 ", 0), 0u) << streamed;
  head_end = streamed.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  const std::string head = streamed.substr(0, head_end);
  EXPECT_EQ(head.find("Transfer-Encoding"), std::string::npos) << head;
  EXPECT_NE(head.find("Connection: close"), std::string::npos) << head;
  EXPECT_EQ(streamed_text(streamed.substr(head_end + 4)), text);
}

TEST_F(Serve, BadRequestsDuringAStreamDoNotDisturbIt) {
  const auto ref = reference()[1];
  HttpConnection c(port());
  c.send_request("POST", "/v1/completions", completion_body(ref["prompt"], 64, true));
  HttpResult head;
  c.read_head(head);
  ASSERT_EQ(head.status, 200);
  std::string body, piece;
  ASSERT_TRUE(c.read_body_piece(head, piece));
  body += piece;
  for (const char* bad : {"{not json", R"({"messages": []})", R"({"prompt": "x", "max_tokens": 100000})"}) {
    EXPECT_EQ(http_post(port(), "/v1/chat/completions", bad).status / 100, 4);
    EXPECT_EQ(http_post(port(), "/v1/completions", bad).status / 100, 4);
  }
  while (c.read_body_piece(head, piece)) body += piece;
  EXPECT_EQ(streamed_text(body), ref["generated_text"]);
}

TEST(ServeAuth, ApiKeyIsRequired) {
  ServerProcess server(stories(), {"--api-key", "sekret"});
  const std::string body = completion_body("Once upon a time", 2);
  expect_error(http_post(server.port(), "/v1/completions", body), 401, "", "invalid_api_key");
  expect_error(http_post(server.port(), "/v1/completions", body, {"Authorization: Bearer wrong"}), 401, "",
               "invalid_api_key");
  expect_error(http_get(server.port(), "/v1/models"), 401, "", "invalid_api_key");
  auto ok = http_post(server.port(), "/v1/completions", body, {"Authorization: Bearer sekret"});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.json()["choices"][0]["text"], ", there");
  EXPECT_EQ(http_get(server.port(), "/health").status, 200);  // health checks need no key
}

// Issue #19 D9: the auth scheme is case-insensitive (RFC 9110 11.1).
TEST(ServeAuth, BearerSchemeIsCaseInsensitive) {
  ServerProcess server(stories(), {"--api-key", "sekret"});
  for (const char* scheme : {"Bearer", "bearer", "BEARER"}) {
    auto r = http_get(server.port(), "/v1/models", {std::string("Authorization: ") + scheme + " sekret"});
    EXPECT_EQ(r.status, 200) << scheme << ": " << r.body;
  }
  expect_error(http_get(server.port(), "/v1/models", {"Authorization: Basic sekret"}), 401, "", "invalid_api_key");
  expect_error(http_get(server.port(), "/v1/models", {"Authorization: sekret"}), 401, "", "invalid_api_key");
  expect_error(http_get(server.port(), "/v1/models", {"Authorization: bearer sekret2"}), 401, "", "invalid_api_key");
}

// Issue #19 D9: the key can be given in OWL_API_KEY (kept out of the process list); --api-key wins.
TEST(ServeAuth, ApiKeyFromTheEnvironment) {
  ::setenv("OWL_API_KEY", "from-env", 1);
  std::unique_ptr<ServerProcess> env_only, both;
  try {
    env_only = std::make_unique<ServerProcess>(stories(), std::vector<std::string>{});
    both = std::make_unique<ServerProcess>(stories(), std::vector<std::string>{"--api-key", "from-flag"});
  } catch (...) {
    ::unsetenv("OWL_API_KEY");
    throw;
  }
  ::unsetenv("OWL_API_KEY");
  expect_error(http_get(env_only->port(), "/v1/models"), 401, "", "invalid_api_key");
  EXPECT_EQ(http_get(env_only->port(), "/v1/models", {"Authorization: Bearer from-env"}).status, 200);
  expect_error(http_get(both->port(), "/v1/models", {"Authorization: Bearer from-env"}), 401, "", "invalid_api_key");
  EXPECT_EQ(http_get(both->port(), "/v1/models", {"Authorization: Bearer from-flag"}).status, 200);
}

TEST(ServeQueue, FullQueueAnswers429) {
  // One slot, no waiting room: while a long stream runs, another request is refused.
  ServerProcess server(stories(), {"--parallel", "1", "--max-queue", "0", "--ctx", "4096"});
  HttpConnection c(server.port());
  c.send_request("POST", "/v1/completions", completion_body("Once upon a time", 4000, true));
  HttpResult head;
  c.read_head(head);
  std::string piece;
  ASSERT_TRUE(c.read_body_piece(head, piece));
  expect_error(http_post(server.port(), "/v1/completions", completion_body("The little dog", 4)), 429, "",
               "queue_full");
  c.close();
  // Once the stream is gone, requests run again.
  HttpResult r;
  for (int i = 0; i < 200; ++i) {
    r = http_post(server.port(), "/v1/completions", completion_body("Once upon a time", 2));
    if (r.status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(r.status, 200);
}

TEST(ServeQueue, KvBudgetQueuesRequestsUntilRoomFrees) {
  // Two slots but KV room for one request at a time: the second waits, then completes.
  ServerProcess server(stories(), {"--parallel", "2", "--kv-budget", "128", "--kv-type", "f32"});
  const auto refs = reference();
  std::vector<std::string> out(2);
  std::vector<std::thread> t;
  for (int i = 0; i < 2; ++i)
    t.emplace_back([&, i] {
      out[static_cast<size_t>(i)] =
          http_post(server.port(), "/v1/completions", completion_body(refs[static_cast<size_t>(i)]["prompt"], 64))
              .json()["choices"][0]["text"];
    });
  for (auto& th : t) th.join();
  EXPECT_EQ(out[0], refs[0]["generated_text"]);
  EXPECT_EQ(out[1], refs[1]["generated_text"]);
  // A request larger than the whole budget can never run: 400, not an endless wait.
  expect_error(http_post(server.port(), "/v1/completions", completion_body("Once", 200)), 400, "",
               "context_length_exceeded");
}

TEST(ServeStartup, ModelWithoutTokenizerIsAClearError) {
  auto r = run_owl({"serve", shared_path("golden/llama/f32.gguf"), "--port", "0"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("cannot serve text"), std::string::npos) << r.err;
  auto u = run_owl({"serve", stories(), "--parallel", "0"});
  EXPECT_EQ(u.exit_code, 2) << u.err;
}

}  // namespace
}  // namespace owl::test

namespace owl::test {
namespace {

TEST(ServeBatching, LongPromptIsPrefilledInChunksBesideARunningStream) {
  std::string long_prompt;
  for (int i = 0; i < 30; ++i) long_prompt += "Lily saw a big red ball. ";
  // Solo answers, prompt evaluated in one piece.
  ServerProcess whole(stories(), {"--prefill-chunk", "1024", "--ctx", "1024", "--kv-type", "f32"});
  auto solo_long = http_post(whole.port(), "/v1/completions", completion_body(long_prompt, 16)).json();
  auto solo_short = http_post(whole.port(), "/v1/completions", completion_body("Once upon a time", 200)).json();
  const int64_t n_long = solo_long["usage"]["prompt_tokens"];
  ASSERT_GT(n_long, 200);

  ServerProcess chunked(stories(), {"--prefill-chunk", "16", "--ctx", "1024", "--parallel", "2", "--kv-type", "f32"});
  // Alone, the long prompt takes one step per 16 prompt tokens.
  double steps_before = chunked.metric("owl_engine_steps_total");
  auto alone = http_post(chunked.port(), "/v1/completions", completion_body(long_prompt, 1)).json();
  EXPECT_EQ(chunked.metric("owl_engine_steps_total") - steps_before, static_cast<double>((n_long + 15) / 16));
  EXPECT_EQ(alone["choices"][0]["text"], solo_long["choices"][0]["text"].get<std::string>().substr(
                                             0, alone["choices"][0]["text"].get<std::string>().size()));

  // Now beside a running stream: both answers equal their solo ones.
  HttpConnection c(chunked.port());
  c.send_request("POST", "/v1/completions", completion_body("Once upon a time", 200, true));
  HttpResult head;
  c.read_head(head);
  std::string body, piece;
  ASSERT_TRUE(c.read_body_piece(head, piece));
  body += piece;
  // A different long prompt (no prefix reuse from the run above).
  auto beside = http_post(chunked.port(), "/v1/completions", completion_body(long_prompt, 16)).json();
  while (c.read_body_piece(head, piece)) body += piece;
  EXPECT_EQ(beside["choices"][0]["text"], solo_long["choices"][0]["text"]);
  EXPECT_EQ(streamed_text(body), solo_short["choices"][0]["text"]);
}

TEST(ServeReasoning, EnableThinkingFalseRendersTheTemplateSwitch) {
  ServerProcess server(stories(), {"--chat-template", shared_path("chat-templates/qwen3/chat_template.jinja")});
  json body = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 1}, {"temperature", 0}};
  auto on = http_post(server.port(), "/v1/chat/completions", body.dump()).json();
  body["chat_template_kwargs"] = {{"enable_thinking", false}};
  auto off = http_post(server.port(), "/v1/chat/completions", body.dump()).json();
  // Off, Qwen3's template appends an empty "<think>\n\n</think>\n\n" block to the prompt.
  EXPECT_GT(off["usage"]["prompt_tokens"].get<int>(), on["usage"]["prompt_tokens"].get<int>() + 10);
  EXPECT_EQ(off["usage"]["completion_tokens_details"]["reasoning_tokens"], 0);
}

}  // namespace
}  // namespace owl::test
