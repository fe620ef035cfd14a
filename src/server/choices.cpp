#include "server/choices.h"

#include <chrono>

namespace owl::server {

std::vector<GenerationRequest> choice_requests(GenerationRequest first, const CommonParams& p,
                                               const std::function<void(GenerationRequest&)>& fresh) {
  first.logprobs = p.logprobs;
  std::vector<GenerationRequest> out;
  out.reserve(static_cast<size_t>(p.n));
  out.push_back(std::move(first));
  for (int i = 1; i < p.n; ++i) {
    GenerationRequest c = out.front();
    if (p.seed) c.sampling.seed = explicit_seed(*p.seed + static_cast<uint64_t>(i));
    fresh(c);
    out.push_back(std::move(c));
  }
  return out;
}

std::optional<std::vector<GenerationEvent>> pump_choices(
    const std::vector<std::shared_ptr<GenerationStream>>& streams, http::Response& res,
    const std::function<bool(size_t, const GenerationEvent&)>& on_event) {
  std::vector<std::optional<GenerationEvent>> last(streams.size());
  size_t open = streams.size();
  auto cancel_all = [&] {
    for (const auto& s : streams) s->cancel();
  };
  StreamBell& bell = streams.front()->bell();  // shared by the group
  while (open > 0) {
    const uint64_t seen = bell.rings();
    bool any = false;
    for (size_t i = 0; i < streams.size(); ++i) {
      if (last[i]) continue;
      for (auto& e : streams[i]->wait(std::chrono::milliseconds(0))) {
        any = true;
        if (!on_event(i, e)) {
          cancel_all();
          return std::nullopt;
        }
        if (e.finish != FinishReason::None) {
          last[i] = std::move(e);
          --open;
          break;
        }
      }
    }
    if (open == 0) break;
    if (res.client_gone()) {
      cancel_all();
      return std::nullopt;
    }
    if (!any) bell.wait(seen, std::chrono::milliseconds(20));
  }
  std::vector<GenerationEvent> out;
  out.reserve(last.size());
  for (auto& e : last) out.push_back(std::move(*e));
  return out;
}

GenerationEvent total_usage(const std::vector<GenerationEvent>& lasts) {
  GenerationEvent u;
  u.prompt_tokens = lasts.front().prompt_tokens;
  u.cached_tokens = lasts.front().cached_tokens;
  for (const auto& e : lasts) u.completion_tokens += e.completion_tokens;
  return u;
}

nlohmann::ordered_json choice_json(size_t index, const char* key, const nlohmann::ordered_json& value,
                                   const nlohmann::ordered_json& logprobs, const nlohmann::ordered_json& finish) {
  return {{"index", index}, {key, value}, {"logprobs", logprobs}, {"finish_reason", finish}};
}

}  // namespace owl::server
