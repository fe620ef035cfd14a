// `n` choices through `owl serve` with the real stories260K model: the prompt is prefilled once
// and copied into the other choices (owl_prefill_tokens_total / owl_prompt_tokens_forked_total),
// greedy choices equal n = 1, sampled choice i equals n = 1 with seed + i, streamed chunks
// carry their choice's index, usage counts the prompt once, and bad n is a 400 naming n.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "server_fixture.h"
#include "test_util.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

HttpResult post_to(int port, const json& completion) { return http_post(port, "/v1/completions", completion.dump()); }

class Choices : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess(shared_path("models/stories260K/stories260K-f32.gguf"),
                                {"--kv-type", "f32", "--parallel", "4"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static HttpResult post(const char* path, const json& body) { return http_post(server_->port(), path, body.dump()); }
  static json chat(const std::string& prompt, const json& extra) {
    json body = {{"messages", {{{"role", "user"}, {"content", prompt}}}}, {"max_tokens", 12}, {"ignore_eos", true}};
    body.update(extra);
    auto r = post("/v1/chat/completions", body);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json();
  }
  static ServerProcess* server_;
};
ServerProcess* Choices::server_ = nullptr;

TEST_F(Choices, GreedyChoicesEqualOneChoiceAndThePromptIsPrefilledOnce) {
  const double prefilled = server_->metric("owl_prefill_tokens_total");
  const double forked = server_->metric("owl_prompt_tokens_forked_total");
  // A prompt no earlier request cached.
  const json three = chat("The little dog ran to the park", {{"temperature", 0}, {"n", 3}});
  const int64_t prompt_tokens = three["usage"]["prompt_tokens"];
  const int64_t cached = three["usage"]["prompt_tokens_details"]["cached_tokens"];
  EXPECT_LT(cached, prompt_tokens / 2);
  EXPECT_EQ(server_->metric("owl_prefill_tokens_total") - prefilled, prompt_tokens - cached);
  EXPECT_EQ(server_->metric("owl_prompt_tokens_forked_total") - forked, 2 * prompt_tokens);
  EXPECT_EQ(three["usage"]["completion_tokens"], 3 * 12);
  EXPECT_EQ(three["usage"]["total_tokens"], prompt_tokens + 3 * 12);

  const json one = chat("The little dog ran to the park", {{"temperature", 0}});
  ASSERT_EQ(three["choices"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(three["choices"][i]["index"], i);
    EXPECT_EQ(three["choices"][i]["message"], one["choices"][0]["message"]) << i;
    EXPECT_EQ(three["choices"][i]["finish_reason"], "length");
  }
}

TEST_F(Choices, SampledChoiceIEqualsOneChoiceWithSeedPlusI) {
  const json four = chat("Once upon a time", {{"temperature", 1}, {"seed", 42}, {"n", 4}});
  ASSERT_EQ(four["choices"].size(), 4u);
  std::vector<std::string> texts;
  for (int i = 0; i < 4; ++i) {
    const json one = chat("Once upon a time", {{"temperature", 1}, {"seed", 42 + i}});
    EXPECT_EQ(four["choices"][i]["message"]["content"], one["choices"][0]["message"]["content"]) << "choice " << i;
    texts.push_back(four["choices"][i]["message"]["content"]);
  }
  std::sort(texts.begin(), texts.end());
  EXPECT_NE(std::unique(texts.begin(), texts.end()), texts.begin() + 1) << "four seeds, one text";

  // Completions: the same rule, with their logprobs per choice.
  json body = {
      {"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 1}, {"seed", 7}, {"n", 2}, {"logprobs", 1}};
  auto two = post("/v1/completions", body);
  ASSERT_EQ(two.status, 200) << two.body;
  body["n"] = 1;
  body["seed"] = 8;
  auto second = post("/v1/completions", body);
  EXPECT_EQ(two.json()["choices"][1]["text"], second.json()["choices"][0]["text"]);
  const json a = two.json()["choices"][1]["logprobs"];
  const json b = second.json()["choices"][0]["logprobs"];
  EXPECT_EQ(a["tokens"], b["tokens"]);
  EXPECT_EQ(a["text_offset"], b["text_offset"]);
  ASSERT_EQ(a["token_logprobs"].size(), b["token_logprobs"].size());
  // The repeated prompt comes from the prefix cache: its last row alone may move the last bits.
  for (size_t k = 0; k < a["token_logprobs"].size(); ++k)
    EXPECT_NEAR(a["token_logprobs"][k].get<double>(), b["token_logprobs"][k].get<double>(), 1e-4) << k;
  EXPECT_EQ(two.json()["usage"]["completion_tokens"], 16);
}

TEST_F(Choices, StreamedChunksCarryTheirIndex) {
  const json whole = chat("Once upon a time", {{"temperature", 1}, {"seed", 3}, {"n", 2}});
  json body = {{"messages", {{{"role", "user"}, {"content", "Once upon a time"}}}},
               {"max_tokens", 12},
               {"ignore_eos", true},
               {"temperature", 1},
               {"seed", 3},
               {"n", 2},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  auto r = post("/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  std::string content[2];
  int finishes[2] = {0, 0};
  json usage;
  for (const auto& ev : sse_events(r.body)) {
    if (!ev.is_object()) continue;
    if (ev.contains("usage") && !ev["usage"].is_null()) usage = ev["usage"];
    for (const auto& c : ev["choices"]) {
      const size_t i = c["index"];
      ASSERT_LT(i, 2u);
      if (c["delta"].contains("content")) content[i] += c["delta"]["content"].get<std::string>();
      if (!c["finish_reason"].is_null()) ++finishes[i];
    }
  }
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(content[i], whole["choices"][i]["message"]["content"]) << i;
    EXPECT_EQ(finishes[i], 1) << i;
  }
  EXPECT_EQ(usage["completion_tokens"], 24);
  EXPECT_EQ(usage["prompt_tokens"], whole["usage"]["prompt_tokens"]);
}

// A client that leaves cancels every choice: those running and a group still waiting for slots.
TEST(ChoicesDisconnect, ClosedClientCancelsEveryChoice) {
  ServerProcess server(shared_path("models/stories260K/stories260K-f32.gguf"),
                       {"--ctx", "4096", "--parallel", "4", "--kv-type", "f32"});
  auto body = [](int n) {
    return json{{"prompt", "Once upon a time"}, {"max_tokens", 4000}, {"ignore_eos", true}, {"n", n}, {"stream", true}}
        .dump();
  };
  auto wait_for = [&](const char* metric, double want) {
    double v = -1;
    for (int i = 0; i < 500 && v != want; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      v = server.metric(metric);
    }
    return v;
  };
  // Two choices run; a group of three waits, as only two slots are left, and its client leaves.
  HttpConnection running(server.port());
  running.send_request("POST", "/v1/completions", body(2));
  HttpResult head;
  running.read_head(head);
  ASSERT_EQ(head.status, 200);
  std::string piece;
  ASSERT_TRUE(running.read_body_piece(head, piece));
  {
    HttpConnection waiting(server.port());
    waiting.send_request("POST", "/v1/completions", body(3));
    HttpResult h;
    waiting.read_head(h);
    ASSERT_EQ(h.status, 200);
    EXPECT_EQ(wait_for("owl_queue_depth", 3), 3);
    waiting.reset();
  }
  EXPECT_EQ(wait_for("owl_generation_requests_cancelled_total", 3), 3);
  EXPECT_EQ(server.metric("owl_running_sequences"), 2);
  // The running choices go when their client does.
  running.close();
  EXPECT_EQ(wait_for("owl_running_sequences", 0), 0);
  EXPECT_EQ(wait_for("owl_generation_requests_cancelled_total", 5), 5);
  // And the server serves the next group normally.
  auto r = post_to(server.port(), {{"prompt", "Once upon a time"}, {"max_tokens", 5}, {"temperature", 0}, {"n", 4}});
  ASSERT_EQ(r.status, 200) << r.body;
  for (const auto& c : r.json()["choices"]) EXPECT_EQ(c["text"], ", there was a little");
}

TEST_F(Choices, BadNIsRefusedNamingN) {
  for (const json& n : {json(0), json(-1), json(17), json(5) /* above --parallel 4 */, json("2"), json(1.5)}) {
    json body = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"n", n}};
    auto r = post("/v1/chat/completions", body);
    EXPECT_EQ(r.status, 400) << n.dump() << " -> " << r.body;
    EXPECT_EQ(r.json()["error"]["param"], "n") << n.dump();
    auto c = post("/v1/completions", {{"prompt", "Hi"}, {"n", n}});
    EXPECT_EQ(c.status, 400) << n.dump() << " -> " << c.body;
    EXPECT_EQ(c.json()["error"]["param"], "n") << n.dump();
  }
}

}  // namespace
}  // namespace owl::test
