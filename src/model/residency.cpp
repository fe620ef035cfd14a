#include "model/residency.h"

#include <algorithm>
#include <map>

#include "base/error.h"
#include "base/memory_budget.h"
#include "formats/gguf.h"
#include "model/expert_cache.h"

namespace owl {

namespace {

bool is_routed_expert(const std::string& name) { return name.find("_exps.") != std::string::npos; }

// The layer of "blk.<n>.<rest>", or -1.
int64_t layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  try {
    return std::stoll(name.substr(4));
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

ResidencyPlan plan_residency(const ModelSource& src) {
  ResidencyPlan p;
  p.budget = src.mem_budget;
  p.n_expert_used = src.config().n_expert_used;
  std::map<int64_t, uint64_t> expert_of_layer;  // one expert's prepared bytes per layer
  std::map<int64_t, int64_t> experts_in_layer;
  for (const TensorView& t : src.tensors()) {
    const uint64_t b = kernels::prepared_bytes(t, src.prepare);
    if (!is_routed_expert(t.name) || t.ne[2] <= 0) {
      p.fixed_bytes += b;
      continue;
    }
    p.expert_bytes += b;
    const int64_t il = layer_of(t.name);
    expert_of_layer[il] += b / static_cast<uint64_t>(t.ne[2]);
    experts_in_layer[il] = t.ne[2];
  }
  for (const auto& [il, b] : expert_of_layer) p.largest_expert = std::max(p.largest_expert, b);
  for (const auto& [il, n] : experts_in_layer) p.n_experts += n;

  if (p.budget == 0 || p.n_experts == 0 || p.fixed_bytes + p.expert_bytes <= p.budget) return p;
  const bool explicit_budget = src.mem_budget_source == "--mem";
  const std::string budget = format_memory_size(p.budget) + " (" + src.mem_budget_source + ")";
  if (!src.gguf_file()) {
    p.note = "the weights exceed the memory budget of " + budget +
             ", but only a GGUF file streams its experts: everything stays resident";
    return p;
  }
  const uint64_t room = p.budget > p.fixed_bytes ? p.budget - p.fixed_bytes : 0;
  if (room < p.min_cache_bytes()) {
    const std::string need = format_memory_size(p.fixed_bytes + p.min_cache_bytes());
    if (explicit_budget)
      throw Error("--mem " + format_memory_size(p.budget) + " is too small for '" + src.path() + "': it keeps " +
                  format_memory_size(p.fixed_bytes) +
                  " resident (attention, norms, routers, shared experts, embeddings, output, dense layers) and needs " +
                  format_memory_size(p.min_cache_bytes()) + " for the expert cache; give --mem " + need + " or more");
    p.note = "the memory budget of " + budget + " is below the " + need +
             " that streaming the experts needs: everything stays resident";
    return p;
  }
  p.stream = true;
  p.cache_bytes = std::min(room, p.expert_bytes);
  return p;
}

std::shared_ptr<ExpertCache> streaming_expert_cache(const ModelSource& src) {
  if (src.expert_cache) return src.expert_cache;
  const ResidencyPlan p = plan_residency(src);
  if (!p.stream) return nullptr;
  const ModelConfig& c = src.config();
  src.expert_cache =
      std::make_shared<ExpertCache>(src.gguf_file()->path(), p.cache_bytes, src.prepare, c.n_layer, c.n_expert);
  return src.expert_cache;
}

}  // namespace owl
