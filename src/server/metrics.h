// Counters of the HTTP side and their Prometheus text rendering (GET /metrics),
// together with the engine's gauges (queue, running sequences, KV cache, rates).
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "model/expert_cache.h"
#include "runtime/engine.h"

namespace owl::server {

class Metrics {
 public:
  // One finished HTTP request on `endpoint` ("/v1/chat/completions", ...) with its status.
  // Status 0 (no answer was sent: the client went away first) is labelled "client_closed".
  void count_request(const std::string& endpoint, int status);
  // Requests whose client went away before the answer was complete.
  void count_disconnect();
  // Prometheus text exposition format 0.0.4; with the streamed experts' cache counts
  // (owl_expert_cache_*) when `expert_cache` is not null.
  std::string render(const EngineStats& engine, const ExpertCache* expert_cache = nullptr) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, int64_t> requests_;  // by endpoint, status label
  int64_t disconnects_ = 0;
};

}  // namespace owl::server
