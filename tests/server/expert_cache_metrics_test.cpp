// /metrics of `owl serve --mem SIZE` when the routed experts stream (model/expert_cache.h): the
// owl_expert_cache_* counters, over real HTTP, on the synthetic MoE file the memory tests use,
// with a budget of 40% of it. They must move with the work (misses and bytes read after a
// completion, prefetch counts that add up) and be absent when every expert is resident.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "server/server_fixture.h"
#include "streaming_model.h"
#include "test_util.h"

namespace owl::test {
namespace {

TEST(ExpertCacheMetrics, StreamedExpertsAreCountedAndResidentOnesAreNot) {
  const std::string model = streaming_model(temp_dir());
  struct RemoveAtEnd {
    std::string path;
    ~RemoveAtEnd() { std::filesystem::remove(path); }
  } remove_model{model};  // 160 MB
  const auto file_bytes = static_cast<double>(std::filesystem::file_size(model));
  const std::string budget = std::to_string(static_cast<uint64_t>(0.4 * file_bytes));
  const std::string body =
      nlohmann::json{{"prompt", "Once upon a time"}, {"max_tokens", 16}, {"temperature", 0}}.dump();
  {
    ServerProcess server(model, {"--mem", budget, "--ctx", "128"});
    const std::string names[] = {"owl_expert_cache_hits_total",
                                 "owl_expert_cache_misses_total",
                                 "owl_expert_cache_hit_ratio",
                                 "owl_expert_cache_read_bytes_total",
                                 "owl_expert_cache_read_seconds_total",
                                 "owl_expert_cache_evictions_total",
                                 "owl_expert_cache_prefetches_total",
                                 "owl_expert_cache_prefetch_used_total",
                                 "owl_expert_cache_prefetch_wasted_total",
                                 "owl_expert_cache_bytes",
                                 "owl_expert_cache_capacity_bytes"};
    const std::string before = http_get(server.port(), "/metrics").body;
    for (const std::string& name : names)
      EXPECT_NE(before.find("# TYPE " + name + " "), std::string::npos) << name << " missing:\n" << before;
    EXPECT_EQ(server.metric("owl_expert_cache_misses_total"), 0);  // nothing has run yet
    const double capacity = server.metric("owl_expert_cache_capacity_bytes");
    EXPECT_GT(capacity, 0);
    EXPECT_LE(capacity, 0.4 * file_bytes);

    const auto r = http_post(server.port(), "/v1/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_GT(r.json()["usage"]["completion_tokens"].get<int>(), 0);
    const double hits = server.metric("owl_expert_cache_hits_total");
    const double misses = server.metric("owl_expert_cache_misses_total");
    EXPECT_GT(misses, 0);
    EXPECT_GT(hits + misses, 0);
    EXPECT_NEAR(server.metric("owl_expert_cache_hit_ratio"), hits / (hits + misses), 1e-9);
    // Every miss read an expert's three matrices: at least one byte each.
    EXPECT_GE(server.metric("owl_expert_cache_read_bytes_total"), 3 * misses);
    EXPECT_GT(server.metric("owl_expert_cache_read_seconds_total"), 0);
    EXPECT_GT(server.metric("owl_expert_cache_bytes"), 0);
    // Of the experts read ahead, some were used, some evicted unused, the rest still wait.
    EXPECT_LE(
        server.metric("owl_expert_cache_prefetch_used_total") + server.metric("owl_expert_cache_prefetch_wasted_total"),
        server.metric("owl_expert_cache_prefetches_total"));
    EXPECT_LE(server.metric("owl_expert_cache_prefetch_wasted_total"),
              server.metric("owl_expert_cache_evictions_total"));

    // The same completion again: counters only grow.
    ASSERT_EQ(http_post(server.port(), "/v1/completions", body).status, 200);
    EXPECT_GT(server.metric("owl_expert_cache_hits_total") + server.metric("owl_expert_cache_misses_total"),
              hits + misses);
  }
  ServerProcess resident(model, {"--ctx", "128"});  // the default budget holds all 160 MB
  ASSERT_EQ(http_post(resident.port(), "/v1/completions", body).status, 200);
  EXPECT_EQ(http_get(resident.port(), "/metrics").body.find("owl_expert_cache"), std::string::npos);
}

}  // namespace
}  // namespace owl::test
