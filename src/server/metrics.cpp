#include "server/metrics.h"

#include <cstdio>

namespace owl::server {

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, status == 0 ? "client_closed" : std::to_string(status)}];
}

void Metrics::count_disconnect() {
  std::lock_guard<std::mutex> lock(mu_);
  ++disconnects_;
}

namespace {
void metric(std::string& out, const char* name, const char* type, const char* help, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + buf + "\n";
}

// The expert cache of streamed routed experts (model/expert_cache.h): counts since start.
void render_expert_cache(std::string& out, const ExpertCache::Stats& c, uint64_t capacity) {
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  metric(out, "owl_expert_cache_hits_total", "counter", "Streamed experts asked for and found in the expert cache.",
         d(c.hits));
  metric(out, "owl_expert_cache_misses_total", "counter", "Streamed experts a forward had to wait to read.",
         d(c.misses));
  metric(out, "owl_expert_cache_hit_ratio", "gauge", "Hits over hits plus misses.", c.hit_rate());
  metric(out, "owl_expert_cache_read_bytes_total", "counter", "Bytes of experts read from the model file.",
         d(c.bytes_read));
  metric(out, "owl_expert_cache_read_seconds_total", "counter", "Seconds with at least one expert read in flight.",
         c.read_seconds);
  metric(out, "owl_expert_cache_evictions_total", "counter", "Experts dropped from the cache to make room.",
         d(c.evictions));
  metric(out, "owl_expert_cache_prefetches_total", "counter", "Experts read ahead for the next layer.",
         d(c.prefetches));
  metric(out, "owl_expert_cache_prefetch_used_total", "counter", "Experts read ahead that a forward then used.",
         d(c.prefetch_used));
  metric(out, "owl_expert_cache_prefetch_wasted_total", "counter",
         "Experts read ahead and evicted before any forward used them.", d(c.prefetch_wasted));
  metric(out, "owl_expert_cache_bytes", "gauge", "Bytes of prepared experts in the cache.", d(c.cached_bytes));
  metric(out, "owl_expert_cache_capacity_bytes", "gauge", "The cache's capacity under the memory budget.", d(capacity));
}

}  // namespace

std::string Metrics::render(const EngineStats& s, const ExpertCache* expert_cache) const {
  std::string out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out +=
        "# HELP owl_requests_total HTTP requests answered, by endpoint and status code; status=\"client_closed\" "
        "counts requests whose client went away before any answer was sent.\n";
    out += "# TYPE owl_requests_total counter\n";
    for (const auto& [key, n] : requests_)
      out += "owl_requests_total{endpoint=\"" + key.first + "\",status=\"" + key.second + "\"} " + std::to_string(n) +
             "\n";
    metric(out, "owl_client_disconnects_total", "counter", "Requests whose client went away before the end.",
           static_cast<double>(disconnects_));
  }
  auto d = [](int64_t v) { return static_cast<double>(v); };
  metric(out, "owl_prompt_tokens_total", "counter", "Prompt tokens of admitted requests (cached ones included).",
         d(s.prompt_tokens_total));
  metric(out, "owl_prompt_tokens_cached_total", "counter", "Prompt tokens served from the prefix cache.",
         d(s.prompt_tokens_cached_total));
  metric(out, "owl_prefill_tokens_total", "counter", "Prompt tokens evaluated by the model.",
         d(s.prefill_tokens_total));
  metric(out, "owl_prompt_tokens_forked_total", "counter",
         "Prompt tokens copied from a request's first choice into its other choices (n > 1) instead of evaluated.",
         d(s.prompt_tokens_forked_total));
  metric(out, "owl_generation_tokens_total", "counter", "Tokens generated.", d(s.generated_tokens_total));
  metric(out, "owl_generation_requests_finished_total", "counter", "Generation requests that ended (any reason).",
         d(s.requests_finished_total));
  metric(out, "owl_generation_requests_cancelled_total", "counter",
         "Generation requests cancelled (client gone or stopped).", d(s.requests_cancelled_total));
  metric(out, "owl_engine_steps_total", "counter", "Batched forward steps.", d(s.steps_total));
  metric(out, "owl_spec_draft_tokens_total", "counter", "Speculative decoding: tokens drafted.",
         d(s.spec_drafted_total));
  metric(out, "owl_spec_accepted_tokens_total", "counter", "Speculative decoding: drafted tokens the model accepted.",
         d(s.spec_accepted_total));
  metric(out, "owl_spec_acceptance_ratio", "gauge", "Speculative decoding: accepted share of the drafted tokens.",
         s.spec_drafted_total ? d(s.spec_accepted_total) / d(s.spec_drafted_total) : 0.0);
  metric(out, "owl_spec_tokens_per_forward", "gauge",
         "Speculative decoding: tokens generated per sequence and forward step.",
         s.spec_verify_total ? d(s.spec_tokens_total) / d(s.spec_verify_total) : 0.0);
  metric(out, "owl_queue_depth", "gauge", "Requests waiting for a slot.", d(s.queue_depth));
  metric(out, "owl_running_sequences", "gauge", "Sequences being prefilled or decoded.", d(s.running));
  metric(out, "owl_parallel_slots", "gauge", "Sequences that can run at once (--parallel).", d(s.n_parallel));
  metric(out, "owl_kv_cache_pages_in_use", "gauge", "KV cache pages holding tokens.", d(s.kv_pages_in_use));
  metric(out, "owl_kv_cache_bytes", "gauge", "Bytes allocated for KV cache pages.", d(s.kv_bytes_allocated));
  metric(out, "owl_kv_cache_budget_tokens", "gauge", "KV cache budget in tokens.", d(s.kv_budget_tokens));
  metric(out, "owl_kv_cache_committed_tokens", "gauge", "KV tokens reserved by running requests plus cached prefixes.",
         d(s.kv_committed_tokens));
  metric(out, "owl_kv_cache_usage_ratio", "gauge", "Committed share of the KV budget.",
         s.kv_budget_tokens > 0 ? d(s.kv_committed_tokens) / d(s.kv_budget_tokens) : 0.0);
  metric(out, "owl_generation_tokens_per_second", "gauge", "Generated tokens per second over the last 10 s.",
         s.generated_tokens_per_second);
  metric(out, "owl_prefill_tokens_per_second", "gauge", "Prompt tokens evaluated per second over the last 10 s.",
         s.prefill_tokens_per_second);
  if (expert_cache) render_expert_cache(out, expert_cache->stats(), expert_cache->capacity());
  return out;
}

}  // namespace owl::server
