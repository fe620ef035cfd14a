// The n choices of one OpenAI request (`n`, 1..kMaxChoices) as the server runs them: one engine
// request per choice, queued as a group (the prompt is prefilled once and its KV copied into
// the other choices, runtime/engine.h), and one loop that reads all their streams.
// Seeds: with `seed` s, choice i samples exactly as a request with n = 1 and seed s + i would;
// without a seed every choice draws its own random seed. Greedy choices are all the same.
#pragma once
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "runtime/engine.h"
#include "server/api.h"
#include "server/http.h"

namespace owl::server {

// `first` as choice 0 and n - 1 copies with derived seeds; `fresh(copy)` gives each copy its own
// stateful parts (token hook, grammar constraint).
std::vector<GenerationRequest> choice_requests(GenerationRequest first, const CommonParams& p,
                                               const std::function<void(GenerationRequest&)>& fresh);

// Reads every choice's events into on_event(choice, event) until each has its last one
// (returned, per choice). When the client goes away or on_event returns false, every choice is
// cancelled: nullopt.
std::optional<std::vector<GenerationEvent>> pump_choices(
    const std::vector<std::shared_ptr<GenerationStream>>& streams, http::Response& res,
    const std::function<bool(size_t, const GenerationEvent&)>& on_event);

// The usage of all choices as one last event: the prompt counted once, completion tokens summed.
GenerationEvent total_usage(const std::vector<GenerationEvent>& lasts);

// One element of "choices": {"index", key: value, "logprobs", "finish_reason"}.
nlohmann::ordered_json choice_json(size_t index, const char* key, const nlohmann::ordered_json& value,
                                   const nlohmann::ordered_json& logprobs, const nlohmann::ordered_json& finish);

}  // namespace owl::server
