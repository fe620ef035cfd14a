// OpenAI's logprobs through `owl serve` with the real stories260K model: the numbers are the
// log-softmax of `owl logits` rows (the model's own distribution), the shapes are OpenAI's for
// chat (logprobs + top_logprobs) and completions (logprobs: N), streamed chunks carry their
// tokens' logprobs, and bad combinations are 400s naming the field.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "model/source.h"
#include "logprobs_expect.h"
#include "server_fixture.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace owl::test {
namespace {

using json = nlohmann::json;

class Logprobs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new std::string(shared_path("models/stories260K/stories260K-f32.gguf"));
    auto source = open_model_source(*model_);
    tok_ = Tokenizer::from_gguf(*source->gguf_file()).release();
    server_ = new ServerProcess(*model_, {"--kv-type", "f32"});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete tok_;
    delete model_;
    server_ = nullptr;
    tok_ = nullptr;
    model_ = nullptr;
  }
  static HttpResult post(const char* path, const json& body) { return http_post(server_->port(), path, body.dump()); }
  static json chat_body(const json& extra) {
    json body = {{"messages", {{{"role", "user"}, {"content", "Once upon a time"}}}},
                 {"temperature", 0},
                 {"max_tokens", 6},
                 {"ignore_eos", true}};
    body.update(extra);
    return body;
  }
  // `owl logits` of the tokens: one row per position.
  static std::vector<std::vector<float>> logits_of(const std::vector<int32_t>& ids) {
    std::string list;
    for (int32_t id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
    const std::string out = temp_dir() + "/logits.f32";
    RunResult r = run_owl({"logits", *model_, "--tokens", list, "--out", out});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<float> flat = read_f32(out);
    const size_t n_vocab = static_cast<size_t>(tok_->n_vocab());
    EXPECT_EQ(flat.size(), ids.size() * n_vocab);
    std::vector<std::vector<float>> rows;
    for (size_t i = 0; i + n_vocab <= flat.size(); i += n_vocab)
      rows.emplace_back(flat.begin() + static_cast<std::ptrdiff_t>(i),
                        flat.begin() + static_cast<std::ptrdiff_t>(i + n_vocab));
    return rows;
  }
  static std::vector<double> log_softmax(const std::vector<float>& row) {
    const double mx = *std::max_element(row.begin(), row.end());
    double z = 0;
    for (float x : row) z += std::exp(x - mx);
    std::vector<double> out;
    for (float x : row) out.push_back(x - mx - std::log(z));
    return out;
  }
  static json bytes_of(const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
  }
  static std::string* model_;
  static ServerProcess* server_;
  static Tokenizer* tok_;
};
std::string* Logprobs::model_ = nullptr;
ServerProcess* Logprobs::server_ = nullptr;
Tokenizer* Logprobs::tok_ = nullptr;

TEST_F(Logprobs, CompletionsMatchTheLogSoftmaxOfOwlLogits) {
  const std::vector<int32_t> prompt = tok_->encode("Once upon a time", /*add_special=*/true);
  auto r = post("/v1/completions",
                {{"prompt", prompt}, {"temperature", 0}, {"max_tokens", 5}, {"ignore_eos", true}, {"logprobs", 5}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json choice = r.json()["choices"][0];
  const json& lp = choice["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 5u) << r.body;
  // Greedy's tokens are each row's argmax: rebuild the ids from the rows, one token at a time.
  std::vector<int32_t> ids = prompt;
  std::vector<std::vector<float>> rows;
  for (int k = 0; k < 5; ++k) {
    rows = logits_of(ids);
    ASSERT_EQ(rows.size(), ids.size());
    const auto& row = rows.back();
    ids.push_back(static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin()));
  }
  rows = logits_of(std::vector<int32_t>(ids.begin(), ids.end() - 1));
  std::string text;
  for (size_t k = 0; k < 5; ++k) {
    const int32_t id = ids[prompt.size() + k];
    const std::vector<double> ls = log_softmax(rows[prompt.size() - 1 + k]);
    EXPECT_EQ(lp["tokens"][k], tok_->token_bytes(id)) << k;
    EXPECT_NEAR(lp["token_logprobs"][k].get<double>(), ls[static_cast<size_t>(id)], 1e-4) << k;
    EXPECT_EQ(lp["text_offset"][k], text.size()) << k;  // ASCII: characters are bytes
    text += tok_->token_bytes(id);
    // The five most likely tokens, with their numbers.
    const json& top = lp["top_logprobs"][k];
    ASSERT_TRUE(top.is_object());
    EXPECT_LE(top.size(), 5u);
    EXPECT_NEAR(top[tok_->token_bytes(id)].get<double>(), ls[static_cast<size_t>(id)], 1e-4);
    double mass = 0;
    for (const auto& [token, logprob] : top.items()) {
      EXPECT_LE(logprob.get<double>(), ls[static_cast<size_t>(id)] + 1e-6) << "greedy's token is the likeliest";
      mass += std::exp(logprob.get<double>());
    }
    EXPECT_LE(mass, 1.0 + 1e-6);
  }
  EXPECT_EQ(choice["text"], text);
}

TEST_F(Logprobs, ChatHasOpenAIsShapeSortedAlternativesAndExactBytes) {
  auto r = post("/v1/chat/completions", chat_body({{"logprobs", true}, {"top_logprobs", 4}}));
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = r.json();
  const json& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_TRUE(content.is_array()) << r.body;
  EXPECT_TRUE(j["choices"][0]["logprobs"]["refusal"].is_null());
  ASSERT_EQ(content.size(), j["usage"]["completion_tokens"].get<size_t>());
  std::string text;
  for (const auto& e : content) {
    const std::string token = e["token"];
    EXPECT_EQ(e["bytes"], bytes_of(token));
    text += token;
    ASSERT_EQ(e["top_logprobs"].size(), 4u);
    double mass = 0, previous = 0;
    for (size_t i = 0; i < 4; ++i) {
      const json& t = e["top_logprobs"][i];
      EXPECT_EQ(t["bytes"], bytes_of(t["token"]));
      const double lp = t["logprob"];
      if (i > 0) {
        EXPECT_LE(lp, previous) << "sorted, most likely first";
      }
      previous = lp;
      mass += std::exp(lp);
    }
    EXPECT_LE(mass, 1.0 + 1e-6);
    // Greedy: the token is the likeliest alternative.
    EXPECT_EQ(e["top_logprobs"][0]["token"], token);
    EXPECT_DOUBLE_EQ(e["top_logprobs"][0]["logprob"].get<double>(), e["logprob"].get<double>());
  }
  // SentencePiece's leading space of the first piece is stripped from the text, not the token.
  const std::string answer = j["choices"][0]["message"]["content"];
  EXPECT_NE(text.find(answer), std::string::npos) << text << " vs " << answer;

  // logprobs alone: no alternatives; without logprobs: null.
  auto plain = post("/v1/chat/completions", chat_body({{"logprobs", true}}));
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_TRUE(plain.json()["choices"][0]["logprobs"]["content"][0]["top_logprobs"].empty());
  auto none = post("/v1/chat/completions", chat_body(json::object()));
  EXPECT_TRUE(none.json()["choices"][0]["logprobs"].is_null());
}

// A byte token that is part of a character: "token" is lossy text, "bytes" the exact byte.
TEST_F(Logprobs, PartialCharacterTokenIsLossyTextWithExactBytes) {
  const auto id = tok_->token_id("<0xE2>");
  ASSERT_TRUE(id.has_value()) << "stories260K has byte tokens";
  ASSERT_EQ(tok_->token_bytes(*id), "\xE2");
  auto r = post("/v1/chat/completions",
                chat_body({{"max_tokens", 1}, {"logprobs", true}, {"logit_bias", {{std::to_string(*id), 100}}}}));
  ASSERT_EQ(r.status, 200) << r.body;
  const json e = r.json()["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(e["token"], "\xEF\xBF\xBD");  // U+FFFD
  EXPECT_EQ(e["bytes"], json::array({0xE2}));
  // The model's own probability of the forced token, not the biased one.
  EXPECT_LT(e["logprob"].get<double>(), -1.0);
}

TEST_F(Logprobs, StreamedChunksCarryTheirTokensLogprobs) {
  auto whole = post("/v1/chat/completions", chat_body({{"logprobs", true}, {"top_logprobs", 2}}));
  ASSERT_EQ(whole.status, 200) << whole.body;
  auto r = post("/v1/chat/completions", chat_body({{"logprobs", true}, {"top_logprobs", 2}, {"stream", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  json streamed = json::array();
  std::string content;
  for (const auto& ev : sse_events(r.body)) {
    if (!ev.is_object() || ev["choices"].empty()) continue;
    const json& c = ev["choices"][0];
    if (c["delta"].contains("content")) content += c["delta"]["content"].get<std::string>();
    if (c["logprobs"].is_object())
      for (const auto& e : c["logprobs"]["content"]) streamed.push_back(e);
  }
  expect_same_logprobs(streamed, whole.json()["choices"][0]["logprobs"]["content"]);
  EXPECT_EQ(content, whole.json()["choices"][0]["message"]["content"]);

  // Completions: the chunks' arrays join into the whole answer's.
  json body = {
      {"prompt", "Once upon a time"}, {"temperature", 0}, {"max_tokens", 6}, {"ignore_eos", true}, {"logprobs", 2}};
  auto w = post("/v1/completions", body);
  body["stream"] = true;
  auto s = post("/v1/completions", body);
  ASSERT_EQ(s.status, 200) << s.body;
  json tokens = json::array(), offsets = json::array();
  for (const auto& ev : sse_events(s.body)) {
    if (!ev.is_object() || ev["choices"].empty() || !ev["choices"][0]["logprobs"].is_object()) continue;
    for (const auto& t : ev["choices"][0]["logprobs"]["tokens"]) tokens.push_back(t);
    for (const auto& o : ev["choices"][0]["logprobs"]["text_offset"]) offsets.push_back(o);
  }
  EXPECT_EQ(tokens, w.json()["choices"][0]["logprobs"]["tokens"]);
  EXPECT_EQ(offsets, w.json()["choices"][0]["logprobs"]["text_offset"]);
}

TEST_F(Logprobs, BadCombinationsAreRefusedNamingTheField) {
  const std::pair<json, const char*> chat_cases[] = {
      {{{"top_logprobs", 3}}, "top_logprobs"},                         // without logprobs
      {{{"logprobs", false}, {"top_logprobs", 3}}, "top_logprobs"},    // with logprobs off
      {{{"logprobs", true}, {"top_logprobs", 21}}, "top_logprobs"},    // above OpenAI's 20
      {{{"logprobs", true}, {"top_logprobs", -1}}, "top_logprobs"},    // negative
      {{{"logprobs", 3}}, "logprobs"},                                 // chat's logprobs is a boolean
      {{{"store", true}}, "store"},                                    // owl stores nothing
      {{{"service_tier", "flex"}}, "service_tier"},                    // one tier
      {{{"modalities", {"text", "audio"}}}, "modalities"},             // text only
      {{{"functions", json::array({{{"name", "f"}}})}}, "functions"},  // the deprecated API
      {{{"user", 5}}, "user"},                                         // not a string
      {{{"reasoning_effort", "extreme"}}, "reasoning_effort"},         // not a level
  };
  for (const auto& [extra, param] : chat_cases) {
    auto r = post("/v1/chat/completions", chat_body(extra));
    EXPECT_EQ(r.status, 400) << extra.dump() << " -> " << r.body;
    EXPECT_EQ(r.json()["error"]["param"], param) << extra.dump();
  }
  const std::pair<json, const char*> completion_cases[] = {
      {{{"logprobs", 6}}, "logprobs"},                  // above OpenAI's 5
      {{{"logprobs", true}}, "logprobs"},               // completions' logprobs is a number
      {{{"logprobs", 1}, {"echo", true}}, "logprobs"},  // prompt logprobs are not computed
      {{{"best_of", 3}}, "best_of"},                    // no ranking of candidates
      {{{"suffix", "The end."}}, "suffix"},             // no fill-in-the-middle
  };
  for (const auto& [extra, param] : completion_cases) {
    json body = {{"prompt", "Once upon a time"}, {"max_tokens", 2}};
    body.update(extra);
    auto r = post("/v1/completions", body);
    EXPECT_EQ(r.status, 400) << extra.dump() << " -> " << r.body;
    EXPECT_EQ(r.json()["error"]["param"], param) << extra.dump();
  }
  // The no-ops are accepted.
  auto ok = post("/v1/chat/completions", chat_body({{"user", "u-1"},
                                                    {"metadata", {{"k", "v"}}},
                                                    {"store", false},
                                                    {"service_tier", "auto"},
                                                    {"modalities", {"text"}},
                                                    {"parallel_tool_calls", false}}));
  EXPECT_EQ(ok.status, 200) << ok.body;
}

}  // namespace
}  // namespace owl::test
