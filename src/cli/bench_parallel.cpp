#include "cli/bench_parallel.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "base/error.h"
#include "model/model.h"
#include "runtime/engine.h"

namespace owl::cli {

namespace {
using Clock = std::chrono::steady_clock;

// When each token of one stream arrived.
struct Arrivals {
  std::vector<std::pair<Clock::time_point, int64_t>> events;  // (time, tokens in the event)
  std::string error;
};

// Reads one stream to its end on its own thread; each arrival carries the time the engine pushed it.
void collect(GenerationStream& stream, Arrivals& out) {
  for (;;) {
    for (auto& e : stream.wait(std::chrono::milliseconds(50))) {
      if (e.n_tokens > 0) out.events.emplace_back(e.pushed_at, e.n_tokens);
      if (e.finish == FinishReason::Error) out.error = e.error;
      if (e.finish != FinishReason::None) return;
    }
  }
}
}  // namespace

ParallelRun bench_parallel(Model& model, const Tokenizer& tokenizer, int sequences, int64_t prompt, int64_t gen,
                           DType kv_type, uint32_t seed) {
  EngineOptions eo;
  eo.n_parallel = sequences;
  eo.n_ctx = prompt + gen + 16;
  eo.prefill_chunk = 512;  // prompt tokens per step: llama-batched-bench's default micro-batch
  eo.kv_type = kv_type;
  eo.prefix_cache = false;  // random prompts share nothing; no time spent looking
  eo.max_queue = sequences;
  Engine engine(model, tokenizer, eo);

  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(model.n_vocab() - 1));
  std::vector<GenerationRequest> reqs(static_cast<size_t>(sequences));
  for (auto& r : reqs) {
    for (int64_t i = 0; i < prompt; ++i) r.prompt.push_back(tok(rng));
    r.max_tokens = gen;
    r.ignore_eos = true;
    r.sampling.temperature = 0;  // greedy: no sampling cost beyond the argmax
    r.speculate = false;
  }

  std::vector<Arrivals> arrivals(static_cast<size_t>(sequences));
  std::vector<std::thread> readers;
  std::vector<std::shared_ptr<GenerationStream>> streams;
  const auto t0 = Clock::now();
  for (auto& r : reqs) streams.push_back(engine.submit(std::move(r)));
  for (size_t s = 0; s < streams.size(); ++s)
    readers.emplace_back(collect, std::ref(*streams[s]), std::ref(arrivals[s]));
  for (auto& th : readers) th.join();
  const auto t_end = Clock::now();

  ParallelRun run;
  run.sequences = sequences;
  run.prompt_tokens = prompt * sequences;
  for (const Arrivals& a : arrivals) {
    if (!a.error.empty()) throw Error("bench --parallel: a sequence failed: " + a.error);
    if (a.events.empty()) throw Error("bench --parallel: a sequence generated nothing");
    for (const auto& [t, n] : a.events) run.generated_tokens += n;
  }
  // The window where all sequences decode together, one token each per step: from the step that
  // gave the last prompt its first token to the step that gave the first sequence to end its last.
  // Its steps are the last-started sequence's tokens in it (the engine stamps the tokens of one
  // step within microseconds of each other, hence the small tolerance).
  const Arrivals* last_start = &arrivals.front();
  Clock::time_point first_end = arrivals.front().events.back().first;
  for (const Arrivals& a : arrivals) {
    if (a.events.front().first > last_start->events.front().first) last_start = &a;
    first_end = std::min(first_end, a.events.back().first);
  }
  const Clock::time_point from = last_start->events.front().first;
  int64_t steps = 0;
  for (const auto& [t, n] : last_start->events)
    if (t > from && t <= first_end + std::chrono::milliseconds(2)) steps += n;
  run.decode_steps = steps;
  run.seconds = std::chrono::duration<double>(t_end - t0).count();
  const double window = std::chrono::duration<double>(first_end - from).count();
  run.decode_tps = window > 0 ? static_cast<double>(steps * sequences) / window : 0.0;
  run.total_tps = static_cast<double>(run.prompt_tokens + run.generated_tokens) / run.seconds;
  return run;
}

}  // namespace owl::cli
