// `owl serve --spec`: speculative decoding under continuous batching, over real HTTP with the
// real stories260K model. Four concurrent greedy requests share each step's verify batch and
// must still produce exactly the reference engine's continuations; a request that opts out
// ("speculative": false) too; /metrics reports the acceptance rate and tokens per forward.
// The draft model is the target itself (every draft right: the upper bound of the machinery).
#include <gtest/gtest.h>

#include <fstream>
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

std::string greedy_body(const std::string& prompt, bool speculative = true) {
  json b = {{"prompt", prompt}, {"max_tokens", 64}, {"temperature", 0}};
  if (!speculative) b["speculative"] = false;
  return b.dump();
}

TEST(ServeSpec, ConcurrentSpeculativeStreamsEqualTheReference) {
  ServerProcess server(stories(), {"--parallel", "4", "--kv-type", "f32", "--spec", "draft:3", "--draft", stories()});
  const auto refs = reference();
  const std::vector<size_t> which = {0, 1, 2, 3};
  std::vector<std::string> results(which.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < which.size(); ++i)
    threads.emplace_back([&, i] {
      // The last request opts out: it decodes plainly beside the speculating ones.
      auto r = http_post(server.port(), "/v1/completions",
                         greedy_body(refs[which[i]]["prompt"], /*speculative=*/i + 1 < which.size()));
      results[i] = r.status == 200 ? r.json()["choices"][0]["text"].get<std::string>()
                                   : "HTTP " + std::to_string(r.status) + r.body;
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < which.size(); ++i) EXPECT_EQ(results[i], refs[which[i]]["generated_text"]) << "request " << i;

  const std::string metrics = http_get(server.port(), "/metrics").body;
  for (const char* name : {"owl_spec_draft_tokens_total", "owl_spec_accepted_tokens_total", "owl_spec_acceptance_ratio",
                           "owl_spec_tokens_per_forward"})
    EXPECT_NE(metrics.find(name), std::string::npos) << name;
  EXPECT_GT(server.metric("owl_spec_draft_tokens_total"), 0);
  EXPECT_GE(server.metric("owl_spec_acceptance_ratio"), 0.9);
  EXPECT_GT(server.metric("owl_spec_tokens_per_forward"), 1.0);
}

TEST(ServeSpec, PromptLookupKeepsTheOutput) {
  ServerProcess server(stories(), {"--parallel", "2", "--kv-type", "f32", "--spec", "ngram:3"});
  const auto refs = reference();
  for (size_t i : {0, 4}) {
    auto r = http_post(server.port(), "/v1/completions", greedy_body(refs[i]["prompt"]));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["choices"][0]["text"], refs[i]["generated_text"]) << i;
  }
}

TEST(ServeSpec, BadSpecIsAClearStartupError) {
  auto r = run_owl({"serve", stories(), "--port", "0", "--spec", "mtp"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("no NextN"), std::string::npos) << r.err;
  auto k = run_owl({"serve", stories(), "--port", "0", "--spec", "draft:99", "--draft", stories()});
  EXPECT_EQ(k.exit_code, 2) << k.err;
  EXPECT_NE(k.err.find("from 1 to 16"), std::string::npos) << k.err;
}

}  // namespace
}  // namespace owl::test
