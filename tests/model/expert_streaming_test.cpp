// Routed experts streamed from the file through the expert cache (model/residency.h,
// model/expert_cache.h): under any memory budget the logits equal the all-resident run's bit
// for bit. Per MoE family (golden tiny models, Q4_K_M: packed experts of two sizes, and F32:
// plain experts), three budgets from the smallest that streams to one expert short of all
// resident, each on a 64-token prompt in one call (experts one after another) followed by
// greedy and teacher-forced decode steps through the KV cache (one token: experts in parallel).
// Also: the plans for budgets around the edges, and the cache's eviction order on its own.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "golden_util.h"
#include "model/expert_cache.h"
#include "model/model.h"
#include "model/residency.h"
#include "model/source.h"
#include "runtime/kv_cache.h"
#include "test_util.h"

namespace owl {
namespace {

struct BudgetRun {
  test::CaseRun run;
  bool streamed = false;
  ExpertCache::Stats stats;
};

BudgetRun run_with_budget(const std::string& path, uint64_t budget, const test::GoldenCase& c) {
  auto src = open_gguf_source(path);
  src->mem_budget = budget;
  src->mem_budget_source = "--mem";
  auto model = Model::load(*src);
  BudgetRun r;
  r.run = test::run_case(*model, c, DType::F32);
  r.streamed = src->expert_cache != nullptr;
  if (src->expert_cache) r.stats = src->expert_cache->stats();
  return r;
}

bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_identical_at_three_budgets(const std::string& model, const std::string& quant) {
  const std::string path = test::shared_path("golden/" + model + "/" + quant + ".gguf");
  const test::Golden g = test::load_golden(model, quant);
  const ResidencyPlan plan = plan_residency(*open_gguf_source(path));  // no budget: the byte counts
  ASSERT_GT(plan.n_experts, 0);
  ASSERT_GT(plan.largest_expert, 0u);
  const uint64_t smallest = plan.fixed_bytes + plan.min_cache_bytes();
  const uint64_t almost_all = plan.fixed_bytes + plan.expert_bytes - plan.largest_expert;
  ASSERT_LT(smallest, almost_all) << model << ": too few experts to stream";
  const uint64_t budgets[] = {smallest, (smallest + almost_all) / 2, almost_all};
  for (const test::GoldenCase& c : g.cases) {
    if (c.name == "long") continue;  // short and medium cover both paths; long adds only time
    const BudgetRun all = run_with_budget(path, 0, c);
    ASSERT_FALSE(all.streamed);
    for (const uint64_t budget : budgets) {
      const BudgetRun r = run_with_budget(path, budget, c);
      const std::string where = model + "/" + quant + " " + c.name + " at --mem " + std::to_string(budget);
      ASSERT_TRUE(r.streamed) << where;
      EXPECT_TRUE(same_floats(r.run.logits, all.run.logits)) << where << ": prompt logits differ";
      EXPECT_TRUE(same_floats(r.run.forced, all.run.forced)) << where << ": decode logits differ";
      EXPECT_EQ(r.run.greedy, all.run.greedy) << where;
      EXPECT_GT(r.stats.misses, 0u) << where << ": nothing was read from the file";
      EXPECT_GT(r.stats.bytes_read, 0u) << where;
      EXPECT_LE(r.stats.cached_bytes, budget - plan.fixed_bytes) << where << ": the cache outgrew its budget";
      if (budget == smallest) {
        EXPECT_GT(r.stats.evictions, 0u) << where << ": the smallest cache never evicted";
      }
    }
  }
}

TEST(ExpertStreaming, Qwen3MoeLogitsDoNotDependOnTheBudget) {
  expect_identical_at_three_budgets("qwen3moe", "q4_k_m");
  expect_identical_at_three_budgets("qwen3moe", "f32");
}

TEST(ExpertStreaming, DeepseekV3LogitsDoNotDependOnTheBudget) {
  expect_identical_at_three_budgets("deepseek-v3", "q4_k_m");
}

TEST(ExpertStreaming, Glm4MoeLogitsDoNotDependOnTheBudget) { expect_identical_at_three_budgets("glm4moe", "q4_k_m"); }

TEST(ExpertStreaming, BudgetsAndTheirPlans) {
  auto src = open_gguf_source(test::shared_path("golden/qwen3moe/q4_k_m.gguf"));
  const ResidencyPlan all = plan_residency(*src);  // no budget
  EXPECT_FALSE(all.stream);
  EXPECT_EQ(all.budget, 0u);
  src->mem_budget = all.fixed_bytes + all.expert_bytes;  // exactly everything: resident
  src->mem_budget_source = "--mem";
  EXPECT_FALSE(plan_residency(*src).stream);
  src->mem_budget -= 1;
  const ResidencyPlan one_short = plan_residency(*src);
  EXPECT_TRUE(one_short.stream);
  EXPECT_EQ(one_short.cache_bytes, src->mem_budget - one_short.fixed_bytes);
  EXPECT_EQ(one_short.n_experts, src->config().n_expert * src->config().n_layer);

  // Below the resident part plus two tokens' experts: an error naming what is needed with --mem,
  // everything resident (with a note) under a default budget.
  src->mem_budget = all.fixed_bytes + all.min_cache_bytes() - 1;
  try {
    plan_residency(*src);
    ADD_FAILURE() << "a budget below the minimum was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is too small"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("give --mem"), std::string::npos) << e.what();
  }
  src->mem_budget_source = "MemAvailable";
  const ResidencyPlan fallback = plan_residency(*src);
  EXPECT_FALSE(fallback.stream);
  EXPECT_NE(fallback.note.find("everything stays resident"), std::string::npos) << fallback.note;
}

// The cache on its own: a full cache evicts the least used expert (ties: the least recently
// used), keeps the hot one, and an expert read back after eviction computes what the resident
// stack's slice computes, bit for bit.
TEST(ExpertStreaming, CacheEvictsTheLeastUsedAndKeepsTheHot) {
  const std::string path = test::shared_path("golden/qwen3moe/q4_k_m.gguf");
  auto src = open_gguf_source(path);
  const gguf::File& file = *src->gguf_file();
  const ModelConfig& c = src->config();
  ExpertCache::LayerStacks l;
  const char* names[3] = {"blk.0.ffn_gate_exps.weight", "blk.0.ffn_up_exps.weight", "blk.0.ffn_down_exps.weight"};
  for (int m = 0; m < 3; ++m) {
    l.stacks[m] = *src->find(names[m]);
    l.file_offset[m] = file.data_offset() + file.find_info(names[m])->offset;
  }
  l.router = *src->find("blk.0.ffn_gate_inp.weight");
  l.n_expert_used = c.n_expert_used;
  // Sized from a throwaway cache that knows the layer's expert size.
  uint64_t one = 0;
  {
    ExpertCache probe(path, 1, src->prepare, c.n_layer, c.n_expert);
    probe.add_layer(0, l);
    one = probe.expert_bytes(0);
  }
  ExpertCache cache(path, 3 * one, src->prepare, c.n_layer, c.n_expert);
  cache.add_layer(0, l);
  auto use = [&](int32_t e) {
    cache.pin(0, e);
    cache.unpin(0, e);
  };
  for (int i = 0; i < 5; ++i) use(0);  // hot
  use(1);
  use(2);
  EXPECT_EQ(cache.stats().misses, 3u);
  use(3);  // full: 1 goes (used once, and before 2)
  const ExpertCache::Stats s = cache.stats();
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.misses, 4u);
  EXPECT_LE(s.cached_bytes, 3 * one);
  use(0);
  use(2);
  EXPECT_EQ(cache.stats().misses, 4u) << "the hot expert or the recent one was evicted";
  use(1);
  EXPECT_EQ(cache.stats().misses, 5u) << "expert 1 should have been the one evicted";

  // Expert 1, read back, against the resident stack's slice.
  const kernels::Weight stack = kernels::prepare_weight(l.stacks[0], src->prepare);
  const ExpertCache::Expert& x = cache.pin(0, 1);
  std::vector<float> in(static_cast<size_t>(c.n_embd), 0.0f), want(static_cast<size_t>(c.n_ff_exp)), got(want.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>((i * 37) % 11) * 0.1f - 0.5f;
  kernels::matmul(kernels::matrix_slice(stack, 1), in.data(), 1, want.data());
  kernels::matmul(x.gate, in.data(), 1, got.data());
  cache.unpin(0, 1);
  EXPECT_TRUE(same_floats(want, got));
}

}  // namespace
}  // namespace owl
