// `owl bench --parallel N,...`: aggregate speed of N sequences served together through the
// engine's continuous batching (runtime/engine.h), the path `owl serve` takes, measured the
// way llama-batched-bench reports it: each sequence has its own random prompt and generates a
// fixed number of tokens (end-of-generation ignored, greedy).
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace owl {
class Model;
class Tokenizer;
}  // namespace owl

namespace owl::cli {

struct ParallelRun {
  int sequences = 0;
  int64_t prompt_tokens = 0;     // over all sequences
  int64_t generated_tokens = 0;  // over all sequences
  double seconds = 0;            // submit to the last sequence's end
  // Generated tokens per second while every sequence was decoding: from the step that gave the
  // last prompt its first token to the step where the first sequence ended (the regime
  // llama-batched-bench's S_TG times; the engine starts sequences as their prompts are done, so
  // the first ones end before the last ones).
  double decode_tps = 0;
  int64_t decode_steps = 0;  // steps in that window
  double total_tps = 0;      // (prompt + generated tokens) / seconds: llama-batched-bench's S
};

// One run: `sequences` requests of `prompt` random tokens each, submitted at once to a fresh
// engine that decodes up to `sequences` together, each generating `gen` tokens.
ParallelRun bench_parallel(Model& model, const Tokenizer& tokenizer, int sequences, int64_t prompt, int64_t gen,
                           DType kv_type, uint32_t seed);

}  // namespace owl::cli
