// What stays resident under a memory budget (owl --mem) and what streams from the file.
//
// Resident first, prepared (repacked) at load: everything but the routed experts (attention,
// norms, router, shared experts, embeddings, output head, dense layers). When the routed
// experts also fit, they are resident too, as without a budget. When they do not, the rest of
// the budget is an expert cache (expert_cache.h): the experts the router uses are read from the
// file into it and the most used stay, so the cache settles on the hot experts of the workload.
// Streaming needs a GGUF file (an expert's bytes at one offset); other sources stay resident.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "model/source.h"

namespace owl {

class ExpertCache;

struct ResidencyPlan {
  uint64_t budget = 0;          // 0: no budget
  uint64_t fixed_bytes = 0;     // everything but the routed experts, prepared
  uint64_t expert_bytes = 0;    // every routed expert, prepared
  uint64_t largest_expert = 0;  // one expert's gate, up and down, prepared
  int64_t n_experts = 0;        // routed experts over all layers
  int64_t n_expert_used = 0;
  bool stream = false;       // routed experts stream through the expert cache
  uint64_t cache_bytes = 0;  // its capacity
  std::string note;          // why everything is resident although it exceeds the budget

  uint64_t min_cache_bytes() const { return static_cast<uint64_t>(2 * n_expert_used) * largest_expert; }
  int64_t cache_experts() const { return largest_expert ? static_cast<int64_t>(cache_bytes / largest_expert) : 0; }
};

// The plan for src under src.mem_budget. Throws owl::Error when a budget given with --mem cannot
// hold the resident part plus an expert cache of two tokens' experts of one layer.
ResidencyPlan plan_residency(const ModelSource& src);

// The expert cache of src's streamed experts (created with the plan on first call), or null when
// the plan keeps every expert resident.
std::shared_ptr<ExpertCache> streaming_expert_cache(const ModelSource& src);

}  // namespace owl
